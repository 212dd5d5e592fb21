//! Tests of the reconstruction engine on small synthetic datasets made here with an
//! independent forward model (a naive f64 DFT, not the engine's FFT).

use super::update::fill_ramp;
use super::*;
use crate::metrics;
use crate::optics::{ProbeParams, window_pixel_angstrom};
use num_complex::Complex64;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Poisson};

const TAU: f64 = 2.0 * std::f64::consts::PI;

fn c64(v: Complex32) -> Complex64 {
    Complex64::new(v.re as f64, v.im as f64)
}

/// Naive separable 2-D DFT in f64 (`sign` −1 forward, +1 inverse, unnormalised).
fn dft2(x: &[Complex64], m: usize, sign: f64) -> Vec<Complex64> {
    let tw: Vec<Complex64> = (0..m)
        .map(|j| Complex64::from_polar(1.0, sign * TAU * j as f64 / m as f64))
        .collect();
    let mut tmp = vec![Complex64::new(0.0, 0.0); m * m];
    for y in 0..m {
        for k in 0..m {
            let mut acc = Complex64::new(0.0, 0.0);
            for xx in 0..m {
                acc += x[y * m + xx] * tw[(k * xx) % m];
            }
            tmp[y * m + k] = acc;
        }
    }
    let mut out = vec![Complex64::new(0.0, 0.0); m * m];
    for k in 0..m {
        for kx in 0..m {
            let mut acc = Complex64::new(0.0, 0.0);
            for y in 0..m {
                acc += tmp[y * m + kx] * tw[(k * y) % m];
            }
            out[k * m + kx] = acc;
        }
    }
    out
}

/// FFT-order intensity → detector layout (fftshift).
fn to_detector(i_fft: &[f64], m: usize) -> Vec<f32> {
    let h = m / 2;
    let mut out = vec![0.0f32; m * m];
    for ky in 0..m {
        for kx in 0..m {
            out[((ky + h) % m) * m + (kx + h) % m] = i_fft[ky * m + kx] as f32;
        }
    }
    out
}

/// The probe shifted by a sub-pixel `[fy, fx]` (naive DFT and its own phase ramp).
fn shift_probe(p: &[Complex64], m: usize, f: [f64; 2]) -> Vec<Complex64> {
    let mut spec = dft2(p, m, -1.0);
    let signed = |i: usize| {
        if i < m.div_ceil(2) {
            i as f64
        } else {
            i as f64 - m as f64
        }
    };
    for ky in 0..m {
        for kx in 0..m {
            let ph = -TAU * (signed(ky) * f[0] + signed(kx) * f[1]) / m as f64;
            spec[ky * m + kx] *= Complex64::from_polar(1.0 / (m * m) as f64, ph);
        }
    }
    dft2(&spec, m, 1.0)
}

/// A smooth random weak-phase object (phase within about ±0.4 rad, weak absorption).
fn weak_phase_object(shape: [usize; 2], seed: u64) -> Vec<Complex32> {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let [rows, cols] = shape;
    let n_blobs = rows * cols / 12;
    let blobs: Vec<(f64, f64, f64)> = (0..n_blobs)
        .map(|_| {
            (
                rng.gen_range(0.0..rows as f64),
                rng.gen_range(0.0..cols as f64),
                rng.gen_range(-0.25..0.25),
            )
        })
        .collect();
    (0..rows * cols)
        .map(|i| {
            let (y, x) = ((i / cols) as f64, (i % cols) as f64);
            let ph: f64 = blobs
                .iter()
                .map(|(by, bx, a)| a * (-((y - by).powi(2) + (x - bx).powi(2)) / 3.0).exp())
                .sum();
            Complex32::from_polar((1.0 - 0.02 * ph.abs()) as f32, ph as f32)
        })
        .collect()
}

/// A synthetic scan: object, probe, geometry and detector frames.
struct Dataset {
    m: usize,
    truth: Vec<Complex32>,
    geometry: ScanGeometry,
    probe: Vec<Complex32>,
    frames: Vec<Vec<f32>>,
    dx: f64,
}

const KV: f64 = 80.0;
const ALPHA: f64 = 20.0;
const DEFOCUS: f64 = 200.0;

