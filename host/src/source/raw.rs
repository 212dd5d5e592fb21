//! Raw dumps: an optional file header, then frames of `width × height` pixels of one type, each
//! frame optionally wrapped in a fixed number of header and footer bytes. The layout comes from
//! the sidecar `<dump file name>.json` ([`RawSidecar`]) or from explicit options, which win.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Declared, Decode, Format, PixelKind, Plan, RawOverrides};
use crate::optics::Optics;
use crate::{Error, Result};

/// How a pixel is stored in a raw dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum RawDtype {
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Signed 32-bit integer, delivered as `f32` (exact for |v| ≤ 2^24 = 16,777,216).
    I32,
    /// 32-bit IEEE float.
    F32,
}

impl RawDtype {
    /// Bytes per stored pixel.
    pub fn bytes(self) -> usize {
        match self {
            RawDtype::U8 => 1,
            RawDtype::U16 => 2,
            RawDtype::U32 | RawDtype::I32 | RawDtype::F32 => 4,
        }
    }
    /// The name as written in the sidecar and on the command line (`u16`, `i32` …).
    pub fn name(self) -> &'static str {
        match self {
            RawDtype::U8 => "u8",
            RawDtype::U16 => "u16",
            RawDtype::U32 => "u32",
            RawDtype::I32 => "i32",
            RawDtype::F32 => "f32",
        }
    }
    /// The pixel type frames are delivered as (`i32` becomes `f32`).
    pub fn pixel_kind(self) -> PixelKind {
        match self {
            RawDtype::U8 => PixelKind::U8,
            RawDtype::U16 => PixelKind::U16,
            RawDtype::U32 => PixelKind::U32,
            RawDtype::I32 | RawDtype::F32 => PixelKind::F32,
        }
    }
}

/// Byte order of multi-byte pixels in a raw dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ByteOrder {
    /// Least significant byte first (x86, ARM; what ptyflow writes).
    #[default]
    Little,
    /// Most significant byte first.
    Big,
}

fn is_raw(s: &str) -> bool {
    s == "raw"
}

fn raw_string() -> String {
    "raw".to_owned()
}

/// The sidecar JSON that describes a raw dump, stored beside it as `<dump file name>.json`
/// (`scan.raw` → `scan.raw.json`). The one definition in ptyflow: the simulator writes it,
/// the readers read it.
///
/// ```json
/// {"format": "raw", "width": 64, "height": 64, "dtype": "u16", "byte_order": "little",
///  "header_bytes": 0, "frame_header_bytes": 0, "frame_footer_bytes": 0,
///  "frames": 400, "scan": [20, 20]}
/// ```
///
/// On reading, `byte_order` defaults to `little`, the three byte counts to 0, `frames` and
/// `scan` are optional, and unknown keys (e.g. `"optics": {...}`) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawSidecar {
    /// Always `"raw"`.
    #[serde(default = "raw_string")]
    pub format: String,
    /// Frame width in pixels (columns, the fast axis in the file).
    pub width: usize,
    /// Frame height in pixels (rows).
    pub height: usize,
    /// Stored pixel type.
    pub dtype: RawDtype,
    /// Byte order of multi-byte pixels.
    #[serde(default)]
    pub byte_order: ByteOrder,
    /// Bytes before the first frame.
    #[serde(default)]
    pub header_bytes: u64,
    /// Bytes before the pixels of every frame.
    #[serde(default)]
    pub frame_header_bytes: u64,
    /// Bytes after the pixels of every frame.
    #[serde(default)]
    pub frame_footer_bytes: u64,
    /// Number of frames, if the writer knew it (checked against the file size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<u64>,
    /// Frames recorded at each scan position, one after the other, if more than one (the
    /// simulator's `--frames-per-position`); `ptyflow replay` then sums them by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames_per_position: Option<usize>,
    /// Scan shape `[rows, cols]` (frame index = row · cols + col), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<[usize; 2]>,
    /// The optics of the acquisition, if the writer knew them (the simulator does), so
    /// `ptyflow replay --recon` can default its physics flags from them.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_optics"
    )]
    pub optics: Option<Optics>,
}

