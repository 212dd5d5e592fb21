//! Specimens for the simulator: thin phase objects given as a finite Fourier series, so they can
//! be evaluated exactly (band-limited, no aliasing of the series itself) on any grid.
//!
//! The transmission function is `t(r) = exp(iσ V(r) (1 + iη))`: σ the interaction constant
//! ([`crate::optics::interaction_constant`]), `V` the projected potential in V·Å, η the optional
//! weak absorption (`|t| = exp(−ησV) ≤ 1`, off by default).
//!
//! # MoS2
//! A 2H-MoS2 monolayer seen along ⟨001⟩: hexagonal lattice `a = 3.19 Å` with basis vectors
//! `a1 = a (1, 0)`, `a2 = a (−1/2, √3/2)` in `(x, y)`; one Mo column at fractional `(0, 0)` and
//! one S2 column (two S atoms on top of each other in projection) at `(1/3, 2/3)`, i.e. at
//! `(x, y) = (0, a/√3)` from the Mo. The projected potential of the crystal is the Fourier series
//!
//! `V(r) = (2π a0 e / A_cell) Σ_G F(G) w(|G|) exp(2πi G·r)`, `F(G) = Σ_j f_j(|G|) exp(−2πi G·r_j)`,
//!
//! with `f_j` the electron scattering factor (Å) of Kirkland's parametrisation (Kirkland,
//! *Advanced Computing in Electron Microscopy*, 2nd ed. 2010, appendix C: `f(q) = Σ a_i/(q² + b_i)
//! + Σ c_i exp(−d_i q²)`, `q` in 1/Å; parameter values as tabulated there and in abTEM's
//! `abtem/parametrizations/data/kirkland.json`), `2π a0 e = 47.878 V·Å²` (Kirkland eq. 5.9:
//! the 2-D Fourier transform of `f` times `2π a0 e` is the projected atomic potential) and
//! `w` a smooth band limit: 1 below 80 % of `k_max`, a cosine taper to 0 at `k_max`.

use num_complex::Complex32;
use rand::Rng;
use rand::SeedableRng;
use rand_pcg::Pcg64;

use crate::{Error, Result};

/// MoS2 lattice constant in Å.
pub const MOS2_A: f64 = 3.19;

/// `2π a0 e` in V·Å² (Bohr radius 0.529177 Å, `e = 14.39964 V·Å`): converts the 2-D Fourier
/// integral of an electron scattering factor (Å) into a projected potential (V·Å).
const TWO_PI_A0_E: f64 = 2.0 * std::f64::consts::PI * 0.529_177_210 * 14.399_645;

/// Kirkland (2010) parameters `[a1,a2,a3], [b1,b2,b3], [c1,c2,c3], [d1,d2,d3]` (Å, Å⁻², Å, Å²).
type Kirkland = [[f64; 3]; 4];

/// Molybdenum, Z = 42 (Kirkland 2010, appendix C).
const KIRKLAND_MO: Kirkland = [
    [0.610_160_12, 1.265_44, 1.974_287_62],
    [0.091_162_805_4, 0.506_776_025, 5.895_903_81],
    [0.648_028_962, 0.002_603_808_2, 0.113_887_493],
    [1.466_341_08, 0.007_843_363_1, 0.155_114_34],
];

/// Sulphur, Z = 16 (Kirkland 2010, appendix C).
const KIRKLAND_S: Kirkland = [
    [1.016_469_16, 0.441_766_748, 0.121_503_863],
    [1.691_819_65, 0.174_180_288, 167.011_091],
    [0.827_966_67, 0.023_302_253_3, 1.183_028_46],
    [2.303_428_1, 0.156_954_15, 5.857_828_91],
];

/// Electron scattering factor `f(q)` in Å at spatial frequency `q` in 1/Å (Kirkland's form).
fn kirkland_fe(p: &Kirkland, q: f64) -> f64 {
    let q2 = q * q;
    (0..3)
        .map(|i| p[0][i] / (q2 + p[1][i]) + p[2][i] * (-p[3][i] * q2).exp())
        .sum()
}

/// Smooth band limit: 1 below `0.8 k_max`, raised-cosine taper to 0 at `k_max`.
fn band_limit(k: f64, k_max: f64) -> f64 {
    let start = 0.8 * k_max;
    if k <= start {
        1.0
    } else if k >= k_max {
        0.0
    } else {
        0.5 * (1.0 + (std::f64::consts::PI * (k - start) / (k_max - start)).cos())
    }
}

/// Which specimen to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// MoS2 monolayer along ⟨001⟩ (Kirkland projected potentials).
    Mos2,
    /// A smooth random weak-phase object (seeded), RMS phase 0.1 rad.
    Random,
}

impl ObjectKind {
    /// The name used on the command line and in `meta.json`.
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Mos2 => "mos2",
            ObjectKind::Random => "random",
        }
    }
}

