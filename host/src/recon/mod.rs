//! Online ptychographic reconstruction: one update per arriving diffraction pattern.
//!
//! [`Reconstructor`] holds the object, the probe, the FFT plans and all scratch; it is built
//! once and then [`Reconstructor::update`] is called for every pattern in arrival order
//! (no allocation per update). The same engine runs [ePIE](epie) (object and probe) and
//! [Wirtinger flow](wf) (known probe; L1, MSE, amplitude or Poisson loss). The patterns it has
//! seen are kept, so [`Reconstructor::sweep`] can revisit them after the scan (`--sweeps K`).
//!
//! # Model and conventions
//! - Single slice: on the `M × M` window at scan position `j`, `ψ(r) = P(r − R_j)·O(r)`, far
//!   field `Ψ = F[ψ]` with the numpy/rustfft forward FFT `exp(−2πi jk/N)`, **unnormalised**
//!   (RustFFT does not scale; the inverse is scaled by `1/M²` here, see [`fft`]).
//! - Model pattern in counts: `Î_j = N_j·|Ψ|²/M²`, with `N_j` the recorded total counts of
//!   pattern `j` ([`PreparedPattern::total_counts`]) and the probe normalised to `Σ|P|² = 1`.
//!   By Parseval `Σ_k Î_k = N_j·Σ_r|P·O|²`, which is `N_j` for vacuum (`|O| = 1`): the model is
//!   scaled to the recorded counts of that pattern (paper 001 section 3). If part of the beam
//!   falls outside the window (a crop), [`PreparedPattern::set_total_counts`] lets the caller
//!   state the full count.
//! - Measured patterns arrive in the detector layout (zero angle at pixel `(M/2, M/2)`); they
//!   are converted once, by [`PreparedPattern::prepare`], to `√I` in FFT order (`ifftshift`) and
//!   **transposed** (`[kx][ky]`) to match the far field that [`fft::Fft2::forward_transposed`]
//!   leaves. The model is never shifted.
//! - Positions ([`ScanGeometry`]) are probe centres in object pixels `[row, col]`, floats.
//!   The window's top-left pixel is `round(position) − M/2`; the remaining sub-pixel part
//!   `f ∈ [−½, ½]²` is applied by **Fourier-shifting the probe**: `P_f = F⁻¹[F[P]·e^{−2πi k·f/M}]`
//!   with the separable phase ramp computed per update into preallocated scratch (2M complex
//!   exponentials) and `F[P]` cached until the probe changes. This costs one extra FFT per
//!   update (three more when ePIE also updates the probe, whose update is shifted back by `−f`);
//!   positions within 10⁻³ pixel of an integer skip it. No interpolation, so no blurring.
//! - Start: vacuum, `O = 1` (or a given object).
//!
//! # Losses reported
//! Every update evaluates, before changing anything, the chosen loss (ePIE: the amplitude loss)
//! and the amplitude loss `Σ_k (√Î_k − √I_k)²` in counts, comparable between methods. They are
//! summed per pass ([`LossReport`]); pass 0 is the online pass, then one per sweep.

pub mod epie;
pub mod fft;
pub mod geometry;
pub mod wf;

pub use epie::{EpieParams, ProbeUpdate};
pub use geometry::{RasterScan, ScanGeometry};
pub use wf::{Loss, WfParams};

use num_complex::Complex32;

use crate::{Error, Result};
use fft::Fft2;

/// Positions closer than this (in pixels) to an integer are not Fourier-shifted.
const SUBPIXEL_TOLERANCE: f64 = 1e-3;

/// The reconstruction algorithm and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Method {
    /// ePIE: object and (optionally) probe.
    Epie(EpieParams),
    /// Wirtinger flow with a known probe.
    Wf(WfParams),
}

impl Method {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        match self {
            Method::Epie(p) => p.validate(),
            Method::Wf(p) => p.validate(),
        }
    }

    /// A short name for reports: `epie` or `wf-<loss>`.
    pub fn name(&self) -> String {
        match self {
            Method::Epie(_) => "epie".to_owned(),
            Method::Wf(p) => format!("wf-{}", p.loss.name()),
        }
    }
}

