//! `ptyflow info` on small dumps written here: the `--json` values against sums computed
//! here, and bad input exiting with code 2 and a message that names the problem.

use std::ffi::OsStr;
use std::path::Path;

use serde_json::Value;

use crate::{ptyflow, write_mib_u16};

fn json(args: &[&str], dump: &Path) -> Value {
    let mut all = vec![OsStr::new("info"), dump.as_os_str(), OsStr::new("--json")];
    all.extend(args.iter().map(OsStr::new));
    let run = ptyflow(all);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// Runs `ptyflow info` expecting exit code 2; returns stderr.
fn fails(args: &[&str], dump: &Path) -> String {
    let mut all = vec![OsStr::new("info"), dump.as_os_str()];
    all.extend(args.iter().map(OsStr::new));
    let run = ptyflow(all);
    assert_eq!(run.code, 2, "stdout: {} stderr: {}", run.stdout, run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run.stderr
}

fn values(frames: usize, n: usize, modulus: u64) -> Vec<Vec<u64>> {
    (0..frames)
        .map(|f| {
            (0..n)
                .map(|i| (f as u64 * 131 + i as u64 * 977) % modulus)
                .collect()
        })
        .collect()
}

fn expect(v: &Value, format: &str, w: u64, h: u64, dtype: &str, frames: u64) {
    assert_eq!(v["format"], format);
    assert_eq!(v["width"], w);
    assert_eq!(v["height"], h);
    assert_eq!(v["dtype"], dtype);
    assert_eq!(v["frames"], frames);
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "dtype", "format", "frames", "height", "max", "min", "sum", "width"
        ]
    );
}

fn int_totals(px: &[Vec<u64>]) -> (u64, u64, u64) {
    let all = px.iter().flatten();
    (
        all.clone().sum(),
        *all.clone().min().unwrap(),
        *all.max().unwrap(),
    )
}

#[test]
fn raw_with_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("scan.raw");
    let px = values(12, 8 * 6, 60_000);
    let bytes: Vec<u8> = px
        .iter()
        .flatten()
        .flat_map(|&v| (v as u16).to_le_bytes())
        .collect();
    std::fs::write(&dump, bytes).unwrap();
    std::fs::write(
        dir.path().join("scan.raw.json"),
        r#"{"format": "raw", "width": 8, "height": 6, "dtype": "u16", "byte_order": "little",
            "header_bytes": 0, "frame_header_bytes": 0, "frame_footer_bytes": 0,
            "frames": 12, "scan": [3, 4], "optics": {"kv": 80}}"#,
    )
    .unwrap();
    let v = json(&[], &dump);
    expect(&v, "raw", 8, 6, "u16", 12);
    let (sum, min, max) = int_totals(&px);
    assert_eq!(
        (v["sum"].as_u64(), v["min"].as_u64(), v["max"].as_u64()),
        (Some(sum), Some(min), Some(max))
    );
    assert!(v["sum"].is_u64(), "integer pixels give an integer sum");

    let run = ptyflow(["info".as_ref(), dump.as_os_str()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for needle in [
        "format      raw",
        "width       8",
        "frames      12",
        "scan        3 rows × 4 columns",
        &format!("sum         {sum}"),
    ] {
        assert!(
            run.stdout.contains(needle),
            "`{needle}` missing:\n{}",
            run.stdout
        );
    }
}

#[test]
fn raw_with_flags_big_endian_headers() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("det.bin");
    let px = values(5, 7 * 3, 3_000_000_000);
    let mut bytes = vec![0xAA; 16];
    for f in &px {
        bytes.extend([1, 2, 3, 4]);
        bytes.extend(f.iter().flat_map(|&v| (v as u32).to_be_bytes()));
        bytes.extend([9, 9]);
    }
    std::fs::write(&dump, bytes).unwrap();
    let flags = [
        "--format",
        "raw",
        "--width",
        "7",
        "--height",
        "3",
        "--dtype",
        "u32",
        "--big-endian",
        "--header-bytes",
        "16",
        "--frame-header-bytes",
        "4",
        "--frame-footer-bytes",
        "2",
    ];
    let v = json(&flags, &dump);
    expect(&v, "raw", 7, 3, "u32", 5);
    let (sum, min, max) = int_totals(&px);
    assert_eq!(
        (v["sum"].as_u64(), v["min"].as_u64(), v["max"].as_u64()),
        (Some(sum), Some(min), Some(max))
    );
}

