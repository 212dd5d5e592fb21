//! Binning: sum b × b blocks of a frame (or of a crop window of it).

use crate::Error;
use crate::geometry::{FrameGeometry, Window, check_len};
use crate::pixel::{Accumulator, Pixel};

/// Largest bin factor.
pub const MAX_BIN_FACTOR: usize = 16;

/// Columns summed per pass: a stack tile of this many accumulators holds the column sums of
/// one band of `factor` rows (1 KiB for `u32`/`f32`), so no scratch buffer is needed.
const TILE: usize = 256;

/// Sums `factor` × `factor` blocks of a window of the frame. Built and checked once; `bin` is
/// then a pure function of its arguments, so one `Binner` serves any number of threads.
///
/// Output pixel (row, col) is the sum of input rows `y0 + factor·row ..`, columns
/// `x0 + factor·col ..` (`factor` of each). Integer pixels sum in `u32` (exact for `u8`/`u16`,
/// wrapping for `u32` blocks whose sum exceeds 2³²−1); `f32` in `f32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binner {
    geometry: FrameGeometry,
    window: Window,
    factor: usize,
    out: FrameGeometry,
}

impl Binner {
    /// Bin the whole frame by `factor` (1…16).
    ///
    /// [`Error::BadFactor`] outside 1…16, [`Error::FactorDoesNotDivide`] if `factor` does not
    /// divide the width or the height.
    pub fn new(geometry: FrameGeometry, factor: usize) -> Result<Self, Error> {
        Self::with_window(geometry, factor, Window::full(geometry))
    }

    /// Bin only `window` of the frame.
    ///
    /// Errors as [`Binner::new`], plus [`Error::CropOutOfBounds`] / [`Error::EmptyGeometry`]
    /// for a window outside the frame or of zero size.
    pub fn with_window(
        geometry: FrameGeometry,
        factor: usize,
        window: Window,
    ) -> Result<Self, Error> {
        if !(1..=MAX_BIN_FACTOR).contains(&factor) {
            return Err(Error::BadFactor(factor));
        }
        window.check(geometry)?;
        for dim in [window.width, window.height] {
            if dim % factor != 0 {
                return Err(Error::FactorDoesNotDivide { factor, dim });
            }
        }
        let out = FrameGeometry::new(window.width / factor, window.height / factor)?;
        Ok(Self {
            geometry,
            window,
            factor,
            out,
        })
    }

    /// The bin factor.
    pub fn factor(&self) -> usize {
        self.factor
    }

    /// The input frame's geometry.
    pub fn geometry(&self) -> FrameGeometry {
        self.geometry
    }

    /// The window that is binned.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Columns of the binned frame.
    pub fn out_width(&self) -> usize {
        self.out.width()
    }

    /// Rows of the binned frame.
    pub fn out_height(&self) -> usize {
        self.out.height()
    }

    /// `out_width() * out_height()`: the length `bin` writes.
    pub fn out_len(&self) -> usize {
        self.out.area()
    }

    /// The binned frame's geometry (e.g. for [`crate::Stats`] at binned resolution).
    pub fn out_geometry(&self) -> FrameGeometry {
        self.out
    }

    /// Write the block sums of `frame` into `out` (row-major, overwriting it).
    ///
    /// `#[inline(always)]` so that a caller compiled for a wider instruction set (the host's
    /// AVX2 / AVX-512 paths, chosen at run time) compiles this loop for it too.
    ///
    /// [`Error::GeometryMismatch`] if `frame.len()` is not the geometry's area or `out.len()`
    /// is not [`Binner::out_len`]; nothing is written then.
    #[inline(always)]
    pub fn bin<P: Pixel>(&self, frame: &[P], out: &mut [P::BinAcc]) -> Result<(), Error> {
        self.geometry.check_len(frame.len())?;
        check_len(self.out_len(), out.len())?;
        let (w, b) = (self.geometry.width(), self.factor);
        let Window { x0, y0, height, .. } = self.window;
        let ow = self.out_width();
        // Columns per tile, a multiple of b.
        let tile_cols = TILE / b * b;
        let mut tile = [<P::BinAcc as Accumulator>::ZERO; TILE];
        let bands = frame[y0 * w..(y0 + height) * w].chunks_exact(b * w);
        for (band, out_row) in bands.zip(out.chunks_exact_mut(ow)) {
            for (t, out_tile) in out_row.chunks_mut(tile_cols / b).enumerate() {
                let (c0, cols) = (x0 + t * tile_cols, out_tile.len() * b);
                let acc = &mut tile[..cols];
                acc.fill(Accumulator::ZERO);
                // Vertical sums over the band's rows: contiguous, vectorises.
                for row in band.chunks_exact(w) {
                    for (a, &x) in acc.iter_mut().zip(&row[c0..c0 + cols]) {
                        *a = a.add(x.to_bin());
                    }
                }
                // Horizontal sums of b columns; the common factors get a fixed-size block
                // the compiler unrolls and vectorises (the generic fold stays scalar).
                match b {
                    1 => out_tile.copy_from_slice(acc),
                    2 => hsum::<_, 2>(out_tile, acc),
                    4 => hsum::<_, 4>(out_tile, acc),
                    8 => hsum::<_, 8>(out_tile, acc),
                    16 => hsum::<_, 16>(out_tile, acc),
                    _ => hsum_any(out_tile, acc, b),
                }
            }
        }
        Ok(())
    }
}

