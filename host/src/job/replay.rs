//! A replay: a recorded dump through the reduction and the optional online reconstruction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ptyflow_core::{FrameGeometry, Scan, ScanKind, Window};

use super::config::{DumpSource, JobConfig, ScanConfig, Source};
use super::outputs::{reduction_outputs, write_each, write_failures};
use super::report::{DumpSummary, JobReport};
use super::size::ReductionSize;
use super::{Hooks, JobOutcome, recon, write_report};
use crate::optics::Optics;
use crate::output::ensure_dir;
use crate::pipeline::detectors::{Disc, VirtualSpec, estimate_disc};
use crate::pipeline::reduce::{ReducePlan, Reducer, merge_reducers};
use crate::pipeline::run::{RunOptions, run_keeping};
use crate::source::Dump;
use crate::{Error, Result};

/// Frames per batch between the reader and the workers when `run.batch_frames` is absent.
const DEFAULT_BATCH: usize = 64;

/// The kind of scan the configuration asks for.
pub(super) fn scan_kind(scan: &ScanConfig) -> ScanKind {
    if scan.serpentine {
        ScanKind::Serpentine
    } else {
        ScanKind::Raster
    }
}

/// Resolves the scan shape from the configuration or the dump and checks it against the
/// frame count (`scan.frames_per_position` frames per position). Returns the scan and the
/// number of patterns (positions) to process.
pub fn resolve_scan(config: &ScanConfig, dump: &Dump) -> Result<(Scan, usize)> {
    let info = dump.info();
    let k = config.grouping_for(&info.path)?.per_position;
    let [rows, cols] = config.shape.or(info.scan.map(|(r, c)| [r, c])).ok_or_else(|| {
        Error::param(
            "scan.shape",
            format!(
                "{}: the dump does not say its scan shape; give `scan.shape` ROWSxCOLS ({} frames)",
                info.path.display(),
                info.frames
            ),
        )
    })?;
    let scan =
        Scan::new(rows, cols, scan_kind(config)).map_err(|e| Error::core("scan.shape", e))?;
    let positions = rows * cols;
    if info.frames != positions.saturating_mul(k) && !config.allow_partial {
        let per = if k > 1 {
            format!(" × {k} frames per position")
        } else {
            String::new()
        };
        return Err(Error::param(
            "scan.shape",
            format!(
                "{rows}x{cols} = {positions} positions{per} but {} holds {} frames; \
                 set `scan.allow_partial` to replay anyway",
                info.path.display(),
                info.frames
            ),
        ));
    }
    Ok((scan, (info.frames / k).min(positions)))
}

/// The crop window of the configuration.
pub(super) fn crop_window(config: &JobConfig) -> Option<Window> {
    config.reduce.crop.map(|[x0, y0, width, height]| Window {
        x0,
        y0,
        width,
        height,
    })
}

/// The virtual detectors with their radii in unbinned pixels.
pub(super) fn detectors_px(config: &JobConfig) -> Vec<VirtualSpec> {
    let mrad = config.radii_mrad_per_px();
    config
        .reduce
        .detectors
        .iter()
        .map(|s| s.to_pixels(mrad))
        .collect()
}

/// The report's `parameters`: the reduction and run settings as given.
pub(super) fn parameters(config: &JobConfig, threads: usize, batch: usize) -> serde_json::Value {
    let r = &config.reduce;
    serde_json::json!({
        "bin": r.bin,
        "crop": r.crop,
        "virtual": r.detectors.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "center": r.center,
        "bf_radius": r.bf_radius,
        "mrad_per_px": config.optics.mrad_per_px,
        "threads": threads,
        "batch_frames": batch,
        "fps": config.run.fps,
        "allow_partial": config.scan.allow_partial,
    })
}

