//! Step sizes that follow from the data: the dose, the overlap and the number of passes.
//!
//! # Why the step must depend on the dose
//! One update moves the object window by `α·conj(P)/max|P|²·(ψ' − ψ)`. Under Poisson noise the
//! measured amplitude `√I_k` scatters by ½ count around the model's, whatever the dose, so the
//! exit-wave correction `ψ' − ψ` carries white noise of variance `1/(4N)` per window pixel
//! (`N` electrons in the pattern, `Σ|P|² = 1`). Near the probe's maximum that puts noise of
//! variance `α²·A/(4N)` on the object, with `A = 1/max|P|²` the probe's effective area in
//! pixels. A pixel lit by many overlapping patterns forgets old noise at the rate `α` per
//! update and gains new noise at `α²`, so the iterate settles at a phase noise of variance
//!
//! `σ² ≈ α·A/(8N) = γ/(8·D)`,  with `γ = α·R`, `D = N·R/A`,
//!
//! where `R = Σ_j |P_j|²/max|P|²` is the **redundancy** (how many full-strength updates a pixel
//! receives per pass) and `D` the dose in electrons per object pixel. `γ` is the step in units
//! of "one full correction per pass": `γ = 1` averages the whole pass's evidence with equal
//! weight. A constant `α = 1` (Maiden & Rodenburg's) keeps `σ²` at `R/(8D)`: at 10³ e⁻/Å² in
//! paper 000's set-up (R ≈ 140, D ≈ 300 e⁻/pixel) that is 0.24 rad of noise on a signal of
//! ~0.1 rad, which is why the old defaults fell to a phase correlation of 0.36 there.
//!
//! # The rule
//! For `P` passes (the online pass plus the sweeps):
//! - `γ_noise = 8·D·σ*²` reaches the target phase noise `σ*` ([`AutoStep::noise_rad`]);
//! - `γ_floor = G/P` keeps enough total step for the iterate to get from vacuum to the
//!   object ([`AutoStep::total_gamma`] `G`): with too little, the result is a scaled-down copy of
//!   the first gradient;
//! - `γ_end = clamp(γ_noise, γ_floor, R)` (the cap is `α ≤ 1`); `α_end = γ_end/R`;
//! - pass `p` of `P` uses `α_p = α_end·s^{1 − p/(P−1)}` with `s = min(start_factor, 1/α_end)`:
//!   larger steps first, where the iterate is far from the object and noise matters little,
//!   falling geometrically to `α_end` on the last pass (a diminishing step, as stochastic
//!   gradient methods need to settle under noise).
//!
//! Wirtinger flow uses the same `α_p` as its `μ` (its step is normalised so that `μ = 1` is
//! one ePIE step, see [`wf`](super::wf)).
//!
//! `D` comes from the counts of the patterns seen so far (a running mean during the online
//! pass), `R` and `A` from the probe and the scan positions at set-up. The constants were
//! measured on two independent kinds of data (the single-slice simulator's MoS₂ and abTEM
//! multislice WSe₂, in paper 000's and paper 001's set-ups; see `studies/`).

/// The constants of the automatic step rule (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AutoStep {
    /// Target phase noise `σ*` of the settled iterate, radians.
    pub noise_rad: f64,
    /// Total step `G = γ·P` the passes must add up to at least.
    pub total_gamma: f64,
    /// How much larger than the last pass's step the online pass's is (`s`).
    pub start_factor: f64,
    /// ePIE's probe step `β = g/N_pos` for `N_pos` scan positions: every pattern updates the
    /// one shared probe, so a pass adds up to `g` full probe corrections (`None`: the β
    /// given). Default 2. Measured with the probe known (abTEM WSe₂, phase correlation):
    /// paper 001 at 10⁶ e⁻/pattern 0.990 held, 0.989 at β = 0.001, 0.961 at 0.01, 0.821 at
    /// the old default 0.1; paper 000 at 10⁵ e⁻/Å² 0.956 held, 0.959 at 0.001, 0.943 at 0.1.
    pub probe_corrections: Option<f64>,
}

impl Default for AutoStep {
    fn default() -> Self {
        AutoStep {
            noise_rad: 0.005,
            total_gamma: 4.0,
            start_factor: 1.0,
            probe_corrections: Some(2.0),
        }
    }
}

impl AutoStep {
    /// Checks the constants.
    pub fn validate(&self) -> crate::Result<()> {
        for (name, v) in [
            ("recon.auto_step.noise_rad", self.noise_rad),
            ("recon.auto_step.total_gamma", self.total_gamma),
            ("recon.auto_step.start_factor", self.start_factor),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(crate::Error::param(
                    name,
                    format!("got {v}, expected a finite value > 0"),
                ));
            }
        }
        if let Some(g) = self
            .probe_corrections
            .filter(|g| !(g.is_finite() && *g >= 0.0))
        {
            return Err(crate::Error::param(
                "recon.auto_step.probe_corrections",
                format!("got {g}, expected a finite value ≥ 0"),
            ));
        }
        if self.start_factor < 1.0 {
            return Err(crate::Error::param(
                "recon.auto_step.start_factor",
                format!("got {}, expected ≥ 1", self.start_factor),
            ));
        }
        Ok(())
    }
}

