//! The only module of the core that computes float functions.
//!
//! `#![no_std]` has no `sqrt`, `atan2` or `floor` on floats. These are ours, each with a tested
//! error bound, so firmware and tests compute the same numbers (STYLE item 1):
//!
//! | function        | method                                              | bound (tested against std)   |
//! |-----------------|-----------------------------------------------------|------------------------------|
//! | [`sqrt`]        | micromath estimate (~5 %), three Newton steps in f64 | ≤ 1 ulp of f32              |
//! | [`sqrt64`]      | [`sqrt`] of the f32-rounded input (exponent scaled), two Newton steps | ≤ 1 ulp of f64 |
//! | [`atan2`]       | exact octant reduction, 21-term odd series in f64   | ≤ 1e-15 rad absolute          |
//! | [`floor`], [`ceil`] | integer truncation                              | exact                         |
//!
//! micromath's own `atan2` is off by up to ~3e-3 rad (measured in the tests), which moves
//! sector boundaries by ~0.7 px at radius 250, so the angle here is a plain series instead.
//! The octant reduction compares `|x|` and `|y|` exactly, so pixels on the axes and diagonals get exact angles (multiples of
//! π/4): this is what makes quadrant detectors split symmetric patterns symmetrically.

use core::f64::consts::{FRAC_PI_2, FRAC_PI_4};
use micromath::F32Ext;

/// Square root of `x`, within 1 ulp of the correctly rounded result.
///
/// `sqrt(0) = 0`, `sqrt(+∞) = +∞`; negative or NaN inputs give NaN.
pub fn sqrt(x: f32) -> f32 {
    if x.is_nan() || x < 0.0 {
        return f32::NAN;
    }
    if x == 0.0 || x == f32::INFINITY {
        return x;
    }
    // micromath's bit trick is ~5 % off for normal numbers but far off for subnormals:
    // scale those up by 2⁴⁶ (exact) and the root back down by 2²³.
    let subnormal = x < f32::MIN_POSITIVE;
    let xs = if subnormal {
        x * (1u64 << 46) as f32
    } else {
        x
    };
    let x64 = f64::from(xs);
    let mut y = f64::from(F32Ext::sqrt(xs));
    // Newton on y² = x: relative error e → e²/2, so 0.06 → 2e-3 → 2e-6 → 2e-12.
    for _ in 0..3 {
        y = 0.5 * (y + x64 / y);
    }
    if subnormal {
        y /= f64::from(1u32 << 23);
    }
    y as f32
}

/// Square root of an `f64`, within 1 ulp of the correctly rounded result.
///
/// `sqrt64(0) = 0`, `sqrt64(+∞) = +∞`; negative or NaN inputs give NaN.
pub fn sqrt64(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 || x == f64::INFINITY {
        return x;
    }
    // Scale x by 4^e (exact) into f32's normal range, so the f32 estimate is good to 1 ulp
    // (relative 6e-8); the root is then scaled back by 2^e.
    let mut scaled = x;
    let mut e = 0i32;
    while scaled > 1e30 {
        scaled *= 1.0 / 1_152_921_504_606_846_976.0; // 4^-30
        e += 30;
    }
    while scaled < 1e-30 {
        scaled *= 1_152_921_504_606_846_976.0; // 4^30
        e -= 30;
    }
    let mut y = f64::from(sqrt(scaled as f32));
    // Newton: relative error 6e-8 → 2e-15 → below f64 rounding.
    for _ in 0..2 {
        y = 0.5 * (y + scaled / y);
    }
    // Undo the scaling with exact powers of two.
    while e >= 30 {
        y *= 1_073_741_824.0; // 2^30
        e -= 30;
    }
    while e <= -30 {
        y *= 1.0 / 1_073_741_824.0;
        e += 30;
    }
    y
}

/// Largest whole number ≤ `x`. Exact; NaN, infinities and |x| ≥ 2⁵² (already whole) pass through.
pub fn floor(x: f64) -> f64 {
    const WHOLE: f64 = (1u64 << 52) as f64;
    if x.is_nan() || x.abs() >= WHOLE {
        return x;
    }
    // |x| < 2⁵² fits i64; the cast truncates towards zero.
    let t = x as i64 as f64;
    if t > x { t - 1.0 } else { t }
}

/// Smallest whole number ≥ `x`. Exact, like [`floor`].
pub fn ceil(x: f64) -> f64 {
    -floor(-x)
}

