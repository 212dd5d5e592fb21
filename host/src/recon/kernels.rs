//! The per-pixel passes of one update, as plain loops over slices.
//!
//! Every function here is `#[inline(always)]`: the update ([`update`](super::update)) is
//! compiled twice, once for the target's baseline and once for AVX2 + FMA (picked at run time
//! by [`SimdLevel::run`](crate::simd::SimdLevel::run)), and these loops are vectorised inside
//! each copy.
//! No loop here sums in an order the compiler could change, and Rust never fuses a multiply
//! and an add on its own, so both copies give the same bits (a test checks it).
//!
//! The loss *values* (with `ln` for the Poisson loss) are not in the hot passes: they are
//! evaluated by [`losses`] only for the patterns the report samples.

use num_complex::Complex32;

use super::method::ObjectConstraint;
use super::wf::{Loss, truncation_keeps};

/// `ψ = P·O` over one row of the window.
#[inline(always)]
pub(super) fn exit_wave(psi: &mut [Complex32], probe: &[Complex32], object: &[Complex32]) {
    for ((w, &p), &o) in psi.iter_mut().zip(probe).zip(object) {
        *w = p * o;
    }
}

/// ePIE's Fourier pass: `Ψ ← (Ψ − Ψ')/M²` with `Ψ' = (a/√c)·Ψ/|Ψ|`, where `a = √I` and
/// `c = N_j/M²` (the phase of `Ψ'` is 0 where `Ψ = 0`).
#[inline(always)]
pub(super) fn epie_modulus(far: &mut [Complex32], amp_t: &[f32], sqrt_c: f32, norm: f32) {
    for (f, &a) in far.iter_mut().zip(amp_t) {
        let mag = f.norm_sqr().sqrt();
        let target = a / sqrt_c;
        let lit = mag > 0.0;
        let k = if lit {
            (1.0 - target / mag) * norm
        } else {
            0.0
        };
        let re = if lit { f.re * k } else { -target * norm };
        *f = Complex32::new(re, f.im * k);
    }
}

/// Wirtinger flow's Fourier pass: `Ψ ← ℓ'(Î)·Ψ/M²` with `Î = c·|Ψ|²`; with `truncation =
/// Some((α_h, mean |Î − I|, mean Î))` pixels failing [`truncation_keeps`] get `ℓ' = 0`.
#[inline(always)]
pub(super) fn wf_gradient(
    far: &mut [Complex32],
    amp_t: &[f32],
    c: f32,
    norm: f32,
    loss: Loss,
    eps: f32,
    truncation: Option<(f32, f32, f32)>,
) {
    #[inline(always)]
    fn pass(
        far: &mut [Complex32],
        amp_t: &[f32],
        c: f32,
        norm: f32,
        truncation: Option<(f32, f32, f32)>,
        derivative: impl Fn(f32, f32) -> f32,
    ) {
        match truncation {
            Some((alpha_h, mean_res, mean_model)) if mean_model > 0.0 => {
                for (f, &a) in far.iter_mut().zip(amp_t) {
                    let model = c * f.norm_sqr();
                    let meas = a * a;
                    let keep = truncation_keeps(
                        (model - meas).abs(),
                        model,
                        alpha_h,
                        mean_res,
                        mean_model,
                    );
                    let g = if keep { derivative(model, a) } else { 0.0 };
                    *f *= g * norm;
                }
            }
            _ => {
                for (f, &a) in far.iter_mut().zip(amp_t) {
                    let g = derivative(c * f.norm_sqr(), a);
                    *f *= g * norm;
                }
            }
        }
    }
    // Each arm is one loop with its derivative inlined; `a` is √I.
    match loss {
        Loss::L1 => pass(far, amp_t, c, norm, truncation, |model, a| {
            Loss::L1.derivative(model, a * a, eps)
        }),
        Loss::Mse => pass(far, amp_t, c, norm, truncation, |model, a| {
            2.0 * (model - a * a)
        }),
        Loss::Amplitude => pass(far, amp_t, c, norm, truncation, |model, a| {
            1.0 - a / (model + eps).sqrt()
        }),
        Loss::Poisson => pass(far, amp_t, c, norm, truncation, |model, a| {
            1.0 - (a * a) / (model + eps)
        }),
    }
}

