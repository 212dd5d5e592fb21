//! Quantum Detectors Merlin `.mib` files (Medipix3).
//!
//! No file header; frames back to back, each an ASCII header NUL-padded to `hsize` bytes (field
//! 3: 384 for one chip, 768 for four) followed by the pixels. Header fields, comma-separated:
//! `MQ1, seq, hsize, nchips, width, height, U08|U16|U32|R64, layout, chip-select, …, MQ1A,
//! ISO time, exposure, counter depth`. The tail is found from the `MQ1A` marker because older
//! firmware omits the thresholds and DACs of RAW headers.
//!
//! - `U08`/`U16`/`U32`: big-endian unsigned integers, delivered as `u8`/`u16`/`u32`.
//! - `R64` ("raw" readout): the bytes of every 64-bit word are reversed, then read
//!   little-endian: 1-bit counters are 64 pixels per word, least significant bit first
//!   (delivered as `u8`); 6-bit counters one byte per pixel (`u8`); 12-bit counters one
//!   16-bit word per pixel (`u16`). Quad (2×2) RAW frames are stored as 256 rows of
//!   `[B0|B1|B2|B3]` (the header says 1024×256); they are reassembled to 512×512: output row
//!   `y < 256` is `[B3|B2]` of raw row `y`, output row `256 + k` is `[rev(B1)|rev(B0)]` of raw
//!   row `255 − k` (the bottom chips are rotated by 180°). This follows LiberTEM's decoder.
//!
//! Every frame header is checked: frame 0 and the last frame when the file is opened, and each
//! frame again, cheaply and without allocating, when it is read (see [`HeaderCheck`]).

use std::path::Path;

use super::{Declared, Decode, Format, PixelKind, Plan};
use crate::{Error, Result};

/// Names of the first seven header fields, as used in error messages.
const FIELD_NAMES: [&str; 7] = [
    "magic",
    "sequence number",
    "header size",
    "chip count",
    "width",
    "height",
    "pixel type",
];

/// How many header bytes the per-frame check looks at: the seven leading fields are ~35 bytes.
const PREFIX_SCAN: usize = 128;

/// The leading fields of a frame header, parsed without allocating.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prefix {
    seq: u64,
    hsize: u64,
    nchips: u64,
    width: u64,
    height: u64,
    dtype: [u8; 3],
    /// Byte offset of each of the seven fields within the header.
    at: [usize; 7],
}

/// Why a header prefix did not parse: byte offset within the header and message.
#[derive(Debug)]
pub(crate) struct PrefixError {
    /// Byte offset of the problem within the header.
    pub(crate) offset: usize,
    /// What was found and what was expected.
    pub(crate) msg: String,
}

fn parse_dec(field: &[u8]) -> Option<u64> {
    let field = field.trim_ascii();
    if field.is_empty() || field.len() > 19 || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        field
            .iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0')),
    )
}

