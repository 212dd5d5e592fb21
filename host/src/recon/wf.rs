//! Wirtinger flow (Candès, Li & Soltanolkotabi 2015) with the four losses of paper 001
//! (Leidl et al. 2024, eqs. 2–11), the truncated Poisson gradient of Chen & Candès 2015 (paper
//! 003) and a Tikhonov gradient prior (paper 003).
//!
//! # The model and its gradient
//! For scan position `j` with the (sub-pixel shifted) probe `P` and the object window `O`:
//! `ψ = P·O`, `Ψ = F[ψ]` (unnormalised forward FFT, see [`fft`](super::fft)), and the model
//! pattern in **counts** `Î_k = N_j·|Ψ_k|²/M²`, with `N_j` the recorded total counts of that
//! pattern (paper 001 section 3). Since `Σ|P|² = 1` and by Parseval `Σ_k |Ψ_k|²/M² = Σ_r |ψ_r|²`,
//! a vacuum object predicts exactly `N_j` electrons.
//!
//! Every loss is a sum over detector pixels `L = Σ_k ℓ(Î_k, I_k)`, so its Wirtinger gradient
//! (the derivative with respect to `O*`, `∂/∂O* = ½(∂/∂Re O + i ∂/∂Im O)`) is
//!
//! `∂L/∂O* = conj(P) · N_j · F⁻¹[ℓ'(Î)·Ψ]`  (eq. 11 of paper 001, with `F⁻¹` the normalised
//! inverse FFT),
//!
//! where `ℓ' = ∂ℓ/∂Î` is listed in [`Loss`]. The update is
//!
//! `O ← O − μ / (κ · N_j · max|P|²) · ∂L/∂O* = O − μ/(κ·max|P|²) · conj(P)·F⁻¹[ℓ'(Î)·Ψ]`.
//!
//! The factor `N_j·max|P|²` is the scale of the loss's curvature (the data term is linear in
//! the dose), and `κ` the loss's own curvature constant ([`Loss::curvature_scale`]), chosen so
//! that `μ = 1` is, to first order near the solution, the same step as ePIE with `α = 1` (for
//! the amplitude loss with `ε = 0` the update *is* ePIE's object update). So one default step
//! works across doses without tuning; the tests check it at 10⁶ and 10⁴ electrons per pattern.

/// The loss comparing the model pattern `Î` with the recorded counts `I` (both in counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// `ℓ = |Î − I|` (paper 001 eq. 5); `ℓ' = sign(Î − I)` (0 where equal). Paper 001 eq. 7
    /// writes an extra factor ½, which only rescales the step.
    L1,
    /// `ℓ = (Î − I)²` (eq. 4); `ℓ' = 2(Î − I)` (eq. 8).
    Mse,
    /// `ℓ = (√(Î + ε) − √I)²` (eq. 3 with ε); `ℓ' = 1 − √I/√(Î + ε)` (eq. 9).
    Amplitude,
    /// `ℓ = Î − I·ln(Î + ε)` (eq. 2); `ℓ' = 1 − I/(Î + ε)` (eq. 10).
    Poisson,
}

