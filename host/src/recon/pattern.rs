//! A measured pattern as the reconstruction reads it: converted once from the detector layout
//! to `√I` in FFT order, transposed, with its total and largest count ([`PreparedPattern`]).

use crate::{Error, Result};

/// One measured pattern, prepared once for the reconstruction: `√I` (counts) in FFT order,
/// transposed, plus the total counts `N_j` and the largest count.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedPattern {
    pub(super) m: usize,
    pub(super) amp_t: Vec<f32>,
    pub(super) total: f64,
    pub(super) max_count: f32,
}

impl PreparedPattern {
    /// An empty (zero) pattern for an `M × M` window; fill it with [`PreparedPattern::prepare`].
    pub fn new(m: usize) -> Self {
        PreparedPattern {
            m,
            amp_t: vec![0.0; m * m],
            total: 0.0,
            max_count: 0.0,
        }
    }

    /// A pattern prepared from an `M × M` detector frame (allocates; see
    /// [`PreparedPattern::prepare`] for the reusable form).
    pub fn from_frame<T: Copy + Into<f64>>(frame: &[T], m: usize) -> Result<Self> {
        let mut p = PreparedPattern::new(m);
        p.prepare(frame)?;
        Ok(p)
    }

    /// Fills this buffer from an `M × M` frame in the **detector layout** (row-major, zero
    /// scattering angle at pixel `(M/2, M/2)`), already binned/cropped to the window by the
    /// caller. Any pixel type that converts to `f64` (u8, u16, u32, f32, f64). Negative values
    /// (e.g. after dark subtraction) count as 0. Does not allocate.
    ///
    /// Stores `√I` in FFT order (`ifftshift`: detector pixel `(M/2, M/2)` → `[0, 0]`),
    /// transposed (`amp[kx·M + ky]`), the total counts `N_j = Σ I` and `max I`.
    pub fn prepare<T: Copy + Into<f64>>(&mut self, frame: &[T]) -> Result<()> {
        let m = self.m;
        if frame.len() != m * m {
            return Err(Error::param(
                "frame",
                format!(
                    "{} pixels, expected {m}×{m} = {} (bin/crop to the window first)",
                    frame.len(),
                    m * m
                ),
            ));
        }
        let h = m / 2;
        let mut total = 0.0f64;
        let mut max = 0.0f32;
        for (y, row) in frame.chunks_exact(m).enumerate() {
            // ifftshift: detector row y holds frequency row ky with y = (ky + M/2) mod M.
            let ky = (y + m - h) % m;
            for (x, &v) in row.iter().enumerate() {
                let kx = (x + m - h) % m;
                let v: f64 = v.into();
                if !v.is_finite() {
                    return Err(Error::param(
                        "frame",
                        format!("non-finite value {v} at pixel ({y}, {x})"),
                    ));
                }
                let v = v.max(0.0);
                total += v;
                max = max.max(v as f32);
                self.amp_t[kx * m + ky] = (v as f32).sqrt();
            }
        }
        self.total = total;
        self.max_count = max;
        Ok(())
    }

    /// The window side `M`.
    pub fn window(&self) -> usize {
        self.m
    }

    /// `N_j`, the counts the model pattern is scaled to.
    pub fn total_counts(&self) -> f64 {
        self.total
    }

    /// Overrides `N_j`, e.g. with the counts of the whole beam when the frame was cropped to
    /// the window (paper 001 scales by the total probability over the probability on the
    /// detector).
    pub fn set_total_counts(&mut self, counts: f64) {
        self.total = counts;
    }

    /// The largest count of the pattern.
    pub fn max_count(&self) -> f32 {
        self.max_count
    }

    /// `√I` in FFT order, transposed: `amp[kx·M + ky]`.
    pub fn amplitude_transposed(&self) -> &[f32] {
        &self.amp_t
    }

    /// The intensity back in the detector layout (row-major, zero angle at `(M/2, M/2)`);
    /// allocates (for inspection and tests).
    pub fn intensity_detector_layout(&self) -> Vec<f32> {
        let m = self.m;
        let h = m / 2;
        let mut out = vec![0.0; m * m];
        for y in 0..m {
            let ky = (y + m - h) % m;
            for x in 0..m {
                let kx = (x + m - h) % m;
                let a = self.amp_t[kx * m + ky];
                out[y * m + x] = a * a;
            }
        }
        out
    }
}