/// 32×32 window, 80 kV, α = 20 mrad, 1.5 mrad/px, 200 Å underfocus (probe ≈ 9 px across),
/// a `scan × scan` raster. `step_px` = 3 gives ≈ 67 % overlap; `rotation` makes sub-pixel
/// positions. `dose` = electrons per pattern (None: noise-free with 10⁶ counts).
fn dataset(scan: usize, step_px: f64, rotation: f64, dose: Option<f64>, seed: u64) -> Dataset {
    let m = 32;
    let dx = window_pixel_angstrom(KV, m, 1.5);
    let probe = ProbeParams::new(KV, ALPHA, DEFOCUS).sample(m, dx).unwrap();
    let geometry = ScanGeometry::raster(
        &RasterScan {
            step_angstrom: [step_px * dx, step_px * dx],
            shape: [scan, scan],
            rotation_deg: rotation,
        },
        dx,
        m,
        0,
    )
    .unwrap();
    let truth = weak_phase_object(geometry.object_shape, seed);
    let cols = geometry.object_shape[1];
    let p64: Vec<Complex64> = probe.iter().map(|&v| c64(v)).collect();
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed + 1);
    let counts = dose.unwrap_or(1e6);
    let frames = geometry
        .positions
        .iter()
        .map(|pos| {
            let (ry, rx) = (pos[0].round(), pos[1].round());
            let ps = shift_probe(&p64, m, [pos[0] - ry, pos[1] - rx]);
            let (r0, c0) = (ry as usize - m / 2, rx as usize - m / 2);
            let psi: Vec<Complex64> = (0..m * m)
                .map(|i| ps[i] * c64(truth[(r0 + i / m) * cols + c0 + i % m]))
                .collect();
            let far = dft2(&psi, m, -1.0);
            let intensity: Vec<f64> = far
                .iter()
                .map(|v| {
                    let mean = counts * v.norm_sqr() / (m * m) as f64;
                    match dose {
                        Some(_) if mean > 0.0 => Poisson::new(mean).unwrap().sample(&mut rng),
                        Some(_) => 0.0,
                        None => mean,
                    }
                })
                .collect();
            to_detector(&intensity, m)
        })
        .collect();
    Dataset {
        m,
        truth,
        geometry,
        probe,
        frames,
        dx,
    }
}

/// Runs the online pass plus `sweeps` sweeps; returns the engine.
fn reconstruct(
    ds: &Dataset,
    method: Method,
    probe: Vec<Complex32>,
    sweeps: usize,
) -> Reconstructor {
    run_setup(
        ds,
        ReconSetup::new(method, probe, ds.m, ds.geometry.clone()),
        sweeps,
    )
}

/// [`reconstruct`] with a whole set-up (schedule, constraint, …).
fn run_setup(ds: &Dataset, setup: ReconSetup, sweeps: usize) -> Reconstructor {
    let mut r = Reconstructor::new(setup).unwrap();
    let mut pat = r.new_pattern();
    for (i, f) in ds.frames.iter().enumerate() {
        pat.prepare(f).unwrap();
        r.update(i, &pat).unwrap();
    }
    for _ in 0..sweeps {
        r.sweep().unwrap();
    }
    r
}

