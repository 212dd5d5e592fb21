//! A compression job (issue 13, paper 002): every frame of a dump reduced to its coefficients
//! in an orthonormal basis of the bright-field disc and of the dark field around it, plus the
//! two perpendicular components.
//!
//! # What is stored per frame
//!
//! `[c_bf (K_bf), c_df (K_df), ‖x_⊥,bf‖², ‖x_⊥,df‖²]`: V = K_bf + K_df + 2 `f32` values
//! (the core's [`ptyflow_core::Compressor`] layout), so C = pixels / V (eq. 17). `x` is the
//! frame as recorded (`compress.values = "intensity"`, the default: counts, which keeps the
//! perpendicular components in counts² and lets the kernel read `u16` straight from the map)
//! or its square root (`"amplitude"`, paper 002 eq. 8 projects √I; one `sqrt` per pixel
//! first). The choice is written into `basis.json` (`values`).
//!
//! # Bases (`compress.basis`)
//!
//! - `zernike:N`: the first N Zernike polynomials (OSA/ANSI order) on the disc.
//! - `binning:W`: W × W squares restricted to the disc (their count follows from W).
//! - `patterns:N`: N recorded frames of the scan, orthonormalised on the disc. They are drawn
//!   without replacement, uniformly from the frames to be processed, by a PCG-64 generator
//!   seeded with `compress.seed` (default 0); the indices are listed in `basis.json`.
//!
//! The dark field, `compress.dark_field` = K Zernike polynomials on the annulus from the
//! disc's radius out to `compress.dark_outer` (default: the whole frame); K = 1 is the
//! annular piston, i.e. the scaled dark-field sum. The disc is `reduce.center` and
//! `reduce.bf_radius` when given, else found as a replay finds it
//! ([`estimate_disc`]).
//!
//! # Outputs (in `out`)
//!
//! `coefficients.npy` (`[rows, cols, V]`, f32), `angle.npy` (`[rows, cols]`, the
//! bright-field angle α of eq. 18 in radians), `angle_df.npy` (the dark field's),
//! `basis.npy` (`[K_bf + K_df, height, width]`: each mask spread over the frame, zero outside
//! its region), `basis.json` (the geometry and the layout of the values) and `report.json`
//! (C, mean and max angle, frames per second, the scan shape and the `optics`: the
//! configuration's, filled in from the dump's sidecar, so that `ptyflow reconstruct` needs no
//! physics flags).

use std::sync::Arc;
use std::time::Instant;

use ptyflow_core::{Basis, Compressor, FrameGeometry, Region, Run, Scan};
use rand::SeedableRng;
use rand::seq::index::sample;
use serde::{Deserialize, Serialize};

use super::Hooks;
use super::config::{JobConfig, Source};
use super::outputs::{NamedArray, scan_shaped};
use super::replay::resolve_scan;
use crate::output::{ensure_dir, write_json, write_npy};
use crate::pipeline::compress::{
    CompressPlan, CompressValues, CompressWorker, FrameCompressor, gather,
};
use crate::pipeline::detectors::{Disc, estimate_disc};
use crate::pipeline::run::{RunOptions, run};
use crate::source::{Dump, Frame};
use crate::{Error, Result};

/// Frames per batch between the reader and the workers when `run.batch_frames` is absent.
const DEFAULT_BATCH: usize = 64;

/// The compression: which bases, what they project. JSON: the `compress` section of a
/// [`JobConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressConfig {
    /// The bright-field basis: `zernike:N`, `binning:W` or `patterns:N`.
    pub basis: String,
    /// Zernike polynomials on the dark-field annulus (1: its sum).
    #[serde(default = "one")]
    pub dark_field: usize,
    /// Outer radius of the dark-field annulus in unbinned pixels; absent: the whole frame.
    #[serde(default)]
    pub dark_outer: Option<f64>,
    /// What the bases project: `intensity` (the frame as recorded) or `amplitude` (√).
    #[serde(default)]
    pub values: CompressValues,
    /// Seed of the random choice of recorded patterns (`patterns:N`).
    #[serde(default)]
    pub seed: u64,
}

fn one() -> usize {
    1
}

