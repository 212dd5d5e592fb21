//! `ptyflow replay`: flags → [`JobConfig`] → [`crate::job::replay`].

use std::path::PathBuf;

use clap::Args as ClapArgs;

use super::dump_args::DumpArgs;
use crate::job::{
    self, Hooks, JobConfig, MemorySize, ReconConfig, ReconMethod, ReduceConfig, RunConfig,
    ScanConfig, Source, SyntheticSource,
};
use crate::optics::Optics;
use crate::pipeline::detectors::VirtualSpec;
use crate::recon::AutoStep;
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
    /// The dump to replay (raw with its `.json` sidecar or the layout flags, Merlin `.mib`,
    /// EMPAD `.raw`, NumPy `.npy` of 4D [scan_y, scan_x, det_y, det_x] or 3D [frames, det_y,
    /// det_x]: then give --scan).
    #[arg(required_unless_present = "synthetic")]
    pub dump: Option<PathBuf>,

    /// Replay a generated stream instead of a dump: FRAMES frames of WIDTH × HEIGHT u16
    /// pixels cycling through 64 distinct generated frames, no file needed (soaks; give
    /// --scan). E.g. --synthetic 10000000x256x256.
    #[arg(long, value_name = "FRAMESxWIDTHxHEIGHT", value_parser = parse_synthetic, conflicts_with = "dump")]
    pub synthetic: Option<SyntheticSource>,

    /// How to read the dump (format, raw layout).
    #[command(flatten)]
    pub layout: DumpArgs,

    /// The dump is still being written (raw dumps): process its frames as they land and end
    /// when the scan is complete (--scan, else the sidecar's frames or scan). A partly
    /// written last frame waits until it is whole. Needs --center and --bf-radius when
    /// detectors are asked for (the disc cannot be found before the frames exist).
    #[arg(long)]
    pub follow: bool,

    /// With --follow: seconds without a new frame after which the replay stops, writes what
    /// arrived and exits with code 2 (frames expected and received in report.json).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 10.0,
        requires = "follow"
    )]
    pub idle_timeout: f64,

    /// The scan, the reduction, the reconstruction, the run and the outputs.
    #[command(flatten)]
    pub job: JobArgs,
}

/// The flags every job shares, whatever its source (`replay`, `live`): the scan, the
/// reduction, the reconstruction, the run and the outputs.
#[derive(Debug, ClapArgs)]
pub struct JobArgs {
    /// Scan shape ROWSxCOLS (rows are the slow axis). Default: from the dump's metadata.
    #[arg(long, value_name = "ROWSxCOLS", value_parser = parse_scan)]
    pub scan: Option<(usize, usize)>,

    /// The scan runs serpentine: odd rows right to left.
    #[arg(long)]
    pub serpentine: bool,

    /// Frames recorded at each scan position, one after the other (paper 000 recorded 8
    /// frames of 2 ms per position); the dump then holds ROWS × COLS × K frames. Default:
    /// the dump's sidecar (`ptyflow simulate --frames-per-position` writes it), else 1.
    #[arg(long, value_name = "K")]
    pub frames_per_position: Option<usize>,

    /// Sum the first N of each position's K frames into its pattern (8, 4, 2, 1 of 8 make a
    /// dose series from one acquisition). Default: all K.
    #[arg(long = "use", value_name = "N")]
    pub use_frames: Option<usize>,

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

    /// Add float frames holding NaN or Inf to the statistics as they are. By default they are
    /// left out (NaN at their scan position, counted in report.json `frames_nonfinite`).
    #[arg(long)]
    pub keep_nonfinite: bool,

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

    /// Memory the job may use, checked before the first frame: bytes, 500M, 18G, 16GiB,
    /// 50% (of physical memory) or `unlimited`. A job that needs more is refused at once,
    /// naming the flag that sets the size. Default: $PTYFLOW_MEMORY_BUDGET, else 75 % of
    /// physical memory.
    #[arg(long, value_name = "SIZE")]
    pub memory_budget: Option<String>,

    /// Sample the resident memory every SECONDS while frames are replayed, into
    /// report.json's rss_samples ([seconds, bytes, frames processed] each): for soaks.
    #[arg(long, value_name = "SECONDS", hide_short_help = true)]
    pub sample_memory: Option<f64>,

    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Reconstruct the specimen online, one update per arriving pattern.
    #[command(flatten)]
    pub recon: ReconArgs,
}

