//! The one configuration of a job, as every face spells it: the CLI builds it from flags, the
//! C API from its struct or JSON, the Python package from keyword arguments.
//!
//! Field paths (`scan.shape`, `recon.window`, `optics.kv`, …) are the names the library uses
//! in its errors; [`FIELDS`] lists each with the `ptyflow replay` flag that sets it, so the
//! CLI can speak of flags instead.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::optics::Optics;
use crate::pipeline::detectors::VirtualSpec;
use crate::recon::{AutoStep, MethodOptions, ObjectConstraint};
use crate::source::{Format, OpenOptions, PixelKind, RawDtype, RawOverrides};
use crate::{Error, Result};

/// Everything a job needs: where the frames come from, how they are reduced and
/// reconstructed, how the threads run and where the results go. JSON: an object with these
/// keys (only `source` is required); unknown keys are an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Where the frames come from.
    pub source: Source,
    /// The scan: its shape and order.
    #[serde(default)]
    pub scan: ScanConfig,
    /// The per-frame reduction: binning, crop, virtual detectors, bright-field disc.
    #[serde(default)]
    pub reduce: ReduceConfig,
    /// The physics of the acquisition (the reconstruction's, and the detector sampling).
    /// For a dump, what is not given here is taken from its sidecar (`"optics"` in
    /// `<dump>.json`), by the reconstruction only.
    #[serde(default)]
    pub optics: Optics,
    /// The online reconstruction; absent: none.
    #[serde(default)]
    pub recon: Option<ReconConfig>,
    /// The compression of paper 002 ([`crate::job::compress()`]); absent: none. Left out of
    /// the JSON when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<super::compress::CompressConfig>,
    /// Threads, queues, pacing and the memory budget.
    #[serde(default)]
    pub run: RunConfig,
    /// Output directory for `.npy`, `.png` and `report.json` (created if missing); absent:
    /// nothing is written, the results are returned.
    #[serde(default)]
    pub out: Option<PathBuf>,
}

/// Where the frames come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// A recorded dump, memory-mapped and replayed ([`crate::job::replay`]).
    Dump(DumpSource),
    /// Frames a program pushes one at a time ([`crate::job::PushSession`]).
    Push(PushSource),
    /// A Merlin detector's TCP data port ([`crate::job::live`]).
    Merlin(MerlinSource),
    /// A generated stream of frames, no file needed (soaks, tests; replayed by
    /// [`crate::job::replay`], see [`crate::source::synthetic`]).
    Synthetic(SyntheticSource),
    /// A DECTRIS detector's stream interface, ZeroMQ ([`crate::job::live`]).
    Dectris(DectrisSource),
}

/// A DECTRIS detector (ARINA, QUADRO, EIGER) streaming over its SIMPLON stream interface,
/// version 1 ([`crate::source::live::bslz4`] decodes the frames). The frame geometry, pixel
/// type and encoding come from the images' own `dimage_d-1.0` parts; the scan shape must be
/// given (`scan.shape`). Needs the `dectris` feature (on by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DectrisSource {
    /// The stream interface, `HOST:PORT` (a DECTRIS detector control unit serves 9999).
    pub address: String,
    /// Give up when no message arrives for this long (seconds); absent: wait as long as the
    /// detector takes (it may be waiting to be armed and triggered).
    #[serde(default)]
    pub timeout_s: Option<f64>,
}

/// A generated stream of `u16` frames ([`crate::source::Dump::synthetic`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSource {
    /// Frames in the stream.
    pub frames: usize,
    /// Frame width in pixels.
    pub width: usize,
    /// Frame height in pixels.
    pub height: usize,
    /// Distinct frames the stream cycles through (generated once); absent: 64.
    #[serde(default)]
    pub distinct: Option<usize>,
}

