//! Fuzz target: `ptyflow::fuzzing::raw_sidecar` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ptyflow::fuzzing::raw_sidecar(data));