/// One measured pattern, prepared once for the reconstruction: `√I` (counts) in FFT order,
/// transposed, plus the total counts `N_j` and the largest count.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedPattern {
    m: usize,
    amp_t: Vec<f32>,
    total: f64,
    max_count: f32,
}

impl PreparedPattern {
    /// An empty (zero) pattern for an `M × M` window; fill it with [`PreparedPattern::prepare`].
    pub fn new(m: usize) -> Self {
        PreparedPattern {
            m,
            amp_t: vec![0.0; m * m],
            total: 0.0,
            max_count: 0.0,
        }
    }

    /// A pattern prepared from an `M × M` detector frame (allocates; see
    /// [`PreparedPattern::prepare`] for the reusable form).
    pub fn from_frame<T: Copy + Into<f64>>(frame: &[T], m: usize) -> Result<Self> {
        let mut p = PreparedPattern::new(m);
        p.prepare(frame)?;
        Ok(p)
    }

    /// Fills this buffer from an `M × M` frame in the **detector layout** (row-major, zero
    /// scattering angle at pixel `(M/2, M/2)`), already binned/cropped to the window by the
    /// caller. Any pixel type that converts to `f64` (u8, u16, u32, f32, f64). Negative values
    /// (e.g. after dark subtraction) count as 0. Does not allocate.
    ///
    /// Stores `√I` in FFT order (`ifftshift`: detector pixel `(M/2, M/2)` → `[0, 0]`),
    /// transposed (`amp[kx·M + ky]`), the total counts `N_j = Σ I` and `max I`.
    pub fn prepare<T: Copy + Into<f64>>(&mut self, frame: &[T]) -> Result<()> {
        let m = self.m;
        if frame.len() != m * m {
            return Err(Error::param(
                "frame",
                format!(
                    "{} pixels, expected {m}×{m} = {} (bin/crop to the window first)",
                    frame.len(),
                    m * m
                ),
            ));
        }
        let h = m / 2;
        let mut total = 0.0f64;
        let mut max = 0.0f32;
        for (y, row) in frame.chunks_exact(m).enumerate() {
            // ifftshift: detector row y holds frequency row ky with y = (ky + M/2) mod M.
            let ky = (y + m - h) % m;
            for (x, &v) in row.iter().enumerate() {
                let kx = (x + m - h) % m;
                let v: f64 = v.into();
                if !v.is_finite() {
                    return Err(Error::param(
                        "frame",
                        format!("non-finite value {v} at pixel ({y}, {x})"),
                    ));
                }
                let v = v.max(0.0);
                total += v;
                max = max.max(v as f32);
                self.amp_t[kx * m + ky] = (v as f32).sqrt();
            }
        }
        self.total = total;
        self.max_count = max;
        Ok(())
    }

    /// The window side `M`.
    pub fn window(&self) -> usize {
        self.m
    }

    /// `N_j`, the counts the model pattern is scaled to.
    pub fn total_counts(&self) -> f64 {
        self.total
    }

    /// Overrides `N_j`, e.g. with the counts of the whole beam when the frame was cropped to
    /// the window (paper 001 scales by the total probability over the probability on the
    /// detector).
    pub fn set_total_counts(&mut self, counts: f64) {
        self.total = counts;
    }

    /// The largest count of the pattern.
    pub fn max_count(&self) -> f32 {
        self.max_count
    }

    /// `√I` in FFT order, transposed: `amp[kx·M + ky]`.
    pub fn amplitude_transposed(&self) -> &[f32] {
        &self.amp_t
    }

    /// The intensity back in the detector layout (row-major, zero angle at `(M/2, M/2)`);
    /// allocates (for inspection and tests).
    pub fn intensity_detector_layout(&self) -> Vec<f32> {
        let m = self.m;
        let h = m / 2;
        let mut out = vec![0.0; m * m];
        for y in 0..m {
            let ky = (y + m - h) % m;
            for x in 0..m {
                let kx = (x + m - h) % m;
                let a = self.amp_t[kx * m + ky];
                out[y * m + x] = a * a;
            }
        }
        out
    }
}

