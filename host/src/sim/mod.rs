//! The simulator: 4D-STEM ptychography datasets with their ground truth, for fixtures and tests.
//!
//! A thin specimen ([`object::PhaseObject`]: MoS2 monolayer or a random weak-phase object) is
//! scanned by the probe of [`crate::optics::ProbeParams`] on a raster ([`raster_positions`]);
//! each pattern follows the single-slice model of [`forward`] on an oversampled grid, is
//! cropped to the `M × M` detector, scaled to the dose and drawn as Poisson counts from a
//! seeded [`rand_pcg::Pcg64`]. [`simulate`] returns a [`Dataset`]; [`write_dataset`] writes the
//! dump (raw u16 + sidecar, or Merlin `.mib`) and the ground truth next to it.
//!
//! # Dose
//! The dose is given either as electrons per pattern `N` or as an areal dose `D` in e⁻/Å²,
//! related by the scan step: **`D = N / step²`** (the electrons falling on the area of one scan
//! position, the areal dose of a large raster). This is the convention of paper 001 (10⁶
//! electrons per pattern at a 0.273 Å step = 1.34 × 10⁷ e⁻/Å²). Paper 000 quotes two other
//! figures, reproduced by its own numbers: the dose *per pattern* over the probe's area
//! (17 pA × 2 ms = 2.12 × 10⁵ e⁻ over π (3.9 nm / 2)² = 178 e⁻/Å²), and the dose of a dataset as
//! all its electrons over the illuminated area, scan extent plus probe diameter
//! (40 × 40 × 2.12 × 10⁵ e⁻ over (92 Å + 39 Å)² = 1.97 × 10⁴ e⁻/Å²). `meta.json` records `D`
//! and, for comparison with paper 000, the dataset dose over the illuminated area with the
//! geometric probe diameter `2 |Δf| α`.
//!
//! # Determinism
//! Same parameters and seed → same bytes: one RNG stream consumed in scan order, pixel by pixel;
//! scalar FFTs; the expected intensity rounded to f32 before it is handed to the Poisson sampler
//! (so last-bit differences of a platform's `exp`/`sin` almost never change a count).

pub mod forward;
pub mod object;
pub mod writers;

use std::path::{Path, PathBuf};

use num_complex::Complex32;
use rand::SeedableRng;
use rand_distr::Distribution;
use rand_pcg::Pcg64;

use crate::optics::Optics;
pub use crate::source::{ByteOrder, RawDtype, RawSidecar};
pub use forward::{ForwardModel, raster_positions};
pub use object::{ObjectKind, PhaseObject};

use crate::optics::{self, ProbeParams};
use crate::recon::{RasterScan, ScanGeometry};
use crate::{Error, Result};

/// Object pixels beyond every probe window in the ground truth's grid.
///
/// Must equal the margin the reconstruction passes to [`ScanGeometry::raster`]
/// (`ReconRequest::build` in `crate::pipeline::recon`): the truth is sampled on exactly the
/// reconstruction's object grid (same shape, same origin), so `metrics::compare`'s centred crop
/// aligns the two without registration, rotated scans included.
pub const OBJECT_MARGIN_PX: usize = 2;

/// Named starting points (every value can be overridden).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Preset {
    /// Paper 000: 80 kV, α = 24 mrad, 800 Å underfocus, 2.3 Å step, 40 × 40 scan;
    /// 96 × 96 detector at 0.8 mrad/px (bright-field disc radius 30 px, window λ/θ_px = 52 Å).
    Mos2Defocus,
    /// Paper 001: 300 kV, α = 18 mrad, in focus, 0.273 Å step, 64 × 64 scan;
    /// 64 × 64 detector at 1.0 mrad/px (disc radius 18 px, window 19.7 Å).
    Mos2Focus,
    /// Paper 001's defocused variant: as `mos2-focus` with 250 Å underfocus.
    Mos2FocusDefocus,
}

impl Preset {
    /// The name on the command line and in `meta.json`.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Mos2Defocus => "mos2-defocus",
            Preset::Mos2Focus => "mos2-focus",
            Preset::Mos2FocusDefocus => "mos2-focus-defocus",
        }
    }
}

/// Output format of the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum DumpFormat {
    /// u16 little-endian frames back to back, no header, plus `<name>.json` sidecar.
    Raw,
    /// Quantum Detectors Merlin `.mib`, single chip, U16 (12-bit counter), big-endian.
    Mib,
}

impl DumpFormat {
    /// The dump's file name inside the output directory.
    pub fn file_name(self) -> &'static str {
        match self {
            DumpFormat::Raw => "scan.raw",
            DumpFormat::Mib => "scan.mib",
        }
    }
}

/// How the dose is given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dose {
    /// Electrons per pattern (before the detector's edge cuts off high-angle scattering).
    PerPattern(f64),
    /// Areal dose in e⁻/Å²: electrons per pattern / step².
    PerArea(f64),
}

impl Dose {
    /// The command-line flag that sets this dose.
    pub fn flag(self) -> &'static str {
        match self {
            Dose::PerPattern(_) => "--dose-per-pattern",
            Dose::PerArea(_) => "--dose",
        }
    }
}

