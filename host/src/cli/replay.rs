//! `ptyflow replay`: flags → [`ReplayConfig`] → [`crate::pipeline::replay`].

use std::path::PathBuf;

use clap::Args as ClapArgs;

use crate::pipeline::detectors::VirtualSpec;
use crate::pipeline::replay::{ReplayConfig, interrupt_flag, replay, write_report};
use crate::pipeline::run::RunOptions;
use crate::source::DumpArgs;
use crate::{Error, Result};

/// Flags of `ptyflow replay`.
#[derive(Debug, ClapArgs)]
#[command(after_long_help = "\
Outputs (in --out): report.json (frames read/processed/dropped, times, frames per second per \
stage, all parameters), mean.npy and var.npy (mean and population variance pattern at the \
binned resolution), dose.npy (total counts per scan position), virtual_<name>.npy (one per \
--virtual; scan-shaped, rows × cols [× channels]; com gives virtual_com_x/_y in unbinned \
pixels relative to the disc centre) and a PNG preview of each 2D output.

Example:
  ptyflow replay fixtures/mos2-defocus/scan.raw --scan 20x20 --bin 2 \\
      --virtual bf --virtual adf:14:24 --virtual com --out out/")]
pub struct Args {
    /// The dump to replay (raw with its `.json` sidecar, Merlin `.mib`, EMPAD `.raw`).
    pub dump: PathBuf,

    /// How to read the dump (format, raw layout).
    #[command(flatten)]
    pub layout: DumpArgs,

    /// Scan shape ROWSxCOLS (rows are the slow axis). Default: from the dump's metadata.
    #[arg(long, value_name = "ROWSxCOLS", value_parser = parse_scan)]
    pub scan: Option<(usize, usize)>,

    /// The scan runs serpentine: odd rows right to left.
    #[arg(long)]
    pub serpentine: bool,

    /// Replay even if the frame count does not fill the scan (missing positions are NaN;
    /// frames beyond the scan are not read).
    #[arg(long)]
    pub allow_partial: bool,

    /// Sum BIN × BIN blocks of pixels before the virtual detectors and statistics (1…16;
    /// must divide the frame, or the --crop window).
    #[arg(long, default_value_t = 1, value_name = "BIN")]
    pub bin: usize,

    /// Use only this window of each frame: X0,Y0,WIDTH,HEIGHT in unbinned pixels.
    #[arg(long, value_name = "X0,Y0,W,H", value_parser = parse_crop)]
    pub crop: Option<(usize, usize, usize, usize)>,

    /// A virtual detector (repeatable): `bf` (bright-field disc), `adf:INNER:OUTER` (annular
    /// dark field), `rings:N:INNER:OUTER` (N equal rings), `dpc` (4 quadrants of the bright
    /// field), `com` (centre of mass). Radii in unbinned pixels, or in mrad with --mrad-per-px.
    #[arg(long = "virtual", value_name = "SPEC")]
    pub virtual_detectors: Vec<VirtualSpec>,

    /// Centre X,Y of the bright-field disc in unbinned pixels (column, row). Default: found
    /// from the mean of up to 256 frames.
    #[arg(long, value_name = "X,Y", value_parser = parse_pair)]
    pub center: Option<(f64, f64)>,

    /// Radius of the bright-field disc (unbinned pixels, or mrad with --mrad-per-px).
    /// Default: found from the mean pattern.
    #[arg(long, value_name = "R")]
    pub bf_radius: Option<f64>,

    /// Scattering angle per unbinned detector pixel in mrad; detector radii are then in mrad.
    #[arg(long, value_name = "MRAD")]
    pub mrad_per_px: Option<f64>,

    /// Reduction worker threads. Default: the available cores.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Pace the replay like a detector running at N frames per second.
    #[arg(long, value_name = "N")]
    pub fps: Option<f64>,

