//! The frame encodings of the DECTRIS stream interface (the `encoding` of a `dimage_d-1.0`
//! message), decoded into a caller's buffer without allocating per frame:
//!
//! - `<` / `>`: raw pixels, little / big endian.
//! - `lz4<`: one LZ4 block holding the whole frame (no size prefix: the size follows from the
//!   shape and type).
//! - `bs<bits>-lz4<` (`bs16-lz4<`, `bs32-lz4<`, `bs8-lz4<`): the bitshuffle-LZ4 container of
//!   the `bitshuffle` library, the bytes its HDF5 filter stores as one chunk. A 12-byte
//!   header: the uncompressed size in bytes (8, big endian), the block size in bytes (4, big
//!   endian; a whole number of elements, a multiple of 8 of them). Then the frame's elements
//!   in blocks of that size, the last block shortened to the largest multiple of 8 elements
//!   that remains; each block is a 4-byte big-endian compressed length and an LZ4 block that
//!   holds the block bit-transposed. The last `count % 8` elements follow uncompressed and
//!   untransposed.
//!
//! The bit transposition of a block of `n` elements (`n` a multiple of 8) of `s` bytes each:
//! row `r = 8·j + k` (byte `j` of an element, bit `k` of that byte) holds `n / 8` bytes, and
//! bit `i % 8` of its byte `i / 8` is bit `k` of byte `j` of element `i`. [`bitunshuffle`]
//! undoes it eight elements at a time with an 8 × 8 bit-matrix transpose.

use std::fmt;

/// What went wrong decoding a frame, and at which byte of its encoded data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset in the encoded frame.
    pub offset: usize,
    /// What was found there.
    pub msg: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at byte {} of the encoded frame: {}",
            self.offset, self.msg
        )
    }
}

fn err(offset: usize, msg: impl Into<String>) -> DecodeError {
    DecodeError {
        offset,
        msg: msg.into(),
    }
}

/// How a frame is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Raw pixels.
    None,
    /// One LZ4 block.
    Lz4,
    /// The bitshuffle-LZ4 container.
    BitshuffleLz4,
}

/// A parsed `encoding` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// The compression.
    pub compression: Compression,
    /// The pixels are little-endian (`<`), else big-endian (`>`).
    pub little_endian: bool,
    /// `bs<bits>`: the element size the bitshuffle was done with, in bits.
    pub shuffle_bits: Option<u32>,
}

impl Encoding {
    /// Parses `<`, `>`, `lz4<`, `lz4>`, `bs<bits>-lz4<` or `bs<bits>-lz4>`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "encoding `{}` is not one this receiver decodes (`<`, `lz4<`, `bs16-lz4<`, \
                 `bs32-lz4<`, `bs8-lz4<`, or the same with `>`)",
                s.escape_debug()
            )
        };
        let (body, little_endian) = match s.as_bytes().last() {
            Some(b'<') => (&s[..s.len() - 1], true),
            Some(b'>') => (&s[..s.len() - 1], false),
            _ => return Err(bad()),
        };
        let (compression, shuffle_bits) = match body {
            "" => (Compression::None, None),
            "lz4" => (Compression::Lz4, None),
            _ => {
                let bits = body
                    .strip_prefix("bs")
                    .and_then(|b| b.strip_suffix("-lz4"))
                    .and_then(|b| b.parse::<u32>().ok())
                    .filter(|b| matches!(b, 8 | 16 | 32))
                    .ok_or_else(bad)?;
                (Compression::BitshuffleLz4, Some(bits))
            }
        };
        Ok(Encoding {
            compression,
            little_endian,
            shuffle_bits,
        })
    }
}

