//! Issue 7: the C ABI. A real C program (`tests/c/capi_client.c`), compiled with the system
//! `cc` against `libptyflow.a` (and `libptyflow.so`), pushes every frame of a raw dump through
//! the API; its results must equal, bit for bit, the `.npy` files `ptyflow replay` writes for
//! the same dump. It also runs under valgrind when valgrind is installed. And the committed
//! header `include/ptyflow.h` must be what cbindgen makes of `host/src/capi.rs` today.
//!
//! The dump is the bundled fixture `fixtures/mos2-defocus` (96 × 96 u16, 10 × 10 raster scan,
//! bright-field disc of radius 30 px centred on (48, 48)).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use ptyflow::job::{Hooks, JobConfig};
use ptyflow::pipeline::detectors::VirtualSpec;

/// The reduction the C program configures (DETECTORS, CENTER_*, BF_RADIUS, BIN in the C file).
const REPLAY_DETECTORS: [&str; 5] = ["bf", "adf:32:46", "rings:3:32:46", "dpc", "com"];
const REPLAY_CENTER: (f64, f64) = (48.0, 48.0);
const REPLAY_BF_RADIUS: f64 = 30.0;
const REPLAY_BIN: usize = 2;

/// The fixture's frame and scan, from its sidecar (the C program gets them on its command line).
struct Fixture {
    dump: PathBuf,
    width: usize,
    height: usize,
    rows: usize,
    cols: usize,
}

fn fixture() -> Fixture {
    let dump = root()
        .join("fixtures")
        .join("mos2-defocus")
        .join("scan.raw");
    let sidecar: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dump.with_extension("raw.json")).expect("the fixture's sidecar"),
    )
    .unwrap();
    assert_eq!(sidecar["dtype"], "u16", "the C client reads u16 frames");
    assert_eq!(sidecar["header_bytes"].as_u64().unwrap_or(0), 0);
    let n = |v: &serde_json::Value| v.as_u64().unwrap() as usize;
    Fixture {
        width: n(&sidecar["width"]),
        height: n(&sidecar["height"]),
        rows: n(&sidecar["scan"][0]),
        cols: n(&sidecar["scan"][1]),
        dump,
    }
}

fn root() -> PathBuf {
    ptyflow_suite::workspace_root()
}

/// `include/ptyflow.h` must be what cbindgen generates now; `PTYFLOW_BLESS=1` rewrites it.
#[test]
fn header_is_up_to_date() {
    let config = cbindgen::Config::from_file(root().join("host").join("cbindgen.toml"))
        .expect("host/cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_src(root().join("host").join("src").join("capi.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen could not parse host/src/capi.rs");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let path = root().join("include").join("ptyflow.h");
    let committed = std::fs::read(&path).unwrap_or_default();
    if committed == fresh {
        return;
    }
    if std::env::var_os("PTYFLOW_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &fresh).unwrap();
        eprintln!("rewrote {}", path.display());
        return;
    }
    panic!(
        "{} is stale: it differs from what cbindgen makes of host/src/capi.rs with \
         host/cbindgen.toml.\nRegenerate it with\n    PTYFLOW_BLESS=1 cargo test -p ptyflow-suite capi\n\
         and commit it.",
        path.display()
    );
}

/// `ptyflow replay` on the dump with the C program's reduction; returns its output folder.
fn replay_into(fx: &Fixture, out: &Path) -> PathBuf {
    let mut config = JobConfig::dump(&fx.dump);
    config.reduce.bin = REPLAY_BIN;
    config.reduce.detectors = REPLAY_DETECTORS
        .iter()
        .map(|s| s.parse::<VirtualSpec>().unwrap())
        .collect();
    config.reduce.center = Some([REPLAY_CENTER.0, REPLAY_CENTER.1]);
    config.reduce.bf_radius = Some(REPLAY_BF_RADIUS);
    config.run.threads = Some(2);
    config.out = Some(out.to_path_buf());
    let outcome = ptyflow::job::replay(&config, &Hooks::default()).expect("replay");
    assert_eq!(
        outcome.report.counters.frames_processed,
        (fx.rows * fx.cols) as u64
    );
    // The reconstruction the C program runs in pipeline B (ePIE, the fixture's optics from its
    // sidecar, whole frame, no sweeps), through the CLI: object.npy and probe.npy.
    let recon_out = out.join("recon");
    let dump = fx.dump.display().to_string();
    let code = ptyflow::cli::main_with_args([
        "ptyflow",
        "replay",
        &dump,
        "--recon",
        "epie",
        "-q",
        "--out",
        &recon_out.display().to_string(),
    ]);
    assert_eq!(code, 0, "replay --recon epie");
    for name in ["object.npy", "probe.npy"] {
        std::fs::copy(recon_out.join(name), out.join(name)).unwrap();
    }
    std::fs::remove_dir_all(&recon_out).unwrap();
    out.to_path_buf()
}

/// The newest file in the target directory whose name satisfies `pick`, looking where cargo
/// puts the `ptyflow` library this test binary was built with: next to the test executable
/// (`target/<profile>/deps`), its parent (uplifted copies) and `$CARGO_TARGET_DIR`.
fn newest_library(pick: impl Fn(&str) -> bool) -> Option<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(deps) = exe.parent()
    {
        dirs.push(deps.to_path_buf());
        if let Some(profile) = deps.parent() {
            dirs.push(profile.to_path_buf());
        }
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        for profile in ["debug", "release"] {
            let p = PathBuf::from(&target).join(profile);
            dirs.push(p.join("deps"));
            dirs.push(p);
        }
    }
    let mut best: Option<(SystemTime, PathBuf)> = None;
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !pick(&name) {
                continue;
            }
            let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            if best.as_ref().is_none_or(|(t, _)| modified > *t) {
                best = Some((modified, entry.path()));
            }
        }
    }
    best.map(|(_, p)| p)
}

