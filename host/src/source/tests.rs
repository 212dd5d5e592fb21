//! Unit tests of the readers on small synthetic files written here.

use std::path::{Path, PathBuf};

use super::*;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn open(path: &Path) -> Result<Dump> {
    Dump::open(path, &OpenOptions::default())
}

/// Opens `path` and reads every frame (so every Merlin header gets checked).
fn read_all(path: &Path) -> Result<usize> {
    let dump = open(path)?;
    let mut r = dump.reader();
    for i in 0..dump.info().frames {
        r.frame(i)?;
    }
    Ok(dump.info().frames)
}

fn err(r: Result<impl std::fmt::Debug>) -> String {
    r.unwrap_err().to_string()
}

fn pattern(frames: usize, n: usize) -> Vec<Vec<u32>> {
    (0..frames)
        .map(|f| {
            (0..n)
                .map(|i| ((f * 7919 + i * 104_729) % 65_521) as u32)
                .collect()
        })
        .collect()
}

#[test]
fn dump_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Dump>();
    check::<DumpInfo>();
}

// ---------------------------------------------------------------- raw

fn write_raw(path: &Path, header: usize, fh: usize, ff: usize, frames: &[Vec<u8>]) {
    let mut bytes = vec![0xAB; header];
    for f in frames {
        bytes.extend(std::iter::repeat_n(0xCD, fh));
        bytes.extend(f);
        bytes.extend(std::iter::repeat_n(0xEF, ff));
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn raw_u16_little_endian_with_sidecar_is_zero_copy() {
    let dir = tmp();
    let path = dir.path().join("scan.raw");
    let px = pattern(6, 5 * 3);
    let frames: Vec<Vec<u8>> = px
        .iter()
        .map(|f| f.iter().flat_map(|&v| (v as u16).to_le_bytes()).collect())
        .collect();
    write_raw(&path, 0, 0, 0, &frames);
    let mut s = RawSidecar::new(5, 3, RawDtype::U16);
    s.frames = Some(6);
    s.scan = Some([2, 3]);
    s.write(&path).unwrap();

    let dump = open(&path).unwrap();
    let info = dump.info();
    assert_eq!(
        (info.format, info.width, info.height, info.frames),
        (Format::Raw, 5, 3, 6)
    );
    assert_eq!(
        (info.pixel, info.scan, info.zero_copy),
        (PixelKind::U16, Some((2, 3)), true)
    );
    let mut r = dump.reader();
    for (i, want) in px.iter().enumerate() {
        let Frame::U16(got) = r.frame(i).unwrap() else {
            panic!("u16 expected")
        };
        let base = dump.map.as_ptr() as usize;
        let at = got.as_ptr() as usize - base;
        assert_eq!(
            at as u64,
            info.frame_offset(i),
            "frame {i} must point into the map"
        );
        assert_eq!(got.iter().map(|&v| u32::from(v)).collect::<Vec<_>>(), *want);
    }
}

#[test]
fn raw_big_endian_with_headers_and_footers_decodes() {
    let dir = tmp();
    let path = dir.path().join("be.dat");
    let px = pattern(4, 6);
    for (dtype, bytes) in [(RawDtype::U16, 2), (RawDtype::U32, 4)] {
        let frames: Vec<Vec<u8>> = px
            .iter()
            .map(|f| {
                f.iter()
                    .flat_map(|&v| {
                        if bytes == 2 {
                            (v as u16).to_be_bytes().to_vec()
                        } else {
                            v.to_be_bytes().to_vec()
                        }
                    })
                    .collect()
            })
            .collect();
        write_raw(&path, 10, 3, 5, &frames);
        let opts = OpenOptions {
            format: Some(Format::Raw),
            raw: RawOverrides {
                width: Some(3),
                height: Some(2),
                dtype: Some(dtype),
                big_endian: Some(true),
                header_bytes: Some(10),
                frame_header_bytes: Some(3),
                frame_footer_bytes: Some(5),
            },
        };
        let dump = Dump::open(&path, &opts).unwrap();
        assert_eq!(dump.info().frames, 4);
        assert!(!dump.info().zero_copy);
        let mut r = dump.reader();
        for (i, want) in px.iter().enumerate() {
            let got: Vec<u32> = match r.frame(i).unwrap() {
                Frame::U16(p) => p.iter().map(|&v| v.into()).collect(),
                Frame::U32(p) => p.to_vec(),
                f => panic!("{f:?}"),
            };
            assert_eq!(&got, want, "{dtype:?} frame {i}");
        }
    }
}

#[test]
fn raw_misaligned_little_endian_is_decoded_not_cast() {
    let dir = tmp();
    let path = dir.path().join("odd.bin");
    let vals: Vec<f32> = (0..8).map(|i| i as f32 * 1.5 - 3.0).collect();
    let frame: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_raw(&path, 1, 0, 0, &[frame.clone(), frame]);
    let opts = OpenOptions {
        format: None, // layout flags alone select raw
        raw: RawOverrides {
            width: Some(4),
            height: Some(2),
            dtype: Some(RawDtype::F32),
            header_bytes: Some(1),
            ..Default::default()
        },
    };
    let dump = Dump::open(&path, &opts).unwrap();
    assert!(!dump.info().zero_copy);
    let mut r = dump.reader();
    assert_eq!(r.frame(1).unwrap(), Frame::F32(&vals));
}

#[test]
fn raw_i32_becomes_f32_and_options_override_sidecar() {
    let dir = tmp();
    let path = dir.path().join("i32.raw");
    let vals: Vec<i32> = vec![-5, 0, 7, 16_777_216, -16_777_216, 42];
    let frame: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_raw(&path, 0, 0, 0, &[frame]);
    // The sidecar is wrong (u8, 2 × 2): the options win.
    RawSidecar::new(2, 2, RawDtype::U8).write(&path).unwrap();
    let opts = OpenOptions {
        format: None,
        raw: RawOverrides {
            width: Some(3),
            height: Some(2),
            dtype: Some(RawDtype::I32),
            ..Default::default()
        },
    };
    let dump = Dump::open(&path, &opts).unwrap();
    assert_eq!(dump.info().pixel, PixelKind::F32);
    let mut r = dump.reader();
    let Frame::F32(got) = r.frame(0).unwrap() else {
        panic!()
    };
    assert_eq!(got.iter().map(|&v| v as i32).collect::<Vec<_>>(), vals);
}

#[test]
fn foreign_sidecar_is_ignored_when_the_flags_give_the_layout() {
    let dir = tmp();
    let path = dir.path().join("scan.raw");
    let px: Vec<u16> = (0..2 * 3 * 4).map(|i| i * 1000 + 7).collect();
    std::fs::write(&path, bytemuck::cast_slice::<u16, u8>(&px)).unwrap();
    // Another program's metadata, with numpy's dtype strings.
    std::fs::write(
        RawSidecar::path_for(&path),
        r#"{"dtype": "<u2", "shape": [2, 3, 4], "fortran_order": false}"#,
    )
    .unwrap();
    let e = err(open(&path));
    assert!(
        e.contains("scan.raw.json")
            && e.contains("<u2")
            && e.contains("--width, --height and --dtype"),
        "{e}"
    );
    let flags = OpenOptions {
        format: None,
        raw: RawOverrides {
            width: Some(4),
            height: Some(3),
            dtype: Some(RawDtype::U16),
            ..Default::default()
        },
    };
    let dump = Dump::open(&path, &flags).unwrap();
    let info = dump.info();
    assert_eq!((info.frames, info.width, info.height), (2, 4, 3));
    assert!(
        info.notes
            .iter()
            .any(|n| n.contains("not a ptyflow sidecar") && n.contains("flags")),
        "{:?}",
        info.notes
    );
    let mut r = dump.reader();
    let Frame::U16(f1) = r.frame(1).unwrap() else {
        panic!("u16 frames expected")
    };
    assert_eq!(f1, &px[12..]);
    // Incomplete flags still refuse, naming the sidecar.
    let partial = OpenOptions {
        format: None,
        raw: RawOverrides {
            width: Some(4),
            ..Default::default()
        },
    };
    assert!(err(Dump::open(&path, &partial)).contains("scan.raw.json"));
}

// ---------------------------------------------------------------- npy

#[test]
fn hdf5_files_get_a_way_out() {
    let dir = tmp();
    let path = dir.path().join("scan.emd");
    std::fs::write(&path, b"\x89HDF\r\n\x1a\n").unwrap();
    let e = err(open(&path));
    assert!(e.contains("scan.emd") && e.contains("numpy.save"), "{e}");
}

/// A `.npy` as numpy 1.x writes it (header padded to 64 bytes), holding `data`.
fn write_npy(path: &Path, descr: &str, fortran: bool, shape: &[usize], data: &[u8]) {
    let py = if fortran { "True" } else { "False" };
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut d = format!(
        "{{'descr': '{descr}', 'fortran_order': {py}, 'shape': ({}), }}",
        dims.join(", ")
    );
    while (10 + d.len() + 1) % 64 != 0 {
        d.push(' ');
    }
    d.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((d.len() as u16).to_le_bytes());
    bytes.extend(d.as_bytes());
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn npy_c_order_is_zero_copy_and_fortran_matches_it() {
    let dir = tmp();
    let (sy, sx, dy, dx) = (3usize, 2usize, 4usize, 5usize);
    let frames = pattern(sy * sx, dy * dx);
    let c: Vec<u8> = frames
        .iter()
        .flatten()
        .flat_map(|&v| (v as u16).to_le_bytes())
        .collect();
    let cpath = dir.path().join("c.npy");
    write_npy(&cpath, "<u2", false, &[sy, sx, dy, dx], &c);
    // The same array in Fortran order: element (y, x, r, col) at y + sy·(x + sx·(r + dy·col)).
    let mut f = vec![0u8; c.len()];
    for (i, fr) in frames.iter().enumerate() {
        let (y, x) = (i / sx, i % sx);
        for r in 0..dy {
            for col in 0..dx {
                let at = y + sy * (x + sx * (r + dy * col));
                f[2 * at..2 * at + 2].copy_from_slice(&(fr[r * dx + col] as u16).to_le_bytes());
            }
        }
    }
    let fpath = dir.path().join("f.npy");
    write_npy(&fpath, "<u2", true, &[sy, sx, dy, dx], &f);
    let cd = open(&cpath).unwrap();
    let fd = open(&fpath).unwrap();
    assert_eq!(cd.info().format, Format::Npy);
    assert_eq!(cd.info().scan, Some((sy, sx)));
    assert!(cd.info().zero_copy && !fd.info().zero_copy);
    assert!(fd.info().notes.iter().any(|n| n.contains("Fortran")));
    let (mut cr, mut fr) = (cd.reader(), fd.reader());
    for (i, frame) in frames.iter().enumerate() {
        let want: Vec<u16> = frame.iter().map(|&v| v as u16).collect();
        assert_eq!(cr.frame(i).unwrap(), Frame::U16(&want));
        assert_eq!(fr.frame(i).unwrap(), Frame::U16(&want));
    }
    // A 3D big-endian float array.
    let be: Vec<u8> = (0..2 * 6)
        .flat_map(|v| (v as f32 * 0.5).to_be_bytes())
        .collect();
    let p = dir.path().join("b.npy");
    write_npy(&p, ">f4", false, &[2, 2, 3], &be);
    let d = open(&p).unwrap();
    assert_eq!(
        (d.info().frames, d.info().scan, d.info().pixel),
        (2, None, PixelKind::F32)
    );
    let mut r = d.reader();
    assert_eq!(
        r.frame(1).unwrap(),
        Frame::F32(&[3.0, 3.5, 4.0, 4.5, 5.0, 5.5])
    );
    // Truncated data: the header's shape no longer fits.
    write_npy(&p, "<u2", false, &[2, 2, 2, 2], &[0u8; 30]);
    let e = err(open(&p));
    assert!(
        e.contains("b.npy") && e.contains("needs 32 data bytes"),
        "{e}"
    );
}

#[test]
fn raw_errors_name_file_and_parameter() {
    let dir = tmp();
    let path = dir.path().join("x.raw");
    std::fs::write(&path, vec![0u8; 100]).unwrap();

    // No sidecar, no flags.
    let e = err(open(&path));
    assert!(
        e.contains("x.raw") && e.contains("--width") && e.contains("--format"),
        "{e}"
    );
    // Incomplete flags.
    let only_width = OpenOptions {
        format: Some(Format::Raw),
        raw: RawOverrides {
            width: Some(10),
            ..Default::default()
        },
    };
    let e = err(Dump::open(&path, &only_width));
    assert!(e.contains("--height") && e.contains("x.raw.json"), "{e}");
    // Not a multiple of the stride: 100 bytes, 3 × 3 u16 = 18 bytes → 10 over.
    let mut s = RawSidecar::new(3, 3, RawDtype::U16);
    s.write(&path).unwrap();
    let e = err(open(&path));
    assert!(
        e.contains("x.raw")
            && e.contains("100 bytes")
            && e.contains("18 bytes")
            && e.contains("10 bytes over"),
        "{e}"
    );
    // Sidecar frame count disagrees with the file: 100 bytes = 5 frames of 20 bytes.
    s = RawSidecar::new(5, 2, RawDtype::U16);
    s.frames = Some(4);
    s.write(&path).unwrap();
    let e = err(open(&path));
    assert!(
        e.contains("declares 4 frames") && e.contains("holds 5"),
        "{e}"
    );
    // File header larger than the file.
    s = RawSidecar::new(5, 2, RawDtype::U16);
    s.header_bytes = 200;
    s.write(&path).unwrap();
    let e = err(open(&path));
    assert!(e.contains("200-byte header"), "{e}");
    // Zero width.
    s = RawSidecar::new(0, 2, RawDtype::U16);
    s.write(&path).unwrap();
    let e = err(open(&path));
    assert!(e.contains("--width"), "{e}");
    // Unknown dtype in the sidecar.
    std::fs::write(
        RawSidecar::path_for(&path),
        r#"{"format":"raw","width":5,"height":2,"dtype":"u12"}"#,
    )
    .unwrap();
    let e = err(open(&path));
    assert!(e.contains("x.raw.json") && e.contains("u12"), "{e}");
    // Frame index out of range.
    RawSidecar::new(5, 2, RawDtype::U16).write(&path).unwrap();
    let dump = open(&path).unwrap();
    let e = err(dump.reader().frame(5));
    assert!(e.contains("frame index") && e.contains("5 frames"), "{e}");
}

#[test]
fn missing_empty_and_folder() {
    let dir = tmp();
    let e = err(Dump::open(
        dir.path().join("nope.mib"),
        &OpenOptions::default(),
    ));
    assert!(e.contains("nope.mib"), "{e}");
    let empty = dir.path().join("empty.mib");
    std::fs::write(&empty, b"").unwrap();
    let e = err(open(&empty));
    assert!(
        e.contains("empty.mib") && e.contains("empty (0 bytes)"),
        "{e}"
    );
    let raw_opts = OpenOptions {
        format: Some(Format::Raw),
        ..Default::default()
    };
    let e = err(Dump::open(dir.path(), &raw_opts));
    assert!(e.contains("folder"), "{e}");
}

#[test]
fn threads_share_one_dump() {
    let dir = tmp();
    let path = dir.path().join("t.raw");
    let frames: Vec<Vec<u8>> = (0..64u8).map(|f| vec![f; 16]).collect();
    write_raw(&path, 0, 0, 0, &frames);
    RawSidecar::new(4, 4, RawDtype::U8).write(&path).unwrap();
    let dump = open(&path).unwrap();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let dump = &dump;
                s.spawn(move || {
                    let mut r = dump.reader();
                    (t..64)
                        .step_by(4)
                        .map(|i| match r.frame(i).unwrap() {
                            Frame::U8(p) => p.iter().map(|&v| u64::from(v)).sum::<u64>(),
                            _ => unreachable!(),
                        })
                        .sum::<u64>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(total, 16 * (0..64u64).sum::<u64>());
}

// ---------------------------------------------------------------- EMPAD

fn write_empad(path: &Path, frames: usize) -> Vec<Vec<f32>> {
    let mut bytes = Vec::new();
    let mut expect = Vec::new();
    for f in 0..frames {
        let mut img = Vec::new();
        for r in 0..130 {
            for c in 0..128 {
                let v = if r < 128 {
                    (f * 1000 + r * 3 + c) as f32 * 0.25 - 7.0
                } else {
                    1.0e9
                };
                bytes.extend(v.to_le_bytes());
                if r < 128 {
                    img.push(v);
                }
            }
        }
        expect.push(img);
    }
    std::fs::write(path, bytes).unwrap();
    expect
}

#[test]
fn empad_drops_two_rows_zero_copy_and_reads_scan_from_xml() {
    let dir = tmp();
    let raw = dir.path().join("scan_x3_y2.raw");
    let expect = write_empad(&raw, 6);
    // The xml is named after the acquisition, not the raw file: found because it names it.
    std::fs::write(
        dir.path().join("acquisition_7.xml"),
        "<root><type>scan</type><pix_x>3</pix_x><pix_y>2</pix_y>\
         <raw_file filename=\"scan_x3_y2.raw\"/><scan_parameters mode=\"acquire\">\
         <scan_resolution_x>128</scan_resolution_x><scan_resolution_y>128</scan_resolution_y>\
         </scan_parameters></root>",
    )
    .unwrap();
    for path in [raw.clone(), dir.path().join("acquisition_7.xml")] {
        let dump = open(&path).unwrap();
        let info = dump.info();
        assert_eq!(info.path, raw);
        assert_eq!(
            (info.format, info.width, info.height, info.frames),
            (Format::Empad, 128, 128, 6)
        );
        assert_eq!(
            (info.scan, info.zero_copy, info.stride),
            (Some((2, 3)), true, 66_560)
        );
        let mut r = dump.reader();
        for (i, want) in expect.iter().enumerate() {
            assert_eq!(r.frame(i).unwrap(), Frame::F32(want));
        }
    }
    // A stray size is an error naming the stride.
    let bad = dir.path().join("scan_x3_y3.raw");
    std::fs::write(&bad, vec![0u8; 66_560 * 2 + 100]).unwrap();
    let e = err(Dump::open(
        &bad,
        &OpenOptions {
            format: Some(Format::Empad),
            ..Default::default()
        },
    ));
    assert!(
        e.contains("66560 bytes") && e.contains("100 bytes over"),
        "{e}"
    );
}

#[test]
fn raw_flags_on_a_self_describing_format_are_refused() {
    let dir = tmp();
    let raw = dir.path().join("a.raw");
    write_empad(&raw, 1);
    std::fs::write(
        dir.path().join("a.xml"),
        "<root><raw_file filename=\"a.raw\"/></root>",
    )
    .unwrap();
    let opts = OpenOptions {
        format: None,
        raw: RawOverrides {
            width: Some(128),
            ..Default::default()
        },
    };
    let e = err(Dump::open(&raw, &opts));
    assert!(e.contains("--width") && e.contains("empad"), "{e}");
    // … unless the user asks for raw.
    let opts = OpenOptions {
        format: Some(Format::Raw),
        raw: RawOverrides {
            width: Some(128),
            height: Some(130),
            dtype: Some(RawDtype::F32),
            ..Default::default()
        },
    };
    assert_eq!(Dump::open(&raw, &opts).unwrap().info().height, 130);
}

// ---------------------------------------------------------------- Merlin

const HSIZE: usize = 384;

/// A single-chip Merlin header following the real files' field order, NUL-padded.
fn mib_header(seq: u64, w: usize, h: usize, dtype: &str, depth: u32) -> Vec<u8> {
    let text = format!(
        "MQ1,{seq:06},{HSIZE:05},01,{w:04},{h:04},{dtype},   1x1,01,2021-05-07 18:51:10.905800,\
         0.100000,0,0,0,4.000000E+1,5.110000E+2,0.000000E+0,0.000000E+0,0.000000E+0,0.000000E+0,\
         0.000000E+0,0.000000E+0,3RX,068,511,000,000,000,000,000,000,100,255,100,125,100,100,080,\
         100,090,030,128,004,255,126,128,174,172,511,511,MQ1A,2021-05-07T16:51:10.905800928Z,\
         100000000ns,{depth},"
    );
    let mut b = text.into_bytes();
    b.resize(HSIZE, 0);
    b
}

/// A U16 Merlin file of `frames` frames of `w × h`, pixel values from [`pattern`].
fn write_mib_u16(path: &Path, frames: usize, w: usize, h: usize) -> Vec<Vec<u32>> {
    let px = pattern(frames, w * h);
    let mut bytes = Vec::new();
    for (i, f) in px.iter().enumerate() {
        bytes.extend(mib_header(i as u64 + 1, w, h, "U16", 12));
        bytes.extend(f.iter().flat_map(|&v| (v as u16).to_be_bytes()));
    }
    std::fs::write(path, bytes).unwrap();
    px
}

#[test]
fn mib_u16_and_hdr() {
    let dir = tmp();
    let path = dir.path().join("a.mib");
    let px = write_mib_u16(&path, 5, 4, 3);
    let dump = open(&path).unwrap();
    let info = dump.info();
    assert_eq!(
        (info.format, info.width, info.height, info.frames),
        (Format::Mib, 4, 3, 5)
    );
    assert_eq!(
        (info.frame_header_bytes, info.stride, info.declared_frames),
        (384, 408, None)
    );
    let mut r = dump.reader();
    for (i, want) in px.iter().enumerate() {
        let Frame::U16(got) = r.frame(i).unwrap() else {
            panic!()
        };
        assert_eq!(got.iter().map(|&v| u32::from(v)).collect::<Vec<_>>(), *want);
    }
    std::fs::write(
        dir.path().join("a.hdr"),
        "HDR,\t\nFrames in Acquisition (Number):\t6\nEnd\t",
    )
    .unwrap();
    let info = open(&path).unwrap().info().clone();
    assert_eq!(info.declared_frames, Some(6));
    assert!(
        info.notes.iter().any(|n| n.contains("declares 6 frames")),
        "{:?}",
        info.notes
    );
}

#[test]
fn mib_u08_is_zero_copy_and_r64_single_chip_decodes() {
    let dir = tmp();
    let path = dir.path().join("r.mib");
    // 1-bit RAW, 16 × 8 = 128 pixels = 2 words per frame.
    let words: [[u8; 8]; 2] = [[1, 2, 3, 4, 5, 6, 7, 0x80], [0xFF, 0, 0, 0, 0, 0, 0, 1]];
    let mut bytes = mib_header(1, 16, 8, "R64", 1);
    bytes.extend(words.concat());
    std::fs::write(&path, &bytes).unwrap();
    let dump = open(&path).unwrap();
    assert_eq!(dump.info().pixel, PixelKind::U8);
    let mut r = dump.reader();
    let Frame::U8(got) = r.frame(0).unwrap() else {
        panic!()
    };
    // Word 0 read big-endian: 0x0102030405060780 → bit 7 (from 0x80) is pixel 7.
    assert_eq!(got[7], 1);
    assert_eq!(got[0], 0);
    assert_eq!(got[64], 1); // word 1: last byte 0x01 → pixel 64
    assert_eq!(got.iter().map(|&v| u32::from(v)).sum::<u32>(), 13 + 9);

    let path = dir.path().join("u8.mib");
    let mut bytes = mib_header(1, 4, 2, "U08", 6);
    bytes.extend(0..8u8);
    std::fs::write(&path, &bytes).unwrap();
    let dump = open(&path).unwrap();
    assert!(dump.info().zero_copy);
    assert_eq!(
        dump.reader().frame(0).unwrap(),
        Frame::U8(&[0, 1, 2, 3, 4, 5, 6, 7])
    );
}

/// A good 3-frame 4 × 4 U16 file (stride 384 + 32 = 416), then `corrupt` applied to its bytes.
fn corrupted(dir: &Path, name: &str, corrupt: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let path = dir.join(name);
    write_mib_u16(&path, 3, 4, 4);
    let mut bytes = std::fs::read(&path).unwrap();
    corrupt(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn put(bytes: &mut [u8], at: usize, s: &str) {
    bytes[at..at + s.len()].copy_from_slice(s.as_bytes());
}

const STRIDE: usize = 416;

#[test]
fn mib_corrupted_header_corpus() {
    let dir = tmp();
    let d = dir.path();
    // Field offsets in a header: seq 4, hsize 11, nchips 17, width 20, height 25, dtype 30.
    let cases: Vec<(&str, PathBuf, Vec<&str>)> = vec![
        (
            "wrong magic in frame 0",
            corrupted(d, "magic0.mib", |b| put(b, 0, "XQ1")),
            vec!["at byte 0", "frame 0", "MQ1", "XQ1"],
        ),
        (
            "wrong magic mid-file",
            corrupted(d, "magic1.mib", |b| put(b, STRIDE, "MQ9")),
            vec!["at byte 416", "frame 1", "MQ9"],
        ),
        (
            "non-numeric width",
            corrupted(d, "width.mib", |b| put(b, 2 * STRIDE + 20, "0x04")),
            vec!["at byte 852", "frame 2", "width", "0x04", "decimal"],
        ),
        (
            "non-numeric sequence number in frame 0",
            corrupted(d, "seq0.mib", |b| put(b, 4, "00000A")),
            vec!["at byte 4", "frame 0", "sequence number", "00000A"],
        ),
        (
            "sequence jump",
            corrupted(d, "jump.mib", |b| put(b, STRIDE + 4, "000005")),
            vec!["at byte 420", "frame 1", "sequence number 5, expected 2"],
        ),
        (
            "header size mismatch",
            corrupted(d, "hsize.mib", |b| put(b, STRIDE + 11, "00385")),
            vec!["at byte 427", "frame 1", "header size 385", "expected 384"],
        ),
        (
            "geometry change mid-file (same byte count)",
            corrupted(d, "geom.mib", |b| put(b, STRIDE + 20, "0002,0008")),
            vec!["at byte 436", "frame 1", "2×8 U16", "expected 4×4 U16"],
        ),
        (
            "pixel type change mid-file",
            corrupted(d, "dtype1.mib", |b| put(b, 2 * STRIDE + 30, "U32")),
            vec!["frame 2", "4×4 U32", "expected 4×4 U16"],
        ),
        (
            "unknown pixel type",
            corrupted(d, "dtype.mib", |b| {
                for k in 0..3 {
                    put(b, k * STRIDE + 30, "U12");
                }
            }),
            vec![
                "at byte 30",
                "unknown pixel type `U12`",
                "U08, U16, U32 or R64",
            ],
        ),
        (
            "header size larger than the file",
            corrupted(d, "hbig.mib", |b| put(b, 11, "99999")),
            vec!["at byte 11", "header size 99999"],
        ),
        (
            "header cut short",
            corrupted(d, "short.mib", |b| b.truncate(20)),
            vec!["at byte 20", "width"],
        ),
        (
            "truncated last frame",
            corrupted(d, "trunc.mib", |b| b.truncate(b.len() - 10)),
            vec!["trunc.mib", "1238 bytes", "416 bytes", "406 bytes over"],
        ),
        (
            "empty file",
            corrupted(d, "empty.mib", |b| b.clear()),
            vec!["empty.mib", "empty"],
        ),
        (
            "R64 with an unsupported depth",
            corrupted(d, "r24.mib", |b| {
                b.clear();
                b.extend(mib_header(1, 4, 4, "R64", 24));
                b.extend([0u8; 64]);
            }),
            vec!["at byte 30", "counter depth 24"],
        ),
    ];
    for (what, path, needles) in cases {
        let e = err(read_all(&path));
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            e.contains(name),
            "{what}: message does not name the file: {e}"
        );
        for n in needles {
            assert!(e.contains(n), "{what}: `{n}` missing from: {e}");
        }
    }
}

#[test]
fn mib_mid_file_header_error_is_found_when_the_frame_is_read() {
    let dir = tmp();
    let path = corrupted(dir.path(), "lazy.mib", |b| put(b, STRIDE + 4, "000009"));
    let dump = open(&path).expect("frames 0 and 2 are fine: open succeeds");
    let mut r = dump.reader();
    assert!(r.frame(0).is_ok());
    assert!(r.frame(1).is_err());
    assert!(r.frame(2).is_ok());
}

#[test]
fn detection_without_any_hint_names_the_flags() {
    let dir = tmp();
    let path = dir.path().join("mystery.bin");
    std::fs::write(&path, [0u8; 64]).unwrap();
    let e = err(open(&path));
    for n in [
        "mystery.bin",
        "--format mib",
        "--format raw",
        "--width",
        "--dtype",
        "mystery.bin.json",
    ] {
        assert!(e.contains(n), "`{n}` missing: {e}");
    }
}

// ---------------------------------------------------------------- files that shrink (issue 16)

/// A raw u16 dump of `frames` frames of 64 × 64 (8 KiB: two pages each), frame `f` filled
/// with `f + 1`; returns its path.
fn write_paged_raw(dir: &Path, frames: usize) -> PathBuf {
    let path = dir.join("shrinks.raw");
    let bytes: Vec<u8> = (0..frames)
        .flat_map(|f| std::iter::repeat_n(f as u16 + 1, 64 * 64))
        .flat_map(u16::to_le_bytes)
        .collect();
    std::fs::write(&path, bytes).unwrap();
    RawSidecar::new(64, 64, RawDtype::U16).write(&path).unwrap();
    path
}

fn shrink(path: &Path, bytes: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(bytes)
        .unwrap();
}

#[test]
fn issue16_a_truncated_dump_reads_zeros_not_sigbus_and_check_names_the_frame() {
    let dir = tmp();
    let path = write_paged_raw(dir.path(), 8);
    let dump = open(&path).unwrap();
    assert!(dump.info().zero_copy);
    let mut r = dump.reader();
    // Touch every page first, so they are in the map before the file shrinks.
    for i in 0..8 {
        assert!(matches!(r.frame(i).unwrap(), Frame::U16(p) if p[4095] == i as u16 + 1));
    }
    dump.check_frames(0..8).unwrap();
    // 3.25 frames are left: frame 3's first page is half there, the rest is gone.
    let stride = dump.info().stride;
    shrink(&path, 3 * stride + stride / 4);
    for i in 0..8 {
        // Past the new end: the guard maps zeros instead of letting SIGBUS kill the test.
        let Frame::U16(p) = r.frame(i).unwrap() else {
            panic!()
        };
        let sum: u64 = p.iter().map(|&v| u64::from(v)).sum();
        if i >= 4 {
            assert_eq!(sum, 0, "frame {i}");
        }
    }
    dump.check_frames(0..3).unwrap();
    let e = dump.check_frames(0..8).unwrap_err();
    let Error::Changed(c) = &e else { panic!("{e}") };
    assert_eq!((c.frame, c.offset), (3, 3 * stride));
    assert_eq!(
        (c.opened_bytes, c.file_bytes),
        (8 * stride, 3 * stride + stride / 4)
    );
    // Frame 3's second page (4 KiB pages) is the first that vanished; its first page holds
    // the new end and reads as zeros past it, without a fault.
    assert_eq!(c.fault_offset, Some(3 * stride + stride / 2));
    let msg = e.to_string();
    assert!(
        msg.contains("shrinks.raw") && msg.contains("frame 3 (at byte 24576)"),
        "{msg}"
    );
    // A range that starts past the loss names its own first frame.
    let Err(Error::Changed(c)) = dump.check_frames(5..8) else {
        panic!()
    };
    assert_eq!(c.frame, 5);
}

#[test]
fn issue16_a_fault_is_reported_even_if_the_file_grows_back() {
    let dir = tmp();
    let path = write_paged_raw(dir.path(), 4);
    let dump = open(&path).unwrap();
    let stride = dump.info().stride;
    shrink(&path, 2 * stride);
    let mut r = dump.reader();
    let Frame::U16(p) = r.frame(3).unwrap() else {
        panic!()
    };
    assert!(p.iter().all(|&v| v == 0));
    shrink(&path, 4 * stride);
    let Err(Error::Changed(c)) = dump.check_frames(0..4) else {
        panic!()
    };
    assert_eq!((c.frame, c.fault_offset), (3, Some(3 * stride)));
    dump.check_frames(0..3).unwrap();
}

#[test]
fn issue16_a_shrunk_merlin_file_is_a_change_not_a_bad_header() {
    let dir = tmp();
    let path = dir.path().join("a.mib");
    write_mib_u16(&path, 40, 64, 64);
    let dump = open(&path).unwrap();
    let stride = dump.info().stride;
    shrink(&path, 10 * stride + 100);
    let mut r = dump.reader();
    // The header of frame 30 now reads as zeros: a bad magic for the reader …
    assert!(err(r.frame(30)).contains("magic"));
    // … and the check says why.
    let Err(Error::Changed(c)) = dump.check_frames(30..31) else {
        panic!()
    };
    assert_eq!(c.frame, 30);
    // Opening what is left is the ordinary size error.
    assert!(err(open(&path)).contains("not a whole number of frames"));
}

#[test]
fn issue16_dropping_a_dump_unregisters_its_map() {
    // More dumps than the guard has slots, opened and dropped one after another: each frees
    // its slot, so all are guarded.
    let dir = tmp();
    let path = write_paged_raw(dir.path(), 1);
    for _ in 0..2 * super::guard::SLOTS {
        let dump = open(&path).unwrap();
        assert!(dump.info().notes.is_empty(), "{:?}", dump.info().notes);
    }
}

#[test]
fn issue16_sidecar_byte_counts_that_overflow_are_an_error() {
    let dir = tmp();
    let path = dir.path().join("a.raw");
    std::fs::write(&path, [0u8; 64]).unwrap();
    std::fs::write(
        RawSidecar::path_for(&path),
        r#"{"width": 4, "height": 4, "dtype": "u32", "frame_header_bytes": 18446744073709551615,
            "scan": [4294967296, 4294967296]}"#,
    )
    .unwrap();
    let e = err(open(&path));
    assert!(e.contains("a.raw") && e.contains("overflow"), "{e}");
}
