//! The 2-D FFT of the `M × M` reconstruction window, with plans and scratch made once.
//!
//! # Conventions
//! - Forward transform `X[ky, kx] = Σ_{y,x} x[y, x] · exp(−2πi (ky·y + kx·x) / M)`, the numpy /
//!   rustfft sign, **unnormalised**. The inverse has the `+` sign and is also unnormalised here:
//!   like RustFFT, this module never scales. Callers fold the `1/M²` of a true inverse into an
//!   element-wise pass they make anyway (the reconstruction folds it into its Fourier-space
//!   update), so no extra pass over the array is spent on it.
//! - Zero frequency sits at `[0, 0]` (FFT order, no `fftshift`).
//!
//! # The transposed far field
//! A 2-D FFT is a row pass, a transpose, a row pass and (to return to row-major order) a
//! second transpose. [`Fft2::forward_transposed`] stops before the second transpose: it returns
//! the spectrum **transposed**, `out[kx·M + ky] = X[ky, kx]`, and
//! [`Fft2::inverse_from_transposed`] takes that layout back to row-major real space. The
//! reconstruction never needs the far field in row-major order (it only multiplies it
//! element-wise by data prepared in the same transposed layout, see
//! [`PreparedPattern`](super::PreparedPattern)), so an update costs two transposes instead of
//! four.

use std::sync::Arc;

use num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

use crate::simd::SimdLevel;

/// Side of the square blocks of the cache-blocked transpose.
const BLOCK: usize = 16;

/// Out-of-place transpose of a row-major `m × m` array: `dst[c·m + r] = src[r·m + c]`.
///
/// With AVX2 and `m` a multiple of 4 it moves 4 × 4 tiles through registers
/// (`transpose_avx2`); otherwise it is [`transpose_scalar`]. Both move the same bits.
pub fn transpose(src: &[Complex32], dst: &mut [Complex32], m: usize) {
    assert!(
        src.len() == m * m && dst.len() == m * m,
        "transpose: wrong length"
    );
    #[cfg(target_arch = "x86_64")]
    if m % 4 == 0 && SimdLevel::detect() == SimdLevel::Avx2 {
        // SAFETY: detect() returns Avx2 only when the CPU has AVX2; the lengths are checked
        // above and m is a multiple of 4, as transpose_avx2 requires.
        unsafe { transpose_avx2(src, dst, m) };
        return;
    }
    transpose_scalar(src, dst, m);
}

/// [`transpose`] element by element in cache blocks (the reference the AVX2 path is tested
/// against).
pub fn transpose_scalar(src: &[Complex32], dst: &mut [Complex32], m: usize) {
    assert!(
        src.len() == m * m && dst.len() == m * m,
        "transpose: wrong length"
    );
    for r0 in (0..m).step_by(BLOCK) {
        for c0 in (0..m).step_by(BLOCK) {
            for r in r0..(r0 + BLOCK).min(m) {
                for c in c0..(c0 + BLOCK).min(m) {
                    dst[c * m + r] = src[r * m + c];
                }
            }
        }
    }
}