impl Loss {
    /// All four losses.
    pub const ALL: [Loss; 4] = [Loss::L1, Loss::Mse, Loss::Amplitude, Loss::Poisson];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Loss::L1 => "l1",
            Loss::Mse => "mse",
            Loss::Amplitude => "amplitude",
            Loss::Poisson => "poisson",
        }
    }

    /// Parses a name as written by [`Loss::name`].
    pub fn from_name(name: &str) -> crate::Result<Self> {
        Loss::ALL
            .into_iter()
            .find(|l| l.name() == name)
            .ok_or_else(|| {
                crate::Error::param(
                    "recon.loss",
                    format!("`{name}`, expected one of l1, mse, amplitude, poisson"),
                )
            })
    }

    /// The loss of one detector pixel: model `model` (= Î) and measured counts `measured` (= I).
    #[inline]
    pub fn value(self, model: f32, measured: f32, eps: f32) -> f64 {
        let (m, i, e) = (model as f64, measured as f64, eps as f64);
        match self {
            Loss::L1 => (m - i).abs(),
            Loss::Mse => (m - i) * (m - i),
            Loss::Amplitude => {
                let d = (m + e).sqrt() - i.sqrt();
                d * d
            }
            Loss::Poisson => m - i * (m + e).ln(),
        }
    }

    /// `ℓ'(Î) = ∂ℓ/∂Î` of one pixel.
    #[inline]
    pub fn derivative(self, model: f32, measured: f32, eps: f32) -> f32 {
        match self {
            Loss::L1 => {
                let d = model - measured;
                if d > 0.0 {
                    1.0
                } else if d < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Loss::Mse => 2.0 * (model - measured),
            Loss::Amplitude => 1.0 - measured.sqrt() / (model + eps).sqrt(),
            Loss::Poisson => 1.0 - measured / (model + eps),
        }
    }

    /// The curvature constant `κ` of the step normalisation `μ/(κ·N_j·max|P|²)`.
    ///
    /// Near the solution `Î ≈ I`, every `ℓ'` is a multiple of the amplitude loss's
    /// `ℓ'_A ≈ (Î − I)/(2Î)`: Poisson `ℓ' ≈ 2ℓ'_A` (κ = 2), MSE `ℓ' ≈ 4Î·ℓ'_A`
    /// (κ = 4·I_max, the largest count of the pattern, so that no pixel takes a larger step than
    /// ePIE would), L1 `ℓ' = sign(Î − I)`, which at a Poisson-sized residual `|Î − I| ≈ √Î` is
    /// `≈ 2√Î·ℓ'_A` (κ = 2·√I_max). `max_count` is the pattern's largest count.
    pub fn curvature_scale(self, max_count: f32) -> f32 {
        match self {
            Loss::Amplitude => 1.0,
            Loss::Poisson => 2.0,
            Loss::Mse => 4.0 * max_count.max(1.0),
            Loss::L1 => 2.0 * max_count.max(1.0).sqrt(),
        }
    }

    /// The default [`WfParams::epsilon_relative`]: 0.01 for the Poisson loss, 0 for the others
    /// (see [`WfParams::epsilon_for`]; L1 and MSE do not use ε).
    pub fn default_epsilon_relative(self) -> f32 {
        match self {
            Loss::Poisson => 0.01,
            Loss::L1 | Loss::Mse | Loss::Amplitude => 0.0,
        }
    }

    /// The documented default step μ of this loss (with the normalisation above).
    ///
    /// Amplitude and Poisson: `μ = 1` (ePIE's α = 1 to first order). MSE: `μ = 1`.
    /// L1: `μ = 0.5`, because a sub-gradient method with a constant step ends in a noise floor
    /// proportional to the step.
    pub fn default_step(self) -> f32 {
        match self {
            Loss::L1 => 0.5,
            Loss::Mse | Loss::Amplitude | Loss::Poisson => 1.0,
        }
    }
}

/// Parameters of the Wirtinger-flow update. The probe is known (not updated).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WfParams {
    /// The loss.
    pub loss: Loss,
    /// Step μ, in units of the normalisation `1/(κ·N_j·max|P|²)` (see the module docs).
    /// Default [`Loss::default_step`].
    pub step: f32,
    /// ε in counts (paper 001: 10⁻⁴), regularising `ln` and the divisions of the amplitude and
    /// Poisson losses; the floor of the pattern's ε (see [`WfParams::epsilon_for`]).
    pub epsilon: f32,
    /// ε relative to the pattern's mean count per pixel `N_j/M²` (default
    /// [`Loss::default_epsilon_relative`]; 0 = paper 001's fixed ε). See
    /// [`WfParams::epsilon_for`].
    pub epsilon_relative: f32,
    /// Truncation parameter α_h of the truncated gradient (Chen & Candès 2015, paper 003:
    /// α_h ≥ 5), or `None` for the full gradient. See [`truncation_keeps`].
    pub truncation: Option<f32>,
    /// Weight μ₀ of the Tikhonov gradient prior `μ₀·Σ|∇O|²` (0 = off). Its gradient
    /// `−μ₀·ΔO` (5-point Laplacian, replicated edges) is applied on the window at every
    /// update, weighted by the probe intensity `|P|²/max|P|²`, with the same step μ:
    /// `O ← O + μ·μ₀·(|P|²/max|P|²)·ΔO`. Stable for `μ·μ₀ < 0.25`.
    pub tikhonov: f32,
}