/// Parses the seven leading fields of a header (`MQ1,seq,hsize,nchips,width,height,dtype,`).
/// Allocates only when it fails.
pub(crate) fn parse_prefix(header: &[u8]) -> std::result::Result<Prefix, PrefixError> {
    let h = &header[..header.len().min(PREFIX_SCAN)];
    let mut at = [0usize; 7];
    let mut fields: [&[u8]; 7] = [&[]; 7];
    let mut k = 0;
    let mut start = 0;
    for (i, &b) in h.iter().enumerate() {
        if b == b',' {
            at[k] = start;
            fields[k] = &h[start..i];
            k += 1;
            start = i + 1;
            if k == 7 {
                break;
            }
        }
    }
    if fields[0] != b"MQ1" {
        let shown = if k == 0 {
            &h[..h.len().min(3)]
        } else {
            fields[0]
        };
        return Err(PrefixError {
            offset: 0,
            msg: format!(
                "expected the frame header magic `MQ1`, found `{}`",
                String::from_utf8_lossy(shown).escape_debug()
            ),
        });
    }
    if k < 7 {
        return Err(PrefixError {
            offset: start,
            msg: format!(
                "header ends before its {} field (expected `MQ1,seq,hsize,nchips,width,height,dtype,…`)",
                FIELD_NAMES[k]
            ),
        });
    }
    let num = |i: usize| {
        parse_dec(fields[i]).ok_or_else(|| PrefixError {
            offset: at[i],
            msg: format!(
                "{} field is `{}`, expected a decimal number",
                FIELD_NAMES[i],
                String::from_utf8_lossy(fields[i]).escape_debug()
            ),
        })
    };
    let dtype = <[u8; 3]>::try_from(fields[6]).map_err(|_| PrefixError {
        offset: at[6],
        msg: format!(
            "pixel type field is `{}`, expected U08, U16, U32 or R64",
            String::from_utf8_lossy(fields[6]).escape_debug()
        ),
    })?;
    Ok(Prefix {
        seq: num(1)?,
        hsize: num(2)?,
        nchips: num(3)?,
        width: num(4)?,
        height: num(5)?,
        dtype,
        at,
    })
}

/// What every frame header must agree on with frame 0. Checking costs a parse of ~35 ASCII
/// bytes that sit right before the frame's pixels (same cache lines) and never allocates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderCheck {
    first: Prefix,
}

impl HeaderCheck {
    /// What every header must agree on: frame 0's prefix.
    pub(crate) fn new(first: Prefix) -> Self {
        HeaderCheck { first }
    }

    /// Bytes of each frame header (frame 0's `hsize`).
    pub(crate) fn header_bytes(&self) -> usize {
        self.first.hsize as usize
    }

    /// Checks the header of frame `index` in `map` at byte `offset` of `path`.
    pub(crate) fn check(&self, path: &Path, map: &[u8], index: usize, offset: u64) -> Result<()> {
        let start = offset as usize;
        let end = (start + self.first.hsize as usize).min(map.len());
        self.check_header(&map[start..end], index)
            .map_err(|e| Error::format(path, offset + e.offset as u64, e.msg))
    }

    /// Checks the header bytes of frame `index` (the frame's own bytes, from its `MQ1`):
    /// the byte offset within the header and the message when it disagrees with frame 0.
    /// Allocates only when it fails.
    pub(crate) fn check_header(
        &self,
        header: &[u8],
        index: usize,
    ) -> std::result::Result<(), PrefixError> {
        let p = parse_prefix(header).map_err(|e| PrefixError {
            offset: e.offset,
            msg: format!("frame {index}: {}", e.msg),
        })?;
        let f = &self.first;
        let fail = |i: usize, msg: String| PrefixError {
            offset: p.at[i],
            msg,
        };
        let expected_seq = f.seq + index as u64;
        if p.seq != expected_seq {
            return Err(fail(
                1,
                format!(
                    "frame {index}: sequence number {}, expected {expected_seq} (frame 0 has {}); \
                     frames are missing, repeated or out of order",
                    p.seq, f.seq
                ),
            ));
        }
        if p.hsize != f.hsize {
            return Err(fail(
                2,
                format!(
                    "frame {index}: header size {} bytes, expected {} like frame 0",
                    p.hsize, f.hsize
                ),
            ));
        }
        if p.nchips != f.nchips {
            return Err(fail(
                3,
                format!(
                    "frame {index}: {} chips, expected {} like frame 0",
                    p.nchips, f.nchips
                ),
            ));
        }
        if (p.width, p.height, p.dtype) != (f.width, f.height, f.dtype) {
            return Err(fail(
                4,
                format!(
                    "frame {index}: geometry {}×{} {}, expected {}×{} {} like frame 0",
                    p.width,
                    p.height,
                    String::from_utf8_lossy(&p.dtype),
                    f.width,
                    f.height,
                    String::from_utf8_lossy(&f.dtype)
                ),
            ));
        }
        Ok(())
    }
}

