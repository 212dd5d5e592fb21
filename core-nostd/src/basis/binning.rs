//! Orthonormal binning masks: b × b squares restricted to the region, each with unit norm.
//!
//! # Grid
//!
//! The squares tile the bounding box of the region's pixels (columns `c0 ..= c1`, rows
//! `r0 ..= r1`), centred on it: with `nx = ⌈(c1 − c0 + 1) / b⌉` squares across, the grid starts
//! `(nx·b − (c1 − c0 + 1)) / 2` columns (rounded down) left of `c0`, and likewise for rows.
//! Square (i, j) (row i, column j of the grid) holds the region pixels in its b × b pixels;
//! squares holding none are skipped, and the others become masks in row-major order (i, then
//! j). Mask k has weight 1/√(pixels of square k in the region) on its pixels and 0 elsewhere,
//! so the masks are disjoint with unit norm: orthonormal exactly, without Gram–Schmidt (paper
//! 002's binning basis; squares cut by the disc's edge keep unit norm through their smaller
//! pixel count).

use super::Basis;
use super::region::{Region, Run};
use crate::geometry::FrameGeometry;
use crate::math;
use crate::{Error, MAX_BIN_FACTOR};

/// The tiling of a region by b × b squares; see the [module docs](self).
#[derive(Debug, Clone, Copy)]
struct Grid {
    factor: usize,
    /// Frame column and row of square (0, 0)'s top-left pixel (may be negative).
    x0: isize,
    y0: isize,
    nx: usize,
    ny: usize,
}

impl Grid {
    fn new(runs: &[Run], geometry: FrameGeometry, factor: usize) -> Result<Self, Error> {
        if !(1..=MAX_BIN_FACTOR).contains(&factor) {
            return Err(Error::BadFactor(factor));
        }
        let w = geometry.width();
        let (mut c0, mut c1, mut r0, mut r1) = (usize::MAX, 0, usize::MAX, 0);
        for run in runs {
            let (row, col) = (run.start / w, run.start % w);
            (c0, c1) = (c0.min(col), c1.max(col + run.len - 1));
            (r0, r1) = (r0.min(row), r1.max(row));
        }
        let span = |lo: usize, hi: usize| {
            let len = hi + 1 - lo;
            let count = len.div_ceil(factor);
            let start = lo as isize - ((count * factor - len) / 2) as isize;
            (start, count)
        };
        let ((x0, nx), (y0, ny)) = (span(c0, c1), span(r0, r1));
        Ok(Self {
            factor,
            x0,
            y0,
            nx,
            ny,
        })
    }

    /// Call `f(square, packed range)` for every piece of a run inside a square, square by
    /// square in row-major order (squares without pixels produce no call).
    fn for_each_piece(&self, runs: &[Run], w: usize, mut f: impl FnMut(usize, usize, usize)) {
        let b = self.factor as isize;
        for i in 0..self.ny {
            let (top, bottom) = (self.y0 + i as isize * b, self.y0 + (i as isize + 1) * b);
            for j in 0..self.nx {
                let (left, right) = (self.x0 + j as isize * b, self.x0 + (j as isize + 1) * b);
                let mut offset = 0;
                for run in runs {
                    let (row, col) = ((run.start / w) as isize, (run.start % w) as isize);
                    if (top..bottom).contains(&row) {
                        let lo = col.max(left);
                        let hi = (col + run.len as isize).min(right);
                        if lo < hi {
                            let from = offset + (lo - col) as usize;
                            f(i * self.nx + j, from, from + (hi - lo) as usize);
                        }
                    }
                    offset += run.len;
                }
            }
        }
    }

    /// (square id, pixel count) of each non-empty square in order, through `f`.
    fn for_each_square(&self, runs: &[Run], w: usize, mut f: impl FnMut(usize, usize)) {
        let mut current: Option<(usize, usize)> = None;
        self.for_each_piece(runs, w, |sq, from, to| match current {
            Some((s, ref mut count)) if s == sq => *count += to - from,
            _ => {
                if let Some((s, count)) = current {
                    f(s, count);
                }
                current = Some((sq, to - from));
            }
        });
        if let Some((s, count)) = current {
            f(s, count);
        }
    }
}

impl<R: AsRef<[Run]>, M: AsRef<[f32]> + AsMut<[f32]>> Basis<R, M> {
    /// Number of binning masks [`Basis::binning`] makes: the `factor` × `factor` squares that
    /// hold at least one region pixel. [`Error::BadFactor`] outside 1…16.
    pub fn binning_count(region: &Region<R>, factor: usize) -> Result<usize, Error> {
        let grid = Grid::new(region.runs(), region.geometry(), factor)?;
        let mut count = 0;
        grid.for_each_square(region.runs(), region.geometry().width(), |_, _| count += 1);
        Ok(count)
    }

