//! NumPy `.npy` arrays (format versions 1.0, 2.0 and 3.0): the header, a Python dict literal
//! `{'descr': '<u2', 'fortran_order': False, 'shape': (20, 20, 64, 64), }`, then the array's
//! bytes. A 4D array is `[scan_y, scan_x, det_y, det_x]`, a 3D one `[frames, det_y, det_x]`.
//!
//! C order (numpy's default) stores frame after frame, so a `.npy` maps like a raw dump with a
//! file header. Fortran order stores the first axis fastest: one frame's pixels lie one
//! `frames × item size` stride apart across the whole file, so each frame is gathered pixel by
//! pixel into the reader's buffer ([`Strided`]) — correct, but every frame touches pages all
//! over the file (fine when the file fits in memory; `np.ascontiguousarray` writes a C-order
//! copy that reads at full speed).

use std::path::Path;

use super::{Declared, Decode, DecodeBuffers, Format, Frame, PixelKind, Plan, sized};
use crate::{Error, Result};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// What the header of a `.npy` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NpyHeader {
    /// `descr` as written (e.g. `<u2`).
    pub descr: String,
    /// How each element becomes a pixel.
    pub decode: Decode,
    /// Bytes per element.
    pub item_bytes: usize,
    /// `fortran_order`.
    pub fortran: bool,
    /// `shape`.
    pub shape: Vec<u64>,
    /// Byte offset of the array's data (the header's total length).
    pub data_offset: u64,
}

/// The element types ptyflow reads (`descr`), with their decode and size.
fn dtype(descr: &str) -> Option<(Decode, usize)> {
    let (order, code) = descr.split_at_checked(1)?;
    let big = match order {
        "<" => false,
        ">" => true,
        "|" | "=" => cfg!(target_endian = "big"),
        _ => return None,
    };
    Some(match code {
        "u1" => (Decode::U8, 1),
        "u2" => (Decode::U16 { big }, 2),
        "u4" => (Decode::U32 { big }, 4),
        "i4" => (Decode::I32ToF32 { big }, 4),
        "f4" => (Decode::F32 { big }, 4),
        _ => return None,
    })
}

/// A tiny reader of the Python literal numpy writes as the header (strings, `True`/`False`,
/// tuples of integers, one dict); `pos` is a byte index into the header text.
struct Lit<'a> {
    s: &'a [u8],
    pos: usize,
}

/// A value of the header dict.
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<u64>),
}

impl Lit<'_> {
    fn ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected `{}`", c as char))
        }
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let q = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err("expected a quoted string".into()),
        };
        let start = self.pos + 1;
        let len = self.s[start..]
            .iter()
            .position(|&c| c == q || c == b'\\')
            .ok_or("unterminated string")?;
        if self.s[start + len] == b'\\' {
            return Err("escapes in strings are not supported".into());
        }
        self.pos = start + len + 1;
        String::from_utf8(self.s[start..start + len].to_vec()).map_err(|_| "not UTF-8".into())
    }
    fn int(&mut self) -> std::result::Result<u64, String> {
        self.ws();
        let start = self.pos;
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        std::str::from_utf8(&self.s[start..self.pos])
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| "expected a non-negative integer".into())
    }
    fn value(&mut self) -> std::result::Result<Value, String> {
        match self.peek() {
            Some(b'\'' | b'"') => self.string().map(Value::Str),
            Some(b'(') => {
                self.pos += 1;
                let mut v = Vec::new();
                while !self.eat(b')') {
                    v.push(self.int()?);
                    if !self.eat(b',') {
                        self.expect(b')')?;
                        break;
                    }
                }
                Ok(Value::Tuple(v))
            }
            _ => {
                let rest = &self.s[self.pos..];
                for (word, b) in [(&b"True"[..], true), (&b"False"[..], false)] {
                    if rest.starts_with(word) {
                        self.pos += word.len();
                        return Ok(Value::Bool(b));
                    }
                }
                Err(
                    "expected a string, a tuple, True or False (structured dtypes are not \
                     supported)"
                        .into(),
                )
            }
        }
    }
}

