//! `ptyflow live --merlin`: against a tiny in-test server speaking the Merlin data-port
//! protocol (loopback only), and against LiberTEM-live's Merlin simulator serving a real
//! `.mib` file when it is installed. `live` must give exactly what `replay` gives on the
//! same file, every `.npy` bit for bit.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

use serde_json::Value;

use super::{ptyflow, write_mib_u16};

/// The `MPX,<10 digits>,` framing of one message (the length counts the trailing comma).
fn mpx(payload: &[u8]) -> Vec<u8> {
    let mut m = format!("MPX,{:010},", payload.len() + 1).into_bytes();
    m.extend_from_slice(payload);
    m
}

/// An acquisition header as a Merlin sends it.
fn hdr(frames: usize) -> Vec<u8> {
    format!(
        "HDR,\t\nTime and Date Stamp (day, mnth, yr, hr, min, s):\t01/12/2026 12:00:00\n\
         Chip ID:\tW529_F5,-,-,-\nFrames in Acquisition (Number):\t{frames}\n\
         Frames per Trigger (Number):\t1\nCounter Depth (number):\t12\nEnd\t"
    )
    .into_bytes()
}

/// Splits a single-layout `.mib` file into its frames (header + pixels each).
fn mib_frames(bytes: &[u8]) -> Vec<&[u8]> {
    let text = String::from_utf8_lossy(&bytes[..64]);
    let f: Vec<&str> = text.split(',').collect();
    let hsize: usize = f[2].parse().unwrap();
    let (w, h): (usize, usize) = (f[4].parse().unwrap(), f[5].parse().unwrap());
    let bpp = match f[6] {
        "U08" => 1,
        "U16" => 2,
        "U32" => 4,
        other => panic!("test server: {other} frames are not served"),
    };
    bytes.chunks(hsize + w * h * bpp).collect()
}

/// Serves `file` once on a loopback port: the acquisition header, then each frame as one
/// message; with `cut = Some(n)`, only `n` whole frames and half of the next, then closes.
fn serve(file: &Path, cut: Option<usize>) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let bytes = std::fs::read(file).unwrap();
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let frames = mib_frames(&bytes);
        let _ = conn.write_all(&mpx(&hdr(frames.len())));
        for (i, frame) in frames.iter().enumerate() {
            let message = mpx(frame);
            if cut == Some(i) {
                let _ = conn.write_all(&message[..message.len() / 2]);
                return;
            }
            if conn.write_all(&message).is_err() {
                return;
            }
        }
    });
    (address, handle)
}

pub(crate) fn report(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

/// Every `.npy` in `a` is in `b` with the same bytes; returns their names.
pub(crate) fn same_npy(a: &Path, b: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(a).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "npy") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let other = b.join(&name);
            assert!(other.is_file(), "{name} written by replay, not by live");
            assert!(
                std::fs::read(&path).unwrap() == std::fs::read(&other).unwrap(),
                "{name} differs between replay and live"
            );
            names.push(name);
        }
    }
    names.sort();
    names
}

/// The bundled fixture (96 × 96 u16, 10 × 10 scan) rewritten as a Merlin `.mib`.
fn fixture_as_mib(path: &Path) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let raw = std::fs::read(root.join("fixtures/mos2-defocus/scan.raw")).unwrap();
    let frames: Vec<Vec<u16>> = raw
        .chunks(96 * 96 * 2)
        .map(|f| {
            f.chunks(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect()
        })
        .collect();
    write_mib_u16(path, 96, 96, &frames);
}

/// The fixture's job: detectors (the disc given: a stream cannot find it) and ePIE with the
/// fixture's optics.
const JOB: &[&str] = &[
    "--scan",
    "10x10",
    "--virtual",
    "bf",
    "--virtual",
    "adf:32:46",
    "--virtual",
    "com",
    "--center",
    "48,48",
    "--bf-radius",
    "30",
    "--recon",
    "epie",
    "--kv",
    "80",
    "--alpha",
    "24",
    "--defocus",
    "800",
    "--mrad-per-px",
    "0.8",
    "--step",
    "2.3",
    "--sweeps",
    "2",
    "--threads",
    "2",
    "--quiet",
];