fn is_lib(name: &str, ext: &str) -> bool {
    name == format!("libptyflow.{ext}")
        || (name.starts_with("libptyflow-") && name.ends_with(&format!(".{ext}")))
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Compiles the C client with `cc` and the given link arguments into `exe`.
fn compile(exe: &Path, link: &[String]) {
    let out = Command::new("cc")
        .args([
            "-std=c11",
            "-O1",
            "-g",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
        ])
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join("tests").join("c").join("capi_client.c"))
        .args(link)
        .arg("-o")
        .arg(exe)
        .output()
        .expect("run cc");
    assert!(
        out.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the client (optionally under `wrapper`) and returns its output folder.
fn run_client(
    exe: &Path,
    wrapper: &[&str],
    fx: &Fixture,
    out: &Path,
    env: Option<(&str, &Path)>,
) -> PathBuf {
    std::fs::create_dir_all(out).unwrap();
    let mut cmd = match wrapper.split_first() {
        None => Command::new(exe),
        Some((tool, args)) => {
            let mut c = Command::new(tool);
            c.args(args).arg(exe);
            c
        }
    };
    cmd.arg(&fx.dump)
        .args([fx.width, fx.height, fx.rows * fx.cols, fx.rows, fx.cols].map(|v| v.to_string()))
        .arg(out);
    if let Some((key, value)) = env {
        cmd.env(key, value);
    }
    let result = cmd.output().expect("run the C client");
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        result.status.success(),
        "{} {:?} failed ({}):\n{stdout}\n{stderr}",
        exe.display(),
        wrapper,
        result.status
    );
    eprintln!("{}", stdout.trim());
    out.to_path_buf()
}

/// The C program's results (manifest + raw float32 files), by name.
fn read_client_results(dir: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let manifest = std::fs::read_to_string(dir.join("manifest.txt")).unwrap();
    let mut results = BTreeMap::new();
    for line in manifest.lines() {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap().to_string();
        let ndim: usize = words.next().unwrap().parse().unwrap();
        let shape: Vec<usize> = words.map(|w| w.parse().unwrap()).collect();
        assert_eq!(shape.len(), ndim, "{line}");
        let bytes = std::fs::read(dir.join(format!("{name}.f32"))).unwrap();
        let data: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(data.len(), shape.iter().product::<usize>(), "{name}");
        results.insert(name, (shape, data));
    }
    results
}

/// Every `.npy` replay wrote must be a C result with the same shape and the same bits.
fn assert_same_as_replay(client: &Path, replayed: &Path) {
    let results = read_client_results(client);
    let mut npys: Vec<String> = std::fs::read_dir(replayed)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".npy").map(str::to_owned)
        })
        .collect();
    npys.sort();
    let names: Vec<String> = results.keys().cloned().collect();
    assert_eq!(names, npys, "C results vs replay's .npy files");
    for name in &npys {
        let path = replayed.join(format!("{name}.npy"));
        // Complex arrays (object, probe) come to C as interleaved (re, im) pairs.
        let (shape, data): (Vec<usize>, Vec<f32>) = match ptyflow::output::read_npy::<f32>(&path) {
            Ok(real) => real,
            Err(_) => {
                let (mut shape, z) =
                    ptyflow::output::read_npy::<num_complex::Complex32>(&path).unwrap();
                shape.push(2);
                (shape, z.iter().flat_map(|v| [v.re, v.im]).collect())
            }
        };
        let (c_shape, c_data) = &results[name];
        assert_eq!(&shape, c_shape, "{name}: shape");
        for (k, (a, b)) in data.iter().zip(c_data).enumerate() {
            // Both sides sum integers exactly: equal bits expected (any NaN matches a NaN).
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{name}[{k}]: replay {a}, C {b}"
            );
        }
        assert!(
            data.iter().any(|v| *v != 0.0),
            "{name} is all zero: a weak comparison"
        );
    }
}

