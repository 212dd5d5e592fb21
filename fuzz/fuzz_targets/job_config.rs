//! Fuzz target: `ptyflow::fuzzing::job_config` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ptyflow::fuzzing::job_config(data));
