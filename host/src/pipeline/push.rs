//! The push source: readout code hands frames in one at a time from its receive loop.
//!
//! `push` copies the frame into the batch being filled (a buffer from a fixed pool made at
//! set-up); a full batch goes to the reduction workers (and, shared, to the in-order consumer).
//! Buffers come back to the pool when the last stage is done with them, so nothing is
//! allocated per frame. Backpressure is the pool: when every buffer is in flight, a blocking
//! pipeline waits for one and a non-blocking one answers [`PushError::QueueFull`] (the frame
//! is not taken; the caller may retry or count it as dropped).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, bounded, unbounded};

use super::compress::{CompressPlan, CompressWorker};
use super::reduce::{ReducePlan, Reducer, merge_reducers};
use super::run::{Counters, Joined, OrderedConsumer, Worker};
use crate::budget::{checked_len, try_filled, try_with_capacity};
use crate::source::{Frame, PixelKind};
use crate::{Error, Result};

/// How a push pipeline runs.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Reduction worker threads (≥ 1).
    pub threads: usize,
    /// Frames per batch.
    pub batch_frames: usize,
    /// Batches that may be in flight at once (the queue depth), ≥ 1.
    pub queue_batches: usize,
    /// Wait for room when the queue is full (true) or answer [`PushError::QueueFull`].
    pub blocking: bool,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            batch_frames: 32,
            queue_batches: 8,
            blocking: true,
        }
    }
}

/// Why a frame was not taken.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Non-blocking mode: every buffer is in flight. The frame was not taken.
    #[error("queue full: the frame was not taken")]
    QueueFull,
    /// The frame or its index does not fit the configuration.
    #[error(transparent)]
    Invalid(#[from] Error),
}

/// A batch of frames, stored in `u32` words so every pixel type's slice is aligned.
#[derive(Debug)]
struct Batch {
    words: Vec<u32>,
    indices: Vec<usize>,
}

impl Batch {
    fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.words)
    }
}

/// Live counters, readable while frames are pushed.
#[derive(Debug, Default)]
struct Live {
    pushed: AtomicU64,
    rejected: AtomicU64,
    processed: AtomicU64,
    consumed: AtomicU64,
}

/// A snapshot of the counters of a push pipeline.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct PushCounters {
    /// Frames taken by `push`.
    pub pushed: u64,
    /// `push` calls answered with [`PushError::QueueFull`].
    pub rejected: u64,
    /// Frames reduced by the workers so far.
    pub processed: u64,
    /// Frames the in-order consumer has seen so far.
    pub consumed: u64,
}

/// Reads a push pipeline's counters from any thread, without touching the pipeline itself:
/// a clone of the atomics it updates. Stays valid after the pipeline is finished or dropped
/// (it then shows the final counts). Used by the C API so a monitoring thread never waits on
/// the lock of a thread that is pushing.
#[derive(Debug, Clone)]
pub struct CounterReader(Arc<Live>);

impl CounterReader {
    /// Counters so far.
    pub fn get(&self) -> PushCounters {
        PushCounters {
            pushed: self.0.pushed.load(Ordering::Relaxed),
            rejected: self.0.rejected.load(Ordering::Relaxed),
            processed: self.0.processed.load(Ordering::Relaxed),
            consumed: self.0.consumed.load(Ordering::Relaxed),
        }
    }
}

/// What a finished push pipeline hands back.
#[derive(Debug)]
pub struct PushOutcome<C> {
    /// Merged reduction state (statistics, dose map, detector values).
    pub reducer: Reducer,
    /// The in-order consumer, with whatever it accumulated.
    pub consumer: Option<C>,
    /// Counters and times (`frames_dropped` = frames rejected in non-blocking mode).
    pub counters: Counters,
    /// Each worker's compressed frames, when the pipeline compresses
    /// ([`PushPipeline::start_compressing`]); empty otherwise.
    pub compressed: Vec<CompressWorker>,
}

