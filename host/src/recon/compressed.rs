//! Wirtinger flow from compressed patterns (paper 002, eqs. 9–11): every pattern is known
//! only by its coefficients in an orthonormal basis of the bright-field disc and of the dark
//! field, and by the two perpendicular components; the loss compares the model pattern's
//! projections with them.
//!
//! # The loss
//! For scan position `j`, the model pattern in counts `Î = N_j·|Ψ|²/M²` (as in [`wf`](super::wf))
//! is turned into the values the basis projected, `x̂ = Î` (intensity) or `x̂ = √(Î + ε)`
//! (amplitude, paper 002 eq. 8), and with the masks `m_k` (orthonormal, zero outside their
//! region), the stored coefficients `c_k` and perpendicular components `p_R` of the regions
//! `R` = bright field, dark field:
//!
//! `L = Σ_k (â_k − c_k)²  +  (w_⊥/X_j)·Σ_R (p̂_R − p_R)²  +  w_e·Σ_{unmeasured} x̂²`
//!
//! with `â_k = ⟨m_k, x̂⟩` (eq. 9), `p̂_R = ‖x̂_R‖² − Σ_{k∈R} â_k²` (eq. 11: the part of the
//! model outside the span; the loss term is "the norm of the difference between the expected
//! and measured squared perpendicular components"), and the last sum over the pixels outside
//! both regions (eq. 10, "a sum over the unmeasured pixels of the expected intensity": in
//! amplitude mode `x̂² = Î` exactly). Paper 002 gives every term an adjustable weight; here
//! the perpendicular term is divided by `X_j = Σ_k c_k² + Σ_R p_R = ‖x_j‖²`, the squared
//! length of the recorded pattern, so that it has the units of the coefficient term (both
//! are squared values of `x`), and the weights `w_⊥` ([`CompressedParams::perp_weight`]) and
//! `w_e` ([`CompressedParams::edge_weight`]) are then dimensionless.
//!
//! # The gradient
//! `∂L/∂x̂ = Σ_k β_k·m_k + λ·x̂` with `β_k = 2(â_k − c_k) − λ_R·â_k`,
//! `λ = λ_R = 4w_⊥(p̂_R − p_R)/X_j` on region `R` and `λ = 2w_e` on the unmeasured pixels;
//! `∂L/∂Î = ∂L/∂x̂ · ∂x̂/∂Î` (`1`, or `1/(2x̂)` in amplitude mode), and from there exactly
//! the chain of the pixel losses: `O ← O − μ/(κ_j·max|P|²)·conj(P)·F⁻¹[∂L/∂Î·Ψ]`.
//!
//! # The step
//! With a complete basis (every pixel a mask) the amplitude-mode coefficient loss **is**
//! the amplitude loss `Σ(√Î − √I)²` and the intensity-mode one the MSE, so their curvature
//! constants carry over: `κ = 1` for amplitude values and `κ = 4·max_k x̃_k` for intensities,
//! with `x̃ = Σ_k c_k m_k` the pattern the coefficients describe (the MSE's `4·I_max`). The
//! default step is the amplitude loss's `μ = 1` ([`Loss::default_step`](super::Loss::default_step)).
//!
//! # Counts
//! `N_j`, the counts the model is scaled to: in amplitude mode `‖√I‖² = Σ I`, so
//! `N_j = X_j` exactly; in intensity mode `N_j = Σ_k c_k·Σ_pixels m_k`, the counts of the
//! pattern's projection, exact when the constant is in the span (Zernike piston, binning,
//! a single dark-field mask) and an approximation for a bright field of recorded patterns.
//!
//! One update per pattern in arrival order, the probe held; sweeps revisit every pattern in
//! arrival order on one thread. No allocation per update.

use num_complex::Complex32;

use super::kernels;
use super::loss::LossReport;
use super::update::shift_from_spectrum;
use super::{ObjectConstraint, Reconstructor};
use crate::{Error, Result};

/// What the stored coefficients project: the counts or their square root.
pub use crate::pipeline::compress::CompressValues;

