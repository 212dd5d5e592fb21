//! `ptyflow simulate` as a user runs it, and the bundled fixture's reproducibility.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The arguments that made `fixtures/mos2-defocus` (see `fixtures/README.md`).
const FIXTURE_ARGS: &[&str] = &[
    "simulate",
    "--preset",
    "mos2-defocus",
    "--scan",
    "10x10",
    "--dose-per-pattern",
    "100000",
    "--seed",
    "1",
];

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/mos2-defocus")
}

/// Regenerates the fixture (in-process, so the optimised test build of the library does the
/// work) and checks every file is byte-identical to the committed one.
#[test]
fn fixture_regenerates_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mos2-defocus");
    let mut args = vec!["ptyflow".to_string()];
    args.extend(FIXTURE_ARGS.iter().map(|s| s.to_string()));
    args.extend(["--out".to_string(), out.display().to_string()]);
    assert_eq!(ptyflow::cli::main_with_args(args), 0);
    for name in [
        "scan.raw",
        "scan.raw.json",
        "object.npy",
        "probe.npy",
        "positions.npy",
        "meta.json",
    ] {
        let new = std::fs::read(out.join(name)).unwrap();
        let old = std::fs::read(fixture_dir().join(name))
            .unwrap_or_else(|e| panic!("fixtures/mos2-defocus/{name}: {e}"));
        assert!(
            new == old,
            "fixtures/mos2-defocus/{name} differs from a fresh run; regenerate it with the \
             command in fixtures/README.md if the change is intended"
        );
    }
    let dump = std::fs::metadata(fixture_dir().join("scan.raw"))
        .unwrap()
        .len();
    assert_eq!(dump, 100 * 96 * 96 * 2);
    assert!(dump <= 2_000_000);
}

#[test]
fn cli_writes_a_mib_dataset_and_help_names_units() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_ptyflow"))
        .args([
            "simulate",
            "--preset",
            "mos2-focus",
            "--scan",
            "2x3",
            "--detector",
            "48",
            "--mrad-per-px",
            "1.5",
            "--dose-per-pattern",
            "5000",
            "--format",
            "mib",
            "--png",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let mib = std::fs::read(dir.path().join("scan.mib")).unwrap();
    assert_eq!(mib.len(), 6 * (384 + 48 * 48 * 2));
    assert!(mib.starts_with(b"MQ1,000001,00384,01,0048,0048,U16,   1x1,01,"));
    for f in [
        "scan.mib.json",
        "meta.json",
        "object_phase.png",
        "mean_pattern.png",
    ] {
        assert!(dir.path().join(f).exists(), "{f}");
    }
    let help = Command::new(env!("CARGO_BIN_EXE_ptyflow"))
        .args(["simulate", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for unit in ["kV", "mrad", "Å", "e⁻/Å²", "electrons per"] {
        assert!(help.contains(unit), "help lacks {unit}");
    }
}

#[test]
fn cli_bad_flag_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ptyflow"))
        .args(["simulate", "--scan", "10by10", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--scan") && err.contains("10by10"), "{err}");
}
