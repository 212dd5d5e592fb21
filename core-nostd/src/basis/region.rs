//! The pixels a basis lives on: a disc or an annulus, stored as runs of consecutive pixels.
//!
//! A [`Region`] lists its pixels row by row as [`Run`]s (one per row for a disc, at most two
//! for an annulus), so the per-frame kernel reads the frame in contiguous slices and never
//! touches a pixel outside the region. Region pixels are numbered 0 … [`Region::pixels`] − 1
//! in that order (row-major): this *packed* order is the layout of every basis vector.
//!
//! Membership follows the core's pixel-centre convention (pixel (row, col) at x = col,
//! y = row; distance d from a sub-pixel centre, compared squared in f64):
//!
//! - disc: 0 ≤ d ≤ r, and the disc must lie wholly inside the frame
//!   ([`Error::DiscOutsideFrame`]): it is the bright field, and a clipped bright field would
//!   change its basis silently;
//! - annulus: r_in < d ≤ r_out, clipped to the frame (a dark field may reach past the
//!   detector's edge). Note the *open* inner edge: a disc of radius r and an annulus with
//!   r_in = r partition the disc of radius r_out, so bright and dark field never share a pixel.
//!   (The label masks' annulus, r_in ≤ d < r_out, is a virtual detector and keeps its own rule.)

use crate::Error;
use crate::geometry::FrameGeometry;

/// `len` consecutive pixels of one frame row, starting at frame index `start`
/// (`row * width + col`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Run {
    /// Frame index of the first pixel.
    pub start: usize,
    /// Number of pixels (≥ 1 in a built region).
    pub len: usize,
}

/// The shape a region was built from (its centre and radii in pixels).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// 0 ≤ d ≤ `r`.
    Disc {
        /// Centre column (sub-pixel).
        cx: f64,
        /// Centre row (sub-pixel).
        cy: f64,
        /// Radius in pixels.
        r: f64,
    },
    /// `r_in` < d ≤ `r_out`.
    Annulus {
        /// Centre column (sub-pixel).
        cx: f64,
        /// Centre row (sub-pixel).
        cy: f64,
        /// Inner radius (excluded).
        r_in: f64,
        /// Outer radius (included).
        r_out: f64,
    },
}

impl Shape {
    /// The centre (x, y).
    pub fn centre(&self) -> (f64, f64) {
        match *self {
            Shape::Disc { cx, cy, .. } | Shape::Annulus { cx, cy, .. } => (cx, cy),
        }
    }

    /// The outer radius: the radius that maps to ρ = 1 for Zernike polynomials.
    pub fn outer_radius(&self) -> f64 {
        match *self {
            Shape::Disc { r, .. } => r,
            Shape::Annulus { r_out, .. } => r_out,
        }
    }

    fn contains_d2(&self, d2: f64) -> bool {
        match *self {
            Shape::Disc { r, .. } => d2 <= r * r,
            Shape::Annulus { r_in, r_out, .. } => r_in * r_in < d2 && d2 <= r_out * r_out,
        }
    }
}

/// The pixels of a disc or annulus, as runs in caller-owned storage; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct Region<R> {
    geometry: FrameGeometry,
    shape: Shape,
    runs: R,
    count: usize,
    pixels: usize,
}

impl<R: AsRef<[Run]> + AsMut<[Run]>> Region<R> {
    /// Runs storage that always suffices for a region of a frame of this geometry:
    /// 2 × height (an annulus crosses a row at most twice).
    pub const fn max_runs(geometry: FrameGeometry) -> usize {
        2 * geometry.height()
    }

    /// The pixels with 0 ≤ d ≤ `r` from (`cx`, `cy`).
    ///
    /// [`Error::BadParameter`] for a non-finite centre or a negative or non-finite radius,
    /// [`Error::DiscOutsideFrame`] unless `cx − r ≥ −0.5`, `cx + r ≤ width − 0.5` (and the same
    /// for `cy` with the height), [`Error::BufferTooSmall`] if `runs` cannot hold one run per
    /// row of the disc.
    pub fn disc(geometry: FrameGeometry, cx: f32, cy: f32, r: f32, runs: R) -> Result<Self, Error> {
        let (cx, cy) = centre(cx, cy)?;
        let r = radius(r)?;
        let fits = |c: f64, len: usize| c - r >= -0.5 && c + r <= len as f64 - 0.5;
        if !(fits(cx, geometry.width()) && fits(cy, geometry.height())) {
            return Err(Error::DiscOutsideFrame);
        }
        Self::build(geometry, Shape::Disc { cx, cy, r }, runs)
    }

    /// The pixels with `r_in` < d ≤ `r_out` from (`cx`, `cy`), clipped to the frame.
    ///
    /// [`Error::BadParameter`] for a non-finite centre, a negative or non-finite radius or
    /// `r_in ≥ r_out`; [`Error::EmptyRegion`] if no pixel centre of the frame is in the
    /// annulus; [`Error::BufferTooSmall`] if `runs` is too short ([`Region::max_runs`] always
    /// suffices).
    pub fn annulus(
        geometry: FrameGeometry,
        cx: f32,
        cy: f32,
        r_in: f32,
        r_out: f32,
        runs: R,
    ) -> Result<Self, Error> {
        let (cx, cy) = centre(cx, cy)?;
        let (r_in, r_out) = (radius(r_in)?, radius(r_out)?);
        if r_in >= r_out {
            return Err(Error::BadParameter);
        }
        Self::build(
            geometry,
            Shape::Annulus {
                cx,
                cy,
                r_in,
                r_out,
            },
            runs,
        )
    }

