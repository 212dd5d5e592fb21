//! ptyflow: streaming 4D-STEM reduction and online ptychography.
#![deny(missing_docs)]

pub mod benchmark;
pub mod budget;
pub mod capi;
#[cfg(feature = "cli")]
pub mod cli;
pub mod error;
pub mod fourier;
#[doc(hidden)]
pub mod fuzzing;
pub mod job;
pub mod metrics;
pub mod optics;
pub mod output;
pub mod pipeline;
pub mod plot;
pub mod recon;
pub mod sim;
pub mod simd;
pub mod source;

pub use error::{Error, Result};
