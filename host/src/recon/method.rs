//! The reconstruction method: the algorithm and its parameters ([`Method`]), the options the
//! faces share and turn into one ([`MethodOptions`]), and the constraint on the object's
//! modulus that every update enforces ([`ObjectConstraint`]).

use super::epie::{EpieParams, ProbeUpdate};
use super::schedule::{AutoStep, Schedule};
use super::wf::{Loss, WfParams};
use crate::{Error, Result};

/// What the object's modulus may be, enforced on the window after every update.
///
/// Measured on abTEM multislice WSe₂ in paper 000's set-up (Poisson WF, automatic steps,
/// phase correlation over the scanned area): at 4·10² / 10³ / 10⁵ e⁻/Å², free 0.745 / 0.862 /
/// 0.946, passive 0.779 / 0.881 / –, phase-only 0.795 / 0.888 / 0.960. In paper 001's focused
/// set-up phase-only changed the result by less than 0.003. Shot noise otherwise leaks into
/// the modulus, and through the coupled update into the phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectConstraint {
    /// No constraint.
    Free,
    /// `|O| ≤ 1` (default): a passive specimen transmits at most the incident wave. Always
    /// physical (the probe carries the beam's energy, `Σ|P|² = 1`).
    #[default]
    Passive,
    /// `|O| = 1`: a pure phase object, the weak-absorption limit of thin specimens (2D
    /// materials, thin biological sections). Wrong for specimens with amplitude contrast.
    PhaseOnly,
}

impl ObjectConstraint {
    /// Parses `free`, `passive` or `phase`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "free" => Ok(ObjectConstraint::Free),
            "passive" => Ok(ObjectConstraint::Passive),
            "phase" | "phase-only" => Ok(ObjectConstraint::PhaseOnly),
            other => Err(Error::param(
                "recon.object_constraint",
                format!("`{other}`, expected one of free, passive, phase"),
            )),
        }
    }
}

/// The reconstruction algorithm and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Method {
    /// ePIE: object and (optionally) probe.
    Epie(EpieParams),
    /// Wirtinger flow with a known probe.
    Wf(WfParams),
}

impl Method {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        match self {
            Method::Epie(p) => p.validate(),
            Method::Wf(p) => p.validate(),
        }
    }

    /// A short name for reports: `epie` or `wf-<loss>`.
    pub fn name(&self) -> String {
        match self {
            Method::Epie(_) => "epie".to_owned(),
            Method::Wf(p) => format!("wf-{}", p.loss.name()),
        }
    }
}

/// The algorithm options `ptyflow replay` and the C API share, as their users give them (see
/// `ptyflow replay --help` for each); [`MethodOptions::method`] turns them into a checked
/// [`Method`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MethodOptions<'a> {
    /// ePIE object step α (`None`: chosen by [`Schedule::Auto`]).
    pub alpha_step: Option<f32>,
    /// ePIE probe step β (`None`: chosen by [`Schedule::Auto`],
    /// [`AutoStep::probe_corrections`] over the scan's positions).
    pub beta_step: Option<f32>,
    /// ePIE: probe updates start after this many updates (`None`: from the first sweep).
    pub probe_after: Option<u64>,
    /// ePIE: hold the probe below this mean count per pattern.
    pub probe_min_counts: f64,
    /// Wirtinger flow's loss, by name ([`Loss::from_name`]; read only for Wirtinger flow).
    pub loss: &'a str,
    /// Wirtinger flow's step μ (`None`: chosen by [`Schedule::Auto`]).
    pub wf_step: Option<f32>,
    /// ε in counts.
    pub epsilon: f32,
    /// ε relative to the mean count per pixel (`None`: the loss's default).
    pub epsilon_relative: Option<f32>,
    /// Truncation α_h of the Poisson gradient.
    pub truncation: Option<f32>,
    /// Tikhonov prior weight μ₀.
    pub tikhonov: f32,
    /// The constants of the automatic step rule (used when the step is not given).
    pub auto_step: AutoStep,
}

impl MethodOptions<'_> {
    /// ePIE, or Wirtinger flow when `wirtinger_flow`, with these options; validated.
    pub fn method(&self, wirtinger_flow: bool) -> Result<Method> {
        let method = if wirtinger_flow {
            let mut p = WfParams::new(Loss::from_name(self.loss)?);
            p.step = self.wf_step.unwrap_or(p.step);
            p.epsilon = self.epsilon;
            p.epsilon_relative = self.epsilon_relative.unwrap_or(p.epsilon_relative);
            p.truncation = self.truncation;
            p.tikhonov = self.tikhonov;
            Method::Wf(p)
        } else {
            Method::Epie(EpieParams {
                alpha: self.alpha_step.unwrap_or(1.0),
                beta: self.beta_step.unwrap_or(EpieParams::default().beta),
                probe_update: self
                    .probe_after
                    .map_or(ProbeUpdate::AfterFirstPass, ProbeUpdate::AfterUpdates),
                probe_min_counts: self.probe_min_counts,
            })
        };
        method.validate()?;
        Ok(method)
    }

    /// How the object step is chosen: [`Schedule::Fixed`] when the step of the method
    /// (`alpha_step` for ePIE, `wf_step` for Wirtinger flow) was given, else
    /// [`Schedule::Auto`] with [`MethodOptions::auto_step`]; validated.
    pub fn schedule(&self, wirtinger_flow: bool) -> Result<Schedule> {
        let given = if wirtinger_flow {
            self.wf_step.is_some()
        } else {
            self.alpha_step.is_some()
        };
        if given {
            Ok(Schedule::Fixed)
        } else {
            let mut auto = self.auto_step;
            if self.beta_step.is_some() {
                auto.probe_corrections = None;
            }
            auto.validate()?;
            Ok(Schedule::Auto(auto))
        }
    }
}