/// Every parameter of a simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct SimParams {
    /// Name of the preset it started from.
    pub preset: String,
    /// Probe-forming optics (kV, α, defocus, Cs, astigmatism).
    pub probe: ProbeParams,
    /// Detector side `M` in pixels (`M × M` frames); even.
    pub detector_px: usize,
    /// Detector pixel in mrad.
    pub mrad_per_px: f64,
    /// Real-space oversampling `s` of the simulation grid (angular range `s ×` the detector's).
    pub oversample: usize,
    /// Scan shape `[rows, cols]` (rows are the slow axis).
    pub scan: [usize; 2],
    /// Scan step in Å.
    pub step_angstrom: f64,
    /// Scan rotation in degrees (counter-clockwise, see [`raster_positions`]).
    pub scan_rotation_deg: f64,
    /// Dose.
    pub dose: Dose,
    /// Seed of the counting noise (and of the random object).
    pub seed: u64,
    /// Specimen.
    pub object: ObjectKind,
    /// Absorption η (`t = exp(iσV − ησV)`); 0 = pure phase object.
    pub absorption: f64,
    /// Frames recorded at each position, `K` ≥ 1 (paper 000: 8): independent Poisson draws
    /// of the same expected pattern, each with `1/K` of the dose, written one after the other
    /// (`rows × cols × K` frames). The dose is that of a position, all `K` frames together.
    pub frames_per_position: usize,
}

impl SimParams {
    /// The parameters of a preset.
    pub fn preset(preset: Preset) -> Self {
        let base = SimParams {
            preset: preset.name().to_string(),
            probe: ProbeParams::new(80.0, 24.0, 800.0),
            detector_px: 96,
            mrad_per_px: 0.8,
            // The simulated object must hold every frequency that scatters into the detector:
            // up to (corner angle + α)/λ = (√2 · 38.4 + 24) mrad / λ = 1.9 1/Å; s = 4 gives
            // 2/3 of the fine Nyquist frequency = 2.45 1/Å.
            oversample: 4,
            scan: [40, 40],
            step_angstrom: 2.3,
            scan_rotation_deg: 0.0,
            dose: Dose::PerPattern(1e5),
            seed: 1,
            object: ObjectKind::Mos2,
            absorption: 0.0,
            frames_per_position: 1,
        };
        match preset {
            Preset::Mos2Defocus => base,
            Preset::Mos2Focus | Preset::Mos2FocusDefocus => SimParams {
                probe: ProbeParams::new(
                    300.0,
                    18.0,
                    if preset == Preset::Mos2Focus {
                        0.0
                    } else {
                        250.0
                    },
                ),
                detector_px: 64,
                mrad_per_px: 1.0,
                scan: [64, 64],
                // 0.25 λ/α (paper 001).
                step_angstrom: 0.273,
                // (√2 · 32 + 18) mrad / λ = 3.2 1/Å ≤ 2/3 of the fine Nyquist 4.9 1/Å.
                oversample: 3,
                dose: Dose::PerPattern(1e6),
                ..base
            },
        }
    }

    /// Checks every value; errors name the flag.
    pub fn validate(&self) -> Result<()> {
        self.probe.validate()?;
        let m = self.detector_px;
        if !(8..=4096).contains(&m) || m % 2 != 0 {
            return Err(Error::param(
                "--detector",
                format!("{m} pixels, expected an even number from 8 to 4096"),
            ));
        }
        if !(self.mrad_per_px.is_finite() && self.mrad_per_px > 0.0) {
            return Err(Error::param(
                "--mrad-per-px",
                format!("{} mrad, expected > 0", self.mrad_per_px),
            ));
        }
        if !(1..=8).contains(&self.oversample) {
            return Err(Error::param(
                "--oversample",
                format!("{}, expected 1 … 8", self.oversample),
            ));
        }
        if self.scan[0] == 0 || self.scan[1] == 0 {
            return Err(Error::param(
                "--scan",
                format!("{}x{}, expected at least 1x1", self.scan[0], self.scan[1]),
            ));
        }
        if !(1..=1024).contains(&self.frames_per_position) {
            return Err(Error::param(
                "--frames-per-position",
                format!("{}, expected 1 … 1024", self.frames_per_position),
            ));
        }
        let bytes = self.frames_recorded() as f64 * (m * m * 2) as f64;
        if bytes > 16e9 {
            return Err(Error::param(
                "--scan",
                format!(
                    "{}x{}x{} frames of {m}x{m} u16 are {:.1} GB; at most 16 GB",
                    self.scan[0],
                    self.scan[1],
                    self.frames_per_position,
                    bytes / 1e9
                ),
            ));
        }
        if !(self.step_angstrom.is_finite() && self.step_angstrom > 0.0) {
            return Err(Error::param(
                "--step",
                format!("{} Å, expected > 0", self.step_angstrom),
            ));
        }
        if !self.scan_rotation_deg.is_finite() {
            return Err(Error::param(
                "--scan-rotation",
                format!(
                    "{} degrees, expected a finite angle",
                    self.scan_rotation_deg
                ),
            ));
        }
        let (Dose::PerPattern(v) | Dose::PerArea(v)) = self.dose;
        if !(v.is_finite() && v > 0.0) {
            return Err(Error::param(self.dose.flag(), format!("{v}, expected > 0")));
        }
        if !(self.absorption.is_finite() && (0.0..=1.0).contains(&self.absorption)) {
            return Err(Error::param(
                "--absorption",
                format!("{}, expected 0 … 1", self.absorption),
            ));
        }
        let radius = self.bright_field_radius_px();
        if radius >= (m / 2) as f64 {
            return Err(Error::param(
                "--alpha",
                format!(
                    "the bright-field disc (radius {radius:.1} px = α {} mrad / {} mrad/px) does \
                     not fit the {m}-pixel detector; lower --mrad-per-px's angle range or raise \
                     --detector",
                    self.probe.alpha_mrad, self.mrad_per_px
                ),
            ));
        }
        Ok(())
    }

