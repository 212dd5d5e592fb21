//! `ptyflow replay` as a library call: open a dump, plan the reduction, run the threads, write
//! the outputs (`.npy`, `.png`, `report.json`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use ptyflow_core::{FrameGeometry, Scan, ScanKind, Window};

use super::detectors::{Disc, VirtualSpec, find_bright_field};
use super::reduce::{ReducePlan, Reducer};
use super::run::{Counters, OrderedConsumer, RunOptions, run};
use crate::output::{ensure_dir, write_json, write_npy, write_png};
use crate::source::{Dump, Frame, OpenOptions};
use crate::{Error, Result};

/// Everything a replay needs, validated by [`replay`].
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// The dump to replay.
    pub dump: PathBuf,
    /// How to open it (format and raw layout overrides).
    pub open: OpenOptions,
    /// Scan shape (rows, cols); `None`: from the dump's metadata.
    pub scan: Option<(usize, usize)>,
    /// Serpentine scan (odd rows run right to left).
    pub serpentine: bool,
    /// Accept a dump with fewer (or more) frames than the scan has positions.
    pub allow_partial: bool,
    /// Bin factor for the reduction (1…16).
    pub bin: usize,
    /// Crop window (x0, y0, width, height) of the unbinned frame.
    pub crop: Option<(usize, usize, usize, usize)>,
    /// Virtual detectors.
    pub virtual_detectors: Vec<VirtualSpec>,
    /// Bright-field disc centre (x, y) in unbinned pixels; `None`: found from the mean pattern.
    pub center: Option<(f64, f64)>,
    /// Bright-field disc radius in unbinned pixels (or mrad with `mrad_per_px`).
    pub bf_radius: Option<f64>,
    /// Detector sampling (mrad per unbinned pixel): radii are then in mrad.
    pub mrad_per_px: Option<f64>,
    /// Threads and pacing.
    pub run: RunOptions,
    /// Output directory.
    pub out: PathBuf,
}

/// What a replay did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplayReport {
    /// ptyflow's version.
    pub ptyflow_version: &'static str,
    /// The dump as opened.
    pub dump: DumpSummary,
    /// Scan shape and order.
    pub scan: ScanSummary,
    /// The parameters as given.
    pub parameters: serde_json::Value,
    /// Geometry of the stages.
    pub geometry: GeometrySummary,
    /// The bright-field disc used, and whether it was given or found.
    pub bright_field_disc: Option<DiscSummary>,
    /// Virtual detectors and their outputs.
    pub virtual_detectors: Vec<super::reduce::DetectorSlot>,
    /// Frames in the file.
    pub frames_in_file: usize,
    /// Counters and times of the run.
    #[serde(flatten)]
    pub counters: Counters,
    /// Frames per second over the whole run (frames processed / wall time).
    pub fps_overall: f64,
    /// Frames per second per stage.
    pub stages: Vec<StageRate>,
    /// Files written.
    pub outputs: Vec<String>,
    /// Extra results (e.g. the reconstruction's), merged in by the caller.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The dump in the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DumpSummary {
    /// Path.
    pub path: String,
    /// Format name.
    pub format: &'static str,
    /// Frame width × height.
    pub width: usize,
    /// Frame height.
    pub height: usize,
    /// Pixel type as stored.
    pub stored_dtype: String,
    /// Pixel type delivered.
    pub dtype: &'static str,
    /// Frames read straight from the memory map.
    pub zero_copy: bool,
    /// Notes from the reader.
    pub notes: Vec<String>,
}

/// The scan in the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScanSummary {
    /// Rows (slow axis).
    pub rows: usize,
    /// Columns (fast axis).
    pub cols: usize,
    /// Serpentine order.
    pub serpentine: bool,
}

/// Stage geometry in the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GeometrySummary {
    /// Incoming frame [height, width].
    pub frame: [usize; 2],
    /// Stage frame after cropping and binning [height, width].
    pub stage: [usize; 2],
    /// Bin factor.
    pub bin: usize,
    /// Label-table passes per frame.
    pub label_layers: usize,
}

/// The bright-field disc in the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DiscSummary {
    /// The disc (unbinned pixels).
    #[serde(flatten)]
    pub disc: Disc,
    /// "given", "found" or "given centre, found radius" …
    pub source: String,
}

/// Throughput of one stage.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageRate {
    /// Stage name.
    pub stage: String,
    /// Threads running it.
    pub threads: usize,
    /// Busy time summed over its threads, seconds.
    pub busy_s: f64,
    /// Frames per second of one thread (frames / busy time).
    pub fps_per_thread: f64,
    /// Frames per second of the stage with all its threads (frames / (busy time / threads)).
    pub fps: f64,
}

