//! Dump writers: raw u16 with a JSON sidecar, and Quantum Detectors Merlin `.mib` (U16).
//!
//! Both are deterministic: no wall clock, no host names. The `.mib` timestamps start at
//! [`MIB_START`] and advance by the shutter time per frame.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::{Error, Result};

/// Bytes of one Merlin single-chip frame header (field 3 of the header).
pub const MIB_HEADER_BYTES: usize = 384;

/// Wall-clock time of the first `.mib` frame: 2026-11-23 12:00:00.000000 (UTC).
pub const MIB_START: (u32, u32, u32) = (2026, 11, 23);

/// Shutter (exposure) time written into `.mib` headers: 1 ms.
pub const MIB_SHUTTER_S: f64 = 0.001;

/// The largest count a Merlin 12-bit counter holds (the depth written into U16 `.mib` headers).
pub const MIB_MAX_COUNT: u16 = 4095;

/// Writes frames of u16 pixels back to back, little-endian, no header.
pub fn write_raw_u16(path: &Path, frames: &[u16]) -> Result<()> {
    let io = |e| Error::io(path, e);
    let mut w = BufWriter::new(File::create(path).map_err(io)?);
    for chunk in frames.chunks(1 << 16) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.write_all(&bytes).map_err(io)?;
    }
    w.flush().map_err(io)
}

/// Formats `micros` microseconds after [`MIB_START`] 00:00 + 12 h as
/// (`"YYYY-MM-DD hh:mm:ss.uuuuuu"`, `"YYYY-MM-DDThh:mm:ss.nnnnnnnnnZ"`).
fn mib_times(micros: u64) -> (String, String) {
    let (year, month, day0) = MIB_START;
    let total_s = 12 * 3600 + micros / 1_000_000;
    let frac = micros % 1_000_000;
    // Days beyond the month are not rolled over (a week of 1 ms frames fits in November).
    let day = day0 as u64 + total_s / 86_400;
    let (h, m, s) = (
        (total_s % 86_400) / 3600,
        (total_s % 3600) / 60,
        total_s % 60,
    );
    (
        format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}.{frac:06}"),
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{frac:06}000Z"),
    )
}

/// The 384-byte ASCII header of frame `seq` (1-based) of a single-chip U16 Merlin file,
/// NUL-padded, with the field list of a real Merlin 12-bit acquisition:
///
/// `MQ1, seq (6 digits), 00384, 01 (chips), width (4), height (4), U16, "   1x1", 01 (chip
/// select), timestamp, shutter s, 0 (counter), 0 (colour mode), 0 (gain), 8 thresholds in keV,
/// 3RX, 27 DAC values, MQ1A, ISO time, exposure "1000000ns", 12 (counter depth),`
pub fn mib_header(seq: usize, width: usize, height: usize) -> [u8; MIB_HEADER_BYTES] {
    let shutter_us = (MIB_SHUTTER_S * 1e6).round() as u64;
    let (local, iso) = mib_times((seq as u64).saturating_sub(1) * shutter_us);
    let thresholds = "1.200000E+2,5.110000E+2,0.000000E+0,0.000000E+0,0.000000E+0,\
                      0.000000E+0,0.000000E+0,0.000000E+0";
    let dacs = "3RX,011,511,000,000,000,000,000,000,175,010,200,125,100,100,093,100,099,030,\
                128,004,255,140,128,191,179,511,511";
    let text = format!(
        "MQ1,{seq:06},{MIB_HEADER_BYTES:05},01,{width:04},{height:04},U16,   1x1,01,{local},\
         {MIB_SHUTTER_S:.6},0,0,0,{thresholds},{dacs},MQ1A,{iso},{}ns,12,",
        shutter_us * 1000
    );
    let mut out = [0u8; MIB_HEADER_BYTES];
    let n = text.len().min(MIB_HEADER_BYTES);
    out[..n].copy_from_slice(&text.as_bytes()[..n]);
    out
}

/// Writes a Merlin `.mib` file: per frame a [`mib_header`] and `width × height` big-endian u16.
pub fn write_mib_u16(path: &Path, frames: &[u16], width: usize, height: usize) -> Result<()> {
    let io = |e| Error::io(path, e);
    let mut w = BufWriter::new(File::create(path).map_err(io)?);
    for (i, frame) in frames.chunks_exact(width * height).enumerate() {
        w.write_all(&mib_header(i + 1, width, height)).map_err(io)?;
        let bytes: Vec<u8> = frame.iter().flat_map(|v| v.to_be_bytes()).collect();
        w.write_all(&bytes).map_err(io)?;
    }
    w.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mib_header_parses_field_by_field() {
        let h = mib_header(1234, 96, 64);
        let text = std::str::from_utf8(&h).unwrap();
        let body = text.trim_end_matches('\0');
        assert!(h[body.len()..].iter().all(|&b| b == 0), "NUL padded");
        let f: Vec<&str> = body.split(',').collect();
        assert_eq!(f[0], "MQ1");
        assert_eq!(f[1], "001234");
        assert_eq!(f[2], "00384");
        assert_eq!(f[2].parse::<usize>().unwrap(), MIB_HEADER_BYTES);
        assert_eq!(f[3], "01");
        assert_eq!(f[4], "0096"); // width
        assert_eq!(f[5], "0064"); // height
        assert_eq!(f[6], "U16");
        assert_eq!(f[7], "   1x1");
        assert_eq!(f[8], "01");
        // Frame 1234 starts 1233 ms after 12:00:00.
        assert_eq!(f[9], "2026-11-23 12:00:01.233000");
        assert_eq!(f[10], "0.001000");
        assert_eq!(&f[11..14], &["0", "0", "0"]);
        assert_eq!(f[14], "1.200000E+2");
        assert_eq!(f[15], "5.110000E+2");
        assert!(f[16..22].iter().all(|v| *v == "0.000000E+0"));
        assert_eq!(f[22], "3RX");
        // Tail, parsed from the end as readers do: MQ1A, ISO time, exposure, depth, "".
        let n = f.len();
        assert_eq!(f[n - 1], "");
        assert_eq!(f[n - 2], "12");
        assert_eq!(f[n - 3], "1000000ns");
        assert_eq!(f[n - 4], "2026-11-23T12:00:01.233000000Z");
        assert_eq!(f[n - 5], "MQ1A");
        // 27 DAC values between "3RX" and "MQ1A", as in a real single-chip file.
        assert_eq!(n - 5 - 23, 27);
    }

    #[test]
    fn mib_times_carry() {
        let (local, iso) = mib_times(3_723_000_001);
        assert_eq!(local, "2026-11-23 13:02:03.000001");
        assert_eq!(iso, "2026-11-23T13:02:03.000001000Z");
    }

    #[test]
    fn writers_lay_out_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let frames: Vec<u16> = (0..8).map(|i| 0x0100 * i + 1).collect();
        let raw = dir.path().join("a.raw");
        write_raw_u16(&raw, &frames).unwrap();
        let b = std::fs::read(&raw).unwrap();
        assert_eq!(b.len(), 16);
        assert_eq!(&b[2..4], &[0x01, 0x01]);
        let mib = dir.path().join("a.mib");
        write_mib_u16(&mib, &frames, 2, 2).unwrap();
        let b = std::fs::read(&mib).unwrap();
        assert_eq!(b.len(), 2 * (384 + 8));
        assert_eq!(&b[384..388], &[0x00, 0x01, 0x01, 0x01]);
        assert!(b[392..].starts_with(b"MQ1,000002,00384"));
    }
}
