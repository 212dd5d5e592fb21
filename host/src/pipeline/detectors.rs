//! Virtual detectors as the user names them (`--virtual bf`, `adf:IN:OUT`, `rings:N:IN:OUT`,
//! `dpc`, `com`) and the bright-field disc they are placed around.
//!
//! Radii are given in pixels of the unbinned detector, or in mrad when `--mrad-per-px` is set.
//! Pixel `(row, col)` has its centre at `x = col`, `y = row` (the core's convention).

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// One `--virtual` flag, as parsed. Radii in the unit the user chose (px or mrad).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VirtualSpec {
    /// Bright field: a disc of the bright-field radius.
    BrightField,
    /// Annular dark field between two radii.
    Adf {
        /// Inner radius.
        inner: f64,
        /// Outer radius.
        outer: f64,
    },
    /// `n` equal-width rings between two radii (paper 001 uses 64 dark-field rings).
    Rings {
        /// Number of rings.
        n: usize,
        /// Inner radius of the innermost ring.
        inner: f64,
        /// Outer radius of the outermost ring.
        outer: f64,
    },
    /// Differential phase contrast: four quadrants of the bright-field disc, numbered
    /// counter-clockwise from +x (segment k spans angles [k·90°, (k+1)·90°), y pointing down
    /// the rows).
    Dpc,
    /// Centre of mass in x and y over the whole frame, in pixels relative to the disc centre.
    Com,
}

impl VirtualSpec {
    /// The kind, which names the output (`virtual_<kind>.npy`; a second detector of the same
    /// kind gets `_2`, and so on).
    pub fn kind(&self) -> &'static str {
        match *self {
            VirtualSpec::BrightField => "bf",
            VirtualSpec::Adf { .. } => "adf",
            VirtualSpec::Rings { .. } => "rings",
            VirtualSpec::Dpc => "dpc",
            VirtualSpec::Com => "com",
        }
    }

    /// Converts radii to unbinned detector pixels (`mrad_per_px = None`: they already are).
    pub fn to_pixels(self, mrad_per_px: Option<f64>) -> VirtualSpec {
        let s = mrad_per_px.map_or(1.0, |m| 1.0 / m);
        match self {
            VirtualSpec::Adf { inner, outer } => VirtualSpec::Adf {
                inner: inner * s,
                outer: outer * s,
            },
            VirtualSpec::Rings { n, inner, outer } => VirtualSpec::Rings {
                n,
                inner: inner * s,
                outer: outer * s,
            },
            other => other,
        }
    }
}

impl fmt::Display for VirtualSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            VirtualSpec::BrightField => f.write_str("bf"),
            VirtualSpec::Adf { inner, outer } => write!(f, "adf:{inner}:{outer}"),
            VirtualSpec::Rings { n, inner, outer } => write!(f, "rings:{n}:{inner}:{outer}"),
            VirtualSpec::Dpc => f.write_str("dpc"),
            VirtualSpec::Com => f.write_str("com"),
        }
    }
}

/// In a configuration a detector is its text form (`"adf:20:60"`).
impl serde::Serialize for VirtualSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for VirtualSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|e: Error| match e {
            Error::Param { msg, .. } => serde::de::Error::custom(msg),
            other => serde::de::Error::custom(other),
        })
    }
}

impl FromStr for VirtualSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::param(
                "reduce.virtual",
                format!(
                    "`{s}`: {why}; expected one of bf, adf:INNER:OUTER, rings:N:INNER:OUTER, dpc, com"
                ),
            )
        };
        let parts: Vec<&str> = s.trim().split(':').collect();
        let radius = |text: &str| -> Result<f64> {
            match text.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                _ => Err(bad(&format!("radius `{text}` is not a number ≥ 0"))),
            }
        };
        let ordered = |inner: f64, outer: f64| {
            if inner < outer {
                Ok(())
            } else {
                Err(bad("the inner radius must be below the outer"))
            }
        };
        match parts.as_slice() {
            ["bf"] => Ok(VirtualSpec::BrightField),
            ["dpc"] => Ok(VirtualSpec::Dpc),
            ["com"] => Ok(VirtualSpec::Com),
            ["adf", i, o] => {
                let (inner, outer) = (radius(i)?, radius(o)?);
                ordered(inner, outer)?;
                Ok(VirtualSpec::Adf { inner, outer })
            }
            ["rings", n, i, o] => {
                let n: usize = n
                    .trim()
                    .parse()
                    .ok()
                    .filter(|&n| (1..=256).contains(&n))
                    .ok_or_else(|| bad(&format!("ring count `{n}` is not in 1..=256")))?;
                let (inner, outer) = (radius(i)?, radius(o)?);
                ordered(inner, outer)?;
                Ok(VirtualSpec::Rings { n, inner, outer })
            }
            _ => Err(bad("unknown detector")),
        }
    }
}

/// The bright-field disc on the detector, in unbinned pixels.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Disc {
    /// Centre column (x).
    pub cx: f64,
    /// Centre row (y).
    pub cy: f64,
    /// Radius.
    pub r: f64,
}

