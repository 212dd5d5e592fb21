//! The compression workload of issue 13 (paper 002), on the synthetic frames of
//! [`super::reduction`]: 45 Zernike masks over the bright-field disc (r = 32 px, 3,228 px),
//! the dark field as one value (the annular piston on 32 < d ≤ 120, 42,016 px) and the two
//! perpendicular components: 48 values per 256 × 256 `u16` frame (C = 1365).
//!
//! | name        | from | how |
//! |-------------|------|-----|
//! | `C1 mmap`   | a raw dump in the page cache | [`crate::pipeline::run()`] with [`CompressWorker`]s, one frame at a time |
//! | `C1 memory` | a `Vec` | [`compress_batch`] on batches of 16 frames from a shared counter |

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ptyflow_core::{Basis, Compressor, FrameGeometry, FrameSummary, Region, Run};

use super::reduction::{synthetic_frames, write_dump};
use super::{Context, Measurement, Workload};
use crate::pipeline::RunOptions;
use crate::pipeline::compress::{
    CompressPlan, CompressValues, CompressWorker, FrameCompressor, compress_batch,
};
use crate::source::Dump;
use crate::{Error, Result};

/// Bright-field Zernike masks of C1.
pub const C1_MASKS: usize = 45;
/// Frames per batch of `C1 memory`.
const BATCH: usize = 16;

/// C1 from a memory map and from memory.
pub fn workloads() -> Vec<Workload> {
    let w256 = |name, description, run| Workload {
        name,
        description,
        width: 256,
        height: 256,
        pixel: "u16",
        pixel_bytes: 2,
        target_fps: 100e3,
        run,
    };
    vec![
        w256(
            "C1 mmap",
            "compress: 45 Zernike BF + 1 DF + 2 perp (C = 1365), raw dump in page cache, pipeline::run",
            c1_mmap,
        ),
        w256(
            "C1 memory",
            "compress as C1, frames in memory, batches of 16",
            c1_memory,
        ),
    ]
}

/// The C1 compressor on a 256 × 256 frame with the disc at (127.5, 127.5), r = 32.
pub fn c1_compressor() -> Result<FrameCompressor> {
    let core = |e| Error::core("C1 compressor", e);
    let g = FrameGeometry::new(256, 256).map_err(core)?;
    let runs = || vec![Run::default(); Region::<Vec<Run>>::max_runs(g)];
    let disc = Region::disc(g, 127.5, 127.5, 32.0, runs()).map_err(core)?;
    let annulus = Region::annulus(g, 127.5, 127.5, 32.0, 120.0, runs()).map_err(core)?;
    let (n, m) = (disc.pixels(), annulus.pixels());
    let mut scratch = vec![0f64; n.max(m)];
    let bf =
        Basis::zernike(disc, C1_MASKS, vec![0f32; C1_MASKS * n], &mut scratch).map_err(core)?;
    let df = Basis::zernike(annulus, 1, vec![0f32; m], &mut scratch).map_err(core)?;
    Compressor::new(bf, df).map_err(core)
}

fn c1_frames(ctx: &Context) -> (usize, Vec<u16>) {
    let count = ctx.pick(8000, 2000);
    (
        count,
        synthetic_frames(256, 256, (127.5, 127.5, 32.0), count, 13),
    )
}

fn c1_mmap(ctx: &Context) -> Result<Measurement> {
    let (count, frames) = c1_frames(ctx);
    let (path, open) = write_dump(ctx, "c1.raw", (256, 256), &frames)?;
    drop(frames);
    let plan = Arc::new(CompressPlan {
        compressor: c1_compressor()?,
        values: CompressValues::Intensity,
        frames: count,
        threads: ctx.threads,
    });
    let opts = RunOptions {
        threads: ctx.threads,
        ..RunOptions::default()
    };
    let m = Measurement::repeat(ctx.seconds, || {
        let dump = Dump::open(&path, &open)?;
        let (_, counters) =
            crate::pipeline::run(&dump, || Ok(CompressWorker::new(plan.clone())), None, &opts)?;
        Ok(counters.frames_processed)
    });
    let _ = std::fs::remove_file(&path);
    m
}

fn c1_memory(ctx: &Context) -> Result<Measurement> {
    let (count, frames) = c1_frames(ctx);
    let area = 256 * 256;
    let compressor = c1_compressor()?;
    let v = compressor.values_per_frame();
    let mut outs: Vec<(Vec<f32>, Vec<FrameSummary>)> = (0..ctx.threads)
        .map(|_| (vec![0f32; BATCH * v], vec![FrameSummary::default(); BATCH]))
        .collect();
    Measurement::repeat(ctx.seconds, || {
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            let handles: Vec<_> = outs
                .iter_mut()
                .map(|(out, summaries)| {
                    let (next, frames, compressor) = (&next, &frames, &compressor);
                    s.spawn(move || -> Result<()> {
                        loop {
                            let first = next.fetch_add(BATCH, Ordering::Relaxed);
                            if first >= count {
                                return Ok(());
                            }
                            let end = (first + BATCH).min(count);
                            let n = end - first;
                            compress_batch(
                                compressor,
                                frames[first * area..end * area].chunks_exact(area),
                                &mut out[..n * v],
                                &mut summaries[..n],
                            )
                            .map_err(|e| Error::core("C1 memory", e))?;
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().expect("bench worker panicked"))
        })?;
        Ok(count as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Worker;
    use crate::simd::SimdLevel;
    use crate::source::Frame;

    #[test]
    fn c1_is_48_values_and_the_worker_matches_the_batch_kernel() {
        let c = c1_compressor().unwrap();
        assert_eq!(c.values_per_frame(), 48);
        let frames = synthetic_frames(256, 256, (127.5, 127.5, 32.0), 5, 3);
        let area = 256 * 256;
        let mut out = vec![0f32; 5 * 48];
        let mut summaries = vec![FrameSummary::default(); 5];
        compress_batch(&c, frames.chunks_exact(area), &mut out, &mut summaries).unwrap();
        // The portable baseline gives the same bits.
        let mut base = vec![0f32; 5 * 48];
        SimdLevel::Portable.run(|| {
            c.compress_batch(frames.chunks_exact(area), &mut base, &mut summaries)
                .unwrap()
        });
        assert_eq!(out, base);
        let plan = Arc::new(CompressPlan {
            compressor: c,
            values: CompressValues::Intensity,
            frames: 5,
            threads: 1,
        });
        let mut w = CompressWorker::new(plan);
        for (i, f) in frames.chunks_exact(area).enumerate().rev() {
            w.process(i, Frame::U16(f)).unwrap();
        }
        let (rows, angles) = crate::pipeline::compress::gather(&[w], 5);
        assert_eq!(rows, out);
        assert!(
            angles.iter().all(|a| (0.0..=1.571).contains(a)),
            "{angles:?}"
        );
    }
}
