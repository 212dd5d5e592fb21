//! A push session: frames handed in one at a time by a receive loop (the C API, Python),
//! through the same reduction and reconstruction as a replay.

use std::path::PathBuf;
use std::sync::Arc;

use ptyflow_core::{FrameGeometry, Scan};

use super::config::{JobConfig, Source};
use super::outputs::{reduction_outputs, write_arrays};
use super::replay::{add_recon_extras, crop_window, detectors_px, parameters, scan_kind};
use super::report::JobReport;
use super::size::{ReductionSize, push_pool};
use super::{JobOutcome, recon, write_report};
use crate::budget::thread_stacks;
use crate::optics::Optics;
use crate::pipeline::compress::CompressPlan;
use crate::pipeline::detectors::Disc;
use crate::pipeline::push::{CounterReader, PushError, PushOptions, PushPipeline};
use crate::pipeline::recon::{ReconConsumer, ReconRequest};
use crate::pipeline::reduce::ReducePlan;
use crate::{Error, Result};

/// A running push job: frames pushed one at a time through the reduction and the
/// reconstruction of a replay. Made by [`PushSession::start`], fed by
/// [`PushSession::push`], ended by [`PushSession::finish`].
#[derive(Debug)]
pub struct PushSession {
    pipeline: PushPipeline<ReconConsumer>,
    plan: Arc<ReducePlan>,
    scan: Scan,
    request: Option<ReconRequest>,
    threads: usize,
    batch: usize,
    config: JobConfig,
    /// The compression (`config.compress`), when asked.
    compress: Option<Arc<CompressPlan>>,
}

impl PushSession {
    /// Validates `config` (its source must be [`Source::Push`]), checks the job against the
    /// memory budget, builds the reduction plan and the reconstruction stage and starts the
    /// threads. Push mode cannot find the bright-field disc from the data: every detector
    /// needs `reduce.center` and `reduce.bf_radius`.
    pub fn start(config: &JobConfig) -> Result<Self> {
        config.validate()?;
        let Source::Push(source) = config.source else {
            return Err(Error::param(
                "source",
                "a push session takes pushed frames: give `source.push`",
            ));
        };
        let frame = FrameGeometry::new(source.width, source.height).map_err(|e| {
            Error::core(
                format!(
                    "source.push: width {} × height {}",
                    source.width, source.height
                ),
                e,
            )
        })?;
        let [rows, cols] = config.scan.shape.ok_or_else(|| {
            Error::param(
                "scan.shape",
                "pushed frames need the scan shape [rows, cols]",
            )
        })?;
        let scan = Scan::new(rows, cols, scan_kind(&config.scan))
            .map_err(|e| Error::core(format!("scan.shape {rows} × {cols}"), e))?;
        let specs = detectors_px(config);
        let disc = match (config.reduce.center, config.reduce.bf_radius) {
            (Some([cx, cy]), Some(r)) => {
                let r = config.radii_mrad_per_px().map_or(r, |m| r / m);
                Some(Disc { cx, cy, r })
            }
            (None, None) => None,
            _ => {
                return Err(Error::param(
                    "reduce.bf_radius",
                    "give both the disc centre `reduce.center` and `reduce.bf_radius`, or neither",
                ));
            }
        };
        if disc.is_none()
            && let Some(spec) = specs.first()
        {
            return Err(Error::param(
                "reduce.center",
                format!(
                    "virtual detector `{spec}` needs the bright-field disc: set `reduce.center` \
                     and `reduce.bf_radius`; push mode cannot find it from the data"
                ),
            ));
        }
        let crop = crop_window(config);
        let defaults = PushOptions::default();
        let pick = |v: Option<usize>, default: usize| v.filter(|&v| v > 0).unwrap_or(default);
        let opts = PushOptions {
            threads: config.run.threads(),
            batch_frames: pick(config.run.batch_frames, defaults.batch_frames),
            queue_batches: pick(config.run.queue_batches, defaults.queue_batches),
            blocking: config.run.blocking,
        };
        let request = recon::request(config, Optics::default())?;

        // Every size that follows from this configuration must fit the budget before
        // anything is allocated.
        let budget = config.run.budget()?;
        let mut need = ReductionSize {
            frame,
            pixel: source.pixel,
            bin: config.reduce.bin,
            crop,
            detectors: &specs,
            frames: scan.positions(),
            scan,
            threads: opts.threads,
        }
        .plan();
        need.extend(push_pool(frame, source.pixel, &opts));
        if let Some(request) = &request {
            need.extend(super::size::recon(request, frame, &scan, opts.threads));
            need.extend(thread_stacks(1, "run.threads"));
        }
        need.check(&budget)?;
        let mut plan = ReducePlan::new(
            frame,
            source.pixel,
            config.reduce.bin,
            crop,
            &specs,
            disc,
            scan.positions(),
        )?;
        plan.skip_nonfinite = !config.reduce.keep_nonfinite;
        let plan = Arc::new(plan);
        let consumer = match &request {
            None => None,
            Some(request) => {
                let centre = plan.disc.map(|d| (d.cx, d.cy));
                Some(request.build(frame, &scan, centre)?)
            }
        };
        let compress = match &config.compress {
            None => None,
            Some(cc) => {
                let Some(disc) = plan.disc else {
                    return Err(Error::param(
                        "reduce.center",
                        "compression needs the bright-field disc: set `reduce.center` and \
                         `reduce.bf_radius`; push mode cannot find it from the data",
                    ));
                };
                let built =
                    super::compress::build_basis(cc, frame, disc, scan.positions(), |_, _| {
                        Err(Error::param(
                            "compress.basis",
                            "push mode cannot draw recorded patterns from frames not yet pushed: \
                         use zernike:N or binning:W",
                        ))
                    })?;
                Some(Arc::new(CompressPlan {
                    compressor: built.compressor,
                    values: cc.values,
                    frames: scan.positions(),
                    threads: opts.threads,
                }))
            }
        };
        let pipeline =
            PushPipeline::start_compressing(Arc::clone(&plan), consumer, &opts, compress.clone())?;
        Ok(PushSession {
            pipeline,
            plan,
            scan,
            request,
            threads: opts.threads,
            batch: opts.batch_frames,
            config: config.clone(),
            compress,
        })
    }

