//! Quality metrics of a reconstructed complex object against a ground truth.
//!
//! Ptychography determines the object only up to a global phase and, when the probe is
//! refined, a linear phase ramp (a shift of the far field); it also fixes the object only up to
//! a translation when positions or the truth's origin differ. So the comparison is
//! 1. [`register_complex`] (or [`register`] for phase images): the shift by FFT
//!    cross-correlation (integer peak, then a parabola through the peak and its neighbours per
//!    axis for the sub-pixel part), applied to the reconstruction by a Fourier shift
//!    ([`shift_image`]);
//! 2. [`align_phase`]: the global phase (and optionally a linear ramp) that best maps the
//!    reconstruction onto the truth over the region;
//! 3. the metrics over the region ([`Comparison`]):
//!    - **NRMSE** `= √(Σ|r − t|² / Σ|t|²)` of the complex objects;
//!    - **correlation** `= |Σ (r − r̄)* (t − t̄)| / √(Σ|r − r̄|² Σ|t − t̄|²)`, the modulus of the
//!      complex Pearson coefficient (means removed; 1 for identical objects);
//!    - **phase correlation**: Pearson coefficient of the phase images `arg r`, `arg t`
//!      (means removed);
//!    - **phase SNR** `= var(arg t) / var(arg r − arg t)` over the region: the power of the true
//!      phase signal over the power of the phase error (linear, not dB; ∞ when identical);
//!    - **FRC** of the phase images with the ½-bit threshold ([`frc`]).
//!
//! Images are row-major `[rows, cols]`; regions are boolean masks of the same shape
//! (`true` = counted) or crops ([`crop_mask`]). All computations are in `f64` and allocate
//! (not for the hot path).

use num_complex::{Complex32, Complex64};
use rustfft::FftPlanner;

use crate::{Error, Result};

/// Converts a `Complex32` image to `Complex64`.
pub fn to_c64(data: &[Complex32]) -> Vec<Complex64> {
    data.iter()
        .map(|v| Complex64::new(v.re as f64, v.im as f64))
        .collect()
}

/// In-place 2-D FFT (unnormalised both ways, numpy sign) of a row-major `rows × cols` array.
pub fn fft2(data: &mut [Complex64], shape: [usize; 2], inverse: bool) {
    let [rows, cols] = shape;
    assert_eq!(data.len(), rows * cols, "fft2: wrong length");
    let mut planner = FftPlanner::<f64>::new();
    let (row_fft, col_fft) = if inverse {
        (
            planner.plan_fft_inverse(cols),
            planner.plan_fft_inverse(rows),
        )
    } else {
        (
            planner.plan_fft_forward(cols),
            planner.plan_fft_forward(rows),
        )
    };
    row_fft.process(data);
    let mut column = vec![Complex64::new(0.0, 0.0); rows];
    for c in 0..cols {
        for (r, v) in column.iter_mut().enumerate() {
            *v = data[r * cols + c];
        }
        col_fft.process(&mut column);
        for (r, v) in column.iter().enumerate() {
            data[r * cols + c] = *v;
        }
    }
}

/// Signed FFT frequency index of bin `i` of an `n`-point axis.
fn signed(i: usize, n: usize) -> f64 {
    if i < n.div_ceil(2) {
        i as f64
    } else {
        i as f64 - n as f64
    }
}

/// A mask that keeps everything but a border of `crop` pixels.
pub fn crop_mask(shape: [usize; 2], crop: usize) -> Vec<bool> {
    let [rows, cols] = shape;
    let mut mask = vec![false; rows * cols];
    for r in crop..rows.saturating_sub(crop) {
        for c in crop..cols.saturating_sub(crop) {
            mask[r * cols + c] = true;
        }
    }
    mask
}