impl StageRate {
    /// The rate of a stage that handled `frames` in `busy_s` seconds over `threads` threads.
    pub fn new(stage: &str, threads: usize, frames: u64, busy_s: f64) -> Self {
        let per_thread = if busy_s > 0.0 {
            frames as f64 / busy_s
        } else {
            0.0
        };
        StageRate {
            stage: stage.into(),
            threads,
            busy_s,
            fps_per_thread: per_thread,
            fps: per_thread * threads as f64,
        }
    }
}

/// The reduced data of a replay, for callers that want more than the files.
#[derive(Debug)]
pub struct ReplayOutcome {
    /// The report (also written as `report.json`).
    pub report: ReplayReport,
    /// Merged worker state: statistics, dose map, detector values.
    pub reducer: Reducer,
    /// The plan the workers ran.
    pub plan: Arc<ReducePlan>,
    /// Scan order.
    pub scan: Scan,
}

/// Frames sampled (evenly over the dump) to find the bright-field disc before the run.
const DISC_SAMPLE_FRAMES: usize = 256;

/// Estimates the bright-field disc from the mean of up to 256 frames spread over the dump.
pub fn estimate_disc(dump: &Dump) -> Result<Option<Disc>> {
    let info = dump.info();
    let (w, h, n) = (info.width, info.height, info.frames);
    if n == 0 {
        return Ok(None);
    }
    let take = n.min(DISC_SAMPLE_FRAMES);
    let mut mean = vec![0.0f64; w * h];
    let mut reader = dump.reader();
    for k in 0..take {
        let index = k * n / take;
        let add = |m: &mut [f64], it: &mut dyn Iterator<Item = f64>| {
            for (a, v) in m.iter_mut().zip(it) {
                *a += v;
            }
        };
        match reader.frame(index)? {
            Frame::U8(f) => add(&mut mean, &mut f.iter().map(|&v| v as f64)),
            Frame::U16(f) => add(&mut mean, &mut f.iter().map(|&v| v as f64)),
            Frame::U32(f) => add(&mut mean, &mut f.iter().map(|&v| v as f64)),
            Frame::F32(f) => add(&mut mean, &mut f.iter().map(|&v| v as f64)),
        }
    }
    // Frames that read as zeros because the file shrank are an error, not a disc.
    dump.check_frames(0..n)?;
    Ok(find_bright_field(&mean, w, h))
}

/// Resolves the scan shape from the config or the dump and checks it against the frame count.
/// Returns the scan and the number of frames to process.
pub fn resolve_scan(config: &ReplayConfig, dump: &Dump) -> Result<(Scan, usize)> {
    let info = dump.info();
    let (rows, cols) = config.scan.or(info.scan).ok_or_else(|| {
        Error::param(
            "--scan",
            format!(
                "{}: the dump does not say its scan shape; give --scan ROWSxCOLS ({} frames)",
                info.path.display(),
                info.frames
            ),
        )
    })?;
    let kind = if config.serpentine {
        ScanKind::Serpentine
    } else {
        ScanKind::Raster
    };
    let scan = Scan::new(rows, cols, kind).map_err(|e| Error::core("--scan", e))?;
    let positions = rows * cols;
    if info.frames != positions && !config.allow_partial {
        return Err(Error::param(
            "--scan",
            format!(
                "{rows}x{cols} = {positions} positions but {} holds {} frames; \
                 pass --allow-partial to replay anyway",
                info.path.display(),
                info.frames
            ),
        ));
    }
    Ok((scan, info.frames.min(positions)))
}

/// Runs a replay: plans the reduction, runs reader, workers and the optional in-order
/// `consumer`, writes the outputs into `config.out` and returns what it did.
///
/// Like an interrupt, a dump that shrinks while it is read is not an `Err` here: the outputs
/// of the frames before the first lost one are written and
/// [`Counters::source_changed`](super::Counters::source_changed) says which frame that was;
/// the caller reports it (`ptyflow replay` fails with [`Error::Changed`], exit code 2).
pub fn replay(
    config: &ReplayConfig,
    consumer: Option<&mut dyn OrderedConsumer>,
) -> Result<ReplayOutcome> {
    let dump = Dump::open(&config.dump, &config.open)?;
    replay_dump(config, &dump, consumer)
}

