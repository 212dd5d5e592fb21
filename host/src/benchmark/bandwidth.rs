//! The machine's memory read bandwidth, measured in the same run as the workloads so that
//! throughput can be quoted as a fraction of it (absolute times drift on a shared machine).

use std::time::Instant;

/// Measured read bandwidth in GB/s (10⁹ bytes per second).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Bandwidth {
    /// Threads that read concurrently.
    pub threads: usize,
    /// Best of the repetitions, GB/s.
    pub gbps: f64,
}

/// Reads a `bytes`-sized buffer (split evenly over `threads`) with a plain `u64` sum, `reps`
/// times, and returns the best rate. The buffer is much larger than the last-level cache so
/// this measures DRAM, not cache. The sum is kept (`black_box`) so the reads are not elided.
pub fn measure_read_bandwidth(threads: usize, bytes: usize, reps: usize) -> Bandwidth {
    let threads = threads.max(1);
    let words = (bytes / 8).max(threads * 1024);
    // Touch every page once so the first repetition does not pay for page faults.
    let buffer: Vec<u64> = (0..words as u64).collect();
    let chunk = words.div_ceil(threads);
    let mut best = 0.0f64;
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        let total: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = buffer
                .chunks(chunk)
                .map(|part| s.spawn(move || sum_words(part)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("bandwidth thread panicked"))
                .sum()
        });
        std::hint::black_box(total);
        let secs = start.elapsed().as_secs_f64();
        best = best.max((words * 8) as f64 / secs / 1e9);
    }
    Bandwidth {
        threads,
        gbps: best,
    }
}

/// A wrapping sum in eight independent lanes, which the compiler turns into wide vector adds.
fn sum_words(words: &[u64]) -> u64 {
    let mut lanes = [0u64; 8];
    let mut chunks = words.chunks_exact(8);
    for c in &mut chunks {
        for (l, &w) in lanes.iter_mut().zip(c) {
            *l = l.wrapping_add(w);
        }
    }
    let tail: u64 = chunks.remainder().iter().fold(0, |a, &w| a.wrapping_add(w));
    lanes.iter().fold(tail, |a, &l| a.wrapping_add(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_sum_equals_plain_sum() {
        let v: Vec<u64> = (0..1003).map(|i| i * 7919).collect();
        assert_eq!(sum_words(&v), v.iter().sum::<u64>());
    }

    #[test]
    fn bandwidth_is_positive() {
        let b = measure_read_bandwidth(2, 1 << 20, 1);
        assert!(b.gbps > 0.0 && b.threads == 2);
    }
}