/// Reads a sidecar's `"optics"` leniently: a writer states what it knows, in the field
/// names of [`Optics`]; unknown keys and values that are not numbers are ignored.
fn lenient_optics<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Optics>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(value.as_ref().map(Optics::from_json_lenient))
}

impl RawSidecar {
    /// A sidecar for headerless little-endian frames of `width × height` pixels of `dtype`.
    pub fn new(width: usize, height: usize, dtype: RawDtype) -> Self {
        RawSidecar {
            format: raw_string(),
            width,
            height,
            dtype,
            byte_order: ByteOrder::Little,
            header_bytes: 0,
            frame_header_bytes: 0,
            frame_footer_bytes: 0,
            frames: None,
            frames_per_position: None,
            scan: None,
            optics: None,
        }
    }

    /// Where the sidecar of `dump` lives: the dump's file name with `.json` appended.
    pub fn path_for(dump: &Path) -> PathBuf {
        let mut name = dump.as_os_str().to_owned();
        name.push(".json");
        PathBuf::from(name)
    }

    /// Writes this sidecar beside `dump` (see [`RawSidecar::path_for`]) and returns its path.
    pub fn write(&self, dump: &Path) -> Result<PathBuf> {
        let path = Self::path_for(dump);
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::file(&path, format!("cannot encode the sidecar: {e}")))?;
        text.push('\n');
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }

    /// Reads the sidecar of `dump`, or `None` if there is none.
    pub fn read_for(dump: &Path) -> Result<Option<Self>> {
        let path = Self::path_for(dump);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&path, &text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Parses sidecar text; `path` names the file in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let sidecar: RawSidecar = serde_json::from_str(text).map_err(|e| {
            Error::file(
                path,
                format!(
                    "not a valid raw-dump sidecar (line {}, column {}): {e}",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        if !is_raw(&sidecar.format) {
            return Err(Error::file(
                path,
                format!("\"format\" is {:?}, expected \"raw\"", sidecar.format),
            ));
        }
        Ok(sidecar)
    }
}

/// The effective layout of a raw dump: sidecar values with explicit options on top.
pub(crate) fn plan(path: &Path, over: &RawOverrides) -> Result<Plan> {
    // A `<file>.json` that is not ptyflow's sidecar (another program's metadata, numpy dtype
    // strings such as "<u2" …) does not stop a read whose layout the flags give in full.
    let flags_complete = over.width.is_some() && over.height.is_some() && over.dtype.is_some();
    let mut notes = Vec::new();
    let sidecar = match RawSidecar::read_for(path) {
        Ok(s) => s,
        Err(Error::File { path: json, msg }) if flags_complete => {
            notes.push(format!(
                "{} is not a ptyflow sidecar ({msg}); it is ignored and the layout is read \
                 from the flags",
                json.display()
            ));
            None
        }
        Err(Error::File { path: json, msg }) => {
            return Err(Error::File {
                path: json,
                msg: format!(
                    "{msg}. If this is not a ptyflow sidecar, give the layout with --width, \
                     --height and --dtype (and --header-bytes, --frame-header-bytes, \
                     --frame-footer-bytes, --big-endian if needed) to read the dump anyway"
                ),
            });
        }
        Err(e) => return Err(e),
    };
    let missing = |flag: &str| {
        Error::file(
            path,
            format!(
                "the raw layout is incomplete: {flag} is not given and there is no sidecar {} \
                 (give --width, --height and --dtype, and --header-bytes, --frame-header-bytes, \
                 --frame-footer-bytes, --big-endian if the file needs them)",
                RawSidecar::path_for(path).display()
            ),
        )
    };
    let width = over
        .width
        .or(sidecar.as_ref().map(|s| s.width))
        .ok_or_else(|| missing("--width"))?;
    let height = over
        .height
        .or(sidecar.as_ref().map(|s| s.height))
        .ok_or_else(|| missing("--height"))?;
    let dtype = over
        .dtype
        .or(sidecar.as_ref().map(|s| s.dtype))
        .ok_or_else(|| missing("--dtype"))?;
    let big = over
        .big_endian
        .unwrap_or(sidecar.as_ref().map(|s| s.byte_order) == Some(ByteOrder::Big));
    let pick =
        |o: Option<u64>, s: fn(&RawSidecar) -> u64| o.or(sidecar.as_ref().map(s)).unwrap_or(0);
    let header_bytes = pick(over.header_bytes, |s| s.header_bytes);
    let frame_header_bytes = pick(over.frame_header_bytes, |s| s.frame_header_bytes);
    let frame_footer_bytes = pick(over.frame_footer_bytes, |s| s.frame_footer_bytes);

    if width == 0 || height == 0 {
        return Err(Error::param(
            if width == 0 { "--width" } else { "--height" },
            format!("frame size {width} × {height} has no pixels; expected both ≥ 1"),
        ));
    }
    let frame_bytes = (width as u64)
        .checked_mul(height as u64)
        .and_then(|n| n.checked_mul(dtype.bytes() as u64))
        .filter(|&n| usize::try_from(n).is_ok())
        .ok_or_else(|| {
            Error::param(
                "--width",
                format!(
                    "frame size {width} × {height} × {} bytes overflows",
                    dtype.bytes()
                ),
            )
        })?;

    let decode = match dtype {
        RawDtype::U8 => Decode::U8,
        RawDtype::U16 => Decode::U16 { big },
        RawDtype::U32 => Decode::U32 { big },
        RawDtype::I32 => Decode::I32ToF32 { big },
        RawDtype::F32 => Decode::F32 { big },
    };
    let order = if dtype.bytes() == 1 {
        ""
    } else if big {
        ", big-endian"
    } else {
        ", little-endian"
    };
    // The sidecar's frame count and scan describe the sidecar's layout; if the user changed
    // the geometry, they no longer apply.
    let geometry_overridden = over.width.is_some()
        || over.height.is_some()
        || over.dtype.is_some()
        || over.header_bytes.is_some()
        || over.frame_header_bytes.is_some()
        || over.frame_footer_bytes.is_some();
    let (declared, scan) = match &sidecar {
        Some(s) if !geometry_overridden => (
            s.frames.map(|frames| Declared {
                frames,
                source: RawSidecar::path_for(path),
                strict: true,
            }),
            s.scan.map(|[r, c]| (r, c)),
        ),
        _ => (None, None),
    };
    Ok(Plan {
        path: path.to_owned(),
        format: Format::Raw,
        width,
        height,
        stored_dtype: format!("{}{order}", dtype.name()),
        pixel: dtype.pixel_kind(),
        header_bytes,
        frame_header_bytes,
        frame_bytes,
        frame_footer_bytes,
        decode,
        scan,
        declared,
        notes,
        mib: None,
    })
}

/// Decodes fixed-size little- or big-endian words of `src` into `dst` (`src.len() == N · dst.len()`).
#[inline]
pub(crate) fn decode_words<T, const N: usize>(src: &[u8], dst: &mut [T], f: impl Fn([u8; N]) -> T) {
    debug_assert_eq!(src.len(), dst.len() * N);
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(N)) {
        let mut word = [0u8; N];
        word.copy_from_slice(s);
        *d = f(word);
    }
}

/// `u16` pixels in the given byte order.
pub(crate) fn decode_u16(src: &[u8], dst: &mut [u16], big: bool) {
    if big {
        decode_words(src, dst, u16::from_be_bytes)
    } else {
        decode_words(src, dst, u16::from_le_bytes)
    }
}

/// `u32` pixels in the given byte order.
pub(crate) fn decode_u32(src: &[u8], dst: &mut [u32], big: bool) {
    if big {
        decode_words(src, dst, u32::from_be_bytes)
    } else {
        decode_words(src, dst, u32::from_le_bytes)
    }
}

/// `f32` pixels in the given byte order.
pub(crate) fn decode_f32(src: &[u8], dst: &mut [f32], big: bool) {
    if big {
        decode_words(src, dst, f32::from_be_bytes)
    } else {
        decode_words(src, dst, f32::from_le_bytes)
    }
}

/// `i32` pixels in the given byte order, converted to `f32` (exact for |v| ≤ 2^24; larger
/// values round to the nearest representable `f32`).
pub(crate) fn decode_i32_to_f32(src: &[u8], dst: &mut [f32], big: bool) {
    if big {
        decode_words(src, dst, |b| i32::from_be_bytes(b) as f32)
    } else {
        decode_words(src, dst, |b| i32::from_le_bytes(b) as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn u16_decode_matches_plain_loop(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let n = bytes.len() / 2;
            let src = &bytes[..2 * n];
            for big in [false, true] {
                let mut out = vec![0xDEADu16; n];
                decode_u16(src, &mut out, big);
                for i in 0..n {
                    let pair = [src[2 * i], src[2 * i + 1]];
                    let want = if big { u16::from_be_bytes(pair) } else { u16::from_le_bytes(pair) };
                    prop_assert_eq!(out[i], want);
                }
            }
        }

        #[test]
        fn u32_f32_i32_decode_match_plain_loop(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let n = bytes.len() / 4;
            let src = &bytes[..4 * n];
            for big in [false, true] {
                let mut u = vec![7u32; n];
                let mut f = vec![7f32; n];
                let mut g = vec![7f32; n];
                decode_u32(src, &mut u, big);
                decode_f32(src, &mut f, big);
                decode_i32_to_f32(src, &mut g, big);
                for i in 0..n {
                    let b = [src[4 * i], src[4 * i + 1], src[4 * i + 2], src[4 * i + 3]];
                    let word = if big { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) };
                    prop_assert_eq!(u[i], word);
                    prop_assert_eq!(f[i].to_bits(), f32::from_bits(word).to_bits());
                    prop_assert_eq!(g[i], word as i32 as f32);
                }
            }
        }
    }

    #[test]
    fn i32_to_f32_exact_to_2_pow_24() {
        let vals = [0i32, 1, -1, 16_777_216, -16_777_216, 16_777_215, 123_456];
        let src: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut out = vec![0f32; vals.len()];
        decode_i32_to_f32(&src, &mut out, false);
        for (o, v) in out.iter().zip(vals) {
            assert_eq!(*o as i32, v);
        }
    }

    #[test]
    fn sidecar_round_trip_and_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("scan.raw");
        let mut s = RawSidecar::new(64, 48, RawDtype::U16);
        s.frames = Some(400);
        s.scan = Some([20, 20]);
        let written = s.write(&dump).unwrap();
        assert_eq!(written, dir.path().join("scan.raw.json"));
        assert_eq!(RawSidecar::read_for(&dump).unwrap(), Some(s));

        let text = r#"{"format": "raw", "width": 64, "height": 64, "dtype": "u16",
            "byte_order": "big", "header_bytes": 8, "frame_header_bytes": 4,
            "frame_footer_bytes": 2, "frames": 400, "scan": [20, 20],
            "optics": {"kv": 80, "semi_angle_mrad": 21.4}}"#;
        let s = RawSidecar::parse(Path::new("x.json"), text).unwrap();
        assert_eq!(s.byte_order, ByteOrder::Big);
        assert_eq!(
            (s.header_bytes, s.frame_header_bytes, s.frame_footer_bytes),
            (8, 4, 2)
        );
        assert_eq!(s.scan, Some([20, 20]));
    }

    #[test]
    fn sidecar_errors_name_the_file() {
        let p = Path::new("dir/scan.raw.json");
        let e = RawSidecar::parse(
            p,
            r#"{"format": "mib", "width": 1, "height": 1, "dtype": "u8"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("scan.raw.json") && e.contains("expected \"raw\""),
            "{e}"
        );
        let e = RawSidecar::parse(p, r#"{"width": 1, "height": 1, "dtype": "u12"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("scan.raw.json") && e.contains("u12"), "{e}");
    }
}