/// How the object step is chosen.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// The method's own step (ePIE's α, Wirtinger flow's μ) on every update, as given.
    Fixed,
    /// From the dose, the overlap and the passes (see the [module docs](self)).
    Auto(AutoStep),
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::Auto(AutoStep::default())
    }
}

/// `Σ_j |P_j|²` on an object of `shape`: the probe intensity `intensity` (`M × M`) added at
/// every window corner `[row0, col0]` of `corners` (rows that would leave the object are
/// left out). Where the object is lit, and how often.
pub fn illumination_map(
    intensity: &[f32],
    m: usize,
    shape: [usize; 2],
    corners: impl IntoIterator<Item = [usize; 2]>,
) -> Vec<f32> {
    let [rows, cols] = shape;
    let mut map = vec![0.0f32; rows * cols];
    for [r0, c0] in corners {
        for (dy, line) in intensity.chunks_exact(m).enumerate() {
            if let Some(row) = map.get_mut((r0 + dy) * cols + c0..(r0 + dy) * cols + c0 + m) {
                row.iter_mut().zip(line).for_each(|(a, &v)| *a += v);
            }
        }
    }
    map
}

/// The set-up's side of the rule: what the probe and the scan positions say.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Illumination {
    /// `R`: the median over scan positions of `Σ_j |P_j|²/max|P|²` at that position's probe
    /// centre.
    pub redundancy: f64,
    /// `A = 1/max|P|²`, the probe's effective area in object pixels.
    pub probe_area_px: f64,
}

impl Illumination {
    /// Measures `R` and `A` for the probe `probe` (`M × M`, `Σ|P|² = 1`) at the integer
    /// window corners `corners` (`[row0, col0]`) on an object of `shape`.
    pub fn measure(
        probe: &[num_complex::Complex32],
        m: usize,
        shape: [usize; 2],
        corners: &[[usize; 2]],
    ) -> Self {
        let intensity: Vec<f32> = probe.iter().map(|p| p.norm_sqr()).collect();
        let max = intensity.iter().copied().fold(0.0f32, f32::max);
        let cols = shape[1];
        let map = illumination_map(&intensity, m, shape, corners.iter().copied());
        let mut at_centres: Vec<f32> = corners
            .iter()
            .filter_map(|&[r0, c0]| map.get((r0 + m / 2) * cols + c0 + m / 2).copied())
            .collect();
        at_centres.sort_by(f32::total_cmp);
        let median = at_centres.get(at_centres.len() / 2).copied().unwrap_or(0.0);
        let (redundancy, probe_area_px) = if max > 0.0 {
            ((median / max).max(1.0) as f64, 1.0 / max as f64)
        } else {
            (1.0, 1.0)
        };
        Illumination {
            redundancy,
            probe_area_px,
        }
    }

    /// `D`, electrons per object pixel, for patterns of `counts` electrons.
    pub fn dose_per_pixel(&self, counts: f64) -> f64 {
        counts * self.redundancy / self.probe_area_px
    }
}

/// The sweeps to run after the online pass when the user gives none: as many as fit a
/// nominal budget of [`SWEEP_BUDGET_S`] of single-thread update time at the cost model
/// `0.7 ns·M²·log₂M` per update (criterion, `cargo bench --bench recon`: 16 µs at 64², 76 µs
/// at 128² on the 2-core development machine, probe held), between 4 and 20. For 1600
/// patterns of 128 × 128 that is 16 sweeps, so the whole job, ePIE refining the probe
/// included, stays under 5 s (issue 11; measured: 15 and 20 sweeps give the same phase
/// correlation within 0.002 on the abTEM study data).
pub fn default_sweeps(patterns: usize, m: usize) -> usize {
    let m = m.max(2) as f64;
    let per_update = 0.7e-9 * m * m * m.log2();
    let per_pass = per_update * patterns.max(1) as f64;
    let fit = (SWEEP_BUDGET_S / per_pass).floor() - 1.0;
    fit.clamp(4.0, 20.0) as usize
}

/// The nominal time budget of [`default_sweeps`], seconds of single-thread updates.
pub const SWEEP_BUDGET_S: f64 = 2.2;

/// The step of one pass as the rule chose it (for the report).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ChosenStep {
    /// `α_p` (ePIE's α; Wirtinger flow's μ).
    pub step: f32,
    /// `γ_p = α_p·R`.
    pub gamma: f64,
    /// `D` the step was chosen for, electrons per object pixel.
    pub dose_per_pixel: f64,
}

