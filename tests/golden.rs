//! Issue 12: behaviour unchanged by the job layer, proven bit for bit. The bundled fixture is
//! run through the CLI (two jobs: the README's main job with ePIE, and a binned, cropped job
//! with Wirtinger flow) and through the C API (in process); a digest of every `.npy` (every
//! byte, header included), every C result (its `f32` bits) and the report without its times
//! must equal `tests/golden/fixture.json`, recorded by the code before the restructuring.
//! `PTYFLOW_BLESS=1` rewrites that file (only do so for a change that is meant to alter
//! outputs, and say so in the commit).
//!
//! One worker thread everywhere: with more, the statistics are merged in whatever order the
//! workers finish, and floating-point sums are not associative.

use std::collections::BTreeMap;
use std::ffi::{CString, c_int};
use std::path::Path;

use ptyflow::capi::*;
use serde_json::Value;

/// FNV-1a, 64 bits: a digest for equality, not for security.
fn fnv1a(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn fixture() -> String {
    ptyflow_suite::workspace_root()
        .join("fixtures/mos2-defocus/scan.raw")
        .display()
        .to_string()
}

/// The report with what may change between runs removed: times and rates, and the dump's
/// path (where the checkout is).
fn timeless(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.retain(|k, _| {
                    !(k.ends_with("_s")
                        || k.starts_with("fps")
                        || k.ends_with("_per_s")
                        || k == "path")
                });
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

/// Digests of a CLI run: each `.npy` file, and the timeless report.
fn cli_digest(args: &[&str], out: &Path) -> Value {
    let dump = fixture();
    let out_s = out.display().to_string();
    let mut argv = vec!["ptyflow", "replay", dump.as_str()];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--threads", "1", "-q", "--out", out_s.as_str()]);
    assert_eq!(ptyflow::cli::main_with_args(&argv), 0, "{argv:?}");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(out).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".npy") {
            files.insert(name, fnv1a(&std::fs::read(entry.path()).unwrap()));
        }
    }
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    serde_json::json!({ "npy": files, "report": timeless(report) })
}

fn last_error() -> String {
    let mut buf = vec![0 as std::ffi::c_char; 1024];
    // SAFETY: `buf` is writable for its length.
    unsafe { ptyflow_last_error_message(buf.as_mut_ptr(), buf.len()) };
    // SAFETY: the function NUL-terminates within `buf`.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Digests of every result of a C API pipeline made from `json` and fed the fixture's frames.
fn capi_digest(json: &str) -> Value {
    let json = CString::new(json).unwrap();
    let mut p = std::ptr::null_mut();
    // SAFETY: a NUL-terminated string and a writable out pointer.
    let code = unsafe { ptyflow_create_json(json.as_ptr(), &mut p) };
    assert_eq!(code, PTYFLOW_OK, "{}", last_error());
    let bytes = std::fs::read(fixture()).unwrap();
    let mut frame_bytes = 0usize;
    // SAFETY: a live handle and a writable size_t.
    let code = unsafe { ptyflow_frame_bytes(p, &mut frame_bytes) };
    assert_eq!(code, PTYFLOW_OK);
    for (i, frame) in bytes.chunks_exact(frame_bytes).enumerate() {
        // SAFETY: a live handle and a frame readable for its length.
        let code = unsafe { ptyflow_push(p, frame.as_ptr().cast(), frame.len(), i as u64) };
        assert_eq!(code, PTYFLOW_OK, "{}", last_error());
    }
    // SAFETY: a live handle.
    assert_eq!(unsafe { ptyflow_finish(p) }, PTYFLOW_OK, "{}", last_error());
    let mut count = 0usize;
    // SAFETY: a live handle and a writable size_t.
    assert_eq!(unsafe { ptyflow_result_count(p, &mut count) }, PTYFLOW_OK);
    let mut results = BTreeMap::new();
    for i in 0..count {
        let mut name = vec![0 as std::ffi::c_char; 256];
        let mut needed = 0usize;
        // SAFETY: a live handle, a writable name buffer of its length and a size_t.
        let code = unsafe { ptyflow_result_name(p, i, name.as_mut_ptr(), name.len(), &mut needed) };
        assert_eq!(code, PTYFLOW_OK);
        // SAFETY: NUL-terminated by ptyflow_result_name.
        let name_c = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }.to_owned();
        let mut len = 0usize;
        // SAFETY: a live handle, a NUL-terminated name and a writable size_t.
        let code = unsafe { ptyflow_result_len(p, name_c.as_ptr(), &mut len) };
        assert_eq!(code, PTYFLOW_OK);
        let mut data = vec![0f32; len];
        // SAFETY: a live handle, a NUL-terminated name, a buffer of `len` floats.
        let code: c_int = unsafe { ptyflow_result_f32(p, name_c.as_ptr(), data.as_mut_ptr(), len) };
        assert_eq!(code, PTYFLOW_OK);
        let bits: Vec<u8> = data
            .iter()
            .flat_map(|v| v.to_bits().to_le_bytes())
            .collect();
        results.insert(name_c.to_string_lossy().into_owned(), fnv1a(&bits));
    }
    // SAFETY: a live handle, freed once.
    unsafe { ptyflow_free(p) };
    serde_json::json!(results)
}

/// The C API job: the README's detectors on the fixture (disc given: push mode cannot find
/// it), ePIE with the fixture's optics (the same values the CLI takes from the sidecar).
pub const CAPI_JOB: &str = r#"{
    "source": {"push": {"width": 96, "height": 96, "pixel": "u16"}},
    "scan": {"shape": [10, 10]},
    "reduce": {"virtual": ["bf", "adf:32:46", "com", "rings:3:32:46", "dpc"],
               "center": [48.0, 48.0], "bf_radius": 30.0, "radius_unit": "px"},
    "optics": {"kv": 80, "alpha_mrad": 24, "defocus_angstrom": 800, "mrad_per_px": 0.8,
               "step_angstrom": 2.3},
    "recon": {"method": "epie", "sweeps": 4},
    "run": {"threads": 1}
}"#;

#[test]
fn issue_12_fixture_outputs_are_bit_identical_through_cli_and_c_api() {
    let tmp = tempfile::tempdir().unwrap();
    let readme = cli_digest(
        &[
            "--virtual",
            "bf",
            "--virtual",
            "adf:32:46",
            "--virtual",
            "com",
            "--recon",
            "epie",
        ],
        &tmp.path().join("readme"),
    );
    let wf = cli_digest(
        &[
            "--bin",
            "2",
            "--crop",
            "8,8,80,80",
            "--virtual",
            "rings:3:10:20",
            "--virtual",
            "dpc",
            "--recon",
            "wf",
            "--loss",
            "poisson",
            "--recon-window",
            "64",
            "--recon-bin",
            "2",
            "--sweeps",
            "3",
        ],
        &tmp.path().join("wf"),
    );
    let got = serde_json::json!({
        "cli_readme_epie": readme,
        "cli_binned_wf": wf,
        "capi_epie": capi_digest(CAPI_JOB),
    });
    let path = ptyflow_suite::workspace_root().join("tests/golden/fixture.json");
    if std::env::var_os("PTYFLOW_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
        eprintln!("rewrote {}", path.display());
        return;
    }
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).expect("tests/golden/fixture.json (PTYFLOW_BLESS=1)"),
    )
    .unwrap();
    for key in ["cli_readme_epie", "cli_binned_wf", "capi_epie"] {
        assert_eq!(
            serde_json::to_string_pretty(&got[key]).unwrap(),
            serde_json::to_string_pretty(&want[key]).unwrap(),
            "{key}: outputs differ from the golden record"
        );
    }
}
