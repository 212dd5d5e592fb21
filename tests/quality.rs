//! Quality tests of the reconstruction (issue 5 item 8): simulate a MoS2 dataset with the
//! library's simulator, reconstruct it in process through `ptyflow replay --recon …`, and
//! compare `object.npy` with the simulator's ground truth over the scanned area.
//!
//! Every test also runs a broken variant of what it checks (wrong defocus sign, a disabled
//! update, a wrong scan rotation) and asserts that the variant fails the same threshold, so a
//! broken algorithm cannot pass.
//!
//! # Alignment
//! The truth and the reconstruction are cut to the **scanned area** (the bounding box of the
//! probe centres) by their own bookkeeping: the truth's `object_origin_px` (`meta.json`) and
//! the reconstruction's `object_origin_px` (`report.json`) are the pixels under the first probe
//! position, so truth pixel `t` is reconstruction pixel `t + origin_recon − origin_truth` (the
//! fractional part, non-zero for rotated scans, is applied by a Fourier shift). The metrics
//! are then taken **without registration**; the tests check that registering the same cut
//! finds a shift of less than 0.1 px, i.e. that the bookkeeping of simulator and reconstruction
//! agree.
//!
//! # Run time
//! Small datasets (10 × 10 scans on a 96-pixel detector, 16 × 16 on 64 pixels) and ≤ 20
//! sweeps: each test takes 1–4 s at the test profile (opt-level 3). The dose series behind the
//! thresholds is [`study`] (`#[ignore]`, about a minute).

use std::path::{Path, PathBuf};
use std::time::Instant;

use num_complex::{Complex32, Complex64};
use ptyflow::metrics::{CompareOptions, Comparison, compare, shift_image, to_c64};
use ptyflow::output::read_npy;
use ptyflow::sim::{Dose, DumpFormat, Preset, SimParams, simulate, write_dataset};
use serde_json::Value;

/// The issue's threshold on the phase correlation over the scanned area at high dose.
const PHASE_CORRELATION_MIN: f64 = 0.9;

/// Paper 001's high dose, electrons per pattern.
const HIGH_DOSE: f64 = 1e6;

/// Paper 001's low dose, electrons per pattern.
const LOW_DOSE: f64 = 1e2;

/// Largest registration shift (px) tolerated between the bookkeeping-aligned cuts.
const ALIGNMENT_TOLERANCE_PX: f64 = 0.1;

/// A simulated dataset on disk (in a temporary directory) with its ground truth.
struct Sim {
    dir: tempfile::TempDir,
    truth: Vec<Complex32>,
    truth_shape: [usize; 2],
    /// Truth pixel `[row, col]` under the first probe position (`meta.json`).
    truth_origin: [f64; 2],
    /// Probe centres in truth pixels, scan order.
    positions_px: Vec<[f64; 2]>,
}

impl Sim {
    fn dump(&self) -> PathBuf {
        self.dir.path().join("data").join("scan.raw")
    }
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn pair(v: &Value) -> [f64; 2] {
    [v[0].as_f64().unwrap(), v[1].as_f64().unwrap()]
}

/// Simulates `params` and writes the raw dump, its sidecar and the truth.
fn simulate_to_disk(params: &SimParams) -> Sim {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ds = simulate(params).unwrap();
    write_dataset(&ds, &data, DumpFormat::Raw).unwrap();
    let meta = json(&data.join("meta.json"));
    let (shape, truth) = read_npy::<Complex32>(&data.join("object.npy")).unwrap();
    let truth_origin = pair(&meta["object_origin_px"]);
    let dx = meta["object_pixel_angstrom"].as_f64().unwrap();
    Sim::new(
        dir,
        truth,
        shape,
        truth_origin,
        dx,
        ds.positions.iter().copied(),
    )
}

impl Sim {
    /// A dataset in `dir/data` with its truth of `shape` (`truth_origin`: the truth pixel
    /// under the first probe position, `dx` its pixel in Å) and the probe positions in Å
    /// relative to the first, scan order.
    fn new(
        dir: tempfile::TempDir,
        truth: Vec<Complex32>,
        shape: Vec<usize>,
        truth_origin: [f64; 2],
        dx: f64,
        positions: impl Iterator<Item = [f64; 2]>,
    ) -> Sim {
        let positions_px = positions
            .map(|p| [truth_origin[0] + p[0] / dx, truth_origin[1] + p[1] / dx])
            .collect();
        Sim {
            dir,
            truth,
            truth_shape: [shape[0], shape[1]],
            truth_origin,
            positions_px,
        }
    }
}

/// A reconstruction read back from `replay`'s outputs.
struct Recon {
    object: Vec<Complex32>,
    shape: [usize; 2],
    /// Object pixel `[row, col]` under the first probe position (`report.json`).
    origin: [f64; 2],
    /// Wall time of the `replay` call, s.
    seconds: f64,
}

impl Recon {
    /// The vacuum start (`O = 1`) on the same grid: what a reconstruction that never updates
    /// returns.
    fn vacuum(&self) -> Recon {
        Recon {
            object: vec![Complex32::new(1.0, 0.0); self.object.len()],
            shape: self.shape,
            origin: self.origin,
            seconds: 0.0,
        }
    }

