//! Issue 13: the compression job (paper 002) on the bundled fixture, against a plain
//! reference: every stored value recomputed in f64 from the frames and `basis.npy`.

use std::path::{Path, PathBuf};

use ptyflow::job::{self, CompressConfig, Hooks, JobConfig};
use ptyflow::output::read_npy;
use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/mos2-defocus/scan.raw")
}

fn config(basis: &str, out: Option<&Path>) -> JobConfig {
    let mut c = JobConfig::dump(fixture());
    c.compress = Some(CompressConfig {
        basis: basis.into(),
        dark_field: 3,
        dark_outer: None,
        values: Default::default(),
        seed: 7,
    });
    c.run.threads = Some(2);
    c.out = out.map(Path::to_path_buf);
    c
}

/// The fixture's frames as f64, frame-major.
fn frames() -> Vec<f64> {
    let bytes = std::fs::read(fixture()).unwrap();
    bytes
        .chunks_exact(2)
        .map(|b| f64::from(u16::from_le_bytes([b[0], b[1]])))
        .collect()
}

#[test]
fn stored_values_match_a_plain_projection_for_every_basis() {
    let x = frames();
    let area = 96 * 96;
    for basis in ["zernike:15", "binning:6", "patterns:12"] {
        let dir = tempfile::tempdir().unwrap();
        job::compress(&config(basis, Some(dir.path())), &Hooks::default()).unwrap();
        let (cshape, coeffs) = read_npy::<f32>(&dir.path().join("coefficients.npy")).unwrap();
        let (bshape, masks) = read_npy::<f32>(&dir.path().join("basis.npy")).unwrap();
        let (_, angle) = read_npy::<f32>(&dir.path().join("angle.npy")).unwrap();
        let info: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("basis.json")).unwrap()).unwrap();
        let kb = info["count"]["bright_field"].as_u64().unwrap() as usize;
        let kd = info["count"]["dark_field"].as_u64().unwrap() as usize;
        let v = kb + kd + 2;
        assert_eq!(cshape, [10, 10, v], "{basis}");
        assert_eq!(bshape, [kb + kd, 96, 96], "{basis}");
        // The masks are orthonormal.
        for a in 0..kb + kd {
            for b in 0..kb + kd {
                let g: f64 = (0..area)
                    .map(|p| f64::from(masks[a * area + p]) * f64::from(masks[b * area + p]))
                    .sum();
                let want = if a == b { 1.0 } else { 0.0 };
                assert!((g - want).abs() < 1e-5, "{basis}: gram[{a}][{b}] = {g}");
            }
        }
        // Each region is the union of its masks' supports (binning squares tile the disc;
        // Zernike and pattern bases are non-zero almost everywhere on it).
        let support = |r: std::ops::Range<usize>| -> Vec<bool> {
            (0..area)
                .map(|p| r.clone().any(|k| masks[k * area + p] != 0.0))
                .collect()
        };
        let (in_bf, in_df) = (support(0..kb), support(kb..kb + kd));
        for (f, frame) in x.chunks_exact(area).enumerate() {
            let row = &coeffs[f * v..(f + 1) * v];
            let mut captured = [0.0f64; 2];
            for k in 0..kb + kd {
                let c: f64 = (0..area)
                    .map(|p| f64::from(masks[k * area + p]) * frame[p])
                    .sum();
                let scale: f64 = (0..area)
                    .map(|p| (f64::from(masks[k * area + p]) * frame[p]).abs())
                    .sum();
                assert!(
                    (f64::from(row[k]) - c).abs() <= 1e-5 * scale + 1e-6,
                    "{basis} frame {f} k {k}: {} vs {c}",
                    row[k]
                );
                captured[usize::from(k >= kb)] += c * c;
            }
            let energy = |inside: &[bool]| -> f64 {
                (0..area)
                    .filter(|&p| inside[p])
                    .map(|p| frame[p] * frame[p])
                    .sum()
            };
            let (eb, ed) = (energy(&in_bf), energy(&in_df));
            for (got, want, e) in [
                (row[kb + kd], eb - captured[0], eb),
                (row[kb + kd + 1], ed - captured[1], ed),
            ] {
                assert!(
                    (f64::from(got) - want).abs() <= 1e-5 * e,
                    "{basis} frame {f}: perp {got} vs {want}"
                );
            }
            let alpha = (eb - captured[0]).max(0.0).sqrt().atan2(captured[0].sqrt());
            assert!(
                (f64::from(angle[f]) - alpha).abs() < 1e-3,
                "{basis} frame {f}"
            );
        }
        let report: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap())
                .unwrap();
        assert_eq!(report["compression_ratio"], (area as f64 / v as f64));
        assert!(
            report["angle_max_rad"].as_f64().unwrap() >= report["angle_mean_rad"].as_f64().unwrap()
        );
    }
}

