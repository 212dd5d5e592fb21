//! The memory budget: every buffer whose size follows from the configuration (frame geometry,
//! scan shape, detectors, binning, threads, buffer pool, reconstruction window, padding and
//! object) is estimated with checked arithmetic and summed *before* anything is allocated, and a
//! job that does not fit is refused at once with an [`Error::Memory`] that names the parameter
//! to change, the size it would need and the limit. The big buffers themselves are then
//! allocated fallibly ([`try_filled`], [`try_with_capacity`]), so an estimate that is short still
//! ends in an error, never in an abort ("memory allocation of … bytes failed").
//!
//! # The budget
//! - Default: **75 % of physical memory** (`MemTotal` in `/proc/meminfo`, or the cgroup's
//!   memory limit when that is lower; 8 GB where neither can be read).
//! - Override, first found wins: `ptyflow replay --memory-budget SIZE`; the C API's
//!   `memory_budget` (struct field in bytes, or JSON key: a number of bytes or a SIZE string);
//!   the environment variable `PTYFLOW_MEMORY_BUDGET=SIZE` (every face).
//! - SIZE: bytes (`1500000000`), with a decimal unit (`500M`, `18G`, `18GB`, `1.5T`), a binary
//!   unit (`16GiB`, `512MiB`), a percentage of physical memory (`50%`), or `unlimited` (the
//!   allocations stay fallible).
//!
//! # What is counted
//! Per reduction worker: the statistics of the stage frame (sum and sum of squares, 16 bytes
//! per pixel, plus the binning scratch) and the per-frame values (dose and detector
//! coefficients); the label tables and centre-of-mass masks; the scan-shaped results; the
//! frame readers' decode buffers or the push buffer pool; the thread stacks; and with a
//! reconstruction the object (with its previews), the pattern store (`4·M²` bytes per scan
//! position), the scan positions, the window buffers of every sweep thread and the probe. The
//! estimate is an upper bound of what set-up and the results allocate, not an exact count.

use std::fmt;

use ptyflow_core::{FrameGeometry, MAX_BIN_FACTOR, Window};

use crate::pipeline::detectors::VirtualSpec;
use crate::pipeline::push::PushOptions;
use crate::pipeline::recon::{OBJECT_MARGIN_PX, ReconRequest};
use crate::pipeline::replay::{ReplayConfig, resolve_scan};
use crate::source::{Dump, PixelKind};
use crate::{Error, Result};

/// Percentage of physical memory a job may use by default.
pub const DEFAULT_PERCENT: u64 = 75;

/// The environment variable every face reads when the budget is not given explicitly.
pub const ENV_VAR: &str = "PTYFLOW_MEMORY_BUDGET";

/// Physical memory assumed where it cannot be read (not Linux): 8 GB.
pub const FALLBACK_PHYSICAL: u64 = 8_000_000_000;

/// Stack reserved per thread (std's default), counted for every thread a job starts.
const THREAD_STACK: u64 = 2 << 20;

/// How much memory a job may use, where that number came from, and how to change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBudget {
    bytes: u64,
    origin: String,
    hint: String,
}

impl MemoryBudget {
    /// A budget of `bytes`; `origin` says where it came from (shown in errors), `hint` how to
    /// change it (e.g. `--memory-budget or PTYFLOW_MEMORY_BUDGET`).
    pub fn new(bytes: u64, origin: impl Into<String>, hint: impl Into<String>) -> Self {
        MemoryBudget {
            bytes,
            origin: origin.into(),
            hint: hint.into(),
        }
    }

    /// No limit (allocations still fail with an error rather than aborting).
    pub fn unlimited() -> Self {
        MemoryBudget::new(u64::MAX, "unlimited", ENV_VAR)
    }

    /// The default: [`DEFAULT_PERCENT`] of [`physical_memory`].
    pub fn default_for_machine(hint: impl Into<String>) -> Self {
        let (physical, what) = match physical_memory() {
            Some(p) => (p, "physical memory"),
            None => (
                FALLBACK_PHYSICAL,
                "assumed memory (physical memory unknown)",
            ),
        };
        MemoryBudget::new(
            physical / 100 * DEFAULT_PERCENT,
            format!("{DEFAULT_PERCENT} % of {} {what}", human(physical)),
            hint,
        )
    }

