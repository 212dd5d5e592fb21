//! `ptyflow live --dectris` against an independent peer on loopback: `tests/peers/
//! dectris_peer.py` (pyzmq's PUSH socket, frames compressed by the bitshuffle library through
//! hdf5plugin's HDF5 filter) sending the bundled fixture as a SIMPLON stream (version 1).
//! `live` must give exactly what `replay` gives on the same dump, every `.npy` bit for bit.
//! Skips with a message when the peer's Python packages are missing (`.ci/run` installs them).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::live::{job, matches_replay, report, same_npy};
use super::ptyflow;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `$PTYFLOW_PYTHON` (set by `.ci/run`), else `python3`, when it has the peer's packages;
/// `None` with a message otherwise.
fn python() -> Option<PathBuf> {
    let py =
        std::env::var_os("PTYFLOW_PYTHON").map_or_else(|| PathBuf::from("python3"), PathBuf::from);
    let ok = Command::new(&py)
        .args(["-c", "import numpy, zmq, h5py, hdf5plugin"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "skipping: {} lacks numpy, pyzmq, h5py or hdf5plugin (pip install numpy pyzmq \
             hdf5plugin, or set PTYFLOW_PYTHON)",
            py.display()
        );
        return None;
    }
    Some(py)
}

/// The peer process, killed when the test ends however it ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the peer on the fixture with `args`; returns it and the address it listens on.
fn peer(py: &PathBuf, args: &[&str]) -> (Peer, String) {
    let mut child = Command::new(py)
        .arg(root().join("tests/peers/dectris_peer.py"))
        .arg(root().join("fixtures/mos2-defocus/scan.raw"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the DECTRIS peer");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("the peer printed `{line}`, not its port"));
    (Peer(child), format!("127.0.0.1:{port}"))
}

#[test]
fn live_dectris_bslz4_matches_replay_bit_for_bit() {
    let Some(py) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (rep, liv) = (dir.path().join("replay"), dir.path().join("live"));
    let raw = root().join("fixtures/mos2-defocus/scan.raw");
    let r = job(&[
        "replay",
        raw.to_str().unwrap(),
        "--out",
        rep.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (mut peer, address) = peer(&py, &[]);
    let l = job(&[
        "live",
        "--dectris",
        &address,
        "--timeout",
        "60",
        "--out",
        liv.to_str().unwrap(),
    ]);
    assert_eq!(l.code, 0, "{}", l.stderr);
    assert!(peer.0.wait().unwrap().success(), "the peer failed");
    let report = matches_replay(&rep, &liv);
    assert_eq!(report["live"]["detector"], "dectris");
    assert_eq!(report["live"]["stored_dtype"], "uint16 bs16-lz4<");
    assert!(report["live"]["error"].is_null());
}

#[test]
fn live_dectris_raw_frames_without_header_detail_match_too() {
    let Some(py) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (rep, liv) = (dir.path().join("replay"), dir.path().join("live"));
    let raw = root().join("fixtures/mos2-defocus/scan.raw");
    let common = [
        "--scan",
        "10x10",
        "--virtual",
        "bf",
        "--center",
        "48,48",
        "--bf-radius",
        "30",
        "--threads",
        "2",
        "--quiet",
    ];
    let r = ptyflow(
        [
            "replay",
            raw.to_str().unwrap(),
            "--out",
            rep.to_str().unwrap(),
        ]
        .iter()
        .chain(&common),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (_peer, address) = peer(&py, &["--encoding", "raw", "--header-detail", "none"]);
    let l = ptyflow(
        [
            "live",
            "--dectris",
            &address,
            "--timeout",
            "60",
            "--out",
            liv.to_str().unwrap(),
        ]
        .iter()
        .chain(&common),
    );
    assert_eq!(l.code, 0, "{}", l.stderr);
    assert!(same_npy(&rep, &liv).len() >= 4);
    let report = report(&liv);
    assert_eq!(report["live"]["frames_received"], 100);
    assert!(report["live"]["acquisition_frames"].is_null());
    assert_eq!(report["live"]["stored_dtype"], "uint16 <");
}

/// The live flags of the truncated runs: detectors only.
fn cut_run(address: &str, out: &std::path::Path, timeout: &str) -> super::Run {
    ptyflow([
        "live",
        "--dectris",
        address,
        "--timeout",
        timeout,
        "--scan",
        "10x10",
        "--virtual",
        "bf",
        "--center",
        "48,48",
        "--bf-radius",
        "30",
        "--threads",
        "2",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ])
}

#[test]
fn a_series_that_ends_early_is_a_clear_error_with_outputs_written() {
    let Some(py) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("live");
    let (_peer, address) = peer(&py, &["--frames", "37"]);
    let l = cut_run(&address, &out, "60");
    assert_eq!(l.code, 2, "{}", l.stderr);
    assert!(
        l.stderr.contains(&address)
            && l.stderr.contains("the series ended after 37 of 100 frames")
            && l.stderr.contains("37 frames received were processed"),
        "{}",
        l.stderr
    );
    let report = report(&out);
    assert_eq!(report["frames_read"], 37);
    assert_eq!(report["frames_processed"], 37);
    for name in ["dose.npy", "mean.npy", "virtual_bf.npy"] {
        assert!(out.join(name).is_file(), "{name} not written");
    }
}

#[test]
fn a_detector_gone_silent_mid_scan_is_a_clear_error_with_outputs_written() {
    let Some(py) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("live");
    let (_peer, address) = peer(&py, &["--frames", "21", "--no-end"]);
    let l = cut_run(&address, &out, "3");
    assert_eq!(l.code, 2, "{}", l.stderr);
    assert!(
        l.stderr.contains(&address)
            && l.stderr
                .contains("after 21 frames, no message within the timeout")
            && l.stderr.contains("21 frames received were processed"),
        "{}",
        l.stderr
    );
    let report = report(&out);
    assert_eq!(report["frames_processed"], 21);
    assert!(out.join("dose.npy").is_file());
}
