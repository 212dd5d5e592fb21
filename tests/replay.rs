//! The replay as a library call (`ptyflow::job::replay`): its `.npy`
//! outputs read by a real numpy client (issue 3 item 7), one worker against two giving the
//! same bits, and the real Merlin 4 × 2 scan whose per-frame sums `reference.json` knows.

use std::path::{Path, PathBuf};
use std::process::Command;

use ptyflow::job::{Hooks, JobConfig, JobOutcome, scan_shaped};
use ptyflow::output::read_npy;
use ptyflow::pipeline::detectors::VirtualSpec;
use serde_json::Value;

const W: usize = 32;
const H: usize = 32;
/// The dump holds 42 frames; the tests replay them on a 7 × 7 scan with `allow_partial`, so
/// the last 7 positions are NaN and NaN handling is part of what numpy sees.
const FRAMES: usize = 42;

/// splitmix64: seeded noise for the synthetic frames.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Writes `FRAMES` u16 frames (a bright disc at (15.4, 16.3), radius 7, on a noisy
/// background) as a raw dump with its sidecar; returns the frames.
fn write_dump(path: &Path, seed: u64) -> Vec<Vec<u16>> {
    let mut rng = Rng(seed);
    let frames: Vec<Vec<u16>> = (0..FRAMES)
        .map(|f| {
            (0..W * H)
                .map(|i| {
                    let (y, x) = ((i / W) as f64, (i % W) as f64);
                    let d = (x - 15.4).hypot(y - 16.3);
                    let base = if d <= 7.0 {
                        150 + 9 * (f % 5) as u64
                    } else {
                        2
                    };
                    (base + rng.next() % (base / 4 + 3)) as u16
                })
                .collect()
        })
        .collect();
    let bytes: Vec<u8> = frames
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(path, bytes).unwrap();
    let mut sidecar = path.as_os_str().to_owned();
    sidecar.push(".json");
    std::fs::write(
        sidecar,
        format!(r#"{{"format": "raw", "width": {W}, "height": {H}, "dtype": "u16", "frames": {FRAMES}}}"#),
    )
    .unwrap();
    frames
}

fn config(dump: &Path, out: &Path, threads: usize) -> JobConfig {
    let mut c = JobConfig::dump(dump);
    c.reduce.detectors = ["bf", "dpc", "adf:9:14", "rings:4:9:14", "com"]
        .iter()
        .map(|s| s.parse::<VirtualSpec>().unwrap())
        .collect();
    c.scan.shape = Some([7, 7]);
    c.scan.allow_partial = true;
    c.reduce.bin = 2;
    c.run.threads = Some(threads);
    // Small batches, so that two workers both get frames.
    c.run.batch_frames = Some(4);
    c.out = Some(out.to_owned());
    c
}

fn replay(config: &JobConfig) -> ptyflow::Result<JobOutcome> {
    ptyflow::job::replay(config, &Hooks::default())
}

/// What the Rust side says each `.npy` holds: name → (shape, values).
fn expected_outputs(o: &JobOutcome) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let (rows, cols) = (o.scan.rows(), o.scan.cols());
    let (h, w) = (o.plan.stage.height(), o.plan.stage.width());
    let stats = o.reducer.pattern_stats().unwrap();
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let mut all = vec![
        ("mean".to_string(), vec![h, w], f32s(&stats.mean)),
        ("var".to_string(), vec![h, w], f32s(&stats.var)),
        (
            "dose".to_string(),
            vec![rows, cols],
            scan_shaped(&o.scan, &f32s(o.reducer.dose()), 1),
        ),
    ];
    for slot in &o.plan.detectors {
        let shaped = scan_shaped(&o.scan, &o.reducer.detector_values(slot), slot.len);
        let name = format!("virtual_{}", slot.name);
        if slot.name == "com" {
            for (axis, c) in [("x", 0), ("y", 1)] {
                let one = shaped.iter().skip(c).step_by(2).copied().collect();
                all.push((format!("{name}_{axis}"), vec![rows, cols], one));
            }
        } else if slot.len == 1 {
            all.push((name, vec![rows, cols], shaped));
        } else {
            let total = shaped
                .chunks_exact(slot.len)
                .map(|c| c.iter().sum())
                .collect();
            all.push((name.clone(), vec![rows, cols, slot.len], shaped));
            all.push((format!("{name}_sum"), vec![rows, cols], total));
        }
    }
    all
}

