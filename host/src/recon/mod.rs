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

pub mod compressed;
pub mod epie;
pub mod fft;
pub mod geometry;
mod kernels;
mod loss;
mod method;
mod pattern;
mod probe;
pub mod schedule;
mod state;
mod store;
mod sweep;
mod update;
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
use probe::Probe;
use state::State;
use store::{PatternRef, Placement, Store};
use sweep::Stripes;
use update::Scratch;

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
        let area = crate::budget::checked_len(&[rows, cols], "optics.step_angstrom", "the object")?;
        let object = match initial_object {
            Some(o) if o.len() == area => o,
            Some(o) => {
                return Err(Error::param(
                    "initial object",
                    format!("{} values, expected {rows}×{cols}", o.len()),
                ));
            }
            None => crate::budget::try_filled(
                area,
                Complex32::new(1.0, 0.0),
                "optics.step_angstrom",
                "the object",
            )?,
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
            let (name, what) = ("scan.shape", "the pattern store");
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
                "recon.sweeps",
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

#[cfg(test)]
mod tests;
