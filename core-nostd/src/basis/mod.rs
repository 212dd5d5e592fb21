//! Compression by change of basis (paper 002): orthonormal bases over the bright field and the
//! dark field, and the per-frame kernel that reduces a frame to their coefficients.
//!
//! | module | what |
//! |--------|------|
//! | [`region`] | the pixels a basis lives on (disc or annulus), as row runs |
//! | [`gram_schmidt`] | modified Gram–Schmidt in f64 onto f32 vectors, with the dependence check |
//! | [`binning`] | b × b squares restricted to the region, unit norm ([`Basis::binning`]) |
//! | [`zernike`] | Zernike polynomials (OSA/ANSI), sampled and orthonormalised ([`Basis::zernike`]) |
//! | [`patterns`] | a basis from K recorded patterns ([`Basis::from_patterns`]) |
//! | [`compress`] | per-frame coefficients, perpendicular components (eq. 11), angle (eq. 18), ratio C (eq. 17) |
//!
//! # Conventions
//!
//! - **Pixels.** Pixel (row, col) has its centre at x = col, y = row; shapes have sub-pixel
//!   centres and radii in pixels; membership is by pixel centre (see [`region`] for the exact
//!   inequalities: the bright-field disc is closed, the dark-field annulus excludes its inner
//!   radius so the two never share a pixel).
//! - **Packed vectors.** A basis vector (a *mask*) lists one weight per region pixel in the
//!   region's packed order (row-major over the region's pixels): it is zero outside the region
//!   by construction and costs nothing there. K masks of a region with n pixels are one
//!   caller-owned `f32` buffer of K·n values, mask k at `k * n .. (k + 1) * n`
//!   ([`Basis::storage_len`]).
//! - **Orthonormal.** Every basis here is orthonormal on the region's actual pixels (Frobenius
//!   inner product, paper 002 eqs. 6–7): binning masks by construction (disjoint, weight
//!   1/√(pixels in the block)), Zernike and recorded-pattern bases by [`gram_schmidt`] in f64,
//!   rounded to f32 once at the end. Tested: Gram matrix = I within 1e-6.
//! - **Built once, checked.** Builders validate everything and return [`Error`]; the per-frame
//!   path ([`Basis::project`], [`compress::Compressor::compress`]) checks lengths only and
//!   allocates nothing. Building needs an `f64` scratch of n values ([`Basis::scratch_len`]).

pub mod binning;
pub mod compress;
pub mod gram_schmidt;
pub mod patterns;
pub mod region;
pub mod zernike;

use crate::Error;
use gram_schmidt::GramSchmidt;
use region::{Region, Run};

/// Most vectors in one [`Basis`] (the per-frame kernel keeps one f64 sum per vector on the
/// stack: 2 KiB).
pub const MAX_BASIS: usize = 256;

/// K orthonormal masks over a [`Region`], ready to project frames; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Basis<R, M> {
    region: Region<R>,
    masks: M,
    count: usize,
    /// The mask that is constant over the region, if any (at most one can be: two would be
    /// parallel). Its coefficient is its weight times Σx, which the kernel computes without
    /// reading the mask: the dark field's one value (the annular piston) costs no mask reads.
    flat: Option<usize>,
}

impl<R: AsRef<[Run]>, M: AsRef<[f32]>> Basis<R, M> {
    /// The buffer length for `count` masks over a region of `pixels` pixels: `count * pixels`.
    pub const fn storage_len(count: usize, pixels: usize) -> usize {
        count * pixels
    }

    /// The `f64` scratch length that building a basis on `region` needs: its pixel count.
    pub fn scratch_len(region: &Region<R>) -> usize {
        region.pixels()
    }

    /// The region the masks live on.
    pub fn region(&self) -> &Region<R> {
        &self.region
    }

    /// Number of masks K.
    pub fn count(&self) -> usize {
        self.count
    }

    /// All K masks, packed: mask k at `k * n .. (k + 1) * n` for n region pixels.
    pub fn masks(&self) -> &[f32] {
        &self.masks.as_ref()[..self.count * self.region.pixels()]
    }

    /// Mask `k` in the region's packed order, if `k < K`.
    pub fn mask(&self, k: usize) -> Option<&[f32]> {
        let n = self.region.pixels();
        (k < self.count).then(|| &self.masks.as_ref()[k * n..(k + 1) * n])
    }

    /// Give the region and the mask storage back.
    pub fn into_parts(self) -> (Region<R>, M) {
        (self.region, self.masks)
    }

    /// A built basis: `count` masks of `region` in `masks`, sizes already checked.
    fn assemble(region: Region<R>, masks: M, count: usize) -> Self {
        let n = region.pixels();
        let flat = masks.as_ref()[..count * n]
            .chunks_exact(n)
            .position(|q| q.iter().all(|w| w.to_bits() == q[0].to_bits()));
        Self {
            region,
            masks,
            count,
            flat,
        }
    }
}

impl<R: AsRef<[Run]>, M: AsRef<[f32]> + AsMut<[f32]>> Basis<R, M> {
    /// Check sizes, then orthonormalise `count` inputs by Gram–Schmidt: `fill(region, v)` is
    /// called once per input, in order, to write the next input into `v` (n long).
    ///
    /// Errors in this order: [`Error::TooManyMasks`], [`Error::TooManyVectors`],
    /// [`Error::BufferTooSmall`] (masks, then scratch), then whatever `fill` or
    /// [`GramSchmidt::push`] return.
    fn orthonormalise(
        region: Region<R>,
        count: usize,
        mut masks: M,
        scratch: &mut [f64],
        mut fill: impl FnMut(&Region<R>, &mut [f64]) -> Result<(), Error>,
    ) -> Result<Self, Error> {
        let n = Self::check_sizes(&region, count, masks.as_ref().len(), scratch.len())?;
        let v = &mut scratch[..n];
        let mut gs = GramSchmidt::new(&mut masks.as_mut()[..count * n], n)?;
        for _ in 0..count {
            fill(&region, v)?;
            gs.push(v)?;
        }
        Ok(Self::assemble(region, masks, count))
    }

    /// The region's pixel count n, after checking `count` against [`MAX_BASIS`] and n, and
    /// the buffer lengths against what `count` masks and building need.
    fn check_sizes(
        region: &Region<R>,
        count: usize,
        masks: usize,
        scratch: usize,
    ) -> Result<usize, Error> {
        let n = region.pixels();
        if count > MAX_BASIS {
            return Err(Error::TooManyMasks {
                max: MAX_BASIS,
                found: count,
            });
        }
        if count > n {
            return Err(Error::TooManyVectors {
                pixels: n,
                found: count,
            });
        }
        let needed = count * n;
        if masks < needed {
            return Err(Error::BufferTooSmall {
                needed,
                found: masks,
            });
        }
        if scratch < n {
            return Err(Error::BufferTooSmall {
                needed: n,
                found: scratch,
            });
        }
        Ok(n)
    }
}