/// `Frames in Acquisition (Number)` from the text of a `.hdr` sidecar.
pub(crate) fn hdr_frames(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        if key.trim().starts_with("Frames in Acquisition") {
            value
                .trim_matches(|c: char| c.is_whitespace() || c == '\0')
                .parse()
                .ok()
        } else {
            None
        }
    })
}

/// How the frames of a Merlin acquisition are stored and delivered, worked out from frame 0's
/// header alone (a file's first header, or the first frame on the data port).
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// Frame 0's leading fields (what every later header must agree on).
    pub(crate) first: Prefix,
    /// How the stored pixels become a frame.
    pub(crate) decode: Decode,
    /// The pixel type delivered.
    pub(crate) pixel: PixelKind,
    /// Delivered width (a quad RAW frame: 512).
    pub(crate) width: usize,
    /// Delivered height.
    pub(crate) height: usize,
    /// Stored pixel bytes of every frame (after its `hsize`-byte header).
    pub(crate) frame_bytes: usize,
    /// How pixels are stored, e.g. `R64 (4 chips, layout 2x2, counter depth 1)`.
    pub(crate) stored_dtype: String,
}

impl Layout {
    /// Bytes of every frame header.
    pub(crate) fn header_bytes(&self) -> usize {
        self.first.hsize as usize
    }
}

/// Parses frame 0's header (`header` holds at least its `hsize` bytes; more is ignored) and
/// works out the layout. Errors give the byte offset within the header.
pub(crate) fn layout(header: &[u8]) -> std::result::Result<Layout, PrefixError> {
    let err = |offset: usize, msg: String| PrefixError {
        offset,
        msg: format!("frame 0: {msg}"),
    };
    let first = parse_prefix(header).map_err(|e| err(e.offset, e.msg))?;
    let hsize = first.hsize as usize;
    if hsize < first.at[6] + 4 || hsize > header.len() {
        return Err(err(
            first.at[2],
            format!(
                "header size {hsize} bytes is impossible (the header's own fields need {} \
                 bytes, there are {})",
                first.at[6] + 4,
                header.len()
            ),
        ));
    }
    let text = String::from_utf8_lossy(&header[..hsize]);
    let fields: Vec<&str> = text.trim_end_matches(['\0', ' ']).split(',').collect();
    let layout = fields.get(7).map_or("", |s| s.trim());
    let depth: Option<u32> = fields
        .iter()
        .position(|f| f.trim() == "MQ1A")
        .and_then(|i| fields.get(i + 3))
        .and_then(|d| d.trim().parse().ok());
    let (w, h) = (first.width as usize, first.height as usize);
    if w == 0 || h == 0 {
        return Err(err(
            first.at[4],
            format!("frame size {w}×{h} has no pixels"),
        ));
    }
    // Width and height are up to 19 digits each: their product, in bits, must fit (a frame
    // larger than the file is refused later, by the size check).
    let bits_of = |bits_per_pixel: usize| {
        w.checked_mul(h)
            .and_then(|n| n.checked_mul(bits_per_pixel))
            .filter(|&b| b / 8 <= isize::MAX as usize)
            .ok_or_else(|| {
                err(
                    first.at[4],
                    format!("frame size {w}×{h} is too large to address"),
                )
            })
    };
    let depth_note = depth.map_or(String::new(), |d| format!(", counter depth {d}"));
    let dtype_at = first.at[6];
    let (decode, pixel, width, height, frame_bytes, stored) = match &first.dtype {
        b"U08" => (Decode::U8, PixelKind::U8, w, h, bits_of(8)? / 8, "U08"),
        b"U16" => (
            Decode::U16 { big: true },
            PixelKind::U16,
            w,
            h,
            bits_of(16)? / 8,
            "U16",
        ),
        b"U32" => (
            Decode::U32 { big: true },
            PixelKind::U32,
            w,
            h,
            bits_of(32)? / 8,
            "U32",
        ),
        b"R64" => {
            let depth = depth.ok_or_else(|| {
                err(
                    dtype_at,
                    "RAW (R64) frame without the `MQ1A` extended header that gives \
                     the counter depth; cannot decode"
                        .into(),
                )
            })?;
            let (bits, pixel) = match depth {
                1 => (1, PixelKind::U8),
                6 => (8, PixelKind::U8),
                12 => (16, PixelKind::U16),
                d => {
                    return Err(err(
                        dtype_at,
                        format!(
                            "RAW (R64) with counter depth {d} is not supported; \
                             expected 1, 6 or 12 (record 24-bit data as U32)"
                        ),
                    ));
                }
            };
            let quad = match (layout, first.nchips) {
                ("1x1", 1) => false,
                ("2x2", 4) if w == 1024 && h == 256 => true,
                _ => {
                    return Err(err(
                        first.at[3],
                        format!(
                            "RAW (R64) with layout `{layout}`, {} chips, {w}×{h} is not \
                             supported; expected a single chip (`1x1`) or a full quad (`2x2`, \
                             1024×256 as stored)",
                            first.nchips
                        ),
                    ));
                }
            };
            let frame_bits = bits_of(bits)?;
            if frame_bits % 64 != 0 {
                return Err(err(
                    first.at[4],
                    format!(
                        "RAW (R64) frame of {w}×{h} pixels at {bits} bits is not a whole \
                         number of 64-bit words"
                    ),
                ));
            }
            let (ow, oh) = if quad { (512, 512) } else { (w, h) };
            (
                Decode::MibR64 {
                    depth: depth as u8,
                    quad,
                },
                pixel,
                ow,
                oh,
                frame_bits / 8,
                "R64",
            )
        }
        other => {
            return Err(err(
                dtype_at,
                format!(
                    "unknown pixel type `{}`, expected U08, U16, U32 or R64",
                    String::from_utf8_lossy(other).escape_debug()
                ),
            ));
        }
    };
    let chips = if first.nchips == 1 {
        "1 chip".to_owned()
    } else {
        format!("{} chips", first.nchips)
    };
    Ok(Layout {
        first,
        decode,
        pixel,
        width,
        height,
        frame_bytes,
        stored_dtype: format!("{stored} ({chips}, layout {layout}{depth_note})"),
    })
}