    /// Largest `|O|` of the reconstruction.
    fn max_amplitude(&self) -> f32 {
        self.object.iter().map(|z| z.norm()).fold(0.0, f32::max)
    }
}

/// Runs `ptyflow replay DUMP ARGS… -q --out DIR/NAME` in process (physics from the sidecar
/// unless `args` override it) and reads `object.npy` and `report.json`.
fn reconstruct(sim: &Sim, name: &str, args: &[&str]) -> Recon {
    let out = sim.dir.path().join(name);
    let text = |p: &Path| p.to_str().unwrap().to_owned();
    let mut argv: Vec<String> = vec!["ptyflow".into(), "replay".into(), text(&sim.dump())];
    argv.extend(args.iter().map(|s| s.to_string()));
    argv.extend(["-q".into(), "--out".into(), text(&out)]);
    let t = Instant::now();
    let code = ptyflow::cli::main_with_args(argv.clone());
    let seconds = t.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{argv:?}");
    let (shape, object) = read_npy::<Complex32>(&out.join("object.npy")).unwrap();
    let report = json(&out.join("report.json"));
    Recon {
        object,
        shape: [shape[0], shape[1]],
        origin: pair(&report["object_origin_px"]),
        seconds,
    }
}

/// The metrics of a reconstruction over the scanned area.
#[derive(Debug)]
struct Score {
    /// Cut by the `object_origin_px` bookkeeping, not registered.
    aligned: Comparison,
    /// The same cut, registered by `compare` (`None` when the registration shift is so large
    /// that nothing is left to compare, as for a failed reconstruction).
    registered: Option<Comparison>,
}

impl Score {
    fn phase_correlation(&self) -> f64 {
        self.aligned.phase_correlation
    }

    fn nrmse(&self) -> f64 {
        self.aligned.nrmse
    }

