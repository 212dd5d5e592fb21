//! Criterion bench of the whole reduction pipeline (reader thread, workers over bounded
//! channels, `Reducer`) on W1 frames read from a memory-mapped raw dump in the page cache.
//! The dump is written and opened once, outside the timed loop; each iteration replays all of
//! it with two worker threads.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ptyflow::benchmark::reduction::{synthetic_frames, w1_plan};
use ptyflow::pipeline::reduce::Reducer;
use ptyflow::pipeline::{RunOptions, run};
use ptyflow::source::{Dump, Format, OpenOptions, RawDtype, RawOverrides};

const FRAMES: usize = 1024;

fn pipeline(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w1.raw");
    let frames = synthetic_frames(256, 256, (127.5, 127.5, 32.0), FRAMES, 11);
    let bytes: Vec<u8> = frames.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&path, bytes).unwrap();
    let open = OpenOptions {
        format: Some(Format::Raw),
        raw: RawOverrides {
            width: Some(256),
            height: Some(256),
            dtype: Some(RawDtype::U16),
            ..Default::default()
        },
    };
    let dump = Dump::open(&path, &open).unwrap();
    let plan = Arc::new(w1_plan(FRAMES).unwrap());
    let opts = RunOptions {
        threads: 2,
        ..RunOptions::default()
    };
    let mut g = c.benchmark_group("pipeline W1 from mmap (2 workers)");
    g.throughput(Throughput::Elements(FRAMES as u64));
    g.bench_function("256x256 u16 bin4 + 16 labels + stats + dose", |b| {
        b.iter(|| {
            let (_, counters) = run(&dump, || Reducer::new(plan.clone()), None, &opts).unwrap();
            assert_eq!(counters.frames_processed, FRAMES as u64);
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    targets = pipeline
}
criterion_main!(benches);