/// Shifts a complex image by `shift = [dy, dx]` pixels (`out(y, x) = in(y − dy, x − dx)`),
/// periodically, by multiplying its spectrum with a phase ramp.
pub fn shift_image(data: &[Complex64], shape: [usize; 2], shift: [f64; 2]) -> Vec<Complex64> {
    let [rows, cols] = shape;
    let mut spec = data.to_vec();
    fft2(&mut spec, shape, false);
    let norm = 1.0 / (rows * cols) as f64;
    for r in 0..rows {
        let fy = signed(r, rows) / rows as f64;
        for c in 0..cols {
            let fx = signed(c, cols) / cols as f64;
            let ph = -2.0 * std::f64::consts::PI * (fy * shift[0] + fx * shift[1]);
            spec[r * cols + c] *= Complex64::from_polar(norm, ph);
        }
    }
    fft2(&mut spec, shape, true);
    spec
}

/// The shift `[dy, dx]` (pixels, sub-pixel) such that `moving` shifted by it matches
/// `reference`: `reference(y, x) ≈ moving(y − dy, x − dx)`. Both are real images (e.g. phase
/// images) of the same shape; their means are removed. Integer peak of the circular
/// cross-correlation, refined by a parabola through the peak and its two neighbours per axis.
pub fn register(reference: &[f64], moving: &[f64], shape: [usize; 2]) -> [f64; 2] {
    let c = |v: &[f64]| {
        v.iter()
            .map(|&x| Complex64::new(x, 0.0))
            .collect::<Vec<_>>()
    };
    cross_correlation_peak(c(reference), c(moving), shape)
}

/// [`register`] for complex objects, blind to the two ambiguities of ptychography: a global
/// phase and a linear phase ramp. It correlates the **neighbour products**
/// `g_x(y, x) = o(y, x+1)·conj(o(y, x))` and `g_y` (periodic): a ramp `e^{i(a·y + b·x)}` turns
/// into the constant factors `e^{ib}`, `e^{ia}` and the global phase cancels, so the peak of
/// `|corr(g_x)| + |corr(g_y)|` (means removed) is exactly invariant to both. Phase images,
/// by contrast, are dominated by the ramp (and wrap). [`compare`] uses this.
pub fn register_complex(
    reference: &[Complex64],
    moving: &[Complex64],
    shape: [usize; 2],
) -> [f64; 2] {
    let [rows, cols] = shape;
    let products = |o: &[Complex64], dy: usize, dx: usize| {
        (0..rows * cols)
            .map(|i| {
                let (y, x) = (i / cols, i % cols);
                o[((y + dy) % rows) * cols + (x + dx) % cols] * o[i].conj()
            })
            .collect::<Vec<_>>()
    };
    let cx = cross_correlation(products(reference, 0, 1), products(moving, 0, 1), shape);
    let cy = cross_correlation(products(reference, 1, 0), products(moving, 1, 0), shape);
    let cc: Vec<f64> = cx
        .iter()
        .zip(&cy)
        .map(|(a, b)| a.norm() + b.norm())
        .collect();
    peak(&cc, shape)
}

/// Circular cross-correlation `IFFT[F(a)·conj(F(b))]` of two images, means removed.
fn cross_correlation(
    mut a: Vec<Complex64>,
    mut b: Vec<Complex64>,
    shape: [usize; 2],
) -> Vec<Complex64> {
    let n = (shape[0] * shape[1]) as f64;
    for v in [&mut a, &mut b] {
        let mean = v.iter().sum::<Complex64>() / n;
        v.iter_mut().for_each(|x| *x -= mean);
    }
    fft2(&mut a, shape, false);
    fft2(&mut b, shape, false);
    for (x, y) in a.iter_mut().zip(&b) {
        *x *= y.conj();
    }
    fft2(&mut a, shape, true);
    a
}

fn cross_correlation_peak(a: Vec<Complex64>, b: Vec<Complex64>, shape: [usize; 2]) -> [f64; 2] {
    let cc: Vec<f64> = cross_correlation(a, b, shape)
        .iter()
        .map(|v| v.re)
        .collect();
    peak(&cc, shape)
}