/// Loss sums of one pass over the patterns.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossReport {
    /// Pass number: 0 = the online pass, then one per sweep.
    pub pass: usize,
    /// Updates in this pass.
    pub patterns: u64,
    /// The method's loss summed over the patterns (ePIE: the amplitude loss), evaluated
    /// before each update.
    pub loss: f64,
    /// The amplitude loss `Σ (√Î − √I)²` in counts, the same for every method.
    pub amplitude_loss: f64,
    /// Total measured counts of the patterns of this pass (to normalise the losses).
    pub counts: f64,
}

impl LossReport {
    /// `amplitude_loss / counts`: 0 for a perfect fit, ≈ ¼ per pixel-count at Poisson noise.
    pub fn relative_amplitude_loss(&self) -> f64 {
        if self.counts > 0.0 {
            self.amplitude_loss / self.counts
        } else {
            0.0
        }
    }
}

/// Everything [`Reconstructor::new`] needs.
#[derive(Debug, Clone)]
pub struct ReconSetup {
    /// The algorithm.
    pub method: Method,
    /// The probe on the `M × M` window, centred at pixel `(M/2, M/2)`, row-major; it is
    /// normalised to `Σ|P|² = 1` on construction.
    pub probe: Vec<Complex32>,
    /// The window side `M`.
    pub window: usize,
    /// Positions (probe centres, object pixels) per scan index, object shape, pixel size.
    pub geometry: ScanGeometry,
    /// Keep every prepared pattern for [`Reconstructor::sweep`] (default true; costs
    /// `4·M²` bytes per scan position, allocated up front).
    pub keep_patterns: bool,
    /// Starting object (row-major, `object_shape`); `None` = vacuum (1).
    pub initial_object: Option<Vec<Complex32>>,
}

impl ReconSetup {
    /// A setup with the defaults: keep patterns, vacuum start.
    pub fn new(
        method: Method,
        probe: Vec<Complex32>,
        window: usize,
        geometry: ScanGeometry,
    ) -> Self {
        ReconSetup {
            method,
            probe,
            window,
            geometry,
            keep_patterns: true,
            initial_object: None,
        }
    }
}

/// Where one scan position's window sits: top-left pixel and the sub-pixel remainder.
#[derive(Debug, Clone, Copy)]
struct Placement {
    row0: usize,
    col0: usize,
    /// Sub-pixel shift `[fy, fx]` of the probe, pixels, in `[−½, ½]`.
    frac: [f32; 2],
    shifted: bool,
}

/// The prepared patterns seen so far, preallocated.
#[derive(Debug)]
struct Store {
    amp: Vec<f32>,
    total: Vec<f64>,
    max: Vec<f32>,
    seen: Vec<bool>,
    arrival: Vec<usize>,
}

/// The state an update changes, apart from the pattern store (split so a sweep can read the
/// store while updating the state).
struct State {
    m: usize,
    method: Method,
    cols: usize,
    object: Vec<Complex32>,
    probe: Vec<Complex32>,
    /// `F[P]` transposed, valid unless `probe_spec_dirty`.
    probe_spec_t: Vec<Complex32>,
    probe_spec_dirty: bool,
    fft: Fft2,
    psi: Vec<Complex32>,
    far: Vec<Complex32>,
    probe_s: Vec<Complex32>,
    dprobe: Vec<Complex32>,
    lap: Vec<Complex32>,
    ramp_y: Vec<Complex32>,
    ramp_x: Vec<Complex32>,
    updates: u64,
    skipped: u64,
    pass: usize,
    running: LossReport,
}

/// The online reconstruction engine (ePIE or Wirtinger flow). See the [module docs](self).
pub struct Reconstructor {
    state: State,
    geometry: ScanGeometry,
    placements: Vec<Placement>,
    store: Option<Store>,
    history: Vec<LossReport>,
}

impl std::fmt::Debug for Reconstructor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconstructor")
            .field("method", &self.state.method)
            .field("window", &self.state.m)
            .field("object_shape", &self.geometry.object_shape)
            .field("positions", &self.geometry.positions.len())
            .field("updates", &self.state.updates)
            .finish()
    }
}