    /// Things that are allowed but probably not meant (printed by the CLI).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let window = self.window_angstrom();
        let diameter = self.probe_diameter_angstrom();
        if diameter > 0.8 * window {
            w.push(format!(
                "the probe (geometric diameter 2|Δf|α = {diameter:.1} Å) nearly fills the \
                 reconstruction window ({window:.1} Å = λ/θ_px): it wraps around; use a smaller \
                 --mrad-per-px"
            ));
        }
        let needed = self.detected_band_limit();
        let have = self.object_band_limit();
        if self.object == ObjectKind::Mos2 && have < needed {
            w.push(format!(
                "the simulated object is band-limited to {have:.2} 1/Å but the detector sees                  scattering from up to {needed:.2} 1/Å (corner angle + α); raise --oversample"
            ));
        }
        let radius = self.bright_field_radius_px();
        if radius > 0.45 * self.detector_px as f64 {
            w.push(format!(
                "the bright-field disc (radius {radius:.1} px) leaves almost no dark field on the \
                 {}-pixel detector",
                self.detector_px
            ));
        }
        w
    }

    /// Band limit of the simulated MoS2 potential in 1/Å: 2/3 of the simulation grid's Nyquist
    /// frequency `s / (2 dx)` (room for the harmonics of `exp(iσV)`).
    pub fn object_band_limit(&self) -> f64 {
        (2.0 / 3.0) * 0.5 * self.oversample as f64 / self.pixel_angstrom()
    }

    /// Highest object frequency that reaches a detector pixel, in 1/Å:
    /// (detector corner angle + α) / λ.
    pub fn detected_band_limit(&self) -> f64 {
        let corner = std::f64::consts::SQRT_2 * (self.detector_px / 2) as f64 * self.mrad_per_px;
        (corner + self.probe.alpha_mrad) * 1e-3 / optics::wavelength_angstrom(self.probe.kv)
    }

    /// Number of patterns (scan positions).
    pub fn frames(&self) -> usize {
        self.scan[0] * self.scan[1]
    }

    /// Number of frames in the dump: positions × [`SimParams::frames_per_position`].
    pub fn frames_recorded(&self) -> usize {
        self.frames() * self.frames_per_position
    }

    /// Reconstruction pixel `dx = λ / (M θ_px)` in Å.
    pub fn pixel_angstrom(&self) -> f64 {
        optics::window_pixel_angstrom(self.probe.kv, self.detector_px, self.mrad_per_px)
    }

    /// Side of the reconstruction window `M dx = λ / θ_px` in Å.
    pub fn window_angstrom(&self) -> f64 {
        self.pixel_angstrom() * self.detector_px as f64
    }

    /// Bright-field disc radius on the detector in pixels.
    pub fn bright_field_radius_px(&self) -> f64 {
        optics::bright_field_radius_px(self.probe.alpha_mrad, self.mrad_per_px)
    }

    /// Geometric probe diameter `2 |Δf| α` in Å (0 in focus); with a zone plate of focal
    /// length `f`, `2 (|Δf| + f) α` (its outer first-order focus); with a random plate,
    /// `2 |Δf| α` plus the speckle envelope `λ / cell`.
    pub fn probe_diameter_angstrom(&self) -> f64 {
        let alpha = self.probe.alpha_mrad * 1e-3;
        let geometric = 2.0 * self.probe.defocus_angstrom.abs() * alpha;
        match self.probe.kind {
            optics::ProbeKind::Defocus => geometric,
            optics::ProbeKind::Fzp { focal_angstrom } => geometric + 2.0 * focal_angstrom * alpha,
            optics::ProbeKind::Random { cell_mrad, .. } => {
                let cell = cell_mrad.unwrap_or(self.probe.alpha_mrad / 10.0) * 1e-3;
                geometric + self.probe.wavelength() / cell
            }
        }
    }

    /// Electrons per pattern `N`.
    pub fn electrons_per_pattern(&self) -> f64 {
        match self.dose {
            Dose::PerPattern(n) => n,
            Dose::PerArea(d) => d * self.step_angstrom * self.step_angstrom,
        }
    }

    /// Areal dose `N / step²` in e⁻/Å².
    pub fn dose_e_per_a2(&self) -> f64 {
        self.electrons_per_pattern() / (self.step_angstrom * self.step_angstrom)
    }

    /// Paper 000's dataset dose: all electrons over the illuminated area
    /// `(rows·step + d)(cols·step + d)`, `d` the geometric probe diameter.
    pub fn dose_e_per_a2_illuminated(&self) -> f64 {
        let d = self.probe_diameter_angstrom();
        let (h, w) = (
            self.scan[0] as f64 * self.step_angstrom + d,
            self.scan[1] as f64 * self.step_angstrom + d,
        );
        self.electrons_per_pattern() * self.frames() as f64 / (h * w)
    }
}