impl WfParams {
    /// Defaults for `loss`: its default step, ε = 10⁻⁴ with the loss's default relative ε
    /// (Poisson: ε = max(10⁻⁴, 0.01·N_j/M²)), no truncation, no prior.
    pub fn new(loss: Loss) -> Self {
        WfParams {
            loss,
            step: loss.default_step(),
            epsilon: 1e-4,
            epsilon_relative: loss.default_epsilon_relative(),
            truncation: None,
            tikhonov: 0.0,
        }
    }

    /// Checks every value.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |name: &str, v: f32, want: &str| {
            Err(crate::Error::param(
                name,
                format!("got {v}, expected {want}"),
            ))
        };
        if !(self.step.is_finite() && self.step >= 0.0) {
            return bad("recon.wf_step", self.step, "a finite value ≥ 0");
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return bad("recon.epsilon", self.epsilon, "a finite value > 0");
        }
        if !(self.epsilon_relative.is_finite() && self.epsilon_relative >= 0.0) {
            return bad(
                "recon.epsilon_relative",
                self.epsilon_relative,
                "a finite value ≥ 0",
            );
        }
        if let Some(a) = self.truncation {
            if !(a.is_finite() && a > 0.0) {
                return bad(
                    "recon.truncation",
                    a,
                    "a finite α_h > 0 (paper 003: α_h ≥ 5)",
                );
            }
        }
        if !(self.tikhonov.is_finite() && self.tikhonov >= 0.0) {
            return bad("recon.tikhonov", self.tikhonov, "a finite value ≥ 0");
        }
        if self.step * self.tikhonov >= 0.25 {
            return bad(
                "recon.tikhonov",
                self.tikhonov,
                "step × tikhonov < 0.25 (larger diverges)",
            );
        }
        Ok(())
    }
}

impl WfParams {
    /// ε of one pattern, in counts: `max(epsilon, epsilon_relative · N_j/M²)`, with
    /// `mean_count = N_j/M²` the pattern's mean count per pixel.
    ///
    /// Why relative: scaling every count by `s` (a longer dwell) scales `I` and `Î` alike,
    /// and the Poisson derivative `1 − I/(Î + ε)` is unchanged only if ε scales too. A fixed
    /// ε in counts is tiny at high dose, where the vacuum start predicts ~0 counts in the
    /// dark field: there `|ℓ'| ≈ I/ε` is huge, far beyond the curvature the constant step
    /// is normalised to, and the update diverges (paper 001 avoids this with a much smaller
    /// step and 100 iterations). The dose study in `tests/quality.rs` measured both
    /// geometries at 10², 10⁴ and 10⁶ electrons per pattern: 0.01 of the mean count per
    /// pixel keeps the Poisson loss's low-dose advantage and cures the high-dose divergence
    /// (phase correlation 0.49 → 0.95 at 10⁶ defocused; 0.715 → 0.739 at 10² focused). The
    /// amplitude loss's derivative grows only as `√(I/Î)` and does not diverge; a relative ε
    /// there only blurs (0.955 → 0.936 at 10⁴ focused), so its default stays 0.
    #[inline]
    pub fn epsilon_for(&self, mean_count: f32) -> f32 {
        self.epsilon.max(self.epsilon_relative * mean_count)
    }
}

/// The truncation rule of the truncated Poisson gradient (Chen & Candès 2015, rule `E_h`;
/// paper 003): the pixel `k` contributes to the gradient only if
///
/// `|I_k − Î_k| ≤ α_h · K_j · √(Î_k / mean_l Î_l)`,  with `K_j = mean_l |I_l − Î_l|`,
///
/// the means taken over the pixels of the pattern. It is Chen & Candès'
/// `|y_i − |a_iᵀz|²| ≤ α_h·(‖y − A(z)‖₁/m)·|a_iᵀz|/‖z‖` with `|a_iᵀz|²/‖z‖²`, the measurement
/// relative to its expectation, read as `Î_k / mean Î`. Pixels whose residual is too large
/// for the model's own amplitude (outliers, dark-field counts the model cannot yet explain)
/// are dropped from this update's gradient. (The lower/upper bounds `E₁` of their paper are
/// not used, as in paper 003.)
#[inline]
pub fn truncation_keeps(
    residual_abs: f32,
    model: f32,
    alpha_h: f32,
    mean_abs_residual: f32,
    mean_model: f32,
) -> bool {
    residual_abs <= alpha_h * mean_abs_residual * (model / mean_model).sqrt()
}
