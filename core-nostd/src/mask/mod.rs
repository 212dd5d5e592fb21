//! Mask projection: K coefficients per frame.
//!
//! - [`label`]: virtual detectors (disk, annulus, rings, sectors, rectangles, orthonormal
//!   bins) where each pixel belongs to at most one segment; one pass, cost independent of K.
//! - [`dense`]: arbitrary weighted masks (centre of mass, Zernike or recorded-pattern bases)
//!   stored over their bounding box; batched so the masks stay in cache; per-region residual.

pub mod dense;
pub mod label;