/// Phase correlation with the truth over the scanned area (probe centres), global phase
/// removed.
fn phase_corr(ds: &Dataset, object: &[Complex32]) -> f64 {
    let shape = ds.geometry.object_shape;
    let mut lo = [f64::INFINITY; 2];
    let mut hi = [f64::NEG_INFINITY; 2];
    for p in &ds.geometry.positions {
        for a in 0..2 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    let mask: Vec<bool> = (0..shape[0] * shape[1])
        .map(|i| {
            let (y, x) = ((i / shape[1]) as f64, (i % shape[1]) as f64);
            y >= lo[0] && y <= hi[0] && x >= lo[1] && x <= hi[1]
        })
        .collect();
    let r = metrics::to_c64(object);
    let t = metrics::to_c64(&ds.truth);
    let (al, _) = metrics::align_phase(&r, &t, shape, &mask, false);
    metrics::phase_correlation(&al, &t, &mask)
}

fn epie_fixed_probe() -> Method {
    Method::Epie(EpieParams {
        probe_update: ProbeUpdate::Never,
        ..EpieParams::default()
    })
}

#[test]
fn prepare_converts_detector_layout_to_fft_order_transposed() {
    for m in [8usize, 7] {
        let mut frame = vec![0u16; m * m];
        let h = m / 2;
        frame[h * m + h] = 100; // zero angle
        frame[(h + 1) * m + h + 2] = 9; // ky = 1, kx = 2
        frame[(h - 1) * m + h] = 4; // ky = −1
        let p = PreparedPattern::from_frame(&frame, m).unwrap();
        let a = p.amplitude_transposed();
        assert_eq!(a[0], 10.0);
        assert_eq!(a[2 * m + 1], 3.0);
        assert_eq!(a[m - 1], 2.0);
        assert_eq!(p.total_counts(), 113.0);
        assert_eq!(p.max_count(), 100.0);
        let back = p.intensity_detector_layout();
        let want: Vec<f32> = frame.iter().map(|&v| v as f32).collect();
        assert_eq!(back, want);
    }
    // f32 frames: negatives count as 0; bad sizes and NaN are named.
    let p = PreparedPattern::from_frame(&[-1.0f32, 4.0, 1.0, 0.0], 2).unwrap();
    assert_eq!(p.total_counts(), 5.0);
    let e = PreparedPattern::from_frame(&[1.0f32; 3], 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("frame") && e.contains("2×2"), "{e}");
    assert!(PreparedPattern::from_frame(&[f32::NAN; 4], 2).is_err());
}

/// One ePIE update with a flat-modulus probe (|P|² = max|P|² everywhere) makes the new exit
/// wave equal ψ', whose modulus must match the measured √I exactly.
#[test]
fn epie_update_enforces_the_fourier_constraint() {
    let m = 12;
    let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
    let probe: Vec<Complex32> = (0..m * m)
        .map(|_| Complex32::from_polar(1.0, rng.gen_range(0.0..std::f32::consts::TAU)))
        .collect();
    let counts: Vec<f32> = (0..m * m)
        .map(|_| rng.gen_range(0.0..50.0f32).round())
        .collect();
    let geometry = ScanGeometry {
        positions: vec![[(m / 2) as f64, (m / 2) as f64]],
        object_shape: [m, m],
        pixel_angstrom: 1.0,
    };
    let mut r =
        Reconstructor::new(ReconSetup::new(epie_fixed_probe(), probe, m, geometry)).unwrap();
    let pat = PreparedPattern::from_frame(&counts, m).unwrap();
    r.update(0, &pat).unwrap();
    let psi: Vec<Complex64> = r
        .probe()
        .iter()
        .zip(r.object())
        .map(|(p, o)| c64(p * o))
        .collect();
    let far = dft2(&psi, m, -1.0);
    let model: Vec<f64> = far
        .iter()
        .map(|v| pat.total_counts() * v.norm_sqr() / (m * m) as f64)
        .collect();
    let back = to_detector(&model, m);
    for (got, want) in back.iter().zip(&counts) {
        assert!((got - want).abs() < 1e-3 * want.max(1.0), "{got} vs {want}");
    }
    assert_eq!(r.updates_done(), 1);
    assert!(r.loss().amplitude_loss > 0.0);
}

#[test]
fn epie_reconstructs_a_weak_phase_object_and_the_controls_fail() {
    let ds = dataset(10, 3.0, 0.0, None, 11);
    let good = reconstruct(&ds, epie_fixed_probe(), ds.probe.clone(), 20);
    let corr = phase_corr(&ds, good.object());
    assert!(corr > 0.95, "ePIE phase correlation {corr}");
    // The loss falls from sweep to sweep.
    let h = good.history();
    assert_eq!(h.len(), 21);
    assert!(h[20].amplitude_loss < 0.1 * h[1].amplitude_loss, "{h:?}");

    // Control 1: no object update (α = 0) stays at vacuum.
    let frozen = Method::Epie(EpieParams {
        alpha: 0.0,
        probe_update: ProbeUpdate::Never,
        ..EpieParams::default()
    });
    let none = reconstruct(&ds, frozen, ds.probe.clone(), 20);
    let c0 = phase_corr(&ds, none.object());
    assert!(c0 < 0.95, "frozen object reached {c0}");

    // Control 2: the defocus sign flipped in the reconstruction probe.
    let flipped = ProbeParams::new(KV, ALPHA, -DEFOCUS)
        .sample(ds.m, ds.dx)
        .unwrap();
    let wrong = reconstruct(&ds, epie_fixed_probe(), flipped, 20);
    let cf = phase_corr(&ds, wrong.object());
    assert!(cf < 0.95, "flipped-defocus probe reached {cf}");
    eprintln!("ePIE: phase correlation {corr:.4}; α = 0: {c0:.4}; flipped defocus: {cf:.4}");
}

/// ePIE starting from a probe with the wrong defocus improves it once probe updates start:
/// with β = 0.5 the loss halves within 30 sweeps; the default β = 0.1 moves more slowly (it
/// is chosen for noisy data) but still cuts it by more than 30 %.
#[test]
fn epie_probe_refinement_beats_a_wrong_fixed_probe() {
    let ds = dataset(10, 3.0, 0.0, None, 12);
    let start = ProbeParams::new(KV, ALPHA, 0.8 * DEFOCUS)
        .sample(ds.m, ds.dx)
        .unwrap();
    let fixed = reconstruct(&ds, epie_fixed_probe(), start.clone(), 30);
    let cf = phase_corr(&ds, fixed.object());
    let lf = fixed.history().last().unwrap().amplitude_loss;
    for (beta, max_ratio) in [(0.5, 0.5), (EpieParams::default().beta, 0.7)] {
        let method = Method::Epie(EpieParams {
            beta,
            ..EpieParams::default()
        });
        let refined = reconstruct(&ds, method, start.clone(), 30);
        let cr = phase_corr(&ds, refined.object());
        let energy: f64 = refined.probe().iter().map(|v| v.norm_sqr() as f64).sum();
        assert!((energy - 1.0).abs() < 1e-4, "probe energy {energy}");
        let lr = refined.history().last().unwrap().amplitude_loss;
        eprintln!(
            "probe refinement β = {beta}: fixed wrong probe {cf:.4} (loss {lf:.3e}), refined {cr:.4} (loss {lr:.3e})"
        );
        assert!(
            lr < max_ratio * lf,
            "β = {beta}: refined loss {lr} vs fixed {lf}"
        );
        assert!(cr > cf, "β = {beta}: refined {cr} vs fixed {cf}");
    }
}

/// Sub-pixel positions (a rotated scan with a non-integer step) go through the Fourier-shifted
/// probe, for both methods (ePIE with probe updates exercises the shifted probe update).
#[test]
fn subpixel_positions_reconstruct() {
    let ds = dataset(9, 2.7, 13.0, None, 21);
    assert!(
        ds.geometry
            .positions
            .iter()
            .any(|p| (p[0] - p[0].round()).abs() > 0.2)
    );
    let wf = reconstruct(
        &ds,
        Method::Wf(WfParams::new(Loss::Amplitude)),
        ds.probe.clone(),
        15,
    );
    let c_wf = phase_corr(&ds, wf.object());
    let epie = reconstruct(
        &ds,
        Method::Epie(EpieParams::default()),
        ds.probe.clone(),
        15,
    );
    let c_e = phase_corr(&ds, epie.object());
    // Rounding the positions instead (ignoring the sub-pixel part) must do worse.
    let mut rounded = ds.geometry.clone();
    rounded
        .positions
        .iter_mut()
        .for_each(|p| *p = [p[0].round(), p[1].round()]);
    let ds_r = Dataset {
        geometry: rounded,
        frames: ds.frames.clone(),
        truth: ds.truth.clone(),
        probe: ds.probe.clone(),
        ..ds
    };
    let wf_r = reconstruct(
        &ds_r,
        Method::Wf(WfParams::new(Loss::Amplitude)),
        ds_r.probe.clone(),
        15,
    );
    let c_r = phase_corr(&ds_r, wf_r.object());
    eprintln!("sub-pixel: WF {c_wf:.4}, ePIE+probe {c_e:.4}, rounded positions {c_r:.4}");
    assert!(c_wf > 0.95, "{c_wf}");
    assert!(c_e > 0.9, "{c_e}");
    assert!(c_r < c_wf, "{c_r} vs {c_wf}");
}

/// f64 loss of one pattern, straight from paper 001 eqs. 2–5 (ε as in [`Loss`]).
fn loss_f64(
    loss: Loss,
    probe: &[Complex64],
    obj: &[Complex64],
    meas: &[f64],
    n: f64,
    eps: f64,
    m: usize,
) -> f64 {
    let psi: Vec<Complex64> = probe.iter().zip(obj).map(|(p, o)| p * o).collect();
    let far = dft2(&psi, m, -1.0);
    far.iter()
        .zip(meas)
        .map(|(f, &i)| {
            let mi = n * f.norm_sqr() / (m * m) as f64;
            match loss {
                Loss::L1 => (mi - i).abs(),
                Loss::Mse => (mi - i).powi(2),
                Loss::Amplitude => ((mi + eps).sqrt() - i.sqrt()).powi(2),
                Loss::Poisson => mi - i * (mi + eps).ln(),
            }
        })
        .sum()
}

/// The engine's update is `−μ/(κ·N·max|P|²)·∂L/∂O*`; recover ∂L/∂O* from one update and
/// compare with central differences of the loss on the real and imaginary parts:
/// `∂L/∂O* = ½(∂L/∂Re O + i ∂L/∂Im O)`.
#[test]
fn wf_gradients_match_finite_differences_for_all_losses() {
    let m = 6;
    let mut rng = rand_pcg::Pcg64::seed_from_u64(99);
    let probe: Vec<Complex32> = (0..m * m)
        .map(|_| Complex32::new(rng.gen_range(-1.0..1.0), rng.gen_range(-1.0..1.0)))
        .collect();
    let obj: Vec<Complex32> = (0..m * m)
        .map(|_| Complex32::from_polar(rng.gen_range(0.7..1.1), rng.gen_range(-0.5..0.5)))
        .collect();
    let meas_fft: Vec<f64> = (0..m * m)
        .map(|_| rng.gen_range(0.0..80.0f64).round())
        .collect();
    let frame = to_detector(&meas_fft, m);
    let n: f64 = meas_fft.iter().sum();
    let geometry = ScanGeometry {
        positions: vec![[(m / 2) as f64, (m / 2) as f64]],
        object_shape: [m, m],
        pixel_angstrom: 1.0,
    };
    let pat = PreparedPattern::from_frame(&frame, m).unwrap();
    for loss in Loss::ALL {
        let params = WfParams::new(loss);
        let mut setup = ReconSetup::new(Method::Wf(params), probe.clone(), m, geometry.clone());
        setup.initial_object = Some(obj.clone());
        let mut r = Reconstructor::new(setup).unwrap();
        r.update(0, &pat).unwrap();
        let p64: Vec<Complex64> = r.probe().iter().map(|&v| c64(v)).collect();
        let pmax = p64.iter().map(|v| v.norm_sqr()).fold(0.0, f64::max);
        let kappa = loss.curvature_scale(pat.max_count()) as f64;
        let scale = -kappa * n * pmax / params.step as f64;
        let engine: Vec<Complex64> = r
            .object()
            .iter()
            .zip(&obj)
            .map(|(new, old)| (c64(*new) - c64(*old)) * scale)
            .collect();
        let o64: Vec<Complex64> = obj.iter().map(|&v| c64(v)).collect();
        let h = 1e-6;
        // The pattern's ε (dose-relative for the Poisson loss), as the engine computes it.
        let eps = params.epsilon_for((n / (m * m) as f64) as f32) as f64;
        let (mut err, mut norm) = (0.0, 0.0);
        for i in 0..m * m {
            let mut d = [0.0; 2];
            for (part, step) in [Complex64::new(h, 0.0), Complex64::new(0.0, h)]
                .into_iter()
                .enumerate()
            {
                let mut plus = o64.clone();
                plus[i] += step;
                let mut minus = o64.clone();
                minus[i] -= step;
                d[part] = (loss_f64(loss, &p64, &plus, &meas_fft, n, eps, m)
                    - loss_f64(loss, &p64, &minus, &meas_fft, n, eps, m))
                    / (2.0 * h);
            }
            let fd = Complex64::new(0.5 * d[0], 0.5 * d[1]);
            err += (fd - engine[i]).norm_sqr();
            norm += fd.norm_sqr();
        }
        let rel = (err / norm).sqrt();
        assert!(rel < 2e-3, "{loss:?}: relative gradient error {rel}");
    }
}

/// Poisson and amplitude Wirtinger flow with the documented default step recover the object at
/// 10⁶ and 10⁴ electrons per pattern (Poisson noise, seeded).
#[test]
fn wf_poisson_and_amplitude_recover_the_object_at_two_doses() {
    let mut report = String::new();
    for (dose, seed) in [(1e6, 31), (1e4, 32)] {
        let ds = dataset(10, 3.0, 0.0, Some(dose), seed);
        let mut objects = Vec::new();
        for loss in [Loss::Poisson, Loss::Amplitude] {
            let r = reconstruct(&ds, Method::Wf(WfParams::new(loss)), ds.probe.clone(), 20);
            let c = phase_corr(&ds, r.object());
            report += &format!("dose {dose:e}: {loss:?} {c:.4}; ");
            assert!(c > 0.9, "{loss:?} at {dose}: phase correlation {c}");
            assert!(
                r.object()
                    .iter()
                    .all(|v| v.re.is_finite() && v.im.is_finite())
            );
            objects.push(r.object().to_vec());
        }
        // The two losses agree with each other.
        let agree = phase_corr(
            &Dataset {
                truth: objects[0].clone(),
                geometry: ds.geometry.clone(),
                frames: Vec::new(),
                probe: Vec::new(),
                ..ds
            },
            &objects[1],
        );
        report += &format!("agreement {agree:.4}. ");
        assert!(agree > 0.9, "Poisson vs amplitude at {dose}: {agree}");
    }
    eprintln!("{report}");
}

/// L1 and MSE (defaults) also converge on high-dose data.
#[test]
fn wf_l1_and_mse_converge_at_high_dose() {
    let ds = dataset(10, 3.0, 0.0, Some(1e6), 41);
    for loss in [Loss::L1, Loss::Mse] {
        let r = reconstruct(&ds, Method::Wf(WfParams::new(loss)), ds.probe.clone(), 20);
        let c = phase_corr(&ds, r.object());
        eprintln!("{loss:?}: phase correlation {c:.4}");
        assert!(c > 0.85, "{loss:?}: {c}");
    }
}

/// Truncation: a huge α_h keeps every pixel (same result as no truncation); α_h = 5 keeps a
/// hot pixel out of the gradient, so the reconstruction is better than without truncation.
#[test]
fn truncated_poisson_gradient() {
    let ds = dataset(8, 3.0, 0.0, Some(1e5), 51);
    let run = |trunc: Option<f32>, frames: &[Vec<f32>]| {
        let ds2 = Dataset {
            frames: frames.to_vec(),
            truth: ds.truth.clone(),
            geometry: ds.geometry.clone(),
            probe: ds.probe.clone(),
            ..ds
        };
        let params = WfParams {
            truncation: trunc,
            ..WfParams::new(Loss::Poisson)
        };
        let r = reconstruct(&ds2, Method::Wf(params), ds.probe.clone(), 10);
        (r.object().to_vec(), phase_corr(&ds2, r.object()))
    };
    let (full, _) = run(None, &ds.frames);
    let (wide, _) = run(Some(1e9), &ds.frames);
    assert_eq!(full, wide);
    // A hot dark-field pixel in every frame.
    let m = ds.m;
    let hot: Vec<Vec<f32>> = ds
        .frames
        .iter()
        .map(|f| {
            let mut f = f.clone();
            f[2 * m + 3] += 5e3;
            f
        })
        .collect();
    let (_, c_full) = run(None, &hot);
    let (_, c_trunc) = run(Some(5.0), &hot);
    eprintln!("hot pixel: full gradient {c_full:.4}, truncated (α_h = 5) {c_trunc:.4}");
    assert!(c_trunc > c_full, "{c_trunc} vs {c_full}");
    assert!(c_trunc > 0.9, "{c_trunc}");
}

/// The Tikhonov prior smooths: the object's squared gradient falls as μ₀ grows.
#[test]
fn tikhonov_prior_smooths() {
    let ds = dataset(8, 3.0, 0.0, Some(1e3), 61);
    let roughness = |o: &[Complex32]| {
        let [rows, cols] = ds.geometry.object_shape;
        let mut s = 0.0f64;
        for r in 0..rows - 1 {
            for c in 0..cols - 1 {
                let v = o[r * cols + c];
                s += ((o[r * cols + c + 1] - v).norm_sqr() + (o[(r + 1) * cols + c] - v).norm_sqr())
                    as f64;
            }
        }
        s
    };
    let mut last = f64::INFINITY;
    for mu0 in [0.0, 0.02, 0.2] {
        let params = WfParams {
            tikhonov: mu0,
            ..WfParams::new(Loss::Poisson)
        };
        let r = reconstruct(&ds, Method::Wf(params), ds.probe.clone(), 5);
        let rough = roughness(r.object());
        assert!(rough < last, "μ₀ = {mu0}: {rough} vs {last}");
        last = rough;
    }
    assert!(
        WfParams {
            tikhonov: 0.3,
            ..WfParams::new(Loss::Poisson)
        }
        .validate()
        .is_err()
    );
}

#[test]
fn bookkeeping_and_errors() {
    let ds = dataset(4, 3.0, 0.0, None, 71);
    let mut setup = ReconSetup::new(
        epie_fixed_probe(),
        ds.probe.clone(),
        ds.m,
        ds.geometry.clone(),
    );
    setup.keep_patterns = false;
    let mut r = Reconstructor::new(setup).unwrap();
    let mut pat = r.new_pattern();
    pat.prepare(&ds.frames[0]).unwrap();
    r.update(0, &pat).unwrap();
    assert!(r.sweep().is_err());
    assert!(r.update(16, &pat).is_err());
    assert!(r.update(0, &PreparedPattern::new(8)).is_err());
    // A zero-count pattern is skipped.
    r.update(1, &r.new_pattern()).unwrap();
    assert_eq!((r.updates_done(), r.skipped()), (1, 1));
    assert_eq!(r.object_origin_px(), ds.geometry.positions[0]);
    assert!((r.object_pixel_angstrom() - ds.dx).abs() < 1e-12);
    assert_eq!(r.object_shape(), ds.geometry.object_shape);
    // Wrong probe size, bad parameters.
    let bad = ReconSetup::new(
        epie_fixed_probe(),
        vec![Complex32::new(1.0, 0.0); 3],
        ds.m,
        ds.geometry.clone(),
    );
    assert!(Reconstructor::new(bad).is_err());
    let bad = ReconSetup::new(
        Method::Epie(EpieParams {
            alpha: 3.0,
            ..EpieParams::default()
        }),
        ds.probe.clone(),
        ds.m,
        ds.geometry.clone(),
    );
    assert!(
        Reconstructor::new(bad)
            .unwrap_err()
            .to_string()
            .contains("recon.alpha_step")
    );
    // Passes: online pass then sweeps, numbered.
    let mut r = reconstruct(&ds, epie_fixed_probe(), ds.probe.clone(), 0);
    assert_eq!(r.loss().pass, 0);
    assert_eq!(r.loss().patterns, 16);
    let s = r.sweep().unwrap();
    assert_eq!((s.pass, s.patterns), (1, 16));
    assert_eq!(r.history().len(), 2);
    assert_eq!(r.sweeps_done(), 1);
    assert_eq!(r.patterns_kept(), 16);
    assert_eq!(Loss::from_name("poisson").unwrap(), Loss::Poisson);
    // ε: the larger of the floor and the dose-relative part; Poisson only by default.
    let p = WfParams::new(Loss::Poisson);
    assert_eq!(p.epsilon_for(1e-3), 1e-4);
    assert!((p.epsilon_for(50.0) - 0.5).abs() < 1e-6);
    assert_eq!(WfParams::new(Loss::Amplitude).epsilon_for(50.0), 1e-4);
    let bad = WfParams {
        epsilon_relative: -0.1,
        ..p
    };
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("recon.epsilon_relative")
    );
    assert!(Loss::from_name("l3").is_err());
}

