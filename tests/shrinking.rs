//! Issue 16: a dump truncated while the pipeline reads it ends in an error that names the
//! file and the first frame that could not be read, with everything before it processed,
//! never in a SIGBUS. The truncation is done from inside a worker, at a chosen frame, so the
//! tests are deterministic. (The CLI side, exit code 2 and outputs written, is in
//! `host/tests/cli/replay.rs`.)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use ptyflow::pipeline::{OrderedConsumer, RunOptions, Worker, run};
use ptyflow::source::{Dump, Frame, OpenOptions, RawDtype, RawSidecar};

const SIDE: usize = 64;
/// Bytes per frame: 64 × 64 u16 = 8 KiB, two pages.
const STRIDE: u64 = (SIDE * SIDE * 2) as u64;
const FRAMES: usize = 16;

/// Frame `f` holds `f + 1` in every pixel.
fn write_dump(dir: &Path) -> PathBuf {
    let path = dir.join("shrinking.raw");
    let bytes: Vec<u8> = (0..FRAMES)
        .flat_map(|f| std::iter::repeat_n(f as u16 + 1, SIDE * SIDE))
        .flat_map(u16::to_le_bytes)
        .collect();
    std::fs::write(&path, bytes).unwrap();
    RawSidecar::new(SIDE, SIDE, RawDtype::U16)
        .write(&path)
        .unwrap();
    path
}

fn sum(frame: Frame<'_>) -> u64 {
    let Frame::U16(px) = frame else {
        panic!("u16 frames")
    };
    px.iter().map(|&v| u64::from(v)).sum()
}

/// Truncates `path` to `bytes` once, when frame `at` is processed.
struct Truncate {
    at: usize,
    path: PathBuf,
    bytes: u64,
    done: &'static AtomicBool,
}

impl Truncate {
    fn maybe(&self, index: usize) {
        if index == self.at && !self.done.swap(true, Ordering::SeqCst) {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&self.path)
                .unwrap()
                .set_len(self.bytes)
                .unwrap();
        }
    }
}

/// Records the sum of every frame it sees.
struct Sums {
    seen: Vec<(usize, u64)>,
    hook: Option<&'static Truncate>,
}

impl Worker for Sums {
    fn process(&mut self, index: usize, frame: Frame<'_>) -> ptyflow::Result<()> {
        if let Some(h) = self.hook {
            h.maybe(index);
        }
        self.seen.push((index, sum(frame)));
        Ok(())
    }
}

impl OrderedConsumer for Sums {
    fn consume(&mut self, index: usize, frame: Frame<'_>) -> ptyflow::Result<()> {
        self.seen.push((index, sum(frame)));
        Ok(())
    }
}

fn truncate_at(at: usize, path: &Path, bytes: u64) -> &'static Truncate {
    Box::leak(Box::new(Truncate {
        at,
        path: path.to_owned(),
        bytes,
        done: Box::leak(Box::new(AtomicBool::new(false))),
    }))
}

fn options(threads: usize) -> RunOptions {
    RunOptions {
        threads,
        batch_frames: 8,
        ..RunOptions::default()
    }
}

fn intact(index: usize) -> u64 {
    (index as u64 + 1) * (SIDE * SIDE) as u64
}

#[test]
fn issue16_truncated_ahead_of_the_reader_stops_at_the_first_lost_frame() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_dump(dir.path());
    let dump = Dump::open(&path, &OpenOptions::default()).unwrap();
    // While frame 2 is processed, the file shrinks to 11¼ frames.
    let hook = truncate_at(2, &path, 11 * STRIDE + STRIDE / 4);
    let make = || {
        Ok(Sums {
            seen: Vec::new(),
            hook: Some(hook),
        })
    };
    let (workers, counters) = run(&dump, make, None, &options(1)).unwrap();
    let c = counters.source_changed.expect("the change is reported");
    assert_eq!((c.frame, c.offset, c.processed_after), (11, 11 * STRIDE, 0));
    assert_eq!(c.file_bytes, 11 * STRIDE + STRIDE / 4);
    assert!(c.path.ends_with("shrinking.raw"));
    assert_eq!(counters.frames_processed, 11);
    let want: Vec<(usize, u64)> = (0..11).map(|i| (i, intact(i))).collect();
    assert_eq!(
        workers[0].seen, want,
        "frames 0..11 processed, nothing after"
    );
    let msg = ptyflow::Error::Changed(c).to_string();
    assert!(
        msg.contains("shrinking.raw") && msg.contains("frame 11 (at byte 90112)"),
        "{msg}"
    );
}

#[test]
fn issue16_truncated_under_a_batch_reads_zeros_and_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_dump(dir.path());
    let dump = Dump::open(&path, &OpenOptions::default()).unwrap();
    // While frame 9 is processed (batch 8..16 already checked), the file shrinks to 10¼
    // frames: frames 11..16 lie past the end; reading them faults and the guard maps zeros.
    let hook = truncate_at(9, &path, 10 * STRIDE + STRIDE / 4);
    let make = || {
        Ok(Sums {
            seen: Vec::new(),
            hook: Some(hook),
        })
    };
    let (workers, counters) = run(&dump, make, None, &options(1)).unwrap();
    let c = counters.source_changed.expect("the change is reported");
    assert_eq!(c.frame, 10);
    assert_eq!(c.fault_offset, Some(10 * STRIDE + STRIDE / 2));
    assert_eq!(
        c.processed_after, 6,
        "frames 10..16 were read as the file shrank"
    );
    let seen = &workers[0].seen;
    assert_eq!(seen.len(), FRAMES);
    for &(i, s) in seen {
        match i {
            0..=9 => assert_eq!(s, intact(i), "frame {i}"),
            // Frame 10 holds the new end: its first quarter is intact, the rest reads 0.
            10 => {}
            _ => assert_eq!(s, 0, "frame {i} lies past the new end"),
        }
    }
}

#[test]
fn issue16_two_workers_and_the_in_order_consumer_keep_every_frame_before_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_dump(dir.path());
    let dump = Dump::open(&path, &OpenOptions::default()).unwrap();
    let hook = truncate_at(3, &path, 11 * STRIDE + STRIDE / 4);
    let make = || {
        Ok(Sums {
            seen: Vec::new(),
            hook: Some(hook),
        })
    };
    let mut consumer = Sums {
        seen: Vec::new(),
        hook: None,
    };
    let (workers, counters) = run(&dump, make, Some(&mut consumer), &options(2)).unwrap();
    let c = counters.source_changed.expect("the change is reported");
    assert_eq!(c.frame, 11);
    let mut all: Vec<(usize, u64)> = workers.iter().flat_map(|w| w.seen.clone()).collect();
    all.sort();
    // Every frame before the loss exactly once, intact; any after it was read as it shrank.
    let before: Vec<_> = all.iter().copied().filter(|&(i, _)| i < 11).collect();
    assert_eq!(before, (0..11).map(|i| (i, intact(i))).collect::<Vec<_>>());
    assert_eq!(c.processed_after as usize, all.len() - 11);
    // The consumer saw frames in order, the ones before the loss intact.
    let order: Vec<usize> = consumer.seen.iter().map(|&(i, _)| i).collect();
    assert_eq!(order, (0..order.len()).collect::<Vec<_>>());
    assert!(order.len() >= 11, "{order:?}");
    for &(i, s) in consumer.seen.iter().filter(|&&(i, _)| i < 11) {
        assert_eq!(s, intact(i), "consumed frame {i}");
    }
}
