//! Issue 12: a serpentine scan is reconstructed at the right positions, the same through the
//! CLI and the C API. The bundled fixture (a raster scan) is rewritten with its odd rows
//! reversed, as a serpentine acquisition would store them; replayed with `--serpentine` it
//! must give the raster reconstruction back (the online pass and the sweeps then visit the
//! patterns in another order: close, not equal), and replayed without the flag (every odd
//! row at mirrored positions) it must not.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use num_complex::{Complex32, Complex64};
use ptyflow::capi::*;

const ROWS: usize = 10;
const COLS: usize = 10;

fn fixture() -> PathBuf {
    ptyflow_suite::workspace_root().join("fixtures/mos2-defocus/scan.raw")
}

/// The fixture's frames with every odd row reversed, and its sidecar beside them.
fn write_serpentine(dir: &Path) -> (PathBuf, Vec<u8>) {
    let bytes = std::fs::read(fixture()).unwrap();
    let frame = bytes.len() / (ROWS * COLS);
    let mut out = Vec::with_capacity(bytes.len());
    for row in 0..ROWS {
        for step in 0..COLS {
            let col = if row % 2 == 1 { COLS - 1 - step } else { step };
            let at = (row * COLS + col) * frame;
            out.extend_from_slice(&bytes[at..at + frame]);
        }
    }
    let dump = dir.join("serpentine.raw");
    std::fs::write(&dump, &out).unwrap();
    std::fs::copy(
        fixture().with_extension("raw.json"),
        dir.join("serpentine.raw.json"),
    )
    .unwrap();
    (dump, out)
}

fn replay(dump: &Path, out: &Path, extra: &[&str]) -> Vec<Complex32> {
    let (dump, out_s) = (dump.display().to_string(), out.display().to_string());
    let mut argv = vec![
        "ptyflow", "replay", &dump, "--recon", "epie", "--sweeps", "6",
    ];
    argv.extend_from_slice(extra);
    argv.extend_from_slice(&["--threads", "1", "-q", "--out", &out_s]);
    assert_eq!(ptyflow::cli::main_with_args(&argv), 0, "{argv:?}");
    ptyflow::output::read_npy::<Complex32>(&out.join("object.npy"))
        .unwrap()
        .1
}

/// Phase correlation of two objects over their middle (a border of a quarter cut off).
fn phase_corr(a: &[Complex32], b: &[Complex32]) -> f64 {
    let n = (a.len() as f64).sqrt() as usize;
    assert_eq!(n * n, a.len(), "square objects");
    let up = |z: &[Complex32]| -> Vec<Complex64> { ptyflow::metrics::to_c64(z) };
    let mask = ptyflow::metrics::crop_mask([n, n], n / 4);
    ptyflow::metrics::phase_correlation(&up(a), &up(b), &mask)
}

/// The C API's object for the frames of `frames`, pushed in file order with `serpentine`.
fn capi_object(frames: &[u8]) -> Vec<f32> {
    let json = CString::new(
        r#"{"source": {"push": {"width": 96, "height": 96, "pixel": "u16"}},
            "scan": {"shape": [10, 10], "serpentine": true},
            "reduce": {"center": [48, 48], "bf_radius": 30},
            "optics": {"kv": 80, "alpha_mrad": 24, "defocus_angstrom": 800,
                       "mrad_per_px": 0.8, "step_angstrom": 2.3},
            "recon": {"method": "epie", "sweeps": 6}, "run": {"threads": 1}}"#,
    )
    .unwrap();
    let mut p = std::ptr::null_mut();
    // SAFETY: a NUL-terminated string and a writable out pointer.
    let code = unsafe { ptyflow_create_json(json.as_ptr(), &mut p) };
    assert_eq!(code, PTYFLOW_OK);
    let frame = frames.len() / (ROWS * COLS);
    for (i, f) in frames.chunks_exact(frame).enumerate() {
        // SAFETY: a live handle and a frame readable for its length.
        let code = unsafe { ptyflow_push(p, f.as_ptr().cast(), f.len(), i as u64) };
        assert_eq!(code, PTYFLOW_OK);
    }
    // SAFETY: a live handle.
    assert_eq!(unsafe { ptyflow_finish(p) }, PTYFLOW_OK);
    let mut len = 0usize;
    // SAFETY: a live handle, a NUL-terminated name, a writable size_t.
    let code = unsafe { ptyflow_result_len(p, c"object".as_ptr(), &mut len) };
    assert_eq!(code, PTYFLOW_OK);
    let mut data = vec![0f32; len];
    // SAFETY: a live handle, a NUL-terminated name, a buffer of `len` floats.
    let code = unsafe { ptyflow_result_f32(p, c"object".as_ptr(), data.as_mut_ptr(), len) };
    assert_eq!(code, PTYFLOW_OK);
    // SAFETY: a live handle, freed once.
    unsafe { ptyflow_free(p) };
    data
}

#[test]
fn issue_12_serpentine_scans_reconstruct_at_their_positions_in_both_faces() {
    let tmp = tempfile::tempdir().unwrap();
    let (dump, frames) = write_serpentine(tmp.path());
    let raster = replay(&fixture(), &tmp.path().join("raster"), &[]);
    let serpentine = replay(&dump, &tmp.path().join("serp"), &["--serpentine"]);
    let misplaced = replay(&dump, &tmp.path().join("wrong"), &[]);
    let (good, bad) = (
        phase_corr(&serpentine, &raster),
        phase_corr(&misplaced, &raster),
    );
    eprintln!(
        "phase correlation with the raster reconstruction: serpentine {good:.4}, misplaced {bad:.4}"
    );
    // Measured: serpentine 0.9986, misplaced 0.906 (the lattice is periodic, so mirrored rows
    // still correlate; the defects and the edges do not).
    assert!(good > 0.99, "serpentine {good:.4}");
    assert!(bad < 0.95, "misplaced {bad:.4} vs serpentine {good:.4}");
    // The C API places the pushed frames the same way, bit for bit.
    let c = capi_object(&frames);
    let cli: Vec<f32> = serpentine.iter().flat_map(|z| [z.re, z.im]).collect();
    assert_eq!(c.len(), cli.len());
    assert!(
        c.iter().zip(&cli).all(|(a, b)| a.to_bits() == b.to_bits()),
        "the C API's serpentine object differs from the CLI's"
    );
}
