//! `ptyflow bench`: throughput of every workload on synthetic data, beside the machine's memory
//! read bandwidth measured in the same run and the workload's frames-per-second target.
//!
//! # Adding a workload (the hook for the reconstruction, W4/W5)
//!
//! A workload is a [`Workload`]: a name, the frame it eats, a target and a plain function
//! `fn(&Context) -> Result<Measurement>`. [`workloads`] lists them in the order they run;
//! append to it (e.g. `recon::workloads()` chained after [`reduction::workloads`]). The
//! function builds everything it needs (data, plans, threads) *outside* its timed region,
//! times whole passes over its frames, and returns the median pass ([`Measurement::median_of`]).
//! It should spend about [`Context::seconds`] in timed passes, use [`Context::threads`] worker
//! threads, and may write temporary dumps under [`Context::dir`] (removed after the run).
//!
//! Bytes per second are quoted for whole frames (`frames/s × width × height × pixel bytes`),
//! as the issue does (100 kfps of 256 × 256 u16 frames is 13.1 GB/s), even where a workload
//! reads only part of each frame (dense masks read their window).

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::Result;

pub mod bandwidth;
pub mod compress;
pub mod live;
pub mod recon;
pub mod reduction;

pub use bandwidth::{Bandwidth, measure_read_bandwidth};

/// What a workload function gets: the run's settings.
#[derive(Debug, Clone)]
pub struct Context {
    /// Worker threads.
    pub threads: usize,
    /// Quick mode: smaller data, shorter timing.
    pub quick: bool,
    /// Seconds of timed passes to aim for.
    pub seconds: f64,
    /// A scratch folder for temporary dumps, removed when the run ends.
    pub dir: PathBuf,
}

impl Context {
    /// `full` in the default mode, `quick` in quick mode.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }
}

/// One workload's timing: frames processed in a representative pass and its wall time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Frames in the pass.
    pub frames: u64,
    /// Wall time of the pass in seconds.
    pub seconds: f64,
    /// CPU time the whole process spent per pass (all threads, user + system; the mean over
    /// the passes [`Measurement::repeat`] ran), seconds; 0 where not measured. On a machine shared with other work the wall time grows, this
    /// does not: `frames / cpu_seconds` is the rate per fully used core.
    pub cpu_seconds: f64,
}

impl Measurement {
    /// Frames per second.
    pub fn fps(&self) -> f64 {
        self.frames as f64 / self.seconds
    }

    /// Frames per CPU-second (per fully used core; `None` when not measured).
    pub fn cpu_fps(&self) -> Option<f64> {
        (self.cpu_seconds > 0.0).then(|| self.frames as f64 / self.cpu_seconds)
    }

    /// The pass with the median rate (`None` for no passes).
    pub fn median_of(mut passes: Vec<Measurement>) -> Option<Measurement> {
        passes.sort_by(|a, b| a.fps().total_cmp(&b.fps()));
        passes.get(passes.len() / 2).copied()
    }

    /// Runs `pass` (which returns the frames it processed) until `seconds` have been spent in
    /// it, at least 3 and at most 1000 times, and returns the median pass. Set-up belongs
    /// outside `pass`.
    pub fn repeat(seconds: f64, mut pass: impl FnMut() -> Result<u64>) -> Result<Measurement> {
        let mut passes = Vec::new();
        let mut spent = 0.0;
        let cpu_start = process_cpu_seconds();
        while passes.len() < 3 || (spent < seconds && passes.len() < 1000) {
            let t = Instant::now();
            let frames = pass()?;
            let s = t.elapsed().as_secs_f64();
            spent += s;
            passes.push(Measurement {
                frames,
                seconds: s,
                cpu_seconds: 0.0,
            });
        }
        // CPU time is counted in 10 ms ticks: spread the total over the passes (which all
        // process the same frames) rather than time each short pass.
        let cpu = (process_cpu_seconds() - cpu_start) / passes.len() as f64;
        let median = Measurement::median_of(passes).expect("at least three passes");
        Ok(Measurement {
            cpu_seconds: cpu,
            ..median
        })
    }
}

/// CPU time of this process so far (user + system, all threads), seconds, from
/// `/proc/self/stat` (clock ticks of 10 ms: time passes of a second or more); 0 where there
/// is no `/proc`.
pub fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses and may hold spaces): state is
    // field 3, utime 14, stime 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // `rest` starts at field 3 (index 0): utime is index 11, stime 12. USER_HZ is 100 on
    // every Linux port.
    (ticks(11) + ticks(12)) / 100.0
}

/// A benchmark workload; see the [module docs](self) for how to add one.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Short name, e.g. `W1 mmap`.
    pub name: &'static str,
    /// What one frame goes through, for the table.
    pub description: &'static str,
    /// Frame width in pixels.
    pub width: usize,
    /// Frame height in pixels.
    pub height: usize,
    /// Pixel type name (`u16`).
    pub pixel: &'static str,
    /// Bytes per pixel.
    pub pixel_bytes: usize,
    /// Target frames per second (at 2 threads on the reference machine).
    pub target_fps: f64,
    /// Runs the workload and returns its median pass.
    pub run: fn(&Context) -> Result<Measurement>,
}