    /// Asserts that the bookkeeping cut is where registration would put it.
    fn assert_aligned(&self, what: &str) {
        let r = self
            .registered
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: registration failed"));
        let shift = r.shift_px[0].hypot(r.shift_px[1]);
        assert!(
            shift < ALIGNMENT_TOLERANCE_PX,
            "{what}: registration moves the bookkeeping-aligned reconstruction by {:?} px: the \
             object_origin_px of simulator and reconstruction disagree",
            r.shift_px
        );
    }
}

/// Cuts the scanned area (bounding box of the probe centres) out of the truth and the same
/// physical area out of the reconstruction (by both `object_origin_px`), then compares them
/// with a global phase and a phase ramp removed, unregistered and registered.
fn score(sim: &Sim, recon: &Recon) -> Score {
    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for p in &sim.positions_px {
        for a in 0..2 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    let first = [lo[0].ceil() as usize, lo[1].ceil() as usize];
    let shape = [
        hi[0].floor() as usize + 1 - first[0],
        hi[1].floor() as usize + 1 - first[1],
    ];
    // Truth pixel t is reconstruction pixel t + d; the integer part indexes, the fractional
    // part is a Fourier shift (`out(y) = in(y − s)` with s = −frac).
    let d = [
        recon.origin[0] - sim.truth_origin[0],
        recon.origin[1] - sim.truth_origin[1],
    ];
    let whole = [d[0].round(), d[1].round()];
    let frac = [d[0] - whole[0], d[1] - whole[1]];
    let shifted = shift_image(&to_c64(&recon.object), recon.shape, [-frac[0], -frac[1]]);
    let cut = |data: &[Complex64], cols: usize, offset: [f64; 2]| -> Vec<Complex32> {
        let mut out = Vec::with_capacity(shape[0] * shape[1]);
        for r in 0..shape[0] {
            for c in 0..shape[1] {
                let row = ((first[0] + r) as f64 + offset[0]) as usize;
                let col = ((first[1] + c) as f64 + offset[1]) as usize;
                let v = data[row * cols + col];
                out.push(Complex32::new(v.re as f32, v.im as f32));
            }
        }
        out
    };
    let truth = cut(&to_c64(&sim.truth), sim.truth_shape[1], [0.0, 0.0]);
    let rec = cut(&shifted, recon.shape[1], whole);
    let options = |register| CompareOptions {
        crop_px: 0,
        register,
        remove_ramp: true,
    };
    Score {
        aligned: compare(&rec, shape, &truth, shape, &options(false)).unwrap(),
        registered: compare(&rec, shape, &truth, shape, &options(true)).ok(),
    }
}

/// Paper 000's geometry (preset `mos2-defocus`: 80 kV, α 24 mrad, 800 Å underfocus, 2.3 Å
/// step, 96-pixel detector at 0.8 mrad/px) on a 10 × 10 scan.
fn defocus_params(electrons: f64, seed: u64) -> SimParams {
    SimParams {
        scan: [10, 10],
        dose: Dose::PerPattern(electrons),
        seed,
        ..SimParams::preset(Preset::Mos2Defocus)
    }
}

/// Paper 001's geometry (preset `mos2-focus`: 300 kV, α 18 mrad, in focus, 0.273 Å step,
/// 64-pixel detector at 1 mrad/px) on a 16 × 16 scan.
fn focus_params(electrons: f64, seed: u64) -> SimParams {
    SimParams {
        scan: [16, 16],
        dose: Dose::PerPattern(electrons),
        seed,
        ..SimParams::preset(Preset::Mos2Focus)
    }
}

/// `replay` flags of the methods, each with 20 sweeps after the online pass. ePIE keeps the
/// probe fixed (`--beta-step 0`): like Wirtinger flow it then uses the known probe.
const EPIE: &[&str] = &["--recon", "epie", "--beta-step", "0", "--sweeps", "20"];
const WF_AMPLITUDE: &[&str] = &["--recon", "wf", "--loss", "amplitude", "--sweeps", "20"];
const WF_POISSON: &[&str] = &["--recon", "wf", "--loss", "poisson", "--sweeps", "20"];
/// Poisson with paper 003's truncated gradient (α_h = 5).
const WF_POISSON_TRUNCATED: &[&str] = &[
    "--recon",
    "wf",
    "--loss",
    "poisson",
    "--truncation",
    "5",
    "--sweeps",
    "20",
];

/// `base` followed by `extra`.
fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(extra).copied().collect()
}

/// Issue 5 item 8, first half, for ePIE: on the defocused MoS2 data (paper 000's geometry) at
/// paper 001's high dose (10⁶ electrons per pattern), ePIE with the known probe reaches a phase
/// correlation with the truth of at least 0.9 over the scanned area (measured 0.945).
/// Controls: the wrong defocus sign (`--defocus -800`, measured 0.02) and a disabled object
/// update (`--alpha-step 0`, measured 0.02: the vacuum start) fail the same threshold.
#[test]
fn high_dose_epie_reaches_phase_correlation_0_9() {
    let sim = simulate_to_disk(&defocus_params(HIGH_DOSE, 1));
    let good = score(&sim, &reconstruct(&sim, "epie", EPIE));
    good.assert_aligned("epie");
    assert!(
        good.phase_correlation() >= PHASE_CORRELATION_MIN,
        "ePIE at 1e6 e/pattern: phase correlation {:.3} < {PHASE_CORRELATION_MIN}",
        good.phase_correlation()
    );
    for (name, extra) in [
        ("wrong defocus sign", ["--defocus", "-800"]),
        ("no object update", ["--alpha-step", "0"]),
    ] {
        let bad = score(&sim, &reconstruct(&sim, name, &with(EPIE, &extra)));
        assert!(
            bad.phase_correlation() < PHASE_CORRELATION_MIN - 0.5,
            "ePIE with {name} still reaches phase correlation {:.3}: the test cannot tell",
            bad.phase_correlation()
        );
    }
}

/// Issue 5 item 8, first half, for Poisson Wirtinger flow: at 10⁶ electrons per pattern on the
/// defocused data, Poisson-WF with its defaults (ε = max(10⁻⁴, 0.01·N/M²) counts, see
/// `WfParams::epsilon_for`) and with paper 003's **truncated** gradient (`--truncation 5`)
/// each reach a phase correlation of at least 0.9 (measured 0.950 and 0.953, seeds 1–3).
///
/// Why ε matters here: vacuum predicts (almost) no counts in the dark field, where the data
/// has counts, so with paper 001's fixed ε = 10⁻⁴ `ℓ' = 1 − I/(Î + ε)` is of order −10⁴·I there
/// and the first updates drive `|O|` far from 1. Measured by [`study`] on this dataset, seed 1,
/// with `--epsilon-relative 0`: phase correlation 0.26 at 10⁶ and 0.24 at 10⁷ electrons per
/// pattern (max |O| 2.3); over seeds 1–3 at 10⁶, 0.49 ± 0.36. The test checks that seed-1 run
/// as a control too, at the constant step μ = 1 and the free modulus it was measured with: the
/// automatic steps (issue 11) are small enough at this dose that a fixed ε no longer diverges
/// (0.962), and the passive constraint `|O| ≤ 1` stops the runaway modulus too (0.939).
///
/// Controls: the wrong defocus sign (measured −0.05) and a zero step (`--wf-step 0`,
/// measured 0.02) fail the threshold.
#[test]
fn high_dose_poisson_wf_reaches_phase_correlation_0_9() {
    let sim = simulate_to_disk(&defocus_params(HIGH_DOSE, 1));
    for (name, args) in [
        ("poisson-wf", WF_POISSON.to_vec()),
        ("poisson-wf-t5", WF_POISSON_TRUNCATED.to_vec()),
    ] {
        let good = score(&sim, &reconstruct(&sim, name, &args));
        good.assert_aligned(name);
        assert!(
            good.phase_correlation() >= PHASE_CORRELATION_MIN,
            "{name} at 1e6 e/pattern: phase correlation {:.3} < {PHASE_CORRELATION_MIN}",
            good.phase_correlation()
        );
    }
    for (name, extra) in [
        ("wrong defocus sign", &["--defocus", "-800"][..]),
        ("no update", &["--wf-step", "0"]),
        // Neither at the automatic (small) steps nor with the passive |O| ≤ 1 constraint
        // does a fixed ε diverge (0.962, 0.939); at μ = 1 with a free modulus it does.
        (
            "paper 001's fixed epsilon at μ = 1, free modulus",
            &[
                "--epsilon-relative",
                "0",
                "--wf-step",
                "1",
                "--object-constraint",
                "free",
            ],
        ),
    ] {
        let bad = score(&sim, &reconstruct(&sim, name, &with(WF_POISSON, extra)));
        assert!(
            bad.phase_correlation() < PHASE_CORRELATION_MIN - 0.5,
            "Poisson-WF with {name} still reaches phase correlation {:.3}: the test cannot tell",
            bad.phase_correlation()
        );
    }
}

/// Issue 5 item 8, second half: at paper 001's low dose, 10² electrons per pattern (300 kV,
/// α = 18 mrad, in focus, 0.273 Å step: 1340 e⁻/Å²), Poisson-WF's NRMSE over the scanned area
/// is no worse than the amplitude loss's, **for each of three seeds** (per seed is the stronger
/// statement of the two the issue allows, and the margin allows it: measured NRMSE 0.078 ±
/// 0.002 for Poisson (seeds 1–3) against 0.70 for the amplitude loss, whose reconstruction
/// loses two thirds of the object's amplitude as paper 001 reports for 10² electrons, section
/// 4.6).
///
/// "No worse than the amplitude loss" alone would also hold for a Poisson-WF that never moves
/// from its vacuum start (NRMSE 0.097 here), so the test also requires Poisson-WF to improve
/// on the vacuum start's NRMSE; the control `--wf-step 0` shows that this catches a disabled
/// update.
///
/// The Poisson gradient is **not truncated** here: with ≈ 0.1 counts per bright-field pixel,
/// paper 003's rule `|I − Î| ≤ α_h·mean|I − Î|·√(Î/mean Î)` drops every pixel that counted an
/// electron and keeps the empty ones, so the truncated gradient only ever lowers the intensity
/// (measured NRMSE 0.999: the object's amplitude goes to 0).
#[test]
fn low_dose_poisson_wf_nrmse_is_no_worse_than_amplitude() {
    for seed in 1..=3 {
        let sim = simulate_to_disk(&focus_params(LOW_DOSE, seed));
        let poisson_recon = reconstruct(&sim, "poisson", WF_POISSON);
        let poisson = score(&sim, &poisson_recon).nrmse();
        let amplitude = score(&sim, &reconstruct(&sim, "amplitude", WF_AMPLITUDE)).nrmse();
        let vacuum = score(&sim, &poisson_recon.vacuum()).nrmse();
        assert!(
            poisson <= amplitude,
            "seed {seed}, 1e2 e/pattern: Poisson-WF NRMSE {poisson:.3} > amplitude {amplitude:.3}"
        );
        assert!(
            poisson < vacuum,
            "seed {seed}, 1e2 e/pattern: Poisson-WF NRMSE {poisson:.3} does not improve on the \
             vacuum start's {vacuum:.3}"
        );
        if seed == 1 {
            let off = reconstruct(&sim, "off", &with(WF_POISSON, &["--wf-step", "0"]));
            let off = score(&sim, &off).nrmse();
            assert!(
                off >= vacuum - 1e-6,
                "a disabled update passes: NRMSE {off:.4} < vacuum {vacuum:.4}"
            );
        }
    }
}

/// A rotated scan: the simulator rotates its raster counter-clockwise in the `(x, y)` plane
/// (`x = j·s·cos θ − i·s·sin θ`, `y = j·s·sin θ + i·s·cos θ`), the reconstruction's
/// `RasterScan` by `x' = x cos θ − y sin θ`, `y' = x sin θ + y cos θ`: the same formula, so
/// `--scan-rotation θ` in both reconstructs (measured 0.943 at +30°, 0.949 at −30°), and the
/// opposite sign in `replay` does not (measured 0.09 and 0.03).
#[test]
fn rotated_scan_reconstructs_with_the_simulators_rotation() {
    for angle in [30.0f64, -30.0] {
        let mut params = defocus_params(1e7, 1);
        params.scan_rotation_deg = angle;
        let sim = simulate_to_disk(&params);
        // The sidecar carries the rotation; give it explicitly all the same.
        let run = |name: &str, a: f64| {
            let a = a.to_string();
            let args = with(EPIE, &["--scan-rotation", &a]);
            score(&sim, &reconstruct(&sim, name, &args))
        };
        let good = run("same", angle);
        good.assert_aligned(&format!("scan rotation {angle}°"));
        assert!(
            good.phase_correlation() >= PHASE_CORRELATION_MIN,
            "scan rotation {angle}° in both: phase correlation {:.3} < {PHASE_CORRELATION_MIN}",
            good.phase_correlation()
        );
        let bad = run("opposite", -angle);
        assert!(
            bad.phase_correlation() < PHASE_CORRELATION_MIN - 0.5,
            "simulated at {angle}°, reconstructed at {}°: phase correlation {:.3}",
            -angle,
            bad.phase_correlation()
        );
    }
}

/// `compare` (and `ptyflow compare`) centre-crop the truth and the reconstruction to their
/// common shape; without registration that aligns them only if the simulator samples its truth
/// on the reconstruction's grid, also for rotated scans (a regression test: the two grids used
/// to differ by 0.96 px at 30°). A random, non-periodic object: on MoS₂ the registration peak
/// one lattice step away is within 1 % of the true one and may win.
#[test]
fn compare_centre_crop_aligns_simulated_truth_and_reconstruction() {
    for angle in [0.0f64, 30.0] {
        let mut params = defocus_params(1e7, 1);
        params.scan_rotation_deg = angle;
        params.object = ptyflow::sim::ObjectKind::Random;
        let sim = simulate_to_disk(&params);
        let recon = reconstruct(&sim, "epie", EPIE);
        let c = compare(
            &recon.object,
            recon.shape,
            &sim.truth,
            sim.truth_shape,
            &CompareOptions {
                crop_px: 45,
                register: true,
                remove_ramp: true,
            },
        )
        .unwrap();
        let shift = c.shift_px[0].hypot(c.shift_px[1]);
        assert!(
            shift < ALIGNMENT_TOLERANCE_PX,
            "scan rotation {angle}°: centre-cropped truth and reconstruction are {:?} px apart",
            c.shift_px
        );
    }
}

/// A geometry: dataset parameters for (electrons per pattern, seed).
type ParamsFn = fn(f64, u64) -> SimParams;

/// Mean and sample standard deviation.
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// The dose study behind the thresholds (not part of the default suite, about a minute):
///
/// ```text
/// cargo test --release -p ptyflow-suite --test tests quality::study -- --ignored --nocapture
/// ```
///
/// For both geometries (paper 000's defocused probe on a 10 × 10 scan, paper 001's focused
/// probe on a 16 × 16 scan), doses 10⁶, 10⁴, 10² electrons per pattern and seeds 1–3, it prints
/// the phase correlation and NRMSE over the scanned area (mean ± sd over the seeds) of ePIE
/// (known probe) and Wirtinger flow with the L1, MSE, amplitude, Poisson and truncated Poisson
/// losses, 20 sweeps each, against the vacuum start; then the Poisson runs at high dose once
/// more, with paper 001's fixed ε and with the default dose-relative ε, with the largest `|O|`
/// they reach (the divergence of the fixed ε).
#[test]
#[ignore = "study: about a minute; run with --ignored --nocapture"]
fn study() {
    let methods: [(&str, Vec<&str>); 6] = [
        ("epie", EPIE.to_vec()),
        (
            "wf-l1",
            vec!["--recon", "wf", "--loss", "l1", "--sweeps", "20"],
        ),
        (
            "wf-mse",
            vec!["--recon", "wf", "--loss", "mse", "--sweeps", "20"],
        ),
        ("wf-amplitude", WF_AMPLITUDE.to_vec()),
        ("wf-poisson", WF_POISSON.to_vec()),
        ("wf-poisson-t5", WF_POISSON_TRUNCATED.to_vec()),
    ];
    let geometries: [(&str, ParamsFn); 2] = [
        ("mos2-defocus 10x10", defocus_params),
        ("mos2-focus 16x16", focus_params),
    ];
    let seeds = [1u64, 2, 3];
    let started = Instant::now();
    println!(
        "{:<20} {:>7} {:<14} {:>15} {:>15} {:>6}",
        "geometry", "e/patt", "method", "phase corr", "NRMSE", "s/run"
    );
    for (geometry, params) in geometries {
        for dose in [1e6, 1e4, 1e2] {
            let mut rows: Vec<(String, Vec<f64>, Vec<f64>, f64)> = methods
                .iter()
                .map(|(n, _)| (n.to_string(), vec![], vec![], 0.0))
                .collect();
            rows.push(("vacuum start".into(), vec![], vec![], 0.0));
            let mut per_area = 0.0;
            for &seed in &seeds {
                let p = params(dose, seed);
                per_area = p.dose_e_per_a2();
                let sim = simulate_to_disk(&p);
                let mut last = None;
                for (i, (name, args)) in methods.iter().enumerate() {
                    let r = reconstruct(&sim, name, args);
                    let s = score(&sim, &r);
                    rows[i].1.push(s.phase_correlation());
                    rows[i].2.push(s.nrmse());
                    rows[i].3 += r.seconds / seeds.len() as f64;
                    last = Some(r);
                }
                let s = score(&sim, &last.unwrap().vacuum());
                let v = rows.last_mut().unwrap();
                v.1.push(s.phase_correlation());
                v.2.push(s.nrmse());
            }
            for (name, pc, nrmse, secs) in &rows {
                let ((pm, ps), (nm, ns)) = (mean_sd(pc), mean_sd(nrmse));
                println!(
                    "{geometry:<20} {dose:>7.0e} {name:<14} {pm:>7.3} ± {ps:<5.3} {nm:>7.3} ± {ns:<5.3} {secs:>6.2}"
                );
            }
            println!("{geometry:<20} {dose:>7.0e} ({per_area:.3e} e/Å²)");
        }
    }
    println!("\nPoisson-WF at high dose (defocused, seed 1), ε fixed or relative:");
    for dose in [1e7, 1e6] {
        let sim = simulate_to_disk(&defocus_params(dose, 1));
        for (name, args) in [
            (
                "poisson eps 1e-4",
                with(WF_POISSON, &["--epsilon-relative", "0"]),
            ),
            ("poisson", WF_POISSON.to_vec()),
            ("poisson-t5", WF_POISSON_TRUNCATED.to_vec()),
            (
                "poisson eps=1",
                with(WF_POISSON, &["--epsilon", "1", "--epsilon-relative", "0"]),
            ),
        ] {
            let r = reconstruct(&sim, &name.replace([' ', '='], "-"), &args);
            let s = score(&sim, &r);
            println!(
                "  {dose:.0e} {name:<14} phase corr {:.3}  NRMSE {:.3}  max|O| {:.3}",
                s.phase_correlation(),
                s.nrmse(),
                r.max_amplitude()
            );
        }
    }
    println!("\nstudy took {:.1} s", started.elapsed().as_secs_f64());
}

/// The committed abTEM fixture (`fixtures/wse2-abtem`, see `fixtures/README.md`): multislice
/// WSe₂, not this library's simulator, 16 × 16 positions in paper 000's optics at 10³ e⁻/Å²,
/// copied into a temporary directory so the reconstruction's outputs land there.
fn abtem_fixture() -> Sim {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/wse2-abtem");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for f in ["scan.raw", "scan.raw.json"] {
        std::fs::copy(src.join(f), data.join(f)).unwrap();
    }
    let meta = json(&src.join("meta.json"));
    let grid = &meta["truth"]["grid"];
    let (shape, truth) = read_npy::<Complex32>(&src.join("truth_object.npy")).unwrap();
    let truth_origin = pair(&grid["origin_px"]);
    let dx = grid["pixel_angstrom"].as_f64().unwrap();
    let (_, positions) = read_npy::<f64>(&src.join("positions.npy")).unwrap();
    let positions = positions.chunks_exact(2).map(|p| [p[0], p[1]]);
    Sim::new(dir, truth, shape, truth_origin, dx, positions)
}