/// Parses the header at the start of `bytes` (the file, or at least its header); `path`
/// names the file in errors, which give the byte offset of the problem.
pub(crate) fn parse_header(path: &Path, bytes: &[u8]) -> Result<NpyHeader> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(Error::format(
            path,
            0,
            "not a NumPy .npy file: it does not start with the magic \\x93NUMPY",
        ));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len_bytes, text_start) = match major {
        1 => (2, 10),
        2 | 3 => (4, 12),
        _ => {
            return Err(Error::format(
                path,
                6,
                format!("npy format version {major}.{minor}; ptyflow reads 1.0, 2.0 and 3.0"),
            ));
        }
    };
    if bytes.len() < text_start {
        return Err(Error::format(
            path,
            8,
            "the file ends inside the header length",
        ));
    }
    let header_len = if len_bytes == 2 {
        u64::from(u16::from_le_bytes([bytes[8], bytes[9]]))
    } else {
        u64::from(u32::from_le_bytes([
            bytes[8], bytes[9], bytes[10], bytes[11],
        ]))
    };
    let data_offset = text_start as u64 + header_len;
    if data_offset > bytes.len() as u64 {
        return Err(Error::format(
            path,
            8,
            format!(
                "the header says it is {header_len} bytes long, but the file ends at byte {}",
                bytes.len()
            ),
        ));
    }
    let text = &bytes[text_start..data_offset as usize];
    let at = |lit: &Lit, msg: String| {
        Error::format(
            path,
            (text_start + lit.pos) as u64,
            format!("npy header: {msg}"),
        )
    };
    let mut lit = Lit { s: text, pos: 0 };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    lit.expect(b'{').map_err(|m| at(&lit, m))?;
    while !lit.eat(b'}') {
        let key = lit.string().map_err(|m| at(&lit, m))?;
        lit.expect(b':').map_err(|m| at(&lit, m))?;
        let value_at = lit.pos;
        let value = lit.value().map_err(|m| at(&lit, m))?;
        let wrong = |what: &str| {
            Error::format(
                path,
                (text_start + value_at) as u64,
                format!("npy header: `{key}` is not {what}"),
            )
        };
        match (key.as_str(), value) {
            ("descr", Value::Str(s)) => descr = Some(s),
            ("descr", _) => return Err(wrong("a dtype string (structured arrays are not read)")),
            ("fortran_order", Value::Bool(b)) => fortran = Some(b),
            ("fortran_order", _) => return Err(wrong("True or False")),
            ("shape", Value::Tuple(t)) => shape = Some(t),
            ("shape", _) => return Err(wrong("a tuple of integers")),
            _ => return Err(at(&lit, format!("unknown key `{key}`"))),
        }
        if !lit.eat(b',') {
            lit.expect(b'}').map_err(|m| at(&lit, m))?;
            break;
        }
    }
    let missing = |k: &str| at(&lit, format!("the dict has no `{k}`"));
    let descr = descr.ok_or_else(|| missing("descr"))?;
    let fortran = fortran.ok_or_else(|| missing("fortran_order"))?;
    let shape = shape.ok_or_else(|| missing("shape"))?;
    let (decode, item_bytes) = dtype(&descr).ok_or_else(|| {
        Error::format(
            path,
            text_start as u64,
            format!(
                "npy dtype {descr:?} is not read; ptyflow reads u1, u2, u4, i4 (as float32) and \
                 f4, either byte order (convert with arr.astype(np.uint16) or np.float32)"
            ),
        )
    })?;
    Ok(NpyHeader {
        descr,
        decode,
        item_bytes,
        fortran,
        shape,
        data_offset,
    })
}

/// How to gather one frame of a Fortran-order array: element `(frame, row, col)` sits at
/// element index `base(frame) + positions · (row + height · col)` after the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Strided {
    data_offset: usize,
    item_bytes: usize,
    /// Frames in the file (the stride between a frame's neighbouring pixels, in elements).
    positions: usize,
    /// Scan columns for a 4D array (`frame = y · cols + x`, stored at `y + rows · x`); `None`
    /// for 3D.
    scan: Option<(usize, usize)>,
    width: usize,
    height: usize,
    decode: Decode,
}

