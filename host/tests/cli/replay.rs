//! `ptyflow replay` as a process, on small dumps written here: the outputs against naive sums
//! computed here (a plain loop per detector), bad input exiting with code 2 and a message that
//! names the file or the parameter, and Ctrl-C leaving a partial but honest report.
//!
//! Geometry conventions checked (the core's): pixel (row, col) has its centre at x = col,
//! y = row; a b × b binned pixel (row, col) has its centre at x = b·col + (b − 1)/2 in unbinned
//! pixels; a disc holds d ≤ r, annuli and rings r_in ≤ d < r_out.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ptyflow::output::read_npy;
use serde_json::Value;

use crate::{Run, ptyflow, write_mib_u16};

/// Frame size of the synthetic dumps.
const W: usize = 32;
const H: usize = 32;
/// Scan of the synthetic dumps (rows are the slow axis).
const ROWS: usize = 6;
const COLS: usize = 7;
/// The bright-field disc painted into every frame (unbinned pixels).
const CX: f64 = 15.4;
const CY: f64 = 16.3;
const R: f64 = 7.0;

/// splitmix64: a seeded generator, enough for test noise.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Roughly Poisson counts of mean `lambda`: a sum of 16 uniform draws (mean and variance
    /// match a Poisson's for lambda ≥ 4; the shape does not matter here).
    fn counts(&mut self, lambda: f64) -> u16 {
        let u: f64 = (0..16)
            .map(|_| (self.next() >> 11) as f64 / (1u64 << 53) as f64)
            .sum();
        let sd = lambda.sqrt() * (12.0f64 / 16.0).sqrt() * 2.0;
        (lambda + (u - 8.0) * sd / 2.0).round().max(0.0) as u16
    }
}

/// `n` frames of `W × H` u16: a bright disc (brightness varying with the frame index) on a
/// faint background with a dark-field halo, all with noise from `seed`.
fn synthetic_frames(n: usize, seed: u64) -> Vec<Vec<u16>> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|f| {
            let bright = 150.0 + 11.0 * (f % 7) as f64 + 5.0 * (f / 7) as f64;
            let halo = 4.0 + (f % 3) as f64;
            (0..W * H)
                .map(|i| {
                    let (y, x) = ((i / W) as f64, (i % W) as f64);
                    let d = ((x - CX).powi(2) + (y - CY).powi(2)).sqrt();
                    let lambda = if d <= R {
                        bright
                    } else if d < 13.0 {
                        halo
                    } else {
                        1.0
                    };
                    rng.counts(lambda)
                })
                .collect()
        })
        .collect()
}

/// Writes `frames` as a headerless little-endian u16 raw dump with its `<dump>.json` sidecar.
fn write_raw_u16(path: &Path, w: usize, h: usize, frames: &[Vec<u16>], scan: (usize, usize)) {
    let bytes: Vec<u8> = frames
        .iter()
        .flat_map(|f| {
            assert_eq!(f.len(), w * h);
            f.iter().flat_map(|v| v.to_le_bytes())
        })
        .collect();
    std::fs::write(path, bytes).unwrap();
    let mut sidecar = path.as_os_str().to_owned();
    sidecar.push(".json");
    std::fs::write(
        sidecar,
        format!(
            r#"{{"format": "raw", "width": {w}, "height": {h}, "dtype": "u16",
                "byte_order": "little", "frames": {}, "scan": [{}, {}]}}"#,
            frames.len(),
            scan.0,
            scan.1
        ),
    )
    .unwrap();
}

/// `ptyflow replay DUMP --out OUT --quiet EXTRA…`.
fn replay(dump: &Path, out: &Path, extra: &[&str]) -> Run {
    let mut all = vec![
        OsStr::new("replay"),
        dump.as_os_str(),
        OsStr::new("--out"),
        out.as_os_str(),
        OsStr::new("--quiet"),
    ];
    all.extend(extra.iter().map(OsStr::new));
    ptyflow(all)
}