/// Integer maximum of a correlation map plus a parabolic sub-pixel refinement per axis, as a
/// signed shift.
fn peak(cc: &[f64], shape: [usize; 2]) -> [f64; 2] {
    let [rows, cols] = shape;
    let (mut best, mut best_i) = (f64::NEG_INFINITY, 0);
    for (i, &v) in cc.iter().enumerate() {
        if v > best {
            best = v;
            best_i = i;
        }
    }
    let (pr, pc) = (best_i / cols, best_i % cols);
    let at = |r: usize, c: usize| cc[r * cols + c];
    let parabola = |m1: f64, c0: f64, p1: f64| {
        let den = m1 - 2.0 * c0 + p1;
        if den.abs() > 1e-300 {
            (0.5 * (m1 - p1) / den).clamp(-0.5, 0.5)
        } else {
            0.0
        }
    };
    let dy = if rows >= 3 {
        parabola(
            at((pr + rows - 1) % rows, pc),
            best,
            at((pr + 1) % rows, pc),
        )
    } else {
        0.0
    };
    let dx = if cols >= 3 {
        parabola(
            at(pr, (pc + cols - 1) % cols),
            best,
            at(pr, (pc + 1) % cols),
        )
    } else {
        0.0
    };
    [signed(pr, rows) + dy, signed(pc, cols) + dx]
}

/// A global phase and linear phase ramp: `phase(y, x) = offset + ramp[0]·y + ramp[1]·x` (rad).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct PhasePlane {
    /// Constant phase, rad.
    pub offset: f64,
    /// Ramp `[d/dy, d/dx]`, rad per pixel.
    pub ramp: [f64; 2],
}

impl PhasePlane {
    /// The phase at `(y, x)`.
    pub fn at(&self, y: usize, x: usize) -> f64 {
        self.offset + self.ramp[0] * y as f64 + self.ramp[1] * x as f64
    }
}

/// The phase (and with `ramp`, the linear phase ramp) that maps `recon` best onto `truth` over
/// `mask`: `recon·e^{i·plane} ≈ truth`. Returns the aligned reconstruction and the plane.
///
/// The global phase is `arg Σ truth·conj(recon)` (the least-squares optimum). The ramp is found
/// from `z = truth·conj(recon)`: the integer-frequency peak of its spectrum first, then two
/// rounds of a weighted (by `|z|`) least-squares plane fit to the residual phase, which by then
/// no longer wraps.
pub fn align_phase(
    recon: &[Complex64],
    truth: &[Complex64],
    shape: [usize; 2],
    mask: &[bool],
    ramp: bool,
) -> (Vec<Complex64>, PhasePlane) {
    let [rows, cols] = shape;
    let mut plane = PhasePlane::default();
    let z: Vec<Complex64> = truth
        .iter()
        .zip(recon)
        .zip(mask)
        .map(|((t, r), &m)| {
            if m {
                t * r.conj()
            } else {
                Complex64::new(0.0, 0.0)
            }
        })
        .collect();
    if ramp {
        let mut spec = z.clone();
        fft2(&mut spec, shape, false);
        let mut best = (0.0, 0);
        for (i, v) in spec.iter().enumerate() {
            if v.norm_sqr() > best.0 {
                best = (v.norm_sqr(), i);
            }
        }
        let tau = 2.0 * std::f64::consts::PI;
        plane.ramp = [
            tau * signed(best.1 / cols, rows) / rows as f64,
            tau * signed(best.1 % cols, cols) / cols as f64,
        ];
        for _ in 0..2 {
            // Remove the current global phase so the residual phase sits near 0.
            let mut sum = Complex64::new(0.0, 0.0);
            for y in 0..rows {
                for x in 0..cols {
                    sum += z[y * cols + x] * Complex64::from_polar(1.0, -plane.at(y, x));
                }
            }
            plane.offset += sum.arg();
            let current = plane;
            let resid = |y: usize, x: usize| {
                z[y * cols + x] * Complex64::from_polar(1.0, -current.at(y, x))
            };
            // Weighted least squares: phase ≈ c + a·y + b·x.
            let mut ata = [[0.0f64; 3]; 3];
            let mut atb = [0.0f64; 3];
            for y in 0..rows {
                for x in 0..cols {
                    let v = resid(y, x);
                    let w = v.norm();
                    if w == 0.0 {
                        continue;
                    }
                    let basis = [1.0, y as f64, x as f64];
                    let ph = v.arg();
                    for i in 0..3 {
                        atb[i] += w * basis[i] * ph;
                        for j in 0..3 {
                            ata[i][j] += w * basis[i] * basis[j];
                        }
                    }
                }
            }
            if let Some(sol) = solve3(ata, atb) {
                plane.offset += sol[0];
                plane.ramp[0] += sol[1];
                plane.ramp[1] += sol[2];
            }
        }
    }
    // Final global phase given the ramp (least-squares optimal).
    let mut sum = Complex64::new(0.0, 0.0);
    for y in 0..rows {
        for x in 0..cols {
            let i = y * cols + x;
            sum += z[i] * Complex64::from_polar(1.0, -plane.at(y, x));
        }
    }
    plane.offset += sum.arg();
    let aligned = recon
        .iter()
        .enumerate()
        .map(|(i, r)| r * Complex64::from_polar(1.0, plane.at(i / cols, i % cols)))
        .collect();
    (aligned, plane)
}