/// Which part of the detector a pixel belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The bright-field disc (the first basis).
    BrightField,
    /// The dark-field annulus (the second basis).
    DarkField,
    /// Neither: not measured (eq. 10 drives the model to zero there).
    Unmeasured,
}

/// The basis on the reconstruction window: masks and regions in the **detector layout**
/// (row-major, zero scattering angle at pixel `(M/2, M/2)`), `M × M`.
#[derive(Debug, Clone)]
pub struct CompressedBasis {
    /// The window side `M`.
    pub m: usize,
    /// `[K_bf + K_df, M, M]`: the bright-field masks, then the dark-field masks.
    pub masks: Vec<f32>,
    /// Bright-field masks `K_bf`.
    pub bright: usize,
    /// Dark-field masks `K_df`.
    pub dark: usize,
    /// The part of each pixel, `M × M`.
    pub parts: Vec<Part>,
    /// What the coefficients project.
    pub values: CompressValues,
}

impl CompressedBasis {
    /// Values per pattern: `K_bf + K_df + 2`.
    pub fn values_per_pattern(&self) -> usize {
        self.bright + self.dark + 2
    }
}

/// Weights and step of the compressed loss (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CompressedParams {
    /// Step μ in units of `1/(κ_j·max|P|²)` (default 1).
    pub step: f32,
    /// Weight `w_⊥` of the perpendicular-component term (default 0.1: on the fixture with
    /// 12 sweeps, phase correlation 0.26 / 0.39 / 0.38 at w_⊥ = 1 / 0.1 / 0 for `zernike:45`,
    /// 0.67 / 0.73 / 0.74 for `patterns:15`; paper 002 weights it lightly against the
    /// coefficient term too, Table 1).
    pub perp_weight: f32,
    /// Weight `w_e` of the unmeasured-pixel term (default 1).
    pub edge_weight: f32,
    /// ε in counts under the square root of amplitude mode (default 10⁻⁴).
    pub epsilon: f32,
}

impl Default for CompressedParams {
    fn default() -> Self {
        CompressedParams {
            step: 1.0,
            perp_weight: 0.1,
            edge_weight: 1.0,
            epsilon: 1e-4,
        }
    }
}

impl CompressedParams {
    /// Checks every value; errors name the field.
    pub fn validate(&self) -> Result<()> {
        for (name, v, strict) in [
            ("recon.wf_step", self.step, false),
            ("recon.perp_weight", self.perp_weight, false),
            ("recon.edge_weight", self.edge_weight, false),
            ("recon.epsilon", self.epsilon, true),
        ] {
            if !v.is_finite() || v < 0.0 || (strict && v == 0.0) {
                let want = if strict { "> 0" } else { "≥ 0" };
                return Err(Error::param(
                    name,
                    format!("got {v}, expected a finite value {want}"),
                ));
            }
        }
        Ok(())
    }
}

/// The Wirtinger-flow engine of compressed patterns: the pixel engine's object, probe,
/// placements and FFTs ([`Reconstructor`], built by the caller with the probe, window and
/// scan geometry), its own loss (see the [module docs](self)).
pub struct CompressedReconstructor {
    engine: Reconstructor,
    params: CompressedParams,
    k_bf: usize,
    k_df: usize,
    values: CompressValues,
    /// `[K, M²]` masks in FFT order, transposed (the far field's layout).
    masks_t: Vec<f32>,
    /// Part of each pixel, transposed FFT order.
    parts_t: Vec<Part>,
    /// `Σ_pixels m_k`.
    mask_sums: Vec<f64>,
    /// Stored values `[positions, V]`.
    coefficients: Vec<f32>,
    /// `N_j`, `X_j` and `κ_j` per position.
    counts: Vec<f64>,
    length2: Vec<f64>,
    kappa: Vec<f32>,
    seen: Vec<bool>,
    arrival: Vec<usize>,
    // Per-update scratch.
    xhat: Vec<f32>,
    proj: Vec<f32>,
    beta: Vec<f32>,
}

impl std::fmt::Debug for CompressedReconstructor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompressedReconstructor")
            .field("engine", &self.engine)
            .field("masks", &(self.k_bf, self.k_df))
            .field("values", &self.values)
            .finish()
    }
}

