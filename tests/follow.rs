//! `replay --follow` (issue 16): a raw dump read while a writer thread appends the fixture's
//! frames at a set rate, some of them in two halves with a pause between (a torn frame, the
//! last one included). Every frame must be processed once it is whole and never before: the
//! outputs are bit-identical to a replay of the finished file. A writer that stops early ends
//! the run after the idle timeout with the frames that arrived written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ptyflow::job::{Hooks, JobConfig, Progress};
use ptyflow::output::read_npy;
use ptyflow::pipeline::detectors::VirtualSpec;

const FRAMES: usize = 100;
const FRAME_BYTES: usize = 96 * 96 * 2;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/mos2-defocus/scan.raw")
}

/// The job on `dump` (the fixture's sidecar beside it): three detectors around a given disc,
/// two workers, small batches.
fn config(dump: &Path, out: &Path, follow: bool) -> JobConfig {
    let mut c = JobConfig::dump(dump);
    c.reduce.detectors = ["bf", "adf:14:24", "com"]
        .iter()
        .map(|s| s.parse::<VirtualSpec>().unwrap())
        .collect();
    c.reduce.center = Some([47.5, 47.5]);
    c.reduce.bf_radius = Some(12.0);
    c.run.threads = Some(2);
    c.run.batch_frames = Some(8);
    c.out = Some(out.to_owned());
    if let ptyflow::job::Source::Dump(d) = &mut c.source {
        d.follow = follow;
        d.idle_timeout_s = follow.then_some(0.4);
    }
    c
}

/// Counts the progress calls that say the replay waits for frames.
#[derive(Default)]
struct Waits(AtomicU64);

impl Progress for Waits {
    fn start(&self, _: &str, _: u64) {}
    fn set(&self, _: u64) {}
    fn finish(&self) {}
    fn waiting(&self, waiting: bool) {
        if waiting {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An empty `scan.raw` with the fixture's sidecar in `dir`, and a writer thread that appends
/// the first `upto` fixture frames, one per 2 ms; every 10th frame and the last one are
/// written in two parts 30 ms apart. With `torn_tail`, half of the next frame follows and
/// never the rest.
fn grow(dir: &Path, upto: usize, torn_tail: bool) -> (PathBuf, std::thread::JoinHandle<()>) {
    let path = dir.join("scan.raw");
    std::fs::copy(
        fixture().with_extension("raw.json"),
        dir.join("scan.raw.json"),
    )
    .unwrap();
    let mut file = std::fs::File::create(&path).unwrap();
    let bytes = std::fs::read(fixture()).unwrap();
    assert_eq!(bytes.len(), FRAMES * FRAME_BYTES);
    let writer = std::thread::spawn(move || {
        let frame = |i: usize| &bytes[i * FRAME_BYTES..(i + 1) * FRAME_BYTES];
        for i in 0..upto {
            if i % 10 == 3 || i + 1 == upto {
                let (a, b) = frame(i).split_at(FRAME_BYTES / 2 + 7);
                file.write_all(a).unwrap();
                std::thread::sleep(Duration::from_millis(30));
                file.write_all(b).unwrap();
            } else {
                file.write_all(frame(i)).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        if torn_tail {
            file.write_all(&frame(upto)[..FRAME_BYTES / 3]).unwrap();
        }
    });
    (path, writer)
}

fn npy(out: &Path, name: &str) -> Vec<f32> {
    read_npy(&out.join(format!("{name}.npy"))).unwrap().1
}

const OUTPUTS: [&str; 6] = [
    "dose",
    "mean",
    "var",
    "virtual_bf",
    "virtual_adf",
    "virtual_com_x",
];

#[test]
fn issue16_follow_processes_frames_as_they_land_torn_ones_once_whole() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference");
    ptyflow::job::replay(&config(&fixture(), &reference, false), &Hooks::default()).unwrap();

    let growing = dir.path().join("growing");
    std::fs::create_dir(&growing).unwrap();
    let (dump, writer) = grow(&growing, FRAMES, false);
    let out = dir.path().join("out");
    let waits = Arc::new(Waits::default());
    let hooks = Hooks {
        progress: Some(waits.clone()),
        ..Hooks::default()
    };
    let outcome = ptyflow::job::replay(&config(&dump, &out, true), &hooks).unwrap();
    writer.join().unwrap();
    let c = &outcome.report.counters;
    assert_eq!((c.frames_read, c.frames_processed), (100, 100), "{c:?}");
    assert!(
        c.idle_timeout.is_none() && c.source_changed.is_none(),
        "{c:?}"
    );
    assert!(c.waited_s.unwrap() > 0.0, "{c:?}");
    assert!(
        waits.0.load(Ordering::Relaxed) > 0,
        "the progress heard of no wait"
    );
    for name in OUTPUTS {
        let (want, got) = (npy(&reference, name), npy(&out, name));
        assert_eq!(want.len(), got.len(), "{name}");
        for (i, (a, b)) in want.iter().zip(&got).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "{name}[{i}]: {a} vs {b}");
        }
    }
}

#[test]
fn issue16_follow_ends_after_the_idle_timeout_with_what_arrived_written() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference");
    ptyflow::job::replay(&config(&fixture(), &reference, false), &Hooks::default()).unwrap();

    let growing = dir.path().join("growing");
    std::fs::create_dir(&growing).unwrap();
    // 60 whole frames and a third of the 61st, then silence.
    let (dump, writer) = grow(&growing, 60, true);
    let out = dir.path().join("out");
    let started = std::time::Instant::now();
    let outcome = ptyflow::job::replay(&config(&dump, &out, true), &Hooks::default()).unwrap();
    writer.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let c = &outcome.report.counters;
    let idle = c.idle_timeout.as_ref().expect("an idle timeout");
    assert_eq!((idle.frames_expected, idle.frames_received), (100, 60));
    assert_eq!(idle.file_bytes, (60 * FRAME_BYTES + FRAME_BYTES / 3) as u64);
    assert_eq!((c.frames_read, c.frames_processed), (60, 60), "{c:?}");
    assert!(idle.to_string().contains("60 of the 100 frames"), "{idle}");

    // Written: the first 60 positions as in the full replay, NaN after; report.json says so.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["idle_timeout"]["frames_received"], 60);
    for name in ["dose", "virtual_bf", "virtual_adf", "virtual_com_x"] {
        let (want, got) = (npy(&reference, name), npy(&out, name));
        for i in 0..60 {
            assert_eq!(want[i].to_bits(), got[i].to_bits(), "{name}[{i}]");
        }
        assert!(got[60..].iter().all(|v| v.is_nan()), "{name}");
    }
}

#[test]
fn issue16_follow_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let (dump, writer) = grow(dir.path(), 3, false);
    writer.join().unwrap();
    let out = dir.path().join("out");
    // The disc would have to be found from frames still to come.
    let mut c = config(&dump, &out, true);
    c.reduce.center = None;
    let e = ptyflow::job::replay(&c, &Hooks::default()).unwrap_err();
    assert!(e.to_string().contains("reduce.center"), "{e}");
    // An idle timeout without follow.
    let mut c = config(&dump, &out, false);
    if let ptyflow::job::Source::Dump(d) = &mut c.source {
        d.idle_timeout_s = Some(1.0);
    }
    let e = ptyflow::job::replay(&c, &Hooks::default()).unwrap_err();
    assert!(e.to_string().contains("source.dump.follow"), "{e}");
}