/// Solves a 3×3 linear system by Cramer's rule (`None` if singular).
fn solve3(a: [[f64; 3]; 3], b: [f64; 3]) -> Option<[f64; 3]> {
    let det = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(a);
    if d.abs() < 1e-300 {
        return None;
    }
    let mut out = [0.0; 3];
    for (k, o) in out.iter_mut().enumerate() {
        let mut m = a;
        for i in 0..3 {
            m[i][k] = b[i];
        }
        *o = det(m) / d;
    }
    Some(out)
}

/// NRMSE `√(Σ|r − t|² / Σ|t|²)` over `mask`.
pub fn nrmse(recon: &[Complex64], truth: &[Complex64], mask: &[bool]) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for ((r, t), &m) in recon.iter().zip(truth).zip(mask) {
        if m {
            num += (r - t).norm_sqr();
            den += t.norm_sqr();
        }
    }
    if den > 0.0 {
        (num / den).sqrt()
    } else {
        f64::NAN
    }
}

/// Modulus of the complex Pearson coefficient over `mask` (means removed). 0 if either image
/// is constant over the region.
pub fn correlation(recon: &[Complex64], truth: &[Complex64], mask: &[bool]) -> f64 {
    let count = mask.iter().filter(|&&m| m).count().max(1) as f64;
    let mean = |v: &[Complex64]| {
        v.iter()
            .zip(mask)
            .filter(|(_, m)| **m)
            .map(|(x, _)| *x)
            .sum::<Complex64>()
            / count
    };
    let (mr, mt) = (mean(recon), mean(truth));
    let (mut cross, mut vr, mut vt) = (Complex64::new(0.0, 0.0), 0.0, 0.0);
    for ((r, t), &m) in recon.iter().zip(truth).zip(mask) {
        if m {
            let (a, b) = (r - mr, t - mt);
            cross += a.conj() * b;
            vr += a.norm_sqr();
            vt += b.norm_sqr();
        }
    }
    if vr > 0.0 && vt > 0.0 {
        cross.norm() / (vr * vt).sqrt()
    } else {
        0.0
    }
}

