//! Reconstruction from a compressed file (issue 13 item 4, paper 002): the output directory
//! of [`compress`](super::compress()) (`coefficients.npy`, `basis.npy`, `basis.json`,
//! `report.json`) read back and reconstructed by Wirtinger flow with the compressed loss
//! ([`crate::recon::compressed`]): one update per pattern, then the sweeps, probe held.
//!
//! The optics and the scan come from the compressed output (`report.json`'s `optics`, which
//! `ptyflow compress` fills from the dump's sidecar, and the shape of `coefficients.npy`);
//! [`CompressedReconConfig::optics`] overrides any of them. The window is the whole (square)
//! frame, rolled by whole pixels so that the disc centre of `basis.json` lands on pixel
//! `(M/2, M/2)`, where the reconstruction puts zero scattering angle.
//!
//! The basis is checked before anything runs: `basis.npy` must be `[K_bf + K_df, h, w]` of
//! `basis.json`'s counts and frame, its masks orthonormal (to 10⁻³), and the regions rebuilt
//! from `basis.json`'s disc and annulus must hold the pixel counts it states; each error names
//! the file and the entry.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ptyflow_core::{FrameGeometry, Region, Run};
use serde_json::Value;

use super::recon::{ReconResult, lit_region, write};
use crate::optics::{Optics, window_pixel_angstrom};
use crate::output::{ensure_dir, read_npy, write_json};
use crate::pipeline::compress::CompressValues;
use crate::pipeline::recon::{OBJECT_MARGIN_PX, ReconWindow};
use crate::recon::compressed::{CompressedBasis, CompressedParams, CompressedReconstructor, Part};
use crate::recon::{
    Loss, Method, ObjectConstraint, RasterScan, ReconSetup, Reconstructor, ScanGeometry, WfParams,
};
use crate::{Error, Result};

/// Largest deviation of the masks' Gram matrix from the identity that is accepted.
const ORTHONORMAL_TOLERANCE: f64 = 1e-3;

/// A reconstruction from a compressed output directory.
#[derive(Debug, Clone, PartialEq)]
pub struct CompressedReconConfig {
    /// The directory `ptyflow compress --out` wrote.
    pub dir: PathBuf,
    /// Optics overriding those of `report.json`.
    pub optics: Optics,
    /// A probe (complex64 `.npy`, M × M, centred) instead of one from the optics.
    pub probe: Option<PathBuf>,
    /// The loss's weights and step.
    pub params: CompressedParams,
    /// Passes over the patterns after the online pass; `None`:
    /// [`default_sweeps`](crate::recon::schedule::default_sweeps).
    pub sweeps: Option<usize>,
    /// The constraint on the object's modulus.
    pub object_constraint: ObjectConstraint,
    /// Where to write `object.npy`, `probe.npy`, the previews, `loss.png`, `report.json`.
    pub out: Option<PathBuf>,
}

impl CompressedReconConfig {
    /// Defaults for `dir`: optics from the file, [`CompressedParams::default`], `|O| ≤ 1`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CompressedReconConfig {
            dir: dir.into(),
            optics: Optics::default(),
            probe: None,
            params: CompressedParams::default(),
            sweeps: None,
            object_constraint: ObjectConstraint::Passive,
            out: None,
        }
    }
}

/// A compressed output read back and checked.
#[derive(Debug, Clone)]
pub struct CompressedData {
    /// Scan shape `[rows, cols]`.
    pub scan: [usize; 2],
    /// `[rows·cols, V]` stored values, scan grid order (NaN where no frame was compressed).
    pub coefficients: Vec<f32>,
    /// The basis on the window (rolled so the disc centre is at `(M/2, M/2)`).
    pub basis: CompressedBasis,
    /// The optics `report.json` carries (empty when it has none).
    pub optics: Optics,
    /// Compression ratio C of `basis.json`.
    pub compression_ratio: f64,
    /// `basis.json` as read.
    pub description: Value,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::file(
            path,
            format!("cannot read it ({e}): not a `ptyflow compress` output directory?"),
        )
    })?;
    serde_json::from_str(&text).map_err(|e| Error::file(path, format!("not JSON: {e}")))
}

