//! The files Python users have, written by numpy itself: the fixture's frames as `.npy`
//! arrays (C and Fortran order, every dtype ptyflow reads, both byte orders, 4D and 3D) replay
//! to the same outputs as the same frames in a raw dump; and a raw dump whose `.json` beside
//! it is numpy's metadata, not ptyflow's sidecar, is read from the layout given.

use std::path::{Path, PathBuf};
use std::process::Command;

use ptyflow::job::{Hooks, JobConfig, Source};
use ptyflow::source::{Dump, Format, OpenOptions, RawDtype};
use ptyflow_suite::workspace_root;

/// `$PTYFLOW_PYTHON` (else `python3`) if it has numpy; `None`, with a message, if not.
fn python_with(modules: &str) -> Option<PathBuf> {
    let python =
        std::env::var_os("PTYFLOW_PYTHON").map_or_else(|| PathBuf::from("python3"), PathBuf::from);
    let ok = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "skipping: {modules} not available to {} (set PTYFLOW_PYTHON to a python with it)",
            python.display()
        );
        return None;
    }
    Some(python)
}

/// Reads the fixture's 100 frames of 96 × 96 u16 with numpy and writes, into argv[2], for
/// every dtype: `ref_<dt>.raw` (+ ptyflow sidecar) and the same array as `.npy` files.
const WRITER: &str = r#"
import json, sys, pathlib
import numpy as np
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
a = np.fromfile(src, dtype="<u2").reshape(10, 10, 96, 96)
names = {"u1": "u8", "u2": "u16", "u4": "u32", "f4": "f32"}
for dt in ["u1", "u2", "u4", "f4"]:
    b = a.astype("<" + dt)
    b.tofile(out / f"ref_{dt}.raw")
    (out / f"ref_{dt}.raw.json").write_text(json.dumps(
        {"format": "raw", "width": 96, "height": 96, "dtype": names[dt], "scan": [10, 10]}))
    np.save(out / f"c_{dt}.npy", b)
    np.save(out / f"f_{dt}.npy", np.asfortranarray(b))
    np.save(out / f"be_{dt}.npy", b.astype(">" + dt))
    assert np.isfortran(np.load(out / f"f_{dt}.npy", mmap_mode="r"))
np.save(out / "c3d_u2.npy", a.reshape(100, 96, 96))
np.save(out / "f3d_u2.npy", np.asfortranarray(a.reshape(100, 96, 96)))
# numpy's own description of a raw dump: not ptyflow's sidecar.
a.tofile(out / "foreign.raw")
(out / "foreign.raw.json").write_text(json.dumps(
    {"dtype": a.dtype.str, "shape": list(a.shape), "fortran_order": False}))
"#;

