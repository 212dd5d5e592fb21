//! The job layer: one configuration ([`JobConfig`], validated once) and the orchestration
//! that every face drives. The CLI turns flags into a `JobConfig`, the C API turns its
//! struct or JSON into one, the Python package its keyword arguments; none of them opens a
//! source, resolves a scan, finds the disc, plans the detectors or runs the reconstruction
//! itself.
//!
//! - [`replay`]: a recorded dump, memory-mapped, through the reduction and the optional
//!   online reconstruction, its outputs written into `out` as they are ready.
//! - [`PushSession`]: frames pushed one at a time by a receive loop, the same stages,
//!   finished into the same outputs.
//! - [`reduce_frames`]: frames already in memory (a 4D array), the disc found from their
//!   mean like a dump's, then pushed through a [`PushSession`].
//! - [`live()`]: a detector streaming over the network (a Merlin's data port, a DECTRIS
//!   stream interface), received into a push session; everything received is written even
//!   when the connection is lost.
//!
//! - [`compress()`]: a recorded dump compressed by change of basis (paper 002), its
//!   coefficients, angles and basis written into `out`.
//!
//! Both end in a [`JobOutcome`]: the report (`report.json`), the arrays by name and the
//! reconstruction. The order of a job: validate the configuration; open the source; resolve
//! the scan; check every size against the memory budget ([`size`]) before anything is
//! allocated; find the bright-field disc (a dump, when not given); build the reduction plan
//! and the reconstruction stage; run; merge; write the reduction's outputs; run the sweeps;
//! write the reconstruction's outputs and the report.
//!
//! ```no_run
//! use ptyflow::job::{self, Hooks, JobConfig};
//!
//! let mut config = JobConfig::from_json(r#"{
//!     "source": {"dump": {"path": "fixtures/mos2-defocus/scan.raw"}},
//!     "reduce": {"virtual": ["bf", "adf:32:46"]},
//!     "recon": {"method": "epie"},
//!     "out": "out/"
//! }"#)?;
//! config.run.threads = Some(2);
//! let outcome = job::replay(&config, &Hooks::default())?;
//! println!("{} frames", outcome.report.counters.frames_processed);
//! # Ok::<(), ptyflow::Error>(())
//! ```

pub mod compress;
mod config;
mod live;
mod memory;
mod outputs;
mod push;
mod recon;
pub mod reconstruct;
mod replay;
mod report;
pub mod size;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub use compress::{CompressConfig, CompressOutcome, compress};
pub use config::{
    DectrisSource, DumpSource, FIELDS, JobConfig, MemorySize, MerlinSource, PushSource, RadiusUnit,
    ReconConfig, ReconMethod, ReduceConfig, RunConfig, ScanConfig, Source, SyntheticSource,
};
pub use live::{LiveSummary, live};
pub use memory::{ContiguousFrames, FrameSet, reduce_frames};
pub use outputs::{NamedArray, reduction_outputs, scan_shaped};
pub use push::PushSession;
pub use recon::{ReconResult, lit_region, loss_plot};
pub use reconstruct::{
    CompressedData, CompressedReconConfig, load_compressed, reconstruct_compressed,
};
pub use replay::{replay, resolve_scan};
pub use report::{DiscSummary, DumpSummary, GeometrySummary, JobReport, ScanSummary, StageRate};

pub use crate::pipeline::run::Progress;

/// What the caller lends a running job: where progress goes and the flag that stops it.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Progress of the frames and of the sweeps (`None`: not reported).
    pub progress: Option<Arc<dyn Progress>>,
    /// Set it (e.g. from a Ctrl-C handler) to stop a replay after the current batch; what
    /// was handed out is still processed, written and reported (`counters.interrupted`).
    pub interrupt: Arc<AtomicBool>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("progress", &self.progress.is_some())
            .field("interrupt", &self.interrupt)
            .finish()
    }
}

/// What a job produced.
#[derive(Debug)]
pub struct JobOutcome {
    /// The report, as written to `report.json`.
    pub report: JobReport,
    /// The reduction's arrays ([`reduction_outputs`]).
    pub arrays: Vec<NamedArray>,
    /// The reconstruction, when the job had one.
    pub recon: Option<ReconResult>,
    /// The merged reduction state the arrays were made from (statistics, dose, detector
    /// values), for callers that want more than the arrays.
    pub reducer: crate::pipeline::reduce::Reducer,
    /// The plan the workers ran (stage geometry, detectors, disc).
    pub plan: Arc<crate::pipeline::reduce::ReducePlan>,
    /// The scan order.
    pub scan: ptyflow_core::Scan,
}

impl JobOutcome {
    /// Every result as named `f32` arrays: the reduction's, then `object` (`[rows, cols, 2]`)
    /// and `probe` (`[M, M, 2]`), complex values as interleaved (re, im) pairs (the C API's
    /// results).
    pub fn all_arrays(&self) -> Vec<NamedArray> {
        let mut all = self.arrays.clone();
        if let Some(r) = &self.recon {
            all.extend(r.interleaved());
        }
        all
    }
}

/// Writes `report.json` into `out`, listing it among the outputs.
fn write_report(out: &Path, report: &mut JobReport) -> crate::Result<()> {
    report.outputs.push("report.json".into());
    crate::output::write_json(&out.join("report.json"), report)
}
