//! Several frames of one scan position summed into one pattern.
//!
//! Paper 000 recorded eight 2 ms frames at each scan position and summed 8, 4, 2 or 1 of them
//! to make a dose series from one acquisition. [`FrameSum`] is that sum: a caller-owned
//! buffer of the frame's area in the pixel's binning accumulator ([`Pixel::BinAcc`]: `u32`
//! for integer pixels, `f32` for `f32`), cleared per position, added to per frame. Nothing is
//! allocated.
//!
//! Exactness: `u8` and `u16` sums are exact for up to 65,537 frames (65,537 × 65,535 <
//! 2³²); `u32` sums wrap modulo 2³² once a pixel's sum exceeds it (the same rule as the
//! binner's); `f32` sums round as `f32` additions do.

use core::marker::PhantomData;

use crate::pixel::{Accumulator, Pixel};
use crate::{Error, FrameGeometry};

/// The running sum of the frames of one scan position; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct FrameSum<T, B> {
    geometry: FrameGeometry,
    sum: B,
    frames: usize,
    accumulator: PhantomData<T>,
}

impl<T: Accumulator, B: AsRef<[T]> + AsMut<[T]>> FrameSum<T, B> {
    /// A sum of frames of `geometry` in `buffer` (exactly `geometry.area()` long), zeroed.
    pub fn new(geometry: FrameGeometry, mut buffer: B) -> Result<Self, Error> {
        let found = buffer.as_ref().len();
        if found != geometry.area() {
            return Err(Error::GeometryMismatch {
                expected: geometry.area(),
                found,
            });
        }
        buffer.as_mut().fill(T::ZERO);
        Ok(FrameSum {
            geometry,
            sum: buffer,
            frames: 0,
            accumulator: PhantomData,
        })
    }

    /// Starts the next position: the sum back to zero.
    pub fn clear(&mut self) {
        self.sum.as_mut().fill(T::ZERO);
        self.frames = 0;
    }

    /// Adds one frame (row-major, `width × height` pixels).
    pub fn add<P: Pixel<BinAcc = T>>(&mut self, frame: &[P]) -> Result<(), Error> {
        if frame.len() != self.geometry.area() {
            return Err(Error::GeometryMismatch {
                expected: self.geometry.area(),
                found: frame.len(),
            });
        }
        for (s, &p) in self.sum.as_mut().iter_mut().zip(frame) {
            *s = s.add(p.to_bin());
        }
        self.frames += 1;
        Ok(())
    }

    /// Frames added since the last [`FrameSum::clear`].
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The summed pattern.
    pub fn sum(&self) -> &[T] {
        self.sum.as_ref()
    }

    /// The frame geometry.
    pub fn geometry(&self) -> FrameGeometry {
        self.geometry
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn sums_frames_and_clears() {
        let g = FrameGeometry::new(3, 2).unwrap();
        let mut s = FrameSum::new(g, [7u32; 6]).unwrap();
        assert_eq!(s.sum(), &[0; 6]);
        s.add(&[1u16, 2, 3, 4, 5, 65535]).unwrap();
        s.add(&[1u16, 1, 1, 1, 1, 65535]).unwrap();
        assert_eq!((s.sum(), s.frames()), (&[2, 3, 4, 5, 6, 131070][..], 2));
        s.clear();
        assert_eq!((s.sum(), s.frames()), (&[0; 6][..], 0));
        assert_eq!(
            s.add(&[1u16; 5]),
            Err(Error::GeometryMismatch {
                expected: 6,
                found: 5
            })
        );
        assert!(FrameSum::new(g, [0f32; 5]).is_err());
    }

    proptest! {
        /// Against a plain sum in u64 / f64: exact for u16, as f32 addition for f32.
        #[test]
        fn matches_a_plain_sum(k in 1usize..9, seed in any::<u64>()) {
            let g = FrameGeometry::new(5, 4).unwrap();
            use rand::{Rng, SeedableRng};
            let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
            let frames: Vec<Vec<u16>> = (0..k)
                .map(|_| (0..20).map(|_| rng.r#gen::<u16>()).collect())
                .collect();
            let mut s = FrameSum::new(g, vec![0u32; 20]).unwrap();
            for f in &frames {
                s.add(f).unwrap();
            }
            for p in 0..20 {
                let want: u64 = frames.iter().map(|f| u64::from(f[p])).sum();
                prop_assert_eq!(u64::from(s.sum()[p]), want);
            }
            let floats: Vec<Vec<f32>> = frames
                .iter()
                .map(|f| f.iter().map(|&v| v as f32 * 0.25).collect())
                .collect();
            let mut s = FrameSum::new(g, vec![0f32; 20]).unwrap();
            for f in &floats {
                s.add(f).unwrap();
            }
            for p in 0..20 {
                let want = floats.iter().fold(0f32, |a, f| a + f[p]);
                prop_assert_eq!(s.sum()[p].to_bits(), want.to_bits());
            }
        }
    }
}