fn write_files(python: &Path, dir: &Path) {
    let raw = workspace_root().join("fixtures/mos2-defocus/scan.raw");
    let out = Command::new(python)
        .arg("-c")
        .arg(WRITER)
        .arg(&raw)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "numpy writer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Replays `config` into `dir/<name>`; returns the frames processed and every `.npy` output.
fn run(mut config: JobConfig, dir: &Path, name: &str) -> (u64, Vec<(String, Vec<u8>)>) {
    let out = dir.join(format!("out_{name}"));
    config.reduce.detectors = ["bf", "adf:20:40", "com"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    config.out = Some(out.clone());
    let outcome =
        ptyflow::job::replay(&config, &Hooks::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let c = &outcome.report.counters;
    assert_eq!(c.frames_read, c.frames_processed, "{name}");
    let mut files: Vec<(String, Vec<u8>)> = outcome
        .report
        .outputs
        .iter()
        .filter(|f| f.ends_with(".npy"))
        .map(|f| (f.clone(), std::fs::read(out.join(f)).unwrap()))
        .collect();
    files.sort();
    (c.frames_processed, files)
}

#[test]
fn numpy_arrays_replay_like_the_raw_dump() {
    let Some(python) = python_with("numpy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_files(&python, d);
    for dt in ["u1", "u2", "u4", "f4"] {
        let (frames, want) = run(JobConfig::dump(d.join(format!("ref_{dt}.raw"))), d, dt);
        assert_eq!(frames, 100);
        assert!(want.len() >= 4, "{want:?}");
        for kind in ["c", "f", "be"] {
            let name = format!("{kind}_{dt}.npy");
            let info = Dump::open(d.join(&name), &OpenOptions::default()).unwrap();
            assert_eq!(info.info().format, Format::Npy);
            assert_eq!(info.info().scan, Some((10, 10)), "{name}");
            let got = run(JobConfig::dump(d.join(&name)), d, &name);
            assert!(
                got == (100, want.clone()),
                "{name}: outputs differ from the raw dump's"
            );
        }
    }
    // 3D arrays: the scan shape comes from the job.
    let (_, want) = run(JobConfig::dump(d.join("ref_u2.raw")), d, "u2_again");
    for name in ["c3d_u2.npy", "f3d_u2.npy"] {
        let mut config = JobConfig::dump(d.join(name));
        config.scan.shape = Some([10, 10]);
        assert!(run(config, d, name) == (100, want.clone()), "{name}");
    }
}

#[test]
fn numpy_metadata_beside_a_raw_dump_gives_way_to_the_flags() {
    let Some(python) = python_with("numpy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_files(&python, d);
    let foreign = d.join("foreign.raw");
    let e = Dump::open(&foreign, &OpenOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("foreign.raw.json") && e.contains("--width"),
        "{e}"
    );
    let mut config = JobConfig::dump(&foreign);
    let Source::Dump(src) = &mut config.source else {
        unreachable!()
    };
    (src.width, src.height, src.dtype) = (Some(96), Some(96), Some(RawDtype::U16));
    config.scan.shape = Some([10, 10]);
    let dump = Dump::open(&foreign, &src.open_options()).unwrap();
    assert!(
        dump.info()
            .notes
            .iter()
            .any(|n| n.contains("not a ptyflow sidecar")),
        "{:?}",
        dump.info().notes
    );
    let (_, want) = run(JobConfig::dump(d.join("ref_u2.raw")), d, "ref");
    assert!(run(config, d, "foreign") == (100, want), "outputs differ");
}

/// An EMD 1.0-like file from h5py (the py4DSTEM layout: `<root>/<datacube>/data` in groups
/// with `emd_group_type`): ptyflow refuses it with the conversion to run, and the `.npy`
/// that conversion writes replays like the raw dump.
#[test]
fn hdf5_files_are_refused_with_a_conversion_that_works() {
    let Some(python) = python_with("numpy, h5py") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_files(&python, d);
    let emd = d.join("scan.emd");
    let script = r#"
import sys, h5py, numpy as np
a = np.load(sys.argv[1])
with h5py.File(sys.argv[2], "w") as f:
    f.attrs["emd_group_type"] = "file"
    root = f.create_group("root"); root.attrs["emd_group_type"] = "root"
    cube = root.create_group("datacube"); cube.attrs["emd_group_type"] = 1
    cube.attrs["python_class"] = "DataCube"
    cube.create_dataset("data", data=a, chunks=(1, 1, 96, 96), compression="gzip")
"#;
    let ok = Command::new(&python)
        .args(["-c", script])
        .arg(d.join("c_u2.npy"))
        .arg(&emd)
        .status()
        .unwrap();
    assert!(ok.success());
    let e = Dump::open(&emd, &OpenOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("scan.emd") && e.contains("numpy.save"), "{e}");
    // The command the message gives, with the file and the dataset filled in.
    let start = e.find("import h5py").unwrap();
    let command = &e[start..e[start..].find("\" ").unwrap() + start];
    let command = command
        .replace("FILE", emd.to_str().unwrap())
        .replace("DATASET", "root/datacube/data")
        .replace("scan.npy", d.join("converted.npy").to_str().unwrap());
    let ok = Command::new(&python)
        .args(["-c", &command])
        .status()
        .unwrap();
    assert!(ok.success(), "{command}");
    let (_, want) = run(JobConfig::dump(d.join("ref_u2.raw")), d, "ref");
    assert!(run(JobConfig::dump(d.join("converted.npy")), d, "converted") == (100, want));
}
