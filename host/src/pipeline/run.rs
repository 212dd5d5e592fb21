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
    /// The stage waits for its source (a dump still being written, `--follow`): `true` when
    /// it starts waiting, `false` when frames come again. The default ignores it.
    fn waiting(&self, waiting: bool) {
        let _ = waiting;
    }
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
    /// Fault injection for tests of the failure paths: the reduction worker that gets
    /// position `n` panics there, after the positions before it in its batch. Checked once
    /// per batch, never per frame. `None` in every real run.
    #[doc(hidden)]
    pub fault_panic_at: Option<usize>,
    /// A dump still being written ([`Dump::open_growing`]): hand out frames as they land and
    /// give up after this long without a new frame ([`Counters::idle_timeout`]). `None`: the
    /// dump is complete.
    pub follow: Option<Duration>,
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
            .field("fault_panic_at", &self.fault_panic_at)
            .field("follow", &self.follow)
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
            fault_panic_at: None,
            follow: None,
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
    /// Set when a stage failed (a worker panicked or returned an error): its message.
    /// `frames_processed` then counts the frames of the workers that survived, whose results
    /// are kept ([`run_keeping`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Set when a followed dump ([`RunOptions::follow`]) stopped growing before the scan was
    /// complete: the run waited the idle timeout and ended with the frames that had landed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<IdleTimeout>,
    /// Seconds the reader waited for a followed dump's frames to land.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waited_s: Option<f64>,
}

/// A followed dump that stopped growing before the scan was complete ([`Counters::idle_timeout`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IdleTimeout {
    /// The data file.
    pub path: std::path::PathBuf,
    /// Frames the scan needs.
    pub frames_expected: u64,
    /// Frames that had landed whole (all processed).
    pub frames_received: u64,
    /// Bytes in the file when the run gave up (a torn last frame shows as bytes beyond the
    /// frames received).
    pub file_bytes: u64,
    /// The idle timeout waited, in seconds.
    pub idle_timeout_s: f64,
}

impl std::fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: no new frame for {} s: {} of the {} frames expected arrived (the file has {}              bytes); the outputs hold those",
            self.path.display(),
            self.idle_timeout_s,
            self.frames_received,
            self.frames_expected,
            self.file_bytes
        )
    }
}

/// A stage that failed during a run ([`run_keeping`]): the error, and the positions whose
/// results the returned workers hold.
#[derive(Debug)]
pub struct Failure {
    /// The first error met ([`Error::Pipeline`] for a panic).
    pub error: Error,
    /// The positions the surviving workers processed, as sorted, disjoint ranges. Positions
    /// outside them were lost with the failed worker or never handed out.
    pub done: Vec<std::ops::Range<usize>>,
}

/// Sets the run's failure flag when the worker thread that holds it unwinds from a panic, so
/// that the reader stops handing out frames.
struct FlagOnPanic<'a>(&'a AtomicBool);