/// One term `c · exp(2πi (ky y + kx x))` of a real phase (the conjugate term is implied).
#[derive(Debug, Clone, Copy)]
struct Term {
    ky: f64,
    kx: f64,
    /// Complex coefficient of the phase in rad (already multiplied by σ).
    c: num_complex::Complex64,
}

/// A thin specimen: phase `φ(r) = σV(r)` as a real Fourier series, plus absorption η.
#[derive(Debug, Clone)]
pub struct PhaseObject {
    kind: ObjectKind,
    /// Constant (G = 0) phase in rad.
    mean: f64,
    /// Terms with their conjugates implied (each contributes `2 Re(c e^{2πi k·r})`).
    terms: Vec<Term>,
    absorption: f64,
    band_limit: f64,
}

impl PhaseObject {
    /// The MoS2 monolayer for electrons of `kv`, band-limited to `k_max` (1/Å), with absorption
    /// `η` (0 = pure phase object). A Mo column sits at the origin `(y, x) = (0, 0)`.
    pub fn mos2(kv: f64, k_max: f64, absorption: f64) -> Result<Self> {
        check_object_args(kv, k_max, absorption)?;
        let sigma = crate::optics::interaction_constant(kv);
        let a = MOS2_A;
        let cell_area = a * a * 3f64.sqrt() / 2.0;
        // Reciprocal basis b1, b2 with a_i · b_j = δ_ij, as (x, y).
        let b1 = [1.0 / a, 1.0 / (a * 3f64.sqrt())];
        let b2 = [0.0, 2.0 / (a * 3f64.sqrt())];
        // Basis: Mo at (0, 0); S2 at (1/3, 2/3) (fractional).
        let atoms: [(&Kirkland, f64, [f64; 2]); 2] = [
            (&KIRKLAND_MO, 1.0, [0.0, 0.0]),
            (&KIRKLAND_S, 2.0, [1.0 / 3.0, 2.0 / 3.0]),
        ];
        let scale = sigma * TWO_PI_A0_E / cell_area;
        let structure_factor = |h: i64, k: i64, q: f64| {
            atoms
                .iter()
                .map(|(p, n, f)| {
                    let arg = -2.0 * std::f64::consts::PI * (h as f64 * f[0] + k as f64 * f[1]);
                    num_complex::Complex64::from_polar(n * kirkland_fe(p, q), arg)
                })
                .sum::<num_complex::Complex64>()
        };
        let mean = scale * structure_factor(0, 0, 0.0).re;
        // |G| ≥ |h| · (smallest lattice-plane spacing)^-1 bounds the index range.
        let hmax = (k_max * a + 2.0).ceil() as i64;
        let mut terms = Vec::new();
        for h in -hmax..=hmax {
            for k in -hmax..=hmax {
                // Keep one of each ±G pair: the conjugate is implied.
                if (h, k) <= (0, 0) {
                    continue;
                }
                let gx = h as f64 * b1[0] + k as f64 * b2[0];
                let gy = h as f64 * b1[1] + k as f64 * b2[1];
                let q = (gx * gx + gy * gy).sqrt();
                let w = band_limit(q, k_max);
                if w == 0.0 {
                    continue;
                }
                let c = structure_factor(h, k, q) * (scale * w);
                terms.push(Term { ky: gy, kx: gx, c });
            }
        }
        Ok(PhaseObject {
            kind: ObjectKind::Mos2,
            mean,
            terms,
            absorption,
            band_limit: k_max,
        })
    }

    /// A smooth random weak-phase object: 256 plane waves with frequencies uniform in the disc
    /// `|k| < k_max` (1/Å), random phases and Gaussian amplitudes, scaled to an RMS phase of
    /// 0.1 rad around zero. Deterministic for a `seed`.
    pub fn random(seed: u64, k_max: f64, absorption: f64) -> Result<Self> {
        check_object_args(1.0, k_max, absorption)?;
        // A stream distinct from the detector noise of the same seed.
        let mut rng = Pcg64::seed_from_u64(seed ^ 0x6f62_6a65_6374_5f31);
        let normal = rand_distr::StandardNormal;
        let mut terms = Vec::with_capacity(256);
        let mut power = 0.0;
        for _ in 0..256 {
            let r = k_max * rng.r#gen::<f64>().sqrt();
            let theta = 2.0 * std::f64::consts::PI * rng.r#gen::<f64>();
            let amp: f64 = rng.sample::<f64, _>(normal).abs();
            let phase = 2.0 * std::f64::consts::PI * rng.r#gen::<f64>();
            power += 2.0 * amp * amp; // mean of (2 a cos)² = 2a²
            terms.push(Term {
                ky: r * theta.sin(),
                kx: r * theta.cos(),
                c: num_complex::Complex64::from_polar(amp, phase),
            });
        }
        let scale = 0.1 / power.sqrt();
        for t in &mut terms {
            t.c *= scale;
        }
        Ok(PhaseObject {
            kind: ObjectKind::Random,
            mean: 0.0,
            terms,
            absorption,
            band_limit: k_max,
        })
    }

