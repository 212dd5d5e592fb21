//! The reduction workloads of issue 6 (W1–W3), on synthetic frames: a bright-field disc of
//! counts over a sparse dark field, as a 4D-STEM detector sees it.
//!
//! | name        | frames            | work per frame                                            | from   |
//! |-------------|-------------------|-----------------------------------------------------------|--------|
//! | `W1 mmap`   | 256 × 256 `u16`   | bin 4, 16 label masks (BF, ADF, 4 DPC, 10 rings), mean pattern, dose | a raw dump in the page cache, through [`crate::pipeline::run()`] |
//! | `W1 memory` | same              | same                                                      | a `Vec`, same [`Reducer`] |
//! | `W2 memory` | 96 × 96 `u16`     | bin 2, 8 label masks (4 DPC, ADF, 3 rings), sum and sum², dose | a `Vec`, same [`Reducer`] |
//! | `W3 memory` | 256 × 256 `u16`   | 45 dense masks over the bright-field disc (r = 32 px)     | a `Vec`, [`DenseProjector`] (windows to `f32` once, then [`DenseMasks::project_batch`]) |
//!
//! The `mmap` workload opens the dump afresh for every pass, so each pass pays for mapping
//! the pages as `ptyflow replay` does; the `memory` ones split the frames into batches that
//! the threads take from a shared counter, as the pipeline's workers do.
//!
//! The `mmap` dump is written in one call, which leaves it in the page cache in large folios.
//! The same bytes written in small pieces (`head -c`, a writer with small buffers) sit in small
//! folios, and mapping them cost `ptyflow replay` ~15 % of its rate on the reference machine
//! (2 GB dump, progress bar on: 94–98k against 112–116k frames/s), kernel time per mapped
//! page.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ptyflow_core::mask::dense::{DenseBuilder, DenseMasks};
use ptyflow_core::{FrameGeometry, Window};

use super::{Context, Measurement, Workload};
use crate::pipeline::detectors::{Disc, VirtualSpec};
use crate::pipeline::reduce::{DenseProjector, ReducePlan, Reducer};
use crate::pipeline::{RunOptions, Worker};
use crate::source::{Dump, Format, Frame, OpenOptions, PixelKind, RawDtype, RawOverrides};
use crate::{Error, Result};

/// Frames per batch handed to a thread (the pipeline's default channel message).
const BATCH: usize = 64;
/// Frames per dense-mask batch: 16 windows of 64 × 64 f32 masks-times-frames stay in L2.
const DENSE_BATCH: usize = 16;
/// Dense masks in W3.
pub const W3_MASKS: usize = 45;

/// W1–W3 (and the in-memory variant of W1, which separates the map's cost from the kernels').
pub fn workloads() -> Vec<Workload> {
    let w256 = |name, description, target_fps, run| Workload {
        name,
        description,
        width: 256,
        height: 256,
        pixel: "u16",
        pixel_bytes: 2,
        target_fps,
        run,
    };
    vec![
        w256(
            "W1 mmap",
            "bin 4 + 16 label masks + mean + dose, raw dump in page cache, pipeline::run",
            100e3,
            w1_mmap,
        ),
        w256(
            "W1 memory",
            "as W1, frames in memory, same Reducer",
            100e3,
            w1_memory,
        ),
        Workload {
            name: "W2 memory",
            description: "bin 2 + 8 label masks + sum, sum² + dose, frames in memory",
            width: 96,
            height: 96,
            pixel: "u16",
            pixel_bytes: 2,
            target_fps: 300e3,
            run: w2_memory,
        },
        w256(
            "W3 memory",
            "45 dense masks over the bright-field disc (r = 32 px), frames in memory",
            100e3,
            w3_memory,
        ),
    ]
}