/// `out[i] = Σ acc[B·i .. B·i + B]` with B known at compile time.
#[inline(always)]
fn hsum<A: Accumulator, const B: usize>(out: &mut [A], acc: &[A]) {
    for (o, block) in out.iter_mut().zip(acc.chunks_exact(B)) {
        *o = block.iter().fold(A::ZERO, |s, &a| s.add(a));
    }
}

/// `out[i] = Σ acc[b·i .. b·i + b]` for any b (the reference the fixed-size paths must match).
#[inline(always)]
fn hsum_any<A: Accumulator>(out: &mut [A], acc: &[A], b: usize) {
    for (o, block) in out.iter_mut().zip(acc.chunks_exact(b)) {
        *o = block.iter().fold(A::ZERO, |s, &a| s.add(a));
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

    /// Block sums by explicit indexing, in f64 (exact for the test's integer ranges).
    fn naive<P: TestPixel>(frame: &[P], w: usize, b: usize, win: Window) -> Vec<f64> {
        let (ow, oh) = (win.width / b, win.height / b);
        let mut out = vec![0.0; ow * oh];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut s = 0.0;
                for i in 0..b {
                    for j in 0..b {
                        s += frame[(win.y0 + oy * b + i) * w + win.x0 + ox * b + j].to_f64();
                    }
                }
                out[oy * ow + ox] = s;
            }
        }
        out
    }

    fn check<P: TestPixel>(w: usize, h: usize, b: usize, win: Window, seed: u64) {
        let g = FrameGeometry::new(w, h).unwrap();
        let frame: Vec<P> = random_frame(g.area(), seed);
        let binner = Binner::with_window(g, b, win).unwrap();
        // A dirty output buffer: bin overwrites.
        let mut out = vec![P::BinAcc::ZERO; binner.out_len()];
        dirty(&mut out);
        binner.bin(&frame, &mut out).unwrap();
        let got: Vec<f64> = out.iter().map(|&x| x.as_f64()).collect();
        let want = naive(&frame, w, b, win);
        if P::IS_FLOAT {
            allclose(&got, &want, 1e-5, 1e-4);
        } else {
            assert_eq!(got, want);
        }
    }

    fn case() -> impl Strategy<Value = (usize, usize, usize, Window, u64)> {
        (
            1usize..=16,
            1usize..6,
            1usize..6,
            0usize..5,
            0usize..5,
            any::<u64>(),
        )
            .prop_flat_map(|(b, ow, oh, x0, y0, seed)| {
                let (ww, wh) = (ow * b, oh * b);
                (0usize..4, 0usize..4).prop_map(move |(xr, yr)| {
                    let win = Window {
                        x0,
                        y0,
                        width: ww,
                        height: wh,
                    };
                    (x0 + ww + xr, y0 + wh + yr, b, win, seed)
                })
            })
    }

    proptest! {
        #[test]
        fn bin_matches_naive_every_pixel_type((w, h, b, win, seed) in case()) {
            check::<u8>(w, h, b, win, seed);
            check::<u16>(w, h, b, win, seed);
            check::<u32>(w, h, b, win, seed);
            check::<f32>(w, h, b, win, seed);
        }
    }

    #[test]
    fn wide_frames_cross_tiles() {
        // Window wider than one tile, with odd factors that leave a short last tile.
        for b in [1, 3, 7, 16] {
            let w = 3 * TILE / b * b + 2 * b;
            let win = Window {
                x0: 1,
                y0: 2,
                width: w - 2 * b,
                height: 2 * b,
            };
            check::<u16>(w + 3, 2 * b + 5, b, win, b as u64);
            check::<f32>(w + 3, 2 * b + 5, b, win, b as u64);
        }
    }

    #[test]
    fn u32_block_sums_wrap() {
        let g = FrameGeometry::new(2, 2).unwrap();
        let frame = [u32::MAX, 1, 2, 3];
        let mut out = [0u32; 1];
        Binner::new(g, 2).unwrap().bin(&frame, &mut out).unwrap();
        assert_eq!(out[0], 5); // (2³² − 1 + 6) mod 2³²
    }

    #[test]
    fn errors() {
        let g = FrameGeometry::new(12, 8).unwrap();
        assert_eq!(Binner::new(g, 0), Err(Error::BadFactor(0)));
        assert_eq!(Binner::new(g, 17), Err(Error::BadFactor(17)));
        assert_eq!(
            Binner::new(g, 3),
            Err(Error::FactorDoesNotDivide { factor: 3, dim: 8 })
        );
        assert_eq!(
            Binner::new(g, 8),
            Err(Error::FactorDoesNotDivide { factor: 8, dim: 12 })
        );
        let out_of_frame = Window {
            x0: 8,
            y0: 0,
            width: 8,
            height: 8,
        };
        assert_eq!(
            Binner::with_window(g, 2, out_of_frame),
            Err(Error::CropOutOfBounds)
        );
        let binner = Binner::new(g, 4).unwrap();
        assert_eq!(
            (binner.out_width(), binner.out_height(), binner.out_len()),
            (3, 2, 6)
        );
        let mut out = [0u32; 6];
        assert_eq!(
            binner.bin(&[0u16; 95], &mut out),
            Err(Error::GeometryMismatch {
                expected: 96,
                found: 95
            })
        );
        assert_eq!(
            binner.bin(&[0u16; 96], &mut out[..5]),
            Err(Error::GeometryMismatch {
                expected: 6,
                found: 5
            })
        );
    }
}
