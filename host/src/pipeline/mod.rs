//! The streaming pipeline: a reader thread, N reduction workers over bounded channels, an
//! optional in-order consumer (the online reconstruction), results merged at the end.

pub mod detectors;
