//! A basis from K recorded patterns: their region pixels, orthonormalised by Gram–Schmidt.
//!
//! Paper 002 (section 2.2.2) records a few patterns at random positions before (or early in)
//! the scan, keeps their bright-field pixels and orthonormalises them in order. Mask k is the
//! part of pattern k orthogonal to patterns 0 … k − 1, with unit norm; the basis spans exactly
//! the patterns. Two patterns that are (nearly) proportional, or a pattern that is (nearly) a
//! combination of earlier ones, are refused with [`Error::LinearlyDependent`] naming it (see
//! [`super::gram_schmidt::TOLERANCE`]): pick another pattern.

use super::Basis;
use super::region::{Region, Run};
use crate::Error;
use crate::pixel::Pixel;

impl<R: AsRef<[Run]>, M: AsRef<[f32]> + AsMut<[f32]>> Basis<R, M> {
    /// The basis spanned by `patterns` (full frames of the region's geometry) on `region`.
    ///
    /// `patterns` is any sequence with a known length: `frames.chunks_exact(area)`,
    /// `list.iter().map(|f| &f[..])`, … `masks` holds [`Basis::storage_len`] values,
    /// `scratch` at least [`Basis::scratch_len`]. Errors: [`Error::TooManyMasks`] above
    /// [`super::MAX_BASIS`], [`Error::TooManyVectors`] for more patterns than region pixels,
    /// [`Error::BufferTooSmall`], [`Error::GeometryMismatch`] for a pattern that is not a
    /// frame of the region's geometry, [`Error::BadParameter`] for a non-finite pixel,
    /// [`Error::LinearlyDependent`] with the pattern's index.
    pub fn from_patterns<'p, P, I>(
        region: Region<R>,
        patterns: I,
        masks: M,
        scratch: &mut [f64],
    ) -> Result<Self, Error>
    where
        P: Pixel + 'p,
        I: IntoIterator<Item = &'p [P]>,
        I::IntoIter: ExactSizeIterator,
    {
        let mut patterns = patterns.into_iter();
        let count = patterns.len();
        Self::orthonormalise(region, count, masks, scratch, |region, v| {
            let pattern = patterns.next().unwrap_or(&[]);
            region.gather_f64(pattern, v)
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::basis::gram_schmidt::gram_error;
    use crate::geometry::FrameGeometry;
    use crate::testing::random_frame;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn recorded_patterns_give_an_orthonormal_basis_that_spans_them() {
        let g = FrameGeometry::new(64, 48).unwrap();
        let region = Region::disc(g, 31.5, 23.5, 12.0, vec![Run::default(); 96]).unwrap();
        let n = region.pixels();
        let k = 15;
        let frames: Vec<u16> = random_frame(k * g.area(), 9);
        let mut scratch = vec![0.0; n];
        let basis = Basis::from_patterns(
            region,
            frames.chunks_exact(g.area()),
            vec![0.0f32; k * n],
            &mut scratch,
        )
        .unwrap();
        assert_eq!(basis.count(), k);
        assert!(gram_error(basis.masks(), n) < 1e-6);
        // Each pattern's bright field lies in the span: its perpendicular part is rounding.
        for frame in frames.chunks_exact(g.area()) {
            let mut x = vec![0.0; n];
            basis.region().gather_f64(frame, &mut x).unwrap();
            let energy: f64 = x.iter().map(|v| v * v).sum();
            let captured: f64 = (0..k)
                .map(|j| {
                    let c: f64 = basis
                        .mask(j)
                        .unwrap()
                        .iter()
                        .zip(&x)
                        .map(|(&m, &v)| f64::from(m) * v)
                        .sum();
                    c * c
                })
                .sum();
            assert!(
                (energy - captured).abs() <= 1e-6 * energy,
                "{energy} vs {captured}"
            );
        }
    }

    #[test]
    fn errors() {
        let g = FrameGeometry::new(16, 16).unwrap();
        let region = Region::disc(g, 7.5, 7.5, 3.0, [Run::default(); 32]).unwrap();
        let n = region.pixels();
        let a: Vec<u8> = random_frame(256, 1);
        let twice: Vec<u8> = a.iter().map(|&x| x / 2 * 2).collect();
        let half: Vec<u8> = twice.iter().map(|&x| x / 2).collect();
        let mut scratch = vec![0.0; n];
        // `half` is `twice` / 2: proportional, refused as pattern 1.
        let frames = [&twice[..], &half[..]];
        assert_eq!(
            Basis::from_patterns(region.clone(), frames, vec![0.0f32; 2 * n], &mut scratch)
                .unwrap_err(),
            Error::LinearlyDependent { index: 1 }
        );
        let short = [&a[..255]];
        assert_eq!(
            Basis::from_patterns(region.clone(), short, vec![0.0f32; n], &mut scratch).unwrap_err(),
            Error::GeometryMismatch {
                expected: 256,
                found: 255
            }
        );
        let nan = vec![f32::NAN; 256];
        assert_eq!(
            Basis::from_patterns(region.clone(), [&nan[..]], vec![0.0f32; n], &mut scratch)
                .unwrap_err(),
            Error::BadParameter
        );
        let many = vec![0u8; (n + 1) * 256];
        assert_eq!(
            Basis::from_patterns(
                region,
                many.chunks_exact(256),
                vec![0.0f32; (n + 1) * n],
                &mut scratch
            )
            .unwrap_err(),
            Error::TooManyVectors {
                pixels: n,
                found: n + 1
            }
        );
    }
}
