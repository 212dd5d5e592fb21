//! The 2-D FFT for set-up and analysis work (probe synthesis, the simulator, metrics), in f64.
//!
//! Conventions (numpy's): forward `X[ky, kx] = Σ x[y, x]·exp(−2πi (ky·y/rows + kx·x/cols))`,
//! inverse with the `+` sign; **neither scales** (as RustFFT): a round trip multiplies by
//! `rows·cols`. Zero frequency at `[0, 0]`. Plans come from RustFFT's scalar planner, so
//! results are the same on every CPU (the simulator's fixture must regenerate byte for byte);
//! the reconstruction's hot-path FFT is [`crate::recon::fft`].

use std::sync::Arc;

use num_complex::Complex64;
use rustfft::{Fft, FftPlannerScalar};

/// Direction of a transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `exp(−2πi …)`.
    Forward,
    /// `exp(+2πi …)`, unscaled.
    Inverse,
}

/// The row and the column plan of one direction.
type Plans = (Arc<dyn Fft<f64>>, Arc<dyn Fft<f64>>);

/// Plans and scratch for 2-D transforms of one `rows × cols` shape, made once.
pub struct Fft2d {
    rows: usize,
    cols: usize,
    plans: [Plans; 2],
    column: Vec<Complex64>,
    scratch: Vec<Complex64>,
}

impl std::fmt::Debug for Fft2d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fft2d({}×{})", self.rows, self.cols)
    }
}

impl Fft2d {
    /// Plans for `rows × cols` arrays (row-major).
    pub fn new(rows: usize, cols: usize) -> Self {
        let mut planner = FftPlannerScalar::<f64>::new();
        let forward = (
            planner.plan_fft_forward(cols),
            planner.plan_fft_forward(rows),
        );
        let inverse = (
            planner.plan_fft_inverse(cols),
            planner.plan_fft_inverse(rows),
        );
        let scratch = [&forward.0, &forward.1, &inverse.0, &inverse.1]
            .iter()
            .map(|p| p.get_inplace_scratch_len())
            .max()
            .unwrap_or(0);
        Fft2d {
            rows,
            cols,
            plans: [forward, inverse],
            column: vec![Complex64::new(0.0, 0.0); rows],
            scratch: vec![Complex64::new(0.0, 0.0); scratch],
        }
    }

    /// Transforms `data` (row-major, `rows × cols`) in place, unscaled.
    ///
    /// # Panics
    /// If `data` is not `rows × cols` long (a programming error, not user input).
    pub fn process(&mut self, data: &mut [Complex64], direction: Direction) {
        let (rows, cols) = (self.rows, self.cols);
        assert_eq!(data.len(), rows * cols, "Fft2d::process: wrong length");
        let (row_fft, col_fft) = &self.plans[direction as usize];
        row_fft.process_with_scratch(data, &mut self.scratch);
        for c in 0..cols {
            for (r, v) in self.column.iter_mut().enumerate() {
                *v = data[r * cols + c];
            }
            col_fft.process_with_scratch(&mut self.column, &mut self.scratch);
            for (r, v) in self.column.iter().enumerate() {
                data[r * cols + c] = *v;
            }
        }
    }
}

/// Signed frequency index of FFT bin `i` of an `n`-point axis: 0, 1, …, then negative.
pub fn signed_frequency(i: usize, n: usize) -> f64 {
    if i < n.div_ceil(2) {
        i as f64
    } else {
        i as f64 - n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain O(N⁴) DFT.
    fn naive(data: &[Complex64], rows: usize, cols: usize, sign: f64) -> Vec<Complex64> {
        let tau = 2.0 * std::f64::consts::PI;
        let mut out = vec![Complex64::new(0.0, 0.0); rows * cols];
        for ky in 0..rows {
            for kx in 0..cols {
                let mut s = Complex64::new(0.0, 0.0);
                for y in 0..rows {
                    for x in 0..cols {
                        let ph = sign
                            * tau
                            * ((ky * y) as f64 / rows as f64 + (kx * x) as f64 / cols as f64);
                        s += data[y * cols + x] * Complex64::cis(ph);
                    }
                }
                out[ky * cols + kx] = s;
            }
        }
        out
    }

    #[test]
    fn matches_the_naive_dft_both_ways_on_rectangles() {
        for (rows, cols) in [(4, 6), (7, 5), (8, 8)] {
            let data: Vec<Complex64> = (0..rows * cols)
                .map(|i| Complex64::new((i as f64 * 0.37).sin(), (i as f64 * 0.11).cos()))
                .collect();
            let mut fft = Fft2d::new(rows, cols);
            for (dir, sign) in [(Direction::Forward, -1.0), (Direction::Inverse, 1.0)] {
                let mut got = data.clone();
                fft.process(&mut got, dir);
                let want = naive(&data, rows, cols, sign);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).norm() < 1e-9, "{rows}×{cols} {dir:?}: {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn signed_frequencies() {
        let f: Vec<f64> = (0..5).map(|i| signed_frequency(i, 5)).collect();
        assert_eq!(f, [0.0, 1.0, 2.0, -2.0, -1.0]);
        let f: Vec<f64> = (0..4).map(|i| signed_frequency(i, 4)).collect();
        assert_eq!(f, [0.0, 1.0, -2.0, -1.0]);
    }
}
