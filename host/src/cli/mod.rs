//! The `ptyflow` command line: flags parsed by clap into per-subcommand `Args`, each handed to
//! its module's `run`. `main.rs` only calls [`main_with_args`].

use clap::{Parser, Subcommand};

pub mod bench;
pub mod compare;
pub mod compress;
pub mod dump_args;
pub mod info;
pub mod live;
mod progress;
pub mod reconstruct;
pub mod replay;
pub mod simulate;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Streaming 4D-STEM reduction and online ptychography for pixelated electron detectors.
///
/// Units everywhere: lengths in Å, angles in mrad, voltage in kV, dose in e⁻/Å² or electrons
/// per pattern. Detector frames keep the detector's layout (zero angle near the centre).
#[derive(Debug, Parser)]
#[command(name = "ptyflow", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
// Parsed once per process: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Describe a dump: format, geometry, pixel type, frame count, sum, min, max.
    Info(info::Args),
    /// Replay a dump through the frame pipeline (binning, virtual detectors, statistics) and
    /// optionally reconstruct the specimen by ptychography.
    Replay(replay::Args),
    /// Receive a scan from a detector over the network (a Merlin's data port) through the
    /// same pipeline as `replay`.
    Live(live::Args),
    /// Simulate a 4D-STEM ptychography dataset with its ground truth.
    Simulate(simulate::Args),
    /// Compress every frame of a dump by change of basis (paper 002): coefficients, angles,
    /// the basis and a report.
    Compress(compress::Args),
    /// Reconstruct the specimen from the output of `compress` (Wirtinger flow with the
    /// compressed loss of paper 002).
    Reconstruct(reconstruct::Args),
    /// Compare a reconstructed object with a ground truth (NRMSE, correlation, FRC).
    Compare(compare::Args),
    /// Measure the throughput of every stage against the 100 kfps target.
    Bench(bench::Args),
}

/// Parses `args` (with the program name first) and runs the subcommand.
///
/// Returns the process exit code ([`crate::Error::exit_code`]): 0 on success, 2 on bad input
/// (the message is printed to stderr), 70 when a pipeline stage failed (a bug), 130 when
/// interrupted. The library names parameters by their configuration field; the messages
/// here name the flag instead ([`crate::job::FIELDS`]).
pub fn main_with_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let result = match cli.command {
        Command::Info(a) => info::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Live(a) => live::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Compress(a) => compress::run(a),
        Command::Reconstruct(a) => reconstruct::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Bench(a) => bench::run(a),
    };
    match result.map_err(|e| e.renamed(flag_of)) {
        Ok(()) => 0,
        Err(crate::Error::Interrupted(msg)) => {
            eprintln!("ptyflow: interrupted: {msg}");
            130
        }
        Err(e) => {
            eprintln!("ptyflow: error: {e}");
            e.exit_code()
        }
    }
}

/// The flag that sets a configuration field, if there is one.
pub fn flag_of(field: &str) -> Option<&'static str> {
    crate::job::FIELDS
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, flag)| *flag)
}

/// A flag that Ctrl-C sets, installed once per process (later calls return the same flag).
pub fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = Arc::clone(&flag);
        // If a handler is already installed (embedding program), run without one.
        let _ = ctrlc::set_handler(move || f.store(true, std::sync::atomic::Ordering::Relaxed));
        flag
    })
    .clone()
}
