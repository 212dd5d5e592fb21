//! Zernike polynomials (OSA/ANSI order and normalisation) and the Zernike bases built from them.
//!
//! # Conventions
//!
//! - **Index order: OSA/ANSI.** Single index j = (n(n + 2) + m) / 2 for radial order n ≥ 0 and
//!   azimuthal frequency m ∈ {−n, −n + 2, …, n}: j = 0 is (0, 0) (piston), 1 is (1, −1),
//!   2 is (1, 1), 3 is (2, −2), 4 is (2, 0) (defocus), 5 is (2, 2), … ([`osa_to_nm`],
//!   [`nm_to_osa`]).
//! - **Functions** on the unit disc, with x = ρ cos θ, y = ρ sin θ:
//!   Z(n, m) = N · Rₙ^|m|(ρ) · cos(mθ) for m ≥ 0 and N · Rₙ^|m|(ρ) · sin(|m|θ) for m < 0, with
//!   the OSA normalisation N = √(2(n + 1)/(1 + δₘ₀)), so that the mean of Z² over the disc is 1
//!   (e.g. Z(2, 0) = √3 (2ρ² − 1)). θ runs from +x (columns) towards +y (rows), the core's
//!   angle convention.
//! - **On pixels.** A pixel at distance d from the region's centre has ρ = d / R with R the
//!   region's outer radius (the disc's radius, or an annulus's outer radius), at the pixel's
//!   centre (x = col, y = row). The sampled functions are then orthonormalised on the region's
//!   actual pixels by [Gram–Schmidt](super::gram_schmidt) in the order given, so mask k is
//!   the part of mode k orthogonal to the modes before it, with unit norm and the mode's sign.
//!   On a disc the sampled Zernikes are already nearly orthogonal and change little; on an
//!   annulus (the dark field) this makes the "annular" Zernike basis of paper 002.
//!
//! # Evaluation
//!
//! No trigonometry and no square roots: ρ^|m| cos(mθ) and ρ^|m| sin(|m|θ) are the real and
//! imaginary parts of (x + iy)^|m|, and Rₙ^m(ρ) = ρ^m · P_k^(0, m)(2ρ² − 1) with k = (n − m)/2
//! and P the Jacobi polynomial, evaluated by its three-term recurrence (stable to high orders,
//! unlike the factorial sum, which cancels catastrophically beyond n ≈ 20).

use super::Basis;
use super::region::{Region, Run};
use crate::Error;
use crate::math;

/// (n, m) of OSA/ANSI index `j`.
pub fn osa_to_nm(j: usize) -> (u32, i32) {
    let mut n = 0usize;
    while (n + 1) * (n + 2) / 2 <= j {
        n += 1;
    }
    // j = (n(n + 2) + m) / 2 ⇒ m = 2j − n(n + 2); |m| ≤ n for this n.
    (n as u32, (2 * j) as i32 - (n * (n + 2)) as i32)
}

/// OSA/ANSI index of (n, m), or `None` unless |m| ≤ n and n − |m| is even.
pub fn nm_to_osa(n: u32, m: i32) -> Option<usize> {
    let valid = m.unsigned_abs() <= n && (n - m.unsigned_abs()) % 2 == 0;
    // n(n + 2) + m is even and ≥ 0 when valid.
    valid.then(|| ((n as i64 * (n as i64 + 2) + m as i64) / 2) as usize)
}

/// The radial polynomial Rₙ^m(ρ) (m ≥ 0, n − m even and ≥ 0; otherwise 0), Rₙ^m(1) = 1.
pub fn radial(n: u32, m: u32, rho: f64) -> f64 {
    if m > n || (n - m) % 2 != 0 {
        return 0.0;
    }
    let mut rho_m = 1.0;
    for _ in 0..m {
        rho_m *= rho;
    }
    rho_m * jacobi_0m((n - m) / 2, m, 2.0 * rho * rho - 1.0)
}

/// Z(n, m) at (x, y) in unit-disc coordinates (not restricted to the disc), OSA-normalised;
/// see the [module docs](self). 0 for an invalid (n, m).
pub fn zernike(n: u32, m: i32, x: f64, y: f64) -> f64 {
    if nm_to_osa(n, m).is_none() {
        return 0.0;
    }
    let norm = if m == 0 {
        math::sqrt64(f64::from(n + 1))
    } else {
        math::sqrt64(2.0 * f64::from(n + 1))
    };
    norm * unnormalised(n, m, x, y)
}

