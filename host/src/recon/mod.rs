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
//!   exponentials) and `F[P]` kept beside the probe. This costs one extra inverse FFT per
//!   update; ePIE's probe update adds one forward FFT (the correction is shifted back by `−f`
//!   and added in Fourier space). Positions within 10⁻³ pixel of an integer
//!   skip the shift. No interpolation, so no blurring.
//! - The step is scaled by `max|P_f|²`, the maximum of the probe as placed for the update.
//! - Start: vacuum, `O = 1` (or a given object).
//!
//! # Losses reported
//! Before its update, the pattern of every [`ReconSetup::loss_every`]-th scan index (default
//! 8) is scored: the chosen loss (ePIE: the amplitude loss) and the amplitude loss
//! `Σ_k (√Î_k − √I_k)²` in counts, comparable between methods. They are summed per pass
//! ([`LossReport`]); pass 0 is the online pass, then one per sweep. Scoring every pattern
//! (with `ln` on every pixel for the Poisson loss) cost more than the update's FFTs.
//!
//! # Speed
//! The per-pixel passes (module `kernels`) are compiled for the baseline and for AVX2 + FMA, picked
//! once at run time ([`crate::simd`]), with the same bits either way. Sweeps with the probe held
//! run on several threads over object stripes that do not overlap ([`Reconstructor::sweep`]).

pub mod epie;
pub mod fft;
pub mod geometry;
mod kernels;
mod loss;
mod method;
mod pattern;
pub mod schedule;
pub mod wf;

pub use epie::{EpieParams, ProbeUpdate};
pub use geometry::{RasterScan, ScanGeometry};
pub use loss::LossReport;
pub use method::{Method, MethodOptions, ObjectConstraint};
pub use pattern::PreparedPattern;
pub use schedule::{AutoStep, ChosenStep, Illumination, Schedule};
pub use wf::{Loss, WfParams};

use num_complex::Complex32;

use crate::simd::SimdLevel;
use crate::{Error, Result};
use fft::Fft2;

/// Positions closer than this (in pixels) to an integer are not Fourier-shifted.
const SUBPIXEL_TOLERANCE: f64 = 1e-3;

/// Default of [`ReconSetup::loss_every`].
pub const DEFAULT_LOSS_EVERY: usize = 8;

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
    /// Evaluate the loss report on every `loss_every`-th scan index (default 8; 1 = every
    /// pattern). See [`LossReport`].
    pub loss_every: usize,
    /// How the object step is chosen (default [`Schedule::Fixed`]: the method's α or μ).
    pub schedule: Schedule,
    /// The sweeps that will follow the online pass (what [`Schedule::Auto`] plans its
    /// steps over; sweeps beyond it keep the last step). Default 0.
    pub planned_sweeps: usize,
    /// The constraint on the object's modulus (default [`ObjectConstraint::Free`] here; the
    /// faces default to [`ObjectConstraint::Passive`]).
    pub object_constraint: ObjectConstraint,
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
            loss_every: DEFAULT_LOSS_EVERY,
            schedule: Schedule::Fixed,
            planned_sweeps: 0,
            object_constraint: ObjectConstraint::Free,
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
    /// The sweep stripe this window lies in: `(phase, stripe)`, see [`Stripes`].
    stripe: (usize, usize),
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

/// One pattern as an update reads it.
#[derive(Clone, Copy)]
struct PatternRef<'a> {
    amp_t: &'a [f32],
    total: f64,
    max_count: f32,
}

impl Store {
    fn pattern(&self, index: usize, n: usize) -> PatternRef<'_> {
        PatternRef {
            amp_t: &self.amp[index * n..(index + 1) * n],
            total: self.total[index],
            max_count: self.max[index],
        }
    }
}

/// The horizontal stripes a sweep with a fixed probe is cut into, so that threads can update
/// disjoint parts of the object at once.
///
/// Stripes are `H = 2(M + 2)` object rows high. Phase 0 covers the object with stripes starting
/// at rows `0, H, 2H, …`; phase 1 with stripes starting at `H/2, 3H/2, …`. A window plus the
/// one-row margin the Tikhonov Laplacian reads is at most `M + 2 = H/2` rows high, so it lies
/// wholly inside a phase-0 stripe or, if it crosses a phase-0 boundary, inside the phase-1
/// stripe centred on that boundary. A sweep runs every phase-0 stripe (in parallel), then every
/// phase-1 stripe; inside a stripe the patterns go in arrival order. The order depends only on
/// the geometry, never on the number of threads, so results are the same bits for any
/// `threads`.
#[derive(Debug, Clone, Copy)]
struct Stripes {
    height: usize,
}