/// Pearson coefficient of two real images over `mask` (0 if either is constant).
pub fn pearson(a: &[f64], b: &[f64], mask: &[bool]) -> f64 {
    let count = mask.iter().filter(|&&m| m).count().max(1) as f64;
    let mean = |v: &[f64]| {
        v.iter()
            .zip(mask)
            .filter(|(_, m)| **m)
            .map(|(x, _)| x)
            .sum::<f64>()
            / count
    };
    let (ma, mb) = (mean(a), mean(b));
    let (mut c, mut va, mut vb) = (0.0, 0.0, 0.0);
    for ((x, y), &m) in a.iter().zip(b).zip(mask) {
        if m {
            c += (x - ma) * (y - mb);
            va += (x - ma) * (x - ma);
            vb += (y - mb) * (y - mb);
        }
    }
    if va > 0.0 && vb > 0.0 {
        c / (va * vb).sqrt()
    } else {
        0.0
    }
}

/// Phase image `arg z`.
pub fn phase(data: &[Complex64]) -> Vec<f64> {
    data.iter().map(|v| v.arg()).collect()
}

/// Pearson coefficient of the phase images over `mask` (after [`align_phase`]).
pub fn phase_correlation(recon: &[Complex64], truth: &[Complex64], mask: &[bool]) -> f64 {
    pearson(&phase(recon), &phase(truth), mask)
}

/// Phase SNR `var(arg t) / var(arg r − arg t)` over `mask` (linear; ∞ for identical phases).
pub fn phase_snr(recon: &[Complex64], truth: &[Complex64], mask: &[bool]) -> f64 {
    let (pr, pt) = (phase(recon), phase(truth));
    let diff: Vec<f64> = pr.iter().zip(&pt).map(|(a, b)| a - b).collect();
    let var = |v: &[f64]| {
        let sel: Vec<f64> = v
            .iter()
            .zip(mask)
            .filter(|(_, m)| **m)
            .map(|(x, _)| *x)
            .collect();
        let n = sel.len().max(1) as f64;
        let mean = sel.iter().sum::<f64>() / n;
        sel.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n
    };
    let noise = var(&diff);
    if noise > 0.0 {
        var(&pt) / noise
    } else {
        f64::INFINITY
    }
}

/// A Fourier ring correlation curve.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Frc {
    /// Ring centre frequency in cycles per pixel (ring `i` at `i/N`, `N = min(rows, cols)`).
    pub frequency: Vec<f64>,
    /// FRC value per ring.
    pub frc: Vec<f64>,
    /// ½-bit threshold per ring (van Heel & Schatz 2005).
    pub threshold: Vec<f64>,
    /// Pixels per ring.
    pub pixels: Vec<usize>,
    /// First frequency (cycles/pixel, linearly interpolated) where the FRC drops below the
    /// ½-bit threshold; `None` if it never does up to Nyquist.
    pub crossing: Option<f64>,
}

impl Frc {
    /// The resolution `1/crossing` in pixels (multiply by the pixel size for Å); `None` if the
    /// curve stays above the threshold up to Nyquist.
    pub fn resolution_px(&self) -> Option<f64> {
        self.crossing.map(|f| 1.0 / f)
    }
}

/// The ½-bit threshold for a ring of `n` pixels (van Heel & Schatz 2005, eq. 17):
/// `T = (0.2071 + 1.9102/√n) / (1.2071 + 0.9102/√n)`.
pub fn half_bit_threshold(n: usize) -> f64 {
    let s = (n.max(1) as f64).sqrt();
    (0.2071 + 1.9102 / s) / (1.2071 + 0.9102 / s)
}