/// Runs a replay of the dump `config.source` names (see the [module docs](super) for the
/// order of its steps). With `config.out`, the reduction's outputs are written as soon as the
/// frames are done, the reconstruction's after its sweeps, then `report.json`. An interrupt
/// ([`Hooks::interrupt`]) ends the run early with `report.counters.interrupted` set and
/// everything computed written; so does a dump that shrinks while it is read
/// (`report.counters.source_changed` names the first frame lost; the CLI then fails with
/// [`Error::Changed`], exit code 2).
pub fn replay(config: &JobConfig, hooks: &Hooks) -> Result<JobOutcome> {
    config.validate()?;
    let no_file = DumpSource::default();
    let (dump, source) = match &config.source {
        // A dump still being written is mapped at its finished length; frames are read as
        // they land (`source.dump.follow`).
        Source::Dump(source) if source.follow => {
            let k = config.scan.grouping()?.per_position;
            let frames = config.scan.shape.map(|[r, c]| r * c * k);
            let opts = source.open_options();
            (Dump::open_growing(&source.path, &opts, frames)?, source)
        }
        Source::Dump(source) => (Dump::open(&source.path, &source.open_options())?, source),
        Source::Synthetic(s) => {
            let distinct = s.distinct.unwrap_or(64);
            let dump = Dump::synthetic(s.frames, s.width, s.height, distinct)?;
            (dump, &no_file)
        }
        _ => {
            return Err(Error::param(
                "source",
                "a replay reads a dump: give `source.dump` (or `source.synthetic`)",
            ));
        }
    };
    let info = dump.info().clone();
    let (scan, frames) = resolve_scan(&config.scan, &dump)?;
    let frame = FrameGeometry::new(info.width, info.height)
        .map_err(|e| Error::core(info.path.display().to_string(), e))?;
    let optics = if source.path.as_os_str().is_empty() {
        Optics::default()
    } else {
        Optics::from_sidecar(&source.path)
    };
    let request = recon::request(config, optics)?;
    let threads = config.run.threads();
    let batch = config.run.batch_frames.unwrap_or(DEFAULT_BATCH).max(1);
    let specs = detectors_px(config);
    let crop = crop_window(config);
    // With several frames per position, the stages see each position's summed pattern.
    let grouping = config.scan.grouping_for(&source.path)?;
    let pixel = grouping.pattern_pixel(info.pixel);

    // The whole job, reconstruction included, must fit before anything is built.
    let reduction = ReductionSize {
        frame,
        pixel,
        bin: config.reduce.bin,
        crop,
        detectors: &specs,
        frames,
        scan,
        threads,
    };
    let budget = config.run.budget()?;
    let mut need = super::size::replay(&dump, &reduction, request.as_ref());
    if grouping.sums() {
        need.add(
            "scan.frames_per_position",
            format!("the pattern sums of {} reader(s)", threads + 1),
            crate::budget::bytes_of(&[info.width, info.height, threads + 1], 4),
        );
    }
    need.check(&budget)?;
    if let Some(out) = &config.out {
        ensure_dir(out)?;
    }

    // The disc: given, or found once from the mean pattern when a detector or the
    // reconstruction's window needs it.
    let mut found: Option<Option<Disc>> = None;
    let mut find = || -> Result<Option<Disc>> {
        if source.follow {
            // Its mean pattern would read frames that have not landed.
            return Err(Error::param(
                "reduce.center",
                format!(
                    "{}: a followed dump's disc cannot be found from frames still to come; \
                     give `reduce.center` X,Y and `reduce.bf_radius` R",
                    info.path.display()
                ),
            ));
        }
        if found.is_none() {
            found = Some(estimate_disc(&dump)?);
        }
        Ok(found.expect("just set"))
    };
    let px = |v: f64| config.radii_mrad_per_px().map_or(v, |m| v / m);
    let (center, radius) = (config.reduce.center, config.reduce.bf_radius);
    let (disc, disc_source) = match (center, radius) {
        (Some([cx, cy]), Some(r)) => (Some(Disc { cx, cy, r: px(r) }), "given"),
        (center, radius) if !specs.is_empty() => {
            let Some(d) = find()? else {
                return Err(Error::param(
                    "reduce.center",
                    format!(
                        "{}: no bright-field disc found in the mean pattern; give `reduce.center` X,Y and `reduce.bf_radius` R",
                        info.path.display()
                    ),
                ));
            };
            let disc = Disc {
                cx: center.map_or(d.cx, |c| c[0]),
                cy: center.map_or(d.cy, |c| c[1]),
                r: radius.map_or(d.r, px),
            };
            let source = match (center.is_some(), radius.is_some()) {
                (false, false) => "found in the mean pattern",
                (true, false) => "given centre, radius found",
                (false, true) => "centre found, given radius",
                (true, true) => "given",
            };
            (Some(disc), source)
        }
        _ => (None, ""),
    };
    let mut consumer = match &request {
        None => None,
        Some(request) => {
            let centre = match center {
                Some([x, y]) => Some((x, y)),
                None => find()?.map(|d| (d.cx, d.cy)),
            };
            Some(request.build(frame, &scan, centre)?)
        }
    };
    let mut plan = ReducePlan::new(frame, pixel, config.reduce.bin, crop, &specs, disc, frames)?;
    plan.skip_nonfinite = !config.reduce.keep_nonfinite;
    let plan = Arc::new(plan);

    // With `run.sample_memory_s`, a thread samples the resident memory along the run; the
    // progress is teed to tell it the frames done.
    let monitor = config
        .run
        .sample_memory_s
        .map(|every| RssMonitor::start(Duration::from_secs_f64(every), hooks.progress.clone()));
    let opts = RunOptions {
        threads,
        batch_frames: batch,
        fps: config.run.fps,
        limit: Some(frames),
        progress: match &monitor {
            Some(m) => Some(Arc::clone(&m.progress) as Arc<dyn crate::pipeline::Progress>),
            None => hooks.progress.clone(),
        },
        interrupt: Arc::clone(&hooks.interrupt),
        memory_budget: Some(budget),
        grouping,
        fault_panic_at: fault_panic_at(),
        follow: source
            .follow
            .then(|| Duration::from_secs_f64(source.idle_timeout_s.unwrap_or(10.0))),
    };
    let workers_plan = Arc::clone(&plan);
    let (workers, counters, failure) = run_keeping(
        &dump,
        || Reducer::new(Arc::clone(&workers_plan)),
        consumer
            .as_mut()
            .map(|c| c as &mut dyn crate::pipeline::OrderedConsumer),
        &opts,
    )?;
    let rss_samples = monitor.map(|m| m.finish(counters.frames_processed));
    // A stage that failed mid-run (a worker that panicked): the surviving workers' results
    // are written, the positions the failed one held are NaN, then the error is returned.
    let mut reducer = match merge_reducers(workers) {
        Ok(r) => r,
        Err(e) => return Err(failure.map_or(e, |f| f.error)),
    };
    if let Some(f) = &failure {
        reducer.keep_only(&f.done);
    }
    // A dump that shrank: the positions before the first lost frame are the result (the
    // caller reports the change, as after an interrupt).
    let read = counters
        .source_changed
        .as_ref()
        .map_or(counters.frames_read as usize, |c| {
            (c.frame / grouping.per_position).min(counters.frames_read as usize)
        });
    let arrays = reduction_outputs(&plan, &reducer, &scan, read)?;
    let mut outputs = Vec::new();
    // Files that cannot be written do not stop the others (nor the report).
    let mut write_errors = Vec::new();
    if let Some(out) = &config.out {
        write_errors = write_each(out, &arrays, &mut outputs);
    }

    let dump_summary = DumpSummary {
        path: info.path.display().to_string(),
        format: info.format.name(),
        width: info.width,
        height: info.height,
        stored_dtype: info.stored_dtype.clone(),
        dtype: info.pixel.name(),
        zero_copy: info.zero_copy,
        notes: info.notes.clone(),
    };
    let zero_dose = reducer.dose()[..read].iter().filter(|&&d| d == 0.0).count() as u64;
    let mut report = JobReport::new(
        Some(dump_summary),
        &scan,
        parameters(config, threads, batch),
        &plan,
        disc_source,
        info.frames,
        counters,
        threads,
        outputs,
    );
    report.frames_nonfinite = reducer.frames_nonfinite();
    if let Some(samples) = rss_samples {
        report
            .extra
            .insert("rss_samples".into(), serde_json::json!(samples));
    }
    report.frames_zero_dose = zero_dose;
    if grouping.sums() {
        let doses: Vec<f64> = reducer.dose()[..read]
            .iter()
            .copied()
            .filter(|d| d.is_finite())
            .collect();
        let mean = doses.iter().sum::<f64>() / doses.len().max(1) as f64;
        report.frames_per_position = Some(super::report::FramesPerPosition {
            per_position: grouping.per_position,
            used: grouping.used,
            frames_summed: (read * grouping.used) as u64,
            mean_counts_per_pattern: mean,
        });
    }

    let recon = match (consumer, &request) {
        // After a failure the reconstruction has not seen every frame: not finished.
        (Some(consumer), Some(request)) if failure.is_none() => {
            let result = recon::finish(consumer, request, threads, hooks.progress.as_deref())?;
            if let Some(out) = &config.out {
                if let Err(e) = recon::write(out, &result, &mut report.outputs) {
                    write_errors.push(e);
                }
            }
            add_recon_extras(&mut report, &result);
            Some(result)
        }
        _ => None,
    };
    if let Some(out) = &config.out {
        if !write_errors.is_empty() {
            report.extra.insert(
                "write_errors".into(),
                write_errors.iter().map(|e| e.to_string()).collect(),
            );
        }
        if let Err(e) = write_report(out, &mut report) {
            report.outputs.retain(|o| o != "report.json");
            write_errors.push(e);
        }
    }
    if let Some(f) = failure {
        // Bad input met mid-run (a Merlin header that disagrees) keeps its own error and
        // exit code; a failed stage says what was kept.
        let Error::Pipeline(msg) = f.error else {
            return Err(f.error);
        };
        let kept = match &config.out {
            Some(out) if write_errors.is_empty() => format!("written into {}", out.display()),
            Some(_) => "partly written (some output files could not be)".into(),
            None => "kept".into(),
        };
        return Err(Error::Pipeline(format!(
            "{msg}; the results of the {} of {} frames processed before it were {kept}",
            report.counters.frames_processed, report.counters.frames_read
        )));
    }
    if let Some(out) = &config.out {
        write_failures(out, write_errors)?;
    }
    Ok(JobOutcome {
        report,
        arrays,
        recon,
        reducer,
        plan,
        scan,
    })
}