/// A Quantum Detectors Merlin streaming over TCP ([`crate::source::live::merlin`]). The
/// frame geometry and pixel type come from the first frame's header; the scan shape must be
/// given (`scan.shape`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerlinSource {
    /// The data port, `HOST:PORT` (a Merlin listens on 6342).
    pub address: String,
    /// Give up when connecting, or when no data arrives, for this long (seconds); absent:
    /// wait as long as the detector takes (it may be waiting for its trigger).
    #[serde(default)]
    pub timeout_s: Option<f64>,
}

/// A recorded dump and how to read it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DumpSource {
    /// The file (raw with its `.json` sidecar, Merlin `.mib`, EMPAD `.raw` or `.xml`, NumPy
    /// `.npy`).
    pub path: PathBuf,
    /// The format; absent: detected (see [`crate::source`]).
    #[serde(default)]
    pub format: Option<Format>,
    /// Raw dumps: frame width in pixels (overrides the sidecar).
    #[serde(default)]
    pub width: Option<usize>,
    /// Raw dumps: frame height in pixels.
    #[serde(default)]
    pub height: Option<usize>,
    /// Raw dumps: how each pixel is stored.
    #[serde(default)]
    pub dtype: Option<RawDtype>,
    /// Raw dumps: big-endian pixels (absent: the sidecar's, else little-endian).
    #[serde(default)]
    pub big_endian: Option<bool>,
    /// Raw dumps: bytes before the first frame.
    #[serde(default)]
    pub header_bytes: Option<u64>,
    /// Raw dumps: bytes before the pixels of every frame.
    #[serde(default)]
    pub frame_header_bytes: Option<u64>,
    /// Raw dumps: bytes after the pixels of every frame.
    #[serde(default)]
    pub frame_footer_bytes: Option<u64>,
    /// The dump is still being written (raw dumps): process frames as they land, until the
    /// scan (`scan.shape`, else the sidecar's `frames` or `scan`) is complete or no frame has
    /// come for `idle_timeout_s` ([`crate::source::Dump::open_growing`]).
    #[serde(default)]
    pub follow: bool,
    /// With `follow`: seconds without a new frame after which the run ends with the frames
    /// so far (written, then an error); absent: 10 s.
    #[serde(default)]
    pub idle_timeout_s: Option<f64>,
}

impl DumpSource {
    /// A dump at `path`, format detected.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DumpSource {
            path: path.into(),
            ..DumpSource::default()
        }
    }

    /// How [`crate::source::Dump::open`] is to read it.
    pub fn open_options(&self) -> OpenOptions {
        OpenOptions {
            format: self.format,
            raw: RawOverrides {
                width: self.width,
                height: self.height,
                dtype: self.dtype,
                big_endian: self.big_endian,
                header_bytes: self.header_bytes,
                frame_header_bytes: self.frame_header_bytes,
                frame_footer_bytes: self.frame_footer_bytes,
            },
        }
    }
}

/// Frames pushed by a program: their geometry and pixel type.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushSource {
    /// Frame width in pixels (columns).
    pub width: usize,
    /// Frame height in pixels (rows).
    pub height: usize,
    /// Pixel type, native byte order.
    pub pixel: PixelKind,
}

/// The scan.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanConfig {
    /// `[rows, cols]`, rows the slow axis; absent: the dump's metadata (a push job needs it).
    #[serde(default)]
    pub shape: Option<[usize; 2]>,
    /// Odd rows run right to left.
    #[serde(default)]
    pub serpentine: bool,
    /// Replay a dump whose frame count does not fill the scan (missing positions are NaN;
    /// frames beyond the scan are not read).
    #[serde(default)]
    pub allow_partial: bool,
    /// Frames recorded at each position, one after the other (paper 000: 8); a dump then
    /// holds `rows × cols × K` frames. Absent: the dump's sidecar
    /// (`"frames_per_position"` in `<dump>.json`, written by `ptyflow simulate`), else 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames_per_position: Option<usize>,
    /// How many of each position's frames (the first ones) are summed into its pattern;
    /// absent: all of them. 8, 4, 2, 1 of 8 make paper 000's dose series.
    #[serde(default)]
    pub use_frames: Option<usize>,
}