/// The angle of the vector (`x`, `y`) from the +x axis, in (−π, π], like `f64::atan2`.
///
/// Error ≤ 1e-15 rad. `atan2(0, 0) = 0`; the sign of zero is ignored (`atan2(-0.0, -1) = π`).
pub fn atan2(y: f64, x: f64) -> f64 {
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    let q = quarter_turns(y, x);
    if q > 2.0 {
        (q - 4.0) * FRAC_PI_2
    } else {
        q * FRAC_PI_2
    }
}

/// The angle of (`x`, `y`) from the +x axis towards +y in quarter turns, in [0, 4).
///
/// Exact on the axes (0, 1, 2, 3) and diagonals (0.5, 1.5, …); `(0, 0)` gives 0.
/// Finite inputs only.
pub(crate) fn quarter_turns(y: f64, x: f64) -> f64 {
    // Rotate into the quadrant a > 0, b ≥ 0 by exact sign swaps; q counts the quarter turns.
    let (q, a, b) = if x > 0.0 && y >= 0.0 {
        (0.0, x, y)
    } else if x <= 0.0 && y > 0.0 {
        (1.0, y, -x)
    } else if x < 0.0 && y <= 0.0 {
        (2.0, -x, -y)
    } else if x >= 0.0 && y < 0.0 {
        (3.0, -y, x)
    } else {
        return 0.0; // the origin
    };
    let f = if b <= a {
        atan_unit(b / a) / FRAC_PI_2
    } else {
        1.0 - atan_unit(a / b) / FRAC_PI_2
    };
    let turns = q + f;
    // f rounds to 1 only within 1e-16 of the next axis; wrap the one case that leaves [0, 4).
    if turns >= 4.0 { turns - 4.0 } else { turns }
}

/// atan(t) for t in [0, 1], error ≤ 2e-16.
fn atan_unit(t: f64) -> f64 {
    const TAN_PI_8: f64 = 0.414_213_562_373_095_03;
    if t > TAN_PI_8 {
        // atan t = π/4 + atan((t − 1)/(t + 1)); the new argument lies in [−tan π/8, 0].
        FRAC_PI_4 + atan_series((t - 1.0) / (t + 1.0))
    } else {
        atan_series(t)
    }
}