/// Detector pixel `(y, x)` → index in the transposed FFT order (`ifftshift`, then `[kx][ky]`).
fn fft_index(y: usize, x: usize, m: usize) -> usize {
    let h = m / 2;
    let ky = (y + m - h) % m;
    let kx = (x + m - h) % m;
    kx * m + ky
}

impl CompressedReconstructor {
    /// Wraps `engine` (its window must be the basis's `M`; its method and step schedule are
    /// not used) with the basis; allocates every buffer.
    pub fn new(
        engine: Reconstructor,
        basis: &CompressedBasis,
        params: CompressedParams,
    ) -> Result<Self> {
        params.validate()?;
        let m = engine.window();
        let n = m * m;
        let k = basis.bright + basis.dark;
        if basis.m != m || basis.masks.len() != k * n || basis.parts.len() != n {
            return Err(Error::param(
                "basis",
                format!(
                    "{} masks of {} values for a {m} × {m} window (expected {k} × {n}) and {} \
                     region labels",
                    k,
                    basis.masks.len() / k.max(1),
                    basis.parts.len()
                ),
            ));
        }
        let mut masks_t = vec![0f32; k * n];
        let mut parts_t = vec![Part::Unmeasured; n];
        for y in 0..m {
            for x in 0..m {
                let t = fft_index(y, x, m);
                parts_t[t] = basis.parts[y * m + x];
                for j in 0..k {
                    masks_t[j * n + t] = basis.masks[j * n + y * m + x];
                }
            }
        }
        let mask_sums = masks_t
            .chunks_exact(n.max(1))
            .map(|c| c.iter().map(|&v| f64::from(v)).sum())
            .collect();
        let positions = engine.geometry().positions.len();
        let v = k + 2;
        let mut engine = engine;
        engine.state.sync_probe();
        Ok(CompressedReconstructor {
            engine,
            params,
            k_bf: basis.bright,
            k_df: basis.dark,
            values: basis.values,
            masks_t,
            parts_t,
            mask_sums,
            coefficients: vec![0.0; positions * v],
            counts: vec![0.0; positions],
            length2: vec![0.0; positions],
            kappa: vec![1.0; positions],
            seen: vec![false; positions],
            arrival: Vec::with_capacity(positions),
            xhat: vec![0.0; n],
            proj: vec![0.0; n],
            beta: vec![0.0; k],
        })
    }

    /// Values per pattern `K_bf + K_df + 2`.
    pub fn values_per_pattern(&self) -> usize {
        self.k_bf + self.k_df + 2
    }

    /// One update for scan index `index` with its stored values `[c_bf…, c_df…, p_bf, p_df]`,
    /// in arrival order; keeps them for [`CompressedReconstructor::sweep`]. A pattern with no
    /// counts (or non-finite values) is skipped. Never allocates.
    pub fn update(&mut self, index: usize, values: &[f32]) -> Result<()> {
        let v = self.values_per_pattern();
        if index >= self.seen.len() {
            return Err(Error::param(
                "scan index",
                format!("{index}, expected < {}", self.seen.len()),
            ));
        }
        if values.len() != v {
            return Err(Error::param(
                "coefficients",
                format!("{} values for a basis of {v} per pattern", values.len()),
            ));
        }
        self.coefficients[index * v..(index + 1) * v].copy_from_slice(values);
        let k = v - 2;
        let n = self.xhat.len();
        let length2: f64 = values[..k]
            .iter()
            .map(|&c| f64::from(c).powi(2))
            .sum::<f64>()
            + f64::from(values[k])
            + f64::from(values[k + 1]);
        let counts = match self.values {
            CompressValues::Amplitude => length2,
            CompressValues::Intensity => values[..k]
                .iter()
                .zip(&self.mask_sums)
                .map(|(&c, &s)| f64::from(c) * s)
                .sum(),
        };
        let kappa = match self.values {
            CompressValues::Amplitude => 1.0,
            CompressValues::Intensity => {
                // The MSE's 4·I_max with I the pattern the coefficients describe.
                self.proj.iter_mut().for_each(|p| *p = 0.0);
                for (j, &c) in values[..k].iter().enumerate() {
                    let mask = &self.masks_t[j * n..(j + 1) * n];
                    for (p, &m) in self.proj.iter_mut().zip(mask) {
                        *p += c * m;
                    }
                }
                4.0 * self.proj.iter().copied().fold(1.0f32, f32::max)
            }
        };
        self.length2[index] = length2;
        self.counts[index] = counts;
        self.kappa[index] = kappa;
        if !self.seen[index] {
            self.seen[index] = true;
            self.arrival.push(index);
        }
        if counts.is_finite() {
            self.engine.state.seen_counts += counts;
        }
        self.engine.state.seen_patterns += 1;
        self.apply(index);
        Ok(())
    }

