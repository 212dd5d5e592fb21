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
        }
    }
}

impl core::error::Error for Error {}