    /// Frames per message between the reader and the workers.
    #[arg(long, default_value_t = 64, value_name = "N", hide_short_help = true)]
    pub batch: usize,

    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,

    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Parses `ROWSxCOLS`.
pub fn parse_scan(s: &str) -> Result<(usize, usize), String> {
    let (r, c) = s
        .split_once(['x', 'X', '×'])
        .ok_or_else(|| format!("`{s}`: expected ROWSxCOLS, e.g. 20x20"))?;
    let parse = |t: &str| t.trim().parse::<usize>().ok().filter(|&v| v > 0);
    match (parse(r), parse(c)) {
        (Some(r), Some(c)) => Ok((r, c)),
        _ => Err(format!("`{s}`: rows and columns must be positive integers")),
    }
}

fn parse_pair(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("`{s}`: expected X,Y"))?;
    match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        (Ok(a), Ok(b)) if a.is_finite() && b.is_finite() => Ok((a, b)),
        _ => Err(format!("`{s}`: expected two numbers X,Y")),
    }
}

fn parse_crop(s: &str) -> Result<(usize, usize, usize, usize), String> {
    let v: Vec<usize> = s
        .split(',')
        .map(|t| t.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| format!("`{s}`: expected four integers X0,Y0,W,H"))?;
    match v.as_slice() {
        &[x0, y0, w, h] if w > 0 && h > 0 => Ok((x0, y0, w, h)),
        _ => Err(format!(
            "`{s}`: expected four integers X0,Y0,W,H with W, H > 0"
        )),
    }
}

impl Args {
    /// The validated configuration.
    pub fn to_config(&self) -> Result<ReplayConfig> {
        if let Some(t) = self.threads.filter(|&t| t == 0) {
            return Err(Error::param("--threads", format!("{t}: need at least 1")));
        }
        if let Some(f) = self.fps.filter(|f| !(f.is_finite() && *f > 0.0)) {
            return Err(Error::param("--fps", format!("{f}: need a rate > 0")));
        }
        if let Some(m) = self.mrad_per_px.filter(|m| !(m.is_finite() && *m > 0.0)) {
            return Err(Error::param(
                "--mrad-per-px",
                format!("{m}: need a value > 0"),
            ));
        }
        if let Some(r) = self.bf_radius.filter(|r| !(r.is_finite() && *r > 0.0)) {
            return Err(Error::param(
                "--bf-radius",
                format!("{r}: need a radius > 0"),
            ));
        }
        let mut run = RunOptions {
            batch_frames: self.batch.max(1),
            fps: self.fps,
            progress: !self.quiet,
            ..RunOptions::default()
        };
        if let Some(t) = self.threads {
            run.threads = t;
        }
        run.interrupt = interrupt_flag();
        Ok(ReplayConfig {
            dump: self.dump.clone(),
            open: self.layout.to_open_options(),
            scan: self.scan,
            serpentine: self.serpentine,
            allow_partial: self.allow_partial,
            bin: self.bin,
            crop: self.crop,
            virtual_detectors: self.virtual_detectors.clone(),
            center: self.center,
            bf_radius: self.bf_radius,
            mrad_per_px: self.mrad_per_px,
            run,
            out: self.out.clone(),
        })
    }
}

/// Runs `ptyflow replay`.
pub fn run(args: Args) -> Result<()> {
    let config = args.to_config()?;
    let mut outcome = replay(&config, None)?;
    write_report(&config.out, &mut outcome)?;
    let r = &outcome.report;
    eprintln!(
        "ptyflow: {} frames read, {} processed, {} dropped in {:.3} s ({:.0} frames/s); outputs in {}",
        r.counters.frames_read,
        r.counters.frames_processed,
        r.counters.frames_dropped,
        r.counters.wall_s,
        r.fps_overall,
        config.out.display()
    );
    if r.counters.interrupted {
        return Err(Error::Interrupted(format!(
            "stopped after {} of {} frames; what was computed is in {}",
            r.counters.frames_processed,
            r.frames_in_file,
            config.out.display()
        )));
    }
    Ok(())
}
