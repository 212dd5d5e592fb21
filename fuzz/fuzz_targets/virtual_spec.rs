//! Fuzz target: `ptyflow::fuzzing::virtual_spec` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ptyflow::fuzzing::virtual_spec(data));