/// The Python interpreter for the numpy client: `$PTYFLOW_PYTHON` (set by `.ci/run` to a venv
/// with numpy), else `python3`. `None`, with a message, when it has no numpy.
fn python_with_numpy() -> Option<PathBuf> {
    let python =
        std::env::var_os("PTYFLOW_PYTHON").map_or_else(|| PathBuf::from("python3"), PathBuf::from);
    let ok = Command::new(&python)
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "skipping: numpy not available to {} (set PTYFLOW_PYTHON to a python with numpy)",
            python.display()
        );
        return None;
    }
    Some(python)
}

/// Loads every `.npy` in argv[1] with numpy; prints name → shape, dtype and a few values.
/// Non-finite values are printed as strings ("nan"), which JSON has no numbers for.
const NUMPY_CLIENT: &str = r#"
import json, math, pathlib, sys
import numpy as np

def num(x):
    x = float(x)
    return x if math.isfinite(x) else repr(x)

out = {}
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.npy")):
    a = np.load(p, allow_pickle=False)
    f = a.astype(np.float64)
    out[p.stem] = {
        "shape": list(a.shape),
        "dtype": str(a.dtype),
        "descr": a.dtype.str,
        "fortran": bool(np.isfortran(a)) if a.ndim > 1 else False,
        "sum": num(f.sum()),
        "nansum": num(np.nansum(f)),
        "nans": int(np.isnan(f).sum()),
        "first": num(f.flat[0]),
        "last": num(f.flat[-1]),
    }
print(json.dumps(out))
"#;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn numpy_reads_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("scan.raw");
    let frames = write_dump(&dump, 21);
    let out = dir.path().join("out");
    let outcome = replay(&config(&dump, &out, 2)).unwrap();
    let r = &outcome.report;
    assert_eq!(r.counters.frames_read, FRAMES as u64);
    assert_eq!(r.counters.frames_processed, FRAMES as u64);
    assert_eq!(r.counters.frames_dropped, 0);
    assert!(!r.counters.interrupted);
    assert_eq!(outcome.reducer.frames_done(), FRAMES as u64);
    // The dose the reducer holds is the frame sums, exactly.
    let sums: Vec<f64> = frames
        .iter()
        .map(|f| f.iter().map(|&p| u64::from(p)).sum::<u64>() as f64)
        .collect();
    assert_eq!(&outcome.reducer.dose()[..FRAMES], &sums[..]);

    let expected = expected_outputs(&outcome);
    // Each expected output is on disk, listed in the report, and reads back in Rust.
    for (name, shape, values) in &expected {
        let file = format!("{name}.npy");
        assert!(r.outputs.contains(&file), "{file} not in {:?}", r.outputs);
        let (s, v) = read_npy::<f32>(&out.join(&file)).unwrap();
        assert_eq!(&s, shape, "{name}");
        assert_eq!(
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            values.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "{name}"
        );
    }

    let Some(python) = python_with_numpy() else {
        return;
    };
    let script = dir.path().join("client.py");
    std::fs::write(&script, NUMPY_CLIENT).unwrap();
    let run = Command::new(&python)
        .arg(&script)
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "numpy client failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let seen: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let seen = seen.as_object().unwrap();
    let mut names: Vec<&str> = expected.iter().map(|(n, _, _)| n.as_str()).collect();
    names.sort_unstable();
    let mut found: Vec<&str> = seen.keys().map(|k| k.as_str()).collect();
    found.sort_unstable();
    assert_eq!(found, names, "the .npy files numpy found");

    let (rows, cols, h, w) = (7, 7, H / 2, W / 2);
    for (name, shape, values) in &expected {
        let s = &seen[name];
        // The documented dtypes and shapes: float32 everywhere; mean/var (H/b, W/b), per-position
        // maps (rows, cols), multi-channel detectors (rows, cols, n).
        assert_eq!(s["dtype"], "float32", "{name}: {s}");
        assert_eq!(s["descr"], "<f4", "{name}: {s}");
        assert_eq!(s["fortran"], false, "{name}: {s}");
        let want_shape: Vec<usize> = match name.as_str() {
            "mean" | "var" => vec![h, w],
            "virtual_dpc" => vec![rows, cols, 4],
            "virtual_rings" => vec![rows, cols, 4],
            _ => vec![rows, cols],
        };
        assert_eq!(shape, &want_shape, "{name}");
        let numpy_shape: Vec<usize> = s["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(numpy_shape, want_shape, "{name}");

        let nans = values.iter().filter(|v| v.is_nan()).count();
        assert_eq!(s["nans"], nans, "{name}");
        let nansum: f64 = values
            .iter()
            .filter(|v| !v.is_nan())
            .map(|&v| f64::from(v))
            .sum();
        let got = s["nansum"].as_f64().unwrap();
        assert!(
            close(got, nansum),
            "{name}: numpy nansum {got}, Rust {nansum}"
        );
        if nans == 0 {
            let got = s["sum"].as_f64().unwrap();
            assert!(close(got, nansum), "{name}: numpy sum {got}, Rust {nansum}");
        } else {
            assert_eq!(s["sum"], "nan", "{name}");
        }
        for (key, v) in [("first", values[0]), ("last", values[values.len() - 1])] {
            if v.is_nan() {
                assert_eq!(s[key], "nan", "{name} {key}");
            } else {
                assert_eq!(s[key].as_f64().map(|x| x as f32), Some(v), "{name} {key}");
            }
        }
    }
    // The per-position maps: 42 frames on 49 positions leave 7 NaN, and numpy's dose total
    // is the total count of the dump.
    assert_eq!(seen["dose"]["nans"], 7);
    let total: f64 = sums.iter().sum();
    assert!(close(seen["dose"]["nansum"].as_f64().unwrap(), total));
    assert_eq!(seen["mean"]["nans"], 0);
}