    /// One further pass over every kept pattern in arrival order; returns its loss report.
    pub fn sweep(&mut self) -> LossReport {
        let e = &mut self.engine;
        e.state.close_pass(&mut e.history);
        for i in 0..self.arrival.len() {
            let index = self.arrival[i];
            self.apply(index);
        }
        let e = &mut self.engine;
        let report = e.state.running;
        e.state.close_pass(&mut e.history);
        report
    }

    /// Ends the running pass (call after the last update or sweep, so that
    /// [`Reconstructor::history`] holds it).
    pub fn close(&mut self) {
        let e = &mut self.engine;
        e.state.close_pass(&mut e.history);
    }

    /// The pixel engine: object, probe, geometry, loss history.
    pub fn engine(&self) -> &Reconstructor {
        &self.engine
    }

    /// The pixel engine, to hand on (the object and history are the reconstruction's).
    pub fn into_engine(self) -> Reconstructor {
        self.engine
    }

    /// The loss's weights and step.
    pub fn params(&self) -> &CompressedParams {
        &self.params
    }

    /// One update at scan index `index` with its stored values.
    fn apply(&mut self, index: usize) {
        let simd = self.engine.state.simd;
        simd.run(
            #[inline(always)]
            || self.apply_body(index),
        );
    }

    // The mask index runs over masks, coefficients and β at once.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn apply_body(&mut self, index: usize) {
        let v = self.k_bf + self.k_df + 2;
        let k = v - 2;
        let counts = self.counts[index];
        let length2 = self.length2[index];
        let state = &mut self.engine.state;
        state.running.patterns += 1;
        state.updates += 1;
        if !(counts.is_finite() && counts > 0.0 && length2.is_finite() && length2 > 0.0) {
            state.skipped += 1;
            return;
        }
        let m = state.m;
        let n = m * m;
        let place = &self.engine.placements[index];
        let stored = &self.coefficients[index * v..(index + 1) * v];
        let scratch = &mut state.scratch[0];
        let probe = &state.probe;

        // 1. The (sub-pixel shifted) probe; `dprobe` is free in Wirtinger flow.
        if place.shifted {
            shift_from_spectrum(
                &mut scratch.fft,
                &mut scratch.ramp_y,
                &mut scratch.ramp_x,
                &probe.spec_t,
                &mut scratch.psi,
                place.frac,
                &mut scratch.dprobe,
            );
        }
        let p: &[Complex32] = if place.shifted {
            &scratch.dprobe
        } else {
            &probe.real
        };
        let pmax = kernels::max_norm_sqr(p);
        if pmax.is_nan() || pmax <= 0.0 {
            state.skipped += 1;
            return;
        }
        let cols = state.cols;
        let object = &mut state.object;
        let window_row = |y: usize| (place.row0 + y) * cols + place.col0;

        // 2. Exit wave, 3. far field (transposed FFT order).
        for y in 0..m {
            let o = window_row(y);
            kernels::exit_wave(
                &mut scratch.psi[y * m..][..m],
                &p[y * m..][..m],
                &object[o..o + m],
            );
        }
        scratch
            .fft
            .forward_transposed(&mut scratch.psi, &mut scratch.far);

