//! One update, the body every pass runs ([`update_body`]): the probe as placed (Fourier-shifted
//! by the sub-pixel remainder), the exit wave, the far field and the method's Fourier-space
//! step, back to real space and the object step, on one thread's [`Scratch`]. [`update`] runs
//! it on the instruction set its [`Step`] names. An update reads a [`Step`] and a pattern, and
//! writes the object's [`Rows`] (all of them, or one sweep stripe) and a [`Tally`].

use num_complex::Complex32;

use super::fft::Fft2;
use super::kernels;
use super::loss::LossReport;
use super::method::{Method, ObjectConstraint};
use super::probe::Probe;
use super::store::{PatternRef, Placement};
use crate::simd::SimdLevel;

/// The FFT plans and window-sized buffers of one thread's updates.
pub(super) struct Scratch {
    pub(super) fft: Fft2,
    pub(super) psi: Vec<Complex32>,
    pub(super) far: Vec<Complex32>,
    probe_s: Vec<Complex32>,
    pub(super) dprobe: Vec<Complex32>,
    lap: Vec<Complex32>,
    pub(super) ramp_y: Vec<Complex32>,
    pub(super) ramp_x: Vec<Complex32>,
}

impl Scratch {
    pub(super) fn new(m: usize) -> Self {
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
pub(super) struct Step<'a> {
    pub(super) m: usize,
    pub(super) method: &'a Method,
    pub(super) probe: &'a Probe,
    pub(super) place: &'a Placement,
    /// Evaluate the losses of this pattern for the report.
    pub(super) evaluate: bool,
    /// ePIE's probe step β when the probe is updated now, else 0.
    pub(super) probe_beta: f32,
    /// The object step of this update: ePIE's α or Wirtinger flow's μ.
    pub(super) object_step: f32,
    /// The constraint on the object's modulus after the step.
    pub(super) constraint: ObjectConstraint,
    /// The instruction set to run on.
    pub(super) simd: SimdLevel,
}

/// What an update reports back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
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
pub(super) struct Tally {
    pub(super) skipped: u64,
    pub(super) report: LossReport,
}

/// Rows `[first_row, first_row + data.len() / cols)` of the object (all of it, or one stripe).
pub(super) struct Rows<'a> {
    pub(super) data: &'a mut [Complex32],
    pub(super) first_row: usize,
    pub(super) cols: usize,
    /// Rows of the whole object (the Laplacian replicates its edges).
    pub(super) object_rows: usize,
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

/// `e^{−2πi·k·f/M}` for the signed FFT frequencies `k` of an `M`-point axis.
///
/// A geometric sequence: `w^k` with `w = e^{−2πi·f/M}` for `k = 0 … ⌈M/2⌉ − 1`, and
/// `conj(w)^{M−k}` for the negative frequencies `k − M`, by recurrence in f64 (one `sin_cos`
/// per axis instead of `M`; the rounding error grows by ~10⁻¹⁶ per step, far below f32).
pub(super) fn fill_ramp(ramp: &mut [Complex32], f: f32) {
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
pub(super) fn shift_from_spectrum(
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
pub(super) fn update_body(
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
pub(super) fn update(
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
