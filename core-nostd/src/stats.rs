//! Running per-pixel statistics: sum, sum of squares, frame count, global min and max, dose.
//!
//! [`Stats`] *accumulates*: every [`Stats::add`] adds to what it holds, and [`Stats::merge`]
//! combines two accumulators (e.g. one per worker thread). Mean and variance are derived on
//! demand into caller buffers, which they overwrite. The two sum buffers are caller-owned and
//! generic (`Vec<u64>`, `[u64; N]`, `&mut [u64]` …); they are zeroed by [`Stats::new`].
//!
//! # Precision
//!
//! Sums are kept in [`Pixel::StatAcc`]: `u64` for integer pixels, `f64` for `f32`.
//!
//! - `u8`, `u16`: sums and sums of squares are exact for up to 2³² frames.
//! - `u32` (e.g. frames binned by [`crate::Binner`]): exact while frames × max² < 2⁶⁴, with
//!   max the largest pixel value; beyond that the sum of squares wraps modulo 2⁶⁴ (the plain
//!   sum stays exact while frames × max < 2⁶⁴). A `u16` frame binned by 4 has max ≤ 2²⁰,
//!   hence ≥ 2²⁴ exact frames; real electron counts are far below max. u128 would lift the
//!   bound but doubles the memory traffic of the hottest loop, so the bound is documented
//!   and checkable instead: [`Stats::is_exact`].
//! - `f32`: f64 sums, relative error about frames × 2⁻⁵³; merging is exact up to that rounding.
//!
//! Variance is the *population* variance Σ(x − mean)²/n (divided by n, not n − 1), computed
//! for integers exactly in u128 and rounded once (see [`StatAccumulator::variance`]).

use core::marker::PhantomData;

use crate::Error;
use crate::geometry::{FrameGeometry, check_len};
use crate::pixel::{Accumulator, Pixel, StatAccumulator};

/// Running statistics of frames of pixel type `P`; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Stats<P: Pixel, S> {
    geometry: FrameGeometry,
    sum: S,
    sum_sq: S,
    frames: u64,
    min: Option<P>,
    max: Option<P>,
    _pixel: PhantomData<P>,
}

impl<P, S> Stats<P, S>
where
    P: Pixel,
    S: AsRef<[P::StatAcc]> + AsMut<[P::StatAcc]>,
{
    /// Empty statistics for frames of `geometry`, in `sum` and `sum_sq` (each the frame's area
    /// long, else [`Error::GeometryMismatch`]); both are zeroed.
    pub fn new(geometry: FrameGeometry, mut sum: S, mut sum_sq: S) -> Result<Self, Error> {
        geometry.check_len(sum.as_ref().len())?;
        geometry.check_len(sum_sq.as_ref().len())?;
        sum.as_mut().fill(Accumulator::ZERO);
        sum_sq.as_mut().fill(Accumulator::ZERO);
        Ok(Self {
            geometry,
            sum,
            sum_sq,
            frames: 0,
            min: None,
            max: None,
            _pixel: PhantomData,
        })
    }

    /// Add one frame; returns its total (Σ pixels, exact for integer pixels).
    /// [`Error::GeometryMismatch`] (and nothing added) for a frame of the wrong length.
    /// Inlined always, for the host's run-time-selected AVX2 / AVX-512 paths.
    #[inline(always)]
    pub fn add(&mut self, frame: &[P]) -> Result<P::StatAcc, Error> {
        self.geometry.check_len(frame.len())?;
        let (mut lo, mut hi) = (frame[0], frame[0]);
        let mut total = P::StatAcc::ZERO;
        let sums = self
            .sum
            .as_mut()
            .iter_mut()
            .zip(self.sum_sq.as_mut().iter_mut());
        for ((s, q), &x) in sums.zip(frame) {
            *s = s.add(x.to_stat());
            *q = q.add(x.square_stat());
            total = total.add(x.to_stat());
            lo = lo.min_px(x);
            hi = hi.max_px(x);
        }
        self.frames += 1;
        self.min = Some(self.min.map_or(lo, |m| m.min_px(lo)));
        self.max = Some(self.max.map_or(hi, |m| m.max_px(hi)));
        Ok(total)
    }

    /// [`Stats::add`], and also write the frame's total to `dose[index]` (the dose map, indexed
    /// by the frame's position in the scan). [`Error::BufferTooSmall`] (and nothing added) if
    /// `index` is not inside `dose`.
    pub fn add_with_dose(
        &mut self,
        frame: &[P],
        index: usize,
        dose: &mut [P::StatAcc],
    ) -> Result<P::StatAcc, Error> {
        let found = dose.len();
        let slot = dose.get_mut(index).ok_or(Error::BufferTooSmall {
            needed: index.saturating_add(1),
            found,
        })?;
        let total = self.add(frame)?;
        *slot = total;
        Ok(total)
    }

    /// Add `other`'s frames to these statistics, as if its frames had been added here.
    /// Exact for integer pixels. [`Error::GeometryMismatch`] if the geometries differ.
    pub fn merge<S2>(&mut self, other: &Stats<P, S2>) -> Result<(), Error>
    where
        S2: AsRef<[P::StatAcc]>,
    {
        if self.geometry != other.geometry {
            return Err(Error::GeometryMismatch {
                expected: self.geometry.area(),
                found: other.geometry.area(),
            });
        }
        for (a, &b) in self.sum.as_mut().iter_mut().zip(other.sum.as_ref()) {
            *a = a.add(b);
        }
        for (a, &b) in self.sum_sq.as_mut().iter_mut().zip(other.sum_sq.as_ref()) {
            *a = a.add(b);
        }
        self.frames += other.frames;
        self.min = pick(self.min, other.min, P::min_px);
        self.max = pick(self.max, other.max, P::max_px);
        Ok(())
    }

    /// Forget every frame (zero the sums, as [`Stats::new`]).
    pub fn reset(&mut self) {
        self.sum.as_mut().fill(Accumulator::ZERO);
        self.sum_sq.as_mut().fill(Accumulator::ZERO);
        self.frames = 0;
        self.min = None;
        self.max = None;
    }
}