impl ScanConfig {
    /// The frames per position (1 when not given) and the frames summed, checked.
    pub fn grouping(&self) -> Result<crate::pipeline::positions::Grouping> {
        crate::pipeline::positions::Grouping::new(
            self.frames_per_position.unwrap_or(1),
            self.use_frames,
        )
    }

    /// [`ScanConfig::grouping`] for the dump at `dump`: frames per position as given, else
    /// as its sidecar says (`"frames_per_position"` in `<dump>.json`), else 1.
    pub fn grouping_for(
        &self,
        dump: &std::path::Path,
    ) -> Result<crate::pipeline::positions::Grouping> {
        let k = self
            .frames_per_position
            .or_else(|| sidecar_frames_per_position(dump))
            .unwrap_or(1);
        crate::pipeline::positions::Grouping::new(k, self.use_frames)
    }
}

/// `"frames_per_position"` of the sidecar beside `dump` (`<dump>.json`), when there is one
/// holding a positive integer there.
fn sidecar_frames_per_position(dump: &std::path::Path) -> Option<usize> {
    let mut name = dump.as_os_str().to_owned();
    name.push(".json");
    let text = std::fs::read_to_string(std::path::PathBuf::from(name)).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let k = value.get("frames_per_position")?.as_u64()?;
    usize::try_from(k).ok().filter(|&k| k > 0)
}

/// The unit of virtual-detector radii and of `reduce.bf_radius`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RadiusUnit {
    /// Unbinned detector pixels.
    Px,
    /// Milliradians, through `optics.mrad_per_px`.
    Mrad,
}

/// The per-frame reduction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReduceConfig {
    /// Sum `bin × bin` blocks of pixels before the detectors and statistics (1…16).
    #[serde(default = "one")]
    pub bin: usize,
    /// Use only this window of each frame: `[x0, y0, width, height]`, unbinned pixels.
    #[serde(default)]
    pub crop: Option<[usize; 4]>,
    /// Virtual detectors: `bf`, `adf:INNER:OUTER`, `rings:N:INNER:OUTER`, `dpc`, `com`.
    #[serde(default, rename = "virtual")]
    pub detectors: Vec<VirtualSpec>,
    /// Bright-field disc centre `[x, y]` in unbinned pixels; absent: found from the mean of
    /// up to 256 frames (a dump only).
    #[serde(default)]
    pub center: Option<[f64; 2]>,
    /// Bright-field disc radius; absent: found from the mean pattern (a dump only).
    #[serde(default)]
    pub bf_radius: Option<f64>,
    /// Unit of the radii; absent: mrad when `optics.mrad_per_px` is given in this
    /// configuration, else pixels (a sidecar's sampling does not change the unit).
    #[serde(default)]
    pub radius_unit: Option<RadiusUnit>,
    /// Add float frames that hold a NaN or an infinity to the statistics as they are. By
    /// default they are left out, counted (`frames_nonfinite`) and NaN in every image, so
    /// one bad frame cannot poison the mean, the variance or the reconstruction.
    #[serde(default)]
    pub keep_nonfinite: bool,
}

impl Default for ReduceConfig {
    fn default() -> Self {
        ReduceConfig {
            bin: 1,
            crop: None,
            detectors: Vec::new(),
            center: None,
            bf_radius: None,
            radius_unit: None,
            keep_nonfinite: false,
        }
    }
}

/// The reconstruction algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReconMethod {
    /// ePIE: object and probe (Maiden & Rodenburg 2009).
    #[default]
    Epie,
    /// Wirtinger flow with a known probe and the loss of paper 001.
    Wf,
}

