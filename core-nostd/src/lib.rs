//! Frame kernels of ptyflow (placeholder; filled by issue 2).
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
pub use error::Error;
