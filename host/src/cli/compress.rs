//! `ptyflow compress`: flags → [`JobConfig`] (with its `compress` section) →
//! [`crate::job::compress()`].

use std::path::PathBuf;

use clap::Args as ClapArgs;

use super::dump_args::DumpArgs;
use super::replay::{parse_pair, parse_scan};
use crate::Result;
use crate::job::{self, CompressConfig, Hooks, JobConfig, ScanConfig, Source};
use crate::pipeline::compress::CompressValues;

/// Flags of `ptyflow compress`.
#[derive(Debug, ClapArgs)]
#[command(after_long_help = "\
Compresses every frame by change of basis (paper 002): the bright-field disc onto an \
orthonormal basis, the dark field around it onto K Zernike polynomials of the annulus, plus \
the two perpendicular components: K_bf + K + 2 values per frame, C = pixels / that.

Outputs (in --out): coefficients.npy (float32, [rows, cols, values]: c_bf…, c_df…, perp_bf, \
perp_df), angle.npy and angle_df.npy (eq. 18, radians, [rows, cols]), basis.npy \
([masks, height, width]), basis.json (kind, centre, radius, dark-field radii, counts, frame \
shape, the layout of the values, the recorded patterns' indices and seed) and report.json \
(compression ratio C, mean and max angle, frames per second).

--basis patterns:N draws N frames of the scan without replacement with a PCG-64 generator \
seeded by --seed (default 0); their indices are in basis.json.

Example:
  ptyflow compress fixtures/mos2-defocus/scan.raw --basis zernike:45 --out out/")]
pub struct Args {
    /// The dump to compress.
    pub dump: PathBuf,

    /// How to read the dump (format, raw layout).
    #[command(flatten)]
    pub layout: DumpArgs,

    /// The bright-field basis: `zernike:N`, `binning:W` or `patterns:N`.
    #[arg(long, value_name = "KIND:N")]
    pub basis: String,

    /// Zernike polynomials on the dark-field annulus (1: the dark-field sum).
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub dark_field: usize,

    /// Outer radius of the dark-field annulus, unbinned pixels. Default: the whole frame.
    #[arg(long, value_name = "R")]
    pub dark_outer: Option<f64>,

    /// Project the frame as recorded (`intensity`) or its square root (`amplitude`).
    #[arg(long, default_value = "intensity", value_parser = parse_values)]
    pub values: CompressValues,

    /// Seed of the random choice of recorded patterns.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Scan shape ROWSxCOLS. Default: from the dump's metadata.
    #[arg(long, value_name = "ROWSxCOLS", value_parser = parse_scan)]
    pub scan: Option<(usize, usize)>,

    /// The scan runs serpentine: odd rows right to left.
    #[arg(long)]
    pub serpentine: bool,

    /// Compress even if the frame count does not fill the scan.
    #[arg(long)]
    pub allow_partial: bool,

    /// Centre X,Y of the bright-field disc in pixels. Default: found from the mean pattern.
    #[arg(long, value_name = "X,Y", value_parser = parse_pair)]
    pub center: Option<(f64, f64)>,

    /// Radius of the bright-field disc in pixels. Default: found from the mean pattern.
    #[arg(long, value_name = "R")]
    pub bf_radius: Option<f64>,

    /// Worker threads. Default: the available cores.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Frames per message between the reader and the workers.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub batch: usize,

    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

fn parse_values(s: &str) -> std::result::Result<CompressValues, String> {
    match s {
        "intensity" => Ok(CompressValues::Intensity),
        "amplitude" => Ok(CompressValues::Amplitude),
        _ => Err(format!("`{s}`: expected intensity or amplitude")),
    }
}

impl Args {
    /// The job these flags describe (validated when it runs).
    pub fn to_config(&self) -> JobConfig {
        let mut config = JobConfig::dump(&self.dump);
        config.source = Source::Dump(self.layout.to_source(&self.dump));
        config.scan = ScanConfig {
            shape: self.scan.map(|(r, c)| [r, c]),
            serpentine: self.serpentine,
            allow_partial: self.allow_partial,
            ..ScanConfig::default()
        };
        config.reduce.center = self.center.map(|(x, y)| [x, y]);
        config.reduce.bf_radius = self.bf_radius;
        config.compress = Some(CompressConfig {
            basis: self.basis.clone(),
            dark_field: self.dark_field,
            dark_outer: self.dark_outer,
            values: self.values,
            seed: self.seed,
        });
        config.run.threads = self.threads;
        config.run.batch_frames = Some(self.batch.max(1));
        config.out = Some(self.out.clone());
        config
    }
}

/// Runs `ptyflow compress`.
pub fn run(args: Args) -> Result<()> {
    let config = args.to_config();
    let hooks = Hooks {
        progress: None,
        interrupt: super::interrupt_flag(),
    };
    let outcome = job::compress(&config, &hooks)?;
    let r = &outcome.report;
    eprintln!(
        "ptyflow compress: {} frames, {} values per frame (C = {:.1}), mean angle {:.4} rad, \
         max {:.4} rad, {:.0} frames/s -> {}",
        r["frames"],
        r["values_per_frame"],
        r["compression_ratio"].as_f64().unwrap_or(0.0),
        r["angle_mean_rad"].as_f64().unwrap_or(0.0),
        r["angle_max_rad"].as_f64().unwrap_or(0.0),
        r["frames_per_second"].as_f64().unwrap_or(0.0),
        args.out.display()
    );
    Ok(())
}