#[test]
fn one_worker_and_two_give_the_same_bits() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("scan.raw");
    write_dump(&dump, 5);
    let (out1, out2) = (dir.path().join("one"), dir.path().join("two"));
    let one = replay(&config(&dump, &out1, 1)).unwrap();
    let two = replay(&config(&dump, &out2, 2)).unwrap();
    assert_eq!(one.report.parameters["threads"], 1);
    assert_eq!(two.report.parameters["threads"], 2);
    assert_eq!(one.reducer.frames_done(), two.reducer.frames_done());
    let bits32 = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let bits64 = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits64(one.reducer.dose()), bits64(two.reducer.dose()));
    assert_eq!(bits32(one.reducer.coeffs()), bits32(two.reducer.coeffs()));
    let (s1, s2) = (
        one.reducer.pattern_stats().unwrap(),
        two.reducer.pattern_stats().unwrap(),
    );
    assert_eq!(bits64(&s1.mean), bits64(&s2.mean));
    assert_eq!(bits64(&s1.var), bits64(&s2.var));
    assert_eq!(s1.range, s2.range);
    assert_eq!(one.plan.detectors, two.plan.detectors);
    for slot in &one.plan.detectors {
        assert_eq!(
            bits32(&one.reducer.detector_values(slot)),
            bits32(&two.reducer.detector_values(slot)),
            "{}",
            slot.name
        );
    }
    // And so the files: every .npy is byte for byte the same.
    assert_eq!(one.report.outputs, two.report.outputs);
    for name in one.report.outputs.iter().filter(|n| n.ends_with(".npy")) {
        let a = std::fs::read(out1.join(name)).unwrap();
        let b = std::fs::read(out2.join(name)).unwrap();
        assert!(a == b, "{name} differs between 1 and 2 threads");
    }
}

