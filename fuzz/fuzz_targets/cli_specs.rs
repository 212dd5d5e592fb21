//! Fuzz target: `ptyflow::fuzzing::cli_specs` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ptyflow::fuzzing::cli_specs(data));