#[test]
fn raw_i32_is_reported_as_f32() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("i.raw");
    let vals: Vec<i32> = (0..40).map(|i| i * 1000 - 17_000).collect();
    std::fs::write(
        &dump,
        vals.iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let v = json(&["--width", "5", "--height", "4", "--dtype", "i32"], &dump);
    expect(&v, "raw", 5, 4, "f32", 2);
    let sum: i64 = vals.iter().map(|&v| i64::from(v)).sum();
    assert!(v["sum"].is_f64(), "float pixels give a float sum: {v}");
    assert_eq!(v["sum"].as_f64(), Some(sum as f64));
    assert_eq!(v["min"].as_f64(), Some(-17_000.0));
    assert_eq!(v["max"].as_f64(), Some(22_000.0));
}

#[test]
fn merlin_u16() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("scan.mib");
    let px = values(6, 16 * 8, 4096);
    let frames: Vec<Vec<u16>> = px
        .iter()
        .map(|f| f.iter().map(|&v| v as u16).collect())
        .collect();
    write_mib_u16(&dump, 16, 8, &frames);
    let v = json(&[], &dump);
    expect(&v, "mib", 16, 8, "u16", 6);
    let (sum, min, max) = int_totals(&px);
    assert_eq!(
        (v["sum"].as_u64(), v["min"].as_u64(), v["max"].as_u64()),
        (Some(sum), Some(min), Some(max))
    );
}

#[test]
fn empad_with_xml() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("scan_x2_y2.raw");
    let mut bytes = Vec::new();
    let (mut sum, mut min, mut max) = (0f64, f32::INFINITY, f32::NEG_INFINITY);
    for f in 0..4 {
        for r in 0..130 {
            for c in 0..128 {
                // The two metadata rows hold huge values that must not count.
                let v = if r < 128 {
                    (f * 7 + r + c) as f32 * 0.5 - 3.0
                } else {
                    1e30
                };
                if r < 128 {
                    sum += f64::from(v);
                    min = min.min(v);
                    max = max.max(v);
                }
                bytes.extend(v.to_le_bytes());
            }
        }
    }
    std::fs::write(&dump, bytes).unwrap();
    std::fs::write(
        dir.path().join("acquisition_1.xml"),
        "<root><pix_x>2</pix_x><pix_y>2</pix_y><raw_file filename=\"scan_x2_y2.raw\"/></root>",
    )
    .unwrap();
    let v = json(&[], &dump);
    expect(&v, "empad", 128, 128, "f32", 4);
    assert!((v["sum"].as_f64().unwrap() - sum).abs() < 1e-6 * sum.abs());
    assert_eq!(v["min"].as_f64(), Some(f64::from(min)));
    assert_eq!(v["max"].as_f64(), Some(f64::from(max)));
}