impl Reconstructor {
    /// Builds the engine: checks the setup, plans the FFTs, allocates every buffer (object,
    /// probe, scratch, and the pattern store when `keep_patterns`).
    pub fn new(setup: ReconSetup) -> Result<Self> {
        let ReconSetup {
            method,
            mut probe,
            window: m,
            geometry,
            keep_patterns,
            initial_object,
        } = setup;
        method.validate()?;
        if m < 2 {
            return Err(Error::param("window", format!("{m}, expected ≥ 2")));
        }
        if probe.len() != m * m {
            return Err(Error::param(
                "probe",
                format!("{} values, expected {m}×{m}", probe.len()),
            ));
        }
        let energy: f64 = probe.iter().map(|p| p.norm_sqr() as f64).sum();
        if !(energy.is_finite() && energy > 0.0) {
            return Err(Error::param("probe", "zero or non-finite probe"));
        }
        let scale = (1.0 / energy.sqrt()) as f32;
        probe.iter_mut().for_each(|p| *p *= scale);
        geometry.validate(m)?;
        let [rows, cols] = geometry.object_shape;
        let object = match initial_object {
            Some(o) if o.len() == rows * cols => o,
            Some(o) => {
                return Err(Error::param(
                    "initial object",
                    format!("{} values, expected {rows}×{cols}", o.len()),
                ));
            }
            None => vec![Complex32::new(1.0, 0.0); rows * cols],
        };
        let placements = geometry
            .positions
            .iter()
            .map(|p| {
                let (ry, rx) = (p[0].round(), p[1].round());
                let frac = [(p[0] - ry) as f32, (p[1] - rx) as f32];
                Placement {
                    row0: ry as usize - m / 2,
                    col0: rx as usize - m / 2,
                    frac,
                    shifted: (p[0] - ry).abs() > SUBPIXEL_TOLERANCE
                        || (p[1] - rx).abs() > SUBPIXEL_TOLERANCE,
                }
            })
            .collect();
        let n = geometry.positions.len();
        let store = keep_patterns.then(|| Store {
            amp: vec![0.0; n * m * m],
            total: vec![0.0; n],
            max: vec![0.0; n],
            seen: vec![false; n],
            arrival: Vec::with_capacity(n),
        });
        let zero = Complex32::new(0.0, 0.0);
        let state = State {
            m,
            method,
            cols,
            object,
            probe,
            probe_spec_t: vec![zero; m * m],
            probe_spec_dirty: true,
            fft: Fft2::new(m),
            psi: vec![zero; m * m],
            far: vec![zero; m * m],
            probe_s: vec![zero; m * m],
            dprobe: vec![zero; m * m],
            lap: vec![zero; m * m],
            ramp_y: vec![zero; m],
            ramp_x: vec![zero; m],
            updates: 0,
            skipped: 0,
            pass: 0,
            running: LossReport::default(),
        };
        Ok(Reconstructor {
            state,
            geometry,
            placements,
            store,
            history: Vec::new(),
        })
    }

    /// A pattern buffer of the right size for [`PreparedPattern::prepare`].
    pub fn new_pattern(&self) -> PreparedPattern {
        PreparedPattern::new(self.state.m)
    }

    /// One update for scan index `index` with its prepared pattern, in arrival order. Keeps a
    /// copy of the pattern for later sweeps (when enabled). Never allocates.
    ///
    /// A pattern with zero total counts carries no information under the count-scaled model
    /// and is skipped (counted in [`Reconstructor::skipped`]).
    pub fn update(&mut self, index: usize, pattern: &PreparedPattern) -> Result<()> {
        let m = self.state.m;
        if index >= self.placements.len() {
            return Err(Error::param(
                "scan index",
                format!(
                    "{index}, expected < {} (the scan's positions)",
                    self.placements.len()
                ),
            ));
        }
        if pattern.m != m {
            return Err(Error::param(
                "pattern",
                format!("{0}×{0} pattern for a {m}×{m} window", pattern.m),
            ));
        }
        if let Some(store) = self.store.as_mut() {
            let n = m * m;
            store.amp[index * n..(index + 1) * n].copy_from_slice(&pattern.amp_t);
            store.total[index] = pattern.total;
            store.max[index] = pattern.max_count;
            if !store.seen[index] {
                store.seen[index] = true;
                store.arrival.push(index);
            }
        }
        self.state.apply(
            &self.placements[index],
            &pattern.amp_t,
            pattern.total,
            pattern.max_count,
        );
        Ok(())
    }