    /// Scan each row for the shape's pixels: count first (a failed call writes nothing), then
    /// write the runs.
    fn build(geometry: FrameGeometry, shape: Shape, mut runs: R) -> Result<Self, Error> {
        let (mut count, mut pixels) = (0, 0);
        for_each_run(geometry, &shape, |run| {
            count += 1;
            pixels += run.len;
        });
        if pixels == 0 {
            return Err(Error::EmptyRegion);
        }
        let found = runs.as_ref().len();
        if found < count {
            return Err(Error::BufferTooSmall {
                needed: count,
                found,
            });
        }
        let out = runs.as_mut();
        let mut i = 0;
        for_each_run(geometry, &shape, |run| {
            out[i] = run;
            i += 1;
        });
        Ok(Self {
            geometry,
            shape,
            runs,
            count,
            pixels,
        })
    }
}

impl<R: AsRef<[Run]>> Region<R> {
    /// The frame geometry.
    pub fn geometry(&self) -> FrameGeometry {
        self.geometry
    }

    /// The shape (centre and radii, in f64).
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Number of pixels: the length of every basis vector on this region.
    pub fn pixels(&self) -> usize {
        self.pixels
    }

    /// The runs, row-major.
    pub fn runs(&self) -> &[Run] {
        &self.runs.as_ref()[..self.count]
    }

    /// Give the runs storage back.
    pub fn into_runs(self) -> R {
        self.runs
    }

    /// The same region over borrowed runs.
    pub fn as_ref(&self) -> Region<&[Run]> {
        Region {
            geometry: self.geometry,
            shape: self.shape,
            runs: self.runs(),
            count: self.count,
            pixels: self.pixels,
        }
    }

    /// The region's pixels as (row, col), in packed order.
    pub fn coordinates(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let w = self.geometry.width();
        self.runs()
            .iter()
            .flat_map(move |run| (run.start..run.start + run.len).map(move |i| (i / w, i % w)))
    }

    /// Copy the region's pixels of `frame` into `out` in packed order, as f64.
    /// [`Error::GeometryMismatch`] if `frame` is not the geometry's area or `out` is not
    /// [`Region::pixels`] long.
    pub fn gather_f64<P: crate::Pixel>(&self, frame: &[P], out: &mut [f64]) -> Result<(), Error> {
        self.geometry.check_len(frame.len())?;
        crate::geometry::check_len(self.pixels, out.len())?;
        let mut rest = out;
        for run in self.runs() {
            let (dst, tail) = rest.split_at_mut(run.len);
            for (d, x) in dst.iter_mut().zip(&frame[run.start..run.start + run.len]) {
                *d = x.to_f64();
            }
            rest = tail;
        }
        Ok(())
    }
}

/// Call `f` with each row's runs of `shape`, top to bottom, left to right.
fn for_each_run(geometry: FrameGeometry, shape: &Shape, mut f: impl FnMut(Run)) {
    let (w, h) = (geometry.width(), geometry.height());
    let (cx, cy) = shape.centre();
    let reach = shape.outer_radius();
    // Only rows and columns within the outer radius can hold pixels (both bounds clipped).
    let lo = |c: f64| crate::math::ceil(c - reach).max(0.0);
    let hi = |c: f64, len: usize| crate::math::floor(c + reach).min(len as f64 - 1.0);
    let (row0, row1) = (lo(cy), hi(cy, h));
    let (col0, col1) = (lo(cx), hi(cx, w));
    if row0 > row1 || col0 > col1 {
        return;
    }
    // Whole numbers inside the frame here, so the casts are exact.
    let (row0, row1, col0, col1) = (row0 as usize, row1 as usize, col0 as usize, col1 as usize);
    for row in row0..=row1 {
        let dy = row as f64 - cy;
        let mut open: Option<usize> = None;
        for col in col0..=col1 {
            let dx = col as f64 - cx;
            let inside = shape.contains_d2(dx * dx + dy * dy);
            match (inside, open) {
                (true, None) => open = Some(col),
                (false, Some(start)) => {
                    f(Run {
                        start: row * w + start,
                        len: col - start,
                    });
                    open = None;
                }
                _ => {}
            }
        }
        if let Some(start) = open {
            f(Run {
                start: row * w + start,
                len: col1 + 1 - start,
            });
        }
    }
}

fn centre(cx: f32, cy: f32) -> Result<(f64, f64), Error> {
    if cx.is_finite() && cy.is_finite() {
        Ok((f64::from(cx), f64::from(cy)))
    } else {
        Err(Error::BadParameter)
    }
}