        // 4. x̂, its projections â and the region norms.
        let c = (counts / n as f64) as f32;
        let eps = self.params.epsilon;
        let amplitude = self.values == CompressValues::Amplitude;
        for (x, f) in self.xhat.iter_mut().zip(scratch.far.iter()) {
            let model = c * f.norm_sqr();
            *x = if amplitude {
                (model + eps).sqrt()
            } else {
                model
            };
        }
        let mut norm2 = [0f64; 3];
        for (&x, part) in self.xhat.iter().zip(&self.parts_t) {
            norm2[*part as usize] += f64::from(x) * f64::from(x);
        }
        let mut proj2 = [0f64; 2];
        let mut coef_loss = 0f64;
        for j in 0..k {
            let mask = &self.masks_t[j * n..(j + 1) * n];
            let a = dot(mask, &self.xhat);
            let r = usize::from(j >= self.k_bf);
            proj2[r] += f64::from(a) * f64::from(a);
            let d = f64::from(a) - f64::from(stored[j]);
            coef_loss += d * d;
            self.beta[j] = a; // â_k for now
        }
        let (wp, we) = (
            f64::from(self.params.perp_weight),
            f64::from(self.params.edge_weight),
        );
        let mut lambda = [0f32; 3];
        let mut perp_loss = 0f64;
        for r in 0..2 {
            let d = norm2[r] - proj2[r] - f64::from(stored[k + r]);
            perp_loss += wp * d * d / length2;
            lambda[r] = (4.0 * wp * d / length2) as f32;
        }
        lambda[2] = (2.0 * we) as f32;
        let edge_loss = we * norm2[2];
        if index % state.loss_every == 0 {
            let report = &mut state.running;
            report.evaluated += 1;
            report.loss += coef_loss + perp_loss + edge_loss;
            report.amplitude_loss += coef_loss;
            report.counts += counts;
        }
        for j in 0..k {
            let a = self.beta[j];
            let r = usize::from(j >= self.k_bf);
            self.beta[j] = 2.0 * (a - stored[j]) - lambda[r] * a;
        }

        // ∂L/∂x̂ into `proj`, then far ← ∂L/∂Î·Ψ/M².
        for ((g, &x), part) in self.proj.iter_mut().zip(&self.xhat).zip(&self.parts_t) {
            *g = lambda[*part as usize] * x;
        }
        for j in 0..k {
            let b = self.beta[j];
            if b != 0.0 {
                let mask = &self.masks_t[j * n..(j + 1) * n];
                for (g, &mk) in self.proj.iter_mut().zip(mask) {
                    *g += b * mk;
                }
            }
        }
        let norm = 1.0 / n as f32;
        for ((f, &g), &x) in scratch.far.iter_mut().zip(&self.proj).zip(&self.xhat) {
            let d = if amplitude { g / (2.0 * x) } else { g };
            *f *= d * norm;
        }

        // 5. Back to real space, 6. the object step.
        scratch
            .fft
            .inverse_from_transposed(&mut scratch.far, &mut scratch.psi);
        let s = self.params.step / self.kappa[index] / pmax;
        let constraint: ObjectConstraint = state.constraint;
        for y in 0..m {
            let o = window_row(y);
            let row = &mut object[o..o + m];
            kernels::object_step(row, &p[y * m..][..m], &scratch.psi[y * m..][..m], s);
            kernels::constrain(row, constraint);
        }
        state.running.step = self.params.step;
    }
}