    /// The budget a face asks for: `given` (a SIZE from the face's own option, named
    /// `option`), else [`ENV_VAR`], else the default. Errors name the option or the variable.
    pub fn resolve(given: Option<&str>, option: &str) -> Result<Self> {
        let hint = format!("{option} or {ENV_VAR}");
        if let Some(text) = given {
            let bytes = parse_size(text, option)?;
            return Ok(MemoryBudget::new(bytes, format!("{option} {text}"), hint));
        }
        match std::env::var(ENV_VAR) {
            Ok(text) if !text.trim().is_empty() => {
                let bytes = parse_size(&text, ENV_VAR)?;
                Ok(MemoryBudget::new(bytes, format!("{ENV_VAR}={text}"), hint))
            }
            _ => Ok(MemoryBudget::default_for_machine(hint)),
        }
    }

    /// The limit in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Where the limit came from (`75 % of 24.7 GB physical memory`, `--memory-budget 8G` …).
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.bytes == u64::MAX {
            return write!(f, "unlimited ({})", self.origin);
        }
        write!(f, "{} ({})", human(self.bytes), self.origin)
    }
}

/// Physical memory in bytes: `MemTotal` from `/proc/meminfo`, lowered to the memory limit of
/// this process's cgroup (v2 `memory.max`, v1 `memory.limit_in_bytes`) when that is smaller.
/// `None` where neither can be read.
pub fn physical_memory() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .and_then(|kb| kb.checked_mul(1024))
    });
    match (total, cgroup_limit()) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// The memory limit of this process's cgroup, if it has one.
fn cgroup_limit() -> Option<u64> {
    let read = |path: String| -> Option<u64> {
        std::fs::read_to_string(path)
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
    };
    let groups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut limit = None;
    for line in groups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let found = if controllers.is_empty() {
            read(format!("/sys/fs/cgroup{path}/memory.max"))
        } else if controllers.split(',').any(|c| c == "memory") {
            read(format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"))
                .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes".into()))
        } else {
            None
        };
        // v1 says "no limit" with a number near 2^63.
        if let Some(v) = found.filter(|&v| v < 1 << 62) {
            limit = Some(limit.map_or(v, |l: u64| l.min(v)));
        }
    }
    limit
}

/// Parses a SIZE (see the [module docs](self)); errors name `option`.
pub fn parse_size(text: &str, option: &str) -> Result<u64> {
    let bad = |why: &str| {
        Error::param(
            option,
            format!(
                "`{text}`: {why}; expected bytes, a size such as 500M, 18G, 16GiB, a share of \
                 physical memory such as 50%, or `unlimited`"
            ),
        )
    };
    let t = text.trim().to_ascii_lowercase();
    if t == "unlimited" || t == "none" {
        return Ok(u64::MAX);
    }
    if let Some(p) = t.strip_suffix('%') {
        let p: f64 = p.trim().parse().map_err(|_| bad("not a percentage"))?;
        if !(p.is_finite() && p > 0.0 && p <= 100.0) {
            return Err(bad("a percentage must lie in (0, 100]"));
        }
        let physical = physical_memory().unwrap_or(FALLBACK_PHYSICAL);
        return Ok((physical as f64 * p / 100.0) as u64);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '+'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "p" | "pb" => 1e15,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => return Err(bad(&format!("unknown unit `{other}`"))),
    };
    let n: f64 = number.parse().map_err(|_| bad("not a number"))?;
    let bytes = n * unit;
    if !(bytes.is_finite() && bytes >= 1.0) {
        return Err(bad("the budget must be at least 1 byte"));
    }
    if bytes >= u64::MAX as f64 {
        return Ok(u64::MAX);
    }
    Ok(bytes as u64)
}