    /// Which specimen this is.
    pub fn kind(&self) -> ObjectKind {
        self.kind
    }

    /// The band limit of the phase in 1/Å.
    pub fn band_limit(&self) -> f64 {
        self.band_limit
    }

    /// Absorption η: `t = exp(iφ − ηφ)`.
    pub fn absorption(&self) -> f64 {
        self.absorption
    }

    /// The phase `σV` in rad at `(y, x)` Å (one point; grids use [`Self::phase_grid`]).
    pub fn phase_at(&self, y: f64, x: f64) -> f64 {
        let tau = 2.0 * std::f64::consts::PI;
        self.mean
            + self
                .terms
                .iter()
                .map(|t| 2.0 * (t.c * num_complex::Complex64::cis(tau * (t.ky * y + t.kx * x))).re)
                .sum::<f64>()
    }

    /// The phase in rad on a `rows × cols` grid of pixel `dx` Å whose pixel `(r, c)` sits at
    /// `y = (r − origin[0]) dx`, `x = (c − origin[1]) dx` (row-major).
    pub fn phase_grid(&self, rows: usize, cols: usize, dx: f64, origin: [f64; 2]) -> Vec<f64> {
        let tau = 2.0 * std::f64::consts::PI;
        let mut out = vec![self.mean; rows * cols];
        let mut ex = vec![num_complex::Complex64::new(0.0, 0.0); cols];
        for t in &self.terms {
            // Separable: exp(2πi(ky y + kx x)) = ey(y) · ex(x).
            for (c, e) in ex.iter_mut().enumerate() {
                *e = num_complex::Complex64::cis(tau * t.kx * (c as f64 - origin[1]) * dx);
            }
            for (r, line) in out.chunks_exact_mut(cols).enumerate() {
                let ey = 2.0
                    * t.c
                    * num_complex::Complex64::cis(tau * t.ky * (r as f64 - origin[0]) * dx);
                for (v, e) in line.iter_mut().zip(&ex) {
                    *v += ey.re * e.re - ey.im * e.im;
                }
            }
        }
        out
    }

    /// The transmission function `exp(iφ − ηφ)` on the grid of [`Self::phase_grid`].
    pub fn transmission_grid(
        &self,
        rows: usize,
        cols: usize,
        dx: f64,
        origin: [f64; 2],
    ) -> Vec<Complex32> {
        self.phase_grid(rows, cols, dx, origin)
            .into_iter()
            .map(|p| {
                let t = num_complex::Complex64::from_polar((-self.absorption * p).exp(), p);
                Complex32::new(t.re as f32, t.im as f32)
            })
            .collect()
    }
}