    /// Orthonormal binning masks over `region`; see the [module docs](self). `masks` holds
    /// [`Basis::storage_len`]`(`[`Basis::binning_count`]`, pixels)` values (more are left
    /// alone). [`Error::BadFactor`] outside 1…16, [`Error::TooManyMasks`] above
    /// [`super::MAX_BASIS`] masks, [`Error::BufferTooSmall`].
    pub fn binning(region: Region<R>, factor: usize, mut masks: M) -> Result<Self, Error> {
        let count = Self::binning_count(&region, factor)?;
        let n = region.pixels();
        // Disjoint unit-norm masks need no scratch: pass the check a length that satisfies it.
        Self::check_sizes(&region, count, masks.as_ref().len(), n)?;
        let grid = Grid::new(region.runs(), region.geometry(), factor)?;
        let (runs, w) = (region.runs(), region.geometry().width());
        let out = &mut masks.as_mut()[..count * n];
        out.fill(0.0);
        // Squares arrive in order, so the k-th non-empty square is mask k.
        let mut k = 0;
        grid.for_each_square(runs, w, |square, pixels| {
            let weight = (1.0 / math::sqrt64(pixels as f64)) as f32;
            let plane = &mut out[k * n..(k + 1) * n];
            grid.for_each_piece(runs, w, |sq, from, to| {
                if sq == square {
                    plane[from..to].fill(weight);
                }
            });
            k += 1;
        });
        Ok(Self::assemble(region, masks, count))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::basis::gram_schmidt::gram_error;
    use std::vec;
    use std::vec::Vec;

    /// Checks a binning basis: K masks, orthonormal, every region pixel in exactly one mask,
    /// and each mask's pixels inside one `factor` × `factor` square.
    fn check(basis: &Basis<Vec<Run>, Vec<f32>>, factor: usize) {
        let (n, k) = (basis.region().pixels(), basis.count());
        assert!(gram_error(basis.masks(), n) < 1e-6, "factor {factor}");
        let coords: Vec<_> = basis.region().coordinates().collect();
        for p in 0..n {
            let owners = (0..k).filter(|&m| basis.mask(m).unwrap()[p] != 0.0).count();
            assert_eq!(owners, 1, "factor {factor}, pixel {p}");
        }
        for m in 0..k {
            let px: Vec<_> = (0..n)
                .filter(|&p| basis.mask(m).unwrap()[p] != 0.0)
                .map(|p| coords[p])
                .collect();
            let extent = |f: fn(&(usize, usize)) -> usize| {
                px.iter().map(f).max().unwrap() - px.iter().map(f).min().unwrap()
            };
            assert!(extent(|p| p.0) < factor && extent(|p| p.1) < factor);
        }
    }

    #[test]
    fn squares_restricted_to_the_disc_are_orthonormal_and_cover_it() {
        let g = FrameGeometry::new(256, 256).unwrap();
        let region = Region::disc(g, 127.5, 127.5, 32.0, vec![Run::default(); 512]).unwrap();
        let n = region.pixels();
        for factor in [4, 7, 8, 16] {
            let k = Basis::<_, Vec<f32>>::binning_count(&region, factor).unwrap();
            let basis = Basis::binning(region.clone(), factor, vec![0.0; k * n]).unwrap();
            assert_eq!(basis.count(), k);
            check(&basis, factor);
        }
        // The disc's 64 × 64 box in 8 × 8 squares: a corner square's pixel nearest the centre,
        // (103, 103), lies 34.6 px away, outside; every other square reaches in. 64 − 4 masks.
        assert_eq!(Basis::<_, Vec<f32>>::binning_count(&region, 8), Ok(60));
        // Factor 1: one mask per pixel, on a small disc (K ≤ MAX_BASIS).
        let small = Region::disc(g, 20.2, 30.7, 5.0, vec![Run::default(); 512]).unwrap();
        let n = small.pixels();
        let basis = Basis::binning(small, 1, vec![0.0; n * n]).unwrap();
        assert_eq!(basis.count(), n);
        check(&basis, 1);
    }

    #[test]
    fn paper_002_binning_of_a_64_px_disc_by_7() {
        // The grid is centred on the disc: 10 × 10 squares over a 64-pixel box, 3 spare
        // columns on the left; symmetric under the disc's mirror symmetries, so the count is
        // that of a symmetric pattern (a multiple of 4).
        let g = FrameGeometry::new(256, 256).unwrap();
        let region = Region::disc(g, 127.5, 127.5, 32.0, vec![Run::default(); 512]).unwrap();
        let k = Basis::<_, Vec<f32>>::binning_count(&region, 7).unwrap();
        assert_eq!(k % 4, 0, "{k}");
    }

    #[test]
    fn errors() {
        let g = FrameGeometry::new(16, 16).unwrap();
        let region = Region::disc(g, 7.5, 7.5, 4.0, [Run::default(); 32]).unwrap();
        let n = region.pixels();
        assert_eq!(
            Basis::<_, Vec<f32>>::binning_count(&region, 0),
            Err(Error::BadFactor(0))
        );
        assert_eq!(
            Basis::binning(region.clone(), 17, vec![0.0f32; 4 * n]).unwrap_err(),
            Error::BadFactor(17)
        );
        let k = Basis::<_, Vec<f32>>::binning_count(&region, 4).unwrap();
        assert_eq!(
            Basis::binning(region.clone(), 4, vec![0.0f32; k * n - 1]).unwrap_err(),
            Error::BufferTooSmall {
                needed: k * n,
                found: k * n - 1
            }
        );
        let big = FrameGeometry::new(64, 64).unwrap();
        let disc = Region::disc(big, 31.5, 31.5, 31.0, [Run::default(); 128]).unwrap();
        let found = Basis::<_, Vec<f32>>::binning_count(&disc, 1).unwrap();
        assert_eq!(found, disc.pixels());
        assert_eq!(
            Basis::binning(disc, 1, vec![0.0f32; 1]).unwrap_err(),
            Error::TooManyMasks {
                max: crate::basis::MAX_BASIS,
                found
            }
        );
    }
}