/// A byte count for people: `512 B`, `3.7 MB`, `10.7 TB` (decimal units).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1000.0;
    let mut unit = 0;
    while v >= 999.95 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn human_opt(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "a size beyond 64 bits".into(), human)
}

/// The checked product of `dims` times `elem` bytes; `None` on overflow.
pub fn bytes_of(dims: &[usize], elem: usize) -> Option<u64> {
    dims.iter()
        .try_fold(elem as u64, |acc, &d| acc.checked_mul(d as u64))
}

fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    a?.checked_add(b?)
}

fn mul(a: Option<u64>, b: u64) -> Option<u64> {
    a?.checked_mul(b)
}

/// The checked product of `dims` (a buffer's element count); an [`Error::Memory`] naming
/// `name` when it overflows.
pub fn checked_len(dims: &[usize], name: &str, what: &str) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            Error::memory(
                name,
                format!(
                    "{what}: {} elements overflow the address space",
                    dims.join(" × ")
                ),
                None,
                None,
            )
        })
}

/// An empty vector with room for exactly `len` elements, or an [`Error::Memory`] naming
/// `name` when the allocator refuses (instead of aborting the process).
pub fn try_with_capacity<T>(len: usize, name: &str, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        let need = bytes_of(&[len], std::mem::size_of::<T>());
        Error::memory(
            name,
            format!(
                "{what}: {len} elements ({}) could not be allocated",
                human_opt(need)
            ),
            need,
            None,
        )
    })?;
    Ok(v)
}

/// `vec![value; len]`, allocated fallibly (see [`try_with_capacity`]).
pub fn try_filled<T: Clone>(len: usize, value: T, name: &str, what: &str) -> Result<Vec<T>> {
    let mut v = try_with_capacity(len, name, what)?;
    v.resize(len, value);
    Ok(v)
}

/// One buffer (or set of buffers) of a job's estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The parameter that sets its size, as the CLI spells it (`--step`, `--scan`, `width ×
    /// height` for the frame geometry, `batch_frames` …).
    pub name: &'static str,
    /// What it is, e.g. `a 1158692 × 1158692 object from 70000 Å steps …`.
    pub what: String,
    /// Bytes; `None` when the size overflows 64 bits.
    pub bytes: Option<u64>,
    /// The smallest piece of it that cannot be split (one frame, one worker's statistics):
    /// when that alone exceeds the budget, its parameter is the one to blame.
    pub unit: Option<(&'static str, String, Option<u64>)>,
}

/// A job's memory estimate: the sum of its [`Need`]s, checked against a [`MemoryBudget`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryPlan {
    needs: Vec<Need>,
}

impl MemoryPlan {
    /// An empty plan.
    pub fn new() -> Self {
        MemoryPlan::default()
    }

    /// Adds a need.
    pub fn add(&mut self, name: &'static str, what: impl Into<String>, bytes: Option<u64>) {
        self.needs.push(Need {
            name,
            what: what.into(),
            bytes,
            unit: None,
        });
    }