/// Reads frame 0's header and plans how to read the file.
pub(crate) fn plan(path: &Path, map: &[u8]) -> Result<Plan> {
    let layout = layout(map).map_err(|e| Error::format(path, e.offset as u64, e.msg))?;
    let hdr = path.with_extension("hdr");
    let mut notes = Vec::new();
    let declared = match std::fs::read(&hdr) {
        Ok(bytes) => match hdr_frames(&String::from_utf8_lossy(&bytes)) {
            Some(n) => Some(Declared {
                frames: n,
                source: hdr,
                strict: false,
            }),
            None => {
                notes.push(format!(
                    "{} has no `Frames in Acquisition` line",
                    hdr.display()
                ));
                None
            }
        },
        Err(_) => None,
    };
    Ok(Plan {
        path: path.to_owned(),
        format: Format::Mib,
        width: layout.width,
        height: layout.height,
        stored_dtype: layout.stored_dtype,
        pixel: layout.pixel,
        header_bytes: 0,
        frame_header_bytes: layout.first.hsize,
        frame_bytes: layout.frame_bytes as u64,
        frame_footer_bytes: 0,
        decode: layout.decode,
        scan: None,
        declared,
        notes,
        mib: Some(HeaderCheck::new(layout.first)),
    })
}

/// RAW 1-bit: every 8-byte word, read big-endian, holds 64 pixels, bit `i` = pixel `i`.
/// `dst.len() == 8 · src.len()`.
pub(crate) fn unpack_r1(src: &[u8], dst: &mut [u8]) {
    debug_assert_eq!(dst.len(), src.len() * 8);
    for (word, out) in src.chunks_exact(8).zip(dst.chunks_exact_mut(64)) {
        let w = u64::from_be_bytes(word.try_into().unwrap_or([0; 8]));
        for (i, o) in out.iter_mut().enumerate() {
            *o = ((w >> i) & 1) as u8;
        }
    }
}