/// As [`replay`], expecting success; returns the parsed `report.json`.
fn replay_ok(dump: &Path, out: &Path, extra: &[&str]) -> Value {
    let run = replay(dump, out, extra);
    assert_eq!(run.code, 0, "{extra:?}: stderr: {}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    report(out)
}

/// As [`replay`], expecting exit code 2 and no panic; returns stderr.
fn fails(dump: &Path, out: &Path, extra: &[&str]) -> String {
    let run = replay(dump, out, extra);
    assert_eq!(
        run.code, 2,
        "{extra:?}: stdout: {} stderr: {}",
        run.stdout, run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run.stderr
}

fn report(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("report.json")).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn npy(out: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    read_npy::<f32>(&out.join(format!("{name}.npy"))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The whole frame as a crop window (x0, y0, width, height).
const FULL: (usize, usize, usize, usize) = (0, 0, W, H);

/// Sum of the stage pixels (the `win` crop binned `b × b`) whose centre, in unbinned pixels
/// (x = x0 + b·col + (b − 1)/2), satisfies `keep(dx, dy)` with (dx, dy) measured from
/// (`cx`, `cy`). Summing the unbinned pixels of the kept blocks is the same thing.
fn stage_sum(
    frame: &[u16],
    win: (usize, usize, usize, usize),
    b: usize,
    cx: f64,
    cy: f64,
    keep: impl Fn(f64, f64) -> bool,
) -> f64 {
    let (x0, y0, ww, wh) = win;
    let half = (b as f64 - 1.0) / 2.0;
    let mut sum = 0.0;
    for y in y0..y0 + wh {
        for x in x0..x0 + ww {
            let (row, col) = ((y - y0) / b, (x - x0) / b);
            let (sx, sy) = ((x0 + b * col) as f64 + half, (y0 + b * row) as f64 + half);
            if keep(sx - cx, sy - cy) {
                sum += f64::from(frame[y * W + x]);
            }
        }
    }
    sum
}

/// The smallest distance between a stage pixel centre's radius and any of `radii`: the
/// naive sums are only unambiguous when nothing sits on a boundary.
fn boundary_margin(
    win: (usize, usize, usize, usize),
    b: usize,
    cx: f64,
    cy: f64,
    radii: &[f64],
) -> f64 {
    let (x0, y0, ww, wh) = win;
    let half = (b as f64 - 1.0) / 2.0;
    let mut margin = f64::INFINITY;
    for row in 0..wh / b {
        for col in 0..ww / b {
            let sx = (x0 + b * col) as f64 + half;
            let d = (sx - cx).hypot((y0 + b * row) as f64 + half - cy);
            for r in radii {
                margin = margin.min((d - r).abs());
            }
        }
    }
    margin
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn synthetic_raw_with_every_detector() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("scan.raw");
    let frames = synthetic_frames(ROWS * COLS, 7);
    write_raw_u16(&dump, W, H, &frames, (ROWS, COLS));
    let out = dir.path().join("out");
    let (r_in, r_out) = (9.0, 14.0);
    let v = replay_ok(
        &dump,
        &out,
        &[
            "--bin",
            "2",
            "--virtual",
            "bf",
            "--virtual",
            "dpc",
            "--virtual",
            "adf:9:14",
            "--virtual",
            "rings:4:9:14",
            "--virtual",
            "com",
            "--threads",
            "2",
        ],
    );

    // The report.
    let n = (ROWS * COLS) as u64;
    assert_eq!(v["frames_read"], n, "{v}");
    assert_eq!(v["frames_processed"], n, "{v}");
    assert_eq!(v["frames_dropped"], 0, "{v}");
    assert_eq!(v["interrupted"], false, "{v}");
    assert!(v["fps_overall"].as_f64().unwrap() > 0.0, "{v}");
    let stages = v["stages"].as_array().unwrap();
    let reduce = stages.iter().find(|s| s["stage"] == "reduce").expect("{v}");
    assert!(reduce["fps"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["scan"]["rows"], ROWS);
    assert_eq!(v["scan"]["cols"], COLS);
    assert_eq!(v["geometry"]["stage"], serde_json::json!([H / 2, W / 2]));
    let disc = &v["bright_field_disc"];
    let (cx, cy, r) = (
        disc["cx"].as_f64().unwrap(),
        disc["cy"].as_f64().unwrap(),
        disc["r"].as_f64().unwrap(),
    );
    assert!(
        (cx - CX).abs() < 0.3 && (cy - CY).abs() < 0.3,
        "disc found at ({cx}, {cy}), painted at ({CX}, {CY})"
    );
    assert!((r - R).abs() < 0.6, "radius {r}, painted {R}");

    // The files.
    let rings = "virtual_rings";
    for name in [
        "report.json",
        "mean.npy",
        "mean.png",
        "var.npy",
        "var.png",
        "dose.npy",
        "dose.png",
        "virtual_bf.npy",
        "virtual_bf.png",
        "virtual_dpc.npy",
        "virtual_dpc_sum.npy",
        "virtual_dpc_sum.png",
        "virtual_adf.npy",
        "virtual_adf.png",
        &format!("{rings}.npy"),
        &format!("{rings}_sum.png"),
        "virtual_com_x.npy",
        "virtual_com_x.png",
        "virtual_com_y.npy",
        "virtual_com_y.png",
    ] {
        assert!(out.join(name).is_file(), "{name} missing");
        let listed = v["outputs"].as_array().unwrap();
        assert!(listed.iter().any(|o| o == name), "{name} not in outputs");
    }

    // Dose: the frame sums, exactly (integer counts well inside f32's 2^24).
    let (shape, dose) = npy(&out, "dose");
    assert_eq!(shape, [ROWS, COLS]);
    for (f, frame) in frames.iter().enumerate() {
        let sum: u64 = frame.iter().map(|&p| u64::from(p)).sum();
        assert_eq!(dose[f], sum as f32, "frame {f}");
    }

    // Mean and variance of the binned pattern, against a naive two-pass computation.
    let (shape, mean) = npy(&out, "mean");
    assert_eq!(shape, [H / 2, W / 2]);
    let (_, var) = npy(&out, "var");
    let binned: Vec<Vec<f64>> = frames
        .iter()
        .map(|f| {
            let mut s = vec![0.0; W * H / 4];
            for (i, &p) in f.iter().enumerate() {
                s[(i / W / 2) * (W / 2) + i % W / 2] += f64::from(p);
            }
            s
        })
        .collect();
    for k in 0..W * H / 4 {
        let m = binned.iter().map(|s| s[k]).sum::<f64>() / n as f64;
        let va = binned.iter().map(|s| (s[k] - m).powi(2)).sum::<f64>() / n as f64;
        assert!(
            close(f64::from(mean[k]), m, 1e-6),
            "mean[{k}] {} vs {m}",
            mean[k]
        );
        assert!(
            close(f64::from(var[k]), va, 1e-5),
            "var[{k}] {} vs {va}",
            var[k]
        );
    }

    // Virtual detectors against naive sums around the disc the report says was used.
    let dr = (r_out - r_in) / 4.0;
    let ring_bounds: Vec<f64> = (0..=4).map(|k| r_in + dr * k as f64).collect();
    let mut radii = ring_bounds.clone();
    radii.push(r);
    let margin = boundary_margin(FULL, 2, cx, cy, &radii);
    assert!(
        margin > 1e-3,
        "a stage pixel sits on a detector edge ({margin})"
    );

    let (shape, bf) = npy(&out, "virtual_bf");
    assert_eq!(shape, [ROWS, COLS]);
    let (shape, adf) = npy(&out, "virtual_adf");
    assert_eq!(shape, [ROWS, COLS]);
    let (shape, dpc) = npy(&out, "virtual_dpc");
    assert_eq!(shape, [ROWS, COLS, 4]);
    let (shape, ring) = npy(&out, rings);
    assert_eq!(shape, [ROWS, COLS, 4]);
    let (_, com_x) = npy(&out, "virtual_com_x");
    let (shape, com_y) = npy(&out, "virtual_com_y");
    assert_eq!(shape, [ROWS, COLS]);
    for (f, frame) in frames.iter().enumerate() {
        let want = stage_sum(frame, FULL, 2, cx, cy, |dx, dy| dx.hypot(dy) <= r);
        assert_eq!(f64::from(bf[f]), want, "bf, frame {f}");
        let want = stage_sum(frame, FULL, 2, cx, cy, |dx, dy| {
            (r_in..r_out).contains(&dx.hypot(dy))
        });
        assert_eq!(f64::from(adf[f]), want, "adf, frame {f}");
        for k in 0..4 {
            let band = ring_bounds[k]..ring_bounds[k + 1];
            let want = stage_sum(frame, FULL, 2, cx, cy, |dx, dy| {
                band.contains(&dx.hypot(dy))
            });
            assert_eq!(f64::from(ring[f * 4 + k]), want, "ring {k}, frame {f}");
            // Quadrant k spans angles [k·90°, (k+1)·90°) counter-clockwise from +x, y down.
            let want = stage_sum(frame, FULL, 2, cx, cy, |dx, dy| {
                let a = dy.atan2(dx).rem_euclid(std::f64::consts::TAU);
                dx.hypot(dy) < r && (a / std::f64::consts::FRAC_PI_2) as usize == k
            });
            assert_eq!(
                f64::from(dpc[f * 4 + k]),
                want,
                "dpc quadrant {k}, frame {f}"
            );
        }
        // Centre of mass in unbinned pixels relative to the disc centre, of the binned frame:
        // every pixel's counts sit at its block's centre.
        let total: f64 = frame.iter().map(|&p| f64::from(p)).sum();
        let (mut mx, mut my) = (0.0, 0.0);
        for (i, &p) in frame.iter().enumerate() {
            mx += f64::from(p) * ((i % W / 2 * 2) as f64 + 0.5);
            my += f64::from(p) * ((i / W / 2 * 2) as f64 + 0.5);
        }
        let (want_x, want_y) = (mx / total - cx, my / total - cy);
        assert!(
            (f64::from(com_x[f]) - want_x).abs() < 1e-3,
            "com x, frame {f}: {} vs {want_x}",
            com_x[f]
        );
        assert!(
            (f64::from(com_y[f]) - want_y).abs() < 1e-3,
            "com y, frame {f}: {} vs {want_y}",
            com_y[f]
        );
    }
}

/// With a crop, the stage pixel (row, col) has its centre at x = x0 + b·col + (b − 1)/2 in
/// unbinned pixels, and `--center`/`--bf-radius` are in unbinned pixels of the whole frame.
#[test]
fn crop_and_bin_keep_detectors_in_unbinned_coordinates() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("scan.raw");
    let frames = synthetic_frames(6, 13);
    write_raw_u16(&dump, W, H, &frames, (2, 3));
    let out = dir.path().join("out");
    let win = (5, 3, 24, 27);
    let (cx, cy, r) = (15.7, 14.2, 6.4);
    let v = replay_ok(
        &dump,
        &out,
        &[
            "--crop",
            "5,3,24,27",
            "--bin",
            "3",
            "--virtual",
            "bf",
            "--virtual",
            "adf:8:11.5",
            "--center",
            "15.7,14.2",
            "--bf-radius",
            "6.4",
        ],
    );
    assert_eq!(v["geometry"]["stage"], serde_json::json!([9, 8]), "{v}");
    assert_eq!(v["bright_field_disc"]["source"], "given");
    assert!(boundary_margin(win, 3, cx, cy, &[r, 8.0, 11.5]) > 1e-3);
    let (shape, mean) = npy(&out, "mean");
    assert_eq!(shape, [9, 8]);
    let (_, bf) = npy(&out, "virtual_bf");
    let (_, adf) = npy(&out, "virtual_adf");
    let (_, dose) = npy(&out, "dose");
    for (f, frame) in frames.iter().enumerate() {
        let all = stage_sum(frame, win, 3, cx, cy, |_, _| true);
        assert_eq!(
            f64::from(dose[f]),
            all,
            "dose counts the crop only, frame {f}"
        );
        let want = stage_sum(frame, win, 3, cx, cy, |dx, dy| dx.hypot(dy) <= r);
        assert_eq!(f64::from(bf[f]), want, "bf, frame {f}");
        let want = stage_sum(frame, win, 3, cx, cy, |dx, dy| {
            (8.0..11.5).contains(&dx.hypot(dy))
        });
        assert_eq!(f64::from(adf[f]), want, "adf, frame {f}");
    }
    // Mean pixel (0, 0) is the mean of the 3 × 3 block at (x0, y0).
    let block: f64 = frames
        .iter()
        .map(|f| {
            (3..6)
                .flat_map(|y| (5..8).map(move |x| f64::from(f[y * W + x])))
                .sum::<f64>()
        })
        .sum::<f64>()
        / 6.0;
    assert!(
        close(f64::from(mean[0]), block, 1e-6),
        "{} vs {block}",
        mean[0]
    );
}

/// With `--mrad-per-px`, detector radii and `--bf-radius` are angles: 0.5 mrad per pixel
/// makes `adf:4.5:7` the 9…14 px annulus and a 3.6 mrad disc a 7.2 px one.
#[test]
fn mrad_radii_are_converted_to_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("scan.raw");
    let frames = synthetic_frames(4, 17);
    write_raw_u16(&dump, W, H, &frames, (2, 2));
    let out = dir.path().join("out");
    let v = replay_ok(
        &dump,
        &out,
        &[
            "--mrad-per-px",
            "0.5",
            "--virtual",
            "adf:4.5:7",
            "--virtual",
            "bf",
            "--center",
            "15.37,16.21",
            "--bf-radius",
            "3.6",
        ],
    );
    assert!(
        (v["bright_field_disc"]["r"].as_f64().unwrap() - 7.2).abs() < 1e-12,
        "{v}"
    );
    assert!(boundary_margin(FULL, 1, 15.37, 16.21, &[7.2, 9.0, 14.0]) > 1e-3);
    // Outputs are named by kind, whatever unit the radii were given in.
    assert_eq!(v["virtual_detectors"][0]["name"], "adf");
    let (_, adf) = npy(&out, "virtual_adf");
    let (_, bf) = npy(&out, "virtual_bf");
    for (f, frame) in frames.iter().enumerate() {
        let want = stage_sum(frame, FULL, 1, 15.37, 16.21, |dx, dy| {
            (9.0..14.0).contains(&dx.hypot(dy))
        });
        assert_eq!(f64::from(adf[f]), want, "adf, frame {f}");
        let want = stage_sum(frame, FULL, 1, 15.37, 16.21, |dx, dy| dx.hypot(dy) <= 7.2);
        assert_eq!(f64::from(bf[f]), want, "bf, frame {f}");
    }
}

#[test]
fn serpentine_reverses_odd_rows() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("scan.raw");
    let frames = synthetic_frames(ROWS * COLS, 11);
    write_raw_u16(&dump, W, H, &frames, (ROWS, COLS));
    let raster = dir.path().join("raster");
    let serp = dir.path().join("serp");
    replay_ok(&dump, &raster, &[]);
    let v = replay_ok(&dump, &serp, &["--serpentine"]);
    assert_eq!(v["scan"]["serpentine"], true);
    let (_, a) = npy(&raster, "dose");
    let (_, b) = npy(&serp, "dose");
    for row in 0..ROWS {
        for col in 0..COLS {
            let mirrored = if row % 2 == 1 { COLS - 1 - col } else { col };
            assert_eq!(
                b[row * COLS + col],
                a[row * COLS + mirrored],
                "({row}, {col})"
            );
        }
    }
    // And the rows really differ, so the check above means something.
    assert_ne!(a[COLS..2 * COLS], b[COLS..2 * COLS]);
}

#[test]
fn merlin_u16_dose_is_the_frame_sums() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("scan.mib");
    let frames = synthetic_frames(12, 3);
    write_mib_u16(&dump, W, H, &frames);
    let out = dir.path().join("out");
    let v = replay_ok(&dump, &out, &["--scan", "3x4", "--bin", "4"]);
    assert_eq!(v["frames_processed"], 12);
    let (shape, dose) = npy(&out, "dose");
    assert_eq!(shape, [3, 4]);
    for (f, frame) in frames.iter().enumerate() {
        let sum: u64 = frame.iter().map(|&p| u64::from(p)).sum();
        assert_eq!(dose[f], sum as f32, "frame {f}");
    }
    let (shape, _) = npy(&out, "mean");
    assert_eq!(shape, [H / 4, W / 4]);
}

#[test]
fn scan_mismatch_needs_allow_partial() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("scan.raw");
    let frames = synthetic_frames(ROWS * COLS, 5);
    write_raw_u16(&dump, W, H, &frames, (ROWS, COLS));
    let out = dir.path().join("out");
    let sums: Vec<f32> = frames
        .iter()
        .map(|f| f.iter().map(|&p| u64::from(p)).sum::<u64>() as f32)
        .collect();

    // More frames than positions.
    let e = fails(&dump, &out, &["--scan", "5x5"]);
    assert!(
        e.contains("--scan")
            && e.contains("scan.raw")
            && e.contains("25 positions")
            && e.contains("42 frames")
            && e.contains("--allow-partial"),
        "{e}"
    );
    // … replays the first rows × cols frames with --allow-partial.
    let v = replay_ok(&dump, &out, &["--scan", "5x5", "--allow-partial"]);
    assert_eq!(v["frames_read"], 25, "{v}");
    assert_eq!(v["frames_processed"], 25, "{v}");
    let (shape, dose) = npy(&out, "dose");
    assert_eq!(shape, [5, 5]);
    assert_eq!(dose, sums[..25]);

    // Fewer frames than positions: NaN where no frame arrived.
    let e = fails(&dump, &out, &["--scan", "7x7"]);
    assert!(
        e.contains("49 positions") && e.contains("--allow-partial"),
        "{e}"
    );
    let v = replay_ok(&dump, &out, &["--scan", "7x7", "--allow-partial"]);
    assert_eq!(v["frames_processed"], 42, "{v}");
    let (shape, dose) = npy(&out, "dose");
    assert_eq!(shape, [7, 7]);
    assert_eq!(dose[..42], sums[..]);
    assert!(dose[42..].iter().all(|v| v.is_nan()), "{dose:?}");
}

