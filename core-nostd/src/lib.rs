//! Frame kernels of ptyflow (docs filled in below).
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bin;
mod error;
mod geometry;
pub mod mask;
pub mod math;
mod pixel;
#[cfg(test)]
mod testing;

pub use bin::{Binner, MAX_BIN_FACTOR};
pub use error::Error;
pub use geometry::{FrameGeometry, Window};
pub use mask::dense::{DenseBuilder, DenseMasks};
pub use mask::label::{LabelBuilder, LabelMasks};
pub use pixel::{Accumulator, Pixel, StatAccumulator};