#[test]
fn issue_7_c_client_matches_replay() {
    if !have("cc") {
        eprintln!("skipping the C client test: no `cc` on PATH");
        return;
    }
    let staticlib = newest_library(|n| is_lib(n, "a")).expect(
        "libptyflow.a not found next to the test binary or in $CARGO_TARGET_DIR: \
         cargo builds it with the `ptyflow` dependency (crate-type staticlib)",
    );
    eprintln!("linking {}", staticlib.display());
    let tmp = tempfile::tempdir().unwrap();
    let fx = fixture();
    let replayed = replay_into(&fx, &tmp.path().join("replay"));

    let exe = tmp.path().join("capi_client_static");
    // libstdc++: the DECTRIS receiver links libzmq (C++, built from source by zmq-sys).
    let system_libs = ["-lpthread", "-ldl", "-lm", "-lstdc++"].map(String::from);
    let mut link = vec![staticlib.display().to_string()];
    link.extend(system_libs.iter().cloned());
    compile(&exe, &link);
    let out = run_client(&exe, &[], &fx, &tmp.path().join("c_static"), None);
    assert_same_as_replay(&out, &replayed);

    // The shared library, linked as a user would (-L… -lptyflow) and found at run time via
    // LD_LIBRARY_PATH. Copied under its plain name so -lptyflow picks exactly this file.
    match newest_library(|n| is_lib(n, "so")) {
        None => eprintln!("no libptyflow.so built: the dynamic link is not tested"),
        Some(so) => {
            let libdir = tmp.path().join("lib");
            std::fs::create_dir_all(&libdir).unwrap();
            std::fs::copy(&so, libdir.join("libptyflow.so")).unwrap();
            let exe = tmp.path().join("capi_client_dynamic");
            let mut link = vec![format!("-L{}", libdir.display()), "-lptyflow".to_string()];
            link.extend(system_libs.iter().cloned());
            compile(&exe, &link);
            let out = run_client(
                &exe,
                &[],
                &fx,
                &tmp.path().join("c_dynamic"),
                Some(("LD_LIBRARY_PATH", &libdir)),
            );
            assert_same_as_replay(&out, &replayed);
        }
    }

    if have("valgrind") {
        let out = run_client(
            &tmp.path().join("capi_client_static"),
            &[
                "valgrind",
                "--quiet",
                "--error-exitcode=99",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite,indirect",
            ],
            &fx,
            &tmp.path().join("c_valgrind"),
            None,
        );
        assert_same_as_replay(&out, &replayed);
    } else {
        eprintln!("skipping the valgrind run of the C client: no `valgrind` on PATH");
    }
}
