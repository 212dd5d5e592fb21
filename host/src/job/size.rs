//! What a job will allocate, estimated from its configuration before anything is built
//! (the mechanism and the budget are [`crate::budget`]'s): the reduction, the push pool, the
//! frame readers and the reconstruction. Each need names the configuration field to change.

use ptyflow_core::{FrameGeometry, MAX_BIN_FACTOR, Scan, Window};

use crate::budget::{MemoryPlan, add, bytes_of, mul, thread_stacks};
use crate::pipeline::detectors::VirtualSpec;
use crate::pipeline::push::PushOptions;
use crate::pipeline::recon::{OBJECT_MARGIN_PX, ReconRequest};
use crate::source::{Dump, PixelKind};

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
    /// The scan (the results are scan-shaped).
    pub scan: Scan,
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
            "reduce.crop"
        } else {
            "width × height"
        };
        let stage = format!("{sw} × {sh} stage frame");
        let threads = self.threads.max(1);
        // Sum and sum of squares (u64 or f64) per pixel, plus the binning scratch (u32/f32).
        let per_pixel = 16 + if b > 1 || self.crop.is_some() { 4 } else { 0 };
        let one = bytes_of(&[sw, sh], per_pixel);
        plan.add_units(
            "run.threads",
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
        let (rows, cols) = (self.scan.rows(), self.scan.cols());
        plan.add_units(
            "scan.shape",
            format!(
                "the per-frame values, dose and {coeffs} detector coefficients, of {} frames \
                 on {threads} worker(s)",
                self.frames
            ),
            mul(per_worker, threads as u64),
            (
                "scan.shape",
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
            "scan.shape",
            format!("the results over the {rows} × {cols} scan"),
            results,
        );
        // Mean and variance (f64, then f32) and their previews.
        plan.add(
            area_name,
            format!("the mean and variance patterns of the {stage}"),
            bytes_of(&[sw, sh], 32),
        );
        plan.extend(thread_stacks(threads, "run.threads"));
        plan
    }
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
        Some(p) => ("run.batch_frames", p.to_string()),
        None => (
            "run.queue_batches",
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
    scan: &Scan,
    threads: usize,
) -> MemoryPlan {
    let (rows, cols) = (scan.rows(), scan.cols());
    let mut plan = MemoryPlan::new();
    let size = request.window.unwrap_or(frame.width());
    let bin = request.bin.max(1);
    let binned = size / bin;
    let window_name = if request.pad > 0 {
        "recon.pad"
    } else {
        "recon.window"
    };
    let Some(m) = request
        .pad
        .checked_mul(2)
        .and_then(|p| p.checked_add(binned))
    else {
        plan.add(
            "recon.pad",
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
        "scan.shape",
        format!(
            "the pattern store kept for `recon.sweeps`, {rows} × {cols} patterns of {m} × {m} floats"
        ),
        n.and_then(|n| mul(per_pattern, n)),
    );
    plan.add(
        "scan.shape",
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
                "optics.step_angstrom",
                format!("{steps} make a {r} × {c} object and its previews"),
                bytes_of(&[r, c], 8 + 4 + 8 + 8),
                (
                    "optics.step_angstrom",
                    format!("{steps} make a {r} × {c} object"),
                    bytes_of(&[r, c], 8),
                ),
            ),
            None => plan.add(
                "optics.step_angstrom",
                format!("{steps} make an object"),
                None,
            ),
        }
    }
    plan
}

/// Everything a replay allocates: the reduction, the frame readers of `dump` and, with
/// `reconstruction`, the reconstruction (its sweeps on the reduction's threads).
pub fn replay(
    dump: &Dump,
    reduction: &ReductionSize<'_>,
    reconstruction: Option<&ReconRequest>,
) -> MemoryPlan {
    let info = dump.info();
    let threads = reduction.threads.max(1);
    let mut plan = reduction.plan();
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
        plan.extend(recon(request, reduction.frame, &reduction.scan, threads));
        plan.extend(thread_stacks(1, "run.threads"));
    }
    plan
}