/// `ptyflow` with `head`, then `JOB`.
/// A live run of the fixture's 100 frames into `liv` wrote every array of the replay into
/// `rep` bit for bit, and its report counts 100 in, 100 processed, none dropped; returns it.
pub(crate) fn matches_replay(rep: &Path, liv: &Path) -> Value {
    let names = same_npy(rep, liv);
    for want in [
        "dose.npy",
        "mean.npy",
        "var.npy",
        "virtual_bf.npy",
        "object.npy",
        "probe.npy",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    let report = report(liv);
    assert_eq!(report["frames_read"], 100);
    assert_eq!(report["frames_processed"], 100);
    assert_eq!(report["frames_dropped"], 0);
    assert_eq!(report["live"]["frames_received"], 100);
    assert_eq!(report["live"]["acquisition_frames"], 100);
    report
}

pub(crate) fn job(head: &[&str]) -> super::Run {
    ptyflow(head.iter().chain(JOB))
}

#[test]
fn live_merlin_matches_replay_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let mib = dir.path().join("scan.mib");
    fixture_as_mib(&mib);
    let (rep, liv) = (dir.path().join("replay"), dir.path().join("live"));
    let r = job(&[
        "replay",
        mib.to_str().unwrap(),
        "--out",
        rep.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (address, server) = serve(&mib, None);
    let l = job(&[
        "live",
        "--merlin",
        &address,
        "--timeout",
        "30",
        "--out",
        liv.to_str().unwrap(),
    ]);
    server.join().unwrap();
    assert_eq!(l.code, 0, "{}", l.stderr);
    let report = matches_replay(&rep, &liv);
    assert!(report["live"]["error"].is_null());
}

#[test]
fn connection_dropped_mid_frame_is_a_clear_error_with_outputs_written() {
    let dir = tempfile::tempdir().unwrap();
    let mib = dir.path().join("scan.mib");
    fixture_as_mib(&mib);
    let out = dir.path().join("live");
    let (address, server) = serve(&mib, Some(37));
    let l = ptyflow([
        "live",
        "--merlin",
        &address,
        "--timeout",
        "30",
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
    ]);
    server.join().unwrap();
    assert_eq!(l.code, 2, "{}", l.stderr);
    assert!(
        l.stderr.contains(&address)
            && l.stderr.contains("mid-frame")
            && l.stderr.contains("frame 37")
            && l.stderr.contains("37 frames received were processed"),
        "{}",
        l.stderr
    );
    let report = report(&out);
    assert_eq!(report["frames_read"], 37);
    assert_eq!(report["frames_processed"], 37);
    assert_eq!(report["live"]["frames_received"], 37);
    assert!(
        report["live"]["error"]
            .as_str()
            .unwrap()
            .contains("mid-frame"),
        "{report}"
    );
    for name in ["dose.npy", "mean.npy", "virtual_bf.npy"] {
        assert!(out.join(name).is_file(), "{name} not written");
    }
}

#[test]
fn no_detector_listening_is_a_clear_error() {
    // A port nobody listens on: bind one, learn its number, close it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let address = format!("127.0.0.1:{port}");
    let l = ptyflow([
        "live",
        "--merlin",
        &address,
        "--timeout",
        "0.3",
        "--scan",
        "2x2",
        "--quiet",
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(l.code, 2, "{}", l.stderr);
    assert!(
        l.stderr.contains(&address) && l.stderr.contains("cannot connect"),
        "{}",
        l.stderr
    );
    let l = ptyflow(["live", "--merlin", "nowhere", "--scan", "2x2", "--out", "o"]);
    assert_eq!(l.code, 2);
    assert!(l.stderr.contains("--merlin"), "{}", l.stderr);
}

/// LiberTEM-live's Merlin simulator: `$PTYFLOW_MERLIN_SIM` (set by `.ci/run`), else
/// `libertem-live-mib-sim` on `PATH`; `None`, with a message, when neither runs.
fn merlin_simulator() -> Option<PathBuf> {
    let sim = std::env::var_os("PTYFLOW_MERLIN_SIM")
        .map_or_else(|| PathBuf::from("libertem-live-mib-sim"), PathBuf::from);
    let ok = Command::new(&sim)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "skipping: LiberTEM-live's Merlin simulator not found at {} (pip install              libertem-live, then set PTYFLOW_MERLIN_SIM to its libertem-live-mib-sim)",
            sim.display()
        );
        return None;
    }
    Some(sim)
}

/// Kills the simulator when the test ends, however it ends.
struct Simulator(Child);

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn live_against_libertem_simulator_matches_replay_on_real_merlin_data() {
    let Some(sim) = merlin_simulator() else {
        return;
    };
    let Some(realdata) = ptyflow_realdata() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let zip = realdata.join("merlin").join("Merlin_navigation4x2_ROI.zip");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip).unwrap()).unwrap();
    archive.extract(dir.path()).unwrap();
    let (hdr, mib) = (
        dir.path().join("001_4x2_6bit.hdr"),
        dir.path().join("001_4x2_6bit.mib"),
    );
    let (data, control, trigger) = (free_port(), free_port(), free_port());
    let _sim = Simulator(
        Command::new(&sim)
            .arg(&hdr)
            .args(["--host", "127.0.0.1", "--data-port", &data.to_string()])
            .args(["--control-port", &control.to_string()])
            .args(["--trigger-port", &trigger.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the simulator"),
    );
    let common = [
        "--scan",
        "4x2",
        "--virtual",
        "bf",
        "--virtual",
        "adf:40:120",
        "--virtual",
        "com",
        "--center",
        "128,128",
        "--bf-radius",
        "30",
        "--threads",
        "2",
        "--quiet",
    ];
    let (rep, liv) = (dir.path().join("replay"), dir.path().join("live"));
    let r = ptyflow(
        [
            "replay",
            mib.to_str().unwrap(),
            "--out",
            rep.to_str().unwrap(),
        ]
        .iter()
        .chain(&common),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The simulator takes a while to start (numba): the connection is retried until the
    // timeout.
    let address = format!("127.0.0.1:{data}");
    let l = ptyflow(
        [
            "live",
            "--merlin",
            &address,
            "--timeout",
            "120",
            "--out",
            liv.to_str().unwrap(),
        ]
        .iter()
        .chain(&common),
    );
    assert_eq!(l.code, 0, "{}", l.stderr);
    let names = same_npy(&rep, &liv);
    assert!(names.len() >= 6, "{names:?}");
    let report = report(&liv);
    assert_eq!(report["live"]["frames_received"], 8);
    assert_eq!(report["live"]["acquisition_frames"], 8);
    assert_eq!(report["frames_dropped"], 0);
}

/// `../shared/realdata` beside the checkout, or `None` with a message.
fn ptyflow_realdata() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/realdata");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: real detector files not found at {}",
            dir.display()
        );
        None
    }
}
