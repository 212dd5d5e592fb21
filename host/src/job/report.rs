//! What a job did, as `report.json` says it: the dump, the scan, the parameters, the
//! geometry, the disc, the detectors, the counters and the rate of every stage.

use ptyflow_core::Scan;

use crate::pipeline::Counters;
use crate::pipeline::detectors::Disc;
use crate::pipeline::reduce::ReducePlan;

/// What a job did (`report.json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobReport {
    /// ptyflow's version.
    pub ptyflow_version: &'static str,
    /// The dump as opened (`None` for pushed frames).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dump: Option<DumpSummary>,
    /// Scan shape and order.
    pub scan: ScanSummary,
    /// The parameters as given.
    pub parameters: serde_json::Value,
    /// Geometry of the stages.
    pub geometry: GeometrySummary,
    /// The bright-field disc used, and whether it was given or found.
    pub bright_field_disc: Option<DiscSummary>,
    /// Virtual detectors and their outputs.
    pub virtual_detectors: Vec<crate::pipeline::reduce::DetectorSlot>,
    /// Frames in the file (pushed frames: positions of the scan).
    pub frames_in_file: usize,
    /// Counters and times of the run.
    #[serde(flatten)]
    pub counters: Counters,
    /// Float frames left out because they held a NaN or an infinity (NaN at their scan
    /// positions; `reduce.keep_nonfinite` adds them instead). Reported when not 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub frames_nonfinite: u64,
    /// Frames whose counts sum to 0 (a blanked beam, a dead readout). Reported when not 0;
    /// not counted for pushed frames, whose unpushed positions also hold 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub frames_zero_dose: u64,
    /// With several frames per position: how many, how many were summed, and the dose
    /// of a summed pattern. The counters above count patterns (positions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_per_position: Option<FramesPerPosition>,
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

impl JobReport {
    /// The report of a run of `plan` over `scan` on `threads` reduction threads: the parts
    /// a replay and a push session share (the caller adds the reconstruction's extras).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        dump: Option<DumpSummary>,
        scan: &Scan,
        parameters: serde_json::Value,
        plan: &ReducePlan,
        disc_source: &str,
        frames_in_file: usize,
        counters: Counters,
        threads: usize,
        outputs: Vec<String>,
    ) -> Self {
        let mut stages = vec![StageRate::new(
            "reduce",
            threads.max(1),
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
        JobReport {
            ptyflow_version: env!("CARGO_PKG_VERSION"),
            dump,
            scan: ScanSummary {
                rows: scan.rows(),
                cols: scan.cols(),
                serpentine: scan.kind() == ptyflow_core::ScanKind::Serpentine,
            },
            parameters,
            geometry: GeometrySummary {
                frame: [plan.frame.height(), plan.frame.width()],
                stage: [plan.stage.height(), plan.stage.width()],
                bin: plan.bin,
                label_layers: plan.label_layers(),
            },
            bright_field_disc: plan.disc.map(|disc| DiscSummary {
                disc,
                source: disc_source.to_string(),
            }),
            virtual_detectors: plan.detectors.clone(),
            frames_in_file,
            fps_overall: if counters.wall_s > 0.0 {
                counters.frames_processed as f64 / counters.wall_s
            } else {
                0.0
            },
            counters,
            frames_nonfinite: 0,
            frames_zero_dose: 0,
            frames_per_position: None,
            stages,
            outputs,
            extra: serde_json::Map::new(),
        }
    }
}

/// Several frames per scan position, in the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FramesPerPosition {
    /// Frames recorded at each position (K).
    pub per_position: usize,
    /// Frames summed into each pattern: the first N of every K.
    pub used: usize,
    /// Frames read and summed in all.
    pub frames_summed: u64,
    /// Mean counts of a summed pattern (electrons per pattern for a counting detector).
    pub mean_counts_per_pattern: f64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