/// Every window (with the Laplacian's one-row margin, at most `M + 2` rows) lies inside the
/// stripe it is assigned to, for any window size and row.
#[test]
fn stripes_hold_every_window() {
    use proptest::prelude::*;
    proptest!(|(m in 2usize..160, lo in 0usize..5000, short in 0usize..3)| {
        let stripes = Stripes::new(m);
        let hi = lo + m + 2 - short;
        let (phase, k) = stripes.assign(lo, hi);
        let first = stripes.first_row(phase, k);
        prop_assert!(first <= lo && hi <= first + stripes.height, "{phase} {k} {first}");
    });
}

/// Sweeps with a fixed probe run stripe by stripe on any number of threads and give the same
/// bits; the striped order reconstructs as well as before.
#[test]
fn sweeps_give_the_same_bits_on_any_thread_count() {
    // A 24 × 24 scan: the object is ~100 rows, two phase-0 stripes and one phase-1 stripe.
    let ds = dataset(24, 3.0, 0.0, Some(1e5), 91);
    let methods = [
        epie_fixed_probe(),
        Method::Wf(WfParams {
            tikhonov: 0.05,
            ..WfParams::new(Loss::Poisson)
        }),
    ];
    for method in methods {
        let run = |threads: usize| {
            let mut r = Reconstructor::new(ReconSetup::new(
                method,
                ds.probe.clone(),
                ds.m,
                ds.geometry.clone(),
            ))
            .unwrap();
            r.set_threads(threads);
            let mut pat = r.new_pattern();
            for (i, f) in ds.frames.iter().enumerate() {
                pat.prepare(f).unwrap();
                r.update(i, &pat).unwrap();
            }
            for _ in 0..3 {
                r.sweep().unwrap();
            }
            r
        };
        let one = run(1);
        for threads in [2, 3] {
            let many = run(threads);
            assert_eq!(many.threads(), threads);
            assert!(
                one.object() == many.object(),
                "{method:?}, {threads} threads"
            );
            assert_eq!(one.history(), many.history());
            assert_eq!(many.updates_done(), 4 * 576);
        }
        let c = phase_corr(&ds, one.object());
        eprintln!(
            "{}: phase correlation {c:.4} after 3 striped sweeps",
            method.name()
        );
        assert!(c > 0.9, "{method:?}: {c}");
    }
}