impl Drop for FlagOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// Appends `r` to `ranges`, extending the last range when they touch.
fn push_range(ranges: &mut Vec<std::ops::Range<usize>>, r: std::ops::Range<usize>) {
    match ranges.last_mut() {
        Some(last) if last.end == r.start => last.end = r.end,
        _ => ranges.push(r),
    }
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
/// consumer. Returns the workers (to be merged by the caller) and the counters. A stage that
/// fails (a worker that panics) ends the run with its error; [`run_keeping`] keeps the
/// surviving workers' results instead.
pub fn run<W, F>(
    dump: &Dump,
    make_worker: F,
    consumer: Option<&mut dyn OrderedConsumer>,
    opts: &RunOptions,
) -> Result<(Vec<W>, Counters)>
where
    W: Worker,
    F: Fn() -> Result<W>,
{
    match run_keeping(dump, make_worker, consumer, opts)? {
        (_, _, Some(failure)) => Err(failure.error),
        (workers, counters, None) => Ok((workers, counters)),
    }
}

/// As [`run`], but a stage that fails mid-run does not lose what the other stages did: the
/// reader stops handing out frames, the surviving workers finish the batches they hold, and
/// they are returned with the [`Failure`] (which positions they processed) and
/// `counters.failure` set, for the caller to write their results and then report the error.
/// A failure before the first frame (a worker that cannot be built, a thread that cannot be
/// started) is still an `Err`.
pub fn run_keeping<W, F>(
    dump: &Dump,
    make_worker: F,
    mut consumer: Option<&mut dyn OrderedConsumer>,
    opts: &RunOptions,
) -> Result<(Vec<W>, Counters, Option<Failure>)>
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
    let failed = AtomicBool::new(false);
    let k = opts.grouping.per_position;
    let progress = opts.progress.as_deref();
    report(progress, |p| p.start("frames", total as u64));
    let start = Instant::now();

    let (work_tx, work_rx) = bounded::<(usize, usize)>(2 * threads);
    let (order_tx, order_rx) = bounded::<(usize, usize)>(4);
    let with_consumer = consumer.is_some();

    type Survivor<W> = (W, Vec<std::ops::Range<usize>>, u64);
    let outcome = std::thread::scope(|s| -> Result<(Vec<Survivor<W>>, Counters, Option<Error>)> {
        let processed = &processed;
        let consumed = &consumed;
        let changed = &changed;
        let failed = &failed;
        // A thread the system cannot start (`--threads` too large) is an error, not a panic.
        let spawn_err =
            |e| Error::memory("run.threads", format!("starting a thread: {e}"), None, None);
        let handles: Vec<_> = workers
            .into_iter()
            .map(|mut worker| {
                let rx = work_rx.clone();
                std::thread::Builder::new().spawn_scoped(
                    s,
                    move || -> Result<(Survivor<W>, Duration)> {
                        let _flag = FlagOnPanic(failed);
                        let fail = |e: Error| {
                            failed.store(true, Ordering::Relaxed);
                            e
                        };
                        let mut reader = PatternReader::new(dump, opts.grouping).map_err(fail)?;
                        let mut busy = Duration::ZERO;
                        // The positions this worker's results hold (one range per batch at most:
                        // an allocation per batch, never per frame) and their count.
                        let mut done_ranges = Vec::new();
                        let mut count = 0u64;
                        // Measured and dropped (issue 6, 256 × 256 u16, bin 4 + 16 detectors, 2
                        // workers): software-prefetching the next frame here (W1 from the map 91k
                        // -> 62k frames/s), and having the reader pre-fault each batch's pages
                        // before sending it (replay of a 2 GB dump 113k -> 80k: one thread faulting
                        // is slower than two workers faulting in parallel).
                        for batch in rx {
                            let t = Instant::now();
                            let fault = opts
                                .fault_panic_at
                                .filter(|p| (batch.0..batch.1).contains(p));
                            let (done, _) = match fault {
                                None => checked_batch(dump, batch, k, changed, |index| {
                                    worker.process(index, reader.pattern(index)?)
                                }),
                                Some(at) => checked_batch(dump, batch, k, changed, |index| {
                                    if index == at {
                                        panic!("fault injected at position {at}");
                                    }
                                    worker.process(index, reader.pattern(index)?)
                                }),
                            }
                            .map_err(fail)?;
                            busy += t.elapsed();
                            processed.fetch_add(done as u64, Ordering::Relaxed);
                            if done > 0 {
                                push_range(&mut done_ranges, batch.0..batch.0 + done);
                                count += done as u64;
                            }
                        }
                        Ok(((worker, done_ranges, count), busy))
                    },
                )
            })
            .collect::<std::io::Result<_>>()
            .map_err(spawn_err)?;
        drop(work_rx);

        let consumer_handle = consumer.take().map(|c| {
            let rx = order_rx.clone();
            std::thread::Builder::new().spawn_scoped(s, move || -> Result<Duration> {
                let _flag = FlagOnPanic(failed);
                let fail = |e: Error| {
                    failed.store(true, Ordering::Relaxed);
                    e
                };
                let mut reader = PatternReader::new(dump, opts.grouping).map_err(fail)?;
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
                    })
                    .map_err(fail)?;
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
        // Following a dump being written: the positions whole in the file, when that last
        // grew, and the time spent waiting.
        let mut landed = if opts.follow.is_some() { 0 } else { total };
        let mut grew = Instant::now();
        let mut waited = Duration::ZERO;
        let mut is_waiting = false;
        let mut idle_timeout = None;
        while read < total {
            if opts.interrupt.load(Ordering::Relaxed) {
                interrupted = true;
                break;
            }
            if changed.seen.load(Ordering::Relaxed) || failed.load(Ordering::Relaxed) {
                break;
            }
            let mut end = (read + batch).min(total);
            if let Some(idle) = opts.follow {
                if landed < end {
                    // (No `?` in this loop: the workers wait for the senders to drop. An
                    // `fstat` of the open file that fails counts as no growth.)
                    let now = dump.landed_frames().map_or(landed, |f| (f / k).min(total));
                    if now > landed {
                        landed = now;
                        grew = Instant::now();
                    }
                }
                if landed <= read {
                    if grew.elapsed() >= idle {
                        idle_timeout = Some(IdleTimeout {
                            path: dump.info().path.clone(),
                            frames_expected: (total * k) as u64,
                            frames_received: (read * k) as u64,
                            file_bytes: dump.file_bytes_now().unwrap_or(0),
                            idle_timeout_s: idle.as_secs_f64(),
                        });
                        break;
                    }
                    if !is_waiting {
                        is_waiting = true;
                        report(progress, |p| p.waiting(true));
                    }
                    let t = Instant::now();
                    std::thread::sleep(Duration::from_millis(1));
                    waited += t.elapsed();
                    continue;
                }
                if is_waiting {
                    is_waiting = false;
                    report(progress, |p| p.waiting(false));
                }
                end = end.min(landed);
            }
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
        let (finished, reduce_busy, consume_busy) = (reduce.values, reduce.busy, consume.busy);
        report(progress, |p| p.finish());
        let frames_processed = match consume.first_error {
            // Only the survivors' frames are kept.
            Some(_) => finished.iter().map(|(_, _, n)| n).sum(),
            None => processed.load(Ordering::Relaxed),
        };
        let counters = Counters {
            frames_read: read as u64,
            frames_processed,
            frames_consumed: consumed.load(Ordering::Relaxed),
            frames_dropped: 0,
            wall_s: start.elapsed().as_secs_f64(),
            reduce_busy_s: reduce_busy.as_secs_f64(),
            consume_busy_s: consume_busy.as_secs_f64(),
            reader_blocked_s: blocked.as_secs_f64(),
            interrupted,
            source_changed: None,
            failure: consume.first_error.as_ref().map(|e| e.to_string()),
            idle_timeout,
            waited_s: opts.follow.map(|_| waited.as_secs_f64()),
        };
        Ok((finished, counters, consume.first_error))
    })?;
    let (survivors, mut counters, error) = outcome;
    let failure = error.map(|error| {
        let mut done: Vec<_> = survivors.iter().flat_map(|(_, r, _)| r.clone()).collect();
        done.sort_by_key(|r| r.start);
        let mut merged = Vec::with_capacity(done.len());
        for r in done {
            push_range(&mut merged, r);
        }
        Failure {
            error,
            done: merged,
        }
    });
    let workers: Vec<W> = survivors.into_iter().map(|(w, _, _)| w).collect();
    if let Some(mut c) = changed
        .first
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
    {
        // Every frame before the first lost one was processed exactly once.
        c.processed_after = counters.frames_processed.saturating_sub(c.frame as u64);
        counters.source_changed = Some(c);
        return Ok((workers, counters, failure));
    }
    if failure.is_none() && counters.frames_processed != counters.frames_read {
        return Err(Error::Pipeline(format!(
            "{} frames read but {} processed",
            counters.frames_read, counters.frames_processed
        )));
    }
    Ok((workers, counters, failure))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{Dump, OpenOptions};

    /// A worker that panics ends a replay with [`Error::Pipeline`], naming the stage and the
    /// panic; the reader stops handing out frames instead of hanging. With [`run_keeping`],
    /// the surviving workers come back with exactly the positions they processed.
    #[test]
    fn a_panicking_worker_is_a_pipeline_failure_not_an_interrupt() {
        #[derive(Debug)]
        struct Boom(Vec<usize>);
        impl Worker for Boom {
            fn process(&mut self, index: usize, _: Frame<'_>) -> Result<()> {
                if index == 5 {
                    panic!("boom at frame {index}");
                }
                self.0.push(index);
                Ok(())
            }
        }
        let frames = 400;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.raw");
        std::fs::write(&path, vec![0u8; frames * 16]).unwrap();
        std::fs::write(
            dir.path().join("d.raw.json"),
            r#"{"format": "raw", "width": 4, "height": 4, "dtype": "u8"}"#,
        )
        .unwrap();
        let dump = Dump::open(&path, &OpenOptions::default()).unwrap();
        let opts = RunOptions {
            threads: 3,
            batch_frames: 2,
            ..RunOptions::default()
        };
        let e = run(&dump, || Ok(Boom(Vec::new())), None, &opts).unwrap_err();
        assert!(matches!(e, Error::Pipeline(_)), "{e:?}");
        assert!(e.to_string().contains("reduction worker") && e.to_string().contains("boom"));
        assert_eq!(e.exit_code(), 70);

        let (workers, c, failure) =
            run_keeping(&dump, || Ok(Boom(Vec::new())), None, &opts).unwrap();
        let failure = failure.expect("the panic is reported");
        assert!(failure.error.to_string().contains("boom"), "{failure:?}");
        assert_eq!(c.failure, Some(failure.error.to_string()));
        // Two workers survive; what they hold is what `done` says, and what is counted.
        assert_eq!(workers.len(), 2);
        let mut held: Vec<usize> = workers.iter().flat_map(|w| w.0.clone()).collect();
        held.sort_unstable();
        let done: Vec<usize> = failure.done.iter().cloned().flatten().collect();
        assert_eq!(held, done);
        assert_eq!(c.frames_processed, held.len() as u64);
        assert!(!held.contains(&4) && !held.contains(&5), "{held:?}");
        // The reader stopped: bounded queues keep it a few batches ahead of the panic.
        assert!(c.frames_read < frames as u64, "{c:?}");
        assert!(held.iter().all(|&i| i < c.frames_read as usize));

        // The same through the test hook the CLI tests use.
        let hooked = RunOptions {
            fault_panic_at: Some(7),
            ..opts.clone()
        };
        #[derive(Debug)]
        struct Fine;
        impl Worker for Fine {
            fn process(&mut self, _: usize, _: Frame<'_>) -> Result<()> {
                Ok(())
            }
        }
        let e = run(&dump, || Ok(Fine), None, &hooked).unwrap_err();
        assert!(
            e.to_string().contains("fault injected at position 7"),
            "{e}"
        );
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
