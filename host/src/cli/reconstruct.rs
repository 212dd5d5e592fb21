//! `ptyflow reconstruct`: flags → [`CompressedReconConfig`] →
//! [`crate::job::reconstruct_compressed`] on the directory [`crate::job::load_compressed`]
//! read.

use std::path::PathBuf;

use clap::Args as ClapArgs;

use crate::Result;
use crate::job::{self, CompressedReconConfig};
use crate::optics::Optics;
use crate::recon::ObjectConstraint;
use crate::recon::compressed::CompressedParams;

/// Flags of `ptyflow reconstruct`.
#[derive(Debug, ClapArgs)]
#[command(after_long_help = "\
Reconstructs the specimen from the output of `ptyflow compress` (paper 002): Wirtinger flow \
with the compressed loss, one update per pattern and then the sweeps, the probe held. The \
loss compares the model pattern's projections onto the stored basis with the stored \
coefficients (eq. 9), its perpendicular components with the stored ones per region \
(eq. 11, weight --perp-weight, divided by the pattern's squared length), and drives the \
pixels outside both regions to zero (eq. 10, weight --edge-weight).

The optics and the scan come from the compressed output (report.json, filled by `ptyflow \
compress` from the dump's sidecar); the flags below override them.

Outputs (in --out): object.npy, probe.npy (complex64), object_phase.png, \
object_amplitude.png, loss.png and report.json.

Example:
  ptyflow compress fixtures/mos2-defocus/scan.raw --basis zernike:45 --values amplitude --out c/
  ptyflow reconstruct c/ --out r/")]
pub struct Args {
    /// The directory `ptyflow compress --out` wrote.
    pub dir: PathBuf,

    /// Accelerating voltage, kV. Default: from the compressed output.
    #[arg(long, value_name = "KV")]
    pub kv: Option<f64>,

    /// Convergence semi-angle α, mrad. Default: from the compressed output.
    #[arg(long, value_name = "MRAD")]
    pub alpha: Option<f64>,

    /// Defocus, Å (positive = underfocus). Default: from the compressed output.
    #[arg(long, value_name = "A", allow_hyphen_values = true)]
    pub defocus: Option<f64>,

    /// Scattering angle per detector pixel, mrad. Default: from the compressed output.
    #[arg(long, value_name = "MRAD")]
    pub mrad_per_px: Option<f64>,

    /// Scan step, Å. Default: from the compressed output.
    #[arg(long, value_name = "A")]
    pub step: Option<f64>,

    /// A probe (complex64 .npy, frame-sized, centred) instead of one from the optics.
    #[arg(long, value_name = "FILE")]
    pub probe: Option<PathBuf>,

    /// Step μ in units of 1/(κ·max|P|²) (1: the amplitude loss's step).
    #[arg(long, default_value_t = 1.0, value_name = "MU")]
    pub wf_step: f32,

    /// Weight of the perpendicular-component term (eq. 11).
    #[arg(long, default_value_t = 0.1, value_name = "W")]
    pub perp_weight: f32,

    /// Weight of the unmeasured-pixel term (eq. 10).
    #[arg(long, default_value_t = 1.0, value_name = "W")]
    pub edge_weight: f32,

    /// ε in counts under the square root (amplitude values).
    #[arg(long, default_value_t = 1e-4, value_name = "E")]
    pub epsilon: f32,

    /// Passes over the patterns after the online pass. Default: as many as fit ~2 s.
    #[arg(long, value_name = "K")]
    pub sweeps: Option<usize>,

    /// The object's modulus: passive (|O| ≤ 1), phase (|O| = 1) or free.
    #[arg(long, default_value = "passive", value_name = "C")]
    pub object_constraint: String,

    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// No summary line.
    #[arg(short, long)]
    pub quiet: bool,
}

impl Args {
    /// The reconstruction these flags describe.
    pub fn to_config(&self) -> Result<CompressedReconConfig> {
        let mut c = CompressedReconConfig::new(&self.dir);
        c.optics = Optics {
            kv: self.kv,
            alpha_mrad: self.alpha,
            defocus_angstrom: self.defocus,
            mrad_per_px: self.mrad_per_px,
            step_angstrom: self.step,
            ..Optics::default()
        };
        c.probe = self.probe.clone();
        c.params = CompressedParams {
            step: self.wf_step,
            perp_weight: self.perp_weight,
            edge_weight: self.edge_weight,
            epsilon: self.epsilon,
        };
        c.sweeps = self.sweeps;
        c.object_constraint = ObjectConstraint::from_name(&self.object_constraint)?;
        c.out = Some(self.out.clone());
        Ok(c)
    }
}

/// Runs `ptyflow reconstruct`.
pub fn run(args: Args) -> Result<()> {
    let config = args.to_config()?;
    let data = job::load_compressed(&args.dir)?;
    let result = job::reconstruct_compressed(&config, &data)?;
    if !args.quiet {
        let s = &result.summary;
        eprintln!(
            "ptyflow reconstruct: {} updates ({} sweeps) from {} values per pattern (C = {:.1}) \
             in {:.2} s -> {}",
            s["updates"],
            s["sweeps"],
            s["values_per_pattern"],
            s["compression_ratio"].as_f64().unwrap_or(f64::NAN),
            s["seconds"].as_f64().unwrap_or(0.0),
            args.out.display()
        );
    }
    Ok(())
}
