//! Fuzz target: `ptyflow::fuzzing::parse_size` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ptyflow::fuzzing::parse_size(data));