/// The W1 plan: bin 4, BF + DPC + ADF(40, 80) + 10 rings(80, 120) around (127.5, 127.5), r 32.
pub fn w1_plan(frames: usize) -> Result<ReducePlan> {
    let specs = [
        VirtualSpec::BrightField,
        VirtualSpec::Dpc,
        VirtualSpec::Adf {
            inner: 40.0,
            outer: 80.0,
        },
        VirtualSpec::Rings {
            n: 10,
            inner: 80.0,
            outer: 120.0,
        },
    ];
    let disc = Disc {
        cx: 127.5,
        cy: 127.5,
        r: 32.0,
    };
    ReducePlan::new(
        FrameGeometry::new(256, 256).map_err(|e| Error::core("W1 frame", e))?,
        PixelKind::U16,
        4,
        None,
        &specs,
        Some(disc),
        frames,
    )
}

/// The W2 plan: 96 × 96, bin 2, DPC (r 16) + 3 rings(16, 20) + ADF(20, 44) around (47.5, 47.5).
pub fn w2_plan(frames: usize) -> Result<ReducePlan> {
    let specs = [
        VirtualSpec::Dpc,
        VirtualSpec::Rings {
            n: 3,
            inner: 16.0,
            outer: 20.0,
        },
        VirtualSpec::Adf {
            inner: 20.0,
            outer: 44.0,
        },
    ];
    let disc = Disc {
        cx: 47.5,
        cy: 47.5,
        r: 16.0,
    };
    ReducePlan::new(
        FrameGeometry::new(96, 96).map_err(|e| Error::core("W2 frame", e))?,
        PixelKind::U16,
        2,
        None,
        &specs,
        Some(disc),
        frames,
    )
}

/// The W3 masks: 45 smooth weight maps (angular orders × radial powers) over the
/// bright-field disc of radius `r` at (`cx`, `cy`), zero outside it; the window is the disc's
/// bounding box.
pub fn w3_masks(geometry: FrameGeometry, cx: f32, cy: f32, r: f32) -> Result<DenseMasks<Vec<f32>>> {
    let err = |e| Error::core("W3 masks", e);
    let x0 = (cx - r).ceil().max(0.0) as usize;
    let y0 = (cy - r).ceil().max(0.0) as usize;
    let x1 = ((cx + r).floor() as usize).min(geometry.width() - 1);
    let y1 = ((cy + r).floor() as usize).min(geometry.height() - 1);
    let window = Window {
        x0,
        y0,
        width: x1 + 1 - x0,
        height: y1 + 1 - y0,
    };
    let storage = vec![0f32; DenseBuilder::<Vec<f32>>::storage_len(W3_MASKS, &window)];
    let mut b = DenseBuilder::new(geometry, window, storage).map_err(err)?;
    let inside = |row: usize, col: usize| {
        let (dx, dy) = (col as f32 - cx, row as f32 - cy);
        dx * dx + dy * dy <= r * r
    };
    b.set_region(inside);
    for k in 0..W3_MASKS {
        let (m, n) = ((k % 9) as f32, (k / 9) as i32);
        b.push_fn(|row, col| {
            if !inside(row, col) {
                return 0.0;
            }
            let (dx, dy) = ((col as f32 - cx) / r, (row as f32 - cy) / r);
            let rho = (dx * dx + dy * dy).sqrt();
            rho.powi(n) * (m * dy.atan2(dx)).cos()
        })
        .map_err(err)?;
    }
    Ok(b.build())
}

/// `count` synthetic `width × height` frames, contiguous: a disc of radius `r` at (`cx`, `cy`)
/// with about 40 counts per pixel, about 0.3 counts per pixel outside. Sixteen distinct frames
/// are made and repeated (the buffer is far larger than the caches either way).
pub fn synthetic_frames(
    width: usize,
    height: usize,
    (cx, cy, r): (f64, f64, f64),
    count: usize,
    seed: u64,
) -> Vec<u16> {
    let area = width * height;
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64*: fast and good enough for test patterns.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32
    };
    let distinct = count.min(16);
    let mut frames = vec![0u16; area * count];
    for f in 0..distinct {
        let frame = &mut frames[f * area..(f + 1) * area];
        for (i, px) in frame.iter_mut().enumerate() {
            let (x, y) = ((i % width) as f64, (i / width) as f64);
            let d2 = (x - cx).powi(2) + (y - cy).powi(2);
            let v = next();
            *px = if d2 <= r * r {
                (32 + v % 17) as u16
            } else {
                u16::from(v % 10 < 3)
            };
        }
    }
    for f in distinct..count {
        frames.copy_within((f % distinct) * area..(f % distinct + 1) * area, f * area);
    }
    frames
}