/// What a worker thread hands back: its reducer, its compressed frames, its busy time.
type WorkerResult = Result<((Reducer, Option<CompressWorker>), Duration)>;
type WorkerHandle = JoinHandle<WorkerResult>;

/// Frames pushed in by readout code, reduced by worker threads; see the [module docs](self).
pub struct PushPipeline<C: OrderedConsumer + 'static> {
    plan: Arc<ReducePlan>,
    frame_bytes: usize,
    batch_frames: usize,
    blocking: bool,
    filling: Option<Batch>,
    free_rx: Receiver<Batch>,
    work_tx: Option<Sender<Arc<Batch>>>,
    order_tx: Option<Sender<Arc<Batch>>>,
    workers: Vec<WorkerHandle>,
    consumer: Option<JoinHandle<Result<(C, Duration)>>>,
    live: Arc<Live>,
    started: Instant,
}

impl<C: OrderedConsumer + 'static> std::fmt::Debug for PushPipeline<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushPipeline")
            .field("frame_bytes", &self.frame_bytes)
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

/// Returns a batch to the pool when this was its last user.
fn release(batch: Arc<Batch>, free: &Sender<Batch>) {
    if let Some(mut b) = Arc::into_inner(batch) {
        b.indices.clear();
        // The pool outlives the stages unless the pipeline is being torn down.
        let _ = free.send(b);
    }
}

/// The frame at slot `k` of a batch, typed.
fn frame_at(bytes: &[u8], k: usize, frame_bytes: usize, pixel: PixelKind) -> Frame<'_> {
    let b = &bytes[k * frame_bytes..(k + 1) * frame_bytes];
    match pixel {
        PixelKind::U8 => Frame::U8(b),
        PixelKind::U16 => Frame::U16(bytemuck::cast_slice(b)),
        PixelKind::U32 => Frame::U32(bytemuck::cast_slice(b)),
        PixelKind::F32 => Frame::F32(bytemuck::cast_slice(b)),
    }
}

