//! Faults under load (issue 16), the `ptyflow` binary as a process on the fixture's 10 × 10
//! scan: a reduction worker that panics mid-run (through the `PTYFLOW_FAULT_PANIC_AT` test
//! hook) and an output folder that is sabotaged while the replay runs. Each must end with a
//! clear error and its exit code, no panic escaping and no hang, and every output that can
//! still be written written.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ptyflow::output::read_npy;
use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/mos2-defocus/scan.raw")
}

/// `ptyflow replay` of the fixture into `out` with `extra` flags and `env`, as a child.
fn replay(out: &Path, extra: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_ptyflow"))
        .arg("replay")
        .arg(fixture())
        .arg("--out")
        .arg(out)
        .args([
            "--virtual",
            "bf",
            "--threads",
            "2",
            "--batch",
            "4",
            "--quiet",
        ])
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (at most 20 s) for `child`; its exit code and standard error.
fn finish(mut child: std::process::Child) -> (i32, String) {
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ptyflow still running after 20 s: it hangs");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code().expect("ptyflow exited by a signal"), stderr)
}

fn report(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

#[test]
fn issue16_a_worker_that_panics_exits_70_with_the_survivors_outputs_written() {
    let dir = tempfile::tempdir().unwrap();
    let (good, bad) = (dir.path().join("good"), dir.path().join("bad"));
    let (code, stderr) = finish(replay(&good, &[], &[]));
    assert_eq!(code, 0, "{stderr}");
    // Position 37 lies in the batch 36..40; the worker that takes it dies there.
    let (code, stderr) = finish(replay(&bad, &[], &[("PTYFLOW_FAULT_PANIC_AT", "37")]));
    assert_eq!(code, 70, "{stderr}");
    assert!(
        stderr.contains("reduction worker thread panicked")
            && stderr.contains("fault injected at position 37")
            && stderr.contains("frames processed before it were written into"),
        "{stderr}"
    );
    let r = report(&bad);
    let c = &r;
    assert!(
        c["failure"].as_str().unwrap().contains("position 37"),
        "{c}"
    );
    let processed = c["frames_processed"].as_u64().unwrap() as usize;
    assert!(processed > 0 && processed < 100, "{c}");

    // Every position kept holds exactly the clean run's values; the others are NaN, 36..40
    // among them, and the kept ones are as many as the report counts.
    for name in ["dose", "virtual_bf"] {
        let (_, want) = read_npy::<f32>(&good.join(format!("{name}.npy"))).unwrap();
        let (shape, got) = read_npy::<f32>(&bad.join(format!("{name}.npy"))).unwrap();
        assert_eq!(shape, vec![10, 10]);
        let kept: Vec<usize> = (0..100).filter(|&i| got[i].is_finite()).collect();
        assert_eq!(kept.len(), processed, "{name}");
        for &i in &kept {
            assert_eq!(got[i].to_bits(), want[i].to_bits(), "{name} at {i}");
        }
        assert!(
            (36..40).all(|i| got[i].is_nan()),
            "{name}: {:?}",
            &got[36..40]
        );
    }
    assert!(bad.join("mean.npy").is_file() && bad.join("var.npy").is_file());
}

/// Waits until the replay has made its output folder (set-up done, frames flowing).
fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.is_dir() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn issue16_an_output_file_taken_mid_run_is_named_and_the_others_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // 100 frames at 100 frames/s: a second of run to sabotage the folder in.
    let child = replay(&out, &["--fps", "100"], &[]);
    wait_for(&out);
    // Root can write anywhere, so permissions cannot make a file unwritable: a folder where
    // the output file goes can.
    std::fs::create_dir(out.join("dose.npy")).unwrap();
    let (code, stderr) = finish(child);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("dose.npy"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for name in [
        "mean.npy",
        "var.npy",
        "dose.png",
        "virtual_bf.npy",
        "report.json",
    ] {
        assert!(out.join(name).is_file(), "{name} not written: {stderr}");
    }
    let r = report(&out);
    let errors = r["write_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{r}");
    assert!(errors[0].as_str().unwrap().contains("dose.npy"), "{r}");
    let outputs: Vec<&str> = r["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(!outputs.contains(&"dose.npy") && outputs.contains(&"dose.png"));
    assert_eq!(r["frames_processed"], 100);
}

#[test]
fn issue16_an_output_folder_replaced_by_a_file_mid_run_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let child = replay(&out, &["--fps", "100"], &[]);
    wait_for(&out);
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::write(&out, b"not a folder").unwrap();
    let (code, stderr) = finish(child);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("output files could not be written")
            && stderr.contains("mean.npy")
            && stderr.contains("report.json"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(std::fs::read(&out).unwrap(), b"not a folder");
}

#[test]
fn issue16_follow_idle_timeout_exits_2_with_frames_expected_and_received() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("scan.raw");
    let bytes = std::fs::read(fixture()).unwrap();
    // 30 of the 100 frames and a torn 31st; nobody writes more.
    let frame = bytes.len() / 100;
    std::fs::write(&dump, &bytes[..30 * frame + frame / 2]).unwrap();
    std::fs::copy(
        fixture().with_extension("raw.json"),
        dir.path().join("scan.raw.json"),
    )
    .unwrap();
    let out = dir.path().join("out");
    let child = Command::new(env!("CARGO_BIN_EXE_ptyflow"))
        .arg("replay")
        .arg(&dump)
        .arg("--out")
        .arg(&out)
        .args(["--follow", "--idle-timeout", "0.3", "--quiet"])
        .args([
            "--virtual",
            "bf",
            "--center",
            "47.5,47.5",
            "--bf-radius",
            "12",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, stderr) = finish(child);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no new frame for 0.3 s") && stderr.contains("30 of the 100 frames"),
        "{stderr}"
    );
    let r = report(&out);
    assert_eq!(r["frames_processed"], 30, "{r}");
    assert_eq!(r["idle_timeout"]["frames_expected"], 100, "{r}");
    let (_, dose) = read_npy::<f32>(&out.join("dose.npy")).unwrap();
    assert!(dose[..30].iter().all(|v| v.is_finite()) && dose[30..].iter().all(|v| v.is_nan()));
    // Without --follow the same file is refused at open (not a whole number of frames).
    let (code, stderr) = finish(
        Command::new(env!("CARGO_BIN_EXE_ptyflow"))
            .arg("replay")
            .arg(&dump)
            .arg("--out")
            .arg(dir.path().join("out2"))
            .arg("--quiet")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not a whole number of frames"), "{stderr}");
}