impl Stripes {
    fn new(m: usize) -> Self {
        Stripes {
            height: 2 * (m + 2),
        }
    }

    /// First object row of stripe `k` of `phase`.
    fn first_row(&self, phase: usize, k: usize) -> usize {
        phase * self.height / 2 + k * self.height
    }

    /// `(phase, stripe)` of a window whose rows, with margin, are `[lo, hi)`.
    fn assign(&self, lo: usize, hi: usize) -> (usize, usize) {
        let h = self.height;
        let k = lo / h;
        if hi <= (k + 1) * h {
            return (0, k);
        }
        // The window crosses row (k + 1)·H and is at most H/2 high, so lo ≥ H/2 and it fits
        // the phase-1 stripe [(k + ½)·H, (k + 3/2)·H).
        let k = (lo - h / 2) / h;
        debug_assert!(hi <= self.first_row(1, k) + h);
        (1, k)
    }
}

/// Rows `[first_row, first_row + data.len() / cols)` of the object (all of it, or one stripe).
struct Rows<'a> {
    data: &'a mut [Complex32],
    first_row: usize,
    cols: usize,
    /// Rows of the whole object (the Laplacian replicates its edges).
    object_rows: usize,
}

impl Rows<'_> {
    /// Object pixel `(r, c)`, global coordinates.
    #[inline(always)]
    fn at(&self, r: usize, c: usize) -> Complex32 {
        self.data[(r - self.first_row) * self.cols + c]
    }

    /// `m` pixels of object row `r` from column `c`, global coordinates.
    #[inline(always)]
    fn row(&mut self, r: usize, c: usize, m: usize) -> &mut [Complex32] {
        &mut self.data[(r - self.first_row) * self.cols + c..][..m]
    }
}

/// The probe in real space and as its transposed spectrum `F[P]` (what sub-pixel shifts start
/// from). ePIE's probe update changes one of the two and marks the other stale; each is
/// recomputed (one FFT) only when something reads it, so a run of probe updates at sub-pixel
/// positions stays in Fourier space.
struct Probe {
    real: Vec<Complex32>,
    spec_t: Vec<Complex32>,
    real_stale: bool,
    spec_stale: bool,
}

impl Probe {
    /// Makes `spec_t` current (`tmp`: window scratch).
    fn sync_spectrum(&mut self, fft: &mut Fft2, tmp: &mut [Complex32]) {
        if self.spec_stale {
            tmp.copy_from_slice(&self.real);
            fft.forward_transposed(tmp, &mut self.spec_t);
            self.spec_stale = false;
        }
    }

    /// Makes `real` current (`tmp`: window scratch).
    fn sync_real(&mut self, fft: &mut Fft2, tmp: &mut [Complex32]) {
        if self.real_stale {
            let norm = 1.0 / tmp.len() as f32;
            for (t, s) in tmp.iter_mut().zip(&self.spec_t) {
                *t = s * norm;
            }
            fft.inverse_from_transposed(tmp, &mut self.real);
            self.real_stale = false;
        }
    }

    /// Makes both current.
    fn sync(&mut self, fft: &mut Fft2, tmp: &mut [Complex32]) {
        self.sync_real(fft, tmp);
        self.sync_spectrum(fft, tmp);
    }
}

/// The FFT plans and window-sized buffers of one thread's updates.
struct Scratch {
    fft: Fft2,
    psi: Vec<Complex32>,
    far: Vec<Complex32>,
    probe_s: Vec<Complex32>,
    dprobe: Vec<Complex32>,
    lap: Vec<Complex32>,
    ramp_y: Vec<Complex32>,
    ramp_x: Vec<Complex32>,
}

impl Scratch {
    fn new(m: usize) -> Self {
        let zero = Complex32::new(0.0, 0.0);
        Scratch {
            fft: Fft2::new(m),
            psi: vec![zero; m * m],
            far: vec![zero; m * m],
            probe_s: vec![zero; m * m],
            dprobe: vec![zero; m * m],
            lap: vec![zero; m * m],
            ramp_y: vec![zero; m],
            ramp_x: vec![zero; m],
        }
    }
}