#[test]
fn bad_input_exits_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out");
    let dump = d.join("scan.raw");
    write_raw_u16(&dump, W, H, &synthetic_frames(ROWS * COLS, 1), (ROWS, COLS));

    // Missing dump.
    let e = fails(&d.join("missing.raw"), &out, &[]);
    assert!(e.contains("missing.raw"), "{e}");

    // Truncated: 42 frames of 2048 bytes and 100 bytes of a 43rd.
    let cut = d.join("cut.raw");
    let mut bytes = std::fs::read(&dump).unwrap();
    bytes.extend([0u8; 100]);
    std::fs::write(&cut, &bytes).unwrap();
    let e = fails(
        &cut,
        &out,
        &["--width", "32", "--height", "32", "--dtype", "u16"],
    );
    assert!(
        e.contains("cut.raw") && e.contains("2048 bytes") && e.contains("100 bytes over"),
        "{e}"
    );

    // Bin factors: 3 does not divide 32; 17 is out of range (and does not divide either).
    for bin in ["3", "17", "0"] {
        let e = fails(&dump, &out, &["--bin", bin]);
        assert!(e.contains("--bin") && e.contains(bin), "--bin {bin}: {e}");
    }

    // Bad detector specs.
    for spec in ["haadf", "adf:14:9", "adf:x:9", "rings:0:1:2", "adf:3"] {
        let e = fails(&dump, &out, &["--virtual", spec]);
        assert!(e.contains("--virtual") && e.contains(spec), "{spec}: {e}");
    }
    // A detector entirely outside the 32 × 32 frame would silently give zeros: refused.
    let e = fails(&dump, &out, &["--virtual", "adf:40:60"]);
    assert!(
        e.contains("--virtual") && e.contains("covers no pixel"),
        "{e}"
    );

    // Crop windows that leave the 32 × 32 frame, and malformed ones.
    // (The message should name `--crop`; see `crop_outside_the_frame_names_the_flag`.)
    for crop in ["20,0,16,16", "0,0,33,32", "0,31,32,2"] {
        let e = fails(&dump, &out, &["--crop", crop]);
        assert!(e.contains("crop window"), "{crop}: {e}");
    }
    for crop in ["0,0,16", "0,0,0,16", "a,b,c,d"] {
        let e = fails(&dump, &out, &["--crop", crop]);
        assert!(e.contains("--crop") && e.contains(crop), "{crop}: {e}");
    }

    // Unwritable output directories: below a regular file, and in /proc.
    let file = d.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let bad_out = file.join("out");
    let e = fails(&dump, &bad_out, &[]);
    assert!(e.contains("a-file"), "{e}");
    let proc_out = PathBuf::from("/proc/ptyflow-cannot-write-here");
    if Path::new("/proc").is_dir() {
        let e = fails(&dump, &proc_out, &[]);
        assert!(e.contains("ptyflow-cannot-write-here"), "{e}");
    }

    // A dump with no bright-field contrast: the disc cannot be found.
    let flat = d.join("flat.raw");
    write_raw_u16(&flat, W, H, &vec![vec![5u16; W * H]; 4], (2, 2));
    let e = fails(&flat, &out, &["--virtual", "bf"]);
    assert!(e.contains("--center") && e.contains("flat.raw"), "{e}");
    // … and giving the disc makes it work.
    let v = replay_ok(
        &flat,
        &out,
        &["--virtual", "bf", "--center", "16,16", "--bf-radius", "4"],
    );
    assert_eq!(v["bright_field_disc"]["source"], "given");

    // Run options.
    let e = fails(&dump, &out, &["--threads", "0"]);
    assert!(e.contains("--threads"), "{e}");
    for fps in ["--fps=0", "--fps=-5", "--fps=nan"] {
        let e = fails(&dump, &out, &[fps]);
        assert!(e.contains("--fps"), "--fps {fps}: {e}");
    }
    let e = fails(&dump, &out, &["--mrad-per-px", "0"]);
    assert!(e.contains("--mrad-per-px"), "{e}");
    let e = fails(&dump, &out, &["--bf-radius=-1", "--center", "1,1"]);
    assert!(e.contains("--bf-radius"), "{e}");
    let e = fails(&dump, &out, &["--scan", "0x5"]);
    assert!(e.contains("--scan") && e.contains("0x5"), "{e}");
}