/// The real 256 × 256 6-bit Merlin file of a 4 × 2 scan: the dose map is the per-frame sums
/// rosettasciio reports, in raster order.
#[test]
fn real_merlin_4x2_dose_is_the_reference_sums() {
    let Some(realdata) = ptyflow_suite::realdata_dir() else {
        return;
    };
    let (merlin, reference) = crate::realdata::merlin_reference(&realdata);
    let key = "Merlin_navigation4x2_ROI/001_4x2_6bit.mib";
    let want: Vec<u64> = reference[key]["per_frame_sums"]
        .as_array()
        .unwrap_or_else(|| panic!("{key} not in reference.json"))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(want.len(), 8);
    let tmp = tempfile::tempdir().unwrap();
    crate::realdata::extract(&merlin, tmp.path());
    let dump = tmp.path().join(key);
    let out = tmp.path().join("out");
    let mut config = JobConfig::dump(&dump);
    config.scan.shape = Some([4, 2]);
    config.run.threads = Some(2);
    config.out = Some(out.clone());
    let outcome = replay(&config).unwrap();
    assert_eq!(outcome.report.counters.frames_processed, 8);
    let dump_summary = outcome.report.dump.as_ref().unwrap();
    assert_eq!((dump_summary.width, dump_summary.height), (256, 256));
    let dose: Vec<u64> = outcome.reducer.dose().iter().map(|&v| v as u64).collect();
    assert_eq!(dose, want);
    let (shape, map) = read_npy::<f32>(&out.join("dose.npy")).unwrap();
    assert_eq!(shape, [4, 2]);
    for row in 0..4 {
        for col in 0..2 {
            assert_eq!(
                map[row * 2 + col],
                want[row * 2 + col] as f32,
                "scan position ({row}, {col})"
            );
        }
    }
    let (shape, _) = read_npy::<f32>(&out.join("mean.npy")).unwrap();
    assert_eq!(shape, [256, 256]);
}

/// Issue 16 item 3: NaN, Inf and all-zero frames in an f32 dump are counted and reported,
/// and do not poison the statistics, the images or the reconstruction; with
/// `keep_nonfinite` they are added as they are.
#[test]
fn nonfinite_frames_are_counted_and_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("f.raw");
    let (n, side) = (16usize, 16usize);
    let mut rng = Rng(7);
    let mut frames: Vec<Vec<f32>> = (0..n)
        .map(|_| {
            (0..side * side)
                .map(|_| (rng.next() % 100) as f32)
                .collect()
        })
        .collect();
    frames[3][17] = f32::NAN;
    frames[9][200] = f32::INFINITY;
    frames[12].iter_mut().for_each(|v| *v = 0.0);
    let bytes: Vec<u8> = frames
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(&dump, bytes).unwrap();
    std::fs::write(
        dir.path().join("f.raw.json"),
        r#"{"format": "raw", "width": 16, "height": 16, "dtype": "f32", "scan": [4, 4]}"#,
    )
    .unwrap();
    let mut config = JobConfig::dump(&dump);
    config.reduce.detectors = vec![VirtualSpec::Com];
    config.reduce.center = Some([8.0, 8.0]);
    config.reduce.bf_radius = Some(4.0);
    let outcome = replay(&config).unwrap();
    let r = &outcome.report;
    assert_eq!(
        r.counters.frames_processed, n as u64,
        "every frame is processed"
    );
    assert_eq!((r.frames_nonfinite, r.frames_zero_dose), (2, 1));
    let good: Vec<&Vec<f32>> = frames
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 9)
        .map(|(_, f)| f)
        .collect();
    let mean = |p: usize| good.iter().map(|f| f[p] as f64).sum::<f64>() / good.len() as f64;
    let got = outcome.arrays.iter().find(|a| a.name == "mean").unwrap();
    for p in 0..side * side {
        assert!((got.data[p] as f64 - mean(p)).abs() < 1e-4, "mean[{p}]");
    }
    let dose = outcome.arrays.iter().find(|a| a.name == "dose").unwrap();
    assert!(dose.data[3].is_nan() && dose.data[9].is_nan() && dose.data[12] == 0.0);
    let com = outcome
        .arrays
        .iter()
        .find(|a| a.name == "virtual_com_x")
        .unwrap();
    assert!(com.data[3].is_nan() && com.data[0].is_finite());
    let json = serde_json::to_value(r).unwrap();
    assert_eq!(json["frames_nonfinite"], 2);
    // Asked for, they are added as they are: the mean is poisoned where they were.
    config.reduce.keep_nonfinite = true;
    let kept = replay(&config).unwrap();
    assert_eq!(kept.report.frames_nonfinite, 0);
    let mean = kept.arrays.iter().find(|a| a.name == "mean").unwrap();
    assert!(mean.data[17].is_nan() && mean.data[200].is_infinite());
}