impl AutoStep {
    /// The step of pass `pass` of `passes` (0 = online) for patterns of `counts` electrons.
    pub fn choose(
        &self,
        light: &Illumination,
        counts: f64,
        pass: usize,
        passes: usize,
    ) -> ChosenStep {
        let r = light.redundancy;
        let d = light.dose_per_pixel(counts.max(0.0));
        let passes = passes.max(1);
        let gamma_noise = 8.0 * d * self.noise_rad * self.noise_rad;
        let gamma_floor = self.total_gamma / passes as f64;
        let gamma_end = gamma_noise.max(gamma_floor).min(r);
        let alpha_end = gamma_end / r;
        let s = self.start_factor.min(1.0 / alpha_end);
        let progress = if passes > 1 {
            (pass.min(passes - 1) as f64) / (passes - 1) as f64
        } else {
            1.0
        };
        let alpha = alpha_end * s.powf(1.0 - progress);
        ChosenStep {
            step: alpha as f32,
            gamma: alpha * r,
            dose_per_pixel: d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_complex::Complex32;

    /// A flat disc probe of `k` pixels: `A = k`; a raster at a step of `s` pixels: `R ≈ k/s²`.
    #[test]
    fn illumination_of_a_flat_disc_on_a_raster() {
        let m = 32;
        let mut probe = vec![Complex32::new(0.0, 0.0); m * m];
        let mut k = 0;
        for y in 0..m {
            for x in 0..m {
                let (dy, dx) = (y as f64 - 16.0, x as f64 - 16.0);
                if dy * dy + dx * dx <= 100.0 {
                    probe[y * m + x] = Complex32::new(1.0, 0.0);
                    k += 1;
                }
            }
        }
        let norm = 1.0 / (k as f32).sqrt();
        probe.iter_mut().for_each(|p| *p *= norm);
        // 30 × 30 positions: most probe centres are further than the disc's radius (5
        // steps) from the scan's edge, so the median one is lit by a full disc of positions.
        let corners: Vec<[usize; 2]> = (0..30)
            .flat_map(|r| (0..30).map(move |c| [r * 2, c * 2]))
            .collect();
        let light = Illumination::measure(&probe, m, [32 + 60, 32 + 60], &corners);
        assert!((light.probe_area_px - k as f64).abs() < 1e-3 * k as f64);
        // Interior pixels are lit by ≈ k/4 positions (step 2); the median centre is interior.
        let want = k as f64 / 4.0;
        assert!((light.redundancy - want).abs() < 0.15 * want, "{light:?}");
    }

    #[test]
    fn the_step_falls_with_dose_and_to_its_end_value() {
        let light = Illumination {
            redundancy: 100.0,
            probe_area_px: 2000.0,
        };
        let auto = AutoStep {
            start_factor: 10.0,
            ..AutoStep::default()
        };
        let hi = auto.choose(&light, 1e7, 10, 11);
        let lo = auto.choose(&light, 1e3, 10, 11);
        assert!(hi.step > lo.step);
        // High dose: capped at α = 1 (γ = R).
        assert_eq!(hi.step, 1.0);
        // Low dose: the floor G/P.
        assert!((lo.gamma - 4.0 / 11.0).abs() < 1e-9, "{lo:?}");
        // The online pass starts s times larger and the steps fall monotonically.
        let first = auto.choose(&light, 1e3, 0, 11);
        assert!((first.step / lo.step - 10.0).abs() < 1e-4);
        let steps: Vec<f32> = (0..11)
            .map(|p| auto.choose(&light, 1e3, p, 11).step)
            .collect();
        assert!(steps.windows(2).all(|w| w[1] <= w[0]), "{steps:?}");
        // Passes beyond the planned ones keep the last step.
        assert_eq!(auto.choose(&light, 1e3, 20, 11).step, lo.step);
    }

    #[test]
    fn noise_target_sets_the_middle_range() {
        let light = Illumination {
            redundancy: 100.0,
            probe_area_px: 2000.0,
        };
        let auto = AutoStep::default();
        // D = N·R/A; γ = 8·D·σ*².
        let n = 2e5;
        let c = auto.choose(&light, n, 5, 6);
        let d = n * 100.0 / 2000.0;
        assert!((c.dose_per_pixel - d).abs() < 1e-9);
        assert!((c.gamma - 8.0 * d * 0.005f64.powi(2)).abs() < 1e-9, "{c:?}");
    }

    #[test]
    fn default_sweeps_fit_the_budget() {
        assert_eq!(default_sweeps(1600, 128), 16);
        assert_eq!(default_sweeps(100, 96), 20);
        // A 256 × 256 scan of 128² windows: the floor.
        assert_eq!(default_sweeps(65536, 128), 4);
        let mid = default_sweeps(16384, 64);
        assert!((4..20).contains(&mid), "{mid}");
    }

    #[test]
    fn bad_constants_name_the_field() {
        let bad = AutoStep {
            noise_rad: f64::NAN,
            ..AutoStep::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("noise_rad"), "{e}");
    }
}
