//! The generated source (`replay --synthetic`, issue 16's soak) run briefly: every frame in is
//! processed, the statistics are those of the generator's frames computed here with plain
//! loops, and the resident-memory samples are in the report.

use ptyflow::job::{Hooks, JobConfig, Source, SyntheticSource};
use ptyflow::source::synthetic;

#[test]
fn issue16_a_synthetic_stream_is_reduced_frame_for_frame() {
    let (frames, w, h, distinct) = (20_000, 16, 12, 7);
    let dir = tempfile::tempdir().unwrap();
    let mut c = JobConfig::dump("unused");
    c.source = Source::Synthetic(SyntheticSource {
        frames,
        width: w,
        height: h,
        distinct: Some(distinct),
    });
    c.scan.shape = Some([200, 100]);
    c.run.threads = Some(2);
    c.run.sample_memory_s = Some(0.005);
    c.out = Some(dir.path().to_owned());
    let o = ptyflow::job::replay(&c, &Hooks::default()).unwrap();
    let counters = &o.report.counters;
    assert_eq!(
        (
            counters.frames_read,
            counters.frames_processed,
            counters.frames_dropped
        ),
        (frames as u64, frames as u64, 0)
    );

    // The reference: the generator's frames, summed here.
    let ring: Vec<Vec<u16>> = (0..distinct)
        .map(|s| {
            let mut f = vec![0u16; w * h];
            synthetic::frame(s, w, h, &mut f);
            f
        })
        .collect();
    assert_ne!(ring[0], ring[1], "the slots differ");
    let dose = o.reducer.dose();
    for (i, d) in dose.iter().enumerate() {
        let want: u64 = ring[i % distinct].iter().map(|&v| u64::from(v)).sum();
        assert_eq!(*d, want as f64, "dose of frame {i}");
    }
    let stats = o.reducer.pattern_stats().unwrap();
    for (p, got) in stats.mean.iter().enumerate() {
        let sum: f64 = (0..frames).map(|i| f64::from(ring[i % distinct][p])).sum();
        let mean = sum / frames as f64;
        assert!((got - mean).abs() <= 1e-9 * mean.max(1.0), "mean at {p}");
    }
    assert_eq!(stats.mean.len(), w * h);

    // Memory samples: [seconds, bytes, frames done], in time order, the last after the run.
    let samples = o.report.extra["rss_samples"].as_array().unwrap();
    assert!(samples.len() >= 2, "{samples:?}");
    let last = samples.last().unwrap().as_array().unwrap();
    assert_eq!(last[2].as_f64().unwrap(), frames as f64);
    for pair in samples.windows(2) {
        assert!(pair[0][0].as_f64().unwrap() <= pair[1][0].as_f64().unwrap());
        assert!(
            pair[1][1].as_f64().unwrap() > 1e6,
            "a resident size in bytes"
        );
    }
    let report = std::fs::read_to_string(dir.path().join("report.json")).unwrap();
    assert!(report.contains("rss_samples") && report.contains("synthetic:20000x16x12"));
}
