//! The fuzz targets' corpora (`fuzz/corpus/<target>/`, with every crash the fuzzer found kept
//! under `regressions/`) replayed through the same functions the targets call, on stable Rust,
//! as an ordinary test. Fuzzing itself needs nightly and cargo-fuzz; see `fuzz/README.md`.

use std::path::{Path, PathBuf};

use ptyflow::fuzzing;
use ptyflow_suite::workspace_root;

/// Every file under `dir`, sorted, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Runs `target` on every corpus file of `name`; a panic names the file.
fn replay(name: &str, target: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    let dir = workspace_root().join("fuzz").join("corpus").join(name);
    let inputs = files(&dir);
    assert!(!inputs.is_empty(), "{}: no corpus", dir.display());
    for path in inputs {
        let bytes = std::fs::read(&path).unwrap();
        if std::panic::catch_unwind(|| target(&bytes)).is_err() {
            panic!("fuzz target {name} panicked on {}", path.display());
        }
    }
}

#[test]
fn mib_header() {
    replay("mib_header", fuzzing::mib_header);
}

#[test]
fn mib_hdr() {
    replay("mib_hdr", fuzzing::mib_hdr);
}

#[test]
fn empad_xml() {
    replay("empad_xml", fuzzing::empad_xml);
}

#[test]
fn raw_sidecar() {
    replay("raw_sidecar", fuzzing::raw_sidecar);
}

#[test]
fn virtual_spec() {
    replay("virtual_spec", fuzzing::virtual_spec);
}

#[test]
fn parse_size() {
    replay("parse_size", fuzzing::parse_size);
}

#[test]
fn dump_file() {
    let dir = tempfile::tempdir().unwrap();
    replay("dump_file", |bytes| fuzzing::dump_file(dir.path(), bytes));
}

#[test]
fn job_config() {
    replay("job_config", fuzzing::job_config);
}

#[test]
fn cli_specs() {
    replay("cli_specs", fuzzing::cli_specs);
}

#[test]
fn npy_header() {
    replay("npy_header", fuzzing::npy_header);
}

#[test]
fn merlin_stream() {
    replay("merlin_stream", fuzzing::merlin_stream);
}

#[test]
fn bslz4() {
    replay("bslz4", fuzzing::bslz4);
}
