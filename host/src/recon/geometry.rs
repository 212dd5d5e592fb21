//! Scan geometry on the object grid: where the probe centre sits for every scan index, and how
//! large the object array must be.
//!
//! Positions are in pixels of the object array, `[row, col]` (row = y = the slow scan axis),
//! as floats (sub-pixel allowed), and mark the **probe centre**, i.e. object pixel under window
//! pixel `(M/2, M/2)` where [`ProbeParams::sample`](crate::optics::ProbeParams::sample) centres
//! the probe.

use crate::{Error, Result};

/// A raster scan: `shape[0]` rows (slow axis) × `shape[1]` columns (fast axis), scan index
/// `i = row·shape[1] + col`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RasterScan {
    /// Step between rows and between columns in Å, `[row step, column step]`.
    pub step_angstrom: [f64; 2],
    /// `[rows, columns]` of the scan.
    pub shape: [usize; 2],
    /// Scan rotation in degrees: the scan grid `(x = col·step, y = row·step)` is rotated by
    /// this angle in the image plane (x right, y down), `x' = x cos θ − y sin θ`,
    /// `y' = x sin θ + y cos θ`.
    pub rotation_deg: f64,
}

impl RasterScan {
    /// An upper bound of the object shape [`ScanGeometry::raster`] makes for this scan (at
    /// most a pixel more per axis), from the scan's four corners and without allocating; `None`
    /// when it does not fit in `usize` (or the inputs are not finite). Lets a set-up check
    /// the object against the memory budget ([`crate::budget`]) before building anything.
    pub fn object_shape_bound(
        &self,
        pixel_angstrom: f64,
        window: usize,
        margin_px: usize,
    ) -> Option<[usize; 2]> {
        let [rows, cols] = self.shape;
        let (sin, cos) = self.rotation_deg.to_radians().sin_cos();
        let mut lo = [f64::INFINITY; 2];
        let mut hi = [f64::NEG_INFINITY; 2];
        // Positions are linear in (row, col): their extremes lie at the corners.
        for r in [0, rows.saturating_sub(1)] {
            for c in [0, cols.saturating_sub(1)] {
                let y = r as f64 * self.step_angstrom[0];
                let x = c as f64 * self.step_angstrom[1];
                let p = [
                    (x * sin + y * cos) / pixel_angstrom,
                    (x * cos - y * sin) / pixel_angstrom,
                ];
                for a in 0..2 {
                    lo[a] = lo[a].min(p[a]);
                    hi[a] = hi[a].max(p[a]);
                }
            }
        }
        let extra = window
            .checked_add(margin_px.checked_mul(2)?)?
            .checked_add(2)?;
        let side = |a: usize| -> Option<usize> {
            let span = (hi[a] - lo[a]).ceil();
            // Below 2^52 the float holds the integer exactly and the cast cannot saturate.
            if !(span.is_finite() && (0.0..4.5e15).contains(&span)) {
                return None;
            }
            (span as usize).checked_add(extra)
        };
        Some([side(0)?, side(1)?])
    }
}

/// Positions of every scan index on the object grid, the object shape and its pixel size.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScanGeometry {
    /// Probe centre `[row, col]` in object pixels, one per scan index.
    pub positions: Vec<[f64; 2]>,
    /// Object array shape `[rows, cols]`.
    pub object_shape: [usize; 2],
    /// Object pixel size in Å (= the window pixel `dx = λ/(M·θ_px)`).
    pub pixel_angstrom: f64,
}