impl<C: OrderedConsumer + 'static> PushPipeline<C> {
    /// Starts the worker threads (and the consumer's thread) and allocates the buffer pool.
    pub fn start(plan: Arc<ReducePlan>, consumer: Option<C>, opts: &PushOptions) -> Result<Self> {
        Self::start_compressing(plan, consumer, opts, None)
    }

    /// [`PushPipeline::start`], each worker also compressing its frames with `compress`
    /// (paper 002; the rows come back in [`PushOutcome::compressed`]).
    pub fn start_compressing(
        plan: Arc<ReducePlan>,
        consumer: Option<C>,
        opts: &PushOptions,
        compress: Option<Arc<CompressPlan>>,
    ) -> Result<Self> {
        let threads = opts.threads.max(1);
        let batch_frames = opts.batch_frames.max(1);
        // Sizes follow from the configuration: checked, and allocated fallibly.
        let (name, what) = ("run.batch_frames", "the push buffer pool");
        let frame_bytes = checked_len(&[plan.frame.area(), plan.pixel.bytes()], name, what)?;
        // Pixels are aligned in every slot: frame_bytes is a multiple of the pixel size.
        let words = checked_len(&[batch_frames, frame_bytes], name, what)?.div_ceil(4);
        let pool = opts
            .queue_batches
            .max(1)
            .checked_add(threads)
            .and_then(|p| p.checked_add(1))
            .ok_or_else(|| {
                Error::memory(
                    "run.queue_batches",
                    format!("{what}: too many batches"),
                    None,
                    None,
                )
            })?;
        checked_len(&[pool, words, 4], name, what)?;
        let (free_tx, free_rx) = bounded(pool);
        for _ in 0..pool {
            let batch = Batch {
                words: try_filled(words, 0, name, what)?,
                indices: try_with_capacity(batch_frames, name, what)?,
            };
            free_tx
                .send(batch)
                .map_err(|_| Error::Pipeline("the push buffer pool closed during set-up".into()))?;
        }
        let live = Arc::new(Live::default());
        // The pool bounds what is in flight, so these channels never hold more than `pool`.
        let (work_tx, work_rx) = unbounded::<Arc<Batch>>();
        let pixel = plan.pixel;
        let mut workers = try_with_capacity(threads, "run.threads", "the worker threads")?;
        // A thread the system cannot start is an error, not a panic.
        let spawn_err =
            |e| Error::memory("run.threads", format!("starting a thread: {e}"), None, None);
        for _ in 0..threads {
            let mut reducer = Reducer::new(Arc::clone(&plan))?;
            let mut compressor = compress
                .as_ref()
                .map(|c| CompressWorker::new(Arc::clone(c)));
            let (rx, free, live) = (work_rx.clone(), free_tx.clone(), Arc::clone(&live));
            workers.push(
                std::thread::Builder::new()
                    .spawn(move || -> WorkerResult {
                        let mut busy = Duration::ZERO;
                        for batch in rx {
                            let t = Instant::now();
                            let bytes = batch.bytes();
                            for (k, &index) in batch.indices.iter().enumerate() {
                                reducer.process(index, frame_at(bytes, k, frame_bytes, pixel))?;
                                if let Some(c) = compressor.as_mut() {
                                    c.process(index, frame_at(bytes, k, frame_bytes, pixel))?;
                                }
                            }
                            busy += t.elapsed();
                            live.processed
                                .fetch_add(batch.indices.len() as u64, Ordering::Relaxed);
                            release(batch, &free);
                        }
                        Ok(((reducer, compressor), busy))
                    })
                    .map_err(spawn_err)?,
            );
        }
        let (order_tx, consumer) = match consumer {
            None => (None, None),
            Some(mut c) => {
                let (tx, rx) = unbounded::<Arc<Batch>>();
                let (free, live) = (free_tx.clone(), Arc::clone(&live));
                let handle = std::thread::Builder::new().spawn(move || -> Result<(C, Duration)> {
                    let mut busy = Duration::ZERO;
                    for batch in rx {
                        let t = Instant::now();
                        let bytes = batch.bytes();
                        for (k, &index) in batch.indices.iter().enumerate() {
                            c.consume(index, frame_at(bytes, k, frame_bytes, pixel))?;
                        }
                        busy += t.elapsed();
                        live.consumed
                            .fetch_add(batch.indices.len() as u64, Ordering::Relaxed);
                        release(batch, &free);
                    }
                    Ok((c, busy))
                });
                (Some(tx), Some(handle.map_err(spawn_err)?))
            }
        };
        Ok(PushPipeline {
            plan,
            frame_bytes,
            batch_frames,
            blocking: opts.blocking,
            filling: None,
            free_rx,
            work_tx: Some(work_tx),
            order_tx,
            workers,
            consumer,
            live,
            started: Instant::now(),
        })
    }

    /// Bytes one frame must have (`width × height × pixel size`, native byte order).
    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    /// Takes one frame (`frame_bytes()` bytes, native byte order) for scan position `index`.
    /// Copies it; never allocates. See the [module docs](self) for blocking behaviour.
    pub fn push(&mut self, index: usize, frame: &[u8]) -> Result<(), PushError> {
        if frame.len() != self.frame_bytes {
            return Err(Error::param(
                "frame length",
                format!(
                    "{} bytes, expected {} (width × height × pixel size)",
                    frame.len(),
                    self.frame_bytes
                ),
            )
            .into());
        }
        if index >= self.plan.frames {
            return Err(Error::param(
                "frame index",
                format!(
                    "{index} is beyond the {} positions of the scan",
                    self.plan.frames
                ),
            )
            .into());
        }
        if self.filling.is_none() {
            let batch = if self.blocking {
                self.free_rx
                    .recv()
                    .map_err(|_| Error::Pipeline("the reduction workers stopped".into()))?
            } else {
                match self.free_rx.try_recv() {
                    Ok(b) => b,
                    Err(TryRecvError::Empty) => {
                        self.live.rejected.fetch_add(1, Ordering::Relaxed);
                        return Err(PushError::QueueFull);
                    }
                    Err(TryRecvError::Disconnected) => {
                        return Err(Error::Pipeline("the reduction workers stopped".into()).into());
                    }
                }
            };
            self.filling = Some(batch);
        }
        let batch = self.filling.as_mut().expect("a batch was just taken");
        let k = batch.indices.len();
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut batch.words);
        bytes[k * self.frame_bytes..(k + 1) * self.frame_bytes].copy_from_slice(frame);
        batch.indices.push(index);
        self.live.pushed.fetch_add(1, Ordering::Relaxed);
        if batch.indices.len() == self.batch_frames {
            self.send_filling()?;
        }
        Ok(())
    }

    fn send_filling(&mut self) -> Result<()> {
        let Some(batch) = self.filling.take() else {
            return Ok(());
        };
        let batch = Arc::new(batch);
        let stopped = || Error::Pipeline("a pipeline stage stopped early".into());
        if let Some(tx) = &self.order_tx {
            tx.send(Arc::clone(&batch)).map_err(|_| stopped())?;
        }
        if let Some(tx) = &self.work_tx {
            tx.send(batch).map_err(|_| stopped())?;
        }
        Ok(())
    }

    /// Counters so far (safe to call while pushing).
    pub fn counters(&self) -> PushCounters {
        self.counter_reader().get()
    }

    /// A handle that reads the counters from another thread (see [`CounterReader`]).
    pub fn counter_reader(&self) -> CounterReader {
        CounterReader(Arc::clone(&self.live))
    }

    /// Sends the last partial batch, waits for every stage and merges the workers' results.
    pub fn finish(mut self) -> Result<PushOutcome<C>> {
        self.send_filling()?;
        self.work_tx = None;
        self.order_tx = None;
        let reduce = Joined::collect(
            "reduction worker",
            std::mem::take(&mut self.workers)
                .into_iter()
                .map(|h| h.join()),
            None,
        );
        let consume = Joined::collect(
            "reconstruction",
            self.consumer.take().map(|h| h.join()),
            reduce.first_error,
        );
        if let Some(e) = consume.first_error {
            return Err(e);
        }
        let (busy, consume_busy) = (reduce.busy, consume.busy);
        let consumer = consume.values.into_iter().next();
        let (reducers, compressed): (Vec<_>, Vec<_>) = reduce.values.into_iter().unzip();
        let reducer = merge_reducers(reducers)?;
        let compressed = compressed.into_iter().flatten().collect();
        let c = self.counters();
        Ok(PushOutcome {
            reducer,
            consumer,
            compressed,
            counters: Counters {
                frames_read: c.pushed,
                frames_processed: c.processed,
                frames_consumed: c.consumed,
                frames_dropped: c.rejected,
                wall_s: self.started.elapsed().as_secs_f64(),
                reduce_busy_s: busy.as_secs_f64(),
                consume_busy_s: consume_busy.as_secs_f64(),
                reader_blocked_s: 0.0,
                interrupted: false,
                ..Counters::default()
            },
        })
    }
}