/// The update compiled for AVX2 + FMA gives the same bits as the baseline build, for every
/// method and option (sub-pixel positions, probe updates, truncation, prior, automatic steps,
/// object constraints).
#[test]
fn update_is_the_same_bits_on_every_instruction_set() {
    let ds = dataset(4, 3.0, 17.0, Some(1e4), 81);
    let epie_probe = Method::Epie(EpieParams {
        probe_update: ProbeUpdate::AfterUpdates(0),
        ..EpieParams::default()
    });
    let mut methods = vec![epie_probe];
    for loss in Loss::ALL {
        methods.push(Method::Wf(WfParams {
            truncation: Some(5.0),
            tikhonov: 0.05,
            ..WfParams::new(loss)
        }));
        methods.push(Method::Wf(WfParams::new(loss)));
    }
    let options = [
        (Schedule::Fixed, ObjectConstraint::Free),
        (Schedule::default(), ObjectConstraint::Passive),
        (Schedule::default(), ObjectConstraint::PhaseOnly),
    ];
    for (method, (schedule, constraint)) in methods
        .into_iter()
        .flat_map(|m| options.into_iter().map(move |o| (m, o)))
    {
        let run = |simd: SimdLevel| {
            let mut setup = ReconSetup::new(method, ds.probe.clone(), ds.m, ds.geometry.clone());
            setup.loss_every = 1;
            setup.schedule = schedule;
            setup.planned_sweeps = 1;
            setup.object_constraint = constraint;
            let mut r = Reconstructor::new(setup).unwrap();
            r.state.simd = simd;
            let mut pat = r.new_pattern();
            for (i, f) in ds.frames.iter().enumerate() {
                pat.prepare(f).unwrap();
                r.update(i, &pat).unwrap();
            }
            r.sweep().unwrap();
            r
        };
        let (base, best) = (run(SimdLevel::Portable), run(SimdLevel::detect()));
        assert!(base.object() == best.object(), "{method:?}");
        assert!(base.probe() == best.probe(), "{method:?}");
        assert_eq!(base.history(), best.history());
    }
}