/// The reconstruction flags of `ptyflow replay`. Optics left out here are taken from the
/// dump's sidecar (`"optics"` in `<dump>.json`, written by `ptyflow simulate`).
#[derive(Debug, Clone, ClapArgs)]
#[command(next_help_heading = "Reconstruction (ptychography)")]
pub struct ReconArgs {
    /// Reconstruct with `epie` (object and probe; Maiden & Rodenburg 2009) or `wf`
    /// (Wirtinger flow with a known probe and the --loss of paper 001).
    #[arg(long, value_name = "METHOD", value_parser = ["epie", "wf"])]
    pub recon: Option<String>,

    /// Wirtinger-flow loss: poisson (counting noise, paper 001 eq. 2), amplitude (eq. 3),
    /// mse (eq. 4) or l1 (eq. 5).
    #[arg(long, default_value = "poisson", value_parser = ["poisson", "amplitude", "mse", "l1"])]
    pub loss: String,

    /// Accelerating voltage in kV (sets the electron wavelength).
    #[arg(long, value_name = "KV")]
    pub kv: Option<f64>,

    /// Convergence semi-angle α of the probe in mrad.
    #[arg(long, value_name = "MRAD")]
    pub alpha: Option<f64>,

    /// Defocus in Å; positive = underfocus (C10 = −defocus, the abTEM convention).
    #[arg(long, value_name = "ANGSTROM", allow_negative_numbers = true)]
    pub defocus: Option<f64>,

    /// Spherical aberration Cs in mm.
    #[arg(long, value_name = "MM", allow_negative_numbers = true)]
    pub cs: Option<f64>,

    /// The phase plate in the probe-forming aperture (paper 003's three probes): `defocus`
    /// (none: aperture and aberrations only), `fzp:F` (binary 0/π Fresnel zone plate of focal
    /// length F Å; zone n where n ≤ λF|k|² < n+1; use with --defocus 0 for paper 003's FZP
    /// probe F from focus) or `random:SEED[:CELL[:RANGE]]` (random phase plate: square cells of
    /// CELL mrad, default α/10, each with a phase uniform in [0, RANGE) rad, default 2π, drawn
    /// from SEED). Default: the dump's sidecar, else defocus.
    #[arg(long, value_name = "KIND")]
    pub probe_kind: Option<crate::optics::ProbeKind>,

    /// Use this probe (complex64 .npy, M × M, centred) instead of one from the optics.
    #[arg(long, value_name = "FILE.npy")]
    pub probe: Option<PathBuf>,

    /// Scan step in Å (between rows and between columns).
    #[arg(long, value_name = "ANGSTROM")]
    pub step: Option<f64>,

    /// Rotation of the scan grid relative to the detector, degrees.
    #[arg(long, value_name = "DEG", allow_negative_numbers = true)]
    pub scan_rotation: Option<f64>,

    /// Transpose every pattern (swap detector x and y) before reconstructing; with
    /// --scan-rotation this covers every detector orientation.
    #[arg(long)]
    pub flip: bool,

    /// Side of the reconstruction window on the detector, unbinned pixels, centred on the
    /// bright-field disc. Default: the whole (square) frame.
    #[arg(long, value_name = "PX")]
    pub recon_window: Option<usize>,

    /// Bin the reconstruction window by this factor (the window then has
    /// recon-window/recon-bin pixels; the real-space pixel is λ/(M·θ_pixel)).
    #[arg(long, default_value_t = 1, value_name = "B")]
    pub recon_bin: usize,

    /// Zero-pad the binned window by this many pixels on each side: a finer real-space
    /// pixel λ/(M·θ) for the larger M, with the angles beyond the window treated as measured
    /// zeros (an approximation for data whose signal lies inside it, e.g. a bright-field crop).
    #[arg(long, default_value_t = 0, value_name = "PX")]
    pub recon_pad: usize,

    /// Extra passes over the buffered patterns after the scan (one online pass
    /// under-converges). Default: as many as fit ~2 s of single-thread updates, 4 to 20
    /// (16 for 1600 patterns of 128 × 128, 20 for the bundled fixture).
    #[arg(long, value_name = "K")]
    pub sweeps: Option<usize>,

    /// ePIE object step α (0…2). Default: chosen per pass from the dose per object pixel
    /// and the overlap, falling to the step whose shot noise settles at ~0.005 rad (see
    /// report.json `loss_history[].step`); giving it fixes α for every update.
    #[arg(long, value_name = "A")]
    pub alpha_step: Option<f32>,

