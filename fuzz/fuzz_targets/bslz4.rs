//! Fuzz target: `ptyflow::fuzzing::bslz4` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ptyflow::fuzzing::bslz4(data));
