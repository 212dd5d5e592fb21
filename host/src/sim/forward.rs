//! Raster scan and the single-slice forward model.
//!
//! # The model
//! For a probe position `R` the exit wave is `ψ(r) = P(r − R) · O(r)` and the expected pattern is
//! `I(k) = N |F[ψ](k)|² / Ms²` (`N` electrons per pattern, `F` the unnormalised DFT on the
//! `Ms × Ms` simulation window), so that `Σ_k I = N Σ_r |ψ|²` (Parseval) and a pattern whose
//! exit wave has unit energy (`Σ|P|² = 1`, `|O| = 1`) sums to `N`.
//!
//! # Avoiding the inverse crime
//! The simulation runs on a window of `Ms = s·M` pixels of `dx/s` (`s` = oversampling), i.e.
//! the same angular pixel as the detector but an `s` times larger angular range. The object is
//! sampled on that finer grid, the probe is shifted to the exact (sub-pixel) scan position by a
//! Fourier phase ramp, and only the central `M × M` pixels of the pattern are kept — electrons
//! scattered beyond the detector's edge are lost, as on a real detector. The reconstruction then
//! works at the coarser pixel `dx = λ / (M θ_px)` and never sees the simulation grid.
//!
//! Frames are returned in the detector layout: zero scattering angle at pixel `(M/2, M/2)`
//! (the `fftshift` of the FFT-order pattern); detector rows are the real-space `y` axis (the
//! scan's slow axis when the scan rotation is 0), columns `x`. No flips.
//!
//! FFTs use rustfft's scalar planner: SIMD and scalar code round differently, and the same seed
//! must give the same bytes on every x86-64 machine.

use num_complex::{Complex32, Complex64};
use rustfft::{Fft, FftPlannerScalar};
use std::sync::Arc;

/// Probe positions `(y, x)` in Å of a raster scan, in scan order (row by row; rows are the slow
/// axis). Position `(i, j)` (row `i`, column `j`) before rotation is `(i·step, j·step)`; the
/// scan rotation θ turns the scan grid counter-clockwise in the `(x, y)` plane:
/// `x = j·step·cos θ − i·step·sin θ`, `y = j·step·sin θ + i·step·cos θ`. Position 0 is `(0, 0)`.
pub fn raster_positions(
    rows: usize,
    cols: usize,
    step_angstrom: f64,
    rotation_deg: f64,
) -> Vec<[f64; 2]> {
    let (s, c) = rotation_deg.to_radians().sin_cos();
    let mut out = Vec::with_capacity(rows * cols);
    for i in 0..rows {
        for j in 0..cols {
            let (y0, x0) = (i as f64 * step_angstrom, j as f64 * step_angstrom);
            out.push([x0 * s + y0 * c, x0 * c - y0 * s]);
        }
    }
    out
}

/// A 2-D FFT of a fixed square size with its plans and scratch made once.
pub(crate) struct Fft2 {
    n: usize,
    forward: Arc<dyn Fft<f64>>,
    inverse: Arc<dyn Fft<f64>>,
    column: Vec<Complex64>,
    scratch: Vec<Complex64>,
}

impl Fft2 {
    pub(crate) fn new(n: usize) -> Self {
        let mut planner = FftPlannerScalar::<f64>::new();
        let forward = planner.plan_fft_forward(n);
        let inverse = planner.plan_fft_inverse(n);
        let len = forward
            .get_inplace_scratch_len()
            .max(inverse.get_inplace_scratch_len());
        Fft2 {
            n,
            forward,
            inverse,
            column: vec![Complex64::new(0.0, 0.0); n],
            scratch: vec![Complex64::new(0.0, 0.0); len],
        }
    }

    /// Unnormalised forward (`inverse = false`, `exp(−2πi jk/n)`) or inverse 2-D transform.
    pub(crate) fn process(&mut self, data: &mut [Complex64], inverse: bool) {
        let n = self.n;
        debug_assert_eq!(data.len(), n * n);
        let fft = if inverse {
            &self.inverse
        } else {
            &self.forward
        };
        fft.process_with_scratch(data, &mut self.scratch);
        for c in 0..n {
            for (r, v) in self.column.iter_mut().enumerate() {
                *v = data[r * n + c];
            }
            fft.process_with_scratch(&mut self.column, &mut self.scratch);
            for (r, v) in self.column.iter().enumerate() {
                data[r * n + c] = *v;
            }
        }
    }
}