    /// Bytes one frame must have (`width × height × pixel size`, native byte order).
    pub fn frame_bytes(&self) -> usize {
        self.pipeline.frame_bytes()
    }

    /// Positions of the scan (frame indices run over `0 .. positions`).
    pub fn positions(&self) -> usize {
        self.plan.frames
    }

    /// Takes one frame for acquisition index `index` (a serpentine scan maps odd rows right
    /// to left). Copies it; never allocates. Blocking or refusing when the queue is full, as
    /// `run.blocking` says.
    pub fn push(&mut self, index: usize, frame: &[u8]) -> Result<(), PushError> {
        self.pipeline.push(index, frame)
    }

    /// Reads the counters from any thread, without touching the session.
    pub fn counter_reader(&self) -> CounterReader {
        self.pipeline.counter_reader()
    }

    /// Waits for every stage, merges the reduction, runs the reconstruction's sweeps and,
    /// with `out`, writes the outputs and `report.json`. A position whose frame was never
    /// pushed holds 0 in the scan-shaped results (the reducer does not track arrivals).
    pub fn finish(self, progress: Option<&dyn super::Progress>) -> Result<JobOutcome> {
        self.finish_amended(progress, |_| {})
    }

    /// [`PushSession::finish`], with `amend` adding to the report before it is written (the
    /// live job's receive counters).
    pub(super) fn finish_amended(
        self,
        progress: Option<&dyn super::Progress>,
        amend: impl FnOnce(&mut JobReport),
    ) -> Result<JobOutcome> {
        let PushSession {
            pipeline,
            plan,
            scan,
            request,
            threads,
            batch,
            config,
            compress,
        } = self;
        let outcome = pipeline.finish()?;
        let counters = outcome.counters;
        let mut arrays = reduction_outputs(&plan, &outcome.reducer, &scan, plan.frames)?;
        if let Some(c) = &compress {
            arrays.extend(super::compress::compressed_arrays(
                &outcome.compressed,
                &scan,
                c.compressor.values_per_frame(),
            ));
        }
        let out: Option<PathBuf> = config.out.clone();
        let mut outputs = Vec::new();
        if let Some(out) = &out {
            crate::output::ensure_dir(out)?;
            write_arrays(out, &arrays, &mut outputs)?;
        }
        let mut report = JobReport::new(
            None,
            &scan,
            parameters(&config, threads, batch),
            &plan,
            "given",
            plan.frames,
            counters,
            threads,
            outputs,
        );
        report.frames_nonfinite = outcome.reducer.frames_nonfinite();

        let recon = match (outcome.consumer, &request) {
            (Some(consumer), Some(request)) => {
                let result = recon::finish(consumer, request, threads, progress)?;
                if let Some(out) = &out {
                    recon::write(out, &result, &mut report.outputs)?;
                }
                add_recon_extras(&mut report, &result);
                Some(result)
            }
            _ => None,
        };
        amend(&mut report);
        if let Some(out) = &out {
            write_report(out, &mut report)?;
        }
        Ok(JobOutcome {
            report,
            arrays,
            recon,
            reducer: outcome.reducer,
            plan,
            scan,
        })
    }
}
