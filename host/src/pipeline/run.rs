//! The threads of a replay: one reader (the calling thread) hands out batches of frame indices
//! over bounded channels to N reduction workers and, when asked, to one in-order consumer (the
//! online reconstruction). Workers read their frames straight from the memory map (zero copy
//! when the layout allows), so a message is two integers, never pixel data.
//!
//! Backpressure, not loss: the channels are bounded, a slow stage blocks the reader, and
//! nothing is dropped. Shutdown is by dropping the senders. An interrupt (Ctrl-C) stops the
//! reader between batches; what was handed out is still processed and reported.
//!
//! A dump that shrinks while it is read stops the run the same way: every batch is checked
//! before and after it is processed ([`Dump::check_frames`]); the first frame that could not be
//! read ends up in [`Counters::source_changed`], the reader stops handing out batches, the
//! frames before it are all processed, and the caller writes what was computed and then
//! reports the error.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

use super::positions::PatternReader;
use crate::source::{Dump, Frame, SourceChanged};
use crate::{Error, Result};

/// A reduction worker: built once per thread, fed frames in any order.
pub trait Worker: Send {
    /// Processes frame `index`. Must not allocate, lock or do I/O.
    fn process(&mut self, index: usize, frame: Frame<'_>) -> Result<()>;
}

/// A consumer that sees every frame in scan order (the online reconstruction).
pub trait OrderedConsumer: Send {
    /// Consumes frame `index`; called with indices 0, 1, 2, … in order.
    fn consume(&mut self, index: usize, frame: Frame<'_>) -> Result<()>;
}

/// Progress of a long stage (frames replayed, sweeps run), shown by a face: the CLI draws a
/// bar, a library caller may log or ignore it. Called from the thread that runs the stage.
pub trait Progress: Send + Sync {
    /// A stage of `total` steps (`what`: "frames", "sweeps") begins.
    fn start(&self, what: &str, total: u64);
    /// `done` of the stage's steps are done.
    fn set(&self, done: u64);
    /// The stage is over.
    fn finish(&self);
}

/// Reports progress to `progress`, when there is one.
pub(crate) fn report(progress: Option<&dyn Progress>, f: impl FnOnce(&dyn Progress)) {
    if let Some(p) = progress {
        f(p);
    }
}

/// The results of the threads of one stage, joined: each thread's value and busy time, or
/// its error. A thread that panicked or whose channel closed early becomes
/// [`Error::Pipeline`] naming the stage; the first error wins.
pub(crate) struct Joined<W> {
    /// The values of the threads that finished.
    pub values: Vec<W>,
    /// Their summed busy time.
    pub busy: Duration,
    /// The first error met.
    pub first_error: Option<Error>,
}

impl<W> Joined<W> {
    /// Joins `results` (from `JoinHandle::join` of scoped or unscoped threads) of `stage`.
    pub fn collect(
        stage: &str,
        results: impl IntoIterator<Item = std::thread::Result<Result<(W, Duration)>>>,
        first_error: Option<Error>,
    ) -> Self {
        let mut joined = Joined {
            values: Vec::new(),
            busy: Duration::ZERO,
            first_error,
        };
        for r in results {
            match r {
                Ok(Ok((w, busy))) => {
                    joined.busy += busy;
                    joined.values.push(w);
                }
                Ok(Err(e)) => {
                    joined.first_error.get_or_insert(e);
                }
                Err(payload) => {
                    let what = crate::error::panic_message(payload.as_ref());
                    joined.first_error.get_or_insert(Error::Pipeline(format!(
                        "a {stage} thread panicked (a bug in ptyflow, please report it): {what}"
                    )));
                }
            }
        }
        joined
    }
}

/// How to run the threads.
#[derive(Clone)]
pub struct RunOptions {
    /// Reduction worker threads (≥ 1).
    pub threads: usize,
    /// Frames per channel message.
    pub batch_frames: usize,
    /// Emulate a detector: hand out frames at this rate (frames per second).
    pub fps: Option<f64>,
    /// Process only the first `limit` frames.
    pub limit: Option<usize>,
    /// Where to report progress (`None`: nowhere).
    pub progress: Option<Arc<dyn Progress>>,
    /// Set from outside (Ctrl-C) to stop after the current batch.
    pub interrupt: Arc<AtomicBool>,
    /// The memory the job may use, checked before the first frame ([`crate::budget`]).
    /// `None`: `PTYFLOW_MEMORY_BUDGET`, else 75 % of physical memory.
    pub memory_budget: Option<crate::budget::MemoryBudget>,
    /// Frames per scan position and how many are summed; indices handed out are positions.
    pub grouping: super::positions::Grouping,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("threads", &self.threads)
            .field("batch_frames", &self.batch_frames)
            .field("fps", &self.fps)
            .field("limit", &self.limit)
            .field("progress", &self.progress.is_some())
            .field("interrupt", &self.interrupt)
            .field("memory_budget", &self.memory_budget)
            .field("grouping", &self.grouping)
            .finish()
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            batch_frames: 64,
            fps: None,
            limit: None,
            progress: None,
            interrupt: Arc::new(AtomicBool::new(false)),
            memory_budget: None,
            grouping: super::positions::Grouping::default(),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counters {
    /// Frames handed out by the reader.
    pub frames_read: u64,
    /// Frames reduced by the workers.
    pub frames_processed: u64,
    /// Frames the in-order consumer saw (0 without one).
    pub frames_consumed: u64,
    /// Frames dropped: always 0 (the pipeline blocks instead of dropping).
    pub frames_dropped: u64,
    /// Wall time of the run in seconds.
    pub wall_s: f64,
    /// Summed busy time of the reduction workers in seconds.
    pub reduce_busy_s: f64,
    /// Busy time of the in-order consumer in seconds.
    pub consume_busy_s: f64,
    /// Time the reader spent blocked on full queues, in seconds.
    pub reader_blocked_s: f64,
    /// True when the run was interrupted before the end of the dump.
    pub interrupted: bool,
    /// Set when the dump shrank while it was read: the first frame that could not be read.
    /// Frames before it were all processed; the run stopped handing out frames when it saw it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_changed: Option<SourceChanged>,
}

/// The first frame lost to a dump that shrank, shared by the threads of a run.
#[derive(Debug, Default)]
struct Changed {
    first: std::sync::Mutex<Option<SourceChanged>>,
    seen: AtomicBool,
}

impl Changed {
    /// Keeps the lowest lost frame.
    fn record(&self, c: SourceChanged) {
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        if first.as_ref().is_none_or(|f| c.frame < f.frame) {
            *first = Some(c);
        }
        self.seen.store(true, Ordering::Relaxed);
    }
}

/// Runs one batch `first..end` of positions (`k` frames each) through `each`, checking the
/// dump's frames of those positions before and after ([`Dump::check_frames`]). Frames the file no longer holds are not processed; frames that
/// were processed while it shrank are reported. Returns the frames processed and whether the
/// batch lost any. A frame that fails to read because the file shrank reports the change, not
/// the read error.
fn checked_batch(
    dump: &Dump,
    (first, batch_end): (usize, usize),
    k: usize,
    changed: &Changed,
    mut each: impl FnMut(usize) -> Result<()>,
) -> Result<(usize, bool)> {
    let frames = |a: usize, b: usize| a * k..b * k;
    let as_changed =
        |e: Error, upto: usize| match dump.check_frames(frames(first, upto.max(first + 1))) {
            Err(Error::Changed(c)) => {
                changed.record(c);
                Ok(())
            }
            _ => Err(e),
        };
    let end = match dump.check_frames(frames(first, batch_end)) {
        Ok(()) => batch_end,
        Err(Error::Changed(c)) => {
            let stop = c.frame / k;
            changed.record(c);
            stop
        }
        Err(e) => return Err(e),
    };
    for index in first..end {
        if let Err(e) = each(index) {
            as_changed(e, index + 1)?;
            return Ok((index - first, true));
        }
    }
    if let Err(e) = dump.check_frames(frames(first, end)) {
        as_changed(e, end)?;
        return Ok((end - first, true));
    }
    Ok((end - first, end < batch_end))
}

/// Runs `dump` through one worker per thread (made by `make_worker`) and the optional in-order
/// consumer. Returns the workers (to be merged by the caller) and the counters.
pub fn run<W, F>(
    dump: &Dump,
    make_worker: F,
    mut consumer: Option<&mut dyn OrderedConsumer>,
    opts: &RunOptions,
) -> Result<(Vec<W>, Counters)>
where
    W: Worker,
    F: Fn() -> Result<W>,
{
    let threads = opts.threads.max(1);
    let batch = opts.batch_frames.max(1);
    let patterns = dump.info().frames / opts.grouping.per_position;
    let total = opts.limit.map_or(patterns, |l| l.min(patterns));
    let workers: Vec<W> = (0..threads).map(|_| make_worker()).collect::<Result<_>>()?;

    let processed = AtomicU64::new(0);
    let consumed = AtomicU64::new(0);
    let changed = Changed::default();
    let k = opts.grouping.per_position;
    let progress = opts.progress.as_deref();
    report(progress, |p| p.start("frames", total as u64));
    let start = Instant::now();

    let (work_tx, work_rx) = bounded::<(usize, usize)>(2 * threads);
    let (order_tx, order_rx) = bounded::<(usize, usize)>(4);
    let with_consumer = consumer.is_some();

    let outcome = std::thread::scope(|s| -> Result<(Vec<W>, Counters)> {
        let processed = &processed;
        let consumed = &consumed;
        let changed = &changed;
        // A thread the system cannot start (`--threads` too large) is an error, not a panic.
        let spawn_err =
            |e| Error::memory("run.threads", format!("starting a thread: {e}"), None, None);
        let handles: Vec<_> = workers
            .into_iter()
            .map(|mut worker| {
                let rx = work_rx.clone();
                std::thread::Builder::new().spawn_scoped(s, move || -> Result<(W, Duration)> {
                    let mut reader = PatternReader::new(dump, opts.grouping)?;
                    let mut busy = Duration::ZERO;
                    // Measured and dropped (issue 6, 256 × 256 u16, bin 4 + 16 detectors, 2
                    // workers): software-prefetching the next frame here (W1 from the map 91k
                    // -> 62k frames/s), and having the reader pre-fault each batch's pages
                    // before sending it (replay of a 2 GB dump 113k -> 80k: one thread faulting
                    // is slower than two workers faulting in parallel).
                    for batch in rx {
                        let t = Instant::now();
                        let (done, _) = checked_batch(dump, batch, k, changed, |index| {
                            worker.process(index, reader.pattern(index)?)
                        })?;
                        busy += t.elapsed();
                        processed.fetch_add(done as u64, Ordering::Relaxed);
                    }
                    Ok((worker, busy))
                })
            })
            .collect::<std::io::Result<_>>()
            .map_err(spawn_err)?;
        drop(work_rx);

        let consumer_handle = consumer.take().map(|c| {
            let rx = order_rx.clone();
            std::thread::Builder::new().spawn_scoped(s, move || -> Result<Duration> {
                let mut reader = PatternReader::new(dump, opts.grouping)?;
                let mut busy = Duration::ZERO;
                let mut lost = false;
                for batch in rx {
                    // In order: after the first lost frame, none is consumed.
                    if lost {
                        continue;
                    }
                    let t = Instant::now();
                    let done;
                    (done, lost) = checked_batch(dump, batch, k, changed, |index| {
                        c.consume(index, reader.pattern(index)?)
                    })?;
                    busy += t.elapsed();
                    consumed.fetch_add(done as u64, Ordering::Relaxed);
                }
                Ok(busy)
            })
        });
        let consumer_handle = consumer_handle.transpose().map_err(spawn_err)?;
        drop(order_rx);

        // The reader: hand out batches, paced if asked, until the end or an interrupt.
        let mut read = 0usize;
        let mut blocked = Duration::ZERO;
        let mut interrupted = false;
        while read < total {
            if opts.interrupt.load(Ordering::Relaxed) {
                interrupted = true;
                break;
            }
            if changed.seen.load(Ordering::Relaxed) {
                break;
            }
            let end = (read + batch).min(total);
            if let Some(fps) = opts.fps {
                let due = start + Duration::from_secs_f64(read as f64 / fps);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            let t = Instant::now();
            // A closed channel means a stage failed; its error is collected below.
            if work_tx.send((read, end)).is_err() {
                break;
            }
            if with_consumer && order_tx.send((read, end)).is_err() {
                break;
            }
            blocked += t.elapsed();
            read = end;
            report(progress, |p| p.set(processed.load(Ordering::Relaxed)));
        }
        drop(work_tx);
        drop(order_tx);

        let reduce = Joined::collect(
            "reduction worker",
            handles.into_iter().map(|h| h.join()),
            None,
        );
        let consume = Joined::collect(
            "reconstruction",
            consumer_handle.map(|h| h.join().map(|r| r.map(|busy| ((), busy)))),
            reduce.first_error,
        );
        if let Some(e) = consume.first_error {
            return Err(e);
        }
        let (finished, reduce_busy, consume_busy) = (reduce.values, reduce.busy, consume.busy);
        report(progress, |p| p.finish());
        let counters = Counters {
            frames_read: read as u64,
            frames_processed: processed.load(Ordering::Relaxed),
            frames_consumed: consumed.load(Ordering::Relaxed),
            frames_dropped: 0,
            wall_s: start.elapsed().as_secs_f64(),
            reduce_busy_s: reduce_busy.as_secs_f64(),
            consume_busy_s: consume_busy.as_secs_f64(),
            reader_blocked_s: blocked.as_secs_f64(),
            interrupted,
            source_changed: None,
        };
        Ok((finished, counters))
    })?;
    let (workers, mut counters) = outcome;
    if let Some(mut c) = changed
        .first
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
    {
        // Every frame before the first lost one was processed exactly once.
        c.processed_after = counters.frames_processed.saturating_sub(c.frame as u64);
        counters.source_changed = Some(c);
        return Ok((workers, counters));
    }
    if counters.frames_processed != counters.frames_read {
        return Err(Error::Pipeline(format!(
            "{} frames read but {} processed",
            counters.frames_read, counters.frames_processed
        )));
    }
    Ok((workers, counters))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{Dump, OpenOptions};

    /// A worker that panics ends a replay with [`Error::Pipeline`], naming the stage and the
    /// panic; the reader stops handing out frames instead of hanging.
    #[test]
    fn a_panicking_worker_is_a_pipeline_failure_not_an_interrupt() {
        #[derive(Debug)]
        struct Boom;
        impl Worker for Boom {
            fn process(&mut self, index: usize, _: Frame<'_>) -> Result<()> {
                if index == 5 {
                    panic!("boom at frame {index}");
                }
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.raw");
        std::fs::write(&path, vec![0u8; 64 * 16]).unwrap();
        std::fs::write(
            dir.path().join("d.raw.json"),
            r#"{"format": "raw", "width": 4, "height": 4, "dtype": "u8"}"#,
        )
        .unwrap();
        let dump = Dump::open(&path, &OpenOptions::default()).unwrap();
        let opts = RunOptions {
            threads: 2,
            batch_frames: 2,
            ..RunOptions::default()
        };
        let e = run(&dump, || Ok(Boom), None, &opts).unwrap_err();
        assert!(matches!(e, Error::Pipeline(_)), "{e:?}");
        assert!(e.to_string().contains("reduction worker") && e.to_string().contains("boom"));
        assert_eq!(e.exit_code(), 70);
    }

    /// A consumer far slower than the reduction: the reader waits for it (bounded channels),
    /// nothing is dropped, every frame is reduced and consumed, in order.
    #[test]
    fn a_slow_consumer_sees_every_frame_in_order() {
        #[derive(Debug)]
        struct Count;
        impl Worker for Count {
            fn process(&mut self, _: usize, _: Frame<'_>) -> Result<()> {
                Ok(())
            }
        }
        struct Slow(Vec<usize>);
        impl OrderedConsumer for Slow {
            fn consume(&mut self, index: usize, _: Frame<'_>) -> Result<()> {
                std::thread::sleep(Duration::from_micros(300));
                self.0.push(index);
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.raw");
        std::fs::write(&path, vec![1u8; 200 * 16]).unwrap();
        std::fs::write(
            dir.path().join("d.raw.json"),
            r#"{"format": "raw", "width": 4, "height": 4, "dtype": "u8"}"#,
        )
        .unwrap();
        let dump = Dump::open(&path, &OpenOptions::default()).unwrap();
        let opts = RunOptions {
            threads: 2,
            batch_frames: 4,
            ..RunOptions::default()
        };
        let mut slow = Slow(Vec::new());
        let (_, c) = run(&dump, || Ok(Count), Some(&mut slow), &opts).unwrap();
        assert_eq!(
            (c.frames_read, c.frames_processed, c.frames_consumed),
            (200, 200, 200)
        );
        assert_eq!(c.frames_dropped, 0);
        assert_eq!(slow.0, (0..200).collect::<Vec<_>>());
        assert!(
            c.reader_blocked_s > 0.0,
            "the reader waited for the consumer"
        );
    }
}