/// A simulated dataset: counts and ground truth.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The parameters it was made with.
    pub params: SimParams,
    /// Counts, `positions × K × M × M` (`K` = [`SimParams::frames_per_position`], a
    /// position's frames one after the other), detector layout, scan order.
    pub frames: Vec<u16>,
    /// Probe positions `(y, x)` in Å, scan order.
    pub positions: Vec<[f64; 2]>,
    /// Transmission function at the reconstruction pixel `dx`, row-major `object_shape`, on
    /// exactly the reconstruction's object grid (see [`OBJECT_MARGIN_PX`]).
    pub object: Vec<Complex32>,
    /// `[rows, cols]` of [`Dataset::object`].
    pub object_shape: [usize; 2],
    /// `[row, col]` of the object pixel under the probe centre at scan position 0; fractional
    /// for rotated scans (the reconstruction's grid, see [`OBJECT_MARGIN_PX`]).
    pub object_origin_px: [f64; 2],
    /// The probe on the `M × M` reconstruction window (Σ|P|² = 1, centred at `(M/2, M/2)`).
    pub probe: Vec<Complex32>,
    /// Mean expected pattern before noise (electrons per pixel, a position's frames
    /// together), detector layout.
    pub expected_mean: Vec<f64>,
    /// Band limit of the simulated object's potential in 1/Å.
    pub object_band_limit: f64,
    /// Band limit of the ground-truth object in 1/Å.
    pub truth_band_limit: f64,
}

impl Dataset {
    /// Mean counts per pattern (a position's frames summed).
    pub fn mean_counts_per_pattern(&self) -> f64 {
        self.frames.iter().map(|&v| v as f64).sum::<f64>() / self.params.frames() as f64
    }

    /// Mean of the recorded patterns (counts per pixel, a position's frames summed),
    /// detector layout.
    pub fn mean_pattern(&self) -> Vec<f64> {
        let m2 = self.params.detector_px * self.params.detector_px;
        let mut mean = vec![0.0; m2];
        for frame in self.frames.chunks_exact(m2) {
            for (a, &v) in mean.iter_mut().zip(frame) {
                *a += v as f64;
            }
        }
        let n = self.params.frames() as f64;
        mean.iter_mut().for_each(|a| *a /= n);
        mean
    }

    /// The dump's sidecar for `format`.
    pub fn sidecar(&self, format: DumpFormat) -> RawSidecar {
        let p = &self.params;
        let (name, order, fhb) = match format {
            DumpFormat::Raw => ("raw", ByteOrder::Little, 0),
            DumpFormat::Mib => ("mib", ByteOrder::Big, writers::MIB_HEADER_BYTES as u64),
        };
        RawSidecar {
            format: name.into(),
            width: p.detector_px,
            height: p.detector_px,
            dtype: RawDtype::U16,
            byte_order: order,
            header_bytes: 0,
            frame_header_bytes: fhb,
            frame_footer_bytes: 0,
            frames: Some(p.frames_recorded() as u64),
            frames_per_position: (p.frames_per_position > 1).then_some(p.frames_per_position),
            scan: Some(p.scan),
            optics: Some(Optics {
                kv: Some(p.probe.kv),
                alpha_mrad: Some(p.probe.alpha_mrad),
                defocus_angstrom: Some(p.probe.defocus_angstrom),
                cs_mm: Some(p.probe.cs_mm),
                mrad_per_px: Some(p.mrad_per_px),
                step_angstrom: Some(p.step_angstrom),
                scan_rotation_deg: Some(p.scan_rotation_deg),
                // Absent for the plain probe: sidecars of defocused probes stay as they were.
                probe_kind: (p.probe.kind != optics::ProbeKind::Defocus).then_some(p.probe.kind),
                ..Optics::default()
            }),
        }
    }

    /// Every parameter and derived quantity, as written to `meta.json`.
    pub fn meta(&self, format: DumpFormat) -> serde_json::Value {
        let p = &self.params;
        let m = p.detector_px;
        let max = self.frames.iter().copied().max().unwrap_or(0);
        let mut meta = serde_json::json!({
            "generator": "ptyflow simulate",
            "preset": p.preset,
            "kv": p.probe.kv,
            "wavelength_angstrom": optics::wavelength_angstrom(p.probe.kv),
            "interaction_constant_rad_per_v_angstrom": optics::interaction_constant(p.probe.kv),
            "alpha_mrad": p.probe.alpha_mrad,
            "defocus_angstrom": p.probe.defocus_angstrom,
            "cs_mm": p.probe.cs_mm,
            "astigmatism_angstrom": p.probe.astigmatism_angstrom,
            "astigmatism_angle_deg": p.probe.astigmatism_angle_deg,
            "mrad_per_px": p.mrad_per_px,
            "detector_px": m,
            "bright_field_radius_px": p.bright_field_radius_px(),
            "oversample": p.oversample,
            "simulation_window_px": m * p.oversample,
            "simulation_pixel_angstrom": p.pixel_angstrom() / p.oversample as f64,
            "scan": p.scan,
            "frames": p.frames_recorded(),
            "step_angstrom": p.step_angstrom,
            "scan_rotation_deg": p.scan_rotation_deg,
            "dose_per_pattern": p.electrons_per_pattern(),
            "dose_e_per_a2": p.dose_e_per_a2(),
            "dose_definition": "dose_e_per_a2 = dose_per_pattern / step_angstrom^2",
            "dose_e_per_a2_illuminated": p.dose_e_per_a2_illuminated(),
            "dose_illuminated_definition":
                "all electrons / ((rows*step + d) (cols*step + d)), d = 2 |defocus| alpha (paper 000)",
            "counts_mean_per_pattern": self.mean_counts_per_pattern(),
            "counts_max": max,
            "seed": p.seed,
            "object": p.object.name(),
            "absorption": p.absorption,
            "lattice_angstrom": if p.object == ObjectKind::Mos2 { Some(object::MOS2_A) } else { None },
            "object_band_limit_inv_angstrom": self.object_band_limit,
            "truth_band_limit_inv_angstrom": self.truth_band_limit,
            "object_pixel_angstrom": p.pixel_angstrom(),
            "object_origin_px": self.object_origin_px,
            "object_shape": self.object_shape,
            "probe_centre_px": [m / 2, m / 2],
            "detector_centre_px": [m / 2, m / 2],
            "positions": "positions.npy: float64 (frames, 2), (y, x) in angstrom, scan order",
            "dump": format.file_name(),
            "format": match format { DumpFormat::Raw => "raw", DumpFormat::Mib => "mib" },
        });
        // Beside the macro (its recursion limit): the probe's plate and the frames per position.
        if let Some(map) = meta.as_object_mut() {
            map.insert("probe_kind".into(), p.probe.kind.to_string().into());
            map.insert("frames_per_position".into(), p.frames_per_position.into());
            map.insert(
                "dose_per_frame".into(),
                (p.electrons_per_pattern() / p.frames_per_position as f64).into(),
            );
        }
        meta
    }
}

