//! Fuzz target: `ptyflow::fuzzing::empad_xml` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ptyflow::fuzzing::empad_xml(data));