/// Finds the bright-field disc in a mean pattern (row-major `height × width`).
///
/// The disc is the set of pixels brighter than half-way between the frame's dark level (its
/// median) and its bright level (the mean of the brightest 1 % of pixels): the centre is that
/// set's intensity-weighted centroid and the radius `√(area/π)`. Returns `None` when the
/// pattern has no contrast (e.g. all dark), so the caller can ask for `--center/--bf-radius`.
pub fn find_bright_field(mean: &[f64], width: usize, height: usize) -> Option<Disc> {
    if mean.len() != width * height || mean.is_empty() {
        return None;
    }
    let mut sorted: Vec<f64> = mean.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_unstable_by(f64::total_cmp);
    let dark = sorted[sorted.len() / 2];
    let top = (sorted.len() / 100).max(1);
    let bright = sorted[sorted.len() - top..].iter().sum::<f64>() / top as f64;
    if bright <= dark || bright <= 0.0 {
        return None;
    }
    let threshold = 0.5 * (dark + bright);
    let (mut area, mut wsum, mut sx, mut sy) = (0usize, 0.0, 0.0, 0.0);
    for (row, line) in mean.chunks_exact(width).enumerate() {
        for (col, &v) in line.iter().enumerate() {
            if v > threshold {
                area += 1;
                wsum += v;
                sx += v * col as f64;
                sy += v * row as f64;
            }
        }
    }
    if area == 0 || wsum <= 0.0 {
        return None;
    }
    Some(Disc {
        cx: sx / wsum,
        cy: sy / wsum,
        r: (area as f64 / std::f64::consts::PI).sqrt(),
    })
}

/// Frames sampled (evenly over the dump) to find the bright-field disc before the run.
pub const DISC_SAMPLE_FRAMES: usize = 256;

/// Estimates the bright-field disc from the mean of up to 256 frames spread over the dump.
pub fn estimate_disc(dump: &crate::source::Dump) -> Result<Option<Disc>> {
    let info = dump.info();
    let (w, h, n) = (info.width, info.height, info.frames);
    if n == 0 {
        return Ok(None);
    }
    let take = n.min(DISC_SAMPLE_FRAMES);
    let mut mean = vec![0.0f64; w * h];
    let mut reader = dump.reader();
    for k in 0..take {
        let index = k * n / take;
        let add = |m: &mut [f64], it: &mut dyn Iterator<Item = f64>| {
            for (a, v) in m.iter_mut().zip(it) {
                *a += v;
            }
        };
        match reader.frame(index)? {
            crate::source::Frame::U8(f) => add(&mut mean, &mut f.iter().map(|&v| v as f64)),
            crate::source::Frame::U16(f) => add(&mut mean, &mut f.iter().map(|&v| v as f64)),
            crate::source::Frame::U32(f) => add(&mut mean, &mut f.iter().map(|&v| v as f64)),
            crate::source::Frame::F32(f) => add(&mut mean, &mut f.iter().map(|&v| v as f64)),
        }
    }
    // Frames that read as zeros because the file shrank are an error, not a disc.
    dump.check_frames(0..n)?;
    Ok(find_bright_field(&mean, w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            "bf".parse::<VirtualSpec>().unwrap(),
            VirtualSpec::BrightField
        );
        assert_eq!("dpc".parse::<VirtualSpec>().unwrap(), VirtualSpec::Dpc);
        assert_eq!("com".parse::<VirtualSpec>().unwrap(), VirtualSpec::Com);
        assert_eq!(
            "adf:20:60".parse::<VirtualSpec>().unwrap(),
            VirtualSpec::Adf {
                inner: 20.0,
                outer: 60.0
            }
        );
        assert_eq!(
            "rings:64:30.5:120".parse::<VirtualSpec>().unwrap(),
            VirtualSpec::Rings {
                n: 64,
                inner: 30.5,
                outer: 120.0
            }
        );
        for spec in ["bf", "adf:20:60", "rings:64:30.5:120", "dpc", "com"] {
            assert_eq!(spec.parse::<VirtualSpec>().unwrap().to_string(), spec);
        }
    }

    #[test]
    fn rejects_bad_specs_naming_the_flag() {
        for bad in [
            "",
            "haadf",
            "adf:60:20",
            "adf:x:20",
            "adf:-1:20",
            "rings:0:1:2",
            "rings:300:1:2",
            "adf:1",
        ] {
            let e = bad.parse::<VirtualSpec>().unwrap_err().to_string();
            assert!(
                e.contains("reduce.virtual") && e.contains(bad),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn mrad_radii_convert_to_pixels() {
        let spec = VirtualSpec::Adf {
            inner: 40.0,
            outer: 80.0,
        }
        .to_pixels(Some(2.0));
        assert_eq!(
            spec,
            VirtualSpec::Adf {
                inner: 20.0,
                outer: 40.0
            }
        );
    }

    #[test]
    fn finds_a_synthetic_disc() {
        let (w, h) = (96, 80);
        let (cx, cy, r) = (47.3, 38.6, 17.0);
        let mean: Vec<f64> = (0..w * h)
            .map(|i| {
                let (y, x) = ((i / w) as f64, (i % w) as f64);
                let d = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt();
                if d <= r { 100.0 } else { 0.5 }
            })
            .collect();
        let disc = find_bright_field(&mean, w, h).unwrap();
        assert!(
            (disc.cx - cx).abs() < 0.1 && (disc.cy - cy).abs() < 0.1,
            "{disc:?}"
        );
        assert!((disc.r - r).abs() < 0.3, "{disc:?}");
        assert!(find_bright_field(&vec![1.0; w * h], w, h).is_none());
    }
}