    /// ePIE probe step β (0…2); 0 keeps the probe fixed. Default with automatic steps:
    /// 2/N for N scan positions (each pass adds up to two full probe corrections; every
    /// pattern's shot noise otherwise pulls the one shared probe around); 0.1 when
    /// --alpha-step is given.
    #[arg(long, value_name = "B")]
    pub beta_step: Option<f32>,

    /// ePIE: start updating the probe after this many updates (default: from the first sweep).
    #[arg(long, value_name = "N")]
    pub probe_after: Option<u64>,

    /// ePIE: hold the probe when the patterns average fewer counts than this (at low dose,
    /// refining the probe on shot noise ruins the reconstruction); 0 = refine at any dose.
    #[arg(long, default_value_t = 1e4, value_name = "COUNTS")]
    pub probe_min_counts: f64,

    /// Wirtinger-flow step μ (relative; 1 ≈ one ePIE step). Default: chosen per pass like
    /// ePIE's α; giving it fixes μ for every update.
    #[arg(long, value_name = "MU")]
    pub wf_step: Option<f32>,

    /// Automatic steps: target phase noise σ* of the last pass, radians.
    #[arg(long, default_value_t = AutoStep::default().noise_rad, value_name = "RAD", hide_short_help = true)]
    pub step_noise: f64,

    /// Automatic steps: the total step Σγ the passes add up to at least (in full
    /// corrections per pass).
    #[arg(long, default_value_t = AutoStep::default().total_gamma, value_name = "G", hide_short_help = true)]
    pub step_total: f64,

    /// Automatic steps: the online pass's step over the last pass's (≥ 1).
    #[arg(long, default_value_t = AutoStep::default().start_factor, value_name = "S", hide_short_help = true)]
    pub step_start: f64,

    /// ε in counts for the Poisson and amplitude losses (paper 001: 1e-4); the floor of the
    /// dose-relative ε below.
    #[arg(long, default_value_t = 1e-4, value_name = "EPS")]
    pub epsilon: f32,

    /// ε relative to each pattern's mean count per pixel: ε = max(--epsilon, this × N/M²).
    /// Keeps the Poisson update independent of the dose scale; without it (0) the Poisson
    /// loss diverges at high dose from a vacuum start. Default: 0.01 for the Poisson loss,
    /// 0 for the others.
    #[arg(long, value_name = "FRACTION")]
    pub epsilon_relative: Option<f32>,

    /// Truncated Poisson gradient with this α_h (paper 003: ≥ 5); off by default.
    #[arg(long, value_name = "ALPHA_H")]
    pub truncation: Option<f32>,

    /// What the object's modulus may be: `passive` (|O| ≤ 1: a specimen transmits at most
    /// the incident wave; always physical), `phase` (|O| = 1: a pure phase object, e.g. a
    /// 2D material; lowers the noise at low dose further, wrong with amplitude contrast) or
    /// `free`.
    #[arg(long, default_value = "passive", value_parser = ["passive", "phase", "free"])]
    pub object_constraint: String,

    /// Weight μ₀ of the Tikhonov gradient prior (paper 003); 0 = off.
    #[arg(long, default_value_t = 0.0, value_name = "MU0")]
    pub tikhonov: f32,
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

pub(crate) fn parse_pair(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("`{s}`: expected X,Y"))?;
    match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        (Ok(a), Ok(b)) if a.is_finite() && b.is_finite() => Ok((a, b)),
        _ => Err(format!("`{s}`: expected two numbers X,Y")),
    }
}

/// `FRAMESxWIDTHxHEIGHT` of `--synthetic`.
fn parse_synthetic(s: &str) -> Result<SyntheticSource, String> {
    let v: Vec<usize> = s
        .split(['x', 'X'])
        .map(|t| t.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| format!("`{s}`: expected FRAMESxWIDTHxHEIGHT, e.g. 10000000x256x256"))?;
    match v.as_slice() {
        &[frames, width, height] if frames > 0 && width > 0 && height > 0 => Ok(SyntheticSource {
            frames,
            width,
            height,
            distinct: None,
        }),
        _ => Err(format!(
            "`{s}`: expected three positive integers FRAMESxWIDTHxHEIGHT"
        )),
    }
}

pub(crate) fn parse_crop(s: &str) -> Result<(usize, usize, usize, usize), String> {
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
    /// The job these flags describe (validated when it runs).
    pub fn to_config(&self) -> JobConfig {
        let (Some(dump), None) = (&self.dump, self.synthetic) else {
            let synthetic = self.synthetic.expect("clap requires DUMP or --synthetic");
            return self.job.to_config(Source::Synthetic(synthetic));
        };
        let mut source = self.layout.to_source(dump);
        source.follow = self.follow;
        source.idle_timeout_s = self.follow.then_some(self.idle_timeout);
        self.job.to_config(Source::Dump(source))
    }
}