impl<C: OrderedConsumer + 'static> Drop for PushPipeline<C> {
    /// Dropping without `finish` stops the threads (their results are discarded).
    fn drop(&mut self) {
        self.work_tx = None;
        self.order_tx = None;
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        if let Some(h) = self.consumer.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::detectors::{Disc, VirtualSpec};
    use ptyflow_core::FrameGeometry;

    struct Order(Vec<usize>);
    impl OrderedConsumer for Order {
        fn consume(&mut self, index: usize, _frame: Frame<'_>) -> Result<()> {
            self.0.push(index);
            Ok(())
        }
    }

    fn plan(frames: usize) -> Arc<ReducePlan> {
        let g = FrameGeometry::new(8, 6).unwrap();
        let disc = Some(Disc {
            cx: 3.5,
            cy: 2.5,
            r: 2.0,
        });
        Arc::new(
            ReducePlan::new(
                g,
                PixelKind::U16,
                1,
                None,
                &[VirtualSpec::BrightField],
                disc,
                frames,
            )
            .unwrap(),
        )
    }

    #[test]
    fn pushed_frames_are_all_reduced_in_order_for_the_consumer() {
        let n = 103;
        let opts = PushOptions {
            threads: 2,
            batch_frames: 8,
            queue_batches: 2,
            blocking: true,
        };
        let mut p = PushPipeline::start(plan(n), Some(Order(Vec::new())), &opts).unwrap();
        for i in 0..n {
            let frame: Vec<u16> = (0..48).map(|j| (i + j) as u16).collect();
            p.push(i, bytemuck::cast_slice(&frame)).unwrap();
        }
        let out = p.finish().unwrap();
        assert_eq!(out.counters.frames_processed, n as u64);
        assert_eq!(out.counters.frames_dropped, 0);
        assert_eq!(out.consumer.unwrap().0, (0..n).collect::<Vec<_>>());
        for (i, &d) in out.reducer.dose().iter().enumerate() {
            let want: usize = (0..48).map(|j| i + j).sum();
            assert_eq!(d, want as f64);
        }
    }

    #[test]
    fn bad_frames_are_refused_with_the_parameter_named() {
        let opts = PushOptions {
            threads: 1,
            ..PushOptions::default()
        };
        let mut p = PushPipeline::<Order>::start(plan(4), None, &opts).unwrap();
        let e = p.push(0, &[0u8; 10]).unwrap_err().to_string();
        assert!(e.contains("frame length") && e.contains("96"), "{e}");
        let e = p.push(4, &[0u8; 96]).unwrap_err().to_string();
        assert!(e.contains("frame index"), "{e}");
        p.push(3, &[0u8; 96]).unwrap();
        assert_eq!(p.finish().unwrap().counters.frames_processed, 1);
    }

    #[test]
    fn non_blocking_push_reports_a_full_queue() {
        /// A consumer that waits until told, so buffers stay in flight.
        struct Gate(Receiver<()>);
        impl OrderedConsumer for Gate {
            fn consume(&mut self, _: usize, _: Frame<'_>) -> Result<()> {
                let _ = self.0.recv();
                Ok(())
            }
        }
        let (open, gate) = unbounded();
        let opts = PushOptions {
            threads: 1,
            batch_frames: 1,
            queue_batches: 1,
            blocking: false,
        };
        let mut p = PushPipeline::start(plan(100), Some(Gate(gate)), &opts).unwrap();
        let mut full = 0;
        for i in 0..20 {
            if let Err(PushError::QueueFull) = p.push(i, &[0u8; 96]) {
                full += 1;
            }
        }
        // The pool holds queue + threads + 1 = 3 buffers: the rest were refused.
        assert!(full >= 15, "{full} refusals");
        for _ in 0..20 {
            let _ = open.send(());
        }
        let out = p.finish().unwrap();
        assert_eq!(out.counters.frames_dropped, full);
        assert_eq!(out.counters.frames_processed, out.counters.frames_read);
    }

    /// A stage that panics ends the run with [`Error::Pipeline`] (exit code 70 in the CLI),
    /// not with an interrupt, and nothing hangs.
    #[test]
    fn a_panicking_consumer_is_a_pipeline_failure_not_an_interrupt() {
        #[derive(Debug)]
        struct Boom;
        impl OrderedConsumer for Boom {
            fn consume(&mut self, index: usize, _: Frame<'_>) -> Result<()> {
                if index == 3 {
                    panic!("boom at frame {index}");
                }
                Ok(())
            }
        }
        let opts = PushOptions {
            threads: 1,
            batch_frames: 2,
            queue_batches: 2,
            blocking: true,
        };
        let mut p = PushPipeline::start(plan(8), Some(Boom), &opts).unwrap();
        for i in 0..8 {
            // Pushing may fail once the consumer is gone: the error is collected at finish.
            if p.push(i, &[0u8; 96]).is_err() {
                break;
            }
        }
        let e = p.finish().unwrap_err();
        assert!(matches!(e, Error::Pipeline(_)), "{e:?}");
        assert!(e.to_string().contains("boom at frame 3"), "{e}");
        assert_eq!(e.exit_code(), 70);
    }
}