/// Rₙ^|m|(ρ) cos(mθ) or sin(|m|θ), without N: P_k^(0,|m|)(2ρ² − 1) · Re/Im (x + iy)^|m|.
fn unnormalised(n: u32, m: i32, x: f64, y: f64) -> f64 {
    let a = m.unsigned_abs();
    let (mut re, mut im) = (1.0f64, 0.0f64);
    for _ in 0..a {
        (re, im) = (re * x - im * y, re * y + im * x);
    }
    let angular = if m >= 0 { re } else { im };
    jacobi_0m((n - a) / 2, a, 2.0 * (x * x + y * y) - 1.0) * angular
}

/// The Jacobi polynomial P_k^(α, β)(t) for α = 0, β = `m`, by the standard three-term recurrence
/// (DLMF 18.9.1) from P₀ = 1, P₁ = 1 + (m + 2)(t − 1)/2.
fn jacobi_0m(k: u32, m: u32, t: f64) -> f64 {
    let b = f64::from(m);
    let (mut p0, mut p1) = (1.0, 1.0 + (b + 2.0) * (t - 1.0) / 2.0);
    if k == 0 {
        return p0;
    }
    for j in 2..=k {
        let j = f64::from(j);
        let s = 2.0 * j + b; // 2j + α + β
        let c1 = 2.0 * j * (j + b) * (s - 2.0);
        let c2 = (s - 1.0) * (s * (s - 2.0) * t - b * b);
        let c3 = 2.0 * (j - 1.0) * (j + b - 1.0) * s;
        (p0, p1) = (p1, (c2 * p1 - c3 * p0) / c1);
    }
    p1
}

impl<R: AsRef<[Run]>, M: AsRef<[f32]> + AsMut<[f32]>> Basis<R, M> {
    /// The first `count` Zernike modes in OSA/ANSI order (j = 0 … `count` − 1), sampled on
    /// `region` and orthonormalised there; see the [module docs](self). On a disc this is
    /// the bright-field Zernike basis, on an annulus the annular (dark-field) one.
    ///
    /// `masks` holds [`Basis::storage_len`] values, `scratch` at least
    /// [`Basis::scratch_len`]. Errors: [`Error::TooManyMasks`] above [`super::MAX_BASIS`],
    /// [`Error::TooManyVectors`] for more modes than pixels, [`Error::BufferTooSmall`],
    /// [`Error::LinearlyDependent`] (index = the mode's position) for a mode the region's
    /// pixels cannot tell apart from the earlier ones.
    pub fn zernike(
        region: Region<R>,
        count: usize,
        masks: M,
        scratch: &mut [f64],
    ) -> Result<Self, Error> {
        Self::zernike_modes(region, (0..count).map(osa_to_nm), masks, scratch)
    }