impl JobArgs {
    /// The job these flags describe on `source` (validated when it runs).
    pub fn to_config(&self, source: Source) -> JobConfig {
        let r = &self.recon;
        let optics = Optics {
            kv: r.kv,
            alpha_mrad: r.alpha,
            defocus_angstrom: r.defocus,
            cs_mm: r.cs,
            mrad_per_px: self.mrad_per_px,
            step_angstrom: r.step,
            scan_rotation_deg: r.scan_rotation,
            probe_kind: r.probe_kind,
            ..Optics::default()
        };
        let recon = r.recon.as_deref().map(|method| ReconConfig {
            method: if method == "wf" {
                ReconMethod::Wf
            } else {
                ReconMethod::Epie
            },
            loss: r.loss.clone(),
            probe: r.probe.clone(),
            transpose: r.flip,
            window: r.recon_window,
            bin: r.recon_bin,
            pad: r.recon_pad,
            sweeps: r.sweeps,
            alpha_step: r.alpha_step,
            beta_step: r.beta_step,
            probe_after: r.probe_after,
            probe_min_counts: r.probe_min_counts,
            wf_step: r.wf_step,
            epsilon: r.epsilon,
            epsilon_relative: r.epsilon_relative,
            truncation: r.truncation,
            tikhonov: r.tikhonov,
            object_constraint: r.object_constraint.clone(),
            step_noise: r.step_noise,
            step_total: r.step_total,
            step_start: r.step_start,
        });
        JobConfig {
            source,
            scan: ScanConfig {
                shape: self.scan.map(|(r, c)| [r, c]),
                serpentine: self.serpentine,
                allow_partial: self.allow_partial,
                frames_per_position: self.frames_per_position,
                use_frames: self.use_frames,
            },
            reduce: ReduceConfig {
                bin: self.bin,
                crop: self.crop.map(|(x0, y0, w, h)| [x0, y0, w, h]),
                detectors: self.virtual_detectors.clone(),
                center: self.center.map(|(x, y)| [x, y]),
                bf_radius: self.bf_radius,
                radius_unit: None,
                keep_nonfinite: self.keep_nonfinite,
            },
            optics,
            recon,
            compress: None,
            run: RunConfig {
                threads: self.threads,
                batch_frames: Some(self.batch.max(1)),
                queue_batches: None,
                blocking: true,
                fps: self.fps,
                memory_budget: self.memory_budget.clone().map(MemorySize::Text),
                sample_memory_s: self.sample_memory,
            },
            out: Some(self.out.clone()),
        }
    }
}

/// Runs `ptyflow replay`.
pub fn run(args: Args) -> Result<()> {
    let config = args.to_config();
    let outcome = job::replay(&config, &args.job.hooks())?;
    args.job.conclude(&outcome.report, "read")
}

impl JobArgs {
    /// The progress bar (unless `--quiet`) and the Ctrl-C flag.
    pub fn hooks(&self) -> Hooks {
        Hooks {
            progress: (!self.quiet)
                .then(super::progress::Bar::on_terminal)
                .flatten(),
            interrupt: super::interrupt_flag(),
        }
    }

    /// Prints the one-line summary of a finished job (`frames <verb>`, processed, dropped,
    /// rate) and turns a shrunk dump or an interrupt into its error, after the outputs were
    /// written.
    pub fn conclude(&self, r: &job::JobReport, verb: &str) -> Result<()> {
        eprintln!(
            "ptyflow: {} frames {verb}, {} processed, {} dropped in {:.3} s ({:.0} frames/s); outputs in {}",
            r.counters.frames_read,
            r.counters.frames_processed,
            r.counters.frames_dropped,
            r.counters.wall_s,
            r.fps_overall,
            self.out.display()
        );
        if let Some(changed) = &r.counters.source_changed {
            // As after Ctrl-C, what was computed is written; then the error (exit code 2).
            return Err(Error::Changed(changed.clone()));
        }
        if let Some(idle) = &r.counters.idle_timeout {
            // A followed dump that stopped growing: likewise (exit code 2).
            return Err(Error::file(&idle.path, idle.to_string()));
        }
        if r.counters.interrupted {
            return Err(Error::Interrupted(format!(
                "stopped after {} of {} frames; what was computed is in {}",
                r.counters.frames_processed,
                r.frames_in_file,
                self.out.display()
            )));
        }
        Ok(())
    }
}