/// As [`replay`], on a dump that is already open.
pub fn replay_dump(
    config: &ReplayConfig,
    dump: &Dump,
    consumer: Option<&mut dyn OrderedConsumer>,
) -> Result<ReplayOutcome> {
    ensure_dir(&config.out)?;
    let info = dump.info().clone();
    let (scan, frames) = resolve_scan(config, dump)?;
    // Refuse a job that cannot fit before allocating anything for it.
    crate::budget::replay(config, dump, None)?.check(&config.run.budget()?)?;
    let geometry = FrameGeometry::new(info.width, info.height)
        .map_err(|e| Error::core(format!("{}", info.path.display()), e))?;

    let px = |v: f64| config.mrad_per_px.map_or(v, |m| v / m);
    let specs: Vec<VirtualSpec> = config
        .virtual_detectors
        .iter()
        .map(|s| s.to_pixels(config.mrad_per_px))
        .collect();
    let needs_disc = !specs.is_empty();
    let (disc, disc_source) = match (config.center, config.bf_radius) {
        (Some((cx, cy)), Some(r)) => (Some(Disc { cx, cy, r: px(r) }), "given".to_string()),
        (center, radius) if needs_disc => {
            let found = estimate_disc(dump)?;
            let merged = match (found, center, radius) {
                (Some(d), c, r) => Some(Disc {
                    cx: c.map_or(d.cx, |c| c.0),
                    cy: c.map_or(d.cy, |c| c.1),
                    r: r.map_or(d.r, px),
                }),
                (None, _, _) => {
                    return Err(Error::param(
                        "--center/--bf-radius",
                        format!(
                            "{}: no bright-field disc found in the mean pattern; give --center X,Y and --bf-radius R",
                            info.path.display()
                        ),
                    ));
                }
            };
            let source = match (center.is_some(), radius.is_some()) {
                (false, false) => "found in the mean pattern",
                (true, false) => "given centre, radius found",
                (false, true) => "centre found, given radius",
                (true, true) => "given",
            };
            (merged, source.to_string())
        }
        _ => (None, String::new()),
    };
    let crop = config.crop.map(|(x0, y0, width, height)| Window {
        x0,
        y0,
        width,
        height,
    });
    let plan = Arc::new(ReducePlan::new(
        geometry, info.pixel, config.bin, crop, &specs, disc, frames,
    )?);

    let mut opts = config.run.clone();
    opts.limit = Some(frames);
    let plan_for_workers = Arc::clone(&plan);
    let (workers, counters) = run(
        dump,
        || Reducer::new(Arc::clone(&plan_for_workers)),
        consumer,
        &opts,
    )?;
    let mut workers = workers.into_iter();
    let mut reducer = workers
        .next()
        .ok_or_else(|| Error::Interrupted("no worker finished".into()))?;
    for w in workers {
        reducer.merge(&w)?;
    }

    let mut outputs = Vec::new();
    // A dump that shrank: the frames before the first lost one are the result.
    let read = counters
        .source_changed
        .as_ref()
        .map_or(counters.frames_read as usize, |c| {
            c.frame.min(counters.frames_read as usize)
        });
    write_outputs(&config.out, &plan, &reducer, &scan, read, &mut outputs)?;

    let mut stages = vec![StageRate::new(
        "reduce",
        opts.threads.max(1),
        counters.frames_processed,
        counters.reduce_busy_s,
    )];
    if counters.frames_consumed > 0 {
        stages.push(StageRate::new(
            "recon",
            1,
            counters.frames_consumed,
            counters.consume_busy_s,
        ));
    }
    let report = ReplayReport {
        ptyflow_version: env!("CARGO_PKG_VERSION"),
        dump: DumpSummary {
            path: info.path.display().to_string(),
            format: info.format.name(),
            width: info.width,
            height: info.height,
            stored_dtype: info.stored_dtype.clone(),
            dtype: info.pixel.name(),
            zero_copy: info.zero_copy,
            notes: info.notes.clone(),
        },
        scan: ScanSummary {
            rows: scan.rows(),
            cols: scan.cols(),
            serpentine: config.serpentine,
        },
        parameters: serde_json::json!({
            "bin": config.bin,
            "crop": config.crop.map(|c| [c.0, c.1, c.2, c.3]),
            "virtual": config.virtual_detectors.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "center": config.center.map(|c| [c.0, c.1]),
            "bf_radius": config.bf_radius,
            "mrad_per_px": config.mrad_per_px,
            "threads": opts.threads,
            "batch_frames": opts.batch_frames,
            "fps": opts.fps,
            "allow_partial": config.allow_partial,
        }),
        geometry: GeometrySummary {
            frame: [info.height, info.width],
            stage: [plan.stage.height(), plan.stage.width()],
            bin: plan.bin,
            label_layers: plan.label_layers(),
        },
        bright_field_disc: plan.disc.map(|disc| DiscSummary {
            disc,
            source: disc_source,
        }),
        virtual_detectors: plan.detectors.clone(),
        frames_in_file: info.frames,
        fps_overall: if counters.wall_s > 0.0 {
            counters.frames_processed as f64 / counters.wall_s
        } else {
            0.0
        },
        counters,
        stages,
        outputs,
        extra: serde_json::Map::new(),
    };
    Ok(ReplayOutcome {
        report,
        reducer,
        plan,
        scan,
    })
}