impl<P, S> Stats<P, S>
where
    P: Pixel,
    S: AsRef<[P::StatAcc]>,
{
    /// The frame geometry.
    pub fn geometry(&self) -> FrameGeometry {
        self.geometry
    }

    /// Frames added (including merged ones).
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The smallest pixel value seen, `None` before the first frame. NaN pixels are ignored.
    pub fn min(&self) -> Option<P> {
        self.min
    }

    /// The largest pixel value seen, `None` before the first frame. NaN pixels are ignored.
    pub fn max(&self) -> Option<P> {
        self.max
    }

    /// Per-pixel sums.
    pub fn sum(&self) -> &[P::StatAcc] {
        self.sum.as_ref()
    }

    /// Per-pixel sums of squares.
    pub fn sum_sq(&self) -> &[P::StatAcc] {
        self.sum_sq.as_ref()
    }

    /// Whether the sums are exact: for integer pixels, whether frames × max² < 2⁶⁴
    /// guarantees that no sum has wrapped (always true for `u8`/`u16` below 2³² frames);
    /// always `false` for `f32`, whose f64 sums are rounded.
    pub fn is_exact(&self) -> bool {
        if !P::StatAcc::EXACT {
            return false;
        }
        let max = self.max.map_or(0.0, |m| m.to_f64());
        // f64 rounds the product by at most 2⁻⁵², far inside the margin of the strict bound.
        (self.frames as f64) * max * max < 18_446_744_073_709_551_616.0 * (1.0 - 1e-15)
    }

    /// Per-pixel mean Σx/n into `out` (overwriting it). [`Error::NoFrames`] before the first
    /// frame, [`Error::GeometryMismatch`] if `out` is not the frame's area.
    pub fn mean(&self, out: &mut [f64]) -> Result<(), Error> {
        self.check_out(out)?;
        let n = self.frames as f64;
        for (o, &s) in out.iter_mut().zip(self.sum.as_ref()) {
            *o = s.as_f64() / n;
        }
        Ok(())
    }

    /// Per-pixel population variance Σ(x − mean)²/n into `out` (overwriting it); errors as
    /// [`Stats::mean`].
    pub fn variance(&self, out: &mut [f64]) -> Result<(), Error> {
        self.check_out(out)?;
        let sums = self.sum.as_ref().iter().zip(self.sum_sq.as_ref());
        for (o, (&s, &q)) in out.iter_mut().zip(sums) {
            *o = P::StatAcc::variance(s, q, self.frames);
        }
        Ok(())
    }

    /// Give the sum buffers back (sum, sum of squares).
    pub fn into_buffers(self) -> (S, S) {
        (self.sum, self.sum_sq)
    }

    fn check_out(&self, out: &[f64]) -> Result<(), Error> {
        if self.frames == 0 {
            return Err(Error::NoFrames);
        }
        check_len(self.geometry.area(), out.len())
    }
}

