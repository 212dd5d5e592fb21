//! The core's one error type: small, `Copy`, no allocation.

use core::fmt;

/// Why a kernel refused its configuration or a buffer.
///
/// Kernels check their configuration once, when they are built. Per-frame calls only compare
/// buffer lengths (O(1), never per pixel) and return [`Error::GeometryMismatch`] on a wrong one,
/// so firmware never panics on a bad buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Width or height is zero, or width × height overflows `usize`.
    EmptyGeometry,
    /// A buffer's length does not equal what the geometry implies.
    GeometryMismatch {
        /// The length the geometry implies.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// A buffer is shorter than needed.
    BufferTooSmall {
        /// The length needed.
        needed: usize,
        /// The length given.
        found: usize,
    },
    /// A bin factor outside 1…16.
    BadFactor(usize),
    /// A bin factor that does not divide the (cropped) width or height.
    FactorDoesNotDivide {
        /// The bin factor.
        factor: usize,
        /// The dimension it does not divide.
        dim: usize,
    },
    /// A crop window that does not fit inside the frame.
    CropOutOfBounds,
    /// More masks or segments than the kernel's capacity.
    TooManyMasks {
        /// The capacity.
        max: usize,
        /// The number asked for.
        found: usize,
    },
    /// A mask, segment or region index that does not exist.
    BadIndex(usize),
    /// A geometric parameter (radius, count, angle) that is negative, not finite or inverted.
    BadParameter,
    /// A scan with zero rows or columns, or a frame index beyond the scan.
    OutOfScan,
    /// A virtual-detector region claims a pixel that another segment already owns.
    Overlap {
        /// Row of the first contested pixel.
        row: usize,
        /// Column of the first contested pixel.
        col: usize,
    },
    /// Mean or variance asked of statistics that have seen no frame.
    NoFrames,
    /// A disc (bright-field region) that does not lie wholly inside the frame: centre ± radius
    /// leaves the frame's extent −0.5 … width − 0.5 (or height − 0.5).
    DiscOutsideFrame,
    /// A region (disc or annulus) that holds no pixel centre of the frame.
    EmptyRegion,
    /// More basis vectors asked for than the region has pixels: they cannot be independent.
    TooManyVectors {
        /// Pixels in the region (the most independent vectors it holds).
        pixels: usize,
        /// Vectors asked for.
        found: usize,
    },
    /// Gram–Schmidt: input vector `index` (0-based, in input order) is zero or (nearly) in the
    /// span of the vectors before it.
    LinearlyDependent {
        /// Which input vector.
        index: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::EmptyGeometry => f.write_str("frame width and height must be non-zero"),
            Error::GeometryMismatch { expected, found } => {
                write!(
                    f,
                    "buffer length {found} does not match the geometry (expected {expected})"
                )
            }
            Error::BufferTooSmall { needed, found } => {
                write!(f, "buffer too small: {found} elements, need {needed}")
            }
            Error::BadFactor(b) => write!(f, "bin factor {b} outside 1..=16"),
            Error::FactorDoesNotDivide { factor, dim } => {
                write!(f, "bin factor {factor} does not divide {dim}")
            }
            Error::CropOutOfBounds => f.write_str("crop window does not fit inside the frame"),
            Error::TooManyMasks { max, found } => {
                write!(f, "{found} masks requested, capacity is {max}")
            }
            Error::BadIndex(i) => write!(f, "index {i} does not exist"),
            Error::BadParameter => {
                f.write_str("geometric parameter is negative, not finite, or inverted")
            }
            Error::OutOfScan => f.write_str("scan is empty or the index lies outside it"),
            Error::Overlap { row, col } => {
                write!(
                    f,
                    "pixel (row {row}, col {col}) already belongs to a segment"
                )
            }
            Error::NoFrames => f.write_str("no frame has been accumulated yet"),
            Error::DiscOutsideFrame => {
                f.write_str("disc (centre ± radius) does not lie wholly inside the frame")
            }
            Error::EmptyRegion => f.write_str("region holds no pixel of the frame"),
            Error::TooManyVectors { pixels, found } => write!(
                f,
                "{found} basis vectors requested, the region has only {pixels} pixels"
            ),
            Error::LinearlyDependent { index } => write!(
                f,
                "basis vector {index} is zero or lies in the span of the vectors before it"
            ),
        }
    }
}

impl core::error::Error for Error {}

/// One test per variant: the cheapest public call that must return it (each module's own
/// `errors` test covers the other ways to reach it).
#[cfg(test)]
mod tests {
    extern crate std;
    use super::Error;
    use crate::*;
    use std::string::ToString;