fn radius(r: f32) -> Result<f64, Error> {
    if r.is_finite() && r >= 0.0 {
        Ok(f64::from(r))
    } else {
        Err(Error::BadParameter)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn g(w: usize, h: usize) -> FrameGeometry {
        FrameGeometry::new(w, h).unwrap()
    }

    /// Membership by brute force over the whole frame, in frame-index order.
    fn brute(geometry: FrameGeometry, shape: Shape) -> Vec<usize> {
        let (cx, cy) = shape.centre();
        (0..geometry.area())
            .filter(|&i| {
                let (dx, dy) = (
                    (i % geometry.width()) as f64 - cx,
                    (i / geometry.width()) as f64 - cy,
                );
                shape.contains_d2(dx * dx + dy * dy)
            })
            .collect()
    }

    fn indices(region: &Region<Vec<Run>>) -> Vec<usize> {
        let w = region.geometry().width();
        region.coordinates().map(|(r, c)| r * w + c).collect()
    }

    #[test]
    fn disc_and_annulus_match_brute_force_and_partition() {
        let geo = g(40, 30);
        for &(cx, cy, r) in &[
            (20.0f32, 15.0f32, 5.0f32),
            (19.5, 14.5, 9.0),
            (10.3, 12.7, 0.5),
        ] {
            let runs = vec![Run::default(); Region::<Vec<Run>>::max_runs(geo)];
            let disc = Region::disc(geo, cx, cy, r, runs.clone()).unwrap();
            let shape = disc.shape();
            let want = brute(geo, shape);
            assert_eq!(indices(&disc), want);
            assert_eq!(disc.pixels(), want.len());
            assert!(disc.runs().iter().all(|run| run.len > 0));
            assert!(disc.runs().len() <= 2 * r as usize + 1);
            // The annulus from r outwards (clipped) shares no pixel with the disc.
            let ann = Region::annulus(geo, cx, cy, r, 100.0, runs).unwrap();
            let ann_px = indices(&ann);
            assert_eq!(ann_px, brute(geo, ann.shape()));
            assert!(ann_px.iter().all(|i| !want.contains(i)));
            assert_eq!(
                ann.pixels() + disc.pixels(),
                geo.area(),
                "partition of the frame"
            );
        }
        // An annulus crossing rows twice.
        let ann = Region::annulus(geo, 20.0, 15.0, 4.0, 8.0, vec![Run::default(); 60]).unwrap();
        assert!(ann.runs().len() > 17);
        assert_eq!(indices(&ann), brute(geo, ann.shape()));
    }

    #[test]
    fn gather_reads_packed_order() {
        let geo = g(9, 7);
        let region = Region::disc(geo, 4.0, 3.0, 2.0, [Run::default(); 14]).unwrap();
        let frame: Vec<u16> = (0..63).collect();
        let mut out = vec![0.0; region.pixels()];
        region.gather_f64(&frame, &mut out).unwrap();
        let w = geo.width();
        let want: Vec<f64> = region
            .coordinates()
            .map(|(r, c)| (r * w + c) as f64)
            .collect();
        assert_eq!(out, want);
        assert_eq!(out[0], 13.0); // (row 1, col 4): the disc's top pixel
        assert!(region.gather_f64(&frame[1..], &mut out).is_err());
        assert!(region.gather_f64(&frame, &mut out[1..]).is_err());
    }

    #[test]
    fn errors() {
        let geo = g(20, 10);
        let runs = || [Run::default(); 20];
        assert_eq!(
            Region::disc(geo, f32::NAN, 5.0, 2.0, runs()).unwrap_err(),
            Error::BadParameter
        );
        assert_eq!(
            Region::disc(geo, 5.0, 5.0, -1.0, runs()).unwrap_err(),
            Error::BadParameter
        );
        // 4.5 + 5 = 9.5 fits a height of 10; 4.6 + 5 does not.
        assert!(Region::disc(geo, 10.0, 4.5, 5.0, runs()).is_ok());
        assert_eq!(
            Region::disc(geo, 10.0, 4.6, 5.0, runs()).unwrap_err(),
            Error::DiscOutsideFrame
        );
        assert_eq!(
            Region::disc(geo, 2.0, 5.0, 3.0, runs()).unwrap_err(),
            Error::DiscOutsideFrame
        );
        assert_eq!(
            Region::disc(geo, 10.0, 5.0, 3.0, [Run::default(); 6]).unwrap_err(),
            Error::BufferTooSmall {
                needed: 7,
                found: 6
            }
        );
        assert_eq!(
            Region::annulus(geo, 10.0, 5.0, 3.0, 3.0, runs()).unwrap_err(),
            Error::BadParameter
        );
        assert_eq!(
            Region::annulus(geo, 10.0, 5.0, 30.0, 40.0, runs()).unwrap_err(),
            Error::EmptyRegion
        );
        assert_eq!(
            Region::annulus(geo, 100.0, 5.0, 1.0, 4.0, runs()).unwrap_err(),
            Error::EmptyRegion
        );
        // A disc of radius 0 on a pixel centre holds that pixel.
        let dot = Region::disc(geo, 3.0, 4.0, 0.0, runs()).unwrap();
        assert_eq!(dot.runs(), &[Run { start: 83, len: 1 }]);
    }
}