/// Replays `dump` (`rows × cols` positions of `k` frames of `side × side` pixels, `frames` as
/// written) summing the first `n` of each position's frames, and checks the statistics, dose
/// and report against summing them by hand. `give_k`: set `scan.frames_per_position` (else
/// it must come from the dump's sidecar).
fn assert_sums_by_hand(
    dump: &Path,
    frames: &[Vec<u16>],
    [rows, cols, k, side]: [usize; 4],
    n: usize,
    give_k: bool,
) {
    let mut config = JobConfig::dump(dump);
    config.scan.frames_per_position = give_k.then_some(k);
    config.scan.use_frames = Some(n);
    config.reduce.detectors = vec![VirtualSpec::BrightField];
    let c = side as f64 / 2.0 - 0.5;
    config.reduce.center = Some([c, c]);
    config.reduce.bf_radius = Some(side as f64 / 3.0);
    config.run.threads = Some(2);
    config.run.batch_frames = Some(3);
    let outcome = replay(&config).unwrap();
    // By hand: the pattern of each position.
    let patterns: Vec<Vec<u64>> = (0..rows * cols)
        .map(|p| {
            (0..side * side)
                .map(|px| (0..n).map(|j| u64::from(frames[p * k + j][px])).sum())
                .collect()
        })
        .collect();
    let r = &outcome.report;
    assert_eq!(r.counters.frames_processed, (rows * cols) as u64, "N = {n}");
    let fpp = r.frames_per_position.as_ref().expect("reported");
    assert_eq!((fpp.per_position, fpp.used), (k, n));
    assert_eq!(fpp.frames_summed, (rows * cols * n) as u64);
    let dose = outcome.arrays.iter().find(|a| a.name == "dose").unwrap();
    for (p, pattern) in patterns.iter().enumerate() {
        assert_eq!(
            dose.data[p] as f64,
            pattern.iter().sum::<u64>() as f64,
            "N = {n}"
        );
    }
    let mean =
        |px: usize| patterns.iter().map(|f| f[px] as f64).sum::<f64>() / patterns.len() as f64;
    let got = outcome.arrays.iter().find(|a| a.name == "mean").unwrap();
    for px in 0..side * side {
        assert!(
            (got.data[px] as f64 - mean(px)).abs() <= 1e-3 * mean(px).max(1.0),
            "N = {n}, mean[{px}]"
        );
    }
    let bf = outcome
        .arrays
        .iter()
        .find(|a| a.name == "virtual_bf")
        .unwrap();
    assert!(bf.data.iter().all(|v| v.is_finite() && *v > 0.0));
    let want_mean_dose = patterns
        .iter()
        .map(|f| f.iter().sum::<u64>() as f64)
        .sum::<f64>()
        / patterns.len() as f64;
    assert!((fpp.mean_counts_per_pattern - want_mean_dose).abs() < 1e-6 * want_mean_dose);
}

