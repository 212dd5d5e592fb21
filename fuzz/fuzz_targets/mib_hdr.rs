//! Fuzz target: `ptyflow::fuzzing::mib_hdr` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ptyflow::fuzzing::mib_hdr(data));