/// A parsed `compress.basis`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasisSpec {
    /// The first N Zernike polynomials.
    Zernike(usize),
    /// W × W binning squares.
    Binning(usize),
    /// N recorded patterns.
    Patterns(usize),
}

impl BasisSpec {
    /// Parses `zernike:N`, `binning:W` or `patterns:N` (N, W ≥ 1); errors name
    /// `compress.basis`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || {
            Error::param(
                "compress.basis",
                format!("`{text}`: expected zernike:N, binning:W or patterns:N with N, W ≥ 1"),
            )
        };
        let (kind, n) = text.split_once(':').ok_or_else(bad)?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        match kind.trim() {
            "zernike" => Ok(BasisSpec::Zernike(n)),
            "binning" => Ok(BasisSpec::Binning(n)),
            "patterns" => Ok(BasisSpec::Patterns(n)),
            _ => Err(bad()),
        }
    }

    /// The kind's name.
    pub fn kind(&self) -> &'static str {
        match self {
            BasisSpec::Zernike(_) => "zernike",
            BasisSpec::Binning(_) => "binning",
            BasisSpec::Patterns(_) => "patterns",
        }
    }
}

impl CompressConfig {
    /// Checks what can be checked without the frames; errors name the field.
    pub fn validate(&self) -> Result<()> {
        BasisSpec::parse(&self.basis)?;
        if self.dark_field > ptyflow_core::MAX_BASIS {
            return Err(Error::param(
                "compress.dark_field",
                format!("{}: at most {}", self.dark_field, ptyflow_core::MAX_BASIS),
            ));
        }
        if let Some(r) = self.dark_outer
            && !(r.is_finite() && r > 0.0)
        {
            return Err(Error::param(
                "compress.dark_outer",
                format!("{r}: expected a finite radius > 0"),
            ));
        }
        Ok(())
    }
}

/// The built compression: the compressor and the geometry behind it (for `basis.json`).
#[derive(Debug)]
pub struct BuiltBasis {
    /// The two bases.
    pub compressor: FrameCompressor,
    /// The bright-field basis as asked.
    pub spec: BasisSpec,
    /// The disc.
    pub disc: Disc,
    /// Outer radius of the dark-field annulus.
    pub dark_outer: f64,
    /// The recorded patterns' frame indices (`patterns:N`).
    pub pattern_indices: Vec<usize>,
}