/// The online reconstruction: algorithm, window and options. Steps and sweeps left out are
/// chosen from the data ([`crate::recon::schedule`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconConfig {
    /// `epie` or `wf`.
    #[serde(default)]
    pub method: ReconMethod,
    /// Wirtinger-flow loss: `poisson`, `amplitude`, `mse` or `l1`.
    #[serde(default = "poisson")]
    pub loss: String,
    /// A probe (complex64 `.npy`, M × M, centred) instead of one from the optics.
    #[serde(default)]
    pub probe: Option<PathBuf>,
    /// Transpose every pattern (swap detector x and y) before it is used.
    #[serde(default)]
    pub transpose: bool,
    /// Side of the window on the detector, unbinned pixels, centred on the disc; absent:
    /// the whole (square) frame.
    #[serde(default)]
    pub window: Option<usize>,
    /// Bin factor of the window.
    #[serde(default = "one")]
    pub bin: usize,
    /// Zero pixels added on each side of the binned window.
    #[serde(default)]
    pub pad: usize,
    /// Passes over the buffered patterns after the scan; absent: as many as fit ~2 s.
    #[serde(default)]
    pub sweeps: Option<usize>,
    /// ePIE object step α; absent: automatic.
    #[serde(default)]
    pub alpha_step: Option<f32>,
    /// ePIE probe step β; absent: automatic.
    #[serde(default)]
    pub beta_step: Option<f32>,
    /// ePIE: start updating the probe after this many updates; absent: from the first sweep.
    #[serde(default)]
    pub probe_after: Option<u64>,
    /// ePIE: hold the probe when the patterns average fewer counts than this.
    #[serde(default = "probe_min_counts")]
    pub probe_min_counts: f64,
    /// Wirtinger-flow step μ; absent: automatic.
    #[serde(default)]
    pub wf_step: Option<f32>,
    /// ε in counts of the Poisson and amplitude losses.
    #[serde(default = "epsilon")]
    pub epsilon: f32,
    /// ε relative to each pattern's mean count per pixel; absent: the loss's default.
    #[serde(default)]
    pub epsilon_relative: Option<f32>,
    /// Truncated Poisson gradient with this α_h (paper 003); absent: off.
    #[serde(default)]
    pub truncation: Option<f32>,
    /// Weight μ₀ of the Tikhonov gradient prior; 0: off.
    #[serde(default)]
    pub tikhonov: f32,
    /// What the object's modulus may be: `passive` (|O| ≤ 1), `phase` (|O| = 1) or `free`.
    #[serde(default = "passive")]
    pub object_constraint: String,
    /// Automatic steps: target phase noise σ* of the last pass, radians.
    #[serde(default = "step_noise")]
    pub step_noise: f64,
    /// Automatic steps: the total step Σγ the passes add up to at least.
    #[serde(default = "step_total")]
    pub step_total: f64,
    /// Automatic steps: the online pass's step over the last pass's (≥ 1).
    #[serde(default = "step_start")]
    pub step_start: f64,
}

impl Default for ReconConfig {
    fn default() -> Self {
        ReconConfig {
            method: ReconMethod::Epie,
            loss: poisson(),
            probe: None,
            transpose: false,
            window: None,
            bin: 1,
            pad: 0,
            sweeps: None,
            alpha_step: None,
            beta_step: None,
            probe_after: None,
            probe_min_counts: probe_min_counts(),
            wf_step: None,
            epsilon: epsilon(),
            epsilon_relative: None,
            truncation: None,
            tikhonov: 0.0,
            object_constraint: passive(),
            step_noise: step_noise(),
            step_total: step_total(),
            step_start: step_start(),
        }
    }
}