/// The means `(mean |Î − I|, mean Î)` over the pattern that the truncation rule needs.
#[inline(always)]
pub(super) fn truncation_means(far: &[Complex32], amp_t: &[f32], c: f32) -> (f32, f32) {
    let (mut res, mut model) = ([0.0f64; LANES], [0.0f64; LANES]);
    let chunks = far.chunks_exact(LANES).zip(amp_t.chunks_exact(LANES));
    for (fc, ac) in chunks {
        for (((r, md), f), &a) in res.iter_mut().zip(&mut model).zip(fc).zip(ac) {
            let mi = c * f.norm_sqr();
            *r += (mi - a * a).abs() as f64;
            *md += mi as f64;
        }
    }
    let done = far.len() / LANES * LANES;
    for (f, &a) in far[done..].iter().zip(&amp_t[done..]) {
        let mi = c * f.norm_sqr();
        res[0] += (mi - a * a).abs() as f64;
        model[0] += mi as f64;
    }
    let n = far.len() as f64;
    let (res, model): (f64, f64) = (res.into_iter().sum(), model.into_iter().sum());
    ((res / n) as f32, (model / n) as f32)
}

/// The loss of one pattern before its update: `(the method's loss, the amplitude loss)` in
/// counts, with `Î = c·|Ψ|²` (`loss = None`: ePIE, whose loss is the amplitude loss).
pub(super) fn losses(
    far: &[Complex32],
    amp_t: &[f32],
    c: f32,
    loss: Option<(Loss, f32)>,
) -> (f64, f64) {
    let (mut value, mut amplitude) = (0.0f64, 0.0f64);
    for (f, &a) in far.iter().zip(amp_t) {
        let model = c * f.norm_sqr();
        let d = (model.sqrt() - a) as f64;
        amplitude += d * d;
        if let Some((l, eps)) = loss {
            value += l.value(model, a * a, eps);
        }
    }
    match loss {
        Some(_) => (value, amplitude),
        None => (amplitude, amplitude),
    }
}

/// The object step over one row: `O ← O − s·conj(P)·r`.
#[inline(always)]
pub(super) fn object_step(object: &mut [Complex32], probe: &[Complex32], r: &[Complex32], s: f32) {
    for ((o, &p), &r) in object.iter_mut().zip(probe).zip(r) {
        *o -= p.conj() * r * s;
    }
}

/// The object constraint after a step: `|O| ≤ 1` ([`ObjectConstraint::Passive`]) or
/// `|O| = 1` ([`ObjectConstraint::PhaseOnly`]) on one row of the window.
#[inline(always)]
pub(super) fn constrain(object: &mut [Complex32], constraint: ObjectConstraint) {
    use ObjectConstraint as C;
    match constraint {
        C::Free => {}
        C::Passive => {
            for o in object.iter_mut() {
                let n = o.norm_sqr().sqrt();
                let k = if n > 1.0 { 1.0 / n } else { 1.0 };
                *o *= k;
            }
        }
        C::PhaseOnly => {
            for o in object.iter_mut() {
                let n = o.norm_sqr().sqrt();
                *o = if n > 0.0 {
                    *o / n
                } else {
                    Complex32::new(1.0, 0.0)
                };
            }
        }
    }
}

/// The object step with the Tikhonov prior: `O ← O − s·conj(P)·r + w·|P|²·ΔO`.
#[inline(always)]
pub(super) fn object_step_prior(
    object: &mut [Complex32],
    probe: &[Complex32],
    r: &[Complex32],
    lap: &[Complex32],
    s: f32,
    w: f32,
) {
    for (((o, &p), &r), &l) in object.iter_mut().zip(probe).zip(r).zip(lap) {
        *o = *o - p.conj() * r * s + l * (w * p.norm_sqr());
    }
}

/// ePIE's probe correction over one row, from the object *before* its step:
/// `dP = β'·conj(O)·r`.
#[inline(always)]
pub(super) fn probe_correction(
    dprobe: &mut [Complex32],
    object: &[Complex32],
    r: &[Complex32],
    beta: f32,
) {
    for ((d, &o), &r) in dprobe.iter_mut().zip(object).zip(r) {
        *d = o.conj() * r * beta;
    }
}

/// Independent accumulators of the reductions below: a sequential `max` or `+` over a
/// window would be one long dependency chain; eight lanes (fixed order, so the same bits on
/// every instruction set) let it vectorise.
const LANES: usize = 8;

/// `max |v|²` of a slice (0 for an empty one).
#[inline(always)]
pub(super) fn max_norm_sqr(v: &[Complex32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a = a.max(x.norm_sqr());
        }
    }
    for x in rest {
        acc[0] = acc[0].max(x.norm_sqr());
    }
    acc.into_iter().fold(0.0, f32::max)
}

/// `Σ |v|²` of a slice, in f64.
#[inline(always)]
pub(super) fn sum_norm_sqr(v: &[Complex32]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x.norm_sqr() as f64;
        }
    }
    for x in rest {
        acc[0] += x.norm_sqr() as f64;
    }
    acc.into_iter().sum()
}