    /// Adds a need made of pieces: `unit` is one piece (its parameter, what it is, bytes).
    pub fn add_units(
        &mut self,
        name: &'static str,
        what: impl Into<String>,
        bytes: Option<u64>,
        unit: (&'static str, String, Option<u64>),
    ) {
        self.needs.push(Need {
            name,
            what: what.into(),
            bytes,
            unit: Some(unit),
        });
    }

    /// Appends `other`'s needs.
    pub fn extend(&mut self, other: MemoryPlan) {
        self.needs.extend(other.needs);
    }

    /// The needs, in the order they were added.
    pub fn needs(&self) -> &[Need] {
        &self.needs
    }

    /// Total bytes; `None` when the sum overflows 64 bits.
    pub fn total(&self) -> Option<u64> {
        self.needs
            .iter()
            .try_fold(0u64, |a, n| a.checked_add(n.bytes?))
    }

    /// `Ok` when the total fits `budget`; otherwise an [`Error::Memory`] naming the parameter
    /// of the largest need, or of its indivisible piece when that alone exceeds the budget.
    pub fn check(&self, budget: &MemoryBudget) -> Result<()> {
        let total = self.total();
        if total.is_some_and(|t| t <= budget.bytes) {
            return Ok(());
        }
        // Each need speaks through its indivisible piece when that alone exceeds the budget;
        // the largest (an overflow first) names the parameter.
        let over = |b: &Option<u64>| b.is_none_or(|b| b > budget.bytes);
        let Some((name, what, bytes)) = self
            .needs
            .iter()
            .map(|n| match &n.unit {
                Some((name, what, bytes)) if over(bytes) => (*name, what, *bytes),
                _ => (n.name, &n.what, n.bytes),
            })
            .max_by_key(|c| c.2.unwrap_or(u64::MAX))
        else {
            return Ok(());
        };
        let whole = match (total, bytes) {
            (Some(t), _) if self.needs.len() > 1 => format!("; the job needs {} in all", human(t)),
            (None, Some(_)) => "; the job's total overflows 64 bits".into(),
            _ => String::new(),
        };
        Err(Error::memory(
            name,
            format!(
                "{what} ({}{whole}), more than the memory budget of {}; change the job, or \
                 the budget with {}",
                human_opt(bytes),
                budget,
                budget.hint
            ),
            total,
            Some(budget.bytes),
        ))
    }
}

/// The sizes of a reduction: what [`ReducePlan::new`](crate::pipeline::reduce::ReducePlan::new)
/// and one [`Reducer`](crate::pipeline::reduce::Reducer) per worker allocate, and the results.
#[derive(Debug, Clone, Copy)]
pub struct ReductionSize<'a> {
    /// Incoming frames.
    pub frame: FrameGeometry,
    /// Their pixel type.
    pub pixel: PixelKind,
    /// Bin factor.
    pub bin: usize,
    /// Crop window of the unbinned frame.
    pub crop: Option<Window>,
    /// Virtual detectors.
    pub detectors: &'a [VirtualSpec],
    /// Frames the run processes (length of the per-frame values).
    pub frames: usize,
    /// Scan shape `(rows, cols)` (the results are scan-shaped).
    pub scan: (usize, usize),
    /// Reduction worker threads.
    pub threads: usize,
}

