//! Frame kernels of ptyflow: `#![no_std]`, no allocation, no `unsafe`.
//!
//! Every kernel works on borrowed frames (`&[P]`, P = `u8`, `u16`, `u32` or `f32`, row-major)
//! and writes into caller-owned buffers. Configuration is built and checked once
//! ([`Binner`], [`LabelMasks`], [`DenseMasks`], [`Basis`], [`Scan`]) and is then immutable, so one
//! configuration serves many threads; state that changes per frame ([`Stats`]) is separate.
//!
//! | module                | what                                                              |
//! |-----------------------|-------------------------------------------------------------------|
//! | [`bin`]               | b × b block sums of a frame or of a crop window                   |
//! | [`mask::label`]       | virtual detectors (disk, annulus, rings, sectors, rect, orthonormal bins): one pass, cost independent of K |
//! | [`mask::dense`]       | K weighted masks over their bounding window (centre of mass, bases), batched, residual of paper 002 eq. 11 |
//! | [`stats`]             | per-pixel sum and sum of squares, min, max, frame count, dose map; mergeable |
//! | [`scan`]              | frame index ↔ scan position (raster, serpentine)                  |
//! | [`basis`]             | compression by change of basis (paper 002): binning, Zernike, annular Zernike and recorded-pattern bases over the bright/dark field; per-frame coefficients, perpendicular components, angle |
//! | [`pixel`], [`geometry`], [`math`] | pixel types and accumulators; frame shape and windows; the float functions with their error bounds |
//!
//! # Conventions
//!
//! - **Coordinates.** Pixel (row, col) is element `row * width + col`; its centre is at
//!   x = col, y = row. Angles run from +x towards +y (clockwise on a display with row 0 on top).
//! - **Overwrite, except statistics.** `bin`, `project*`, `mean`, `variance` overwrite their
//!   output buffers (tested with dirty buffers). [`Stats`] accumulates into its own sums.
//! - **Checks.** Constructors validate everything and return [`Error`]; nothing panics on bad
//!   parameters. Per-frame calls check buffer lengths only (O(1)) and return
//!   [`Error::GeometryMismatch`] before touching anything; their loops then run over
//!   `chunks_exact`/`zip` without per-pixel bounds checks.
//! - **Precision.** Binning: exact `u32` for integer pixels, `f32` for `f32`. Statistics:
//!   exact `u64` for integers (see [`stats`] for the `u32` bound), `f64` for `f32`. Label
//!   projection: f64 (exact integer counts for unit weights). Dense projection: f32 in 16 lanes.
//!   Basis projection: f32 in 8 lanes per 512-pixel chunk, chunks summed in f64; region
//!   energy in f64. Each module states its bound.
//!
//! # Example
//!
//! Bin a tiny frame by 2, read two virtual detectors off the binned frame, and keep
//! statistics at binned resolution, all on stack buffers:
//!
//! ```
//! use ptyflow_core::{Binner, FrameGeometry, LabelBuilder, Stats};
//!
//! let geometry = FrameGeometry::new(8, 8)?;
//! let mut frame = [1u16; 64];
//! frame[3 * 8 + 4] = 100; // a bright pixel near the centre
//!
//! // 8 × 8 → 4 × 4 block sums, exact in u32.
//! let binner = Binner::new(geometry, 2)?;
//! let mut binned = [0u32; 16];
//! binner.bin(&frame, &mut binned)?;
//! assert_eq!(binned[1 * 4 + 2], 103); // the block holding the bright pixel
//!
//! // Bright-field disk and dark-field annulus around the binned centre (1.5, 1.5).
//! let small = binner.out_geometry();
//! let mut builder = LabelBuilder::new(small, [0u16; 16], [0f32; 16])?;
//! let bf = builder.disk(1.5, 1.5, 1.0)?;
//! let df = builder.annulus(1.5, 1.5, 1.0, 3.0)?;
//! let detectors = builder.build();
//! let mut signal = [0f32; 2];
//! detectors.project(&binned, &mut signal)?;
//! assert_eq!(signal[bf], 4.0 * 4.0 + 99.0); // four inner blocks of 4 counts, plus the spike
//! assert_eq!(signal[df], 12.0 * 4.0); // the twelve outer blocks
//!
//! // Running statistics of the binned frames, with the frame total written to a dose map.
//! let mut stats = Stats::<u32, _>::new(small, [0u64; 16], [0u64; 16])?;
//! let mut dose = [0u64; 2];
//! stats.add_with_dose(&binned, 0, &mut dose)?;
//! stats.add_with_dose(&[4; 16], 1, &mut dose)?;
//! assert_eq!(dose, [163, 64]);
//! let mut mean = [0f64; 16];
//! stats.mean(&mut mean)?;
//! assert_eq!(mean[6], 53.5);
//! assert_eq!((stats.min(), stats.max()), (Some(4), Some(103)));
//! # Ok::<(), ptyflow_core::Error>(())
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod basis;
pub mod bin;
mod error;
pub mod geometry;
pub mod mask;
pub mod math;
pub mod pixel;
pub mod scan;
pub mod stats;
pub mod sum;
#[cfg(test)]
mod testing;

pub use basis::compress::{Compressor, FrameSummary, RegionSummary, compression_ratio};
pub use basis::region::{Region, Run};
pub use basis::{Basis, MAX_BASIS};
pub use bin::{Binner, MAX_BIN_FACTOR};
pub use error::Error;
pub use geometry::{FrameGeometry, Window};
pub use mask::dense::{DenseBuilder, DenseMasks, MAX_DENSE_MASKS};
pub use mask::label::{LabelBuilder, LabelMasks, MAX_SEGMENTS, NONE};
pub use pixel::{Accumulator, Pixel, StatAccumulator};
pub use scan::{Scan, ScanKind};
pub use stats::Stats;
pub use sum::FrameSum;