/// Runs the simulation (allocates the whole dataset in memory).
///
/// Errors name the flag of a bad parameter, and the dose flag when a count does not fit u16.
pub fn simulate(params: &SimParams) -> Result<Dataset> {
    simulate_with_progress(params, &mut |_| {})
}

/// [`simulate`], calling `progress(patterns done)` after every pattern (for a progress bar).
pub fn simulate_with_progress(
    params: &SimParams,
    progress: &mut dyn FnMut(usize),
) -> Result<Dataset> {
    params.validate()?;
    let m = params.detector_px;
    let s = params.oversample;
    let ms = m * s;
    let dx = params.pixel_angstrom();
    let fine_dx = dx / s as f64;
    let positions = raster_positions(
        params.scan[0],
        params.scan[1],
        params.step_angstrom,
        params.scan_rotation_deg,
    );

    // Simulation grid at dx (refined by s below): every pixel a probe window touches, one
    // spare pixel each side. It only carries the forward model (the dump's bytes depend on it);
    // the ground truth is sampled on the reconstruction's grid instead.
    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for p in &positions {
        for a in 0..2 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    let half = m / 2;
    let origin: [usize; 2] =
        std::array::from_fn(|a| half + 1 + (-(lo[a] / dx).floor()).max(0.0) as usize);
    let shape: [usize; 2] =
        std::array::from_fn(|a| origin[a] + (hi[a] / dx).ceil().max(0.0) as usize + half + 2);

    let kv = params.probe.kv;
    let (sim_object, truth_object) = match params.object {
        ObjectKind::Mos2 => {
            // Simulation: 2/3 of the fine grid's Nyquist frequency (the usual anti-aliasing
            // limit, leaves room for the harmonics of exp(iσV)); truth: the coarse Nyquist.
            let sim = PhaseObject::mos2(kv, params.object_band_limit(), params.absorption)?;
            let truth = PhaseObject::mos2(kv, 0.5 / dx, params.absorption)?;
            (sim, truth)
        }
        ObjectKind::Random => {
            let o = PhaseObject::random(params.seed, (0.5f64).min(0.25 / dx), params.absorption)?;
            (o.clone(), o)
        }
    };
    let fine_shape = [shape[0] * s, shape[1] * s];
    let fine_origin = [(origin[0] * s) as f64, (origin[1] * s) as f64];
    let fine = sim_object.transmission_grid(fine_shape[0], fine_shape[1], fine_dx, fine_origin);
    // Ground truth on the reconstruction's object grid (same raster, pixel, window and margin
    // as `ReconRequest::build`); the object is analytic, so a fractional origin is exact.
    let truth_geometry = ScanGeometry::raster(
        &RasterScan {
            step_angstrom: [params.step_angstrom; 2],
            shape: params.scan,
            rotation_deg: params.scan_rotation_deg,
        },
        dx,
        m,
        OBJECT_MARGIN_PX,
    )?;
    let truth_shape = truth_geometry.object_shape;
    let truth_origin = truth_geometry.origin_px();
    let truth = truth_object.transmission_grid(truth_shape[0], truth_shape[1], dx, truth_origin);
    let fine_probe = params.probe.sample(ms, fine_dx)?;
    let probe = params.probe.sample(m, dx)?;

    let mut model = ForwardModel::new(m, &fine_probe, fine, fine_shape, fine_origin, fine_dx);
    // Each of a position's K frames gets 1/K of its dose (K = 1: the whole dose, as before).
    let k = params.frames_per_position;
    let electrons = params.electrons_per_pattern() / k as f64;
    let mut rng = Pcg64::seed_from_u64(params.seed);
    let mut expected = vec![0.0; m * m];
    let mut expected_mean = vec![0.0; m * m];
    let mut frames = Vec::with_capacity(params.frames_recorded() * m * m);
    for (index, &pos) in positions.iter().enumerate() {
        model.expected_pattern(pos, electrons, &mut expected);
        for (acc, &e) in expected_mean.iter_mut().zip(&expected) {
            *acc += e * k as f64;
        }
        for _ in 0..k {
            for &lambda in &expected {
                let count = poisson(&mut rng, lambda);
                if count > u16::MAX as f64 {
                    return Err(Error::param(
                        params.dose.flag(),
                        format!(
                            "{} electrons per frame give {count} counts in one pixel of \
                             pattern {index}, more than a u16 holds (65535); lower the dose",
                            electrons
                        ),
                    ));
                }
                frames.push(count as u16);
            }
        }
        progress(index + 1);
    }
    let n = positions.len() as f64;
    expected_mean.iter_mut().for_each(|v| *v /= n);
    Ok(Dataset {
        params: params.clone(),
        frames,
        positions,
        object: truth,
        object_shape: truth_shape,
        object_origin_px: truth_origin,
        probe,
        expected_mean,
        object_band_limit: sim_object.band_limit(),
        truth_band_limit: truth_object.band_limit(),
    })
}

/// One Poisson count of mean `lambda` (0 for `lambda ≤ 0`); `lambda` is rounded to f32 first.
pub fn poisson(rng: &mut Pcg64, lambda: f64) -> f64 {
    let lambda = (lambda as f32) as f64;
    if lambda > 0.0 {
        // `new` only fails for λ ≤ 0 or non-finite, both excluded here.
        rand_distr::Poisson::new(lambda).map_or(0.0, |d| d.sample(rng))
    } else {
        0.0
    }
}

/// The files [`write_dataset`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The dump (`scan.raw` or `scan.mib`).
    pub dump: PathBuf,
    /// Its sidecar (`scan.raw.json` or `scan.mib.json`).
    pub sidecar: PathBuf,
    /// `meta.json`.
    pub meta: PathBuf,
}