/// [`transpose`] in 4 × 4 tiles: four rows of four complex values (one 256-bit register
/// each, a complex `f32` pair being 64 bits) are transposed with two unpacks and two lane
/// permutes per output row.
///
/// # Safety
///
/// The CPU must have AVX2, `src` and `dst` must hold `m·m` values and `m` must be a multiple
/// of 4.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_avx2(src: &[Complex32], dst: &mut [Complex32], m: usize) {
    use std::arch::x86_64::{
        _mm256_loadu_pd, _mm256_permute2f128_pd, _mm256_storeu_pd, _mm256_unpackhi_pd,
        _mm256_unpacklo_pd,
    };
    debug_assert!(m % 4 == 0 && src.len() == m * m && dst.len() == m * m);
    let s = src.as_ptr().cast::<f64>();
    let d = dst.as_mut_ptr().cast::<f64>();
    for r0 in (0..m).step_by(BLOCK) {
        for c0 in (0..m).step_by(BLOCK) {
            for r in (r0..(r0 + BLOCK).min(m)).step_by(4) {
                for c in (c0..(c0 + BLOCK).min(m)).step_by(4) {
                    // SAFETY: r + 3 < m and c + 3 < m (m is a multiple of 4), so every load
                    // reads 4 values of row r + i inside src and every store writes 4 values
                    // of row c + i inside dst; unaligned loads/stores need no alignment.
                    // Complex32 is two f32 (repr(C)), 8 bytes, moved as one f64 lane
                    // without arithmetic, so its bits are unchanged.
                    unsafe {
                        let a = _mm256_loadu_pd(s.add(r * m + c));
                        let b = _mm256_loadu_pd(s.add((r + 1) * m + c));
                        let e = _mm256_loadu_pd(s.add((r + 2) * m + c));
                        let f = _mm256_loadu_pd(s.add((r + 3) * m + c));
                        let ab_lo = _mm256_unpacklo_pd(a, b);
                        let ab_hi = _mm256_unpackhi_pd(a, b);
                        let ef_lo = _mm256_unpacklo_pd(e, f);
                        let ef_hi = _mm256_unpackhi_pd(e, f);
                        _mm256_storeu_pd(
                            d.add(c * m + r),
                            _mm256_permute2f128_pd(ab_lo, ef_lo, 0x20),
                        );
                        _mm256_storeu_pd(
                            d.add((c + 1) * m + r),
                            _mm256_permute2f128_pd(ab_hi, ef_hi, 0x20),
                        );
                        _mm256_storeu_pd(
                            d.add((c + 2) * m + r),
                            _mm256_permute2f128_pd(ab_lo, ef_lo, 0x31),
                        );
                        _mm256_storeu_pd(
                            d.add((c + 3) * m + r),
                            _mm256_permute2f128_pd(ab_hi, ef_hi, 0x31),
                        );
                    }
                }
            }
        }
    }
}

/// Forward and inverse 2-D FFTs of an `M × M` complex array, planned once.
///
/// The hot-path methods take `&mut self` (they use the internal scratch) and never allocate.
pub struct Fft2 {
    m: usize,
    forward: Arc<dyn Fft<f32>>,
    inverse: Arc<dyn Fft<f32>>,
    scratch: Vec<Complex32>,
}

impl std::fmt::Debug for Fft2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fft2").field("m", &self.m).finish()
    }
}

impl Fft2 {
    /// Plans the forward and inverse transforms of length `m` and allocates their scratch.
    pub fn new(m: usize) -> Self {
        let mut planner = FftPlanner::<f32>::new();
        let forward = planner.plan_fft_forward(m);
        let inverse = planner.plan_fft_inverse(m);
        let len = forward
            .get_inplace_scratch_len()
            .max(inverse.get_inplace_scratch_len());
        Fft2 {
            m,
            forward,
            inverse,
            scratch: vec![Complex32::new(0.0, 0.0); len],
        }
    }

    /// The side `M` of the window.
    pub fn size(&self) -> usize {
        self.m
    }

    /// Forward 2-D FFT of the row-major `data` (`data[y·M + x]`), written **transposed** into
    /// `out` (`out[kx·M + ky] = X[ky, kx]`). `data` is overwritten (it holds the row pass).
    pub fn forward_transposed(&mut self, data: &mut [Complex32], out: &mut [Complex32]) {
        let m = self.m;
        assert!(
            data.len() == m * m && out.len() == m * m,
            "Fft2: wrong length"
        );
        // One call transforms every row: rustfft processes the buffer in chunks of length m.
        self.forward.process_with_scratch(data, &mut self.scratch);
        transpose(data, out, m);
        self.forward.process_with_scratch(out, &mut self.scratch);
    }