/// Builds the two bases on `geometry` around `disc`; `pattern` gives frame `index` as `f32`
/// values (already √ in amplitude mode) for `patterns:N`, drawn from `frames`. Errors name
/// the parameter: a basis that does not fit the frame (`compress.basis`, `reduce.center`),
/// more masks than the region has pixels (`compress.basis`, `compress.dark_field`).
pub fn build_basis(
    config: &CompressConfig,
    geometry: FrameGeometry,
    disc: Disc,
    frames: usize,
    mut pattern: impl FnMut(usize, &mut [f32]) -> Result<()>,
) -> Result<BuiltBasis> {
    config.validate()?;
    let spec = BasisSpec::parse(&config.basis)?;
    let runs = || vec![Run::default(); Region::<Vec<Run>>::max_runs(geometry)];
    let region = Region::disc(
        geometry,
        disc.cx as f32,
        disc.cy as f32,
        disc.r as f32,
        runs(),
    )
    .map_err(|e| {
        Error::core(
            format!(
                "reduce.center: disc ({:.1}, {:.1}) r = {:.1} on a {} × {} frame",
                disc.cx,
                disc.cy,
                disc.r,
                geometry.width(),
                geometry.height()
            ),
            e,
        )
    })?;
    let (w, h) = (geometry.width() as f64, geometry.height() as f64);
    let dark_outer = config.dark_outer.unwrap_or_else(|| w.hypot(h));
    let n = region.pixels();
    let mut scratch = vec![0f64; geometry.area()];
    let basis_err = |e| {
        Error::core(
            format!("compress.basis `{}` ({n} disc pixels)", config.basis),
            e,
        )
    };
    let mut pattern_indices = Vec::new();
    let bright = match spec {
        BasisSpec::Zernike(k) => {
            check_count("compress.basis", k, n)?;
            Basis::zernike(region, k, vec![0f32; k * n], &mut scratch).map_err(basis_err)?
        }
        BasisSpec::Binning(b) => {
            let k = Basis::<Vec<Run>, Vec<f32>>::binning_count(&region, b).map_err(basis_err)?;
            Basis::binning(region, b, vec![0f32; k * n]).map_err(basis_err)?
        }
        BasisSpec::Patterns(k) => {
            check_count("compress.basis", k, n)?;
            if k > frames {
                return Err(Error::param(
                    "compress.basis",
                    format!("patterns:{k}: the scan has only {frames} frames"),
                ));
            }
            let mut rng = rand_pcg::Pcg64::seed_from_u64(config.seed);
            pattern_indices = sample(&mut rng, frames, k).into_vec();
            pattern_indices.sort_unstable();
            let area = geometry.area();
            let mut patterns = vec![0f32; k * area];
            for (&i, p) in pattern_indices.iter().zip(patterns.chunks_exact_mut(area)) {
                pattern(i, p)?;
            }
            Basis::from_patterns(
                region,
                patterns.chunks_exact(area),
                vec![0f32; k * n],
                &mut scratch,
            )
            .map_err(basis_err)?
        }
    };
    let annulus = Region::annulus(
        geometry,
        disc.cx as f32,
        disc.cy as f32,
        disc.r as f32,
        dark_outer as f32,
        runs(),
    )
    .map_err(|e| {
        Error::core(
            format!(
                "compress.dark_outer: annulus {:.1} < d ≤ {dark_outer:.1}",
                disc.r
            ),
            e,
        )
    })?;
    let m = annulus.pixels();
    let k = config.dark_field;
    check_count("compress.dark_field", k, m)?;
    let dark = Basis::zernike(annulus, k, vec![0f32; k * m], &mut scratch)
        .map_err(|e| Error::core(format!("compress.dark_field {k} ({m} pixels)"), e))?;
    let compressor = Compressor::new(bright, dark).map_err(|e| Error::core("compress", e))?;
    Ok(BuiltBasis {
        compressor,
        spec,
        disc,
        dark_outer,
        pattern_indices,
    })
}

/// K masks need K ≤ the region's pixel count.
fn check_count(field: &str, k: usize, pixels: usize) -> Result<()> {
    if k > pixels {
        return Err(Error::param(
            field,
            format!("{k} masks but the region holds only {pixels} pixels"),
        ));
    }
    if k > ptyflow_core::MAX_BASIS {
        return Err(Error::param(
            field,
            format!("{k} masks: at most {}", ptyflow_core::MAX_BASIS),
        ));
    }
    Ok(())
}

impl BuiltBasis {
    /// `basis.json`: what the stored values are and the geometry they come from.
    pub fn description(&self, config: &CompressConfig) -> serde_json::Value {
        let c = &self.compressor;
        let (kb, kd) = (c.bright().count(), c.dark().count());
        let g = c.geometry();
        serde_json::json!({
            "kind": self.spec.kind(),
            "basis": config.basis,
            "values": config.values,
            "centre": [self.disc.cx, self.disc.cy],
            "radius": self.disc.r,
            "dark_field_radii": [self.disc.r, self.dark_outer],
            "count": {"bright_field": kb, "dark_field": kd},
            "pixels": {"bright_field": c.bright().region().pixels(), "dark_field": c.dark().region().pixels()},
            "frame_shape": [g.height(), g.width()],
            "values_per_frame": c.values_per_frame(),
            "layout": [
                format!("c_bf[0..{kb}]: bright-field coefficients, basis.npy[0..{kb}]"),
                format!("c_df[0..{kd}]: dark-field coefficients, basis.npy[{kb}..{}]", kb + kd),
                "perp_bf: squared norm of the bright-field part outside the span".to_string(),
                "perp_df: squared norm of the dark-field part outside the span".to_string(),
            ],
            "pattern_indices": self.pattern_indices,
            "seed": config.seed,
            "compression_ratio": c.compression_ratio(),
        })
    }