    /// One further pass over every kept pattern, in arrival order (the revisit budget after
    /// the scan). Closes the running pass first; returns this sweep's [`LossReport`].
    /// Errors if patterns were not kept.
    pub fn sweep(&mut self) -> Result<LossReport> {
        let Some(store) = self.store.as_ref() else {
            return Err(Error::param(
                "--sweeps",
                "the reconstruction was built without keeping patterns",
            ));
        };
        self.state.close_pass(&mut self.history);
        let n = self.state.m * self.state.m;
        for &index in &store.arrival {
            self.state.apply(
                &self.placements[index],
                &store.amp[index * n..(index + 1) * n],
                store.total[index],
                store.max[index],
            );
        }
        let report = self.state.running;
        self.state.close_pass(&mut self.history);
        Ok(report)
    }

    /// The running pass's loss sums (pass 0 = online updates so far).
    pub fn loss(&self) -> LossReport {
        let mut r = self.state.running;
        r.pass = self.state.pass;
        r
    }

    /// Reports of the finished passes.
    pub fn history(&self) -> &[LossReport] {
        &self.history
    }

    /// Updates done (online and sweeps), not counting skipped patterns.
    pub fn updates_done(&self) -> u64 {
        self.state.updates
    }

    /// Patterns skipped because they had no counts.
    pub fn skipped(&self) -> u64 {
        self.state.skipped
    }

    /// Sweeps done after the online pass.
    pub fn sweeps_done(&self) -> usize {
        self.history.len().saturating_sub(1)
    }

    /// Number of distinct scan indices seen (kept for sweeps).
    pub fn patterns_kept(&self) -> usize {
        self.store.as_ref().map_or(0, |s| s.arrival.len())
    }

    /// The object, row-major, [`Reconstructor::object_shape`].
    pub fn object(&self) -> &[Complex32] {
        &self.state.object
    }

    /// The object array shape `[rows, cols]`.
    pub fn object_shape(&self) -> [usize; 2] {
        self.geometry.object_shape
    }

    /// The probe on the window (`Σ|P|² = 1`), centred at `(M/2, M/2)`, row-major.
    pub fn probe(&self) -> &[Complex32] {
        &self.state.probe
    }

    /// The window side `M`.
    pub fn window(&self) -> usize {
        self.state.m
    }

    /// The method and its parameters.
    pub fn method(&self) -> &Method {
        &self.state.method
    }

    /// The scan geometry (positions, object shape, pixel size).
    pub fn geometry(&self) -> &ScanGeometry {
        &self.geometry
    }

    /// Object pixel size in Å.
    pub fn object_pixel_angstrom(&self) -> f64 {
        self.geometry.pixel_angstrom
    }

    /// Object-array pixel `[row, col]` under the probe centre at scan position `(0, 0)`.
    pub fn object_origin_px(&self) -> [f64; 2] {
        self.geometry.origin_px()
    }
}

/// `e^{−2πi·k·f/M}` for the signed FFT frequencies `k` of an `M`-point axis.
fn fill_ramp(ramp: &mut [Complex32], f: f32) {
    let m = ramp.len();
    for (i, r) in ramp.iter_mut().enumerate() {
        let k = if i < m.div_ceil(2) {
            i as f32
        } else {
            i as f32 - m as f32
        };
        let (s, c) = (-2.0 * std::f32::consts::PI * k * f / m as f32).sin_cos();
        *r = Complex32::new(c, s);
    }
}

impl State {
    /// Ends the running pass: stores its report (if it saw any pattern) and starts the next.
    fn close_pass(&mut self, history: &mut Vec<LossReport>) {
        if self.running.patterns > 0 {
            history.push(self.running);
            self.pass += 1;
        }
        self.running = LossReport {
            pass: self.pass,
            ..LossReport::default()
        };
    }