/// What one update reads besides its pattern.
struct Step<'a> {
    m: usize,
    method: &'a Method,
    probe: &'a Probe,
    place: &'a Placement,
    /// Evaluate the losses of this pattern for the report.
    evaluate: bool,
    /// ePIE's probe step β when the probe is updated now, else 0.
    probe_beta: f32,
    /// The object step of this update: ePIE's α or Wirtinger flow's μ.
    object_step: f32,
    /// The constraint on the object's modulus after the step.
    constraint: ObjectConstraint,
    /// The instruction set to run on.
    simd: SimdLevel,
}

/// What an update reports back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// No counts (or no probe): nothing changed.
    Skipped,
    /// The object was updated.
    Updated,
    /// The object was updated and `scratch.dprobe` holds ePIE's probe correction, in the
    /// frame of the sub-pixel shifted probe.
    UpdatedWithProbeCorrection,
}

/// One thread's sums over the updates it ran.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    skipped: u64,
    report: LossReport,
}

/// The state an update changes, apart from the pattern store (split so a sweep can read the
/// store while updating the state).
struct State {
    m: usize,
    method: Method,
    rows: usize,
    cols: usize,
    loss_every: usize,
    /// The instruction set updates run on ([`SimdLevel::detect`]).
    simd: SimdLevel,
    object: Vec<Complex32>,
    probe: Probe,
    /// The scratch of the calling thread, then one per extra sweep thread.
    scratch: Vec<Scratch>,
    updates: u64,
    skipped: u64,
    /// Updates that also changed the probe.
    probe_updates: u64,
    /// Total counts and number of the patterns given to [`Reconstructor::update`].
    seen_counts: f64,
    seen_patterns: u64,
    pass: usize,
    running: LossReport,
    /// How the object step is chosen, and what the set-up measured for it.
    schedule: Schedule,
    light: Illumination,
    /// Passes the schedule plans for: the online pass plus the planned sweeps.
    planned_passes: usize,
    constraint: ObjectConstraint,
    /// Scan positions (what an automatic probe step is divided by).
    positions: usize,
}