impl Strided {
    /// Frame `index` gathered from `map` into `bufs` (sized for the frame; never allocates
    /// after the first call).
    pub(crate) fn frame<'a>(
        &self,
        map: &[u8],
        index: usize,
        bufs: &'a mut DecodeBuffers,
    ) -> Frame<'a> {
        let base = match self.scan {
            Some((rows, cols)) => index / cols + rows * (index % cols),
            None => index,
        };
        let n = self.width * self.height;
        let (w, h, p, ib) = (self.width, self.height, self.positions, self.item_bytes);
        debug_assert_eq!(
            ib,
            match self.decode {
                Decode::U8 => 1,
                Decode::U16 { .. } => 2,
                _ => 4,
            }
        );
        let (data, map) = (self.data_offset, map);
        let at = move |r: usize, c: usize| data + (base + p * (r + h * c)) * ib;
        // The plan checked that every element of the array lies inside the map.
        fn fill<T, const N: usize>(
            dst: &mut [T],
            w: usize,
            map: &[u8],
            at: impl Fn(usize, usize) -> usize,
            f: impl Fn([u8; N]) -> T,
        ) {
            for (r, row) in dst.chunks_exact_mut(w).enumerate() {
                for (c, d) in row.iter_mut().enumerate() {
                    let o = at(r, c);
                    let mut word = [0u8; N];
                    word.copy_from_slice(&map[o..o + N]);
                    *d = f(word);
                }
            }
        }
        match self.decode {
            Decode::U8 => {
                let buf = sized(&mut bufs.u8, n);
                fill(buf, w, map, at, |[b]: [u8; 1]| b);
                Frame::U8(buf)
            }
            Decode::U16 { big } => {
                let buf = sized(&mut bufs.u16, n);
                if big {
                    fill(buf, w, map, at, u16::from_be_bytes)
                } else {
                    fill(buf, w, map, at, u16::from_le_bytes)
                }
                Frame::U16(buf)
            }
            Decode::U32 { big } => {
                let buf = sized(&mut bufs.u32, n);
                if big {
                    fill(buf, w, map, at, u32::from_be_bytes)
                } else {
                    fill(buf, w, map, at, u32::from_le_bytes)
                }
                Frame::U32(buf)
            }
            Decode::F32 { big } => {
                let buf = sized(&mut bufs.f32, n);
                if big {
                    fill(buf, w, map, at, f32::from_be_bytes)
                } else {
                    fill(buf, w, map, at, f32::from_le_bytes)
                }
                Frame::F32(buf)
            }
            Decode::I32ToF32 { big } => {
                let buf = sized(&mut bufs.f32, n);
                if big {
                    fill(buf, w, map, at, |b| i32::from_be_bytes(b) as f32)
                } else {
                    fill(buf, w, map, at, |b| i32::from_le_bytes(b) as f32)
                }
                Frame::F32(buf)
            }
            Decode::MibR64 { .. } => unreachable!("npy arrays hold no Merlin RAW pixels"),
        }
    }
}