/// The phase ramp by recurrence matches `e^{−2πi·k·f/M}` evaluated directly.
#[test]
fn phase_ramp_matches_the_direct_formula() {
    for m in [1usize, 2, 7, 32, 33, 64, 256] {
        for f in [-0.5f32, -0.37, 0.0, 0.01, 0.25, 0.5] {
            let mut ramp = vec![Complex32::new(9.0, 9.0); m];
            fill_ramp(&mut ramp, f);
            for (i, r) in ramp.iter().enumerate() {
                let k = if i < m.div_ceil(2) {
                    i as f64
                } else {
                    i as f64 - m as f64
                };
                let want = Complex64::from_polar(1.0, -TAU * k * f as f64 / m as f64);
                assert!((c64(*r) - want).norm() < 1e-6, "m={m} f={f} k={k}: {r}");
            }
        }
    }
}

/// The probe is refined (from the first sweep) only when the patterns average at least
/// `probe_min_counts` counts.
#[test]
fn probe_is_held_at_low_dose() {
    for (dose, refined) in [(1e2, false), (1e5, true)] {
        let ds = dataset(4, 3.0, 0.0, Some(dose), 101);
        let r = reconstruct(
            &ds,
            Method::Epie(EpieParams::default()),
            ds.probe.clone(),
            2,
        );
        assert_eq!(r.probe_updates() > 0, refined, "{dose} e/pattern");
        if !refined {
            assert!(r.probe() == reconstruct(&ds, epie_fixed_probe(), ds.probe.clone(), 0).probe());
        }
    }
    // 0 = refine at any dose; never during the online pass by default.
    let ds = dataset(4, 3.0, 0.0, Some(1e2), 101);
    let any = Method::Epie(EpieParams {
        probe_min_counts: 0.0,
        ..EpieParams::default()
    });
    assert_eq!(
        reconstruct(&ds, any, ds.probe.clone(), 0).probe_updates(),
        0
    );
    assert_eq!(
        reconstruct(&ds, any, ds.probe.clone(), 1).probe_updates(),
        16
    );
    let bad = EpieParams {
        probe_min_counts: -1.0,
        ..EpieParams::default()
    };
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("recon.probe_min_counts")
    );
}

