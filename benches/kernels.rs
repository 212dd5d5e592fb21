//! Criterion benches of the core kernels and of the fused per-frame stage, one thread, on
//! synthetic 4D-STEM frames (a bright-field disc of radius 32 px on a 256 × 256 detector).
//! Throughput is in frames; set-up is outside `b.iter`. Each iteration works through a block of
//! [`FRAMES`] distinct frames (8 MiB of `u16`, so the kernels see cache-missing data as the
//! pipeline does, not one frame hot in L1).

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ptyflow::benchmark::reduction::{synthetic_frames, w1_plan, w2_plan, w3_masks};
use ptyflow::pipeline::Worker;
use ptyflow::pipeline::compress::compress_batch;
use ptyflow::pipeline::reduce::{DenseProjector, Reducer, project_dense_batch};
use ptyflow::source::Frame;
use ptyflow_core::mask::dense::{DenseBuilder, DenseMasks};
use ptyflow_core::{
    Basis, Binner, Compressor, FrameGeometry, FrameSummary, LabelBuilder, LabelMasks, Region, Run,
    Stats,
};

const FRAMES: usize = 64;
const SIDE: usize = 256;
const AREA: usize = SIDE * SIDE;

fn geometry() -> FrameGeometry {
    FrameGeometry::new(SIDE, SIDE).unwrap()
}

fn frames() -> Vec<u16> {
    synthetic_frames(SIDE, SIDE, (127.5, 127.5, 32.0), FRAMES, 7)
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20)
}

fn binning(c: &mut Criterion) {
    let data = frames();
    let mut g = c.benchmark_group("bin 256x256 u16");
    g.throughput(Throughput::Elements(FRAMES as u64));
    for factor in [1, 2, 4, 8, 16] {
        let binner = Binner::new(geometry(), factor).unwrap();
        let mut out = vec![0u32; binner.out_len()];
        g.bench_with_input(BenchmarkId::new("factor", factor), &factor, |b, _| {
            b.iter(|| {
                for f in black_box(&data).chunks_exact(AREA) {
                    binner.bin(f, &mut out).unwrap();
                }
                black_box(&out);
            })
        });
    }
    g.finish();
}

/// K label segments over the full frame: K = 1 a disc, otherwise K rings out to 120 px.
fn label_masks(k: usize) -> LabelMasks<Vec<u16>, Vec<f32>> {
    let mut b = LabelBuilder::new(geometry(), vec![0u16; AREA], vec![0f32; AREA]).unwrap();
    if k == 1 {
        b.disk(127.5, 127.5, 32.0).unwrap();
    } else {
        b.rings(127.5, 127.5, 0.0, 120.0, k).unwrap();
    }
    b.build()
}

fn labels(c: &mut Criterion) {
    let data = frames();
    let mut g = c.benchmark_group("label masks 256x256 u16");
    g.throughput(Throughput::Elements(FRAMES as u64));
    for k in [1, 16, 64] {
        let masks = label_masks(k);
        let mut out = vec![0f32; k];
        g.bench_with_input(BenchmarkId::new("K", k), &k, |b, _| {
            b.iter(|| {
                for f in black_box(&data).chunks_exact(AREA) {
                    masks.project(f, &mut out).unwrap();
                }
                black_box(&out);
            })
        });
    }
    g.finish();
}

