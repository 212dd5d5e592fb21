//! The streaming pipeline: a reader thread, N reduction workers over bounded channels, an
//! optional in-order consumer (the online reconstruction), results merged at the end. The
//! job layer ([`crate::job`]) decides what runs; this module runs it.

pub mod compress;
pub mod detectors;
pub mod positions;
pub mod push;
pub mod recon;
pub mod reduce;
pub mod run;

pub use run::{
    Counters, Failure, IdleTimeout, OrderedConsumer, Progress, RunOptions, Worker, run, run_keeping,
};