/// Writes the dump, its sidecar and the ground truth (`object.npy`, `probe.npy`,
/// `positions.npy`, `meta.json`) into `dir` (created if needed).
pub fn write_dataset(ds: &Dataset, dir: &Path, format: DumpFormat) -> Result<Written> {
    crate::output::ensure_dir(dir)?;
    let m = ds.params.detector_px;
    let dump = dir.join(format.file_name());
    match format {
        DumpFormat::Raw => writers::write_raw_u16(&dump, &ds.frames)?,
        DumpFormat::Mib => {
            let max = ds.frames.iter().copied().max().unwrap_or(0);
            if max > writers::MIB_MAX_COUNT {
                return Err(Error::param(
                    ds.params.dose.flag(),
                    format!(
                        "a pixel counts {max}, more than the 12-bit Merlin counter of a U16 .mib \
                         holds ({}); lower the dose or use --format raw",
                        writers::MIB_MAX_COUNT
                    ),
                ));
            }
            writers::write_mib_u16(&dump, &ds.frames, m, m)?
        }
    }
    let sidecar = ds.sidecar(format).write(&dump)?;
    crate::output::write_npy(&dir.join("object.npy"), &ds.object_shape, &ds.object)?;
    crate::output::write_npy(&dir.join("probe.npy"), &[m, m], &ds.probe)?;
    let flat: Vec<f64> = ds.positions.iter().flatten().copied().collect();
    crate::output::write_npy(&dir.join("positions.npy"), &[ds.positions.len(), 2], &flat)?;
    let meta = dir.join("meta.json");
    crate::output::write_json(&meta, &ds.meta(format))?;
    Ok(Written {
        dump,
        sidecar,
        meta,
    })
}