fn dense(c: &mut Criterion) {
    let data = frames();
    let mut g = c.benchmark_group("dense masks r=32 256x256 u16");
    g.throughput(Throughput::Elements(FRAMES as u64));
    let all = w3_masks(geometry(), 127.5, 127.5, 32.0).unwrap();
    for k in [16, 45] {
        // The first k of W3's masks, over the same window.
        let window = all.window();
        let mut storage = vec![0f32; DenseBuilder::<Vec<f32>>::storage_len(k, &window)];
        storage[..window.area()].copy_from_slice(all.region());
        let mut builder = DenseBuilder::new(geometry(), window, storage).unwrap();
        for i in 0..k {
            builder.push_weights(all.mask(i).unwrap()).unwrap();
        }
        let masks: DenseMasks<Vec<f32>> = builder.build();
        let mut out = vec![0f32; 16 * k];
        g.bench_with_input(BenchmarkId::new("K", k), &k, |b, _| {
            b.iter(|| {
                for batch in black_box(&data).chunks_exact(16 * AREA) {
                    masks
                        .project_batch(batch.chunks_exact(AREA), &mut out)
                        .unwrap();
                }
                black_box(&out);
            })
        });
        // The same kernel as the host runs it: compiled for AVX2 when the CPU has it.
        g.bench_with_input(BenchmarkId::new("K (host SIMD)", k), &k, |b, _| {
            b.iter(|| {
                for batch in black_box(&data).chunks_exact(16 * AREA) {
                    project_dense_batch(&masks, batch.chunks_exact(AREA), &mut out).unwrap();
                }
                black_box(&out);
            })
        });
        // As W3 runs it: each frame's window converted to f32 once, then projected.
        let mut projector = DenseProjector::new(&masks, 16);
        g.bench_with_input(BenchmarkId::new("K (host, f32 windows)", k), &k, |b, _| {
            b.iter(|| {
                for batch in black_box(&data).chunks_exact(16 * AREA) {
                    projector
                        .project(batch.chunks_exact(AREA), &mut out)
                        .unwrap();
                }
                black_box(&out);
            })
        });
    }
    g.finish();
}

/// Paper 002's compression set-up on the synthetic frames: `k_bf` bright-field masks on the
/// disc (r = 32, 3,228 px), the dark field as one value (the annular piston, i.e. the scaled
/// sum) on the annulus 32 < d ≤ 120 (42,016 px), and the two perpendicular components.
fn compressor(k_bf: usize, bright: &str) -> Compressor<Vec<Run>, Vec<f32>> {
    let g = geometry();
    let runs = || vec![Run::default(); Region::<Vec<Run>>::max_runs(g)];
    let disc = Region::disc(g, 127.5, 127.5, 32.0, runs()).unwrap();
    let annulus = Region::annulus(g, 127.5, 127.5, 32.0, 120.0, runs()).unwrap();
    let (n, m) = (disc.pixels(), annulus.pixels());
    let mut scratch = vec![0f64; m.max(n)];
    let bf = match bright {
        "zernike" => Basis::zernike(disc, k_bf, vec![0f32; k_bf * n], &mut scratch).unwrap(),
        _ => {
            let patterns = synthetic_frames(SIDE, SIDE, (127.5, 127.5, 32.0), k_bf, 11);
            Basis::from_patterns(
                disc,
                patterns.chunks_exact(AREA),
                vec![0f32; k_bf * n],
                &mut scratch,
            )
            .unwrap()
        }
    };
    let df = Basis::zernike(annulus, 1, vec![0f32; m], &mut scratch).unwrap();
    Compressor::new(bf, df).unwrap()
}

