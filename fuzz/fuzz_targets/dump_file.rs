//! Fuzz target: `ptyflow::fuzzing::dump_file`, a whole `.mib` or raw dump (+ sidecar) opened
//! and read frame by frame (see fuzz/README.md).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

/// One scratch folder per fuzzing process, reused for every input.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ptyflow-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch folder");
        dir
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| ptyflow::fuzzing::dump_file(dir(), data));
