//! The `ptyflow` command line: flags parsed by clap into per-subcommand `Args`, each handed to
//! its module's `run`. `main.rs` only calls [`main_with_args`].

use clap::{Parser, Subcommand};

pub mod bench;
pub mod compare;
pub mod info;
pub mod replay;
pub mod simulate;

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
    /// Simulate a 4D-STEM ptychography dataset with its ground truth.
    Simulate(simulate::Args),
    /// Compare a reconstructed object with a ground truth (NRMSE, correlation, FRC).
    Compare(compare::Args),
    /// Measure the throughput of every stage against the 100 kfps target.
    Bench(bench::Args),
}

/// Parses `args` (with the program name first) and runs the subcommand.
///
/// Returns the process exit code: 0 on success, 2 on bad input (the message is printed to
/// stderr), 130 when interrupted.
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
        Command::Simulate(a) => simulate::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Bench(a) => bench::run(a),
    };
    match result {
        Ok(()) => 0,
        Err(crate::Error::Interrupted(msg)) => {
            eprintln!("ptyflow: interrupted: {msg}");
            130
        }
        Err(e) => {
            eprintln!("ptyflow: error: {e}");
            2
        }
    }
}
