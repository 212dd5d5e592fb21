//! Entry points for the fuzz targets in `fuzz/` and for the test that replays their corpora.
//!
//! Not part of ptyflow's API (hidden from the docs, no stability promise): each function feeds
//! outside bytes to one of the crate's own parsers, exactly as the crate calls it, and checks
//! the properties that must hold for any input. A parser may return an error; it must never
//! panic, hang or read out of bounds. Keeping these wrappers here, rather than making the
//! parsers public, leaves the parsers' visibility as it is.

use std::path::Path;

use crate::source::{self, Dump, Frame, OpenOptions};

/// The Merlin frame header: the per-frame prefix parse, then the whole of frame 0's header as
/// `Dump::open` plans it, then the per-frame check of the same header against itself.
pub fn mib_header(bytes: &[u8]) {
    let _ = source::mib::parse_prefix(bytes);
    // A path whose `.hdr` cannot exist, so the plan reads no file.
    let path = Path::new("/nonexistent/ptyflow-fuzz/frame.mib");
    if let Ok(plan) = source::mib::plan(path, bytes) {
        if let Some(check) = plan.header_check() {
            check
                .check(path, bytes, 0, 0)
                .expect("frame 0's header must pass the check against itself");
        }
    }
}

/// The Merlin acquisition `.hdr` text (`Frames in Acquisition (Number)`).
pub fn mib_hdr(bytes: &[u8]) {
    let _ = source::mib::hdr_frames(&String::from_utf8_lossy(bytes));
}

/// The EMPAD acquisition `.xml` and the `scan_x…_y…` file-name convention.
pub fn empad_xml(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = source::empad::parse_xml(&text);
    let _ = source::empad::scan_from_name(&text);
}

/// The raw-dump sidecar JSON.
pub fn raw_sidecar(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(sidecar) = source::RawSidecar::parse(Path::new("fuzz.json"), &text) {
        // What parses must survive a round trip through the writer's format.
        let again = serde_json::to_string(&sidecar).expect("a sidecar serialises");
        let back = source::RawSidecar::parse(Path::new("fuzz.json"), &again)
            .expect("a written sidecar parses");
        assert_eq!(
            serde_json::to_value(&back).ok(),
            serde_json::to_value(&sidecar).ok()
        );
    }
}

/// The `--virtual` detector spec; what parses must print back to the same spec.
pub fn virtual_spec(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(spec) = text.parse::<crate::pipeline::detectors::VirtualSpec>() {
        let printed = spec.to_string();
        let back: crate::pipeline::detectors::VirtualSpec = printed
            .parse()
            .expect("a printed --virtual spec parses again");
        assert_eq!(back, spec, "`{text}` printed as `{printed}`");
        let _ = spec.to_pixels(Some(0.5));
    }
}

/// A SIZE (`--memory-budget`, `PTYFLOW_MEMORY_BUDGET`).
pub fn parse_size(bytes: &[u8]) {
    let _ = crate::budget::parse_size(&String::from_utf8_lossy(bytes), "--memory-budget");
}

/// A whole dump file: writes `bytes` into `dir` and opens and reads it as `ptyflow info`
/// does. The first byte picks the format: even, a Merlin `.mib` of the remaining bytes; odd,
/// a raw dump whose sidecar JSON is the next `n` bytes (`n` from the two bytes after the
/// first, little-endian) and whose data is the rest.
pub fn dump_file(dir: &Path, bytes: &[u8]) {
    let Some((&kind, rest)) = bytes.split_first() else {
        return;
    };
    let path = if kind % 2 == 0 {
        let path = dir.join("fuzz.mib");
        std::fs::write(&path, rest).expect("write the fuzz input");
        path
    } else {
        let Some((len, rest)) = rest.split_first_chunk::<2>() else {
            return;
        };
        let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
        let (sidecar, data) = rest.split_at(len);
        let path = dir.join("fuzz.raw");
        std::fs::write(&path, data).expect("write the fuzz input");
        std::fs::write(source::RawSidecar::path_for(&path), sidecar)
            .expect("write the fuzz sidecar");
        path
    };
    let Ok(dump) = Dump::open(&path, &OpenOptions::default()) else {
        return;
    };
    let info = dump.info();
    assert!(info.frames >= 1);
    let mut reader = dump.reader();
    let mut total = 0.0f64;
    for index in 0..info.frames {
        let Ok(frame) = reader.frame(index) else {
            continue;
        };
        assert_eq!(frame.len(), info.pixels());
        total += match frame {
            Frame::U8(p) => p.iter().map(|&v| f64::from(v)).sum::<f64>(),
            Frame::U16(p) => p.iter().map(|&v| f64::from(v)).sum(),
            Frame::U32(p) => p.iter().map(|&v| f64::from(v)).sum(),
            Frame::F32(p) => p.iter().map(|&v| f64::from(v)).sum(),
        };
    }
    std::hint::black_box(total);
    dump.check_frames(0..info.frames)
        .expect("nobody changes the file while it is read");
}