/// Fourier ring correlation of two real images (means removed) with the ½-bit threshold.
///
/// `FRC(ring) = Re Σ A·B* / √(Σ|A|² Σ|B|²)` over the pixels of the ring; rings of width
/// `1/N` cycles/pixel with `N = min(rows, cols)`, up to Nyquist (½ cycle/pixel). No apodisation:
/// crop the borders first ([`crop_mask`] marks them; [`compare`] crops).
pub fn frc(a: &[f64], b: &[f64], shape: [usize; 2]) -> Frc {
    let [rows, cols] = shape;
    let n = rows * cols;
    let demean = |v: &[f64]| {
        let mean = v.iter().sum::<f64>() / n as f64;
        v.iter()
            .map(|x| Complex64::new(x - mean, 0.0))
            .collect::<Vec<_>>()
    };
    let (mut fa, mut fb) = (demean(a), demean(b));
    fft2(&mut fa, shape, false);
    fft2(&mut fb, shape, false);
    let size = rows.min(cols);
    let rings = size / 2 + 1;
    let mut cross = vec![0.0; rings];
    let mut pa = vec![0.0; rings];
    let mut pb = vec![0.0; rings];
    let mut pixels = vec![0usize; rings];
    for r in 0..rows {
        let fy = signed(r, rows) / rows as f64;
        for c in 0..cols {
            let fx = signed(c, cols) / cols as f64;
            let ring = ((fy * fy + fx * fx).sqrt() * size as f64).round() as usize;
            if ring >= rings {
                continue;
            }
            let (x, y) = (fa[r * cols + c], fb[r * cols + c]);
            cross[ring] += (x * y.conj()).re;
            pa[ring] += x.norm_sqr();
            pb[ring] += y.norm_sqr();
            pixels[ring] += 1;
        }
    }
    let frequency: Vec<f64> = (0..rings).map(|i| i as f64 / size as f64).collect();
    let frc: Vec<f64> = (0..rings)
        .map(|i| {
            let d = (pa[i] * pb[i]).sqrt();
            if d > 0.0 { cross[i] / d } else { 0.0 }
        })
        .collect();
    let threshold: Vec<f64> = pixels.iter().map(|&p| half_bit_threshold(p)).collect();
    let mut crossing = None;
    for i in 1..rings {
        let (d1, d0) = (frc[i] - threshold[i], frc[i - 1] - threshold[i - 1]);
        if d1 < 0.0 {
            crossing = Some(if i > 1 && d0 > 0.0 {
                frequency[i - 1] + (frequency[i] - frequency[i - 1]) * d0 / (d0 - d1)
            } else {
                frequency[i]
            });
            break;
        }
    }
    Frc {
        frequency,
        frc,
        threshold,
        pixels,
        crossing,
    }
}

/// Options of [`compare`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompareOptions {
    /// Border (pixels) left out of every metric, beyond what the registration shift needs.
    pub crop_px: usize,
    /// Register (shift) the reconstruction onto the truth first.
    pub register: bool,
    /// Remove a linear phase ramp as well as the global phase.
    pub remove_ramp: bool,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            crop_px: 0,
            register: true,
            remove_ramp: true,
        }
    }
}

/// Every metric of a reconstruction against the truth.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Comparison {
    /// Shape compared `[rows, cols]` (the common, centred part of both arrays).
    pub shape: [usize; 2],
    /// Shift `[dy, dx]` applied to the reconstruction (pixels).
    pub shift_px: [f64; 2],
    /// Border left out (pixels).
    pub crop_px: usize,
    /// The phase plane removed.
    pub phase_plane: PhasePlane,
    /// NRMSE of the complex objects.
    pub nrmse: f64,
    /// Complex correlation (modulus of the Pearson coefficient).
    pub correlation: f64,
    /// Pearson coefficient of the phase images.
    pub phase_correlation: f64,
    /// Phase SNR (linear).
    pub phase_snr: f64,
    /// FRC of the phase images over the cropped region.
    pub frc: Frc,
}

/// Centre crop of a row-major image to `to`.
pub fn centre_crop<T: Copy>(data: &[T], shape: [usize; 2], to: [usize; 2]) -> Vec<T> {
    let r0 = (shape[0] - to[0]) / 2;
    let c0 = (shape[1] - to[1]) / 2;
    let mut out = Vec::with_capacity(to[0] * to[1]);
    for r in 0..to[0] {
        out.extend_from_slice(&data[(r0 + r) * shape[1] + c0..][..to[1]]);
    }
    out
}