/// Combine two optional extremes with `f`.
fn pick<P: Copy>(a: Option<P>, b: Option<P>, f: fn(P, P) -> P) -> Option<P> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::testing::{TestPixel, allclose, dirty, random_frame};
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    type VecStats<P> = Stats<P, Vec<<P as Pixel>::StatAcc>>;

    fn stats<P: TestPixel>(g: FrameGeometry) -> VecStats<P> {
        let mut a = vec![P::StatAcc::ZERO; g.area()];
        let mut b = vec![P::StatAcc::ZERO; g.area()];
        dirty(&mut a);
        dirty(&mut b);
        Stats::new(g, a, b).unwrap()
    }

    /// Mean and population variance per pixel, min, max and frame totals, by explicit
    /// indexing in f64 (two-pass variance).
    fn naive<P: TestPixel>(
        frames: &[Vec<P>],
        area: usize,
    ) -> (Vec<f64>, Vec<f64>, f64, f64, Vec<f64>) {
        let n = frames.len() as f64;
        let (mut mean, mut var) = (vec![0.0; area], vec![0.0; area]);
        for i in 0..area {
            for f in frames {
                mean[i] += f[i].to_f64();
            }
            mean[i] /= n;
            for f in frames {
                var[i] += (f[i].to_f64() - mean[i]).powi(2);
            }
            var[i] /= n;
        }
        let all = || frames.iter().flatten().map(|x| x.to_f64());
        let lo = all().fold(f64::INFINITY, f64::min);
        let hi = all().fold(f64::NEG_INFINITY, f64::max);
        let totals = frames
            .iter()
            .map(|f| f.iter().map(|x| x.to_f64()).sum())
            .collect();
        (mean, var, lo, hi, totals)
    }

    fn check<P: TestPixel>(w: usize, h: usize, n_a: usize, n_b: usize, seed: u64) {
        let g = FrameGeometry::new(w, h).unwrap();
        let frames: Vec<Vec<P>> = (0..n_a + n_b)
            .map(|i| random_frame(g.area(), seed ^ i as u64))
            .collect();
        let (mut a, mut b, mut all) = (stats::<P>(g), stats::<P>(g), stats::<P>(g));
        let mut dose = vec![P::StatAcc::ZERO; n_a + n_b];
        dirty(&mut dose);
        for (i, f) in frames.iter().enumerate() {
            let part = if i < n_a { &mut a } else { &mut b };
            let t = part.add_with_dose(f, i, &mut dose).unwrap();
            assert_eq!(all.add(f).unwrap(), t);
        }
        a.merge(&b).unwrap();
        // merge(a, b) equals the statistics of the concatenated frames.
        assert_eq!(a.frames(), all.frames());
        assert_eq!((a.min(), a.max()), (all.min(), all.max()));
        if P::IS_FLOAT {
            let f = |s: &[P::StatAcc]| s.iter().map(|x| x.as_f64()).collect::<Vec<_>>();
            allclose(&f(a.sum()), &f(all.sum()), 1e-14, 1e-9);
            allclose(&f(a.sum_sq()), &f(all.sum_sq()), 1e-14, 1e-6);
        } else {
            assert_eq!(a.sum(), all.sum());
            assert_eq!(a.sum_sq(), all.sum_sq());
            assert!(a.is_exact());
        }
        let (mean, var, lo, hi, totals) = naive(&frames, g.area());
        let (mut got_mean, mut got_var) = (vec![0.0; g.area()], vec![0.0; g.area()]);
        dirty(&mut got_mean);
        dirty(&mut got_var);
        a.mean(&mut got_mean).unwrap();
        a.variance(&mut got_var).unwrap();
        allclose(&got_mean, &mean, 1e-14, 0.0);
        // f32's f64 textbook formula cancels: absolute error ~2⁻⁵²·mean², with mean < 1000.
        let var_atol = if P::IS_FLOAT { 1e-7 } else { 1e-9 };
        allclose(&got_var, &var, 1e-12, var_atol);
        assert_eq!(
            (a.min().unwrap().to_f64(), a.max().unwrap().to_f64()),
            (lo, hi)
        );
        let dose: Vec<f64> = dose.iter().map(|x| x.as_f64()).collect();
        if P::IS_FLOAT {
            allclose(&dose, &totals, 1e-12, 0.0);
        } else {
            assert_eq!(dose, totals);
        }
    }

    proptest! {
        #[test]
        fn merge_equals_concatenation_and_matches_naive(
            w in 1usize..20, h in 1usize..20, n_a in 1usize..6, n_b in 0usize..6, seed in any::<u64>(),
        ) {
            check::<u8>(w, h, n_a, n_b, seed);
            check::<u16>(w, h, n_a, n_b, seed);
            check::<u32>(w, h, n_a, n_b, seed);
            check::<f32>(w, h, n_a, n_b, seed);
        }
    }

    #[test]
    fn binned_u32_frames_and_the_exactness_bound() {
        let g = FrameGeometry::new(2, 1).unwrap();
        let mut s = Stats::<u32, _>::new(g, [0u64; 2], [0u64; 2]).unwrap();
        s.add(&[u32::MAX, 3]).unwrap();
        assert_eq!(s.sum_sq()[0], u64::from(u32::MAX).pow(2));
        assert!(s.is_exact(), "one frame of u32::MAX: (2³² − 1)² < 2⁶⁴");
        s.add(&[u32::MAX, 3]).unwrap();
        assert!(!s.is_exact(), "two frames of u32::MAX may wrap");
        assert_eq!(s.sum()[0], 2 * u64::from(u32::MAX), "plain sums stay exact");
        let mut var = [0.0; 2];
        s.variance(&mut var).unwrap();
        assert_eq!(var[1], 0.0);
    }

    #[test]
    fn reset_and_errors() {
        let g = FrameGeometry::new(3, 2).unwrap();
        assert_eq!(
            Stats::<u16, _>::new(g, &mut [0u64; 5][..], &mut [0u64; 6][..]).unwrap_err(),
            Error::GeometryMismatch {
                expected: 6,
                found: 5
            }
        );
        let mut s = Stats::<u16, _>::new(g, [0u64; 6], [0u64; 6]).unwrap();
        let mut out = [0.0; 6];
        assert_eq!(s.mean(&mut out), Err(Error::NoFrames));
        assert_eq!(s.variance(&mut out), Err(Error::NoFrames));
        assert_eq!(
            s.add(&[1; 5]),
            Err(Error::GeometryMismatch {
                expected: 6,
                found: 5
            })
        );
        assert_eq!(s.frames(), 0);
        let mut dose = [0u64; 2];
        assert_eq!(
            s.add_with_dose(&[1; 6], 2, &mut dose),
            Err(Error::BufferTooSmall {
                needed: 3,
                found: 2
            })
        );
        assert_eq!(s.frames(), 0, "a refused frame is not added");
        assert_eq!(s.add_with_dose(&[1, 2, 3, 4, 5, 6], 1, &mut dose), Ok(21));
        assert_eq!(dose, [0, 21]);
        assert_eq!(
            s.mean(&mut out[..5]),
            Err(Error::GeometryMismatch {
                expected: 6,
                found: 5
            })
        );
        let other =
            Stats::<u16, _>::new(FrameGeometry::new(2, 3).unwrap(), [0u64; 6], [0u64; 6]).unwrap();
        assert_eq!(
            s.merge(&other),
            Err(Error::GeometryMismatch {
                expected: 6,
                found: 6
            })
        );
        s.reset();
        assert_eq!((s.frames(), s.min(), s.sum()), (0, None, &[0u64; 6][..]));
        // Merging an empty accumulator changes nothing.
        s.add(&[7; 6]).unwrap();
        let empty = Stats::<u16, _>::new(g, [0u64; 6], [0u64; 6]).unwrap();
        s.merge(&empty).unwrap();
        assert_eq!((s.frames(), s.min(), s.max()), (1, Some(7), Some(7)));
    }
}