impl Workload {
    /// Bytes of one frame.
    pub fn frame_bytes(&self) -> usize {
        self.width * self.height * self.pixel_bytes
    }
}

/// Every workload, in the order `ptyflow bench` runs them: W1–W3 (reduction), C1
/// (compression, paper 002), W4–W5 (reconstruction), L1 (live sources on loopback).
pub fn workloads() -> Vec<Workload> {
    let mut all = reduction::workloads();
    all.extend(compress::workloads());
    all.extend(recon::workloads());
    all.extend(live::workloads());
    all
}

/// One line of the result: what `--json` prints per workload.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// Workload name.
    pub workload: String,
    /// Frame size and pixel type, e.g. `256x256 u16`.
    pub frame: String,
    /// Frames per second (median pass).
    pub fps: f64,
    /// Frames per CPU-second of the median pass, all threads counted: the rate per fully used
    /// core, which a loaded machine does not lower (null where not measured).
    pub cpu_fps: Option<f64>,
    /// Frame bytes per second, GB/s (10⁹).
    pub gbps: f64,
    /// `gbps` over the read bandwidth measured with the same number of threads.
    pub bandwidth_fraction: f64,
    /// Target frames per second.
    pub target_fps: f64,
    /// Whether `fps ≥ target_fps`.
    pub met: bool,
}

/// Settings of a whole benchmark run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Worker threads.
    pub threads: usize,
    /// Quick mode (about 10 s in all).
    pub quick: bool,
    /// Only workloads whose name contains one of these (all when empty).
    pub only: Vec<String>,
}

/// The result of a benchmark run.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Read bandwidth with one thread.
    pub bandwidth_1: Bandwidth,
    /// Read bandwidth with the run's threads.
    pub bandwidth_n: Bandwidth,
    /// One row per workload.
    pub rows: Vec<Row>,
    /// The workloads, in the order of `rows`.
    pub workloads: Vec<Workload>,
}

/// Removes the scratch folder when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("ptyflow-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| crate::Error::io(&dir, e))?;
        Ok(ScratchDir(dir))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Measures the bandwidth, then runs every selected workload; `on_row` sees each row as soon
/// as it is measured (for live output).
pub fn run(opts: &BenchOptions, mut on_row: impl FnMut(&Workload, &Row)) -> Result<BenchReport> {
    let threads = opts.threads.max(1);
    let (bw_bytes, bw_reps) = if opts.quick {
        (256 << 20, 3)
    } else {
        (1 << 30, 5)
    };
    let bandwidth_1 = measure_read_bandwidth(1, bw_bytes, bw_reps);
    let bandwidth_n = measure_read_bandwidth(threads, bw_bytes, bw_reps);
    let scratch = ScratchDir::new()?;
    let ctx = Context {
        threads,
        quick: opts.quick,
        seconds: if opts.quick { 1.2 } else { 8.0 },
        dir: scratch.path().to_owned(),
    };
    let selected: Vec<Workload> = workloads()
        .into_iter()
        .filter(|w| opts.only.is_empty() || opts.only.iter().any(|o| w.name.contains(o.as_str())))
        .collect();
    let mut rows = Vec::with_capacity(selected.len());
    for w in &selected {
        let m = (w.run)(&ctx)?;
        let fps = m.fps();
        let gbps = fps * w.frame_bytes() as f64 / 1e9;
        let row = Row {
            workload: w.name.to_owned(),
            frame: format!("{}x{} {}", w.width, w.height, w.pixel),
            fps,
            cpu_fps: m.cpu_fps(),
            gbps,
            bandwidth_fraction: gbps / bandwidth_n.gbps,
            target_fps: w.target_fps,
            met: fps >= w.target_fps,
        };
        on_row(w, &row);
        rows.push(row);
    }
    Ok(BenchReport {
        bandwidth_1,
        bandwidth_n,
        rows,
        workloads: selected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_pass_is_the_middle_rate() {
        let m = |frames, seconds| Measurement {
            frames,
            seconds,
            cpu_seconds: 0.0,
        };
        let med = Measurement::median_of(vec![m(10, 1.0), m(30, 1.0), m(20, 1.0)]).unwrap();
        assert_eq!(med.fps(), 20.0);
        assert!(Measurement::median_of(Vec::new()).is_none());
    }

    #[test]
    fn repeat_runs_at_least_three_passes() {
        let mut calls = 0;
        let m = Measurement::repeat(0.0, || {
            calls += 1;
            Ok(5)
        })
        .unwrap();
        assert_eq!((calls, m.frames), (3, 5));
    }

    #[test]
    fn workload_names_are_unique() {
        let w = workloads();
        let mut names: Vec<_> = w.iter().map(|w| w.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), w.len());
    }
}