    /// Shifts `src` (row-major) by the sub-pixel `frac` into `dst` via
    /// `F⁻¹[F[src]·ramp]`, using `psi`-sized scratch `tmp` and `spec`. When `spec_valid`,
    /// `spec` already holds `F[src]` transposed and `src` is not read.
    #[allow(clippy::too_many_arguments)]
    fn shift(
        fft: &mut Fft2,
        ramp_y: &mut [Complex32],
        ramp_x: &mut [Complex32],
        src: &[Complex32],
        tmp: &mut [Complex32],
        spec: &mut [Complex32],
        spec_valid: bool,
        frac: [f32; 2],
        dst: &mut [Complex32],
    ) {
        let m = ramp_y.len();
        if !spec_valid {
            tmp.copy_from_slice(src);
            fft.forward_transposed(tmp, spec);
        }
        fill_ramp(ramp_y, frac[0]);
        fill_ramp(ramp_x, frac[1]);
        let norm = 1.0 / (m * m) as f32;
        // tmp = spec · ramp / M² (spec kept intact for reuse), transposed layout [kx][ky].
        for (kx, (row, srow)) in tmp
            .chunks_exact_mut(m)
            .zip(spec.chunks_exact(m))
            .enumerate()
        {
            let rx = ramp_x[kx] * norm;
            for ((t, s), ry) in row.iter_mut().zip(srow).zip(ramp_y.iter()) {
                *t = s * rx * ry;
            }
        }
        fft.inverse_from_transposed(tmp, dst);
    }