/// Issue 11: on independent multislice data at low dose (the abTEM fixture, 10³ e⁻/Å², a
/// bright-field-only 64-pixel frame), the reconstruction with **only `--recon`** given (the
/// automatic steps, sweeps and `|O| ≤ 1`) reaches a phase correlation of 0.8 over the scanned
/// area: measured Poisson-WF 0.877 and ePIE 0.856 (scanned area, global phase removed; this
/// test also removes a ramp). Controls that must fail: the old defaults (a constant ePIE step
/// α = 1, 10 sweeps, measured 0.34: shot noise overwrites the object), and the wrong defocus
/// sign.
#[test]
fn issue_11_abtem_fixture_low_dose_defaults_reach_0_8() {
    const MIN: f64 = 0.8;
    let sim = abtem_fixture();
    for (name, args) in [
        ("wf defaults", &["--recon", "wf"][..]),
        ("epie defaults", &["--recon", "epie"]),
    ] {
        let good = score(&sim, &reconstruct(&sim, name, args));
        eprintln!("{name}: phase correlation {:.3}", good.phase_correlation());
        good.assert_aligned(name);
        assert!(
            good.phase_correlation() >= MIN,
            "{name} on the abTEM fixture: phase correlation {:.3} < {MIN}",
            good.phase_correlation()
        );
    }
    for (name, args) in [
        (
            "old constant-step defaults",
            &[
                "--recon",
                "epie",
                "--alpha-step",
                "1",
                "--beta-step",
                "0.1",
                "--sweeps",
                "10",
                "--object-constraint",
                "free",
            ][..],
        ),
        (
            "wrong defocus sign",
            &["--recon", "wf", "--defocus", "-800"],
        ),
    ] {
        let bad = score(&sim, &reconstruct(&sim, name, args));
        eprintln!("{name}: phase correlation {:.3}", bad.phase_correlation());
        assert!(
            bad.phase_correlation() < MIN - 0.3,
            "{name} still reaches phase correlation {:.3} on the abTEM fixture: the test \
             cannot tell",
            bad.phase_correlation()
        );
    }
}