    fn g(w: usize, h: usize) -> FrameGeometry {
        FrameGeometry::new(w, h).unwrap()
    }

    fn labels(geometry: FrameGeometry) -> LabelBuilder<[u16; 16], [f32; 16]> {
        LabelBuilder::new(geometry, [0; 16], [0.0; 16]).unwrap()
    }

    #[track_caller]
    fn check<T: core::fmt::Debug>(r: Result<T, Error>, want: Error) {
        assert_eq!(r.unwrap_err(), want);
        assert!(!want.to_string().is_empty());
    }

    #[test]
    fn empty_geometry() {
        check(FrameGeometry::new(0, 1), Error::EmptyGeometry);
    }

    #[test]
    fn geometry_mismatch() {
        let e = Error::GeometryMismatch {
            expected: 16,
            found: 15,
        };
        check(
            Binner::new(g(4, 4), 1)
                .unwrap()
                .bin(&[0u8; 15], &mut [0; 16]),
            e,
        );
    }

    #[test]
    fn buffer_too_small() {
        let mut s = Stats::<u8, _>::new(g(4, 4), [0u64; 16], [0u64; 16]).unwrap();
        let e = Error::BufferTooSmall {
            needed: 5,
            found: 4,
        };
        check(s.add_with_dose(&[0; 16], 4, &mut [0; 4]), e);
    }

    #[test]
    fn bad_factor() {
        check(Binner::new(g(4, 4), 17), Error::BadFactor(17));
    }

    #[test]
    fn factor_does_not_divide() {
        check(
            Binner::new(g(4, 6), 4),
            Error::FactorDoesNotDivide { factor: 4, dim: 6 },
        );
    }

    #[test]
    fn crop_out_of_bounds() {
        let w = Window {
            x0: 3,
            y0: 0,
            width: 2,
            height: 2,
        };
        check(Binner::with_window(g(4, 4), 1, w), Error::CropOutOfBounds);
    }

    #[test]
    fn too_many_masks() {
        let e = Error::TooManyMasks {
            max: MAX_SEGMENTS,
            found: 257,
        };
        check(labels(g(4, 4)).rings(1.0, 1.0, 0.0, 2.0, 257), e);
    }

    #[test]
    fn bad_index() {
        check(
            labels(g(4, 4)).custom(1, |_, _| Some((1, 1.0))),
            Error::BadIndex(1),
        );
    }

    #[test]
    fn bad_parameter() {
        check(
            labels(g(4, 4)).disk(1.0, 1.0, f32::NAN),
            Error::BadParameter,
        );
    }

    #[test]
    fn out_of_scan() {
        check(Scan::new(0, 1, ScanKind::Raster), Error::OutOfScan);
    }

    #[test]
    fn overlap() {
        let mut b = labels(g(4, 4));
        b.disk(1.0, 1.0, 1.0).unwrap();
        check(b.disk(2.0, 1.0, 1.0), Error::Overlap { row: 1, col: 1 });
    }

    #[test]
    fn disc_outside_frame() {
        check(
            Region::disc(g(8, 8), 1.0, 4.0, 2.0, [Run::default(); 16]),
            Error::DiscOutsideFrame,
        );
    }

    #[test]
    fn empty_region() {
        check(
            Region::annulus(g(8, 8), 4.0, 4.0, 20.0, 30.0, [Run::default(); 16]),
            Error::EmptyRegion,
        );
    }

    #[test]
    fn too_many_vectors() {
        let disc = Region::disc(g(8, 8), 4.0, 4.0, 0.0, [Run::default(); 16]).unwrap();
        check(
            Basis::zernike(disc, 2, [0.0f32; 2], &mut [0.0; 1]),
            Error::TooManyVectors {
                pixels: 1,
                found: 2,
            },
        );
    }

    #[test]
    fn linearly_dependent() {
        let disc = Region::disc(g(8, 8), 4.0, 4.0, 1.0, [Run::default(); 16]).unwrap();
        let frame = [1u8; 64];
        check(
            Basis::from_patterns(disc, [&frame[..], &frame[..]], [0.0f32; 10], &mut [0.0; 5]),
            Error::LinearlyDependent { index: 1 },
        );
    }

    #[test]
    fn no_frames() {
        let s = Stats::<f32, _>::new(g(4, 4), [0f64; 16], [0f64; 16]).unwrap();
        check(s.variance(&mut [0.0; 16]), Error::NoFrames);
    }
}