/// Decodes `src`, encoded as `encoding`, into `out` (the frame's bytes, in the pixels' stored
/// byte order: the caller swaps when that is not the machine's). `elem_size` is the pixel
/// size in bytes; `scratch` holds one transposed block (grown once, to the block size).
pub fn decode(
    encoding: &Encoding,
    src: &[u8],
    elem_size: usize,
    out: &mut [u8],
    scratch: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    match encoding.compression {
        Compression::None => {
            if src.len() != out.len() {
                return Err(err(
                    0,
                    format!(
                        "{} bytes of raw pixels, expected {} (shape × type)",
                        src.len(),
                        out.len()
                    ),
                ));
            }
            out.copy_from_slice(src);
            Ok(())
        }
        Compression::Lz4 => decode_lz4(src, out),
        Compression::BitshuffleLz4 => {
            if let Some(bits) = encoding.shuffle_bits
                && bits as usize != elem_size * 8
            {
                return Err(err(
                    0,
                    format!(
                        "bitshuffled as {bits}-bit elements but the pixels are {}-bit",
                        elem_size * 8
                    ),
                ));
            }
            decode_bslz4(src, elem_size, out, scratch)
        }
    }
}

/// One LZ4 block that must decompress to exactly `out.len()` bytes.
pub fn decode_lz4(src: &[u8], out: &mut [u8]) -> Result<(), DecodeError> {
    lz4_block(src, out, 0)
}

fn lz4_block(src: &[u8], out: &mut [u8], offset: usize) -> Result<(), DecodeError> {
    match lz4_flex::block::decompress_into(src, out) {
        Ok(n) if n == out.len() => Ok(()),
        Ok(n) => Err(err(
            offset,
            format!(
                "the LZ4 block of {} bytes decompresses to {n} bytes, expected {}",
                src.len(),
                out.len()
            ),
        )),
        Err(e) => Err(err(
            offset,
            format!(
                "the LZ4 block of {} bytes (expected to give {} bytes) is corrupt: {e}",
                src.len(),
                out.len()
            ),
        )),
    }
}

fn be_u64(b: &[u8]) -> u64 {
    b.iter().fold(0, |acc, &x| (acc << 8) | u64::from(x))
}

/// Decodes a bitshuffle-LZ4 container (see the [module docs](self)) of `elem_size`-byte
/// elements into `out`, whose length must be the container's uncompressed size.
pub fn decode_bslz4(
    src: &[u8],
    elem_size: usize,
    out: &mut [u8],
    scratch: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    if src.len() < 12 {
        return Err(err(
            src.len(),
            format!(
                "{} bytes: shorter than the 12-byte bitshuffle-LZ4 header",
                src.len()
            ),
        ));
    }
    let total = be_u64(&src[..8]);
    if total != out.len() as u64 {
        return Err(err(
            0,
            format!(
                "the header says {total} uncompressed bytes, expected {} (shape × type)",
                out.len()
            ),
        ));
    }
    let block_bytes = be_u64(&src[8..12]) as usize;
    if elem_size == 0 || block_bytes == 0 || block_bytes % (elem_size * 8) != 0 {
        return Err(err(
            8,
            format!(
                "block size {block_bytes} bytes is not a positive multiple of 8 elements of \
                 {elem_size} bytes"
            ),
        ));
    }
    if out.len() % elem_size != 0 {
        return Err(err(
            0,
            format!(
                "{} bytes is not a whole number of {elem_size}-byte elements",
                out.len()
            ),
        ));
    }
    let block_elems = block_bytes / elem_size;
    let count = out.len() / elem_size;
    if scratch.len() < block_bytes.min(out.len()) {
        scratch.resize(block_bytes.min(out.len()), 0);
    }
    let mut at = 12usize;
    let mut done = 0usize; // elements decoded
    let tail = count % 8;
    while done < count - tail {
        let n = block_elems.min(count - tail - done);
        let bytes = n * elem_size;
        if src.len() - at < 4 {
            return Err(err(
                at,
                format!(
                    "the data ends inside the length of the block starting at element {done} \
                     ({} of 4 bytes)",
                    src.len() - at
                ),
            ));
        }
        let clen = be_u64(&src[at..at + 4]) as usize;
        at += 4;
        if src.len() - at < clen {
            return Err(err(
                at,
                format!(
                    "the block starting at element {done} has {clen} compressed bytes but only \
                     {} remain (truncated)",
                    src.len() - at
                ),
            ));
        }
        lz4_block(&src[at..at + clen], &mut scratch[..bytes], at)?;
        bitunshuffle(
            &scratch[..bytes],
            &mut out[done * elem_size..done * elem_size + bytes],
            elem_size,
        );
        at += clen;
        done += n;
    }
    let rest = tail * elem_size;
    if src.len() - at != rest {
        return Err(err(
            at,
            format!(
                "{} bytes after the last block, expected the {tail} trailing elements \
                 ({rest} bytes) stored as they are",
                src.len() - at
            ),
        ));
    }
    out[done * elem_size..].copy_from_slice(&src[at..]);
    Ok(())
}