impl ReconConfig {
    /// The algorithm options in the engine's terms.
    pub fn method_options(&self) -> MethodOptions<'_> {
        MethodOptions {
            alpha_step: self.alpha_step,
            beta_step: self.beta_step,
            probe_after: self.probe_after,
            probe_min_counts: self.probe_min_counts,
            loss: &self.loss,
            wf_step: self.wf_step,
            epsilon: self.epsilon,
            epsilon_relative: self.epsilon_relative,
            truncation: self.truncation,
            tikhonov: self.tikhonov,
            auto_step: AutoStep {
                noise_rad: self.step_noise,
                total_gamma: self.step_total,
                start_factor: self.step_start,
                ..AutoStep::default()
            },
        }
    }
}

/// A memory budget as configured: bytes, or a size such as `"8G"`, `"50%"`, `"unlimited"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MemorySize {
    /// Bytes (0: the default).
    Bytes(u64),
    /// A size with a unit (see [`crate::budget::parse_size`]).
    Text(String),
}

/// How the threads run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Reduction worker threads (also the sweeps' threads); absent: the available cores.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Frames per message between the source and the workers; absent: 64 for a dump, 32
    /// for pushed frames.
    #[serde(default)]
    pub batch_frames: Option<usize>,
    /// Pushed frames: batches that may be in flight (the queue depth); absent: 8.
    #[serde(default)]
    pub queue_batches: Option<usize>,
    /// Pushed frames: wait while the queue is full (true), or refuse the frame.
    #[serde(default = "yes")]
    pub blocking: bool,
    /// A dump: hand out frames at this rate, like a detector (frames per second).
    #[serde(default)]
    pub fps: Option<f64>,
    /// Memory the job may use, checked before the first frame; absent (or 0):
    /// `$PTYFLOW_MEMORY_BUDGET`, else 75 % of physical memory.
    #[serde(default)]
    pub memory_budget: Option<MemorySize>,
    /// A replay: sample the process's resident memory every this many seconds, into the
    /// report's `rss_samples` (`[seconds, bytes, frames processed]` each), off the hot path.
    #[serde(default)]
    pub sample_memory_s: Option<f64>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            threads: None,
            batch_frames: None,
            queue_batches: None,
            blocking: true,
            fps: None,
            memory_budget: None,
            sample_memory_s: None,
        }
    }
}