/// `Σ a·b` in `f32`, four accumulators (the masks are dense over the window).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 4];
    let (ca, ra) = a.split_at(a.len() / 4 * 4);
    let (cb, rb) = b.split_at(ca.len());
    for (x, y) in ca.chunks_exact(4).zip(cb.chunks_exact(4)) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recon::{Method, ReconSetup, ScanGeometry, WfParams};
    use num_complex::Complex64;
    use rand::{Rng, SeedableRng};

    const TAU: f64 = 2.0 * std::f64::consts::PI;

    /// Naive 2-D forward DFT in f64, unnormalised, row-major `[ky][kx]`.
    fn dft2(x: &[Complex64], m: usize) -> Vec<Complex64> {
        let mut out = vec![Complex64::new(0.0, 0.0); m * m];
        for ky in 0..m {
            for kx in 0..m {
                let mut acc = Complex64::new(0.0, 0.0);
                for y in 0..m {
                    for xx in 0..m {
                        let ph = -TAU * ((ky * y + kx * xx) % m) as f64 / m as f64;
                        acc += x[y * m + xx] * Complex64::from_polar(1.0, ph);
                    }
                }
                out[ky * m + kx] = acc;
            }
        }
        out
    }

    /// Paper 002's loss written out plainly in f64 on the detector layout (the module docs'
    /// formula, not the engine's code).
    #[allow(clippy::too_many_arguments)]
    fn loss_f64(
        basis: &CompressedBasis,
        stored: &[f64],
        params: &CompressedParams,
        probe: &[Complex64],
        obj: &[Complex64],
        n_counts: f64,
        m: usize,
    ) -> f64 {
        let psi: Vec<Complex64> = probe.iter().zip(obj).map(|(p, o)| p * o).collect();
        let far = dft2(&psi, m);
        let h = m / 2;
        // Detector pixel (y, x) holds frequency ((y − h) mod m, (x − h) mod m).
        let xhat: Vec<f64> = (0..m * m)
            .map(|i| {
                let (y, x) = (i / m, i % m);
                let f = far[((y + m - h) % m) * m + (x + m - h) % m];
                let model = n_counts * f.norm_sqr() / (m * m) as f64;
                match basis.values {
                    CompressValues::Amplitude => (model + f64::from(params.epsilon)).sqrt(),
                    CompressValues::Intensity => model,
                }
            })
            .collect();
        let k = basis.bright + basis.dark;
        let a: Vec<f64> = (0..k)
            .map(|j| {
                (0..m * m)
                    .map(|i| f64::from(basis.masks[j * m * m + i]) * xhat[i])
                    .sum()
            })
            .collect();
        let x2: f64 = stored[..k].iter().map(|c| c * c).sum::<f64>() + stored[k] + stored[k + 1];
        let mut loss: f64 = (0..k).map(|j| (a[j] - stored[j]).powi(2)).sum();
        for (r, part, range) in [
            (0, Part::BrightField, 0..basis.bright),
            (1, Part::DarkField, basis.bright..k),
        ] {
            let norm2: f64 = (0..m * m)
                .filter(|&i| basis.parts[i] == part)
                .map(|i| xhat[i] * xhat[i])
                .sum();
            let proj2: f64 = range.map(|j| a[j] * a[j]).sum();
            loss += f64::from(params.perp_weight) * (norm2 - proj2 - stored[k + r]).powi(2) / x2;
        }
        let edge: f64 = (0..m * m)
            .filter(|&i| basis.parts[i] == Part::Unmeasured)
            .map(|i| xhat[i] * xhat[i])
            .sum();
        loss + f64::from(params.edge_weight) * edge
    }

    /// Orthonormal masks on the pixels of `part` (Gram–Schmidt in f64): the constant (a
    /// piston, so that the counts are positive), then random ones.
    fn masks_on(parts: &[Part], part: Part, k: usize, rng: &mut impl Rng) -> Vec<Vec<f64>> {
        let mut out: Vec<Vec<f64>> = Vec::new();
        while out.len() < k {
            let first = out.is_empty();
            let mut v: Vec<f64> = parts
                .iter()
                .map(|p| match (*p == part, first) {
                    (false, _) => 0.0,
                    (true, true) => 1.0,
                    (true, false) => rng.gen_range(-1.0..1.0),
                })
                .collect();
            for u in &out {
                let d: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(u).for_each(|(a, b)| *a -= d * b);
            }
            let n = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            v.iter_mut().for_each(|a| *a /= n);
            out.push(v);
        }
        out
    }

    /// The engine's update is `−μ/(κ·N·max|P|²)·∂L/∂O*`: ∂L/∂O* recovered from one update
    /// matches central differences of the plain loss, for both value kinds, with every term
    /// of the loss switched on.
    #[test]
    fn compressed_gradient_matches_finite_differences() {
        let m = 6;
        let n = m * m;
        let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
        let probe: Vec<Complex32> = (0..n)
            .map(|_| Complex32::new(rng.gen_range(-1.0..1.0), rng.gen_range(-1.0..1.0)))
            .collect();
        let obj: Vec<Complex32> = (0..n)
            .map(|_| Complex32::from_polar(rng.gen_range(0.7..1.1), rng.gen_range(-0.5..0.5)))
            .collect();
        let h = (m / 2) as f64;
        let parts: Vec<Part> = (0..n)
            .map(|i| {
                let d = ((i / m) as f64 - h).hypot((i % m) as f64 - h);
                if d <= 1.5 {
                    Part::BrightField
                } else if d <= 3.2 {
                    Part::DarkField
                } else {
                    Part::Unmeasured
                }
            })
            .collect();
        assert!(parts.contains(&Part::Unmeasured));
        let (kb, kd) = (3, 2);
        let mut masks = masks_on(&parts, Part::BrightField, kb, &mut rng);
        masks.extend(masks_on(&parts, Part::DarkField, kd, &mut rng));
        for values in [CompressValues::Amplitude, CompressValues::Intensity] {
            let basis = CompressedBasis {
                m,
                masks: masks.iter().flatten().map(|&v| v as f32).collect(),
                bright: kb,
                dark: kd,
                parts: parts.clone(),
                values,
            };
            let stored: Vec<f32> = (0..kb + kd + 2)
                .map(|j| match j {
                    0 | 3 => rng.gen_range(30.0..40.0),
                    j if j < kb + kd => rng.gen_range(-5.0..5.0),
                    _ => rng.gen_range(1.0..30.0),
                })
                .collect();
            let params = CompressedParams {
                step: 0.5,
                perp_weight: 0.7,
                edge_weight: 0.3,
                epsilon: 1e-4,
            };
            let geometry = ScanGeometry {
                positions: vec![[h, h]],
                object_shape: [m, m],
                pixel_angstrom: 1.0,
            };
            let method = Method::Wf(WfParams::new(crate::recon::Loss::Amplitude));
            let mut setup = ReconSetup::new(method, probe.clone(), m, geometry);
            setup.initial_object = Some(obj.clone());
            let engine = Reconstructor::new(setup).unwrap();
            let mut r = CompressedReconstructor::new(engine, &basis, params).unwrap();
            r.update(0, &stored).unwrap();
            let c64 = |v: &Complex32| Complex64::new(f64::from(v.re), f64::from(v.im));
            let p64: Vec<Complex64> = r.engine().probe().iter().map(c64).collect();
            let pmax = p64.iter().map(|v| v.norm_sqr()).fold(0.0, f64::max);
            let counts = r.counts[0];
            let scale = -f64::from(r.kappa[0]) * counts * pmax / f64::from(params.step);
            let got: Vec<Complex64> = r
                .engine()
                .object()
                .iter()
                .zip(&obj)
                .map(|(new, old)| (c64(new) - c64(old)) * scale)
                .collect();
            let o64: Vec<Complex64> = obj.iter().map(c64).collect();
            let s64: Vec<f64> = stored.iter().map(|&v| f64::from(v)).collect();
            let loss = |o: &[Complex64]| loss_f64(&basis, &s64, &params, &p64, o, counts, m);
            let step = 1e-6;
            let (mut err, mut norm) = (0.0, 0.0);
            for i in 0..n {
                let mut d = [0.0; 2];
                for (part, dz) in [Complex64::new(step, 0.0), Complex64::new(0.0, step)]
                    .into_iter()
                    .enumerate()
                {
                    let (mut plus, mut minus) = (o64.clone(), o64.clone());
                    plus[i] += dz;
                    minus[i] -= dz;
                    d[part] = (loss(&plus) - loss(&minus)) / (2.0 * step);
                }
                let fd = Complex64::new(0.5 * d[0], 0.5 * d[1]);
                err += (fd - got[i]).norm_sqr();
                norm += fd.norm_sqr();
            }
            let rel = (err / norm).sqrt();
            assert!(rel < 3e-3, "{values:?}: relative gradient error {rel}");
        }
    }
}