/// RAW 6-bit: one byte per pixel, the bytes of every 8-byte word reversed.
/// `dst.len() == src.len()`.
pub(crate) fn unpack_r6(src: &[u8], dst: &mut [u8]) {
    debug_assert_eq!(dst.len(), src.len());
    for (word, out) in src.chunks_exact(8).zip(dst.chunks_exact_mut(8)) {
        for (o, b) in out.iter_mut().zip(word.iter().rev()) {
            *o = *b;
        }
    }
}

/// RAW 12-bit: one 16-bit value per pixel; every 8-byte word, read big-endian, holds four
/// pixels, pixel `i` in bits `16i..16i+16`. `2 · dst.len() == src.len()`.
pub(crate) fn unpack_r12(src: &[u8], dst: &mut [u16]) {
    debug_assert_eq!(dst.len() * 2, src.len());
    for (word, out) in src.chunks_exact(8).zip(dst.chunks_exact_mut(4)) {
        let w = u64::from_be_bytes(word.try_into().unwrap_or([0; 8]));
        for (i, o) in out.iter_mut().enumerate() {
            *o = (w >> (16 * i)) as u16;
        }
    }
}

/// Reassembles a quad RAW frame (256 stored rows of four chip rows `[B0|B1|B2|B3]`, each
/// `chip_row_bytes` long) into 512×512 pixels in `dst`, decoding each chip row with `unpack`.
pub(crate) fn assemble_quad<T>(
    src: &[u8],
    dst: &mut [T],
    chip_row_bytes: usize,
    unpack: impl Fn(&[u8], &mut [T]),
) {
    debug_assert_eq!(src.len(), 256 * 4 * chip_row_bytes);
    debug_assert_eq!(dst.len(), 512 * 512);
    let (top, bottom) = dst.split_at_mut(256 * 512);
    let rows = src.chunks_exact(4 * chip_row_bytes);
    for ((raw, top_row), bottom_row) in rows
        .zip(top.chunks_exact_mut(512))
        .zip(bottom.chunks_exact_mut(512).rev())
    {
        let (b01, b23) = raw.split_at(2 * chip_row_bytes);
        let (b0, b1) = b01.split_at(chip_row_bytes);
        let (b2, b3) = b23.split_at(chip_row_bytes);
        let (left, right) = top_row.split_at_mut(256);
        unpack(b3, left);
        unpack(b2, right);
        let (left, right) = bottom_row.split_at_mut(256);
        unpack(b1, left);
        left.reverse();
        unpack(b0, right);
        right.reverse();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference: reverse each 8-byte word, then pixel p of `bits` bits (1, 8, 16) is read
    /// little-endian from the reversed bytes. A plain per-pixel loop, no word arithmetic.
    fn naive(src: &[u8], bits: usize) -> Vec<u16> {
        let mut rev: Vec<u8> = Vec::with_capacity(src.len());
        for w in src.chunks(8) {
            rev.extend(w.iter().rev());
        }
        let n = src.len() * 8 / bits;
        (0..n)
            .map(|p| match bits {
                1 => u16::from((rev[p / 8] >> (p % 8)) & 1),
                8 => u16::from(rev[p]),
                _ => u16::from(rev[2 * p]) | (u16::from(rev[2 * p + 1]) << 8),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn r1_r6_r12_match_naive(words in proptest::collection::vec(any::<[u8; 8]>(), 0..40)) {
            let src: Vec<u8> = words.concat();
            let mut a = vec![9u8; src.len() * 8];
            unpack_r1(&src, &mut a);
            prop_assert_eq!(a.iter().map(|&v| u16::from(v)).collect::<Vec<_>>(), naive(&src, 1));
            let mut b = vec![9u8; src.len()];
            unpack_r6(&src, &mut b);
            prop_assert_eq!(b.iter().map(|&v| u16::from(v)).collect::<Vec<_>>(), naive(&src, 8));
            let mut c = vec![9u16; src.len() / 2];
            unpack_r12(&src, &mut c);
            prop_assert_eq!(c, naive(&src, 16));
        }
    }

    #[test]
    fn quad_reassembly_matches_pixel_map() {
        // 1-bit quad: 32 bytes per chip row.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let src: Vec<u8> = (0..256 * 4 * 32)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let mut out = vec![7u8; 512 * 512];
        assemble_quad(&src, &mut out, 32, unpack_r1);
        // naive: each stored row decoded as 1024 pixels [B0|B1|B2|B3].
        let rows: Vec<Vec<u16>> = src.chunks(128).map(|r| naive(r, 1)).collect();
        for r in 0..512 {
            for c in 0..512 {
                let want = if r < 256 {
                    let chip = if c < 256 { 3 } else { 2 };
                    rows[r][chip * 256 + c % 256]
                } else {
                    let chip = if c < 256 { 1 } else { 0 };
                    rows[255 - (r - 256)][chip * 256 + 255 - c % 256]
                };
                assert_eq!(u16::from(out[r * 512 + c]), want, "pixel ({r}, {c})");
            }
        }
    }

    #[test]
    fn prefix_parses_and_rejects() {
        let h = b"MQ1,000007,00384,01,0256,0128,U16,   1x1,01,2021";
        let p = parse_prefix(h).unwrap();
        assert_eq!(
            (p.seq, p.hsize, p.nchips, p.width, p.height),
            (7, 384, 1, 256, 128)
        );
        assert_eq!(&p.dtype, b"U16");
        assert_eq!(p.at[4], 20);
        let e = parse_prefix(b"MQ2,000001,00384").unwrap_err();
        assert!(e.msg.contains("MQ1") && e.msg.contains("MQ2"), "{}", e.msg);
        let e = parse_prefix(b"MQ1,0000x1,00384,01,0256,0128,U16,").unwrap_err();
        assert!(e.msg.contains("sequence number") && e.offset == 4, "{e:?}");
        let e = parse_prefix(b"MQ1,000001,00384,01").unwrap_err();
        assert!(e.msg.contains("width"), "{}", e.msg);
        let e = parse_prefix(b"").unwrap_err();
        assert!(e.msg.contains("MQ1"), "{}", e.msg);
    }

    /// Found by fuzz/ mib_header (issue 16): width × height × bytes overflowed and panicked.
    #[test]
    fn issue16_huge_frame_size_is_an_error_not_an_overflow() {
        for dtype in ["U08", "U16", "U32"] {
            let mut h = format!(
                "MQ1,000001,00768,04,777777777777770512,0512,{dtype},   2x2,01,2024,MQ1A,t,1ns,12,"
            )
            .into_bytes();
            h.resize(768, 0);
            let e = plan(Path::new("big.mib"), &h).unwrap_err().to_string();
            assert!(e.contains("too large") && e.contains("big.mib"), "{e}");
        }
    }

    #[test]
    fn hdr_frame_count() {
        let text = "HDR,\t\nTime and Date Stamp (day, mnth, yr, hr, min, s):\t07/05/2021 18:50:41\n\
                    Frames in Acquisition (Number):\t8\nFrames per Trigger (Number):\t1\nEnd\t   \0\0";
        assert_eq!(hdr_frames(text), Some(8));
        assert_eq!(hdr_frames("HDR,\nEnd"), None);
    }
}