/// The online reconstruction engine (ePIE or Wirtinger flow). See the [module docs](self).
pub struct Reconstructor {
    state: State,
    geometry: ScanGeometry,
    placements: Vec<Placement>,
    stripes: Stripes,
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
            loss_every,
            schedule,
            planned_sweeps,
            object_constraint,
        } = setup;
        if let Schedule::Auto(a) = &schedule {
            a.validate()?;
        }
        method.validate()?;
        if m < 2 {
            return Err(Error::param("window", format!("{m}, expected ≥ 2")));
        }
        if loss_every == 0 {
            return Err(Error::param("loss_every", "0, expected ≥ 1"));
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
        let area = crate::budget::checked_len(&[rows, cols], "--step", "the object")?;
        let object = match initial_object {
            Some(o) if o.len() == area => o,
            Some(o) => {
                return Err(Error::param(
                    "initial object",
                    format!("{} values, expected {rows}×{cols}", o.len()),
                ));
            }
            None => {
                crate::budget::try_filled(area, Complex32::new(1.0, 0.0), "--step", "the object")?
            }
        };
        let stripes = Stripes::new(m);
        let placements: Vec<Placement> = geometry
            .positions
            .iter()
            .map(|p| {
                let (ry, rx) = (p[0].round(), p[1].round());
                let frac = [(p[0] - ry) as f32, (p[1] - rx) as f32];
                let row0 = ry as usize - m / 2;
                Placement {
                    row0,
                    col0: rx as usize - m / 2,
                    frac,
                    shifted: (p[0] - ry).abs() > SUBPIXEL_TOLERANCE
                        || (p[1] - rx).abs() > SUBPIXEL_TOLERANCE,
                    stripe: stripes.assign(row0.saturating_sub(1), (row0 + m + 1).min(rows)),
                }
            })
            .collect();
        let corners: Vec<[usize; 2]> = placements.iter().map(|p| [p.row0, p.col0]).collect();
        let light = Illumination::measure(&probe, m, [rows, cols], &corners);
        let n = geometry.positions.len();
        let store = if keep_patterns {
            use crate::budget::{checked_len, try_filled, try_with_capacity};
            let (name, what) = ("--scan", "the pattern store");
            Some(Store {
                amp: try_filled(checked_len(&[n, m, m], name, what)?, 0.0, name, what)?,
                total: try_filled(n, 0.0, name, what)?,
                max: try_filled(n, 0.0, name, what)?,
                seen: try_filled(n, false, name, what)?,
                arrival: try_with_capacity(n, name, what)?,
            })
        } else {
            None
        };
        let zero = Complex32::new(0.0, 0.0);
        let state = State {
            m,
            method,
            rows,
            cols,
            loss_every,
            simd: SimdLevel::detect(),
            object,
            probe: Probe {
                real: probe,
                spec_t: vec![zero; m * m],
                real_stale: false,
                spec_stale: true,
            },
            scratch: vec![Scratch::new(m)],
            updates: 0,
            skipped: 0,
            probe_updates: 0,
            seen_counts: 0.0,
            seen_patterns: 0,
            pass: 0,
            running: LossReport::default(),
            schedule,
            light,
            planned_passes: planned_sweeps.saturating_add(1),
            constraint: object_constraint,
            positions: n,
        };
        Ok(Reconstructor {
            state,
            geometry,
            placements,
            stripes,
            store,
            history: Vec::new(),
        })
    }

    /// Lets [`Reconstructor::sweep`] run on `threads` threads (default 1) when the probe is
    /// held fixed; plans and allocates each extra thread's scratch now. The online updates
    /// are always one stream in arrival order.
    pub fn set_threads(&mut self, threads: usize) {
        let threads = threads.max(1);
        let m = self.state.m;
        self.state.scratch.truncate(threads);
        while self.state.scratch.len() < threads {
            self.state.scratch.push(Scratch::new(m));
        }
    }

    /// Threads a sweep with a fixed probe uses.
    pub fn threads(&self) -> usize {
        self.state.scratch.len()
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
        let pat = PatternRef {
            amp_t: &pattern.amp_t,
            total: pattern.total,
            max_count: pattern.max_count,
        };
        if pattern.total.is_finite() {
            self.state.seen_counts += pattern.total;
        }
        self.state.seen_patterns += 1;
        self.state.apply(index, &self.placements[index], pat);
        self.state.sync_probe_real();
        Ok(())
    }

    /// One further pass over every kept pattern (the revisit budget after the scan). Closes
    /// the running pass first; returns this sweep's [`LossReport`]. Errors if patterns were not
    /// kept.
    ///
    /// While ePIE updates the probe, the sweep is one stream in arrival order. With the probe
    /// held (Wirtinger flow, or ePIE before its probe updates start) it runs stripe by stripe
    /// (see [`Reconstructor::set_threads`]): the stripes of one phase touch disjoint object
    /// rows and run in parallel, patterns in arrival order within each stripe. The result
    /// does not depend on the number of threads.
    pub fn sweep(&mut self) -> Result<LossReport> {
        let Some(store) = self.store.as_ref() else {
            return Err(Error::param(
                "--sweeps",
                "the reconstruction was built without keeping patterns",
            ));
        };
        let state = &mut self.state;
        state.close_pass(&mut self.history);
        let n = state.m * state.m;
        let seen = store.arrival.len() as u64;
        let probe_fixed = match &state.method {
            Method::Wf(_) => true,
            // Probe activity only grows with the update count, so checking the last
            // update of this sweep covers all of them.
            Method::Epie(p) => {
                !p.probe_active(state.updates + seen, state.pass, state.mean_counts())
            }
        };
        if probe_fixed {
            state.sweep_striped(store, &self.placements, self.stripes);
        } else {
            for &index in &store.arrival {
                state.apply(index, &self.placements[index], store.pattern(index, n));
            }
            state.sync_probe_real();
        }
        let report = state.running;
        state.close_pass(&mut self.history);
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

    /// Updates that also changed the probe (ePIE; 0 while it is held, see
    /// [`EpieParams::probe_min_counts`]).
    pub fn probe_updates(&self) -> u64 {
        self.state.probe_updates
    }

    /// The sweeps the set-up planned after the online pass ([`ReconSetup::planned_sweeps`]).
    pub fn planned_sweeps(&self) -> usize {
        self.state.planned_passes - 1
    }

    /// The constraint on the object's modulus.
    pub fn object_constraint(&self) -> ObjectConstraint {
        self.state.constraint
    }

    /// How the object step is chosen.
    pub fn schedule(&self) -> &Schedule {
        &self.state.schedule
    }

    /// The redundancy and probe area the set-up measured (what [`Schedule::Auto`] reads).
    pub fn illumination(&self) -> &Illumination {
        &self.state.light
    }

    /// The step [`Schedule::Auto`] chooses for pass `pass` at the mean counts seen so far
    /// (`None` with [`Schedule::Fixed`]).
    pub fn chosen_step(&self, pass: usize) -> Option<ChosenStep> {
        match &self.state.schedule {
            Schedule::Fixed => None,
            Schedule::Auto(a) => Some(a.choose(
                &self.state.light,
                self.state.mean_counts(),
                pass,
                self.state.planned_passes,
            )),
        }
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
        &self.state.probe.real
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
///
/// A geometric sequence: `w^k` with `w = e^{−2πi·f/M}` for `k = 0 … ⌈M/2⌉ − 1`, and
/// `conj(w)^{M−k}` for the negative frequencies `k − M`, by recurrence in f64 (one `sin_cos`
/// per axis instead of `M`; the rounding error grows by ~10⁻¹⁶ per step, far below f32).
fn fill_ramp(ramp: &mut [Complex32], f: f32) {
    let m = ramp.len();
    let (s, c) = (-2.0 * std::f64::consts::PI * f as f64 / m as f64).sin_cos();
    let w = num_complex::Complex64::new(c, s);
    let positive = m.div_ceil(2);
    let mut v = num_complex::Complex64::new(1.0, 0.0);
    for r in &mut ramp[..positive] {
        *r = Complex32::new(v.re as f32, v.im as f32);
        v *= w;
    }
    let mut v = w.conj();
    for r in ramp[positive..].iter_mut().rev() {
        *r = Complex32::new(v.re as f32, v.im as f32);
        v *= w.conj();
    }
}

/// `dst = F⁻¹[spec·ramp(frac)]/M²`: the array whose transposed spectrum is `spec_t`, shifted
/// by the sub-pixel `frac` (`tmp`: window scratch).
#[inline(always)]
fn shift_from_spectrum(
    fft: &mut Fft2,
    ramp_y: &mut [Complex32],
    ramp_x: &mut [Complex32],
    spec_t: &[Complex32],
    tmp: &mut [Complex32],
    frac: [f32; 2],
    dst: &mut [Complex32],
) {
    let m = ramp_y.len();
    fill_ramp(ramp_y, frac[0]);
    fill_ramp(ramp_x, frac[1]);
    let norm = 1.0 / (m * m) as f32;
    // Transposed layout [kx][ky].
    for (kx, (row, srow)) in tmp
        .chunks_exact_mut(m)
        .zip(spec_t.chunks_exact(m))
        .enumerate()
    {
        let rx = ramp_x[kx] * norm;
        for ((t, s), ry) in row.iter_mut().zip(srow).zip(ramp_y.iter()) {
            *t = s * rx * ry;
        }
    }
    fft.inverse_from_transposed(tmp, dst);
}

/// One update of the object rows `obj` at `step.place` with the probe held. Compiled for the
/// baseline and for AVX2 + FMA (see [`kernels`]); [`update`] picks one.
#[inline(always)]
fn update_body(
    s: &mut Scratch,
    step: &Step<'_>,
    pat: PatternRef<'_>,
    obj: &mut Rows<'_>,
    tally: &mut Tally,
) -> Outcome {
    let Step {
        m,
        method,
        probe,
        place,
        evaluate,
        probe_beta,
        object_step,
        constraint,
        simd: _,
    } = *step;
    if pat.total.is_nan() || pat.total <= 0.0 {
        tally.skipped += 1;
        return Outcome::Skipped;
    }
    let n = m * m;
    let Scratch {
        fft,
        psi,
        far,
        probe_s,
        dprobe,
        lap,
        ramp_y,
        ramp_x,
    } = s;

    // 1. The (sub-pixel shifted) probe.
    if place.shifted {
        shift_from_spectrum(fft, ramp_y, ramp_x, &probe.spec_t, psi, place.frac, probe_s);
    }
    let p: &[Complex32] = if place.shifted { probe_s } else { &probe.real };
    // The step scale: max |P|² of the probe as placed for this update.
    let pmax = kernels::max_norm_sqr(p);
    if pmax.is_nan() || pmax <= 0.0 {
        tally.skipped += 1;
        return Outcome::Skipped;
    }

    // 2. Exit wave; Laplacian for the prior; max|O|² for ePIE's probe step.
    for y in 0..m {
        let orow = obj.row(place.row0 + y, place.col0, m);
        kernels::exit_wave(&mut psi[y * m..][..m], &p[y * m..][..m], orow);
    }
    let (tikhonov, wf_step) = match method {
        Method::Wf(w) => (w.tikhonov, object_step),
        Method::Epie(_) => (0.0, 0.0),
    };
    if tikhonov > 0.0 {
        let (rows, cols) = (obj.object_rows, obj.cols);
        for y in 0..m {
            let r = place.row0 + y;
            let (ru, rd) = (r.saturating_sub(1), (r + 1).min(rows - 1));
            for x in 0..m {
                let c = place.col0 + x;
                let (cl, cr) = (c.saturating_sub(1), (c + 1).min(cols - 1));
                lap[y * m + x] = obj.at(ru, c) + obj.at(rd, c) + obj.at(r, cl) + obj.at(r, cr)
                    - obj.at(r, c) * 4.0;
            }
        }
    }
    let mut beta_o = 0.0;
    if probe_beta > 0.0 {
        let mut omax = 0.0f32;
        for y in 0..m {
            omax = omax.max(kernels::max_norm_sqr(obj.row(
                place.row0 + y,
                place.col0,
                m,
            )));
        }
        if omax > 0.0 {
            beta_o = probe_beta / omax;
        }
    }

    // 3. Far field, transposed.
    fft.forward_transposed(psi, far);

    // 4. Losses (sampled), then far ← ℓ'(Î)·Ψ/M² (ePIE: (Ψ − Ψ')/M²).
    let c = (pat.total / n as f64) as f32;
    let norm = 1.0 / n as f32;
    tally.report.patterns += 1;
    if evaluate {
        let wf_loss = match method {
            Method::Wf(w) => Some((w.loss, w.epsilon_for(c))),
            Method::Epie(_) => None,
        };
        let (loss, amplitude) = kernels::losses(far, pat.amp_t, c, wf_loss);
        tally.report.evaluated += 1;
        tally.report.loss += loss;
        tally.report.amplitude_loss += amplitude;
        tally.report.counts += pat.total;
    }
    let step_size = match method {
        Method::Epie(_) => {
            kernels::epie_modulus(far, pat.amp_t, c.sqrt(), norm);
            object_step
        }
        Method::Wf(w) => {
            let trunc = w.truncation.map(|alpha_h| {
                let (mean_res, mean_model) = kernels::truncation_means(far, pat.amp_t, c);
                (alpha_h, mean_res, mean_model)
            });
            let eps = w.epsilon_for(c);
            kernels::wf_gradient(far, pat.amp_t, c, norm, w.loss, eps, trunc);
            object_step / w.loss.curvature_scale(pat.max_count)
        }
    };

    // 5. Back to real space: psi = F⁻¹[ℓ'Ψ] (ePIE: ψ − ψ').
    fft.inverse_from_transposed(far, psi);

    // 6. Probe correction (from the object before its step), then the object step.
    let s = step_size / pmax;
    let prior = wf_step * tikhonov / pmax;
    for y in 0..m {
        let orow = obj.row(place.row0 + y, place.col0, m);
        let (pr, rr) = (&p[y * m..][..m], &psi[y * m..][..m]);
        if beta_o > 0.0 {
            kernels::probe_correction(&mut dprobe[y * m..][..m], orow, rr, beta_o);
        }
        if prior > 0.0 {
            kernels::object_step_prior(orow, pr, rr, &lap[y * m..][..m], s, prior);
        } else {
            kernels::object_step(orow, pr, rr, s);
        }
        kernels::constrain(orow, constraint);
    }
    if beta_o > 0.0 {
        Outcome::UpdatedWithProbeCorrection
    } else {
        Outcome::Updated
    }
}

/// [`update_body`] on the instruction set `step.simd` names ([`SimdLevel::run`]).
fn update(
    s: &mut Scratch,
    step: &Step<'_>,
    pat: PatternRef<'_>,
    obj: &mut Rows<'_>,
    tally: &mut Tally,
) -> Outcome {
    step.simd.run(
        #[inline(always)]
        || update_body(s, step, pat, obj, tally),
    )
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

    /// Mean total counts of the patterns given to [`Reconstructor::update`] (0 before any).
    fn mean_counts(&self) -> f64 {
        if self.seen_patterns > 0 {
            self.seen_counts / self.seen_patterns as f64
        } else {
            0.0
        }
    }

    /// The object step (ePIE's α, Wirtinger flow's μ) for an update now: the method's own, or
    /// what [`Schedule::Auto`] chooses for this pass and the counts seen so far.
    fn object_step(&self) -> f32 {
        match (&self.schedule, &self.method) {
            (Schedule::Fixed, Method::Epie(e)) => e.alpha,
            (Schedule::Fixed, Method::Wf(w)) => w.step,
            (Schedule::Auto(a), _) => {
                a.choose(
                    &self.light,
                    self.mean_counts(),
                    self.pass,
                    self.planned_passes,
                )
                .step
            }
        }
    }

    /// Makes the probe current in real and Fourier space.
    fn sync_probe(&mut self) {
        let s = &mut self.scratch[0];
        self.probe.sync(&mut s.fft, &mut s.psi);
    }

    /// Makes the real-space probe current (what [`Reconstructor::probe`] shows).
    fn sync_probe_real(&mut self) {
        let s = &mut self.scratch[0];
        self.probe.sync_real(&mut s.fft, &mut s.psi);
    }

    /// Adds a thread's tally to the running pass.
    fn absorb(&mut self, tally: &Tally) {
        self.updates += tally.report.patterns;
        self.skipped += tally.skipped;
        self.running.absorb(&tally.report);
    }

    /// One update (object, and ePIE's probe when active) at `place`, on this thread, on the
    /// instruction set `simd` names ([`SimdLevel::run`]).
    fn apply(&mut self, index: usize, place: &Placement, pat: PatternRef<'_>) {
        self.simd.run(
            #[inline(always)]
            || self.apply_body(index, place, pat),
        );
    }

    /// [`State::apply`], compiled into each instruction-set variant.
    #[inline(always)]
    fn apply_body(&mut self, index: usize, place: &Placement, pat: PatternRef<'_>) {
        let probe_beta = match &self.method {
            Method::Epie(p) if p.probe_active(self.updates, self.pass, self.mean_counts()) => {
                match &self.schedule {
                    Schedule::Auto(AutoStep {
                        probe_corrections: Some(g),
                        ..
                    }) => (*g / self.positions.max(1) as f64).min(p.beta as f64) as f32,
                    _ => p.beta,
                }
            }
            _ => 0.0,
        };
        let object_step = self.object_step();
        let State {
            m,
            method,
            rows,
            cols,
            loss_every,
            simd,
            object,
            probe,
            scratch,
            constraint,
            ..
        } = self;
        let (m, s) = (*m, &mut scratch[0]);
        if place.shifted {
            probe.sync_spectrum(&mut s.fft, &mut s.psi);
        } else {
            probe.sync_real(&mut s.fft, &mut s.psi);
        }
        let step = Step {
            m,
            method,
            probe,
            place,
            evaluate: index % *loss_every == 0,
            probe_beta,
            object_step,
            constraint: *constraint,
            simd: *simd,
        };
        let mut rows = Rows {
            data: object,
            first_row: 0,
            cols: *cols,
            object_rows: *rows,
        };
        let mut tally = Tally::default();
        tally.report.step = object_step;
        let outcome = update_body(s, &step, pat, &mut rows, &mut tally);
        if outcome == Outcome::UpdatedWithProbeCorrection {
            self.probe_updates += 1;
            let Scratch {
                fft,
                psi,
                far,
                dprobe,
                ramp_y,
                ramp_x,
                ..
            } = s;
            if place.shifted {
                // In Fourier space: the correction dP was made in the frame of the probe
                // shifted by f, so F[P] −= F[dP]·e^{+2πi k·f/M} (the shift back by −f).
                psi.copy_from_slice(dprobe);
                fft.forward_transposed(psi, far);
                fill_ramp(ramp_y, -place.frac[0]);
                fill_ramp(ramp_x, -place.frac[1]);
                for ((srow, frow), rx) in probe
                    .spec_t
                    .chunks_exact_mut(m)
                    .zip(far.chunks_exact(m))
                    .zip(ramp_x.iter())
                {
                    for ((sp, f), ry) in srow.iter_mut().zip(frow).zip(ramp_y.iter()) {
                        *sp -= f * rx * ry;
                    }
                }
                // Σ|P|² = Σ|F[P]|²/M² (Parseval).
                let energy = kernels::sum_norm_sqr(&probe.spec_t) / (m * m) as f64;
                if energy > 0.0 && energy.is_finite() {
                    let k = (1.0 / energy.sqrt()) as f32;
                    probe.spec_t.iter_mut().for_each(|v| *v *= k);
                }
                probe.real_stale = true;
            } else {
                for (pp, d) in probe.real.iter_mut().zip(dprobe.iter()) {
                    *pp -= d;
                }
                let energy = kernels::sum_norm_sqr(&probe.real);
                if energy > 0.0 && energy.is_finite() {
                    let k = (1.0 / energy.sqrt()) as f32;
                    probe.real.iter_mut().for_each(|v| *v *= k);
                }
                probe.spec_stale = true;
            }
        }
        self.absorb(&tally);
    }

    /// A sweep with the probe held, stripe by stripe (see [`Stripes`]), on every scratch's
    /// thread.
    fn sweep_striped(&mut self, store: &Store, placements: &[Placement], stripes: Stripes) {
        let (m, rows, cols) = (self.m, self.rows, self.cols);
        let n = m * m;
        let object_step = self.object_step();
        let constraint = self.constraint;
        self.sync_probe();
        // Scan indices per (phase, stripe), each list in arrival order.
        let count = rows.div_ceil(stripes.height) + 1;
        let mut lists = vec![vec![Vec::new(); count]; 2];
        for &index in &store.arrival {
            let (phase, k) = placements[index].stripe;
            lists[phase][k].push(index);
        }
        let stripe_rows = stripes.height;
        for (phase, lists) in lists.iter().enumerate() {
            // Cut the object into this phase's stripes (disjoint &mut row ranges).
            let skip = stripes.first_row(phase, 0).min(rows);
            let (_, rest) = self.object.split_at_mut(skip * cols);
            let jobs: Vec<(usize, Rows<'_>, &[usize])> = rest
                .chunks_mut(stripe_rows * cols)
                .enumerate()
                .filter(|(k, _)| !lists[*k].is_empty())
                .map(|(k, data)| {
                    let rows_view = Rows {
                        data,
                        first_row: stripes.first_row(phase, k),
                        cols,
                        object_rows: rows,
                    };
                    (k, rows_view, lists[k].as_slice())
                })
                .collect();
            let (method, probe, loss_every, simd) =
                (&self.method, &self.probe, self.loss_every, self.simd);
            let run = |s: &mut Scratch, (k, mut obj, indices): (usize, Rows<'_>, &[usize])| {
                let mut tally = Tally::default();
                tally.report.step = object_step;
                for &index in indices {
                    let step = Step {
                        m,
                        method,
                        probe,
                        place: &placements[index],
                        evaluate: index % loss_every == 0,
                        probe_beta: 0.0,
                        object_step,
                        constraint,
                        simd,
                    };
                    update(s, &step, store.pattern(index, n), &mut obj, &mut tally);
                }
                (k, tally)
            };
            let mut tallies: Vec<(usize, Tally)> = if self.scratch.len() == 1 || jobs.len() == 1 {
                let s = &mut self.scratch[0];
                jobs.into_iter().map(|job| run(s, job)).collect()
            } else {
                let (tx, rx) = crossbeam_channel::unbounded();
                for job in jobs {
                    tx.send(job).expect("the receiver is alive");
                }
                drop(tx);
                std::thread::scope(|scope| {
                    let (first, rest) = self.scratch.split_first_mut().expect("one scratch");
                    let handles: Vec<_> = rest
                        .iter_mut()
                        .map(|s| {
                            let (rx, run) = (rx.clone(), &run);
                            scope.spawn(move || rx.iter().map(|job| run(s, job)).collect())
                        })
                        .collect();
                    let mut all: Vec<(usize, Tally)> =
                        rx.iter().map(|job| run(first, job)).collect();
                    for h in handles {
                        let part: Vec<(usize, Tally)> = h.join().expect("a sweep thread panicked");
                        all.extend(part);
                    }
                    all
                })
            };
            // Sum the stripes' losses in stripe order, whichever thread ran them, so the
            // report's bits do not depend on timing either.
            tallies.sort_by_key(|(k, _)| *k);
            for (_, t) in &tallies {
                self.absorb(t);
            }
        }
    }
}

#[cfg(test)]
mod tests;