    /// Unnormalised inverse 2-D FFT of a **transposed** spectrum `spec_t`
    /// (`spec_t[kx·M + ky] = X[ky, kx]`) into row-major `out`: `out = M² · ifft2(X)`.
    /// `spec_t` is overwritten. Multiply by `1/M²` (folded into an earlier pass) for the inverse.
    pub fn inverse_from_transposed(&mut self, spec_t: &mut [Complex32], out: &mut [Complex32]) {
        let m = self.m;
        assert!(
            spec_t.len() == m * m && out.len() == m * m,
            "Fft2: wrong length"
        );
        self.inverse.process_with_scratch(spec_t, &mut self.scratch);
        transpose(spec_t, out, m);
        self.inverse.process_with_scratch(out, &mut self.scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_complex::Complex64;
    use rand::{Rng, SeedableRng};

    /// The O(N⁴) 2-D DFT in f64, straight from the definition; `sign` −1 forward, +1 inverse
    /// (unnormalised both ways).
    fn naive_dft2(x: &[Complex32], m: usize, sign: f64) -> Vec<Complex64> {
        let mut out = vec![Complex64::new(0.0, 0.0); m * m];
        for ky in 0..m {
            for kx in 0..m {
                let mut acc = Complex64::new(0.0, 0.0);
                for y in 0..m {
                    for xx in 0..m {
                        let turns = ((ky * y + kx * xx) % m) as f64 / m as f64;
                        let v = x[y * m + xx];
                        acc += Complex64::new(v.re as f64, v.im as f64)
                            * Complex64::from_polar(1.0, sign * 2.0 * std::f64::consts::PI * turns);
                    }
                }
                out[ky * m + kx] = acc;
            }
        }
        out
    }

    fn random(m: usize, seed: u64) -> Vec<Complex32> {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
        (0..m * m)
            .map(|_| Complex32::new(rng.gen_range(-1.0..1.0), rng.gen_range(-1.0..1.0)))
            .collect()
    }

    #[test]
    fn fft2_matches_naive_dft_both_directions() {
        for (seed, m) in [(1, 6), (2, 12), (3, 48), (4, 7), (5, 32)] {
            let x = random(m, seed);
            let mut fft = Fft2::new(m);
            // Dirty output buffers: results must not depend on what they held.
            let mut data = x.clone();
            let mut spec_t = vec![Complex32::new(9.0, -9.0); m * m];
            fft.forward_transposed(&mut data, &mut spec_t);
            let want = naive_dft2(&x, m, -1.0);
            let scale = (m * m) as f64;
            for ky in 0..m {
                for kx in 0..m {
                    let got = spec_t[kx * m + ky];
                    let w = want[ky * m + kx];
                    let err =
                        ((got.re as f64 - w.re).powi(2) + (got.im as f64 - w.im).powi(2)).sqrt();
                    assert!(
                        err < 1e-5 * scale,
                        "m={m} forward [{ky},{kx}]: {got} vs {w}"
                    );
                }
            }
            // Inverse of an arbitrary (transposed) spectrum against the naive inverse DFT.
            let y = random(m, seed + 100);
            let mut y_t = vec![Complex32::new(0.0, 0.0); m * m];
            transpose(&y, &mut y_t, m);
            let mut out = vec![Complex32::new(-3.0, 3.0); m * m];
            fft.inverse_from_transposed(&mut y_t, &mut out);
            let want = naive_dft2(&y, m, 1.0);
            for (got, w) in out.iter().zip(&want) {
                let err = ((got.re as f64 - w.re).powi(2) + (got.im as f64 - w.im).powi(2)).sqrt();
                assert!(err < 1e-5 * scale, "m={m} inverse: {got} vs {w}");
            }
            // Round trip: inverse(forward(x)) = M² x.
            let mut data = x.clone();
            fft.forward_transposed(&mut data, &mut spec_t);
            fft.inverse_from_transposed(&mut spec_t, &mut out);
            for (a, b) in out.iter().zip(&x) {
                assert!((a / scale as f32 - b).norm() < 1e-5);
            }
        }
    }

    #[test]
    fn transpose_handles_sizes_not_multiple_of_block() {
        // Both paths (4 × 4 register tiles where the CPU has AVX2 and m % 4 = 0, and the
        // element loop) against the definition, on sizes around the block and tile sizes.
        for m in [1, 4, 5, 8, 12, 16, 17, 20, 32, 40, 64, 100] {
            let x = random(m, m as u64);
            for f in [transpose, transpose_scalar] {
                let mut t = vec![Complex32::new(7.0, 7.0); m * m];
                f(&x, &mut t, m);
                for r in 0..m {
                    for c in 0..m {
                        assert_eq!(t[c * m + r], x[r * m + c], "m={m}");
                    }
                }
            }
        }
    }
}
