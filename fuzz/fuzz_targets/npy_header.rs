//! Fuzz target: `ptyflow::fuzzing::npy_header` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ptyflow::fuzzing::npy_header(data));
