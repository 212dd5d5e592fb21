//! End-to-end tests of the ptyflow workspace, one binary split into modules (one per area).
//! CLI-as-a-process tests live in `host/tests/cli.rs`, where cargo provides the binary's path.

mod capi;
mod compress;
mod follow;
mod fuzz_corpora;
mod golden;
mod memory;
mod quality;
mod realdata;
mod replay;
mod serpentine;
mod shrinking;
mod sources;
mod synthetic;
