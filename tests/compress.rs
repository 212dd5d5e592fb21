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