/// Transposes an 8 × 8 bit matrix held in a `u64` (bit `8·r + c` ↔ bit `8·c + r`).
#[inline]
fn transpose8(mut x: u64) -> u64 {
    let t = (x ^ (x >> 7)) & 0x00AA_00AA_00AA_00AA;
    x ^= t ^ (t << 7);
    let t = (x ^ (x >> 14)) & 0x0000_CCCC_0000_CCCC;
    x ^= t ^ (t << 14);
    let t = (x ^ (x >> 28)) & 0x0000_0000_F0F0_F0F0;
    x ^= t ^ (t << 28);
    x
}

/// Undoes the bit transposition of one block: `src` and `dst` hold `n` elements of
/// `elem_size` bytes, `n` a multiple of 8 (see the [module docs](self)).
///
/// # Panics
/// When the lengths differ or are not a whole number of 8-element groups (the callers size
/// them so).
pub fn bitunshuffle(src: &[u8], dst: &mut [u8], elem_size: usize) {
    assert!(
        src.len() == dst.len() && src.len() % (8 * elem_size) == 0,
        "bitunshuffle: {} and {} bytes for {elem_size}-byte elements",
        src.len(),
        dst.len()
    );
    let row = src.len() / elem_size / 8; // bytes per bit row
    for (g, group) in dst.chunks_exact_mut(8 * elem_size).enumerate() {
        for j in 0..elem_size {
            let mut x = 0u64;
            for k in 0..8 {
                x |= u64::from(src[(8 * j + k) * row + g]) << (8 * k);
            }
            let y = transpose8(x).to_le_bytes();
            for (m, &b) in y.iter().enumerate() {
                group[m * elem_size + j] = b;
            }
        }
    }
}

/// The bit transposition of one block, the inverse of [`bitunshuffle`] (for test senders
/// and the bench: detectors, and the `bitshuffle` library, do the encoding in practice).
///
/// # Panics
/// As [`bitunshuffle`].
pub fn bitshuffle(src: &[u8], dst: &mut [u8], elem_size: usize) {
    assert!(
        src.len() == dst.len() && src.len() % (8 * elem_size) == 0,
        "bitshuffle: {} and {} bytes for {elem_size}-byte elements",
        src.len(),
        dst.len()
    );
    let row = src.len() / elem_size / 8;
    for (g, group) in src.chunks_exact(8 * elem_size).enumerate() {
        for j in 0..elem_size {
            let mut x = 0u64;
            for m in 0..8 {
                x |= u64::from(group[m * elem_size + j]) << (8 * m);
            }
            for (k, &b) in transpose8(x).to_le_bytes().iter().enumerate() {
                dst[(8 * j + k) * row + g] = b;
            }
        }
    }
}

