//! What a pass reports: the loss sums over a fixed sample of its patterns ([`LossReport`]).

/// Loss sums of one pass over the patterns.
///
/// The losses are evaluated on a fixed sample of the scan positions, every
/// [`ReconSetup::loss_every`](super::ReconSetup::loss_every)-th scan index (the same positions
/// in every pass, so passes compare), before that position's update: evaluating `ln` on every
/// pixel of every update would cost more than the update's FFTs.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossReport {
    /// Pass number: 0 = the online pass, then one per sweep.
    pub pass: usize,
    /// Updates in this pass.
    pub patterns: u64,
    /// Updates of this pass whose loss was evaluated (the sample the sums below are over).
    pub evaluated: u64,
    /// The method's loss (ePIE: the amplitude loss) summed over the evaluated patterns.
    pub loss: f64,
    /// The amplitude loss `Σ (√Î − √I)²` in counts, the same for every method, summed over the
    /// evaluated patterns.
    pub amplitude_loss: f64,
    /// Total measured counts of the evaluated patterns (to normalise the losses).
    pub counts: f64,
    /// The object step of this pass (ePIE's α, Wirtinger flow's μ; with
    /// [`Schedule::Auto`](super::Schedule::Auto) the value chosen, in the online pass the last
    /// one).
    #[serde(default)]
    pub step: f32,
}

impl LossReport {
    /// `amplitude_loss / counts`: 0 for a perfect fit, ≈ ¼ per pixel-count at Poisson noise.
    pub fn relative_amplitude_loss(&self) -> f64 {
        if self.counts > 0.0 {
            self.amplitude_loss / self.counts
        } else {
            0.0
        }
    }

    /// Adds another tally of the same pass (from another thread).
    pub(super) fn absorb(&mut self, other: &LossReport) {
        self.patterns += other.patterns;
        self.evaluated += other.evaluated;
        self.loss += other.loss;
        self.amplitude_loss += other.amplitude_loss;
        self.counts += other.counts;
        self.step = other.step;
    }
}