    /// Every mask spread over the frame (zero outside its region): `[K_bf + K_df, h, w]`.
    pub fn full_masks(&self) -> Vec<f32> {
        let c = &self.compressor;
        let (g, w) = (c.geometry(), c.geometry().width());
        let total = c.bright().count() + c.dark().count();
        let mut out = vec![0f32; total * g.area()];
        let mut k0 = 0;
        for basis in [c.bright(), c.dark()] {
            for k in 0..basis.count() {
                let mask = basis.mask(k).unwrap_or_default();
                let plane = &mut out[(k0 + k) * g.area()..(k0 + k + 1) * g.area()];
                for (&v, (row, col)) in mask.iter().zip(basis.region().coordinates()) {
                    plane[row * w + col] = v;
                }
            }
            k0 += basis.count();
        }
        out
    }
}

/// What a compression job produced.
#[derive(Debug)]
pub struct CompressOutcome {
    /// `report.json`.
    pub report: serde_json::Value,
    /// `coefficients` (`[rows, cols, V]`), `angle` and `angle_df` (`[rows, cols]`).
    pub arrays: Vec<NamedArray>,
    /// The bases.
    pub basis: BuiltBasis,
}

/// The workers' results at their scan positions: `coefficients` (`[rows, cols, V]`), `angle`
/// and `angle_df` (`[rows, cols]`), NaN where no frame was compressed.
pub fn compressed_arrays(workers: &[CompressWorker], scan: &Scan, v: usize) -> Vec<NamedArray> {
    let frames = scan.positions();
    let (rows, angles) = gather(workers, frames);
    let (sr, sc) = (scan.rows(), scan.cols());
    let shaped_angles = scan_shaped(scan, &angles, 2);
    let bf: Vec<f32> = shaped_angles.iter().step_by(2).copied().collect();
    let df: Vec<f32> = shaped_angles.iter().skip(1).step_by(2).copied().collect();
    vec![
        NamedArray {
            name: "coefficients".into(),
            shape: vec![sr, sc, v],
            data: scan_shaped(scan, &rows, v),
        },
        NamedArray {
            name: "angle".into(),
            shape: vec![sr, sc],
            data: bf,
        },
        NamedArray {
            name: "angle_df".into(),
            shape: vec![sr, sc],
            data: df,
        },
    ]
}

/// Converts frame `index` of `dump` to `f32` (√ in amplitude mode) into `out`.
fn frame_f32(dump: &Dump, index: usize, values: CompressValues, out: &mut [f32]) -> Result<()> {
    let mut reader = dump.reader();
    let frame = reader.frame(index)?;
    let mut put = |it: &mut dyn Iterator<Item = f32>| {
        for (o, v) in out.iter_mut().zip(it) {
            *o = match values {
                CompressValues::Intensity => v,
                CompressValues::Amplitude => v.max(0.0).sqrt(),
            };
        }
    };
    match frame {
        Frame::U8(f) => put(&mut f.iter().map(|&v| f32::from(v))),
        Frame::U16(f) => put(&mut f.iter().map(|&v| f32::from(v))),
        Frame::U32(f) => put(&mut f.iter().map(|&v| v as f32)),
        Frame::F32(f) => put(&mut f.iter().copied()),
    }
    Ok(())
}