/// Issue 19 item 1: a dump with K = 8 frames per position replays with N = 8, 4, 2, 1 into
/// statistics, dose and detector images equal to summing the first N frames of every
/// position by hand; the report states K, N and the counts of a summed pattern.
#[test]
fn frames_per_position_sum_the_first_n_of_every_k() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("k8.raw");
    let (rows, cols, k, side) = (3usize, 4usize, 8usize, 16usize);
    let mut rng = Rng(19);
    let frames: Vec<Vec<u16>> = (0..rows * cols * k)
        .map(|_| {
            (0..side * side)
                .map(|_| (rng.next() % 4000) as u16)
                .collect()
        })
        .collect();
    let bytes: Vec<u8> = frames
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(&dump, bytes).unwrap();
    std::fs::write(
        dir.path().join("k8.raw.json"),
        r#"{"format": "raw", "width": 16, "height": 16, "dtype": "u16", "scan": [3, 4]}"#,
    )
    .unwrap();
    for n in [8usize, 4, 2, 1] {
        assert_sums_by_hand(&dump, &frames, [rows, cols, k, side], n, true);
    }
    // A frame count that is not positions × K is refused, naming the field.
    let mut config = JobConfig::dump(&dump);
    config.scan.frames_per_position = Some(5);
    let e = replay(&config).unwrap_err().to_string();
    assert!(
        e.contains("scan.shape") && e.contains("5 frames per position"),
        "{e}"
    );
    config.scan.frames_per_position = Some(8);
    config.scan.use_frames = Some(9);
    let e = replay(&config).unwrap_err().to_string();
    assert!(e.contains("scan.use_frames"), "{e}");
}

/// Issue 19 item 1, the simulator's side: `ptyflow simulate --frames-per-position 4` writes
/// 4 independent draws per position, each with a quarter of the dose, and a sidecar saying
/// K = 4, so a replay without `--frames-per-position` sums them (N = 4) or takes the first
/// (N = 1), equal to summing the raw file's frames by hand.
#[test]
fn simulated_frames_per_position_replay_from_the_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim");
    let (rows, cols, k, side) = (3usize, 4usize, 4usize, 32usize);
    let o = out.display().to_string();
    let argv = [
        "ptyflow",
        "simulate",
        "--out",
        &o,
        "--scan",
        "3x4",
        "--detector",
        "32",
        "--mrad-per-px",
        "2",
        "--defocus",
        "200",
        "--step",
        "1.1",
        "--dose-per-pattern",
        "4e4",
        "--frames-per-position",
        "4",
    ];
    assert_eq!(ptyflow::cli::main_with_args(argv), 0, "{argv:?}");
    let dump = out.join("scan.raw");
    let sidecar: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scan.raw.json")).unwrap()).unwrap();
    assert_eq!(sidecar["frames_per_position"], 4);
    assert_eq!(sidecar["frames"], rows * cols * k);
    let bytes = std::fs::read(&dump).unwrap();
    assert_eq!(bytes.len(), rows * cols * k * side * side * 2);
    let frames: Vec<Vec<u16>> = bytes
        .chunks_exact(side * side * 2)
        .map(|f| {
            f.chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect()
        })
        .collect();
    // Independent draws: no two frames of a position are equal, and each holds ≈ 1/K of
    // the position's electrons (those that reach the 32-pixel detector).
    let total = |f: &Vec<u16>| f.iter().map(|&v| f64::from(v)).sum::<f64>();
    for p in 0..rows * cols {
        let mine = &frames[p * k..(p + 1) * k];
        for a in 0..k {
            for b in a + 1..k {
                assert_ne!(mine[a], mine[b], "position {p}: frames {a} and {b}");
            }
        }
    }
    let per_frame = frames.iter().map(total).sum::<f64>() / frames.len() as f64;
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["dose_per_frame"].as_f64(), Some(1e4));
    assert!(
        per_frame > 0.5e4 && per_frame <= 1.01e4,
        "{per_frame} counts per frame"
    );
    let summed = meta["counts_mean_per_pattern"].as_f64().unwrap();
    assert!(
        (summed - k as f64 * per_frame).abs() < 1e-6 * summed,
        "{summed}"
    );
    for n in [4, 1] {
        assert_sums_by_hand(&dump, &frames, [rows, cols, k, side], n, false);
    }
}