/// Issue 11: the automatic steps follow the dose. On the same scan, patterns with 100× the
/// counts get a larger step (until α = 1), every pass reports the step it used, and the last
/// planned pass uses the rule's end value.
#[test]
fn automatic_steps_follow_the_dose_and_are_reported() {
    let step_of = |counts: f64| {
        let ds = dataset(6, 3.0, 17.0, Some(counts), 5);
        let mut setup = ReconSetup::new(
            Method::Wf(WfParams::new(Loss::Poisson)),
            ds.probe.clone(),
            ds.m,
            ds.geometry.clone(),
        );
        setup.schedule = Schedule::default();
        setup.planned_sweeps = 3;
        let r = run_setup(&ds, setup, 3);
        let last = r.history().last().unwrap().step;
        let chosen = r.chosen_step(3).unwrap();
        assert_eq!(last, chosen.step);
        assert!(r.history().iter().all(|h| h.step > 0.0 && h.step <= 1.0));
        (last, chosen.dose_per_pixel)
    };
    // This small scan overlaps little (R ≈ 2): at 10⁴ counts the floor G/P sets the step
    // (measured 0.45), at 10⁶ the noise rule reaches the cap α = 1.
    let (lo, d_lo) = step_of(1e4);
    let (hi, d_hi) = step_of(1e6);
    assert!(
        lo < 0.9 && hi == 1.0,
        "step {hi} at 1e6 counts, {lo} at 1e4"
    );
    assert!((d_hi / d_lo - 100.0).abs() < 5.0, "{d_hi} / {d_lo}");
}