/// Signed frequency index of FFT bin `i` of `n`.
fn signed(i: usize, n: usize) -> f64 {
    if i < n.div_ceil(2) {
        i as f64
    } else {
        i as f64 - n as f64
    }
}

/// The forward model on the fine simulation grid: probe spectrum, fine object, window geometry.
pub struct ForwardModel {
    m: usize,
    ms: usize,
    /// Probe spectrum on the `Ms × Ms` window (FFT order), probe centred at `(Ms/2, Ms/2)`.
    probe_spectrum: Vec<Complex64>,
    /// Fine object, row-major `rows × cols`, pixel `dx/s`.
    object: Vec<Complex32>,
    object_cols: usize,
    object_rows: usize,
    /// Fine-pixel coordinates of the object pixel at `(y, x) = (0, 0)`.
    origin: [f64; 2],
    fine_dx: f64,
    fft: Fft2,
    wave: Vec<Complex64>,
}

impl ForwardModel {
    /// Sets up the model: `probe` sampled on `Ms × Ms` (Σ|P|² = 1, centred at `(Ms/2, Ms/2)`),
    /// `object` on a `rows × cols` fine grid of pixel `fine_dx` whose pixel `origin` is at
    /// `(0, 0)` Å, detector of `m × m` pixels (`m ≤ Ms`).
    pub fn new(
        m: usize,
        probe: &[Complex32],
        object: Vec<Complex32>,
        object_shape: [usize; 2],
        origin: [f64; 2],
        fine_dx: f64,
    ) -> Self {
        let ms = (probe.len() as f64).sqrt().round() as usize;
        assert_eq!(ms * ms, probe.len(), "probe must be square");
        assert!(m <= ms && object.len() == object_shape[0] * object_shape[1]);
        let mut fft = Fft2::new(ms);
        let mut probe_spectrum: Vec<Complex64> = probe
            .iter()
            .map(|v| Complex64::new(v.re as f64, v.im as f64))
            .collect();
        fft.process(&mut probe_spectrum, false);
        ForwardModel {
            m,
            ms,
            probe_spectrum,
            object,
            object_rows: object_shape[0],
            object_cols: object_shape[1],
            origin,
            fine_dx,
            fft,
            wave: vec![Complex64::new(0.0, 0.0); ms * ms],
        }
    }

    /// The simulation window's side `Ms` in pixels.
    pub fn window(&self) -> usize {
        self.ms
    }

    /// Computes the far-field exit wave `F[P(r − R) O(r)]` (FFT order, unnormalised) for the
    /// probe at `pos = (y, x)` Å into the internal buffer and returns it.
    ///
    /// Panics if the window leaves the object (the caller sizes the object for its scan).
    pub fn far_field(&mut self, pos: [f64; 2]) -> &[Complex64] {
        let ms = self.ms;
        let half = (ms / 2) as isize;
        let py = pos[0] / self.fine_dx + self.origin[0];
        let px = pos[1] / self.fine_dx + self.origin[1];
        let (ny, nx) = (py.floor(), px.floor());
        let (fy, fx) = (py - ny, px - nx);
        let (top, left) = (ny as isize - half, nx as isize - half);
        assert!(
            top >= 0
                && left >= 0
                && top as usize + ms <= self.object_rows
                && left as usize + ms <= self.object_cols,
            "scan position {pos:?} leaves the simulated object"
        );
        // Sub-pixel shift of the probe by (fy, fx) fine pixels: multiply its spectrum by
        // exp(−2πi (ky fy + kx fx) / Ms).
        let tau = 2.0 * std::f64::consts::PI / ms as f64;
        let rowphase: Vec<Complex64> = (0..ms)
            .map(|i| Complex64::cis(-tau * signed(i, ms) * fy))
            .collect();
        let colphase: Vec<Complex64> = (0..ms)
            .map(|i| Complex64::cis(-tau * signed(i, ms) * fx))
            .collect();
        for (r, (line, src)) in self
            .wave
            .chunks_exact_mut(ms)
            .zip(self.probe_spectrum.chunks_exact(ms))
            .enumerate()
        {
            for ((w, s), cp) in line.iter_mut().zip(src).zip(&colphase) {
                *w = s * rowphase[r] * cp;
            }
        }
        self.fft.process(&mut self.wave, true);
        let norm = 1.0 / (ms * ms) as f64;
        let (top, left) = (top as usize, left as usize);
        for (r, line) in self.wave.chunks_exact_mut(ms).enumerate() {
            let obj = &self.object[(top + r) * self.object_cols + left..][..ms];
            for (w, o) in line.iter_mut().zip(obj) {
                *w *= Complex64::new(o.re as f64, o.im as f64) * norm;
            }
        }
        self.fft.process(&mut self.wave, false);
        &self.wave
    }

