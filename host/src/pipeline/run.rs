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

/// How to run the threads.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Reduction worker threads (≥ 1).
    pub threads: usize,
    /// Frames per channel message.
    pub batch_frames: usize,
    /// Emulate a detector: hand out frames at this rate (frames per second).
    pub fps: Option<f64>,
    /// Process only the first `limit` frames.
    pub limit: Option<usize>,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
    /// Set from outside (Ctrl-C) to stop after the current batch.
    pub interrupt: Arc<AtomicBool>,
    /// The memory the job may use, checked before the first frame ([`crate::budget`]).
    /// `None`: `PTYFLOW_MEMORY_BUDGET`, else 75 % of physical memory.
    pub memory_budget: Option<crate::budget::MemoryBudget>,
}

impl RunOptions {
    /// [`RunOptions::memory_budget`], or the default when it is `None`.
    pub fn budget(&self) -> Result<crate::budget::MemoryBudget> {
        match &self.memory_budget {
            Some(b) => Ok(b.clone()),
            None => crate::budget::MemoryBudget::resolve(None, "--memory-budget"),
        }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            batch_frames: 64,
            fps: None,
            limit: None,
            progress: false,
            interrupt: Arc::new(AtomicBool::new(false)),
            memory_budget: None,
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

/// Runs one batch `first..end` through `each`, checking the dump before and after
/// ([`Dump::check_frames`]). Frames the file no longer holds are not processed; frames that
/// were processed while it shrank are reported. Returns the frames processed and whether the
/// batch lost any. A frame that fails to read because the file shrank reports the change, not
/// the read error.
fn checked_batch(
    dump: &Dump,
    (first, batch_end): (usize, usize),
    changed: &Changed,
    mut each: impl FnMut(usize) -> Result<()>,
) -> Result<(usize, bool)> {
    let as_changed = |e: Error, upto: usize| match dump.check_frames(first..upto.max(first + 1)) {
        Err(Error::Changed(c)) => {
            changed.record(c);
            Ok(())
        }
        _ => Err(e),
    };
    let end = match dump.check_frames(first..batch_end) {
        Ok(()) => batch_end,
        Err(Error::Changed(c)) => {
            let stop = c.frame;
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
    if let Err(e) = dump.check_frames(first..end) {
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
    let total = opts
        .limit
        .map_or(dump.info().frames, |l| l.min(dump.info().frames));
    let workers: Vec<W> = (0..threads).map(|_| make_worker()).collect::<Result<_>>()?;

    let processed = AtomicU64::new(0);
    let consumed = AtomicU64::new(0);
    let changed = Changed::default();
    let bar = progress_bar(opts.progress, total as u64);
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
            |e| Error::memory("--threads", format!("starting a thread: {e}"), None, None);
        let handles: Vec<_> = workers
            .into_iter()
            .map(|mut worker| {
                let rx = work_rx.clone();
                std::thread::Builder::new().spawn_scoped(s, move || -> Result<(W, Duration)> {
                    let mut reader = dump.reader();
                    let mut busy = Duration::ZERO;
                    // Measured and dropped (issue 6, 256 × 256 u16, bin 4 + 16 detectors, 2
                    // workers): software-prefetching the next frame here (W1 from the map 91k
                    // -> 62k frames/s), and having the reader pre-fault each batch's pages
                    // before sending it (replay of a 2 GB dump 113k -> 80k: one thread faulting
                    // is slower than two workers faulting in parallel).
                    for batch in rx {
                        let t = Instant::now();
                        let (done, _) = checked_batch(dump, batch, changed, |index| {
                            worker.process(index, reader.frame(index)?)
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
                let mut reader = dump.reader();
                let mut busy = Duration::ZERO;
                let mut lost = false;
                for batch in rx {
                    // In order: after the first lost frame, none is consumed.
                    if lost {
                        continue;
                    }
                    let t = Instant::now();
                    let done;
                    (done, lost) = checked_batch(dump, batch, changed, |index| {
                        c.consume(index, reader.frame(index)?)
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
            bar.set_position(processed.load(Ordering::Relaxed));
        }
        drop(work_tx);
        drop(order_tx);

        let mut finished = Vec::with_capacity(threads);
        let mut reduce_busy = Duration::ZERO;
        let mut first_error = None;
        for h in handles {
            match h.join().expect("reduction worker panicked") {
                Ok((w, busy)) => {
                    reduce_busy += busy;
                    finished.push(w);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let consume_busy = match consumer_handle.map(|h| h.join().expect("consumer panicked")) {
            Some(Ok(busy)) => busy,
            Some(Err(e)) => {
                first_error.get_or_insert(e);
                Duration::ZERO
            }
            None => Duration::ZERO,
        };
        if let Some(e) = first_error {
            return Err(e);
        }
        bar.finish_and_clear();
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
        return Err(Error::Interrupted(format!(
            "{} frames read but {} processed",
            counters.frames_read, counters.frames_processed
        )));
    }
    Ok((workers, counters))
}

/// A progress bar on stderr when `show` and stderr is a terminal; hidden otherwise.
fn progress_bar(show: bool, total: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !show || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} frames ({per_sec}, eta {eta})",
        )
        .expect("static template"),
    );
    bar
}