#[test]
fn recorded_patterns_are_a_seeded_subset() {
    let run = |seed: u64| {
        let mut c = config("patterns:10", None);
        c.compress.as_mut().unwrap().seed = seed;
        let outcome = job::compress(&c, &Hooks::default()).unwrap();
        outcome.basis.pattern_indices.clone()
    };
    let a = run(3);
    assert_eq!(a.len(), 10);
    assert!(a.windows(2).all(|w| w[0] < w[1]) && a[9] < 100, "{a:?}");
    assert_eq!(run(3), a);
    assert_ne!(run(4), a);
}

#[test]
fn bad_input_names_the_parameter() {
    let err = |c: JobConfig| {
        job::compress(&c, &Hooks::default())
            .unwrap_err()
            .to_string()
    };
    let e = err(config("zernike:5000", None));
    assert!(e.contains("compress.basis") && e.contains("pixels"), "{e}");
    let mut c = config("zernike:5", None);
    c.compress.as_mut().unwrap().dark_field = 200;
    c.compress.as_mut().unwrap().dark_outer = Some(30.5);
    let e = err(c);
    assert!(
        e.contains("compress.dark_field") && e.contains("pixels"),
        "{e}"
    );
    let mut c = config("zernike:5", None);
    c.reduce.center = Some([90.0, 48.0]);
    c.reduce.bf_radius = Some(30.0);
    let e = err(c);
    assert!(e.contains("reduce.center"), "{e}");
    let e = err(config("wavelets:4", None));
    assert!(e.contains("compress.basis"), "{e}");
    // The JSON form is validated the same way and round-trips.
    let text = r#"{"source": {"dump": {"path": "x.raw"}},
                   "compress": {"basis": "patterns:0"}}"#;
    let e = JobConfig::from_json(text)
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert!(e.contains("compress.basis"), "{e}");
    let c = config("binning:4", None);
    let back = JobConfig::from_json(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
}

// ---- Issue 13 item 4/5: reconstruction from the compressed file. ----

/// The fixture compressed with `basis` (amplitude values, the dark field as one value) into
/// `dir`.
fn compress_amplitude(basis: &str, dir: &Path) {
    let mut c = config(basis, Some(dir));
    let cc = c.compress.as_mut().unwrap();
    cc.dark_field = 1;
    cc.values = ptyflow::pipeline::compress::CompressValues::Amplitude;
    job::compress(&c, &Hooks::default()).unwrap();
}

/// Phase correlation over the scanned area against the fixture's truth: the truth and the
/// reconstruction cut by their own `object_origin_px` bookkeeping (no rotation, equal pixel
/// sizes), global phase and ramp removed, not registered (as `tests/quality.rs`).
fn phase_correlation(result: &job::ReconResult) -> f64 {
    use num_complex::Complex32;
    use ptyflow::metrics::{CompareOptions, compare};
    let dir = fixture().parent().unwrap().to_path_buf();
    let meta: Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    let (tshape, truth) = read_npy::<Complex32>(&dir.join("object.npy")).unwrap();
    let (_, pos) = read_npy::<f64>(&dir.join("positions.npy")).unwrap();
    let dx = meta["object_pixel_angstrom"].as_f64().unwrap();
    let engine = &result.engine;
    assert!((engine.object_pixel_angstrom() - dx).abs() < 1e-6);
    let t0 = [
        meta["object_origin_px"][0].as_f64().unwrap(),
        meta["object_origin_px"][1].as_f64().unwrap(),
    ];
    let r0 = engine.object_origin_px();
    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for p in pos.chunks_exact(2) {
        for a in 0..2 {
            let v = t0[a] + (p[a] - pos[a]) / dx;
            lo[a] = lo[a].min(v);
            hi[a] = hi[a].max(v);
        }
    }
    let first = [lo[0].ceil() as usize, lo[1].ceil() as usize];
    let shape = [
        hi[0].floor() as usize + 1 - first[0],
        hi[1].floor() as usize + 1 - first[1],
    ];
    let d = [(r0[0] - t0[0]).round(), (r0[1] - t0[1]).round()];
    assert!((r0[0] - t0[0] - d[0]).abs() < 1e-6 && (r0[1] - t0[1] - d[1]).abs() < 1e-6);
    let [_, rcols] = engine.object_shape();
    let cut = |data: &[Complex32], cols: usize, off: [f64; 2]| -> Vec<Complex32> {
        let mut out = Vec::with_capacity(shape[0] * shape[1]);
        for r in 0..shape[0] {
            for c in 0..shape[1] {
                let row = ((first[0] + r) as f64 + off[0]) as usize;
                let col = ((first[1] + c) as f64 + off[1]) as usize;
                out.push(data[row * cols + col]);
            }
        }
        out
    };
    let t = cut(&truth, tshape[1], [0.0, 0.0]);
    let rec = cut(engine.object(), rcols, d);
    let options = CompareOptions {
        crop_px: 0,
        register: false,
        remove_ramp: true,
    };
    compare(&rec, shape, &t, shape, &options)
        .unwrap()
        .phase_correlation
}