/// The job configuration JSON (the C API's `ptyflow_create_json`, the Python package's
/// keywords): parse and validate; a configuration that parses writes back to JSON that
/// parses to the same configuration.
pub fn job_config(bytes: &[u8]) {
    use crate::job::JobConfig;
    let text = String::from_utf8_lossy(bytes);
    if let Ok(config) = JobConfig::from_json(&text) {
        let _ = config.validate();
        let again = serde_json::to_string(&config).expect("a parsed configuration serializes");
        let back = JobConfig::from_json(&again).expect("a written configuration parses");
        assert_eq!(
            back, config,
            "the configuration does not round-trip: {again}"
        );
    }
}

/// The command line's `--scan ROWSxCOLS`, `--crop X0,Y0,W,H` and `--center X,Y` specs.
#[cfg(feature = "cli")]
pub fn cli_specs(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = crate::cli::replay::parse_scan(&text);
    let _ = crate::cli::replay::parse_crop(&text);
    let _ = crate::cli::replay::parse_pair(&text);
}

/// The NumPy `.npy` header and layout: what plans must describe an array that fits the bytes,
/// and every frame of it must read (C order straight, Fortran order gathered).
pub fn npy_header(bytes: &[u8]) {
    let path = Path::new("fuzz.npy");
    let _ = source::npy::parse_header(path, bytes);
    if let Ok((plan, strided)) = source::npy::plan(path, bytes) {
        let need = plan.header_bytes() + plan.frame_bytes() * plan.declared_frames();
        assert_eq!(need, bytes.len() as u64, "a plan's array fills the file");
        if let Some(s) = strided {
            let mut bufs = source::DecodeBuffers::default();
            for f in 0..plan.declared_frames() as usize {
                assert_eq!(s.frame(bytes, f, &mut bufs).len(), plan.pixels());
            }
        }
    }
}

/// The Merlin data-port stream (`MPX,<length>,` framing, `HDR,`, `MQ1,` frames) as
/// [`source::live::merlin::MerlinReceiver`] reads it from a socket: every message until the
/// stream ends or errors. Frames handed out must have the size of the first frame's layout.
pub fn merlin_stream(bytes: &[u8]) {
    use source::live::merlin::{MerlinReceiver, Message};
    let mut rx = MerlinReceiver::new(std::io::Cursor::new(bytes), "fuzz:0");
    let mut size = None;
    // Each message consumes at least its 15-byte prefix, so this bounds the loop.
    for _ in 0..=bytes.len() / 15 {
        match rx.receive() {
            Ok(Some(Message::Frame {
                width,
                height,
                frame,
                ..
            })) => {
                assert_eq!(frame.len(), width * height, "a frame holds width × height");
                assert_eq!(*size.get_or_insert(frame.len()), frame.len());
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
}

/// The DECTRIS frame decoders ([`source::live::bslz4`]). The first byte picks the element
/// size (1, 2 or 4 bytes) and the encoding, the next two the frame's element count; the rest
/// is the encoded blob, which must decode or fail with an error. Then the same bytes, taken
/// as pixels, must survive the bitshuffle-LZ4 container and plain LZ4 round trips.
pub fn bslz4(bytes: &[u8]) {
    use source::live::bslz4::{Encoding, decode, encode_bslz4};
    let [pick, n0, n1, blob @ ..] = bytes else {
        return;
    };
    let elem = [1usize, 2, 4][usize::from(pick % 3)];
    let encoding = [
        "bs8-lz4<",
        "bs16-lz4<",
        "bs32-lz4<",
        "lz4<",
        "<",
        ">",
        "bs16-lz4>",
    ][usize::from(pick / 3 % 7)];
    let Ok(enc) = Encoding::parse(encoding) else {
        return;
    };
    let count = usize::from(u16::from_le_bytes([*n0, *n1])) % 4097;
    let mut out = vec![0u8; count * elem];
    let mut scratch = Vec::new();
    let _ = decode(&enc, blob, elem, &mut out, &mut scratch);

    let data = &blob[..blob.len() - blob.len() % elem];
    if data.is_empty() {
        return;
    }
    let block = 8 * (1 + usize::from(*n0 % 16));
    let packed = encode_bslz4(data, elem, block);
    let bs = Encoding::parse(&format!("bs{}-lz4<", elem * 8)).expect("a bitshuffle encoding");
    let mut back = vec![0u8; data.len()];
    decode(&bs, &packed, elem, &mut back, &mut scratch).expect("an encoded frame decodes");
    assert_eq!(back, data, "bitshuffle-LZ4 round trip");
    let lz = lz4_flex::block::compress(data);
    let plain = Encoding::parse("lz4<").expect("the LZ4 encoding");
    decode(&plain, &lz, elem, &mut back, &mut scratch).expect("an LZ4 frame decodes");
    assert_eq!(back, data, "LZ4 round trip");
}