    /// The expected pattern (electrons per pixel, before noise) on the `M × M` detector in the
    /// detector layout for `electrons` electrons per pattern at position `pos = (y, x)` Å.
    pub fn expected_pattern(&mut self, pos: [f64; 2], electrons: f64, out: &mut [f64]) {
        let (m, ms) = (self.m, self.ms);
        assert_eq!(out.len(), m * m);
        let scale = electrons / (ms * ms) as f64;
        let far = self.far_field(pos);
        for (u, line) in out.chunks_exact_mut(m).enumerate() {
            // Detector row u sees frequency index u − M/2.
            let ku = (u as isize - (m / 2) as isize).rem_euclid(ms as isize) as usize;
            for (v, value) in line.iter_mut().enumerate() {
                let kv = (v as isize - (m / 2) as isize).rem_euclid(ms as isize) as usize;
                *value = far[ku * ms + kv].norm_sqr() * scale;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raster_is_row_major_and_rotates_counter_clockwise() {
        let p = raster_positions(2, 3, 2.0, 0.0);
        assert_eq!(p[0], [0.0, 0.0]);
        assert_eq!(p[1], [0.0, 2.0]); // next column: x
        assert_eq!(p[3], [2.0, 0.0]); // next row: y
        let q = raster_positions(2, 3, 2.0, 90.0);
        // Fast axis now along +y, slow axis along −x.
        assert!((q[1][0] - 2.0).abs() < 1e-12 && q[1][1].abs() < 1e-12);
        assert!(q[3][0].abs() < 1e-12 && (q[3][1] + 2.0).abs() < 1e-12);
    }

    #[test]
    fn fft2_round_trips() {
        let n = 12;
        let mut f = Fft2::new(n);
        let orig: Vec<Complex64> = (0..n * n)
            .map(|i| Complex64::new((i as f64).sin(), (i as f64 * 0.3).cos()))
            .collect();
        let mut d = orig.clone();
        f.process(&mut d, false);
        f.process(&mut d, true);
        for (a, b) in d.iter().zip(&orig) {
            assert!((a / (n * n) as f64 - b).norm() < 1e-12);
        }
    }

    /// A sub-pixel shift by a whole pixel equals moving the object window by one pixel.
    #[test]
    fn fourier_shift_agrees_with_integer_shift() {
        let ms = 16;
        let probe = crate::optics::ProbeParams::new(80.0, 24.0, 50.0)
            .sample(ms, 0.3)
            .unwrap();
        // Periodic with the window, so the circularly shifted probe sees the same object.
        let obj: Vec<Complex32> = (0..40 * 40)
            .map(|i| {
                let (r, c) = ((i / 40) % ms, (i % 40) % ms);
                Complex32::from_polar(1.0, ((r * 31 + c * 7919) % 97) as f32 * 0.01)
            })
            .collect();
        let mut model = ForwardModel::new(ms, &probe, obj, [40, 40], [12.0, 12.0], 0.3);
        let a = model.far_field([0.3 * 0.999_999_999, 0.0]).to_vec();
        let b = model.far_field([0.3, 0.0]).to_vec();
        // The exit waves are circular shifts of each other: equal far-field intensities.
        for (x, y) in a.iter().zip(&b) {
            assert!((x.norm() - y.norm()).abs() < 1e-6);
        }
    }
}