/// The progress of a replay teed to an [`RssMonitor`]: the frames done, then the caller's.
struct Teed {
    done: AtomicU64,
    inner: Option<Arc<dyn crate::pipeline::Progress>>,
}

impl crate::pipeline::Progress for Teed {
    fn start(&self, what: &str, total: u64) {
        crate::pipeline::run::report(self.inner.as_deref(), |p| p.start(what, total));
    }
    fn set(&self, done: u64) {
        self.done.store(done, Ordering::Relaxed);
        crate::pipeline::run::report(self.inner.as_deref(), |p| p.set(done));
    }
    fn finish(&self) {
        crate::pipeline::run::report(self.inner.as_deref(), |p| p.finish());
    }
    fn waiting(&self, waiting: bool) {
        crate::pipeline::run::report(self.inner.as_deref(), |p| p.waiting(waiting));
    }
}

/// Samples the resident memory of the process (`/proc/self/statm`, Linux) on a thread of
/// its own, every `every`, until [`RssMonitor::finish`]: `[seconds, bytes, frames done]`
/// each, the first at the start and the last at the end. Nothing on the hot path: the
/// frames done are those the reader reports to the progress, batch by batch.
struct RssMonitor {
    progress: Arc<Teed>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<[f64; 3]>>>,
}

impl RssMonitor {
    fn start(every: Duration, inner: Option<Arc<dyn crate::pipeline::Progress>>) -> Self {
        let progress = Arc::new(Teed {
            done: AtomicU64::new(0),
            inner,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (Arc::clone(&progress), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("ptyflow-rss".into())
            .spawn(move || {
                let start = Instant::now();
                let mut samples = Vec::new();
                let mut due = Duration::ZERO;
                loop {
                    let last = s.load(Ordering::Relaxed);
                    if last || start.elapsed() >= due {
                        if let Some(rss) = resident_bytes() {
                            let done = p.done.load(Ordering::Relaxed);
                            samples.push([start.elapsed().as_secs_f64(), rss as f64, done as f64]);
                        }
                        due += every;
                    }
                    if last {
                        return samples;
                    }
                    std::thread::sleep(every.min(Duration::from_millis(20)));
                }
            })
            .ok();
        RssMonitor {
            progress,
            stop,
            thread,
        }
    }

    /// Stops the sampling after a last sample at `done` frames: the samples (none if the
    /// thread could not start).
    fn finish(mut self, done: u64) -> Vec<[f64; 3]> {
        self.progress.done.store(done, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for RssMonitor {
    /// A job that fails before `finish` stops the sampling too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The resident memory of this process in bytes (`None` where `/proc` is absent).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    #[cfg(unix)]
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    #[cfg(not(unix))]
    let page = 4096;
    Some(pages * page)
}

/// The fault-injection hook of the failure tests: `PTYFLOW_FAULT_PANIC_AT=N` makes the
/// reduction worker that gets position `N` panic there ([`RunOptions::fault_panic_at`]).
/// Read once per job; unset in every real run.
fn fault_panic_at() -> Option<usize> {
    std::env::var("PTYFLOW_FAULT_PANIC_AT")
        .ok()
        .and_then(|v| v.parse().ok())
}

/// The report's entries for the reconstruction.
pub(super) fn add_recon_extras(report: &mut JobReport, result: &recon::ReconResult) {
    let engine = &result.engine;
    let extra = &mut report.extra;
    extra.insert(
        "object_pixel_angstrom".into(),
        engine.object_pixel_angstrom().into(),
    );
    extra.insert(
        "object_origin_px".into(),
        serde_json::json!(engine.object_origin_px()),
    );
    extra.insert("reconstruction".into(), result.summary.clone());
}