/// The constraints hold on the whole object after updates on noisy data: `|O| ≤ 1` for
/// passive, `|O| = 1` for phase-only; without a constraint shot noise pushes `|O|` past 1.
#[test]
fn object_constraints_hold_after_noisy_updates() {
    let ds = dataset(6, 3.0, 17.0, Some(30.0), 9);
    let run = |constraint| {
        let mut setup = ReconSetup::new(
            Method::Epie(EpieParams::default()),
            ds.probe.clone(),
            ds.m,
            ds.geometry.clone(),
        );
        setup.object_constraint = constraint;
        let r = run_setup(&ds, setup, 1);
        let moduli: Vec<f32> = r.object().iter().map(|o| o.norm()).collect();
        let max = moduli.iter().copied().fold(0.0f32, f32::max);
        let min = moduli.iter().copied().fold(f32::INFINITY, f32::min);
        (min, max)
    };
    let (_, free_max) = run(ObjectConstraint::Free);
    assert!(
        free_max > 1.05,
        "the free modulus never passed 1 ({free_max}): the test cannot tell"
    );
    let (_, passive_max) = run(ObjectConstraint::Passive);
    assert!(passive_max <= 1.0 + 1e-6, "{passive_max}");
    let (phase_min, phase_max) = run(ObjectConstraint::PhaseOnly);
    assert!((phase_min - 1.0).abs() < 1e-5 && (phase_max - 1.0).abs() < 1e-5);
    assert!(ObjectConstraint::from_name("absorbing").is_err());
}