/// Writes the report of `outcome` as `report.json` in `out` (after the caller added extras).
pub fn write_report(out: &Path, outcome: &mut ReplayOutcome) -> Result<()> {
    outcome.report.outputs.push("report.json".into());
    write_json(&out.join("report.json"), &outcome.report)
}

/// Places per-frame values (`frames × channels`) at their scan positions: a
/// `rows × cols × channels` array, NaN where no frame arrived.
pub fn scan_shaped(scan: &Scan, values: &[f32], channels: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; scan.positions() * channels];
    for (index, v) in values.chunks_exact(channels.max(1)).enumerate() {
        if let Some((row, col)) = scan.position(index) {
            let at = (row * scan.cols() + col) * channels;
            out[at..at + channels].copy_from_slice(v);
        }
    }
    out
}

/// One output array: its name (the `.npy` file stem, the C API's result name), a C-order
/// shape and `f32` values.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedArray {
    /// Name, e.g. `dose`, `virtual_bf`, `virtual_com_x`.
    pub name: String,
    /// C-order shape.
    pub shape: Vec<usize>,
    /// Values.
    pub data: Vec<f32>,
}

/// The reduction's outputs, as `ptyflow replay` writes them and the C API returns them:
/// `mean`/`var` (`[height, width]` of the stage frame), `dose` and each detector placed at
/// its scan position (`[rows, cols]`, `[rows, cols, channels]` plus a `_sum` over the channels,
/// `com` as `_x` and `_y`). Only the first `read` frames count (NaN at the other positions).
pub fn reduction_outputs(
    plan: &ReducePlan,
    reducer: &Reducer,
    scan: &Scan,
    read: usize,
) -> Result<Vec<NamedArray>> {
    let (rows, cols) = (scan.rows(), scan.cols());
    let (h, w) = (plan.stage.height(), plan.stage.width());
    let mut out = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, data: Vec<f32>| {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        out.push(NamedArray { name, shape, data });
    };
    let stats = reducer.pattern_stats()?;
    add(
        "mean".into(),
        vec![h, w],
        stats.mean.iter().map(|&v| v as f32).collect(),
    );
    add(
        "var".into(),
        vec![h, w],
        stats.var.iter().map(|&v| v as f32).collect(),
    );
    // Frames are handed out in order: the first `read` were processed, the rest stay NaN.
    let dose: Vec<f32> = reducer.dose()[..read].iter().map(|&v| v as f32).collect();
    add("dose".into(), vec![rows, cols], scan_shaped(scan, &dose, 1));
    for slot in &plan.detectors {
        let values = reducer.detector_values(slot);
        let shaped = scan_shaped(scan, &values[..read * slot.len], slot.len);
        let name = format!("virtual_{}", slot.name);
        if slot.kind == "com" {
            for (axis, c) in ["x", "y"].iter().zip(0..) {
                let one = shaped.iter().skip(c).step_by(2).copied().collect();
                add(format!("{name}_{axis}"), vec![rows, cols], one);
            }
        } else if slot.len == 1 {
            add(name, vec![rows, cols], shaped);
        } else {
            let total = shaped
                .chunks_exact(slot.len)
                .map(|c| c.iter().sum())
                .collect();
            add(name.clone(), vec![rows, cols, slot.len], shaped);
            add(format!("{name}_sum"), vec![rows, cols], total);
        }
    }
    Ok(out)
}

/// Writes each output as `.npy`, and each 2D one also as a `.png` preview.
fn write_outputs(
    out: &Path,
    plan: &ReducePlan,
    reducer: &Reducer,
    scan: &Scan,
    read: usize,
    written: &mut Vec<String>,
) -> Result<()> {
    for array in reduction_outputs(plan, reducer, scan, read)? {
        write_npy(
            &out.join(format!("{}.npy", array.name)),
            &array.shape,
            &array.data,
        )?;
        written.push(format!("{}.npy", array.name));
        if let [h, w] = array.shape[..] {
            write_png(&out.join(format!("{}.png", array.name)), w, h, &array.data)?;
            written.push(format!("{}.png", array.name));
        }
    }
    Ok(())
}

/// A flag that Ctrl-C sets, installed once per process (later calls return the same flag).
pub fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = Arc::clone(&flag);
        // If a handler is already installed (embedding program), run without one.
        let _ = ctrlc::set_handler(move || f.store(true, std::sync::atomic::Ordering::Relaxed));
        flag
    })
    .clone()
}