/// Writes `frames` as a headerless little-endian `u16` raw dump and opens it.
pub(super) fn write_dump(
    ctx: &Context,
    name: &str,
    (width, height): (usize, usize),
    frames: &[u16],
) -> Result<(std::path::PathBuf, OpenOptions)> {
    let path = ctx.dir.join(name);
    let bytes: Vec<u8> = frames.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&path, &bytes).map_err(|e| Error::io(&path, e))?;
    let opts = OpenOptions {
        format: Some(Format::Raw),
        raw: RawOverrides {
            width: Some(width),
            height: Some(height),
            dtype: Some(RawDtype::U16),
            big_endian: Some(false),
            ..Default::default()
        },
    };
    Ok((path, opts))
}

/// Runs `workers` over contiguous in-memory frames: batches of 64 frames taken from a
/// shared counter, one thread per worker. Returns the frames processed.
pub fn run_in_memory<W: Worker>(frames: &[u16], area: usize, workers: &mut [W]) -> Result<u64> {
    let total = frames.len() / area;
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = workers
            .iter_mut()
            .map(|worker| {
                let next = &next;
                s.spawn(move || -> Result<()> {
                    loop {
                        let first = next.fetch_add(BATCH, Ordering::Relaxed);
                        if first >= total {
                            return Ok(());
                        }
                        for index in first..(first + BATCH).min(total) {
                            let frame = &frames[index * area..(index + 1) * area];
                            worker.process(index, Frame::U16(frame))?;
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("bench worker panicked"))
    })?;
    Ok(total as u64)
}

fn w1_frames(ctx: &Context) -> (usize, Vec<u16>) {
    let count = ctx.pick(4000, 2000);
    (
        count,
        synthetic_frames(256, 256, (127.5, 127.5, 32.0), count, 1),
    )
}

fn w1_mmap(ctx: &Context) -> Result<Measurement> {
    let (count, frames) = w1_frames(ctx);
    let (path, open) = write_dump(ctx, "w1.raw", (256, 256), &frames)?;
    drop(frames);
    let plan = Arc::new(w1_plan(count)?);
    let opts = RunOptions {
        threads: ctx.threads,
        ..RunOptions::default()
    };
    let m = Measurement::repeat(ctx.seconds, || {
        let dump = Dump::open(&path, &open)?;
        let (_, counters) =
            crate::pipeline::run(&dump, || Reducer::new(plan.clone()), None, &opts)?;
        Ok(counters.frames_processed)
    });
    let _ = std::fs::remove_file(&path);
    m
}

fn w1_memory(ctx: &Context) -> Result<Measurement> {
    let (count, frames) = w1_frames(ctx);
    let plan = Arc::new(w1_plan(count)?);
    let mut workers: Vec<Reducer> = (0..ctx.threads)
        .map(|_| Reducer::new(plan.clone()))
        .collect::<Result<_>>()?;
    Measurement::repeat(ctx.seconds, || {
        run_in_memory(&frames, 256 * 256, &mut workers)
    })
}

fn w2_memory(ctx: &Context) -> Result<Measurement> {
    let count = ctx.pick(16000, 8000);
    let frames = synthetic_frames(96, 96, (47.5, 47.5, 16.0), count, 2);
    let plan = Arc::new(w2_plan(count)?);
    let mut workers: Vec<Reducer> = (0..ctx.threads)
        .map(|_| Reducer::new(plan.clone()))
        .collect::<Result<_>>()?;
    Measurement::repeat(ctx.seconds, || {
        run_in_memory(&frames, 96 * 96, &mut workers)
    })
}

fn w3_memory(ctx: &Context) -> Result<Measurement> {
    let count = ctx.pick(4000, 2000);
    let area = 256 * 256;
    let frames = synthetic_frames(256, 256, (127.5, 127.5, 32.0), count, 3);
    let geometry = FrameGeometry::new(256, 256).map_err(|e| Error::core("W3 frame", e))?;
    let masks = w3_masks(geometry, 127.5, 127.5, 32.0)?;
    let mut outs = vec![vec![0f32; DENSE_BATCH * W3_MASKS]; ctx.threads];
    Measurement::repeat(ctx.seconds, || {
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            let handles: Vec<_> = outs
                .iter_mut()
                .map(|out| {
                    let (next, masks, frames) = (&next, &masks, &frames);
                    s.spawn(move || -> Result<()> {
                        let mut proj = DenseProjector::new(masks, DENSE_BATCH);
                        loop {
                            let first = next.fetch_add(DENSE_BATCH, Ordering::Relaxed);
                            if first >= count {
                                return Ok(());
                            }
                            let end = (first + DENSE_BATCH).min(count);
                            let batch = &frames[first * area..end * area];
                            let out = &mut out[..(end - first) * W3_MASKS];
                            proj.project(batch.chunks_exact(area), out)
                                .map_err(|e| Error::core(format!("W3 frames {first}…"), e))?;
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

    #[test]
    fn plans_have_the_issue_s_detector_counts() {
        let w1 = w1_plan(1).unwrap();
        assert_eq!(w1.coeffs_per_frame, 16);
        assert_eq!(w1.stage.area(), 64 * 64);
        let w2 = w2_plan(1).unwrap();
        assert_eq!(w2.coeffs_per_frame, 8);
        assert_eq!(w2.label_layers(), 1, "W2's detectors share one table");
        let g = FrameGeometry::new(256, 256).unwrap();
        let m = w3_masks(g, 127.5, 127.5, 32.0).unwrap();
        assert_eq!(m.masks(), W3_MASKS);
        assert_eq!((m.window().width, m.window().height), (64, 64));
    }

    /// The projector (windows to f32 once) gives the bits of the masks' own batch projection
    /// on the raw u16 frames, for a full and a partial batch, and refuses an oversized batch.
    #[test]
    fn dense_projector_matches_project_batch() {
        let g = FrameGeometry::new(256, 256).unwrap();
        let m = w3_masks(g, 127.5, 127.5, 32.0).unwrap();
        let area = 256 * 256;
        let frames = synthetic_frames(256, 256, (127.5, 127.5, 32.0), 11, 4);
        let mut proj = DenseProjector::new(&m, 8);
        for n in [8, 3] {
            let batch = &frames[..n * area];
            let mut want = vec![0f32; n * W3_MASKS];
            m.project_batch(batch.chunks_exact(area), &mut want)
                .unwrap();
            let mut got = vec![f32::NAN; n * W3_MASKS];
            assert_eq!(proj.project(batch.chunks_exact(area), &mut got), Ok(n));
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            );
        }
        let mut out = vec![0f32; 11 * W3_MASKS];
        assert_eq!(
            proj.project(frames.chunks_exact(area), &mut out),
            Err(ptyflow_core::Error::GeometryMismatch {
                expected: 8,
                found: 11
            })
        );
    }

    #[test]
    fn in_memory_driver_processes_every_frame_once() {
        let frames = synthetic_frames(96, 96, (47.5, 47.5, 16.0), 150, 9);
        let plan = Arc::new(w2_plan(150).unwrap());
        let mut workers = vec![
            Reducer::new(plan.clone()).unwrap(),
            Reducer::new(plan.clone()).unwrap(),
        ];
        assert_eq!(run_in_memory(&frames, 96 * 96, &mut workers).unwrap(), 150);
        let (a, b) = workers.split_at_mut(1);
        a[0].merge(&b[0]).unwrap();
        assert_eq!(a[0].frames_done(), 150);
        let want: Vec<f64> = frames
            .chunks_exact(96 * 96)
            .map(|f| f.iter().map(|&v| f64::from(v)).sum())
            .collect();
        assert_eq!(a[0].dose(), &want[..]);
    }
}