impl ReductionSize<'_> {
    /// The estimate.
    pub fn plan(&self) -> MemoryPlan {
        let mut plan = MemoryPlan::new();
        let (fw, fh) = (self.frame.width(), self.frame.height());
        let (w, h) = self
            .crop
            .map_or((fw, fh), |c| (c.width.min(fw), c.height.min(fh)));
        let b = self.bin.clamp(1, MAX_BIN_FACTOR);
        let (sw, sh) = ((w / b).max(1), (h / b).max(1));
        let area_name = if self.crop.is_some() {
            "--crop"
        } else {
            "width × height"
        };
        let stage = format!("{sw} × {sh} stage frame");
        let threads = self.threads.max(1);
        // Sum and sum of squares (u64 or f64) per pixel, plus the binning scratch (u32/f32).
        let per_pixel = 16 + if b > 1 || self.crop.is_some() { 4 } else { 0 };
        let one = bytes_of(&[sw, sh], per_pixel);
        plan.add_units(
            "--threads",
            format!("the per-pixel statistics of {threads} worker(s) on the {stage}"),
            mul(one, threads as u64),
            (
                area_name,
                format!("the per-pixel statistics of one worker on the {stage}"),
                one,
            ),
        );
        let labels = self
            .detectors
            .iter()
            .filter(|d| **d != VirtualSpec::Com)
            .count();
        if labels > 0 {
            let table = bytes_of(&[sw, sh], 6);
            plan.add_units(
                area_name,
                format!("label tables of {labels} virtual detector(s) on the {stage}"),
                mul(table, labels as u64),
                (area_name, format!("one label table of the {stage}"), table),
            );
        }
        if self.detectors.contains(&VirtualSpec::Com) {
            plan.add(
                area_name,
                format!("centre-of-mass masks on the {stage}"),
                bytes_of(&[sw, sh], 12),
            );
        }
        let coeffs: usize = self
            .detectors
            .iter()
            .map(|d| match *d {
                VirtualSpec::BrightField | VirtualSpec::Adf { .. } => 1,
                VirtualSpec::Rings { n, .. } => n,
                VirtualSpec::Dpc => 4,
                VirtualSpec::Com => 2,
            })
            .fold(0usize, usize::saturating_add);
        let per_worker = bytes_of(&[self.frames], 8)
            .and_then(|dose| bytes_of(&[self.frames, coeffs], 4).and_then(|c| dose.checked_add(c)));
        let (rows, cols) = self.scan;
        plan.add_units(
            "--scan",
            format!(
                "the per-frame values, dose and {coeffs} detector coefficients, of {} frames \
                 on {threads} worker(s)",
                self.frames
            ),
            mul(per_worker, threads as u64),
            (
                "--scan",
                format!("one worker's per-frame values of {} frames", self.frames),
                per_worker,
            ),
        );
        // Scan-shaped results: dose and every channel (+ sums and previews), as f32, plus the
        // per-frame values taken out of the reducer.
        let channels = coeffs.saturating_mul(3).saturating_add(4);
        let results = add(
            bytes_of(&[rows, cols, channels], 4),
            bytes_of(&[self.frames, coeffs], 4),
        );
        plan.add(
            "--scan",
            format!("the results over the {rows} × {cols} scan"),
            results,
        );
        // Mean and variance (f64, then f32) and their previews.
        plan.add(
            area_name,
            format!("the mean and variance patterns of the {stage}"),
            bytes_of(&[sw, sh], 32),
        );
        plan.extend(thread_stacks(threads, "--threads"));
        plan
    }
}

/// The stacks of `threads` threads.
pub fn thread_stacks(threads: usize, name: &'static str) -> MemoryPlan {
    let mut plan = MemoryPlan::new();
    plan.add(
        name,
        format!("the stacks of {threads} thread(s)"),
        (threads as u64).checked_mul(THREAD_STACK),
    );
    plan
}

/// The push pipeline's buffer pool ([`PushPipeline::start`](crate::pipeline::push::PushPipeline::start)):
/// `queue_batches + threads + 1` batches of `batch_frames` frames.
pub fn push_pool(frame: FrameGeometry, pixel: PixelKind, opts: &PushOptions) -> MemoryPlan {
    let mut plan = MemoryPlan::new();
    let threads = opts.threads.max(1);
    let batch = opts.batch_frames.max(1);
    let pool = opts
        .queue_batches
        .max(1)
        .checked_add(threads)
        .and_then(|p| p.checked_add(1));
    let frame_bytes = bytes_of(&[frame.width(), frame.height()], pixel.bytes());
    let (name, pool_text) = match pool {
        Some(p) => ("batch_frames", p.to_string()),
        None => (
            "queue_batches",
            format!("{} + {threads} + 1", opts.queue_batches),
        ),
    };
    let bytes = pool.and_then(|p| mul(mul(frame_bytes, batch as u64), p as u64));
    plan.add_units(
        name,
        format!(
            "the push buffer pool of {pool_text} batches of {batch} {} × {} {} frames",
            frame.width(),
            frame.height(),
            pixel.name()
        ),
        // The pool's channel holds one slot per batch.
        add(bytes, pool.and_then(|p| bytes_of(&[p], 16))),
        (
            "width × height",
            format!(
                "one {} × {} {} frame of the push buffer pool",
                frame.width(),
                frame.height(),
                pixel.name()
            ),
            frame_bytes,
        ),
    );
    plan
}