/// Reads `dir` (see the [module docs](self)); every inconsistency is an error naming the
/// file and entry.
pub fn load_compressed(dir: &Path) -> Result<CompressedData> {
    let info_path = dir.join("basis.json");
    let info = read_json(&info_path)?;
    let bad = |entry: &str, what: String| Error::file(&info_path, format!("`{entry}`: {what}"));
    let uint = |v: &Value, entry: &str| -> Result<usize> {
        v.as_u64()
            .map(|u| u as usize)
            .ok_or_else(|| bad(entry, "missing or not a count".into()))
    };
    let float = |v: &Value, entry: &str| -> Result<f64> {
        v.as_f64()
            .filter(|f| f.is_finite())
            .ok_or_else(|| bad(entry, "missing or not a finite number".into()))
    };
    let kb = uint(&info["count"]["bright_field"], "count.bright_field")?;
    let kd = uint(&info["count"]["dark_field"], "count.dark_field")?;
    let nb = uint(&info["pixels"]["bright_field"], "pixels.bright_field")?;
    let nd = uint(&info["pixels"]["dark_field"], "pixels.dark_field")?;
    let h = uint(&info["frame_shape"][0], "frame_shape")?;
    let w = uint(&info["frame_shape"][1], "frame_shape")?;
    let (cx, cy) = (
        float(&info["centre"][0], "centre")?,
        float(&info["centre"][1], "centre")?,
    );
    let r = float(&info["radius"], "radius")?;
    let outer = float(&info["dark_field_radii"][1], "dark_field_radii")?;
    let values: CompressValues = serde_json::from_value(info["values"].clone())
        .map_err(|_| bad("values", "expected `intensity` or `amplitude`".into()))?;
    if h != w {
        return Err(bad(
            "frame_shape",
            format!("{h} × {w}: the reconstruction needs a square frame"),
        ));
    }
    let m = h;
    let k = kb + kd;

    let basis_path = dir.join("basis.npy");
    let (bshape, masks) = read_npy::<f32>(&basis_path)?;
    if bshape != [k, h, w] {
        return Err(Error::file(
            &basis_path,
            format!(
                "shape {bshape:?}, but basis.json describes {kb} + {kd} masks on a {h} × {w} \
                 frame: the basis is of another geometry"
            ),
        ));
    }
    let coef_path = dir.join("coefficients.npy");
    let (cshape, coefficients) = read_npy::<f32>(&coef_path)?;
    if cshape.len() != 3 || cshape[2] != k + 2 {
        return Err(Error::file(
            &coef_path,
            format!(
                "shape {cshape:?}, expected [rows, cols, {}] (basis.json: {kb} + {kd} masks + 2 \
                 perpendicular components)",
                k + 2
            ),
        ));
    }
    let scan = [cshape[0], cshape[1]];
    let report_path = dir.join("report.json");
    let (optics, report_scan) = match read_json(&report_path) {
        Ok(report) => (
            Optics::from_json_lenient(&report["optics"]),
            report["scan"].as_array().map(|a| {
                a.iter()
                    .map(|v| v.as_u64().unwrap_or(0) as usize)
                    .collect::<Vec<_>>()
            }),
        ),
        Err(_) => (Optics::default(), None),
    };
    if let Some(s) = report_scan
        && s != scan
    {
        return Err(Error::file(
            &report_path,
            format!("`scan` {s:?} but coefficients.npy holds a {scan:?} scan"),
        ));
    }

    // The regions, as the compression built them.
    let geometry =
        FrameGeometry::new(w, h).map_err(|e| Error::core(info_path.display().to_string(), e))?;
    let runs = || vec![Run::default(); Region::<Vec<Run>>::max_runs(geometry)];
    let disc = Region::disc(geometry, cx as f32, cy as f32, r as f32, runs())
        .map_err(|e| Error::core(format!("{}: `centre`, `radius`", info_path.display()), e))?;
    let annulus = Region::annulus(
        geometry,
        cx as f32,
        cy as f32,
        r as f32,
        outer as f32,
        runs(),
    )
    .map_err(|e| Error::core(format!("{}: `dark_field_radii`", info_path.display()), e))?;
    if disc.pixels() != nb || annulus.pixels() != nd {
        return Err(bad(
            "pixels",
            format!(
                "the disc and annulus it describes hold {} and {} pixels, not {nb} and {nd}",
                disc.pixels(),
                annulus.pixels()
            ),
        ));
    }
    // Roll by whole pixels: detector (y, x) → window ((y + M/2 − cy) mod M, …).
    let (sy, sx) = (
        (m / 2) as i64 - cy.round() as i64,
        (m / 2) as i64 - cx.round() as i64,
    );
    let roll = |y: usize, x: usize| -> usize {
        let wy = (y as i64 + sy).rem_euclid(m as i64) as usize;
        let wx = (x as i64 + sx).rem_euclid(m as i64) as usize;
        wy * m + wx
    };
    let mut parts = vec![Part::Unmeasured; m * m];
    for (y, x) in disc.coordinates() {
        parts[roll(y, x)] = Part::BrightField;
    }
    for (y, x) in annulus.coordinates() {
        parts[roll(y, x)] = Part::DarkField;
    }
    let n = m * m;
    let mut rolled = vec![0f32; k * n];
    for j in 0..k {
        for y in 0..m {
            for x in 0..m {
                rolled[j * n + roll(y, x)] = masks[j * n + y * m + x];
            }
        }
    }
    check_orthonormal(&masks, k, n).map_err(|what| Error::file(&basis_path, what))?;
    let compression_ratio = info["compression_ratio"].as_f64().unwrap_or(f64::NAN);
    Ok(CompressedData {
        scan,
        coefficients,
        basis: CompressedBasis {
            m,
            masks: rolled,
            bright: kb,
            dark: kd,
            parts,
            values,
        },
        optics,
        compression_ratio,
        description: info,
    })
}