/// Reconstructs `data` with 12 sweeps.
fn reconstruct(dir: &Path, data: &job::CompressedData) -> job::ReconResult {
    let mut c = job::CompressedReconConfig::new(dir);
    c.sweeps = Some(12);
    job::reconstruct_compressed(&c, data).unwrap()
}

/// Issue 13 item 5: the fixture reconstructed from its compressed file (`zernike:45` on the
/// disc, one dark-field value, amplitude values: V = 48, C = 192) by the compressed loss, 12
/// sweeps, scores a phase correlation of at least [`COMPRESSED_MIN`] against the truth:
/// measured 0.386. Controls that must miss it: the same coefficients at shuffled scan
/// positions (measured −0.024) and the Zernike masks without their OSA normalisation, an
/// unnormalised basis (0.222). (The uncompressed amplitude WF reaches 0.947 on this
/// 10 × 10 scan; 48 values per pattern leave the 140² object underdetermined, see
/// studies/README.md.)
const COMPRESSED_MIN: f64 = 0.30;

#[test]
fn reconstruction_from_coefficients_scores_and_wrong_bases_miss() {
    let dir = tempfile::tempdir().unwrap();
    compress_amplitude("zernike:45", dir.path());
    let data = job::load_compressed(dir.path()).unwrap();
    let good = phase_correlation(&reconstruct(dir.path(), &data));
    // The coefficient vectors of the positions shuffled (a fixed permutation).
    let mut shuffled = data.clone();
    let v = data.basis.values_per_pattern();
    let n = data.scan[0] * data.scan[1];
    for i in 0..n {
        let j = (i * 37 + 11) % n;
        shuffled.coefficients[i * v..(i + 1) * v]
            .copy_from_slice(&data.coefficients[j * v..(j + 1) * v]);
    }
    let shuffled = phase_correlation(&reconstruct(dir.path(), &shuffled));
    // The Zernike masks without their OSA normalisation √(2(n+1)/(1+δ_m0)) (the
    // polynomials as written), the coefficients as stored.
    let mut unnormalised = data.clone();
    let area = data.basis.m * data.basis.m;
    for j in 0..data.basis.bright {
        let nn = ((-3.0 + (9.0 + 8.0 * j as f64).sqrt()) / 2.0).ceil() as i64;
        let mm = 2 * j as i64 - nn * (nn + 2);
        let norm = (2.0 * (nn + 1) as f64 / if mm == 0 { 2.0 } else { 1.0 }).sqrt() as f32;
        for x in &mut unnormalised.basis.masks[j * area..(j + 1) * area] {
            *x /= norm;
        }
    }
    let unnormalised = phase_correlation(&reconstruct(dir.path(), &unnormalised));
    eprintln!(
        "compressed zernike:45: {good:.4}, shuffled {shuffled:.4}, unnormalised {unnormalised:.4}"
    );
    assert!(good >= COMPRESSED_MIN, "compressed: {good}");
    assert!(
        shuffled < COMPRESSED_MIN,
        "shuffled coefficients: {shuffled}"
    );
    assert!(
        unnormalised < COMPRESSED_MIN,
        "unnormalised basis: {unnormalised}"
    );
}