impl RunConfig {
    /// Worker threads: as given, else one per available core.
    pub fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The memory budget: `memory_budget`, else `$PTYFLOW_MEMORY_BUDGET`, else the default.
    pub fn budget(&self) -> Result<crate::budget::MemoryBudget> {
        let given = match &self.memory_budget {
            None | Some(MemorySize::Bytes(0)) => None,
            Some(MemorySize::Bytes(n)) => Some(n.to_string()),
            Some(MemorySize::Text(t)) => Some(t.clone()),
        };
        crate::budget::MemoryBudget::resolve(given.as_deref(), "run.memory_budget")
    }
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn poisson() -> String {
    "poisson".into()
}
fn passive() -> String {
    "passive".into()
}
fn probe_min_counts() -> f64 {
    crate::recon::EpieParams::default().probe_min_counts
}
fn epsilon() -> f32 {
    1e-4
}
fn step_noise() -> f64 {
    AutoStep::default().noise_rad
}
fn step_total() -> f64 {
    AutoStep::default().total_gamma
}
fn step_start() -> f64 {
    AutoStep::default().start_factor
}

/// Each configuration field with the `ptyflow replay` flag that sets it (the CLI renames the
/// library's errors with it).
pub const FIELDS: &[(&str, &str)] = &[
    ("source.dump.path", "DUMP"),
    ("source.dump.format", "--format"),
    ("source.dump.width", "--width"),
    ("source.dump.height", "--height"),
    ("source.dump.dtype", "--dtype"),
    ("source.dump.big_endian", "--big-endian"),
    ("source.dump.header_bytes", "--header-bytes"),
    ("source.dump.frame_header_bytes", "--frame-header-bytes"),
    ("source.dump.frame_footer_bytes", "--frame-footer-bytes"),
    ("source.dump.follow", "--follow"),
    ("source.dump.idle_timeout_s", "--idle-timeout"),
    ("source.synthetic.frames", "--synthetic"),
    ("source.synthetic.width", "--synthetic"),
    ("source.synthetic.height", "--synthetic"),
    ("source.synthetic.distinct", "--synthetic"),
    ("source.merlin.address", "--merlin"),
    ("source.merlin.timeout_s", "--timeout"),
    ("source.dectris.address", "--dectris"),
    ("source.dectris.timeout_s", "--timeout"),
    ("scan.shape", "--scan"),
    ("scan.serpentine", "--serpentine"),
    ("scan.allow_partial", "--allow-partial"),
    ("scan.frames_per_position", "--frames-per-position"),
    ("scan.use_frames", "--use"),
    ("reduce.bin", "--bin"),
    ("reduce.crop", "--crop"),
    ("reduce.virtual", "--virtual"),
    ("reduce.center", "--center"),
    ("reduce.bf_radius", "--bf-radius"),
    ("reduce.keep_nonfinite", "--keep-nonfinite"),
    ("optics.kv", "--kv"),
    ("optics.alpha_mrad", "--alpha"),
    ("optics.defocus_angstrom", "--defocus"),
    ("optics.cs_mm", "--cs"),
    ("optics.astigmatism_angstrom", "--astigmatism"),
    ("optics.astigmatism_angle_deg", "--astigmatism-angle"),
    ("optics.mrad_per_px", "--mrad-per-px"),
    ("optics.step_angstrom", "--step"),
    ("optics.scan_rotation_deg", "--scan-rotation"),
    ("optics.probe_kind", "--probe-kind"),
    ("recon.method", "--recon"),
    ("recon.loss", "--loss"),
    ("recon.probe", "--probe"),
    ("recon.transpose", "--flip"),
    ("recon.window", "--recon-window"),
    ("recon.bin", "--recon-bin"),
    ("recon.pad", "--recon-pad"),
    ("recon.sweeps", "--sweeps"),
    ("recon.alpha_step", "--alpha-step"),
    ("recon.beta_step", "--beta-step"),
    ("recon.probe_after", "--probe-after"),
    ("recon.probe_min_counts", "--probe-min-counts"),
    ("recon.wf_step", "--wf-step"),
    ("recon.epsilon", "--epsilon"),
    ("recon.epsilon_relative", "--epsilon-relative"),
    ("recon.truncation", "--truncation"),
    ("recon.tikhonov", "--tikhonov"),
    ("recon.object_constraint", "--object-constraint"),
    ("recon.step_noise", "--step-noise"),
    ("recon.step_total", "--step-total"),
    ("recon.step_start", "--step-start"),
    ("compress.basis", "--basis"),
    ("compress.dark_field", "--dark-field"),
    ("compress.dark_outer", "--dark-outer"),
    ("compress.values", "--values"),
    ("compress.seed", "--seed"),
    ("run.threads", "--threads"),
    ("run.batch_frames", "--batch"),
    ("run.fps", "--fps"),
    ("run.memory_budget", "--memory-budget"),
    ("run.sample_memory_s", "--sample-memory"),
    ("out", "--out"),
];

impl JobConfig {
    /// A job on the dump at `path` with every default: the reduction's statistics and dose
    /// map, no detectors, no reconstruction, nothing written.
    pub fn dump(path: impl Into<PathBuf>) -> Self {
        JobConfig {
            source: Source::Dump(DumpSource::new(path)),
            scan: ScanConfig::default(),
            reduce: ReduceConfig::default(),
            optics: Optics::default(),
            recon: None,
            compress: None,
            run: RunConfig::default(),
            out: None,
        }
    }