/// `Ok` when the `k` masks of `n` pixels are orthonormal to [`ORTHONORMAL_TOLERANCE`].
fn check_orthonormal(masks: &[f32], k: usize, n: usize) -> std::result::Result<(), String> {
    for a in 0..k {
        let ma = &masks[a * n..(a + 1) * n];
        for b in a..k {
            let mb = &masks[b * n..(b + 1) * n];
            let g: f64 = ma
                .iter()
                .zip(mb)
                .map(|(&x, &y)| f64::from(x) * f64::from(y))
                .sum();
            let want = if a == b { 1.0 } else { 0.0 };
            if (g - want).abs() > ORTHONORMAL_TOLERANCE {
                return Err(format!(
                    "masks {a} · {b} = {g:.6}, expected {want}: the basis is not orthonormal \
                     (compress.basis)"
                ));
            }
        }
    }
    Ok(())
}

/// Reconstructs `data` as `config` asks (see the [module docs](self)); writes the outputs
/// when `config.out` is given. `data` comes from [`load_compressed`] (or is built by the
/// caller, unchecked).
pub fn reconstruct_compressed(
    config: &CompressedReconConfig,
    data: &CompressedData,
) -> Result<ReconResult> {
    let optics = config.optics.or(data.optics);
    optics.validate()?;
    let kv = Optics::need(optics.kv, "kv")?;
    let mrad = Optics::need(optics.mrad_per_px, "mrad_per_px")?;
    let step = Optics::need(optics.step_angstrom, "step_angstrom")?;
    let m = data.basis.m;
    let dx = window_pixel_angstrom(kv, m, mrad);
    let probe = match &config.probe {
        None => optics.probe()?.sample(m, dx)?,
        Some(path) => {
            let (shape, probe) = read_npy::<num_complex::Complex32>(path)?;
            if shape != [m, m] {
                return Err(Error::file(
                    path,
                    format!("probe of shape {shape:?}, expected [{m}, {m}] (the frame)"),
                ));
            }
            probe
        }
    };
    let [rows, cols] = data.scan;
    let v = data.basis.values_per_pattern();
    if data.coefficients.len() != rows * cols * v {
        return Err(Error::param(
            "coefficients",
            format!(
                "{} values, expected {rows} × {cols} × {v}",
                data.coefficients.len()
            ),
        ));
    }
    let raster = RasterScan {
        step_angstrom: [step; 2],
        shape: [rows, cols],
        rotation_deg: optics.scan_rotation_deg.unwrap_or(0.0),
    };
    let geometry = ScanGeometry::raster(&raster, dx, m, OBJECT_MARGIN_PX)?;
    let positions = geometry.positions.len();
    let mut setup = ReconSetup::new(
        Method::Wf(WfParams::new(Loss::Amplitude)),
        probe,
        m,
        geometry,
    );
    setup.keep_patterns = false;
    setup.object_constraint = config.object_constraint;
    let sweeps = config
        .sweeps
        .unwrap_or_else(|| crate::recon::schedule::default_sweeps(positions, m));
    setup.planned_sweeps = sweeps;
    let engine = Reconstructor::new(setup)?;
    let mut recon = CompressedReconstructor::new(engine, &data.basis, config.params)?;
    let t = Instant::now();
    let mut missing = 0u64;
    for (index, values) in data.coefficients.chunks_exact(v).enumerate() {
        if values.iter().any(|x| !x.is_finite()) {
            missing += 1;
            continue;
        }
        recon.update(index, values)?;
    }
    let online_s = t.elapsed().as_secs_f64();
    for _ in 0..sweeps {
        recon.sweep();
    }
    recon.close();
    let seconds = t.elapsed().as_secs_f64();
    let engine = recon.engine();
    let (r0, r1, c0, c1) = lit_region(engine);
    let [orows, ocols] = engine.object_shape();
    let summary = serde_json::json!({
        "method": "wf-compressed",
        "source": config.dir.display().to_string(),
        "parameters": recon.params(),
        "basis": data.description,
        "compression_ratio": data.compression_ratio,
        "values_per_pattern": v,
        "kv": kv,
        "mrad_per_px": mrad,
        "step_angstrom": step,
        "scan_rotation_deg": raster.rotation_deg,
        "window_px": m,
        "preview_region_px": [[r0, r1], [c0, c1]],
        "object_shape": [orows, ocols],
        "object_pixel_angstrom": engine.object_pixel_angstrom(),
        "object_origin_px": engine.object_origin_px(),
        "updates": engine.updates_done(),
        "skipped": engine.skipped(),
        "missing_patterns": missing,
        "sweeps": sweeps,
        "object_constraint": engine.object_constraint(),
        "online_seconds": online_s,
        "seconds": seconds,
        "loss_history": engine.history(),
    });
    let result = ReconResult {
        engine: recon.into_engine(),
        window: ReconWindow {
            x0: 0,
            y0: 0,
            size: m,
            bin: 1,
            transpose: false,
            pad: 0,
        },
        summary,
    };
    if let Some(out) = &config.out {
        ensure_dir(out)?;
        let mut written = Vec::new();
        write(out, &result, &mut written)?;
        written.push("report.json".into());
        let mut report = result.summary.clone();
        report["outputs"] = serde_json::json!(written);
        write_json(&out.join("report.json"), &report)?;
    }
    Ok(result)
}