/// Σ (−1)ᵏ u²ᵏ⁺¹/(2k+1) for |u| ≤ tan(π/8): 21 terms leave a tail below 1e-18.
fn atan_series(u: f64) -> f64 {
    const TERMS: u32 = 21;
    let z = u * u;
    let mut p = 0.0;
    for k in (0..TERMS).rev() {
        let c = 1.0 / f64::from(2 * k + 1);
        p = if k % 2 == 0 { c } else { -c } + z * p;
    }
    u * p
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64;

    fn ulps(a: f32, b: f32) -> u32 {
        a.to_bits().abs_diff(b.to_bits())
    }

    #[test]
    fn sqrt_within_one_ulp() {
        let mut rng = Pcg64::seed_from_u64(1);
        let mut worst = 0;
        for i in 0..200_000u32 {
            // Random positive finite bit patterns cover subnormals, and a dense sweep of pixel-ish values.
            let x = if i % 2 == 0 {
                f32::from_bits(rng.gen_range(1..0x7f80_0000))
            } else {
                rng.gen_range(0.0f32..1e7)
            };
            let u = ulps(sqrt(x), std::primitive::f32::sqrt(x));
            worst = worst.max(u);
            assert!(
                u <= 1,
                "sqrt({x}) = {} vs {}",
                sqrt(x),
                std::primitive::f32::sqrt(x)
            );
        }
        std::println!("sqrt worst error {worst} ulp");
        assert_eq!(sqrt(0.0), 0.0);
        assert_eq!(sqrt(f32::INFINITY), f32::INFINITY);
        assert!(sqrt(-1.0).is_nan() && sqrt(f32::NAN).is_nan());
        assert_eq!(sqrt(16.0), 4.0);
    }

    #[test]
    fn sqrt64_within_one_ulp() {
        let mut rng = Pcg64::seed_from_u64(5);
        let ulps64 = |a: f64, b: f64| a.to_bits().abs_diff(b.to_bits());
        for i in 0..200_000u32 {
            // Random positive finite bit patterns (subnormals to 1e308) and pixel-ish values.
            let x = if i % 2 == 0 {
                f64::from_bits(rng.gen_range(1..0x7ff0_0000_0000_0000))
            } else {
                rng.gen_range(0.0f64..1e15)
            };
            let want = std::primitive::f64::sqrt(x);
            assert!(
                ulps64(sqrt64(x), want) <= 1,
                "sqrt64({x:e}) = {} vs {want}",
                sqrt64(x)
            );
        }
        assert_eq!(sqrt64(0.0), 0.0);
        assert_eq!(sqrt64(f64::INFINITY), f64::INFINITY);
        assert!(sqrt64(-1.0).is_nan() && sqrt64(f64::NAN).is_nan());
        assert_eq!(sqrt64(16.0), 4.0);
        assert!(ulps64(sqrt64(f64::MAX), std::primitive::f64::sqrt(f64::MAX)) <= 1);
        assert!(ulps64(sqrt64(f64::MIN_POSITIVE / 4.0), 7.458340731200207e-155) <= 1);
    }

    #[test]
    fn atan2_within_bound() {
        let mut rng = Pcg64::seed_from_u64(2);
        let mut worst = 0.0f64;
        for i in 0..200_000 {
            let scale = if i % 3 == 0 { 1e-3 } else { 300.0 };
            let (y, x): (f64, f64) = (rng.gen_range(-scale..scale), rng.gen_range(-scale..scale));
            let err = (atan2(y, x) - y.atan2(x)).abs();
            worst = worst.max(err);
        }
        std::println!("atan2 worst error {worst:e} rad");
        assert!(worst <= 1e-15, "{worst:e}");
        // Axes and diagonals are exact multiples of π/4 (with the documented (−π, π] range).
        assert_eq!(atan2(0.0, 5.0), 0.0);
        assert_eq!(atan2(5.0, 0.0), FRAC_PI_2);
        assert_eq!(atan2(0.0, -5.0), std::f64::consts::PI);
        assert_eq!(atan2(-5.0, 0.0), -FRAC_PI_2);
        assert_eq!(atan2(3.0, 3.0), FRAC_PI_4);
        assert_eq!(atan2(0.0, 0.0), 0.0);
        assert!(atan2(f64::NAN, 1.0).is_nan());
    }

    /// Why `atan2` is ours: micromath's error, measured here, is far above our bound.
    #[test]
    fn micromath_atan2_is_too_loose() {
        let mut rng = Pcg64::seed_from_u64(4);
        let mut worst = 0.0f64;
        for _ in 0..100_000 {
            let (y, x): (f32, f32) = (rng.gen_range(-300.0..300.0), rng.gen_range(-300.0..300.0));
            let err = (f64::from(F32Ext::atan2(y, x)) - f64::from(y).atan2(f64::from(x))).abs();
            worst = worst.max(err);
        }
        std::println!("micromath atan2 worst error {worst:e} rad");
        assert!(worst > 1e-4, "{worst:e}");
    }

    #[test]
    fn quarter_turns_exact_on_axes_and_diagonals() {
        let cases = [
            ((0.0, 2.0), 0.0),
            ((2.0, 2.0), 0.5),
            ((2.0, 0.0), 1.0),
            ((2.0, -2.0), 1.5),
            ((0.0, -2.0), 2.0),
            ((-2.0, -2.0), 2.5),
            ((-2.0, 0.0), 3.0),
            ((-2.0, 2.0), 3.5),
        ];
        for ((y, x), q) in cases {
            assert_eq!(quarter_turns(y, x), q, "({x}, {y})");
        }
        let q = quarter_turns(-1e-300, 1.0);
        assert!((0.0..4.0).contains(&q), "{q}");
    }

    #[test]
    fn floor_and_ceil_exact() {
        let mut rng = Pcg64::seed_from_u64(3);
        for _ in 0..100_000 {
            let x: f64 = rng.gen_range(-1e6..1e6);
            assert_eq!(floor(x), x.floor());
            assert_eq!(ceil(x), x.ceil());
        }
        for x in [0.0, -0.5, 0.5, -1.0, 1.0, 4503599627370497.0, -1e300] {
            assert_eq!(floor(x), x.floor(), "{x}");
            assert_eq!(ceil(x), x.ceil(), "{x}");
        }
        assert!(floor(f64::NAN).is_nan());
    }
}