/// Compresses the dump `config.source` names with `config.compress` (see the
/// [module docs](self)); with `config.out`, writes the outputs and `report.json`.
pub fn compress(config: &JobConfig, hooks: &Hooks) -> Result<CompressOutcome> {
    config.validate()?;
    let Some(cc) = &config.compress else {
        return Err(Error::param(
            "compress",
            "a compression job needs the `compress` section",
        ));
    };
    let Source::Dump(source) = &config.source else {
        return Err(Error::param(
            "source",
            "a compression job reads a dump: give `source.dump`",
        ));
    };
    let dump = Dump::open(&source.path, &source.open_options())?;
    let info = dump.info().clone();
    let (scan, frames) = resolve_scan(&config.scan, &dump)?;
    let geometry = FrameGeometry::new(info.width, info.height)
        .map_err(|e| Error::core(info.path.display().to_string(), e))?;
    let disc = match (config.reduce.center, config.reduce.bf_radius) {
        (Some([cx, cy]), Some(r)) => Disc { cx, cy, r },
        (center, radius) => {
            let found = estimate_disc(&dump)?.ok_or_else(|| {
                Error::param(
                    "reduce.center",
                    format!(
                        "{}: no bright-field disc found in the mean pattern; give `reduce.center` X,Y and `reduce.bf_radius` R",
                        info.path.display()
                    ),
                )
            })?;
            Disc {
                cx: center.map_or(found.cx, |c| c[0]),
                cy: center.map_or(found.cy, |c| c[1]),
                r: radius.unwrap_or(found.r),
            }
        }
    };
    let basis = build_basis(cc, geometry, disc, frames, |i, out| {
        frame_f32(&dump, i, cc.values, out)
    })?;
    if let Some(out) = &config.out {
        ensure_dir(out)?;
    }
    let threads = config.run.threads();
    let batch = config.run.batch_frames.unwrap_or(DEFAULT_BATCH).max(1);
    let v = basis.compressor.values_per_frame();
    let ratio = basis.compressor.compression_ratio();
    let plan = Arc::new(CompressPlan {
        compressor: basis.compressor.clone(),
        values: cc.values,
        frames,
        threads,
    });
    if config.scan.grouping()?.sums() {
        return Err(Error::param(
            "scan.frames_per_position",
            "compression takes one frame per position (not yet several)",
        ));
    }
    let opts = RunOptions {
        grouping: Default::default(),
        threads,
        batch_frames: batch,
        fps: config.run.fps,
        limit: Some(frames),
        progress: hooks.progress.clone(),
        interrupt: Arc::clone(&hooks.interrupt),
        memory_budget: Some(config.run.budget()?),
        fault_panic_at: None,
        follow: None,
    };
    let t = Instant::now();
    let (workers, counters) = run(
        &dump,
        || Ok(CompressWorker::new(Arc::clone(&plan))),
        None,
        &opts,
    )?;
    let seconds = t.elapsed().as_secs_f64();
    let done = counters.frames_processed as usize;
    let (sr, sc) = (scan.rows(), scan.cols());
    let arrays = compressed_arrays(&workers, &scan, v);
    let (bf, df) = (&arrays[1].data, &arrays[2].data);
    let stats = |a: &[f32]| {
        let finite: Vec<f64> = a
            .iter()
            .filter(|v| v.is_finite())
            .map(|&v| f64::from(v))
            .collect();
        let mean = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
        let max = finite.iter().copied().fold(0.0f64, f64::max);
        (mean, max)
    };
    let ((mean_bf, max_bf), (mean_df, max_df)) = (stats(bf), stats(df));
    let mut report = serde_json::json!({
        "dump": info.path.display().to_string(),
        "scan": [sr, sc],
        "frames": done,
        "frames_read": counters.frames_read,
        "interrupted": counters.interrupted,
        "seconds": seconds,
        "frames_per_second": done as f64 / seconds.max(1e-9),
        "threads": threads,
        "simd": format!("{:?}", crate::simd::SimdLevel::detect()),
        "compression_ratio": ratio,
        "values_per_frame": v,
        "angle_mean_rad": mean_bf,
        "angle_max_rad": max_bf,
        "angle_df_mean_rad": mean_df,
        "angle_df_max_rad": max_df,
        "basis": basis.description(cc),
        "optics": config.optics.or(crate::optics::Optics::from_sidecar(&source.path)),
        "outputs": [],
    });
    if let Some(out) = &config.out {
        let mut written = Vec::new();
        for a in &arrays {
            write_npy(&out.join(format!("{}.npy", a.name)), &a.shape, &a.data)?;
            written.push(format!("{}.npy", a.name));
        }
        let c = &basis.compressor;
        let g = c.geometry();
        write_npy(
            &out.join("basis.npy"),
            &[c.bright().count() + c.dark().count(), g.height(), g.width()],
            &basis.full_masks(),
        )?;
        write_json(&out.join("basis.json"), &basis.description(cc))?;
        written.extend(["basis.npy".to_string(), "basis.json".to_string()]);
        written.push("report.json".into());
        report["outputs"] = serde_json::json!(written);
        write_json(&out.join("report.json"), &report)?;
    }
    Ok(CompressOutcome {
        report,
        arrays,
        basis,
    })
}