/// Writes `object_phase.png` (phase of the ground truth) and `mean_pattern.png` (log of the
/// mean recorded pattern) into `dir`.
pub fn write_previews(ds: &Dataset, dir: &Path) -> Result<()> {
    let phase: Vec<f32> = ds.object.iter().map(|v| v.arg()).collect();
    crate::output::write_png(
        &dir.join("object_phase.png"),
        ds.object_shape[1],
        ds.object_shape[0],
        &phase,
    )?;
    let m = ds.params.detector_px;
    let mean: Vec<f32> = ds
        .mean_pattern()
        .iter()
        .map(|&v| (1.0 + v).ln() as f32)
        .collect();
    crate::output::write_png(&dir.join("mean_pattern.png"), m, m, &mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small, fast dataset: 80 kV, α 24 mrad, 200 Å underfocus, 32-pixel detector.
    fn small(seed: u64) -> SimParams {
        SimParams {
            probe: ProbeParams::new(80.0, 24.0, 200.0),
            detector_px: 32,
            mrad_per_px: 2.0,
            scan: [3, 4],
            step_angstrom: 1.1,
            dose: Dose::PerPattern(2e4),
            seed,
            ..SimParams::preset(Preset::Mos2Defocus)
        }
    }

    #[test]
    fn poisson_counts_have_the_expected_mean_and_variance() {
        let mut rng = Pcg64::seed_from_u64(3);
        for lambda in [0.3, 4.0, 75.0] {
            let n = 200_000;
            let xs: Vec<f64> = (0..n).map(|_| poisson(&mut rng, lambda)).collect();
            let mean = xs.iter().sum::<f64>() / n as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            // Standard error of the mean √(λ/n); of the variance ≈ λ √(2/n).
            assert!(
                (mean - lambda).abs() < 5.0 * (lambda / n as f64).sqrt(),
                "{lambda}: {mean}"
            );
            assert!(
                (var - lambda).abs() < 6.0 * lambda * (2.0 / n as f64).sqrt() + 0.01,
                "{var}"
            );
        }
        assert_eq!(poisson(&mut rng, 0.0), 0.0);
    }

    /// Parseval: the full (uncropped) model pattern sums to N Σ|ψ|², and with |t| = 1 and
    /// Σ|P|² = 1 to N; the detector keeps a part of it.
    #[test]
    fn model_pattern_total_is_the_exit_wave_energy_times_the_dose() {
        let (m, ms, dx) = (16, 32, 0.25);
        let probe = ProbeParams::new(80.0, 24.0, 100.0).sample(ms, dx).unwrap();
        let obj: Vec<Complex32> = (0..64 * 64)
            .map(|i| Complex32::from_polar(0.8 + 0.2 * ((i % 7) as f32 / 7.0), i as f32 * 0.37))
            .collect();
        let mut model = ForwardModel::new(m, &probe, obj.clone(), [64, 64], [20.0, 20.0], dx);
        // On a grid point the probe is not shifted: the exit wave is P(i) · O(top + i).
        let pos = [2.0 * dx, -3.0 * dx];
        let far = model.far_field(pos).to_vec();
        let total: f64 = far.iter().map(|v| v.norm_sqr()).sum::<f64>() / (ms * ms) as f64;
        let (top, left) = (20 + 2 - ms / 2, 20 - 3 - ms / 2);
        let mut energy = 0.0;
        for r in 0..ms {
            for c in 0..ms {
                let e = probe[r * ms + c] * obj[(top + r) * 64 + left + c];
                energy += e.norm_sqr() as f64;
            }
        }
        assert!(
            (total - energy).abs() < 1e-6 * energy,
            "{total} vs {energy}"
        );
        assert!(energy < 0.99, "the object absorbs: {energy}");
        let pos = [0.37, -0.81];
        // A pure phase object: the pattern holds exactly the dose.
        let phase: Vec<Complex32> = obj.iter().map(|v| v / v.norm()).collect();
        let mut model = ForwardModel::new(ms, &probe, phase, [64, 64], [20.0, 20.0], dx);
        let mut pattern = vec![0.0; ms * ms];
        model.expected_pattern(pos, 1234.0, &mut pattern);
        let sum: f64 = pattern.iter().sum();
        assert!((sum - 1234.0).abs() < 1e-6 * 1234.0, "{sum}");
    }

    /// The mean pattern shows the bright-field disc of radius α/θ_px around (M/2, M/2).
    #[test]
    fn mean_pattern_shows_the_bright_field_disc() {
        let p = small(5);
        let ds = simulate(&p).unwrap();
        let m = p.detector_px;
        let mean = ds.mean_pattern();
        let peak = mean.iter().copied().fold(0.0, f64::max);
        // Area above half the mean bright-field level → equivalent radius.
        let inside: Vec<f64> = mean.iter().copied().filter(|&v| v > 0.25 * peak).collect();
        let level = inside.iter().sum::<f64>() / inside.len() as f64;
        let area = mean.iter().filter(|&&v| v > 0.5 * level).count() as f64;
        let radius = (area / std::f64::consts::PI).sqrt();
        let expected = p.bright_field_radius_px(); // 12 px
        assert!(
            (radius - expected).abs() < 0.5,
            "radius {radius} px vs {expected}"
        );
        // Centred at (M/2, M/2): intensity-weighted centre of the disc.
        let (mut cy, mut cx, mut w) = (0.0, 0.0, 0.0);
        for (i, &v) in mean.iter().enumerate() {
            if v > 0.5 * level {
                cy += (i / m) as f64 * v;
                cx += (i % m) as f64 * v;
                w += v;
            }
        }
        assert!((cy / w - (m / 2) as f64).abs() < 0.3 && (cx / w - (m / 2) as f64).abs() < 0.3);
        // Counts per pattern: the dose minus what scatters beyond the detector's edge.
        let mean_counts = ds.mean_counts_per_pattern();
        let expected_counts: f64 = ds.expected_mean.iter().sum();
        assert!(
            expected_counts < 2e4 && expected_counts > 0.97 * 2e4,
            "{expected_counts}"
        );
        assert!((mean_counts - expected_counts).abs() < 4.0 * (expected_counts / 12.0).sqrt());
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let read = |seed: u64, name: &str| {
            let ds = simulate(&small(seed)).unwrap();
            let w = write_dataset(&ds, &dir.path().join(name), DumpFormat::Raw).unwrap();
            std::fs::read(w.dump).unwrap()
        };
        let (a, b, c) = (read(9, "a"), read(9, "b"), read(10, "c"));
        assert_eq!(a.len(), 12 * 32 * 32 * 2);
        assert_eq!(a, b);
        assert_ne!(a, c);
        // The ground truth does not depend on the noise seed (MoS2).
        let o = |n: &str| std::fs::read(dir.path().join(n).join("object.npy")).unwrap();
        assert_eq!(o("a"), o("c"));
    }

    #[test]
    fn sidecar_and_meta_have_the_documented_keys() {
        let dir = tempfile::tempdir().unwrap();
        let ds = simulate(&small(1)).unwrap();
        let w = write_dataset(&ds, dir.path(), DumpFormat::Raw).unwrap();
        assert!(w.sidecar.ends_with("scan.raw.json"));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&w.sidecar).unwrap()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let mut want = vec![
            "format",
            "width",
            "height",
            "dtype",
            "byte_order",
            "header_bytes",
            "frame_header_bytes",
            "frame_footer_bytes",
            "frames",
            "scan",
            "optics",
        ];
        let mut got = keys.clone();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
        let optics: Vec<&str> = v["optics"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut optics = optics.clone();
        optics.sort_unstable();
        assert_eq!(
            optics,
            [
                "alpha_mrad",
                "cs_mm",
                "defocus_angstrom",
                "kv",
                "mrad_per_px",
                "scan_rotation_deg",
                "step_angstrom"
            ]
        );
        assert_eq!(v["format"], "raw");
        assert_eq!(v["dtype"], "u16");
        assert_eq!(v["byte_order"], "little");
        assert_eq!(v["width"], 32);
        assert_eq!(v["frames"], 12);
        assert_eq!(v["scan"], serde_json::json!([3, 4]));
        assert_eq!(v["optics"]["defocus_angstrom"], 200.0);

        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&w.meta).unwrap()).unwrap();
        for key in [
            "preset",
            "kv",
            "alpha_mrad",
            "defocus_angstrom",
            "cs_mm",
            "mrad_per_px",
            "detector_px",
            "oversample",
            "scan",
            "step_angstrom",
            "scan_rotation_deg",
            "dose_per_pattern",
            "dose_e_per_a2",
            "seed",
            "object",
            "absorption",
            "object_pixel_angstrom",
            "object_origin_px",
        ] {
            assert!(!meta[key].is_null(), "meta.json lacks {key}");
        }
        assert!((meta["dose_e_per_a2"].as_f64().unwrap() - 2e4 / 1.21).abs() < 1e-6);
        // Ground truth files have the documented shapes and types.
        let (shape, obj) =
            crate::output::read_npy::<Complex32>(&dir.path().join("object.npy")).unwrap();
        assert_eq!(shape, ds.object_shape.to_vec());
        assert!(obj.iter().all(|v| (v.norm() - 1.0).abs() < 1e-5));
        let (shape, _) =
            crate::output::read_npy::<Complex32>(&dir.path().join("probe.npy")).unwrap();
        assert_eq!(shape, [32, 32]);
        let (shape, pos) =
            crate::output::read_npy::<f64>(&dir.path().join("positions.npy")).unwrap();
        assert_eq!(shape, [12, 2]);
        assert_eq!(&pos[..4], &[0.0, 0.0, 0.0, 1.1]);
    }

    /// The object origin: the truth's pixel `object_origin_px` is at (0, 0) Å, where the Mo
    /// column sits, so the pixel nearest to it is a local phase maximum.
    #[test]
    fn object_origin_is_under_the_first_probe_position() {
        let mut p = small(1);
        p.scan_rotation_deg = 30.0;
        let ds = simulate(&p).unwrap();
        let [r0, c0] = ds.object_origin_px.map(|v| v.round() as usize);
        let cols = ds.object_shape[1];
        let phase = |r: usize, c: usize| ds.object[r * cols + c].arg();
        let here = phase(r0, c0);
        for (dr, dc) in [(0, 1), (1, 0), (2, 0), (0, 2)] {
            assert!(here > phase(r0 + dr, c0 + dc) && here > phase(r0 - dr, c0 - dc));
        }
        // Every position's window lies inside the object.
        let dx = p.pixel_angstrom();
        let [r0, c0] = ds.object_origin_px;
        for pos in &ds.positions {
            let r = r0 + pos[0] / dx;
            let c = c0 + pos[1] / dx;
            assert!(r - 16.0 >= 0.0 && r + 16.0 < ds.object_shape[0] as f64);
            assert!(c - 16.0 >= 0.0 && c + 16.0 < ds.object_shape[1] as f64);
        }
    }

    /// The truth lies on exactly the reconstruction's object grid (`ReconRequest::build`'s
    /// `ScanGeometry::raster` with margin 2): same shape, same origin, and every probe position
    /// at the reconstruction's position, for an unrotated and a rotated scan.
    #[test]
    fn truth_grid_is_the_reconstruction_grid() {
        assert_eq!(OBJECT_MARGIN_PX, 2, "the margin of ReconRequest::build");
        for angle in [0.0, 30.0] {
            let mut p = small(1);
            p.scan_rotation_deg = angle;
            let ds = simulate(&p).unwrap();
            let scan = RasterScan {
                step_angstrom: [p.step_angstrom; 2],
                shape: p.scan,
                rotation_deg: angle,
            };
            let dx = p.pixel_angstrom();
            let g = ScanGeometry::raster(&scan, dx, p.detector_px, 2).unwrap();
            assert_eq!(ds.object_shape, g.object_shape, "{angle}°");
            assert_eq!(ds.object_origin_px, g.origin_px(), "{angle}°");
            assert_eq!(ds.object.len(), g.object_shape[0] * g.object_shape[1]);
            for (a, b) in ds.positions.iter().zip(&g.positions) {
                for k in 0..2 {
                    let truth = ds.object_origin_px[k] + a[k] / dx;
                    assert!((truth - b[k]).abs() < 1e-9, "{angle}°: {truth} vs {}", b[k]);
                }
            }
        }
    }

    #[test]
    fn mib_dump_and_overflow_errors_name_the_dose() {
        let dir = tempfile::tempdir().unwrap();
        let ds = simulate(&small(2)).unwrap();
        let w = write_dataset(&ds, dir.path(), DumpFormat::Mib).unwrap();
        let bytes = std::fs::read(&w.dump).unwrap();
        assert_eq!(bytes.len(), 12 * (384 + 32 * 32 * 2));
        let first = u16::from_be_bytes([bytes[384], bytes[385]]);
        assert_eq!(first, ds.frames[0]);
        let side: RawSidecar =
            serde_json::from_str(&std::fs::read_to_string(&w.sidecar).unwrap()).unwrap();
        assert_eq!(
            (side.format.as_str(), side.frame_header_bytes),
            ("mib", 384)
        );
        let mut p = small(2);
        p.dose = Dose::PerArea(1e9);
        let e = simulate(&p).unwrap_err().to_string();
        assert!(e.contains("--dose") && e.contains("65535"), "{e}");
        p.dose = Dose::PerPattern(2e6);
        let ds = simulate(&p).unwrap();
        let e = write_dataset(&ds, dir.path(), DumpFormat::Mib)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--dose-per-pattern") && e.contains("4095"),
            "{e}"
        );
    }
}
