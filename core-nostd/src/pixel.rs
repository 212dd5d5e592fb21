//! Pixel types and the accumulators their sums live in.
//!
//! | pixel `P` | binned sum [`Pixel::BinAcc`] | statistics [`Pixel::StatAcc`] |
//! |-----------|------------------------------|-------------------------------|
//! | `u8`      | `u32` (exact)                | `u64` (exact)                 |
//! | `u16`     | `u32` (exact)                | `u64` (exact)                 |
//! | `u32`     | `u32` (exact while the block sum fits, else wraps mod 2³²) | `u64` (see [`crate::stats`]) |
//! | `f32`     | `f32`                        | `f64`                         |
//!
//! Integer accumulators use wrapping arithmetic on purpose: it vectorises, it never panics in
//! firmware, and the bounds under which it is exact are stated where it is used. `u8` and `u16`
//! pixels can never wrap a bin sum (16 × 16 × 65535 < 2³²).

use bytemuck::Pod;
use core::fmt::Debug;

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u16 {}
    impl Sealed for u32 {}
    impl Sealed for f32 {}
    impl Sealed for u64 {}
    impl Sealed for f64 {}
}

/// A number that sums can accumulate in: `u32`, `u64` (wrapping) or `f32`, `f64`.
pub trait Accumulator: Pod + Default + PartialEq + Debug + Send + Sync + sealed::Sealed {
    /// The additive identity.
    const ZERO: Self;
    /// `self + other`, wrapping for integers.
    fn add(self, other: Self) -> Self;
    /// The value as `f64` (rounded to nearest for integers above 2⁵³).
    fn as_f64(self) -> f64;
}

/// A statistics accumulator (`u64` or `f64`): mean and population variance from the sums.
pub trait StatAccumulator: Accumulator {
    /// `true` for `u64` (sums are exact integers until they wrap), `false` for `f64` (rounded).
    const EXACT: bool;
    /// Population variance `Σx²/n − (Σx/n)²` of `n > 0` values with sum `sum` and sum of
    /// squares `sum_sq`, never negative.
    ///
    /// `u64` computes `(n·Σx² − (Σx)²) / n²` exactly in `u128` and rounds once;
    /// `f64` uses the textbook formula (clamped at 0), whose cancellation error is about
    /// `2⁻⁵²·Σx²/n`.
    fn variance(sum: Self, sum_sq: Self, n: u64) -> f64;
}

/// A detector pixel: `u8`, `u16`, `u32` or `f32`, castable from bytes with `bytemuck`.
pub trait Pixel: Pod + PartialOrd + Debug + Send + Sync + sealed::Sealed {
    /// What [`crate::Binner`] sums blocks of this pixel into: `u32` for integers, `f32` for `f32`.
    type BinAcc: Pixel + Accumulator;
    /// What [`crate::Stats`] sums this pixel and its square into: `u64` for integers, `f64` for `f32`.
    type StatAcc: StatAccumulator;
    /// The value as `f32` (rounded to nearest for `u32` above 2²⁴).
    fn to_f32(self) -> f32;
    /// The value as `f64` (exact).
    fn to_f64(self) -> f64;
    /// The value in the binning accumulator.
    fn to_bin(self) -> Self::BinAcc;
    /// The value in the statistics accumulator.
    fn to_stat(self) -> Self::StatAcc;
    /// The square in the statistics accumulator (exact for integers: `u32² < 2⁶⁴`).
    fn square_stat(self) -> Self::StatAcc;
    /// The smaller value; for `f32` a NaN loses to any number.
    fn min_px(self, other: Self) -> Self;
    /// The larger value; for `f32` a NaN loses to any number.
    fn max_px(self, other: Self) -> Self;
}

macro_rules! int_accumulator {
    ($t:ty) => {
        impl Accumulator for $t {
            const ZERO: Self = 0;
            #[inline(always)]
            fn add(self, other: Self) -> Self {
                self.wrapping_add(other)
            }
            #[inline(always)]
            fn as_f64(self) -> f64 {
                self as f64
            }
        }
    };
}
int_accumulator!(u32);
int_accumulator!(u64);

impl Accumulator for f32 {
    const ZERO: Self = 0.0;
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        self + other
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Accumulator for f64 {
    const ZERO: Self = 0.0;
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        self + other
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self
    }
}

impl StatAccumulator for u64 {
    const EXACT: bool = true;
    fn variance(sum: u64, sum_sq: u64, n: u64) -> f64 {
        let n = u128::from(n);
        let (s, q) = (u128::from(sum), u128::from(sum_sq));
        // n·Σx² ≥ (Σx)² (Cauchy–Schwarz); saturate in case wrapped sums broke it.
        let num = (n * q).saturating_sub(s * s);
        num as f64 / (n * n) as f64
    }
}

impl StatAccumulator for f64 {
    const EXACT: bool = false;
    fn variance(sum: f64, sum_sq: f64, n: u64) -> f64 {
        let n = n as f64;
        let mean = sum / n;
        let v = sum_sq / n - mean * mean;
        if v > 0.0 { v } else { 0.0 }
    }
}

macro_rules! int_pixel {
    ($t:ty, $sq:ty) => {
        impl Pixel for $t {
            type BinAcc = u32;
            type StatAcc = u64;
            #[inline(always)]
            fn to_f32(self) -> f32 {
                self as f32
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn to_bin(self) -> u32 {
                u32::from(self)
            }
            #[inline(always)]
            fn to_stat(self) -> u64 {
                u64::from(self)
            }
            #[inline(always)]
            fn square_stat(self) -> u64 {
                // Square in the narrowest exact type ($sq), which vectorises best.
                let x = <$sq>::from(self);
                u64::from(x * x)
            }
            #[inline(always)]
            fn min_px(self, other: Self) -> Self {
                Ord::min(self, other)
            }
            #[inline(always)]
            fn max_px(self, other: Self) -> Self {
                Ord::max(self, other)
            }
        }
    };
}
int_pixel!(u8, u16);
int_pixel!(u16, u32);
int_pixel!(u32, u64);

impl Pixel for f32 {
    type BinAcc = f32;
    type StatAcc = f64;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn to_bin(self) -> f32 {
        self
    }
    #[inline(always)]
    fn to_stat(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn square_stat(self) -> f64 {
        let x = f64::from(self);
        x * x
    }
    #[inline(always)]
    fn min_px(self, other: Self) -> Self {
        f32::min(self, other)
    }
    #[inline(always)]
    fn max_px(self, other: Self) -> Self {
        f32::max(self, other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_squares_are_exact() {
        assert_eq!(255u8.square_stat(), 65025);
        assert_eq!(u16::MAX.square_stat(), 65535 * 65535);
        assert_eq!(
            u32::MAX.square_stat(),
            u64::from(u32::MAX) * u64::from(u32::MAX)
        );
    }

    #[test]
    fn u64_variance_is_exact_where_f64_formula_cancels() {
        // Values 2³⁰ + {0, 1, 2}: population variance 2/3.
        let base = 1u64 << 30;
        let xs = [base, base + 1, base + 2];
        let sum: u64 = xs.iter().sum();
        let sq: u64 = xs.iter().map(|x| x * x).sum();
        let v = u64::variance(sum, sq, 3);
        assert!((v - 2.0 / 3.0).abs() < 1e-15, "{v}");
    }

    #[test]
    fn nan_loses_min_max() {
        assert_eq!(f32::NAN.min_px(1.0), 1.0);
        assert_eq!(2.0f32.max_px(f32::NAN), 2.0);
    }
}