    /// Zernike modes (n, m) in the order given, e.g. only the azimuthally invariant ones
    /// `(0..22).map(|i| (2 * i, 0))` as in paper 002's dark field; otherwise as
    /// [`Basis::zernike`]. [`Error::BadParameter`] for an invalid (n, m) (|m| > n or n − |m| odd).
    pub fn zernike_modes<I>(
        region: Region<R>,
        modes: I,
        masks: M,
        scratch: &mut [f64],
    ) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (u32, i32)>,
        I::IntoIter: ExactSizeIterator + Clone,
    {
        let modes = modes.into_iter();
        if modes.clone().any(|(n, m)| nm_to_osa(n, m).is_none()) {
            return Err(Error::BadParameter);
        }
        let (cx, cy) = region.shape().centre();
        let scale = 1.0 / region.shape().outer_radius();
        let count = modes.len();
        let mut next = modes;
        // Called once per mode, in order.
        Self::orthonormalise(region, count, masks, scratch, |region, v| {
            let (n, m) = next.next().unwrap_or((0, 0));
            for (x, (row, col)) in v.iter_mut().zip(region.coordinates()) {
                *x = unnormalised(n, m, (col as f64 - cx) * scale, (row as f64 - cy) * scale);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::basis::gram_schmidt::gram_error;
    use crate::geometry::FrameGeometry;
    use std::vec;
    use std::vec::Vec;

    /// Rₙ^m(ρ) by the factorial sum Σₛ (−1)ˢ (n − s)! / (s! ((n+m)/2 − s)! ((n−m)/2 − s)!) ρ^(n−2s).
    fn radial_reference(n: u32, m: u32, rho: f64) -> f64 {
        let f = |k: u32| (1..=k).map(f64::from).product::<f64>();
        (0..=(n - m) / 2)
            .map(|s| {
                let sign = if s % 2 == 0 { 1.0 } else { -1.0 };
                sign * f(n - s) / (f(s) * f((n + m) / 2 - s) * f((n - m) / 2 - s))
                    * rho.powi((n - 2 * s) as i32)
            })
            .sum()
    }

    #[test]
    fn osa_index_round_trip_and_first_modes() {
        let first = [
            (0, 0),
            (1, -1),
            (1, 1),
            (2, -2),
            (2, 0),
            (2, 2),
            (3, -3),
            (3, -1),
        ];
        for (j, &nm) in first.iter().enumerate() {
            assert_eq!(osa_to_nm(j), nm, "j = {j}");
        }
        for j in 0..500 {
            let (n, m) = osa_to_nm(j);
            assert_eq!(nm_to_osa(n, m), Some(j));
        }
        assert_eq!(nm_to_osa(2, 1), None);
        assert_eq!(nm_to_osa(2, 4), None);
        assert_eq!(nm_to_osa(2, -4), None);
    }

    #[test]
    fn radial_matches_factorial_sum() {
        for n in 0..=18 {
            for m in (n % 2..=n).step_by(2) {
                for i in 0..=40 {
                    let rho = f64::from(i) / 40.0;
                    let (got, want) = (radial(n, m, rho), radial_reference(n, m, rho));
                    assert!(
                        (got - want).abs() < 1e-9,
                        "R({n},{m})({rho}) = {got} vs {want}"
                    );
                }
                assert!((radial(n, m, 1.0) - 1.0).abs() < 1e-12);
            }
        }
        assert_eq!(radial(3, 0, 0.5), 0.0);
        // High orders stay bounded by 1 on [0, 1] (the factorial sum no longer does).
        for i in 0..=100 {
            assert!(radial(60, 0, f64::from(i) / 100.0).abs() <= 1.0 + 1e-9);
        }
    }

    #[test]
    fn zernike_analytic_values() {
        let s3 = 3f64.sqrt();
        let (x, y) = (0.3f64, -0.4f64);
        let (r2, rho) = (0.25f64, 0.5f64);
        let theta = y.atan2(x);
        let cases = [
            ((0, 0), 1.0),
            ((1, 1), 2.0 * x),
            ((1, -1), 2.0 * y),
            ((2, 0), s3 * (2.0 * r2 - 1.0)),
            ((2, 2), 6f64.sqrt() * r2 * (2.0 * theta).cos()),
            ((2, -2), 6f64.sqrt() * r2 * (2.0 * theta).sin()),
            (
                (3, 1),
                8f64.sqrt() * (3.0 * rho * rho * rho - 2.0 * rho) * theta.cos(),
            ),
            ((4, 0), 5f64.sqrt() * (6.0 * r2 * r2 - 6.0 * r2 + 1.0)),
        ];
        for ((n, m), want) in cases {
            let got = zernike(n, m, x, y);
            assert!((got - want).abs() < 1e-12, "Z({n},{m}) = {got} vs {want}");
        }
        assert_eq!(zernike(2, 1, x, y), 0.0);
    }

    #[test]
    fn disc_basis_is_orthonormal_and_close_to_sampled_zernikes() {
        let g = FrameGeometry::new(96, 80).unwrap();
        let (cx, cy, r) = (47.3f32, 40.6f32, 24.0f32);
        let region = Region::disc(g, cx, cy, r, vec![Run::default(); 160]).unwrap();
        let n = region.pixels();
        let k = 45;
        let mut scratch = vec![0.0; n];
        let basis = Basis::zernike(region, k, vec![0.0f32; k * n], &mut scratch).unwrap();
        assert_eq!(basis.count(), k);
        let err = gram_error(basis.masks(), n);
        assert!(err < 1e-6, "gram error {err:e}");
        // Mask j is nearly the normalised sampled Z_j: a disc of ~1800 px makes them nearly
        // orthogonal already.
        for j in 0..k {
            let (nn, m) = osa_to_nm(j);
            let z: Vec<f64> = basis
                .region()
                .coordinates()
                .map(|(row, col)| {
                    let (x, y) = (
                        (col as f64 - f64::from(cx)) / f64::from(r),
                        (row as f64 - f64::from(cy)) / f64::from(r),
                    );
                    zernike(nn, m, x, y)
                })
                .collect();
            let norm = z.iter().map(|v| v * v).sum::<f64>().sqrt();
            let cos: f64 = basis
                .mask(j)
                .unwrap()
                .iter()
                .zip(&z)
                .map(|(&a, &b)| f64::from(a) * b / norm)
                .sum();
            assert!(cos > 0.99, "mode {j}: cos {cos}");
            // The continuous normalisation: mean of Z² over the disc ≈ 1.
            let mean_sq = norm * norm / n as f64;
            assert!((mean_sq - 1.0).abs() < 0.05, "mode {j}: mean Z² {mean_sq}");
        }
    }

    #[test]
    fn annular_basis_is_orthonormal() {
        let g = FrameGeometry::new(128, 128).unwrap();
        let region = Region::annulus(g, 63.5, 63.5, 16.0, 60.0, vec![Run::default(); 256]).unwrap();
        let n = region.pixels();
        let mut scratch = vec![0.0; n];
        let all = Basis::zernike(region.clone(), 45, vec![0.0f32; 45 * n], &mut scratch).unwrap();
        assert!(gram_error(all.masks(), n) < 1e-6);
        // Paper 002's dark field: the first 22 azimuthally invariant modes.
        let radial_only = Basis::zernike_modes(
            region,
            (0..22).map(|i| (2 * i, 0)),
            vec![0.0f32; 22 * n],
            &mut scratch,
        )
        .unwrap();
        let err = gram_error(radial_only.masks(), n);
        assert!(err < 1e-6, "gram error {err:e}");
        // The m = 0 masks are (nearly) rotationally symmetric: equal at two pixels at the same
        // distance (mirror images through the centre).
        let r = radial_only.region();
        let idx = |row: usize, col: usize| r.coordinates().position(|p| p == (row, col)).unwrap();
        let (a, b) = (idx(63, 100), idx(64, 27));
        for k in 0..22 {
            let m = radial_only.mask(k).unwrap();
            assert!((m[a] - m[b]).abs() < 1e-5, "mode {k}: {} vs {}", m[a], m[b]);
        }
    }

    #[test]
    fn errors() {
        let g = FrameGeometry::new(20, 20).unwrap();
        let region = Region::disc(g, 10.0, 10.0, 1.0, [Run::default(); 40]).unwrap();
        assert_eq!(region.pixels(), 5);
        let mut scratch = [0.0; 5];
        assert_eq!(
            Basis::zernike(region.clone(), 6, [0.0f32; 30], &mut scratch).unwrap_err(),
            Error::TooManyVectors {
                pixels: 5,
                found: 6
            }
        );
        // Five pixels (a plus sign) cannot separate Z(2,−2) = 2xy·√6, zero on both axes, from 0.
        assert_eq!(
            Basis::zernike(region.clone(), 4, [0.0f32; 20], &mut scratch).unwrap_err(),
            Error::LinearlyDependent { index: 3 }
        );
        assert_eq!(
            Basis::zernike(region.clone(), 3, [0.0f32; 14], &mut scratch).unwrap_err(),
            Error::BufferTooSmall {
                needed: 15,
                found: 14
            }
        );
        assert_eq!(
            Basis::zernike(region.clone(), 3, [0.0f32; 15], &mut [0.0; 4]).unwrap_err(),
            Error::BufferTooSmall {
                needed: 5,
                found: 4
            }
        );
        assert_eq!(
            Basis::zernike_modes(region.clone(), [(2u32, 1i32)], [0.0f32; 5], &mut scratch)
                .unwrap_err(),
            Error::BadParameter
        );
        assert!(Basis::zernike(region, 3, [0.0f32; 15], &mut scratch).is_ok());
    }
}
