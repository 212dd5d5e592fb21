//! Frame shape and rectangular windows inside a frame.
//!
//! Frames are row-major: pixel (row, col) is element `row * width + col`. Its centre has the
//! coordinates x = col, y = row (so pixel (0, 0) covers −0.5 ≤ x, y < 0.5).

use crate::Error;
use crate::math;

/// Width and height of a frame, both non-zero, with `width * height` fitting in `usize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameGeometry {
    // Crate-visible so a window's size (non-empty, checked when it was made) can become a
    // geometry without re-checking.
    pub(crate) width: usize,
    pub(crate) height: usize,
}

impl FrameGeometry {
    /// A `width` × `height` frame; [`Error::EmptyGeometry`] if either is zero or the area overflows.
    pub const fn new(width: usize, height: usize) -> Result<Self, Error> {
        if width == 0 || height == 0 || width.checked_mul(height).is_none() {
            return Err(Error::EmptyGeometry);
        }
        Ok(Self { width, height })
    }

    /// Pixels per row.
    pub const fn width(&self) -> usize {
        self.width
    }

    /// Rows.
    pub const fn height(&self) -> usize {
        self.height
    }

    /// `width * height`, the length of a frame buffer.
    pub const fn area(&self) -> usize {
        self.width * self.height
    }

    /// `Ok` if `len` is the frame's area, else [`Error::GeometryMismatch`].
    pub const fn check_len(&self, len: usize) -> Result<(), Error> {
        check_len(self.area(), len)
    }
}

/// `Ok` if `found == expected`, else [`Error::GeometryMismatch`].
pub(crate) const fn check_len(expected: usize, found: usize) -> Result<(), Error> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::GeometryMismatch { expected, found })
    }
}

/// A rectangle of whole pixels: columns `x0 .. x0 + width`, rows `y0 .. y0 + height`.
///
/// Used as a crop window ([`crate::Binner`]), a rectangle detector and the bounding box of
/// dense masks. A window is only checked against a frame where it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// First column.
    pub x0: usize,
    /// First row.
    pub y0: usize,
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
}

impl Window {
    /// The whole frame.
    pub const fn full(geometry: FrameGeometry) -> Self {
        Self {
            x0: 0,
            y0: 0,
            width: geometry.width,
            height: geometry.height,
        }
    }

    /// `width * height`.
    pub const fn area(&self) -> usize {
        self.width * self.height
    }

    /// `Ok` if the window is non-empty ([`Error::EmptyGeometry`]) and lies inside the frame
    /// ([`Error::CropOutOfBounds`]).
    pub fn check(&self, geometry: FrameGeometry) -> Result<(), Error> {
        if self.width == 0 || self.height == 0 {
            return Err(Error::EmptyGeometry);
        }
        let right = self.x0.checked_add(self.width);
        let bottom = self.y0.checked_add(self.height);
        match (right, bottom) {
            (Some(r), Some(b)) if r <= geometry.width && b <= geometry.height => Ok(()),
            _ => Err(Error::CropOutOfBounds),
        }
    }

    /// The pixels whose centres lie in the square [`cx` − `r`, `cx` + `r`] × [`cy` − `r`, `cy` + `r`],
    /// clipped to the frame: a window holding every pixel centre within distance `r` of
    /// (`cx`, `cy`), for masks over a disc.
    ///
    /// [`Error::BadParameter`] for a non-finite centre or a negative or non-finite radius,
    /// [`Error::CropOutOfBounds`] if no pixel centre of the frame lies in the disc's box.
    pub fn bounding_disk(geometry: FrameGeometry, cx: f32, cy: f32, r: f32) -> Result<Self, Error> {
        if !(cx.is_finite() && cy.is_finite() && r.is_finite() && r >= 0.0) {
            return Err(Error::BadParameter);
        }
        let (cx, cy, r) = (f64::from(cx), f64::from(cy), f64::from(r));
        let span = |c: f64, len: usize| -> Option<(usize, usize)> {
            let lo = math::ceil(c - r).max(0.0);
            let hi = math::floor(c + r).min(len as f64 - 1.0);
            // Both are whole numbers in [0, len) here, so the casts are exact.
            (lo <= hi).then(|| (lo as usize, hi as usize + 1 - lo as usize))
        };
        match (span(cx, geometry.width), span(cy, geometry.height)) {
            (Some((x0, width)), Some((y0, height))) => Ok(Self {
                x0,
                y0,
                width,
                height,
            }),
            _ => Err(Error::CropOutOfBounds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_rejects_empty_and_overflow() {
        assert_eq!(FrameGeometry::new(0, 3), Err(Error::EmptyGeometry));
        assert_eq!(FrameGeometry::new(3, 0), Err(Error::EmptyGeometry));
        assert_eq!(FrameGeometry::new(usize::MAX, 2), Err(Error::EmptyGeometry));
        let g = FrameGeometry::new(5, 3).unwrap();
        assert_eq!((g.width(), g.height(), g.area()), (5, 3, 15));
        assert_eq!(
            g.check_len(14),
            Err(Error::GeometryMismatch {
                expected: 15,
                found: 14
            })
        );
    }

    #[test]
    fn window_check() {
        let g = FrameGeometry::new(8, 6).unwrap();
        let w = |x0, y0, width, height| Window {
            x0,
            y0,
            width,
            height,
        };
        assert_eq!(w(0, 0, 8, 6).check(g), Ok(()));
        assert_eq!(w(1, 0, 8, 6).check(g), Err(Error::CropOutOfBounds));
        assert_eq!(w(0, 1, 8, 6).check(g), Err(Error::CropOutOfBounds));
        assert_eq!(w(usize::MAX, 0, 2, 1).check(g), Err(Error::CropOutOfBounds));
        assert_eq!(w(0, 0, 0, 1).check(g), Err(Error::EmptyGeometry));
    }

    #[test]
    fn bounding_disk_matches_brute_force() {
        let g = FrameGeometry::new(40, 30).unwrap();
        for &(cx, cy, r) in &[
            (20.0, 15.0, 5.0),
            (0.3, 29.7, 3.2),
            (-2.0, 10.0, 2.5),
            (20.5, 15.5, 0.4),
        ] {
            let b = Window::bounding_disk(g, cx, cy, r);
            let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
            for row in 0..30 {
                for col in 0..40 {
                    let (dx, dy) = (col as f64 - cx as f64, row as f64 - cy as f64);
                    if dx * dx + dy * dy <= (r as f64) * (r as f64) {
                        (x0, y0, x1, y1) = (x0.min(col), y0.min(row), x1.max(col), y1.max(row));
                    }
                }
            }
            if x0 == usize::MAX {
                // No pixel centre in the disc: nothing to contain (the square may still hold
                // pixels, so the window may exist).
                continue;
            }
            let b = b.unwrap();
            assert!(b.x0 <= x0 && b.y0 <= y0, "{b:?}");
            assert!(b.x0 + b.width > x1 && b.y0 + b.height > y1, "{b:?}");
            assert!(b.width <= 2 * (r as usize) + 2 && b.height <= 2 * (r as usize) + 2);
        }
        assert_eq!(
            Window::bounding_disk(g, 100.0, 5.0, 2.0),
            Err(Error::CropOutOfBounds)
        );
        assert_eq!(
            Window::bounding_disk(g, 1.0, 5.0, f32::NAN),
            Err(Error::BadParameter)
        );
    }
}
