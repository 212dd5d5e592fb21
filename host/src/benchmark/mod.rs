//! `ptyflow bench`: throughput of every stage on synthetic data, beside the machine's measured
//! memory bandwidth and the 100 kfps target.

pub mod bandwidth;