/// The layout of the `.npy` at `path` whose bytes are `bytes`, and, for a Fortran-order
/// array, how to gather its frames.
pub(crate) fn plan(path: &Path, bytes: &[u8]) -> Result<(Plan, Option<Strided>)> {
    let h = parse_header(path, bytes)?;
    let shape_text = format!("{:?}", h.shape);
    let (scan, frames, height, width) = match h.shape[..] {
        [r, c, dy, dx] => (Some((r, c)), r.checked_mul(c), dy, dx),
        [n, dy, dx] => (None, Some(n), dy, dx),
        _ => {
            return Err(Error::file(
                path,
                format!(
                    "the array has shape {shape_text}; ptyflow reads 4D [scan_y, scan_x, det_y, \
                     det_x] or 3D [frames, det_y, det_x] arrays"
                ),
            ));
        }
    };
    let too_big = || Error::file(path, format!("shape {shape_text} overflows"));
    let to_usize = |v: u64| usize::try_from(v).map_err(|_| too_big());
    let (width, height) = (to_usize(width)?, to_usize(height)?);
    let frames = frames.ok_or_else(too_big)?;
    if frames == 0 || width == 0 || height == 0 {
        return Err(Error::file(
            path,
            format!("the array has shape {shape_text}: no frames or no pixels"),
        ));
    }
    let frame_bytes = (width as u64)
        .checked_mul(height as u64)
        .and_then(|n| n.checked_mul(h.item_bytes as u64))
        .filter(|&n| usize::try_from(n).is_ok())
        .ok_or_else(too_big)?;
    let data = frames.checked_mul(frame_bytes).ok_or_else(too_big)?;
    let file = bytes.len() as u64;
    if h.data_offset.checked_add(data) != Some(file) {
        return Err(Error::format(
            path,
            h.data_offset,
            format!(
                "the header's shape {shape_text} of {:?} needs {data} data bytes after the \
                 {}-byte header, but the file has {} (truncated, or not written by numpy)",
                h.descr,
                h.data_offset,
                file.saturating_sub(h.data_offset)
            ),
        ));
    }
    let scan = match scan {
        Some((r, c)) => Some((to_usize(r)?, to_usize(c)?)),
        None => None,
    };
    let order = match h.decode {
        Decode::U8 => "",
        Decode::U16 { big }
        | Decode::U32 { big }
        | Decode::F32 { big }
        | Decode::I32ToF32 { big }
            if big =>
        {
            ", big-endian"
        }
        _ => ", little-endian",
    };
    let pixel = match h.decode {
        Decode::U8 => PixelKind::U8,
        Decode::U16 { .. } => PixelKind::U16,
        Decode::U32 { .. } => PixelKind::U32,
        _ => PixelKind::F32,
    };
    let name = match h.item_bytes {
        1 => "u8",
        2 => "u16",
        _ if matches!(h.decode, Decode::U32 { .. }) => "u32",
        _ if matches!(h.decode, Decode::I32ToF32 { .. }) => "i32",
        _ => "f32",
    };
    let mut notes = Vec::new();
    let strided = if h.fortran {
        notes.push(
            "Fortran-order array: each frame's pixels are spread over the whole file and are \
             gathered one by one (slow when the file does not fit in memory; \
             np.ascontiguousarray(a) saved with np.save reads at full speed)"
                .to_owned(),
        );
        Some(Strided {
            data_offset: h.data_offset as usize,
            item_bytes: h.item_bytes,
            positions: to_usize(frames)?,
            scan,
            width,
            height,
            decode: h.decode,
        })
    } else {
        None
    };
    let plan = Plan {
        path: path.to_owned(),
        format: Format::Npy,
        width,
        height,
        stored_dtype: format!(
            "{name}{order} (npy {:?}, {} order)",
            h.descr,
            if h.fortran { "Fortran" } else { "C" }
        ),
        pixel,
        header_bytes: h.data_offset,
        frame_header_bytes: 0,
        frame_bytes,
        frame_footer_bytes: 0,
        decode: h.decode,
        scan,
        declared: Some(Declared {
            frames,
            source: path.to_owned(),
            strict: true,
        }),
        notes,
        mib: None,
    };
    Ok((plan, strided))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str, major: u8) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend([major, 0]);
        if major == 1 {
            out.extend((header.len() as u16).to_le_bytes());
        } else {
            out.extend((header.len() as u32).to_le_bytes());
        }
        out.extend(header.as_bytes());
        out
    }

    #[test]
    fn parses_what_numpy_writes() {
        let h = "{'descr': '<u2', 'fortran_order': False, 'shape': (2, 3, 4, 5), }      \n";
        let mut b = npy(h, 1);
        let off = b.len() as u64;
        b.resize(b.len() + 2 * 3 * 4 * 5 * 2, 0);
        let p = parse_header(Path::new("a.npy"), &b).unwrap();
        assert_eq!(p.shape, [2, 3, 4, 5]);
        assert_eq!(p.data_offset, off);
        assert_eq!(p.decode, Decode::U16 { big: false });
        assert!(!p.fortran);
        let (plan, strided) = plan(Path::new("a.npy"), &b).unwrap();
        assert!(strided.is_none());
        assert_eq!((plan.width, plan.height, plan.scan), (5, 4, Some((2, 3))));

        let h = "{\"shape\": (7,4,4), \"fortran_order\": True, \"descr\": \">f4\"}";
        let p = parse_header(Path::new("a.npy"), &npy(h, 3)).unwrap();
        assert_eq!((p.shape.as_slice(), p.fortran), (&[7u64, 4, 4][..], true));
        assert_eq!(p.decode, Decode::F32 { big: true });
    }

    #[test]
    fn errors_name_file_and_offset() {
        let p = Path::new("d/x.npy");
        let e = |b: &[u8]| parse_header(p, b).unwrap_err().to_string();
        assert!(e(b"PK\x03\x04 not npy").contains("magic"));
        assert!(e(&npy("{'descr': '<u2'", 1)[..12]).contains("ends at byte 12"));
        let m = e(&npy(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (1,1,1)}",
            1,
        ));
        assert!(
            m.contains("x.npy") && m.contains("\"<i8\"") && m.contains("at byte 10"),
            "{m}"
        );
        let m = e(&npy(
            "{'descr': [('a', '<u2')], 'fortran_order': False, 'shape': ()}",
            1,
        ));
        assert!(m.contains("structured"), "{m}");
        let m = e(&npy("{'descr': '<u2', 'shape': (1,)}", 2));
        assert!(m.contains("fortran_order"), "{m}");
        let mut b = npy(
            "{'descr': '<u2', 'fortran_order': False, 'shape': (2,2,2,2)}",
            1,
        );
        b.extend([0u8; 31]);
        let m = plan(p, &b).unwrap_err().to_string();
        assert!(
            m.contains("needs 32 data bytes") && m.contains("has 31"),
            "{m}"
        );
        let b = npy(
            "{'descr': '<u2', 'fortran_order': False, 'shape': (2,2)}",
            1,
        );
        let m = plan(p, &b).unwrap_err().to_string();
        assert!(m.contains("4D") && m.contains("[2, 2]"), "{m}");
    }

    #[test]
    fn fortran_gather_matches_index_formula() {
        // A 4D Fortran array of shape (2, 3, 2, 4): element (y, x, r, c) holds a unique value.
        let (sy, sx, dy, dx) = (2usize, 3usize, 2usize, 4usize);
        let h = format!(
            "{{'descr': '<u2', 'fortran_order': True, 'shape': ({sy}, {sx}, {dy}, {dx}), }}"
        );
        let mut b = npy(&h, 1);
        let off = b.len();
        b.resize(off + sy * sx * dy * dx * 2, 0);
        let val = |y: usize, x: usize, r: usize, c: usize| (1000 * y + 100 * x + 10 * r + c) as u16;
        for y in 0..sy {
            for x in 0..sx {
                for r in 0..dy {
                    for c in 0..dx {
                        let i = y + sy * (x + sx * (r + dy * c));
                        b[off + 2 * i..off + 2 * i + 2]
                            .copy_from_slice(&val(y, x, r, c).to_le_bytes());
                    }
                }
            }
        }
        let (_, strided) = plan(Path::new("f.npy"), &b).unwrap();
        let s = strided.unwrap();
        let mut bufs = DecodeBuffers::default();
        for f in 0..sy * sx {
            let Frame::U16(px) = s.frame(&b, f, &mut bufs) else {
                panic!("u16 expected")
            };
            let (y, x) = (f / sx, f % sx);
            for r in 0..dy {
                for c in 0..dx {
                    assert_eq!(px[r * dx + c], val(y, x, r, c), "frame {f} ({r}, {c})");
                }
            }
        }
    }
}