/// The online reconstruction [`ReconRequest::build`] makes for `frame`-sized frames and a
/// `rows × cols` scan, with `threads` sweep threads: object (and its previews), pattern store,
/// positions, window buffers and probe. Parameters that `build` would refuse (a zero bin, a
/// non-finite pixel size) add nothing here: `build` then reports them.
pub fn recon(
    request: &ReconRequest,
    frame: FrameGeometry,
    (rows, cols): (usize, usize),
    threads: usize,
) -> MemoryPlan {
    let mut plan = MemoryPlan::new();
    let size = request.window.unwrap_or(frame.width());
    let bin = request.bin.max(1);
    let binned = size / bin;
    let window_name = if request.pad > 0 {
        "--recon-pad"
    } else {
        "--recon-window"
    };
    let Some(m) = request
        .pad
        .checked_mul(2)
        .and_then(|p| p.checked_add(binned))
    else {
        plan.add(
            "--recon-pad",
            format!(
                "a reconstruction window of {binned} + 2 × {} pixels",
                request.pad
            ),
            None,
        );
        return plan;
    };
    let threads = threads.max(1);
    // Per sweep thread: five window buffers (Complex32) and the FFT scratch.
    let scratch = add(bytes_of(&[m, m], 40), bytes_of(&[m], 32));
    // Probe (real and spectrum), its sampling (Complex64 spectrum and FFT), the prepared and
    // staged pattern, the binned window.
    let fixed = add(
        bytes_of(&[m, m], 16 + 32 + 8),
        bytes_of(&[binned, binned], 8),
    );
    plan.add_units(
        window_name,
        format!("the buffers of the {m} × {m} reconstruction window for {threads} sweep thread(s)"),
        add(mul(scratch, threads as u64), fixed),
        (
            window_name,
            format!("one set of buffers of the {m} × {m} reconstruction window"),
            add(scratch, fixed),
        ),
    );
    let n = (rows as u64).checked_mul(cols as u64);
    let per_pattern = add(bytes_of(&[m, m], 4), Some(21));
    plan.add(
        "--scan",
        format!(
            "the pattern store kept for --sweeps, {rows} × {cols} patterns of {m} × {m} floats"
        ),
        n.and_then(|n| mul(per_pattern, n)),
    );
    plan.add(
        "--scan",
        format!("the positions of the {rows} × {cols} scan"),
        n.and_then(|n| n.checked_mul(80)),
    );
    let dx = crate::optics::window_pixel_angstrom(request.kv, m, request.mrad_per_px * bin as f64);
    let step = request.step_angstrom;
    if m >= 2 && dx.is_finite() && dx > 0.0 && step.is_finite() && step > 0.0 {
        let scan = crate::recon::RasterScan {
            step_angstrom: [step; 2],
            shape: [rows, cols],
            rotation_deg: request.scan_rotation_deg,
        };
        let steps = format!("{step} Å steps over the {rows} × {cols} scan at {dx:.4} Å per pixel");
        match scan.object_shape_bound(dx, m, OBJECT_MARGIN_PX) {
            // The object (Complex32), the lit-region map and two previews (f32 each), the C
            // API's interleaved copy.
            Some([r, c]) => plan.add_units(
                "--step",
                format!("{steps} make a {r} × {c} object and its previews"),
                bytes_of(&[r, c], 8 + 4 + 8 + 8),
                (
                    "--step",
                    format!("{steps} make a {r} × {c} object"),
                    bytes_of(&[r, c], 8),
                ),
            ),
            None => plan.add("--step", format!("{steps} make an object"), None),
        }
    }
    plan
}

