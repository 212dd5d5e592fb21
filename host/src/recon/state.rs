//! The state an update changes, apart from the pattern store: object, probe, every thread's
//! scratch, the counters and the running pass's losses ([`State`]), and one update in arrival
//! order applied to it, with ePIE's probe correction ([`State::apply`]).

use num_complex::Complex32;

use super::kernels;
use super::loss::LossReport;
use super::method::{Method, ObjectConstraint};
use super::probe::Probe;
use super::schedule::{AutoStep, Illumination, Schedule};
use super::store::{PatternRef, Placement};
use super::update::{Outcome, Rows, Scratch, Step, Tally, fill_ramp, update_body};
use crate::simd::SimdLevel;

/// The state an update changes, apart from the pattern store (split so a sweep can read the
/// store while updating the state).
pub(super) struct State {
    pub(super) m: usize,
    pub(super) method: Method,
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) loss_every: usize,
    /// The instruction set updates run on ([`SimdLevel::detect`]).
    pub(super) simd: SimdLevel,
    pub(super) object: Vec<Complex32>,
    pub(super) probe: Probe,
    /// The scratch of the calling thread, then one per extra sweep thread.
    pub(super) scratch: Vec<Scratch>,
    pub(super) updates: u64,
    pub(super) skipped: u64,
    /// Updates that also changed the probe.
    pub(super) probe_updates: u64,
    /// Total counts and number of the patterns given to
    /// [`Reconstructor::update`](super::Reconstructor::update).
    pub(super) seen_counts: f64,
    pub(super) seen_patterns: u64,
    pub(super) pass: usize,
    pub(super) running: LossReport,
    /// How the object step is chosen, and what the set-up measured for it.
    pub(super) schedule: Schedule,
    pub(super) light: Illumination,
    /// Passes the schedule plans for: the online pass plus the planned sweeps.
    pub(super) planned_passes: usize,
    pub(super) constraint: ObjectConstraint,
    /// Scan positions (what an automatic probe step is divided by).
    pub(super) positions: usize,
}

impl State {
    /// Ends the running pass: stores its report (if it saw any pattern) and starts the next.
    pub(super) fn close_pass(&mut self, history: &mut Vec<LossReport>) {
        if self.running.patterns > 0 {
            history.push(self.running);
            self.pass += 1;
        }
        self.running = LossReport {
            pass: self.pass,
            ..LossReport::default()
        };
    }

    /// Mean total counts of the patterns given to
    /// [`Reconstructor::update`](super::Reconstructor::update) (0 before any).
    pub(super) fn mean_counts(&self) -> f64 {
        if self.seen_patterns > 0 {
            self.seen_counts / self.seen_patterns as f64
        } else {
            0.0
        }
    }

    /// The object step (ePIE's α, Wirtinger flow's μ) for an update now: the method's own, or
    /// what [`Schedule::Auto`] chooses for this pass and the counts seen so far.
    pub(super) fn object_step(&self) -> f32 {
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
    pub(super) fn sync_probe(&mut self) {
        let s = &mut self.scratch[0];
        self.probe.sync(&mut s.fft, &mut s.psi);
    }

    /// Makes the real-space probe current (what
    /// [`Reconstructor::probe`](super::Reconstructor::probe) shows).
    pub(super) fn sync_probe_real(&mut self) {
        let s = &mut self.scratch[0];
        self.probe.sync_real(&mut s.fft, &mut s.psi);
    }

    /// Adds a thread's tally to the running pass.
    pub(super) fn absorb(&mut self, tally: &Tally) {
        self.updates += tally.report.patterns;
        self.skipped += tally.skipped;
        self.running.absorb(&tally.report);
    }

    /// One update (object, and ePIE's probe when active) at `place`, on this thread, on the
    /// instruction set `simd` names ([`SimdLevel::run`]).
    pub(super) fn apply(&mut self, index: usize, place: &Placement, pat: PatternRef<'_>) {
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
}
