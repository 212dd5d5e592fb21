//! `ptyflow bench`: the workloads of [`crate::benchmark`] on synthetic data, beside the memory
//! read bandwidth measured in the same run.

use std::io::Write;

use crate::benchmark::{self, BenchOptions, Row, Workload};
use crate::{Error, Result};

/// Flags of `ptyflow bench`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
For every workload it prints the frame size, frames per second (median pass), GB/s of frame \
data, that rate as a fraction of the memory read bandwidth measured in the same run with the \
same number of threads, the target and whether it is met.

Workloads (synthetic data):
  W1 mmap    256x256 u16 from a raw dump in the page cache: bin 4 + 16 label masks
             (BF, ADF, 4 DPC, 10 rings) + mean pattern + dose            target 100 kfps
  W1 memory  the same from memory (separates the memory map's cost)      target 100 kfps
  W2 memory  96x96 u16: bin 2 + 8 label masks + sum, sum^2 + dose         target 300 kfps
  W3 memory  256x256 u16: 45 dense masks over the bright-field disc      target 100 kfps
  C1 mmap    256x256 u16 compressed (paper 002): 45 Zernike BF + 1 DF + 2
             perpendicular = 48 values, C = 1365, raw dump, pipeline::run target 100 kfps
  C1 memory  the same from memory, batches of 16                          target 100 kfps

Numbers drift on a shared machine: compare fractions of the bandwidth, medians of runs, and
`per cpu-s` (frames per CPU-second of the process, all threads: the rate per fully used core,
which other load does not lower).")]
pub struct Args {
    /// Print one JSON array (keys: workload, frame, fps, cpu_fps, gbps, bandwidth_fraction,
    /// target_fps, met) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Worker threads [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// About 10 s in all (smaller data, fewer passes) instead of about a minute.
    #[arg(long)]
    pub quick: bool,
    /// Run only the workloads whose name contains this text (repeatable), e.g. `--only W1`.
    #[arg(long, value_name = "TEXT")]
    pub only: Vec<String>,
}

/// Runs `ptyflow bench`.
pub fn run(args: Args) -> Result<()> {
    let threads = match args.threads {
        Some(0) => return Err(Error::param("--threads", "must be at least 1")),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let opts = BenchOptions {
        threads,
        quick: args.quick,
        only: args.only,
    };
    let known = benchmark::workloads();
    for o in &opts.only {
        if !known.iter().any(|w| w.name.contains(o.as_str())) {
            let names: Vec<_> = known.iter().map(|w| w.name).collect();
            return Err(Error::param(
                "--only",
                format!("`{o}` matches no workload; they are {}", names.join(", ")),
            ));
        }
    }
    let mut out = std::io::stdout().lock();
    let json = args.json;
    if !json {
        let _ = writeln!(
            out,
            "ptyflow bench: {threads} thread(s){}; measuring memory read bandwidth …",
            if opts.quick { ", quick" } else { "" }
        );
    }
    let mut header_done = false;
    let report = benchmark::run(&opts, |w: &Workload, row: &Row| {
        if json {
            return;
        }
        if !header_done {
            header_done = true;
            let _ = writeln!(
                out,
                "{:<16} {:>11} {:>10} {:>10} {:>7} {:>9} {:>10} {:>4}  what",
                "workload", "frame", "frames/s", "per cpu-s", "GB/s", "of bw", "target", "met"
            );
        }
        let _ = writeln!(
            out,
            "{:<16} {:>11} {:>10.0} {:>10} {:>7.2} {:>8.0}% {:>10.0} {:>4}  {}",
            row.workload,
            row.frame,
            row.fps,
            row.cpu_fps.map_or("-".into(), |v| format!("{v:.0}")),
            row.gbps,
            100.0 * row.bandwidth_fraction,
            row.target_fps,
            if row.met { "yes" } else { "NO" },
            w.description
        );
        let _ = out.flush();
    })?;
    let bw = format!(
        "memory read bandwidth: {:.1} GB/s with 1 thread, {:.1} GB/s with {} (\"of bw\" is \
         against the latter)",
        report.bandwidth_1.gbps, report.bandwidth_n.gbps, report.bandwidth_n.threads
    );
    if json {
        let text = serde_json::to_string_pretty(&report.rows)
            .map_err(|e| Error::param("--json", e.to_string()))?;
        let _ = writeln!(out, "{text}");
        eprintln!("{bw}");
    } else {
        let _ = writeln!(out, "{bw}");
    }
    Ok(())
}