fn check_object_args(kv: f64, k_max: f64, absorption: f64) -> Result<()> {
    if !(kv.is_finite() && kv > 0.0) {
        return Err(Error::param("--kv", format!("got {kv}, expected > 0 kV")));
    }
    if !(k_max.is_finite() && k_max > 0.0) {
        return Err(Error::param(
            "--oversample",
            format!("object band limit {k_max} 1/Å, expected > 0"),
        ));
    }
    if !(absorption.is_finite() && (0.0..=1.0).contains(&absorption)) {
        return Err(Error::param(
            "--absorption",
            format!("got {absorption}, expected 0 … 1 (fraction of the phase)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scattering_factors_match_kirkland_at_zero_angle() {
        // f(0) = Σ a_i/b_i + Σ c_i: Mo 10.29 Å, S 5.17 Å.
        assert!((kirkland_fe(&KIRKLAND_MO, 0.0) - 10.29).abs() < 0.01);
        assert!((kirkland_fe(&KIRKLAND_S, 0.0) - 5.17).abs() < 0.01);
    }

    #[test]
    fn grid_evaluation_matches_pointwise() {
        let o = PhaseObject::mos2(80.0, 1.5, 0.0).unwrap();
        let g = o.phase_grid(5, 7, 0.31, [2.0, 3.0]);
        for r in 0..5 {
            for c in 0..7 {
                let p = o.phase_at((r as f64 - 2.0) * 0.31, (c as f64 - 3.0) * 0.31);
                assert!((g[r * 7 + c] - p).abs() < 1e-9);
            }
        }
    }

    /// The Fourier transform of the phase has peaks only on the hexagonal reciprocal lattice
    /// (|g| = √(h² + hk + k²) · 2/(√3 a)), the first of them the (100) ring at 2/(√3 a); and
    /// the phase at the Mo column exceeds the one at the S2 column.
    #[test]
    fn mos2_has_the_right_lattice_and_contrast() {
        // Band limit 1.8 1/Å, below the grid's Nyquist frequencies (1.93, 2.01 1/Å).
        let o = PhaseObject::mos2(300.0, 1.8, 0.0).unwrap();
        // A window commensurate with the lattice: 10 a × 6 √3 a (rectangular cells), so every
        // reflection falls on an FFT bin.
        let (rows, cols) = (128usize, 128usize);
        let dx = 10.0 * MOS2_A / cols as f64;
        let dy = 6.0 * MOS2_A * 3f64.sqrt() / rows as f64;
        let mut data = vec![num_complex::Complex64::new(0.0, 0.0); rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                data[r * cols + c] = o.phase_at(r as f64 * dy, c as f64 * dx).into();
            }
        }
        let mut planner = rustfft::FftPlanner::<f64>::new();
        let (fr, fc) = (
            planner.plan_fft_forward(rows),
            planner.plan_fft_forward(cols),
        );
        for line in data.chunks_exact_mut(cols) {
            fc.process(line);
        }
        let mut col = vec![num_complex::Complex64::new(0.0, 0.0); rows];
        for c in 0..cols {
            for r in 0..rows {
                col[r] = data[r * cols + c];
            }
            fr.process(&mut col);
            for r in 0..rows {
                data[r * cols + c] = col[r];
            }
        }
        data[0] = 0.0.into();
        let max = data.iter().map(|v| v.norm()).fold(0.0, f64::max);
        let sf = |i: usize, m: usize| {
            if i < m / 2 {
                i as f64
            } else {
                i as f64 - m as f64
            }
        };
        let g100 = 2.0 / (3f64.sqrt() * MOS2_A);
        let mut rings = Vec::new();
        for (i, v) in data.iter().enumerate() {
            if v.norm() < 1e-3 * max {
                continue;
            }
            let gy = sf(i / cols, rows) / (rows as f64 * dy);
            let gx = sf(i % cols, cols) / (cols as f64 * dx);
            let n2 = (gx * gx + gy * gy) / (g100 * g100); // h² + hk + k², an integer
            assert!(
                (n2 - n2.round()).abs() < 1e-6,
                "off-lattice peak at {gy}, {gx}"
            );
            rings.push((n2.round() as i64, v.norm()));
        }
        let first = rings.iter().map(|r| r.0).min().unwrap();
        assert_eq!(
            first, 1,
            "the first reflection is (100) at 2/(√3 a) = {g100} 1/Å"
        );
        // (100): |f_Mo + 2 f_S e^{-2πi/3}|; (110) at 2/a: |f_Mo + 2 f_S|, the strongest.
        let strongest = rings.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        assert_eq!(strongest.0, 3);
        // Column contrast at full resolution (k_max 3 1/Å). Low-passed to ~1 Å the two
        // columns look alike (at 80 kV, k_max 0.92: Mo 0.47 rad, S2 0.50 rad).
        let o = PhaseObject::mos2(80.0, 3.0, 0.0).unwrap();
        let mo = o.phase_at(0.0, 0.0);
        let s2 = o.phase_at(MOS2_A / 3f64.sqrt(), 0.0);
        let hollow = o.phase_at(2.0 * MOS2_A / 3f64.sqrt(), 0.0);
        assert!(
            mo > 1.05 * s2 && s2 > hollow + 1.0,
            "Mo {mo}, S2 {s2}, hollow {hollow}"
        );
    }

    #[test]
    fn random_object_is_seeded_and_weak() {
        let a = PhaseObject::random(7, 0.5, 0.0).unwrap();
        let b = PhaseObject::random(7, 0.5, 0.0).unwrap();
        let c = PhaseObject::random(8, 0.5, 0.0).unwrap();
        let ga = a.phase_grid(64, 64, 0.5, [0.0, 0.0]);
        assert_eq!(ga, b.phase_grid(64, 64, 0.5, [0.0, 0.0]));
        assert_ne!(ga, c.phase_grid(64, 64, 0.5, [0.0, 0.0]));
        let rms = (ga.iter().map(|p| p * p).sum::<f64>() / ga.len() as f64).sqrt();
        assert!(rms > 0.05 && rms < 0.2, "rms phase {rms}");
    }

    #[test]
    fn absorption_damps_the_amplitude() {
        let o = PhaseObject::mos2(80.0, 1.0, 0.1).unwrap();
        let t = o.transmission_grid(8, 8, 0.4, [0.0, 0.0]);
        assert!(t.iter().all(|v| v.norm() <= 1.0 && v.norm() > 0.9));
        assert!(
            PhaseObject::mos2(80.0, 1.0, -0.1)
                .unwrap_err()
                .to_string()
                .contains("--absorption")
        );
    }
}