#[test]
fn reconstruct_bad_input_names_the_file_and_entry() {
    use ptyflow::output::write_npy;
    let dir = tempfile::tempdir().unwrap();
    compress_amplitude("zernike:6", dir.path());
    let err = |d: &Path| job::load_compressed(d).unwrap_err().to_string();
    // Not a compressed output at all.
    let empty = tempfile::tempdir().unwrap();
    let e = err(empty.path());
    assert!(e.contains("basis.json"), "{e}");
    let copy = || {
        let d = tempfile::tempdir().unwrap();
        for f in ["basis.json", "basis.npy", "coefficients.npy", "report.json"] {
            std::fs::copy(dir.path().join(f), d.path().join(f)).unwrap();
        }
        d
    };
    // basis.npy missing.
    let d = copy();
    std::fs::remove_file(d.path().join("basis.npy")).unwrap();
    let e = err(d.path());
    assert!(e.contains("basis.npy"), "{e}");
    // A basis of another geometry (a 64 × 64 frame).
    let d = copy();
    write_npy(
        &d.path().join("basis.npy"),
        &[7, 64, 64],
        &vec![0f32; 7 * 64 * 64],
    )
    .unwrap();
    let e = err(d.path());
    assert!(
        e.contains("basis.npy") && e.contains("another geometry"),
        "{e}"
    );
    // Coefficients of another basis (one value too many per pattern).
    let d = copy();
    write_npy(
        &d.path().join("coefficients.npy"),
        &[10, 10, 10],
        &vec![0f32; 1000],
    )
    .unwrap();
    let e = err(d.path());
    assert!(
        e.contains("coefficients.npy") && e.contains("[rows, cols, 9]"),
        "{e}"
    );
    // A basis that is not orthonormal (every mask doubled).
    let d = copy();
    let (shape, masks) = read_npy::<f32>(&dir.path().join("basis.npy")).unwrap();
    let doubled: Vec<f32> = masks.iter().map(|v| 2.0 * v).collect();
    write_npy(&d.path().join("basis.npy"), &shape, &doubled).unwrap();
    let e = err(d.path());
    assert!(e.contains("basis.npy") && e.contains("orthonormal"), "{e}");
    // basis.json describing another disc.
    let d = copy();
    let mut info: Value =
        serde_json::from_slice(&std::fs::read(d.path().join("basis.json")).unwrap()).unwrap();
    info["radius"] = serde_json::json!(20.0);
    std::fs::write(d.path().join("basis.json"), info.to_string()).unwrap();
    let e = err(d.path());
    assert!(e.contains("basis.json") && e.contains("pixels"), "{e}");
    // The optics the reconstruction needs come from report.json; without them the error
    // names the field.
    let d = copy();
    std::fs::write(d.path().join("report.json"), r#"{"scan": [10, 10]}"#).unwrap();
    let data = job::load_compressed(d.path()).unwrap();
    let e = job::reconstruct_compressed(&job::CompressedReconConfig::new(d.path()), &data)
        .unwrap_err()
        .to_string();
    assert!(e.contains("optics.kv"), "{e}");
}

/// `ptyflow compress … --values amplitude` then `ptyflow reconstruct DIR` with no physics
/// flag (the optics come from the compressed output), in process; a directory that is not a
/// compressed output exits with code 2.
#[test]
fn cli_reconstruct_reads_the_compressed_output() {
    let dir = tempfile::tempdir().unwrap();
    let (c, r) = (dir.path().join("c"), dir.path().join("r"));
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let run = |args: Vec<String>| ptyflow::cli::main_with_args(args);
    let code = run(vec![
        "ptyflow".into(),
        "compress".into(),
        s(&fixture()),
        "--basis".into(),
        "patterns:8".into(),
        "--values".into(),
        "amplitude".into(),
        "--out".into(),
        s(&c),
    ]);
    assert_eq!(code, 0);
    let report: Value =
        serde_json::from_slice(&std::fs::read(c.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["optics"]["kv"], 80.0);
    let code = run(vec![
        "ptyflow".into(),
        "reconstruct".into(),
        s(&c),
        "--sweeps".into(),
        "2".into(),
        "-q".into(),
        "--out".into(),
        s(&r),
    ]);
    assert_eq!(code, 0);
    let rep: Value =
        serde_json::from_slice(&std::fs::read(r.join("report.json")).unwrap()).unwrap();
    assert_eq!(rep["updates"], 300);
    assert_eq!(rep["values_per_pattern"], 11);
    let (shape, _) = read_npy::<num_complex::Complex32>(&r.join("object.npy")).unwrap();
    assert_eq!(shape.len(), 2);
    let code = run(vec![
        "ptyflow".into(),
        "reconstruct".into(),
        s(dir.path()),
        "-q".into(),
        "--out".into(),
        s(&r),
    ]);
    assert_eq!(code, 2);
}
