//! A replay: a recorded dump through the reduction and the optional online reconstruction.

use std::sync::Arc;

use ptyflow_core::{FrameGeometry, Scan, ScanKind, Window};

use super::config::{JobConfig, ScanConfig, Source};
use super::outputs::{reduction_outputs, write_arrays};
use super::report::{DumpSummary, JobReport};
use super::size::ReductionSize;
use super::{Hooks, JobOutcome, recon, write_report};
use crate::optics::Optics;
use crate::output::ensure_dir;
use crate::pipeline::detectors::{Disc, VirtualSpec, estimate_disc};
use crate::pipeline::reduce::{ReducePlan, Reducer, merge_reducers};
use crate::pipeline::run::{RunOptions, run};
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
    let Source::Dump(source) = &config.source else {
        return Err(Error::param(
            "source",
            "a replay reads a dump: give `source.dump`",
        ));
    };
    let dump = Dump::open(&source.path, &source.open_options())?;
    let info = dump.info().clone();
    let (scan, frames) = resolve_scan(&config.scan, &dump)?;
    let frame = FrameGeometry::new(info.width, info.height)
        .map_err(|e| Error::core(info.path.display().to_string(), e))?;
    let request = recon::request(config, Optics::from_sidecar(&source.path))?;
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

    let opts = RunOptions {
        threads,
        batch_frames: batch,
        fps: config.run.fps,
        limit: Some(frames),
        progress: hooks.progress.clone(),
        interrupt: Arc::clone(&hooks.interrupt),
        memory_budget: Some(budget),
        grouping,
    };
    let workers_plan = Arc::clone(&plan);
    let (workers, counters) = run(
        &dump,
        || Reducer::new(Arc::clone(&workers_plan)),
        consumer
            .as_mut()
            .map(|c| c as &mut dyn crate::pipeline::OrderedConsumer),
        &opts,
    )?;
    let reducer = merge_reducers(workers)?;
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
    if let Some(out) = &config.out {
        write_arrays(out, &arrays, &mut outputs)?;
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
        (Some(consumer), Some(request)) => {
            let result = recon::finish(consumer, request, threads, hooks.progress.as_deref())?;
            if let Some(out) = &config.out {
                recon::write(out, &result, &mut report.outputs)?;
            }
            add_recon_extras(&mut report, &result);
            Some(result)
        }
        _ => None,
    };
    if let Some(out) = &config.out {
        write_report(out, &mut report)?;
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