    /// One update at `place` with the pattern `amp_t` (√I transposed), `total` = N_j.
    fn apply(&mut self, place: &Placement, amp_t: &[f32], total: f64, max_count: f32) {
        if total.is_nan() || total <= 0.0 {
            self.skipped += 1;
            return;
        }
        let m = self.m;
        let n = m * m;
        let cols = self.cols;
        let (probe_active, step) = match &self.method {
            Method::Epie(p) => (p.probe_active(self.updates, self.pass), p.alpha),
            Method::Wf(p) => (false, p.step / p.loss.curvature_scale(max_count)),
        };
        let (tikhonov, wf_step) = match &self.method {
            Method::Wf(p) => (p.tikhonov, p.step),
            Method::Epie(_) => (0.0, 0.0),
        };
        let State {
            object,
            probe,
            probe_spec_t,
            probe_spec_dirty,
            fft,
            psi,
            far,
            probe_s,
            dprobe,
            lap,
            ramp_y,
            ramp_x,
            ..
        } = self;

        // 1. The (sub-pixel shifted) probe.
        if place.shifted {
            Self::shift(
                fft,
                ramp_y,
                ramp_x,
                probe,
                psi,
                probe_spec_t,
                !*probe_spec_dirty,
                place.frac,
                probe_s,
            );
            *probe_spec_dirty = false;
        }
        let p: &[Complex32] = if place.shifted { probe_s } else { probe };

        // 2. Exit wave, max|P|², max|O|² over the window, Laplacian for the prior.
        let mut pmax = 0.0f32;
        let mut omax = 0.0f32;
        for y in 0..m {
            let orow = &object[(place.row0 + y) * cols + place.col0..][..m];
            let prow = &p[y * m..][..m];
            for ((w, &o), &pp) in psi[y * m..][..m].iter_mut().zip(orow).zip(prow) {
                *w = pp * o;
                pmax = pmax.max(pp.norm_sqr());
                omax = omax.max(o.norm_sqr());
            }
        }
        if tikhonov > 0.0 {
            let rows = object.len() / cols;
            for y in 0..m {
                let r = place.row0 + y;
                let (ru, rd) = (r.saturating_sub(1), (r + 1).min(rows - 1));
                for x in 0..m {
                    let c = place.col0 + x;
                    let (cl, cr) = (c.saturating_sub(1), (c + 1).min(cols - 1));
                    let o = object[r * cols + c];
                    lap[y * m + x] = object[ru * cols + c]
                        + object[rd * cols + c]
                        + object[r * cols + cl]
                        + object[r * cols + cr]
                        - o * 4.0;
                }
            }
        }
        if pmax.is_nan() || pmax <= 0.0 {
            self.skipped += 1;
            return;
        }

        // 3. Far field, transposed.
        fft.forward_transposed(psi, far);

        // 4. Fourier-space pass: far ← ℓ'(Î)·Ψ / M² (ePIE: (Ψ − Ψ')/M²), and the losses.
        let c = (total / n as f64) as f32;
        let sqrt_c = c.sqrt();
        let norm = 1.0 / n as f32;
        let mut loss = 0.0f64;
        let mut amp_loss = 0.0f64;
        match &self.method {
            Method::Epie(_) => {
                for (f, &a) in far.iter_mut().zip(amp_t) {
                    let mag = f.norm();
                    let d = sqrt_c * mag - a;
                    amp_loss += (d * d) as f64;
                    // Ψ − Ψ' with Ψ' = (a/√c)·Ψ/|Ψ| (phase 0 where Ψ = 0).
                    let target = a / sqrt_c;
                    *f = if mag > 0.0 {
                        *f * ((1.0 - target / mag) * norm)
                    } else {
                        Complex32::new(-target * norm, 0.0)
                    };
                }
                loss = amp_loss;
            }
            Method::Wf(wp) => {
                let (lossfn, eps) = (wp.loss, wp.epsilon);
                let trunc = wp.truncation.map(|alpha_h| {
                    let (mut res, mut model) = (0.0f64, 0.0f64);
                    for (f, &a) in far.iter().zip(amp_t) {
                        let mi = c * f.norm_sqr();
                        res += (mi - a * a).abs() as f64;
                        model += mi as f64;
                    }
                    (alpha_h, (res / n as f64) as f32, (model / n as f64) as f32)
                });
                for (f, &a) in far.iter_mut().zip(amp_t) {
                    let model = c * f.norm_sqr();
                    let meas = a * a;
                    loss += lossfn.value(model, meas, eps);
                    let d = model.sqrt() - a;
                    amp_loss += (d * d) as f64;
                    let keep = match trunc {
                        Some((alpha_h, mean_res, mean_model)) if mean_model > 0.0 => {
                            wf::truncation_keeps(
                                (model - meas).abs(),
                                model,
                                alpha_h,
                                mean_res,
                                mean_model,
                            )
                        }
                        _ => true,
                    };
                    let g = if keep {
                        lossfn.derivative(model, meas, eps)
                    } else {
                        0.0
                    };
                    *f *= g * norm;
                }
            }
        }
        self.running.patterns += 1;
        self.running.loss += loss;
        self.running.amplitude_loss += amp_loss;
        self.running.counts += total;
        self.updates += 1;

        // 5. Back to real space: psi = F⁻¹[ℓ'Ψ] (ePIE: ψ − ψ').
        fft.inverse_from_transposed(far, psi);

        // 6. Object (and probe) update.
        let s = step / pmax;
        let beta_o = match &self.method {
            Method::Epie(e) if probe_active && omax > 0.0 => e.beta / omax,
            _ => 0.0,
        };
        let prior = wf_step * tikhonov / pmax;
        for y in 0..m {
            let orow = &mut object[(place.row0 + y) * cols + place.col0..][..m];
            let i0 = y * m;
            for (x, o) in orow.iter_mut().enumerate() {
                let i = i0 + x;
                let r = psi[i];
                let pp = p[i];
                if beta_o > 0.0 {
                    dprobe[i] = o.conj() * r * beta_o;
                }
                let mut new = *o - pp.conj() * r * s;
                if prior > 0.0 {
                    new += lap[i] * (prior * pp.norm_sqr());
                }
                *o = new;
            }
        }
        if beta_o > 0.0 {
            if place.shifted {
                // Shift the probe's correction back by −f into the probe's own frame.
                Self::shift(
                    fft,
                    ramp_y,
                    ramp_x,
                    dprobe,
                    psi,
                    far,
                    false,
                    [-place.frac[0], -place.frac[1]],
                    probe_s,
                );
                for (pp, d) in probe.iter_mut().zip(probe_s.iter()) {
                    *pp -= d;
                }
            } else {
                for (pp, d) in probe.iter_mut().zip(dprobe.iter()) {
                    *pp -= d;
                }
            }
            let energy: f64 = probe.iter().map(|v| v.norm_sqr() as f64).sum();
            if energy > 0.0 && energy.is_finite() {
                let k = (1.0 / energy.sqrt()) as f32;
                probe.iter_mut().for_each(|v| *v *= k);
            }
            *probe_spec_dirty = true;
        }
    }
}

#[cfg(test)]
mod tests;