/// Registers, aligns and measures `recon` against `truth` (same pixel size). Arrays of
/// different shapes are centre-cropped to their common shape first.
pub fn compare(
    recon: &[Complex32],
    recon_shape: [usize; 2],
    truth: &[Complex32],
    truth_shape: [usize; 2],
    options: &CompareOptions,
) -> Result<Comparison> {
    for (name, data, shape) in [
        ("reconstruction", recon, recon_shape),
        ("truth", truth, truth_shape),
    ] {
        if data.len() != shape[0] * shape[1] || data.is_empty() {
            return Err(Error::param(
                name,
                format!("{} values for shape {shape:?}", data.len()),
            ));
        }
    }
    let shape = [
        recon_shape[0].min(truth_shape[0]),
        recon_shape[1].min(truth_shape[1]),
    ];
    let r = to_c64(&centre_crop(recon, recon_shape, shape));
    let t = to_c64(&centre_crop(truth, truth_shape, shape));
    let (r, shift) = if options.register {
        let s = register_complex(&t, &r, shape);
        (shift_image(&r, shape, s), s)
    } else {
        (r, [0.0, 0.0])
    };
    let crop = options.crop_px + shift[0].abs().max(shift[1].abs()).ceil() as usize;
    if 2 * crop + 2 > shape[0].min(shape[1]) {
        return Err(Error::param(
            "--crop-px",
            format!(
                "a border of {crop} px (crop plus registration shift) leaves nothing of the \
                 {}×{} overlap",
                shape[0], shape[1]
            ),
        ));
    }
    let mask = crop_mask(shape, crop);
    let (aligned, plane) = align_phase(&r, &t, shape, &mask, options.remove_ramp);
    let inner = [shape[0] - 2 * crop, shape[1] - 2 * crop];
    let crop_img = |v: &[f64]| centre_crop(v, shape, inner);
    let frc = frc(&crop_img(&phase(&aligned)), &crop_img(&phase(&t)), inner);
    Ok(Comparison {
        shape,
        shift_px: shift,
        crop_px: crop,
        phase_plane: plane,
        nrmse: nrmse(&aligned, &t, &mask),
        correlation: correlation(&aligned, &t, &mask),
        phase_correlation: phase_correlation(&aligned, &t, &mask),
        phase_snr: phase_snr(&aligned, &t, &mask),
        frc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A smooth random weak-phase object with some amplitude contrast.
    fn object(shape: [usize; 2], seed: u64) -> Vec<Complex64> {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
        let [rows, cols] = shape;
        let blobs: Vec<(f64, f64, f64)> = (0..30)
            .map(|_| {
                (
                    rng.gen_range(0.0..rows as f64),
                    rng.gen_range(0.0..cols as f64),
                    rng.gen_range(-0.3..0.3),
                )
            })
            .collect();
        (0..rows * cols)
            .map(|i| {
                let (y, x) = ((i / cols) as f64, (i % cols) as f64);
                let ph: f64 = blobs
                    .iter()
                    .map(|(by, bx, a)| a * (-((y - by).powi(2) + (x - bx).powi(2)) / 8.0).exp())
                    .sum();
                Complex64::from_polar(1.0 - 0.1 * ph.abs(), ph)
            })
            .collect()
    }

    #[test]
    fn identical_objects_are_perfect_and_phase_invariant() {
        let shape = [40, 48];
        let t = object(shape, 1);
        let mask = crop_mask(shape, 2);
        // Global phase and a linear ramp.
        let r: Vec<Complex64> = t
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let (y, x) = ((i / 48) as f64, (i % 48) as f64);
                v * Complex64::from_polar(1.0, 2.0 + 0.07 * y - 0.31 * x)
            })
            .collect();
        for (rec, ramp) in [(&t, false), (&r, true)] {
            let (al, _) = align_phase(rec, &t, shape, &mask, ramp);
            assert!(nrmse(&al, &t, &mask) < 1e-9, "{}", nrmse(&al, &t, &mask));
            assert!((correlation(&al, &t, &mask) - 1.0).abs() < 1e-9);
            assert!((phase_correlation(&al, &t, &mask) - 1.0).abs() < 1e-9);
            assert!(phase_snr(&al, &t, &mask) > 1e12);
        }
        // Without ramp removal the ramped copy is not perfect.
        let (al, _) = align_phase(&r, &t, shape, &mask, false);
        assert!(nrmse(&al, &t, &mask) > 0.1);
        // A global phase alone is removed without the ramp option too.
        let g: Vec<Complex64> = t
            .iter()
            .map(|v| v * Complex64::from_polar(1.0, -1.3))
            .collect();
        let (al, plane) = align_phase(&g, &t, shape, &mask, false);
        assert!(nrmse(&al, &t, &mask) < 1e-9);
        assert!((plane.offset - 1.3).abs() < 1e-9);
    }

    #[test]
    fn frc_of_identical_is_one_and_of_noise_is_below_threshold() {
        let shape = [64, 64];
        let mut rng = rand_pcg::Pcg64::seed_from_u64(7);
        let a: Vec<f64> = (0..64 * 64).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let b: Vec<f64> = (0..64 * 64).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let same = frc(&a, &a, shape);
        assert!(same.frc[1..].iter().all(|v| (v - 1.0).abs() < 1e-9));
        assert_eq!(same.crossing, None);
        let indep = frc(&a, &b, shape);
        let below = indep.frc[1..]
            .iter()
            .zip(&indep.threshold[1..])
            .filter(|(f, t)| f < t)
            .count();
        assert!(
            below >= indep.frc.len() - 2,
            "{below} of {}",
            indep.frc.len() - 1
        );
        assert!(indep.crossing.unwrap() <= 2.0 / 64.0 + 1e-12);
        // Threshold sanity: T → 0.2071/1.2071 = 0.1716 for large rings, 1 for a single pixel.
        assert!((half_bit_threshold(1_000_000_000) - 0.1716).abs() < 1e-3);
        assert!((half_bit_threshold(1) - 1.0).abs() < 1e-3);
    }

    #[test]
    fn registration_recovers_integer_and_subpixel_shifts() {
        let shape = [48, 56];
        let t = object(shape, 3);
        let ph = phase(&t);
        for s in [[3.0, -5.0], [-2.4, 1.3], [0.3, 0.0]] {
            let moved = shift_image(&t, shape, [-s[0], -s[1]]);
            let got = register(&ph, &phase(&moved), shape);
            assert!(
                (got[0] - s[0]).abs() < 0.15 && (got[1] - s[1]).abs() < 0.15,
                "wanted {s:?}, got {got:?}"
            );
            let got = register_complex(&t, &moved, shape);
            assert!(
                (got[0] - s[0]).abs() < 0.15 && (got[1] - s[1]).abs() < 0.15,
                "complex: wanted {s:?}, got {got:?}"
            );
        }
        // compare() undoes a shift, a global phase and a ramp.
        let moved: Vec<Complex32> = shift_image(&t, shape, [-2.0, 3.0])
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let z = v * Complex64::from_polar(1.0, 0.5 + 0.02 * (i % 56) as f64);
                Complex32::new(z.re as f32, z.im as f32)
            })
            .collect();
        let t32: Vec<Complex32> = t
            .iter()
            .map(|v| Complex32::new(v.re as f32, v.im as f32))
            .collect();
        let c = compare(
            &moved,
            shape,
            &t32,
            shape,
            &CompareOptions {
                crop_px: 2,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(
            (c.shift_px[0] - 2.0).abs() < 0.05 && (c.shift_px[1] + 3.0).abs() < 0.05,
            "{:?}",
            c.shift_px
        );
        assert!(c.phase_correlation > 0.999, "{}", c.phase_correlation);
        assert!(c.nrmse < 1e-2, "{}", c.nrmse);
    }
}
