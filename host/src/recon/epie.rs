//! ePIE, the extended ptychographical iterative engine (Maiden & Rodenburg 2009), one update
//! per pattern.
//!
//! With the exit wave `ψ = P·O` of the current window and `Ψ = F[ψ]`, the Fourier constraint
//! replaces the modulus by the measured amplitude in model units,
//!
//! `ψ' = F⁻¹[√(I·M²/N_j) · Ψ/|Ψ|]`,
//!
//! i.e. `√I` of the counts scaled to the model (`Î = N_j·|Ψ|²/M²`, see [`wf`](super::wf)), so
//! that `|F[ψ']|² · N_j/M² = I` exactly. Then
//!
//! - object: `O ← O + α · conj(P)/max|P|² · (ψ' − ψ)`,
//! - probe:  `P ← P + β · conj(O)/max|O|² · (ψ' − ψ)` with the object *before* this update
//!   and `max|O|²` over the current window (Maiden & Rodenburg's maximum over the object,
//!   taken where the update acts, so no pass over the whole object is needed per update).
//!
//! The object update is exactly the amplitude-loss Wirtinger-flow step with ε = 0 and μ = α
//! (paper 001 cites Melnyk 2023 for this equivalence); the engine uses one code path for both.
//!
//! # Probe energy
//! The count scaling `Î = N_j|Ψ|²/M²` assumes `Σ|P|² = 1`. The product `P·O` only fixes the
//! probe up to a factor that the object can absorb, so after every probe update the probe is
//! renormalised to `Σ|P|² = 1` (an `O(M²)` pass): the probe carries the shape, the object any
//! transmission below 1.

/// When the probe starts to be updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ProbeUpdate {
    /// Never (known probe).
    Never,
    /// After this many updates have been done (counting all passes).
    AfterUpdates(u64),
    /// From the first revisit sweep on: the probe is held during the online pass, while the
    /// object is still vacuum over most of the field and would teach the probe nonsense.
    AfterFirstPass,
}

/// Parameters of ePIE.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpieParams {
    /// Object step α (default 1, Maiden & Rodenburg's value; 0 disables the object update).
    pub alpha: f32,
    /// Probe step β (default 0.1). Every pattern updates the one shared probe, so it sees
    /// `N_pos` updates per pass against the object's `~overlap` updates per pixel; a small step
    /// averages the noise of many patterns instead of letting the last one win. Maiden &
    /// Rodenburg used β = 1 with noise-free data. Measured on Poisson-noisy MoS₂ data (the dose
    /// study in `tests/quality.rs`, 20 sweeps, probe from the optics): β = 0.5 lowered the
    /// phase correlation against β = 0 by 0.006–0.06 at 10⁴–10⁶ electrons per pattern, β = 0.1
    /// by 0.002–0.016.
    pub beta: f32,
    /// When probe updates start (default [`ProbeUpdate::AfterFirstPass`]).
    pub probe_update: ProbeUpdate,
    /// The probe is only updated when the patterns seen so far average at least this many
    /// counts (default 10⁴; 0 = at any dose). Below it each pattern's modulus projection is
    /// mostly shot noise, and refining the probe on it destroyed the reconstruction in the
    /// dose study (in focus, phase correlation 0.61 → 0.08 at 10² and 0.91 → 0.83 at 10³
    /// electrons per pattern with β = 0.1, even with a wrong probe to start from).
    pub probe_min_counts: f64,
}

impl Default for EpieParams {
    fn default() -> Self {
        EpieParams {
            alpha: 1.0,
            beta: 0.1,
            probe_update: ProbeUpdate::AfterFirstPass,
            probe_min_counts: 1e4,
        }
    }
}

impl EpieParams {
    /// Checks every value: `0 ≤ α, β ≤ 2` (beyond 2 the projection step overshoots and
    /// diverges), `probe_min_counts ≥ 0`.
    pub fn validate(&self) -> crate::Result<()> {
        if !(self.probe_min_counts.is_finite() && self.probe_min_counts >= 0.0) {
            return Err(crate::Error::param(
                "recon.probe_min_counts",
                format!("got {}, expected a finite value ≥ 0", self.probe_min_counts),
            ));
        }
        for (name, v) in [
            ("recon.alpha_step", self.alpha),
            ("recon.beta_step", self.beta),
        ] {
            if !(v.is_finite() && (0.0..=2.0).contains(&v)) {
                return Err(crate::Error::param(
                    name,
                    format!("got {v}, expected a value in [0, 2]"),
                ));
            }
        }
        Ok(())
    }

    /// Whether the probe is updated at this point (`updates` done so far, `pass` 0 = online,
    /// `mean_counts` the mean total counts of the patterns seen so far).
    pub fn probe_active(&self, updates: u64, pass: usize, mean_counts: f64) -> bool {
        self.beta > 0.0
            && mean_counts >= self.probe_min_counts
            && match self.probe_update {
                ProbeUpdate::Never => false,
                ProbeUpdate::AfterUpdates(k) => updates >= k,
                ProbeUpdate::AfterFirstPass => pass >= 1,
            }
    }
}