impl ScanGeometry {
    /// The geometry of a raster scan sampled with object pixels of `pixel_angstrom` Å for an
    /// `M × M` window (`window`), with `margin_px` object pixels beyond every window.
    ///
    /// The smallest rotated scan coordinate lands at `margin_px + M/2`, so every window
    /// (`round(position) − M/2 … + M`) lies inside the object of shape
    /// `ceil(span) + M + 2·margin_px` per axis.
    pub fn raster(
        scan: &RasterScan,
        pixel_angstrom: f64,
        window: usize,
        margin_px: usize,
    ) -> Result<Self> {
        let [rows, cols] = scan.shape;
        if rows == 0 || cols == 0 {
            return Err(Error::param(
                "scan.shape",
                format!("{rows}×{cols}, expected at least 1×1"),
            ));
        }
        for s in scan.step_angstrom {
            if !(s.is_finite() && s > 0.0) {
                return Err(Error::param(
                    "optics.step_angstrom",
                    format!("{s} Å, expected > 0"),
                ));
            }
        }
        if !(pixel_angstrom.is_finite() && pixel_angstrom > 0.0) {
            return Err(Error::param(
                "pixel size",
                format!("{pixel_angstrom} Å, expected > 0"),
            ));
        }
        if !scan.rotation_deg.is_finite() {
            return Err(Error::param(
                "optics.scan_rotation_deg",
                "expected a finite angle",
            ));
        }
        // Sizes follow from user input: bound the object before allocating anything.
        if scan
            .object_shape_bound(pixel_angstrom, window, margin_px)
            .is_none()
        {
            return Err(Error::memory(
                "optics.step_angstrom",
                format!(
                    "{:?} Å steps over the {rows} × {cols} scan at {pixel_angstrom} Å per pixel \
                     make an object whose size overflows",
                    scan.step_angstrom
                ),
                None,
                None,
            ));
        }
        let (sin, cos) = scan.rotation_deg.to_radians().sin_cos();
        let n = crate::budget::checked_len(&[rows, cols], "scan.shape", "scan positions")?;
        let mut raw = crate::budget::try_with_capacity(n, "scan.shape", "scan positions")?;
        for r in 0..rows {
            for c in 0..cols {
                let y = r as f64 * scan.step_angstrom[0];
                let x = c as f64 * scan.step_angstrom[1];
                let xr = x * cos - y * sin;
                let yr = x * sin + y * cos;
                raw.push([yr / pixel_angstrom, xr / pixel_angstrom]);
            }
        }
        let mut lo = [f64::INFINITY; 2];
        let mut hi = [f64::NEG_INFINITY; 2];
        for p in &raw {
            for a in 0..2 {
                lo[a] = lo[a].min(p[a]);
                hi[a] = hi[a].max(p[a]);
            }
        }
        let offset = (margin_px + window / 2) as f64;
        let mut positions = crate::budget::try_with_capacity(n, "scan.shape", "scan positions")?;
        positions.extend(
            raw.iter()
                .map(|p: &[f64; 2]| [p[0] - lo[0] + offset, p[1] - lo[1] + offset]),
        );
        // Guard the rounding of an exact x.5 span with one extra pixel.
        let size = |a: usize| ((hi[a] - lo[a]).ceil() as usize) + window + 2 * margin_px + 1;
        let geometry = ScanGeometry {
            positions,
            object_shape: [size(0), size(1)],
            pixel_angstrom,
        };
        geometry.validate(window)?;
        Ok(geometry)
    }

    /// Object pixel `[row, col]` under the probe centre at the first scan index (scan position
    /// `(0, 0)` of a raster).
    pub fn origin_px(&self) -> [f64; 2] {
        self.positions.first().copied().unwrap_or([0.0, 0.0])
    }

    /// Checks that every window `round(position) − M/2 … + M` lies inside the object.
    pub fn validate(&self, window: usize) -> Result<()> {
        let [rows, cols] = self.object_shape;
        for (i, p) in self.positions.iter().enumerate() {
            if !(p[0].is_finite() && p[1].is_finite()) {
                return Err(Error::param(
                    "positions",
                    format!("scan index {i}: non-finite position {p:?}"),
                ));
            }
            let r0 = p[0].round() - (window / 2) as f64;
            let c0 = p[1].round() - (window / 2) as f64;
            if r0 < 0.0
                || c0 < 0.0
                || r0 + window as f64 > rows as f64
                || c0 + window as f64 > cols as f64
            {
                return Err(Error::param(
                    "positions",
                    format!(
                        "scan index {i}: the {window}×{window} window at probe centre {p:?} \
                         leaves the {rows}×{cols} object; enlarge the object or its margin"
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raster_positions_fit_and_start_at_margin() {
        let scan = RasterScan {
            step_angstrom: [2.0, 1.0],
            shape: [3, 4],
            rotation_deg: 0.0,
        };
        let g = ScanGeometry::raster(&scan, 0.5, 16, 2).unwrap();
        assert_eq!(g.positions.len(), 12);
        assert_eq!(g.origin_px(), [10.0, 10.0]);
        // Row step 2 Å = 4 px along rows (y), column step 1 Å = 2 px along columns (x).
        assert_eq!(g.positions[1], [10.0, 12.0]);
        assert_eq!(g.positions[4], [14.0, 10.0]);
        assert_eq!(g.object_shape, [8 + 16 + 4 + 1, 6 + 16 + 4 + 1]);
    }

    #[test]
    fn rotated_raster_is_rotated_and_validates() {
        let scan = RasterScan {
            step_angstrom: [1.0, 1.0],
            shape: [5, 5],
            rotation_deg: 90.0,
        };
        let g = ScanGeometry::raster(&scan, 1.0, 8, 0).unwrap();
        // 90°: the fast axis (x) turns into +y.
        let d = [
            g.positions[1][0] - g.positions[0][0],
            g.positions[1][1] - g.positions[0][1],
        ];
        assert!((d[0] - 1.0).abs() < 1e-12 && d[1].abs() < 1e-12, "{d:?}");
        let scan = RasterScan {
            rotation_deg: 17.0,
            ..scan
        };
        assert!(ScanGeometry::raster(&scan, 0.37, 8, 1).is_ok());
        let mut bad = g.clone();
        bad.positions[3] = [0.0, 0.0];
        assert!(bad.validate(8).is_err());
    }
}