/// Issue 19 item 1 through the CLI with the reconstruction: the fixture with every frame
/// recorded twice, replayed with `--frames-per-position 2 --use 1`, reconstructs exactly the
/// fixture's object (and with `--use 2`, the same object from twice the counts, close).
#[test]
fn frames_per_position_feed_the_reconstruction() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = ptyflow_suite::workspace_root().join("fixtures/mos2-defocus/scan.raw");
    let bytes = std::fs::read(&fixture).unwrap();
    let frame = bytes.len() / 100;
    let doubled: Vec<u8> = bytes
        .chunks_exact(frame)
        .flat_map(|f| f.iter().chain(f.iter()).copied())
        .collect();
    let dump = dir.path().join("twice.raw");
    std::fs::write(&dump, doubled).unwrap();
    let mut sidecar: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.with_extension("raw.json")).unwrap())
            .unwrap();
    sidecar["frames"] = 200.into();
    std::fs::write(dir.path().join("twice.raw.json"), sidecar.to_string()).unwrap();
    let run = |dump: &Path, out: &str, extra: &[&str]| {
        let out = dir.path().join(out);
        let (d, o) = (dump.display().to_string(), out.display().to_string());
        let mut argv = vec!["ptyflow", "replay", &d, "--recon", "epie", "--sweeps", "3"];
        argv.extend_from_slice(extra);
        argv.extend_from_slice(&["--threads", "1", "-q", "--out", &o]);
        assert_eq!(ptyflow::cli::main_with_args(&argv), 0, "{argv:?}");
        std::fs::read(out.join("object.npy")).unwrap()
    };
    let plain = run(&fixture, "plain", &[]);
    let once = run(&dump, "once", &["--frames-per-position", "2", "--use", "1"]);
    assert!(
        plain == once,
        "one of two identical frames per position changed the object"
    );
    let twice = run(&dump, "twice", &["--frames-per-position", "2"]);
    assert!(
        plain != twice,
        "summing two frames should change the counts"
    );
}

/// Issue 19 item 2: `ptyflow simulate --probe-kind random:SEED` writes the plate into the
/// sidecar, so `ptyflow replay --recon wf` (known probe) reconstructs with exactly the
/// simulated probe without a probe flag; `--probe-kind` on the replay overrides it.
#[test]
fn simulated_probe_kind_reaches_the_reconstruction_through_the_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim");
    let o = out.display().to_string();
    let argv = [
        "ptyflow",
        "simulate",
        "--out",
        &o,
        "--scan",
        "4x4",
        "--detector",
        "32",
        "--mrad-per-px",
        "2",
        "--defocus",
        "0",
        "--step",
        "1.1",
        "--probe-kind",
        "random:11",
    ];
    assert_eq!(ptyflow::cli::main_with_args(argv), 0, "{argv:?}");
    let sidecar: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scan.raw.json")).unwrap()).unwrap();
    assert_eq!(sidecar["optics"]["probe_kind"], "random:11");
    let dump = out.join("scan.raw").display().to_string();
    let probe_of = |name: &str, extra: &[&str]| {
        let r = dir.path().join(name).display().to_string();
        let mut argv = vec!["ptyflow", "replay", &dump, "--recon", "wf", "--sweeps", "1"];
        argv.extend_from_slice(extra);
        argv.extend_from_slice(&["--threads", "1", "-q", "--out", &r]);
        assert_eq!(ptyflow::cli::main_with_args(&argv), 0, "{argv:?}");
        read_npy::<num_complex::Complex32>(&dir.path().join(name).join("probe.npy"))
            .unwrap()
            .1
    };
    let truth = read_npy::<num_complex::Complex32>(&out.join("probe.npy"))
        .unwrap()
        .1;
    let err = |p: &[num_complex::Complex32]| {
        p.iter()
            .zip(&truth)
            .map(|(a, b)| (a - b).norm())
            .fold(0.0f32, f32::max)
    };
    let from_sidecar = probe_of("sidecar", &[]);
    assert!(err(&from_sidecar) < 1e-6, "{}", err(&from_sidecar));
    let other = probe_of("other", &["--probe-kind", "random:12"]);
    assert!(err(&other) > 1e-3, "another seed gave the same probe");
}