/// Encodes `data` (`elem_size`-byte elements) as the bitshuffle-LZ4 container with blocks of
/// `block_elems` elements (a positive multiple of 8), as the `bitshuffle` library's HDF5 filter
/// stores it; for test senders and the bench (allocates).
pub fn encode_bslz4(data: &[u8], elem_size: usize, block_elems: usize) -> Vec<u8> {
    assert!(block_elems > 0 && block_elems % 8 == 0 && data.len() % elem_size == 0);
    let count = data.len() / elem_size;
    let mut out = (data.len() as u64).to_be_bytes().to_vec();
    out.extend(((block_elems * elem_size) as u32).to_be_bytes());
    let whole = count - count % 8;
    let mut block = vec![0u8; block_elems * elem_size];
    let mut i = 0;
    while i < whole {
        let n = block_elems.min(whole - i);
        let shuffled = &mut block[..n * elem_size];
        bitshuffle(
            &data[i * elem_size..(i + n) * elem_size],
            shuffled,
            elem_size,
        );
        let c = lz4_flex::block::compress(shuffled);
        out.extend((c.len() as u32).to_be_bytes());
        out.extend(c);
        i += n;
    }
    out.extend(&data[whole * elem_size..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The transposition as the module docs define it, bit by bit.
    fn naive_shuffle(src: &[u8], elem_size: usize) -> Vec<u8> {
        let n = src.len() / elem_size;
        let mut out = vec![0u8; src.len()];
        for i in 0..n {
            for j in 0..elem_size {
                for k in 0..8 {
                    let bit = (src[i * elem_size + j] >> k) & 1;
                    let r = 8 * j + k;
                    out[r * (n / 8) + i / 8] |= bit << (i % 8);
                }
            }
        }
        out
    }

    proptest! {
        #[test]
        fn unshuffle_inverts_the_naive_shuffle(
            elem_size in prop::sample::select(vec![1usize, 2, 4, 8]),
            groups in 1usize..40,
            seed in any::<u64>(),
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
            let data: Vec<u8> = (0..groups * 8 * elem_size).map(|_| rng.r#gen()).collect();
            let shuffled = naive_shuffle(&data, elem_size);
            let mut back = vec![0u8; data.len()];
            bitunshuffle(&shuffled, &mut back, elem_size);
            prop_assert_eq!(back, data.clone());
            let mut again = vec![0u8; data.len()];
            bitshuffle(&data, &mut again, elem_size);
            prop_assert_eq!(again, shuffled);
        }

        #[test]
        fn bslz4_of_naive_shuffle_decodes(
            elem_size in prop::sample::select(vec![1usize, 2, 4]),
            count in 0usize..3000,
            block_groups in 1usize..80,
            seed in any::<u64>(),
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
            // Small values: compressible, like counts.
            let data: Vec<u8> = (0..count * elem_size)
                .map(|i| if i % elem_size == 0 { rng.gen_range(0..4) } else { 0 })
                .collect();
            let blob = naive_bslz4(&data, elem_size, block_groups * 8);
            prop_assert_eq!(&encode_bslz4(&data, elem_size, block_groups * 8), &blob);
            let mut out = vec![0xAAu8; data.len()];
            let mut scratch = Vec::new();
            decode_bslz4(&blob, elem_size, &mut out, &mut scratch).unwrap();
            prop_assert_eq!(out, data);
        }
    }

    /// The container per the module docs, from the naive shuffle and lz4_flex's encoder.
    fn naive_bslz4(data: &[u8], elem_size: usize, block_elems: usize) -> Vec<u8> {
        let count = data.len() / elem_size;
        let mut out = (data.len() as u64).to_be_bytes().to_vec();
        out.extend(((block_elems * elem_size) as u32).to_be_bytes());
        let whole = count - count % 8;
        let mut i = 0;
        while i < whole {
            let n = block_elems.min(whole - i);
            let block = naive_shuffle(&data[i * elem_size..(i + n) * elem_size], elem_size);
            let c = lz4_flex::block::compress(&block);
            out.extend((c.len() as u32).to_be_bytes());
            out.extend(c);
            i += n;
        }
        out.extend(&data[whole * elem_size..]);
        out
    }

    #[test]
    fn transpose8_is_a_transpose() {
        for (r, c) in [(0, 0), (0, 7), (3, 5), (7, 0), (6, 6)] {
            assert_eq!(transpose8(1 << (8 * r + c)), 1 << (8 * c + r));
        }
    }

    /// Blobs made by the `bitshuffle` library's own encoder through its HDF5 filter
    /// (hdf5plugin 7.1.0, `Bitshuffle(nelems=0, cname="lz4")`, one chunk per frame, read back
    /// with h5py's `read_direct_chunk`); see `tests/peers/dectris_vectors.py`.
    #[test]
    fn blobs_from_the_bitshuffle_library_decode_exactly() {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../../../tests/peers/bslz4_vectors.json"))
                .unwrap();
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let mut scratch = Vec::new();
        let vectors = vectors.as_array().unwrap();
        assert!(vectors.len() >= 4);
        for v in vectors {
            let elem_size = v["elem_size"].as_u64().unwrap() as usize;
            let raw = hex(v["raw"].as_str().unwrap());
            let blob = hex(v["bslz4"].as_str().unwrap());
            let enc = Encoding::parse(v["encoding"].as_str().unwrap()).unwrap();
            let mut out = vec![0u8; raw.len()];
            decode(&enc, &blob, elem_size, &mut out, &mut scratch).unwrap();
            assert_eq!(out, raw, "{}", v["what"]);
        }
    }

    #[test]
    fn encodings_parse() {
        let e = Encoding::parse("bs16-lz4<").unwrap();
        assert_eq!(e.compression, Compression::BitshuffleLz4);
        assert_eq!(e.shuffle_bits, Some(16));
        assert!(e.little_endian);
        assert_eq!(
            Encoding::parse("lz4<").unwrap().compression,
            Compression::Lz4
        );
        assert!(!Encoding::parse(">").unwrap().little_endian);
        for bad in ["", "lz4", "bs12-lz4<", "bslz4<", "zstd<", "bs16-lz4"] {
            assert!(Encoding::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lz4_frames_decode() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8).collect();
        let c = lz4_flex::block::compress(&data);
        let mut out = vec![0u8; data.len()];
        decode_lz4(&c, &mut out).unwrap();
        assert_eq!(out, data);
        let mut short = vec![0u8; data.len() + 1];
        assert!(
            decode_lz4(&c, &mut short)
                .unwrap_err()
                .msg
                .contains("expected 5001")
        );
    }

    #[test]
    fn malformed_containers_name_the_byte() {
        let data: Vec<u8> = (0..2000u32)
            .flat_map(|i| ((i % 9) as u16).to_le_bytes())
            .collect();
        let blob = naive_bslz4(&data, 2, 512);
        let mut out = vec![0u8; data.len()];
        let mut s = Vec::new();
        // Too short for the header.
        let e = decode_bslz4(&blob[..7], 2, &mut out, &mut s).unwrap_err();
        assert!(e.msg.contains("12-byte"), "{e}");
        // Wrong size for the frame.
        let mut small = vec![0u8; data.len() - 2];
        let e = decode_bslz4(&blob, 2, &mut small, &mut s).unwrap_err();
        assert!(e.msg.contains("4000 uncompressed"), "{e}");
        // A block size that is not a multiple of 8 elements.
        let mut b = blob.clone();
        b[8..12].copy_from_slice(&1002u32.to_be_bytes());
        let e = decode_bslz4(&b, 2, &mut out, &mut s).unwrap_err();
        assert_eq!(e.offset, 8);
        assert!(e.msg.contains("1002"), "{e}");
        // Truncated inside a block.
        let e = decode_bslz4(&blob[..blob.len() - 5], 2, &mut out, &mut s).unwrap_err();
        assert!(e.msg.contains("truncated"), "{e}");
        // Trailing garbage.
        let mut b = blob.clone();
        b.push(0);
        let e = decode_bslz4(&b, 2, &mut out, &mut s).unwrap_err();
        assert!(e.msg.contains("after the last block"), "{e}");
        // A corrupt block: its length claims more than the block holds.
        let mut b = blob.clone();
        b[12..16].copy_from_slice(&3u32.to_be_bytes());
        let e = decode_bslz4(&b, 2, &mut out, &mut s).unwrap_err();
        assert_eq!(e.offset, 16);
        // And the whole thing decodes.
        decode_bslz4(&blob, 2, &mut out, &mut s).unwrap();
        assert_eq!(out, data);
    }
}