    /// Parses a JSON configuration; an error names the field (`reduce.virtual[1]`, …).
    pub fn from_json(text: &str) -> Result<Self> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let name = if path == "." { "configuration" } else { &path };
            Error::param(name, e.into_inner().to_string())
        })
    }

    /// Checks every value that can be checked without the data: ranges, units, names. What
    /// needs the frames (a crop inside the frame, a disc for the detectors) is checked when
    /// the job starts. Errors name the field.
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: Option<f64>| match v {
            Some(v) if !(v.is_finite() && v > 0.0) => Err(Error::param(
                name,
                format!("{v}: expected a finite value > 0"),
            )),
            _ => Ok(()),
        };
        if let Source::Push(p) = &self.source {
            ptyflow_core::FrameGeometry::new(p.width, p.height).map_err(|e| {
                Error::core(
                    format!("source.push: width {} × height {}", p.width, p.height),
                    e,
                )
            })?;
            if self.scan.shape.is_none() {
                return Err(Error::param(
                    "scan.shape",
                    "pushed frames need the scan shape [rows, cols]",
                ));
            }
        }
        // A dump's K may come from its sidecar: checked with it when the replay opens the dump.
        let from_sidecar =
            self.scan.frames_per_position.is_none() && matches!(self.source, Source::Dump(_));
        let grouping = if from_sidecar {
            Default::default()
        } else {
            self.scan.grouping()?
        };
        if grouping.sums() && !matches!(self.source, Source::Dump(_)) {
            return Err(Error::param(
                "scan.frames_per_position",
                "pushed and streamed frames are one pattern each: sum a position's frames before",
            ));
        }
        if let Source::Dump(d) = &self.source {
            positive("source.dump.idle_timeout_s", d.idle_timeout_s)?;
            if d.idle_timeout_s.is_some() && !d.follow {
                return Err(Error::param(
                    "source.dump.idle_timeout_s",
                    "is the idle timeout of a followed dump: set `source.dump.follow` too",
                ));
            }
        }
        let live = match &self.source {
            Source::Merlin(m) => Some(("merlin", &m.address, m.timeout_s, "the data port", 6342)),
            Source::Dectris(d) => Some((
                "dectris",
                &d.address,
                d.timeout_s,
                "the stream interface",
                9999,
            )),
            _ => None,
        };
        if let Some((kind, address, timeout_s, what, port)) = live {
            if !address.contains(':') {
                return Err(Error::param(
                    format!("source.{kind}.address"),
                    format!("`{address}`: expected HOST:PORT ({what}, e.g. 127.0.0.1:{port})"),
                ));
            }
            positive(&format!("source.{kind}.timeout_s"), timeout_s)?;
            if self.scan.shape.is_none() {
                return Err(Error::param(
                    "scan.shape",
                    "a live source needs the scan shape [rows, cols]",
                ));
            }
            if self.run.fps.is_some() {
                return Err(Error::param(
                    "run.fps",
                    "a live source runs at the detector's rate; pacing is for dumps",
                ));
            }
        }
        if let Some([rows, cols]) = self.scan.shape
            && (rows == 0 || cols == 0)
        {
            return Err(Error::param(
                "scan.shape",
                format!("{rows} × {cols}: rows and columns must be positive integers"),
            ));
        }
        let r = &self.reduce;
        if !(1..=ptyflow_core::MAX_BIN_FACTOR).contains(&r.bin) {
            return Err(Error::param(
                "reduce.bin",
                format!("{}: expected 1..={}", r.bin, ptyflow_core::MAX_BIN_FACTOR),
            ));
        }
        if let Some([_, _, w, h]) = r.crop
            && (w == 0 || h == 0)
        {
            return Err(Error::param(
                "reduce.crop",
                format!("width {w} × height {h}: expected W, H > 0"),
            ));
        }
        positive("reduce.bf_radius", r.bf_radius)?;
        if let Some([x, y]) = r.center
            && !(x.is_finite() && y.is_finite())
        {
            return Err(Error::param(
                "reduce.center",
                format!("({x}, {y}): expected finite values"),
            ));
        }
        if r.radius_unit == Some(RadiusUnit::Mrad) && self.optics.mrad_per_px.is_none() {
            return Err(Error::param(
                "reduce.radius_unit",
                "radii in mrad need `optics.mrad_per_px`",
            ));
        }
        self.optics.validate()?;
        if let Some(t) = self.run.threads.filter(|&t| t == 0) {
            return Err(Error::param("run.threads", format!("{t}: need at least 1")));
        }
        positive("run.fps", self.run.fps)?;
        positive("run.sample_memory_s", self.run.sample_memory_s)?;
        self.run.budget()?;
        if let Some(recon) = &self.recon {
            let options = recon.method_options();
            let wf = recon.method == ReconMethod::Wf;
            options.method(wf)?;
            options.schedule(wf)?;
            ObjectConstraint::from_name(&recon.object_constraint)?;
        }
        if let Some(c) = &self.compress {
            c.validate()?;
        }
        Ok(())
    }

    /// The detector sampling the reduction's radii are converted with: `Some` when radii
    /// are in mrad ([`ReduceConfig::radius_unit`]).
    pub fn radii_mrad_per_px(&self) -> Option<f64> {
        match self.reduce.radius_unit {
            Some(RadiusUnit::Px) => None,
            Some(RadiusUnit::Mrad) | None => self.optics.mrad_per_px,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_the_field() {
        let e = JobConfig::from_json(
            r#"{"source": {"dump": {"path": "x"}}, "reduce": {"virtual": ["bf", "adf:3"]}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("reduce.virtual[1]") && e.contains("adf:3"),
            "{e}"
        );
        let e =
            JobConfig::from_json(r#"{"source": {"dump": {"path": "x"}}, "recon": {"windw": 3}}"#)
                .unwrap_err()
                .to_string();
        assert!(e.contains("recon") && e.contains("windw"), "{e}");
        let e = JobConfig::from_json(r#"{"scan": {}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("source"), "{e}");
    }

    #[test]
    fn validate_names_the_field() {
        let mut c = JobConfig::dump("x.raw");
        c.reduce.bin = 17;
        assert!(c.validate().unwrap_err().to_string().contains("reduce.bin"));
        let mut c = JobConfig::dump("x.raw");
        c.recon = Some(ReconConfig {
            alpha_step: Some(3.0),
            ..ReconConfig::default()
        });
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("recon.alpha_step"), "{e}");
        let mut c = JobConfig::dump("x.raw");
        c.run.threads = Some(0);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("run.threads")
        );
    }

    #[test]
    fn a_merlin_source_is_configured_by_json_and_checked() {
        let c = JobConfig::from_json(
            r#"{"source": {"merlin": {"address": "127.0.0.1:6342", "timeout_s": 5}},
                "scan": {"shape": [4, 2]}}"#,
        )
        .unwrap();
        assert_eq!(
            c.source,
            Source::Merlin(MerlinSource {
                address: "127.0.0.1:6342".into(),
                timeout_s: Some(5.0)
            })
        );
        c.validate().unwrap();
        let mut bad = c.clone();
        bad.scan.shape = None;
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("scan.shape")
        );
        let mut bad = c.clone();
        bad.source = Source::Merlin(MerlinSource {
            address: "localhost".into(),
            timeout_s: None,
        });
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("source.merlin.address"), "{e}");
        let mut bad = c;
        bad.run.fps = Some(10.0);
        assert!(bad.validate().unwrap_err().to_string().contains("run.fps"));
    }

    #[test]
    fn a_config_round_trips_through_json() {
        let mut c = JobConfig::dump("scan.raw");
        c.reduce.detectors = vec![VirtualSpec::BrightField, VirtualSpec::Com];
        c.recon = Some(ReconConfig::default());
        c.optics.kv = Some(80.0);
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(JobConfig::from_json(&text).unwrap(), c);
    }
}