fn compression(c: &mut Criterion) {
    let data = frames();
    let mut g = c.benchmark_group("compress 256x256 u16 (paper 002)");
    g.throughput(Throughput::Elements(FRAMES as u64));
    for (k_bf, bright) in [(45, "zernike"), (15, "patterns")] {
        let comp = compressor(k_bf, bright);
        let v = comp.values_per_frame();
        let mut out = vec![0f32; 16 * v];
        let mut summaries = vec![FrameSummary::default(); 16];
        let id = format!("{k_bf} {bright} BF + 1 DF + 2 perp");
        g.bench_function(format!("{id}, one frame at a time"), |b| {
            b.iter(|| {
                for f in black_box(&data).chunks_exact(AREA) {
                    black_box(comp.compress(f, &mut out[..v]).unwrap());
                }
            })
        });
        g.bench_function(format!("{id}, batches of 16"), |b| {
            b.iter(|| {
                for batch in black_box(&data).chunks_exact(16 * AREA) {
                    comp.compress_batch(batch.chunks_exact(AREA), &mut out, &mut summaries)
                        .unwrap();
                }
                black_box(&out);
            })
        });
        g.bench_function(format!("{id}, batches of 16, widest SIMD"), |b| {
            b.iter(|| {
                for batch in black_box(&data).chunks_exact(16 * AREA) {
                    compress_batch(&comp, batch.chunks_exact(AREA), &mut out, &mut summaries)
                        .unwrap();
                }
                black_box(&out);
            })
        });
    }
    // The two regions apart: what each costs.
    let comp = compressor(45, "zernike");
    let mut cb = vec![0f32; 45];
    g.bench_function("bright field only: 45 zernike on 3,228 px", |b| {
        b.iter(|| {
            for f in black_box(&data).chunks_exact(AREA) {
                black_box(comp.bright().project(f, &mut cb).unwrap());
            }
        })
    });
    let mut cd = vec![0f32; 1];
    g.bench_function("dark field only: 1 value on 42,016 px", |b| {
        b.iter(|| {
            for f in black_box(&data).chunks_exact(AREA) {
                black_box(comp.dark().project(f, &mut cd).unwrap());
            }
        })
    });
    g.finish();
}

fn statistics(c: &mut Criterion) {
    let data = frames();
    let mut g = c.benchmark_group("statistics");
    g.throughput(Throughput::Elements(FRAMES as u64));
    let mut full = Stats::<u16, _>::new(geometry(), vec![0u64; AREA], vec![0u64; AREA]).unwrap();
    g.bench_function("256x256 u16", |b| {
        b.iter(|| {
            for f in black_box(&data).chunks_exact(AREA) {
                black_box(full.add(f).unwrap());
            }
        })
    });
    // At W1's stage resolution: frames binned by 4 (set-up, not timed).
    let binner = Binner::new(geometry(), 4).unwrap();
    let small = binner.out_geometry();
    let mut binned = vec![0u32; FRAMES * small.area()];
    for (f, o) in data
        .chunks_exact(AREA)
        .zip(binned.chunks_exact_mut(small.area()))
    {
        binner.bin(f, o).unwrap();
    }
    let mut stats =
        Stats::<u32, _>::new(small, vec![0u64; small.area()], vec![0; small.area()]).unwrap();
    g.bench_function("64x64 u32 (binned by 4)", |b| {
        b.iter(|| {
            for f in black_box(&binned).chunks_exact(small.area()) {
                black_box(stats.add(f).unwrap());
            }
        })
    });
    g.finish();
}

fn fused(c: &mut Criterion) {
    let mut g = c.benchmark_group("fused core stage (Reducer, one thread)");
    g.throughput(Throughput::Elements(FRAMES as u64));
    let data = frames();
    let mut w1 = Reducer::new(Arc::new(w1_plan(FRAMES).unwrap())).unwrap();
    g.bench_function("W1 256x256 bin4 + 16 labels + stats + dose", |b| {
        b.iter(|| {
            for (i, f) in black_box(&data).chunks_exact(AREA).enumerate() {
                w1.process(i, Frame::U16(f)).unwrap();
            }
        })
    });
    let small = synthetic_frames(96, 96, (47.5, 47.5, 16.0), FRAMES, 8);
    let mut w2 = Reducer::new(Arc::new(w2_plan(FRAMES).unwrap())).unwrap();
    g.bench_function("W2 96x96 bin2 + 8 labels + stats + dose", |b| {
        b.iter(|| {
            for (i, f) in black_box(&small).chunks_exact(96 * 96).enumerate() {
                w2.process(i, Frame::U16(f)).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = binning, labels, dense, compression, statistics, fused
}
criterion_main!(benches);
