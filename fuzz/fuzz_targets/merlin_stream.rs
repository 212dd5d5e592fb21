//! Fuzz target: `ptyflow::fuzzing::merlin_stream` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ptyflow::fuzzing::merlin_stream(data));