/// A Fortran-order big-endian u32 `.npy` (as `np.save(p, np.asfortranarray(a.astype('>u4')))`
/// writes it), read under its extension and under `--format npy`; a bad one exits 2.
#[test]
fn npy_fortran_big_endian() {
    let dir = tempfile::tempdir().unwrap();
    let (sy, sx, dy, dx) = (2usize, 3usize, 4usize, 5usize);
    let px = values(sy * sx, dy * dx, 1 << 20);
    let mut data = vec![0u8; px.len() * dy * dx * 4];
    for (f, frame) in px.iter().enumerate() {
        let (y, x) = (f / sx, f % sx);
        for r in 0..dy {
            for c in 0..dx {
                let at = 4 * (y + sy * (x + sx * (r + dy * c)));
                data[at..at + 4].copy_from_slice(&(frame[r * dx + c] as u32).to_be_bytes());
            }
        }
    }
    let mut header =
        format!("{{'descr': '>u4', 'fortran_order': True, 'shape': ({sy}, {sx}, {dy}, {dx}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(&data);
    let dump = dir.path().join("scan.npy");
    std::fs::write(&dump, &bytes).unwrap();
    let (sum, min, max) = int_totals(&px);
    for args in [&[][..], &["--format", "npy"][..]] {
        let v = json(args, &dump);
        expect(&v, "npy", dx as u64, dy as u64, "u32", (sy * sx) as u64);
        assert_eq!(
            (v["sum"].as_u64(), v["min"].as_u64()),
            (Some(sum), Some(min))
        );
        assert_eq!(v["max"].as_u64(), Some(max));
    }
    std::fs::write(&dump, &bytes[..bytes.len() - 1]).unwrap();
    let e = fails(&[], &dump);
    assert!(
        e.contains("scan.npy") && e.contains("needs 480 data bytes"),
        "{e}"
    );
}

#[test]
fn bad_input_exits_2_with_a_message_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let missing = d.join("missing.mib");
    let e = fails(&[], &missing);
    assert!(e.contains("missing.mib"), "{e}");

    let empty = d.join("empty.raw");
    std::fs::write(&empty, b"").unwrap();
    let e = fails(&["--width", "4", "--height", "4", "--dtype", "u8"], &empty);
    assert!(e.contains("empty.raw") && e.contains("empty"), "{e}");

    // 100 bytes are not a whole number of 4 × 4 u16 frames (32 bytes): 4 bytes over.
    let odd = d.join("odd.raw");
    std::fs::write(&odd, [0u8; 100]).unwrap();
    let e = fails(&["--width", "4", "--height", "4", "--dtype", "u16"], &odd);
    assert!(
        e.contains("odd.raw")
            && e.contains("100 bytes")
            && e.contains("32 bytes")
            && e.contains("4 bytes over"),
        "{e}"
    );

    // Wrong geometry for the file: larger than the file.
    let e = fails(&["--width", "64", "--height", "64", "--dtype", "u16"], &odd);
    assert!(e.contains("odd.raw") && e.contains("8192"), "{e}");

    // Unknown dtype on the command line.
    let e = fails(&["--width", "4", "--height", "4", "--dtype", "u12"], &odd);
    assert!(e.contains("--dtype") && e.contains("u12"), "{e}");

    // Unknown dtype in a sidecar.
    std::fs::write(
        d.join("odd.raw.json"),
        r#"{"format":"raw","width":5,"height":5,"dtype":"c64"}"#,
    )
    .unwrap();
    let e = fails(&[], &odd);
    assert!(e.contains("odd.raw.json") && e.contains("c64"), "{e}");

    // No way to tell the format.
    let mystery = d.join("mystery.dat");
    std::fs::write(&mystery, [0u8; 64]).unwrap();
    let e = fails(&[], &mystery);
    assert!(
        e.contains("mystery.dat") && e.contains("--format") && e.contains("--width"),
        "{e}"
    );

    // A Merlin file whose third frame has a sequence jump (stride 384 + 2·4·4 = 416 bytes).
    let mib = d.join("jump.mib");
    let frames = vec![vec![1u16; 16]; 4];
    write_mib_u16(&mib, 4, 4, &frames);
    let mut bytes = std::fs::read(&mib).unwrap();
    bytes[2 * 416 + 4..2 * 416 + 10].copy_from_slice(b"000007");
    std::fs::write(&mib, bytes).unwrap();
    let e = fails(&["--json"], &mib);
    assert!(
        e.contains("jump.mib")
            && e.contains("frame 2")
            && e.contains("at byte 836")
            && e.contains("sequence number 7, expected 3"),
        "{e}"
    );

    // Truncated Merlin file.
    let cut = d.join("cut.mib");
    write_mib_u16(&cut, 4, 4, &frames);
    let bytes = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let e = fails(&[], &cut);
    assert!(
        e.contains("cut.mib") && e.contains("416 bytes") && e.contains("409 bytes over"),
        "{e}"
    );

    // Raw layout flags on a Merlin file.
    write_mib_u16(&cut, 4, 4, &frames);
    let e = fails(&["--width", "8"], &cut);
    assert!(e.contains("--width") && e.contains("mib"), "{e}");
}

#[test]
fn help_speaks_to_microscopists() {
    let run = ptyflow(["info", "--help"]);
    assert_eq!(run.code, 0);
    for needle in [
        "--json",
        "--format",
        "--width",
        "--dtype",
        "--big-endian",
        "--header-bytes",
        "--frame-header-bytes",
        "--frame-footer-bytes",
        "Merlin",
        "EMPAD",
        "sidecar",
    ] {
        assert!(
            run.stdout.contains(needle),
            "`{needle}` missing from --help:\n{}",
            run.stdout
        );
    }
}
