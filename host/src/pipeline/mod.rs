//! The streaming pipeline: a reader thread, N reduction workers over bounded channels, an
//! optional in-order consumer (the online reconstruction), results merged at the end.

pub mod detectors;
pub mod run;

pub use run::{Counters, OrderedConsumer, RunOptions, Worker, run};
pub mod push;
pub mod recon;
pub mod reduce;
pub mod replay;