#[test]
fn crop_outside_the_frame_names_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("scan.raw");
    write_raw_u16(&dump, W, H, &synthetic_frames(4, 1), (2, 2));
    let e = fails(&dump, &dir.path().join("out"), &["--crop", "20,0,16,16"]);
    assert!(
        e.contains("--crop") && e.contains("20,0,16,16") && e.contains("32"),
        "{e}"
    );
}

/// A replay of 2000 small frames paced at 200 frames/s (10 s), sent SIGINT after 1 s.
struct Interrupted {
    _dir: tempfile::TempDir,
    out: PathBuf,
    frames: Vec<Vec<u16>>,
    stderr: String,
    code: Option<i32>,
}

const LONG_FRAMES: usize = 2000;
const LONG_SCAN: (usize, usize) = (40, 50);

fn interrupted_replay(extra: &[&str]) -> Interrupted {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("long.raw");
    let (w, h) = (8, 8);
    let frames: Vec<Vec<u16>> = (0..LONG_FRAMES)
        .map(|f| (0..w * h).map(|i| ((f * 7 + i) % 50 + 1) as u16).collect())
        .collect();
    write_raw_u16(&dump, w, h, &frames, LONG_SCAN);
    let out = dir.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ptyflow"))
        .arg("replay")
        .arg(&dump)
        .arg("--out")
        .arg(&out)
        .args(["--fps", "200", "--batch", "16", "--quiet"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let sent = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if sent.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ptyflow still running 5 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    Interrupted {
        _dir: dir,
        out,
        frames,
        stderr,
        code: status.code(),
    }
}

#[test]
fn ctrl_c_stops_with_130_and_a_partial_report() {
    let run = interrupted_replay(&[]);
    assert_eq!(run.code, Some(130), "stderr: {}", run.stderr);
    assert!(run.stderr.contains("interrupted"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);

    let v = report(&run.out);
    assert_eq!(v["interrupted"], true, "{v}");
    assert_eq!(v["frames_dropped"], 0, "{v}");
    let read = v["frames_read"].as_u64().unwrap();
    assert_eq!(v["frames_processed"].as_u64(), Some(read), "{v}");
    assert!(read > 0 && read < LONG_FRAMES as u64, "{read} frames read");
    let (shape, dose) = npy(&run.out, "dose");
    assert_eq!(shape, [LONG_SCAN.0, LONG_SCAN.1]);
    for (f, frame) in run.frames[..read as usize].iter().enumerate() {
        let sum: u32 = frame.iter().map(|&p| u32::from(p)).sum();
        assert_eq!(dose[f], sum as f32, "frame {f}");
    }
}

#[test]
fn ctrl_c_leaves_nan_where_never_read() {
    let run = interrupted_replay(&["--virtual", "adf:1:3", "--center", "3.5,3.5"]);
    assert_eq!(run.code, Some(130), "stderr: {}", run.stderr);
    let read = report(&run.out)["frames_read"].as_u64().unwrap() as usize;
    assert!(read < LONG_FRAMES);
    for name in ["dose", "virtual_adf"] {
        let (_, values) = npy(&run.out, name);
        assert!(values[..read].iter().all(|v| v.is_finite()), "{name}");
        assert!(
            values[read..].iter().all(|v| v.is_nan()),
            "{name}: positions never read must be NaN, found {:?}…",
            &values[read..read + 5]
        );
    }
}

#[test]
fn help_names_the_physics_flags_with_units() {
    let run = ptyflow(["replay", "--help"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let help = &run.stdout;
    for needle in [
        "--mrad-per-px",
        "--virtual",
        "--bin",
        "--scan",
        "--center",
        "--bf-radius",
        "--crop",
        "--serpentine",
        "--allow-partial",
        "--fps",
        "--threads",
        "--out",
        "mrad",
        "unbinned pixels",
        "adf:INNER:OUTER",
        "rings:N:INNER:OUTER",
        "report.json",
        "dose.npy",
    ] {
        assert!(help.contains(needle), "`{needle}` missing:\n{help}");
    }
}

/// Issue 20: a scan step typed in the wrong unit (pm for Å) asks for a 10.7 TB object. It used
/// to abort ("memory allocation of … bytes failed", exit 134, a backtrace); now the set-up is
/// checked against the memory budget first: exit 2 with a message naming `--step`, the size
/// and the budget, before any output is written.
#[test]
fn issue_20_a_step_in_the_wrong_unit_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/mos2-defocus/scan.raw");
    let out = dir.path().join("out");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["replay", fixture.to_str().unwrap(), "--recon", "epie", "-q"]
            .map(String::from)
            .into();
        a.extend(["--out".into(), out.display().to_string()]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = ptyflow(args(&["--step", "70000"]));
    assert_eq!(run.code, 2, "{}", run.stderr);
    eprintln!("{}", run.stderr);
    for part in [
        "parameter `--step`: 70000 Å steps over the 10 × 10 scan",
        "object (10.7 TB",
        "more than the memory budget of",
        "`--memory-budget` or PTYFLOW_MEMORY_BUDGET",
    ] {
        assert!(
            run.stderr.contains(part),
            "`{part}` missing: {}",
            run.stderr
        );
    }
    assert!(!run.stderr.contains("memory allocation"), "{}", run.stderr);
    assert!(!out.join("report.json").exists());
    // The flag sets the budget the job is checked against, and names itself in the message.
    let run = ptyflow(args(&["--memory-budget", "1M"]));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("budget of 1.0 MB (`--memory-budget` 1M)"),
        "{}",
        run.stderr
    );
    let run = ptyflow(args(&["--memory-budget", "12 parsecs"]));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("`--memory-budget`"), "{}", run.stderr);
    // With a budget that fits, the fixture's own step still runs.
    let run = ptyflow(args(&["--memory-budget", "1G"]));
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// Issue 16: a dump truncated while `ptyflow replay` reads it (400 frames paced at 200
/// frames/s; cut to 200½ frames as soon as the output folder appears, which `replay` creates
/// after opening the dump, about a second before the reader reaches frame 200).
#[test]
fn issue16_a_dump_truncated_during_replay_exits_2_naming_the_frame_with_outputs_written() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("shrinking.raw");
    let (w, h, n, scan) = (8, 8, 400, (20, 20));
    let frames: Vec<Vec<u16>> = (0..n)
        .map(|f| (0..w * h).map(|i| ((f * 7 + i) % 50 + 1) as u16).collect())
        .collect();
    write_raw_u16(&dump, w, h, &frames, scan);
    let out = dir.path().join("out");
    let child = Command::new(env!("CARGO_BIN_EXE_ptyflow"))
        .arg("replay")
        .arg(&dump)
        .arg("--out")
        .arg(&out)
        .args(["--fps", "200", "--batch", "8", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !out.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no output folder"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let stride = (w * h * 2) as u64;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&dump)
        .unwrap()
        .set_len(200 * stride + stride / 2)
        .unwrap();
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("shrinking.raw") && stderr.contains("frame 200 (at byte 25600)"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // As after Ctrl-C: the report and the outputs of the frames before the loss.
    let v = report(&out);
    assert_eq!(v["source_changed"]["frame"], 200, "{v}");
    assert_eq!(v["source_changed"]["processed_after"], 0, "{v}");
    assert_eq!(v["frames_processed"], 200, "{v}");
    let (shape, dose) = npy(&out, "dose");
    assert_eq!(shape, [scan.0, scan.1]);
    for (f, frame) in frames[..200].iter().enumerate() {
        let sum: u32 = frame.iter().map(|&p| u32::from(p)).sum();
        assert_eq!(dose[f], sum as f32, "frame {f}");
    }
    assert!(
        dose[200..].iter().all(|v| v.is_nan()),
        "no value past the loss"
    );
    assert!(out.join("mean.npy").is_file() && out.join("dose.png").is_file());
}