/// Everything a replay allocates: the reduction, the frame readers and, with `reconstruction`, the
/// reconstruction (run with `config.run.threads` sweep threads).
pub fn replay(
    config: &ReplayConfig,
    dump: &Dump,
    reconstruction: Option<&ReconRequest>,
) -> Result<MemoryPlan> {
    let info = dump.info();
    let (scan, frames) = resolve_scan(config, dump)?;
    let frame = FrameGeometry::new(info.width, info.height)
        .map_err(|e| Error::core(info.path.display().to_string(), e))?;
    let threads = config.run.threads.max(1);
    let crop = config.crop.map(|(x0, y0, width, height)| Window {
        x0,
        y0,
        width,
        height,
    });
    let mut plan = ReductionSize {
        frame,
        pixel: info.pixel,
        bin: config.bin,
        crop,
        detectors: &config.virtual_detectors,
        frames,
        scan: (scan.rows(), scan.cols()),
        threads,
    }
    .plan();
    // One decode buffer per reader (workers, the consumer, the disc estimate) when frames
    // cannot be handed out from the map, and the mean pattern of the disc estimate.
    let readers = if info.zero_copy { 0 } else { threads + 2 };
    plan.add(
        "width × height",
        format!(
            "frame readers' buffers for {} × {} frames",
            info.width, info.height
        ),
        add(
            bytes_of(&[info.width, info.height, readers], 4),
            bytes_of(&[info.width, info.height], 8),
        ),
    );
    if let Some(request) = reconstruction {
        plan.extend(recon(request, frame, (scan.rows(), scan.cols()), threads));
        plan.extend(thread_stacks(1, "--threads"));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_every_unit() {
        let p = |s: &str| parse_size(s, "--memory-budget");
        assert_eq!(p("1500").unwrap(), 1500);
        assert_eq!(p("500M").unwrap(), 500_000_000);
        assert_eq!(p("18G").unwrap(), 18_000_000_000);
        assert_eq!(p("18 GB").unwrap(), 18_000_000_000);
        assert_eq!(p("1.5t").unwrap(), 1_500_000_000_000);
        assert_eq!(p("16GiB").unwrap(), 16 << 30);
        assert_eq!(p("unlimited").unwrap(), u64::MAX);
        assert!(p("50%").unwrap() > 0);
        for bad in ["", "0", "-1G", "12 parsecs", "150%", "0%", "nan", "1e400"] {
            let e = p(bad).expect_err(bad).to_string();
            assert!(e.contains("--memory-budget"), "{bad}: {e}");
        }
    }

    #[test]
    fn bytes_read_like_people_write_them() {
        assert_eq!(human(999), "999 B");
        assert_eq!(human(3_700_000), "3.7 MB");
        assert_eq!(human(10_740_000_000_000), "10.7 TB");
        assert_eq!(human(u64::MAX), "18.4 EB");
    }

    #[test]
    fn physical_memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let p = physical_memory().expect("MemTotal");
            assert!(p > 100_000_000, "{p}");
        }
    }

    #[test]
    fn the_check_names_the_largest_need_or_the_piece_that_cannot_fit() {
        let budget = MemoryBudget::new(1000, "a test", "--memory-budget");
        let mut plan = MemoryPlan::new();
        plan.add("--scan", "the store", Some(600));
        plan.add("--step", "the object", Some(300));
        assert!(plan.check(&budget).is_ok());
        plan.add("--step", "a second object", Some(500));
        let e = plan.check(&budget).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("parameter `--scan`: the store (600 B; the job needs 1.4 kB in all), more than the memory budget of 1.0 kB (a test)"), "{msg}");
        assert!(matches!(
            e,
            Error::Memory {
                needed: Some(1400),
                budget: Some(1000),
                ..
            }
        ));
        plan.add_units(
            "--threads",
            "per-worker tables",
            Some(4000),
            ("width × height", "one table".into(), Some(2000)),
        );
        let msg = plan.check(&budget).unwrap_err().to_string();
        assert!(
            msg.starts_with("parameter `width × height`: one table (2.0 kB;"),
            "{msg}"
        );
        plan.add("--scan", "an overflow", None);
        let msg = plan.check(&budget).unwrap_err().to_string();
        assert!(msg.contains("an overflow (a size beyond 64 bits)"), "{msg}");
    }

    #[test]
    fn fallible_allocations_return_errors() {
        let e = try_filled(usize::MAX / 2, 0u64, "--scan", "the store").unwrap_err();
        assert!(e.to_string().contains("--scan") && e.to_string().contains("the store"));
        assert!(checked_len(&[usize::MAX, 2], "--scan", "x").is_err());
        assert_eq!(try_filled(3, 7u8, "n", "w").unwrap(), vec![7, 7, 7]);
    }
}
