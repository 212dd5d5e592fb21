//! The per-frame reduction: binning, virtual detectors and running statistics, built once from
//! a [`ReducePlan`] and run by every worker on its own [`Reducer`] state.
//!
//! Work per frame, all on buffers allocated at set-up:
//! 1. bin `b × b` (or take the frame as it is when `b = 1`): the *stage frame*;
//! 2. statistics of the stage frame (sum, sum², min, max) and its total (the dose map);
//! 3. each label layer projects the stage frame (one pass per layer; detectors that do not
//!    overlap share a layer, so the cost grows with the number of layers, not of detectors);
//! 4. the dense masks (centre of mass) project the stage frame.
//!
//! Virtual detectors are placed on the stage frame: a radius or centre given in unbinned
//! pixels is converted with `x_stage = (x − x0 − (b − 1)/2) / b`.

use std::sync::Arc;

use ptyflow_core::mask::dense::{DenseBuilder, DenseMasks};
use ptyflow_core::mask::label::{LabelBuilder, LabelMasks};
use ptyflow_core::pixel::{Accumulator, Pixel};
use ptyflow_core::{Binner, FrameGeometry, Stats, Window};

use super::detectors::{Disc, VirtualSpec};
use super::run::Worker;
use crate::budget::{checked_len, try_filled};
use crate::simd::SimdLevel;
use crate::source::{Frame, PixelKind};
use crate::{Error, Result};

/// Where one virtual detector's values sit in a frame's coefficient row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DetectorSlot {
    /// The kind (`bf`, `adf`, `rings`, `dpc`, `com`).
    pub kind: &'static str,
    /// The detector, radii in unbinned pixels.
    pub spec: String,
    /// Output base name (`virtual_<name>.npy`).
    pub name: String,
    /// First coefficient of the detector in the per-frame row.
    pub offset: usize,
    /// Number of coefficients (1, 4 for DPC, N for rings, 2 for COM).
    pub len: usize,
}

/// `kind`, or `kind_2`, `kind_3` … when detectors of that kind are already named.
fn unique_name(taken: &[DetectorSlot], kind: &str) -> String {
    match taken.iter().filter(|d| d.kind == kind).count() {
        0 => kind.to_string(),
        n => format!("{kind}_{}", n + 1),
    }
}

/// The immutable configuration every worker shares.
#[derive(Debug)]
pub struct ReducePlan {
    /// Geometry of the incoming frames.
    pub frame: FrameGeometry,
    /// Pixel type of the incoming frames.
    pub pixel: PixelKind,
    /// Binning (None: frames are used as they are).
    pub binner: Option<Binner>,
    /// Geometry of the stage frame (after binning).
    pub stage: FrameGeometry,
    /// Bin factor (1 without binning).
    pub bin: usize,
    /// Frames in the run (length of the per-frame outputs).
    pub frames: usize,
    /// Label tables, one per layer of non-overlapping detectors.
    layers: Vec<LabelMasks<Vec<u16>, Vec<f32>>>,
    /// Dense masks (centre of mass), if any.
    dense: Option<DenseMasks<Vec<f32>>>,
    /// Where each detector's values are in a frame's coefficient row.
    pub detectors: Vec<DetectorSlot>,
    /// Coefficients per frame (all detectors).
    pub coeffs_per_frame: usize,
    /// The bright-field disc the detectors were placed around (unbinned pixels).
    pub disc: Option<Disc>,
    /// Float frames holding a NaN or an infinity are left out of the statistics and their
    /// scan position is NaN in every image (counted in [`Reducer::frames_nonfinite`]); set
    /// `false` to add them as they are (they then poison the sums). Default `true`.
    pub skip_nonfinite: bool,
}

impl ReducePlan {
    /// Builds the plan. `crop` is a window of the incoming frame (x0, y0, width, height);
    /// `disc` is needed by `bf`, `dpc`, `com` and as the centre of `adf` and `rings`.
    pub fn new(
        frame: FrameGeometry,
        pixel: PixelKind,
        bin: usize,
        crop: Option<Window>,
        specs: &[VirtualSpec],
        disc: Option<Disc>,
        frames: usize,
    ) -> Result<Self> {
        let window = crop.unwrap_or(Window::full(frame));
        let binner = if bin == 1 && crop.is_none() {
            None
        } else {
            let context = match crop {
                Some(w) => format!(
                    "`reduce.crop` {},{},{},{} with `reduce.bin` {bin} on a {}×{} frame",
                    w.x0,
                    w.y0,
                    w.width,
                    w.height,
                    frame.width(),
                    frame.height()
                ),
                None => format!(
                    "`reduce.bin` {bin} on a {}×{} frame",
                    frame.width(),
                    frame.height()
                ),
            };
            Some(Binner::with_window(frame, bin, window).map_err(|e| Error::core(context, e))?)
        };
        let stage = binner.map_or(frame, |b| b.out_geometry());
        let b = bin as f64;
        let to_stage_x = |x: f64| (x - window.x0 as f64 - (b - 1.0) / 2.0) / b;
        let to_stage_y = |y: f64| (y - window.y0 as f64 - (b - 1.0) / 2.0) / b;

        let need_disc = |spec: &VirtualSpec| {
            disc.ok_or_else(|| {
                Error::param(
                    "reduce.virtual",
                    format!("`{spec}` needs the bright-field disc: give `reduce.center` and `reduce.bf_radius`"),
                )
            })
        };
        let mut layers: Vec<LabelBuilder<Vec<u16>, Vec<f32>>> = Vec::new();
        let mut dense_spec: Option<(f32, f32)> = None;
        let mut detectors = Vec::new();
        // Label detectors first; their coefficient offsets are fixed after layering.
        let mut placed: Vec<(usize, std::ops::Range<usize>, &VirtualSpec)> = Vec::new();
        for spec in specs {
            if *spec == VirtualSpec::Com {
                let d = need_disc(spec)?;
                dense_spec = Some((to_stage_x(d.cx) as f32, to_stage_y(d.cy) as f32));
                continue;
            }
            let d = need_disc(spec)?;
            let (cx, cy) = (to_stage_x(d.cx) as f32, to_stage_y(d.cy) as f32);
            let r_bf = (d.r / b) as f32;
            let paint = |l: &mut LabelBuilder<Vec<u16>, Vec<f32>>| match *spec {
                VirtualSpec::BrightField => l.disk(cx, cy, r_bf).map(|s| s..s + 1),
                VirtualSpec::Adf { inner, outer } => l
                    .annulus(cx, cy, (inner / b) as f32, (outer / b) as f32)
                    .map(|s| s..s + 1),
                VirtualSpec::Rings { n, inner, outer } => {
                    l.rings(cx, cy, (inner / b) as f32, (outer / b) as f32, n)
                }
                VirtualSpec::Dpc => l.sectors(cx, cy, 0.0, r_bf, 4, 0.0),
                VirtualSpec::Com => unreachable!("handled above"),
            };
            let mut done = None;
            for (i, layer) in layers.iter_mut().enumerate() {
                match paint(layer) {
                    Ok(range) => {
                        done = Some((i, range));
                        break;
                    }
                    Err(ptyflow_core::Error::Overlap { .. }) => continue,
                    Err(e) => return Err(Error::core(format!("`reduce.virtual` {spec}"), e)),
                }
            }
            let (i, range) = match done {
                Some(found) => found,
                None => {
                    let (area, name, what) = (stage.area(), "width × height", "label table");
                    let labels = try_filled(area, 0u16, name, what)?;
                    let weights = try_filled(area, 0f32, name, what)?;
                    let mut layer = LabelBuilder::new(stage, labels, weights)
                        .map_err(|e| Error::core("label table", e))?;
                    let range = paint(&mut layer)
                        .map_err(|e| Error::core(format!("`reduce.virtual` {spec}"), e))?;
                    layers.push(layer);
                    (layers.len() - 1, range)
                }
            };
            placed.push((i, range, spec));
        }
        let layers: Vec<_> = layers.into_iter().map(LabelBuilder::build).collect();
        // A detector that covers no pixel of the stage frame would silently give zeros.
        for (i, range, spec) in &placed {
            let labels = layers[*i].labels();
            let covered = labels.iter().any(|&l| range.contains(&usize::from(l)));
            if !covered {
                return Err(Error::param(
                    "reduce.virtual",
                    format!(
                        "`{spec}` covers no pixel of the {}×{} frame seen by the detectors \
                         (after `reduce.crop`/`reduce.bin`); check its radii and the disc centre",
                        stage.width(),
                        stage.height()
                    ),
                ));
            }
        }
        let mut layer_offset = Vec::with_capacity(layers.len());
        let mut offset = 0;
        for layer in &layers {
            layer_offset.push(offset);
            offset += layer.segments();
        }
        for (i, range, spec) in placed {
            let name = unique_name(&detectors, spec.kind());
            detectors.push(DetectorSlot {
                kind: spec.kind(),
                spec: spec.to_string(),
                name,
                offset: layer_offset[i] + range.start,
                len: range.len(),
            });
        }
        let dense = match dense_spec {
            None => None,
            Some((cx, cy)) => {
                let window = Window::full(stage);
                let (name, what) = ("width × height", "centre-of-mass masks");
                let len = checked_len(&[3, window.width, window.height], name, what)?;
                debug_assert_eq!(len, DenseBuilder::<Vec<f32>>::storage_len(2, &window));
                let storage = try_filled(len, 0f32, name, what)?;
                let mut builder = DenseBuilder::new(stage, window, storage)
                    .map_err(|e| Error::core("centre-of-mass masks", e))?;
                builder
                    .centre_of_mass(cx, cy)
                    .map_err(|e| Error::core("`reduce.virtual` com", e))?;
                detectors.push(DetectorSlot {
                    kind: "com",
                    spec: "com".into(),
                    name: "com".into(),
                    offset,
                    len: 2,
                });
                offset += 2;
                Some(builder.build())
            }
        };
        Ok(ReducePlan {
            frame,
            pixel,
            binner,
            stage,
            bin,
            frames,
            layers,
            dense,
            detectors,
            coeffs_per_frame: offset,
            disc,
            skip_nonfinite: true,
        })
    }

    /// Number of label layers (passes over the stage frame for the label detectors).
    pub fn label_layers(&self) -> usize {
        self.layers.len()
    }

    /// Pixel type of the stage frame (after binning).
    pub fn stage_pixel(&self) -> PixelKind {
        match (self.binner.is_some(), self.pixel) {
            (false, p) => p,
            (true, PixelKind::F32) => PixelKind::F32,
            (true, _) => PixelKind::U32,
        }
    }
}

/// Statistics of the stage frame, in its pixel type.
#[derive(Debug)]
enum AnyStats {
    U8(Stats<u8, Vec<u64>>),
    U16(Stats<u16, Vec<u64>>),
    U32(Stats<u32, Vec<u64>>),
    F32(Stats<f32, Vec<f64>>),
}

/// Routes a stage pixel type to its statistics (and binning scratch) variant.
trait StagePixel: Pixel {
    fn stats(s: &mut AnyStats) -> Option<&mut Stats<Self, Vec<Self::StatAcc>>>;
    /// Whether every pixel is a finite number (integers always are).
    #[inline(always)]
    fn all_finite(_frame: &[Self]) -> bool {
        true
    }
}

macro_rules! stage_pixel {
    ($t:ty, $v:ident) => {
        impl StagePixel for $t {
            fn stats(s: &mut AnyStats) -> Option<&mut Stats<Self, Vec<Self::StatAcc>>> {
                match s {
                    AnyStats::$v(x) => Some(x),
                    _ => None,
                }
            }
        }
    };
}
stage_pixel!(u8, U8);
stage_pixel!(u16, U16);
stage_pixel!(u32, U32);

impl StagePixel for f32 {
    fn stats(s: &mut AnyStats) -> Option<&mut Stats<Self, Vec<Self::StatAcc>>> {
        match s {
            AnyStats::F32(x) => Some(x),
            _ => None,
        }
    }
    #[inline(always)]
    fn all_finite(frame: &[Self]) -> bool {
        // Branch-free over the frame: a NaN or an infinity has all exponent bits set.
        frame.iter().fold(true, |ok, v| ok & v.is_finite())
    }
}

/// Binned stage frames are `u32` (integer input) or `f32`: their scratch buffers.
trait BinPixel: StagePixel + Accumulator {
    fn scratch(s: &mut Scratch) -> &mut Vec<Self>;
}
impl BinPixel for u32 {
    fn scratch(s: &mut Scratch) -> &mut Vec<Self> {
        &mut s.u32
    }
}
impl BinPixel for f32 {
    fn scratch(s: &mut Scratch) -> &mut Vec<Self> {
        &mut s.f32
    }
}

#[derive(Debug, Default)]
struct Scratch {
    u32: Vec<u32>,
    f32: Vec<f32>,
}

/// Mean and variance patterns (stage resolution) and the pixel range of a run.
#[derive(Debug, Clone)]
pub struct PatternStats {
    /// Mean of each stage pixel over all frames.
    pub mean: Vec<f64>,
    /// Population variance of each stage pixel.
    pub var: Vec<f64>,
    /// Smallest and largest stage pixel value seen (None before the first frame).
    pub range: Option<(f64, f64)>,
}

/// One worker's state: scratch, statistics and the per-frame outputs it has written.
#[derive(Debug)]
pub struct Reducer {
    plan: Arc<ReducePlan>,
    scratch: Scratch,
    stats: AnyStats,
    /// Total counts per frame (the dose map), indexed by frame.
    dose: Vec<f64>,
    /// Coefficients, `frames × coeffs_per_frame`, frame-major.
    coeffs: Vec<f32>,
    frames_done: u64,
    /// Frames left out because they held a NaN or an infinity.
    frames_nonfinite: u64,
    /// Instruction set the per-frame work runs with (chosen once, at set-up).
    simd: SimdLevel,
}

impl Reducer {
    /// Allocates one worker's state (set-up; nothing is allocated per frame).
    pub fn new(plan: Arc<ReducePlan>) -> Result<Self> {
        let area = plan.stage.area();
        let err = |e| Error::core("statistics", e);
        // Sizes follow from the frame geometry and the scan: allocate fallibly.
        let (name, what) = ("width × height", "per-pixel statistics");
        let u = || try_filled(area, 0u64, name, what);
        let f = || try_filled(area, 0f64, name, what);
        let stats = match plan.stage_pixel() {
            PixelKind::U8 => AnyStats::U8(Stats::new(plan.stage, u()?, u()?).map_err(err)?),
            PixelKind::U16 => AnyStats::U16(Stats::new(plan.stage, u()?, u()?).map_err(err)?),
            PixelKind::U32 => AnyStats::U32(Stats::new(plan.stage, u()?, u()?).map_err(err)?),
            PixelKind::F32 => AnyStats::F32(Stats::new(plan.stage, f()?, f()?).map_err(err)?),
        };
        let scratch = match (plan.binner.is_some(), plan.stage_pixel()) {
            (true, PixelKind::F32) => Scratch {
                f32: try_filled(area, 0.0, name, "binning scratch")?,
                ..Default::default()
            },
            (true, _) => Scratch {
                u32: try_filled(area, 0, name, "binning scratch")?,
                ..Default::default()
            },
            (false, _) => Scratch::default(),
        };
        let (name, what) = ("scan.shape", "per-frame values");
        let coeffs = checked_len(&[plan.frames, plan.coeffs_per_frame], name, what)?;
        Ok(Reducer {
            dose: try_filled(plan.frames, 0.0, name, what)?,
            coeffs: try_filled(coeffs, 0.0, name, what)?,
            plan,
            scratch,
            stats,
            frames_done: 0,
            frames_nonfinite: 0,
            simd: SimdLevel::detect(),
        })
    }

    #[inline(always)]
    fn process_typed<P>(&mut self, index: usize, frame: &[P]) -> Result<()>
    where
        P: StagePixel,
        P::BinAcc: BinPixel,
    {
        match self.plan.binner {
            None => self.reduce(index, frame),
            Some(binner) => {
                let mut buf = std::mem::take(P::BinAcc::scratch(&mut self.scratch));
                let result = binner
                    .bin(frame, &mut buf)
                    .map_err(|e| Error::core(format!("binning frame {index}"), e))
                    .and_then(|()| self.reduce(index, &buf));
                *P::BinAcc::scratch(&mut self.scratch) = buf;
                result
            }
        }
    }

    #[inline(always)]
    fn reduce<S: StagePixel>(&mut self, index: usize, stage: &[S]) -> Result<()> {
        let plan = &*self.plan;
        let k = plan.coeffs_per_frame;
        let (Some(dose), Some(row)) = (
            self.dose.get_mut(index),
            self.coeffs.get_mut(index * k..(index + 1) * k),
        ) else {
            return Err(Error::param(
                "scan.shape",
                format!(
                    "frame {index} lies beyond the {} frames of the run",
                    plan.frames
                ),
            ));
        };
        let frame_err = |e| Error::core(format!("frame {index}"), e);
        let stats = S::stats(&mut self.stats).ok_or_else(|| {
            Error::param(
                "pixel type",
                format!("frame {index} does not have the run's pixel type"),
            )
        })?;
        if plan.skip_nonfinite && !S::all_finite(stage) {
            // Counted, and NaN at its position: the statistics stay those of the good frames.
            *dose = f64::NAN;
            row.fill(f32::NAN);
            self.frames_nonfinite += 1;
            self.frames_done += 1;
            return Ok(());
        }
        *dose = stats.add(stage).map_err(frame_err)?.as_f64();
        let mut at = 0;
        for layer in &plan.layers {
            let n = layer.segments();
            layer
                .project(stage, &mut row[at..at + n])
                .map_err(frame_err)?;
            at += n;
        }
        if let Some(dense) = &plan.dense {
            dense
                .project(stage, &mut row[at..at + 2])
                .map_err(frame_err)?;
        }
        self.frames_done += 1;
        Ok(())
    }

    /// Adds `other`'s statistics and per-frame outputs into this one (exact).
    pub fn merge(&mut self, other: &Reducer) -> Result<()> {
        let err = |e| Error::core("merging worker statistics", e);
        match (&mut self.stats, &other.stats) {
            (AnyStats::U8(a), AnyStats::U8(b)) => a.merge(b).map_err(err)?,
            (AnyStats::U16(a), AnyStats::U16(b)) => a.merge(b).map_err(err)?,
            (AnyStats::U32(a), AnyStats::U32(b)) => a.merge(b).map_err(err)?,
            (AnyStats::F32(a), AnyStats::F32(b)) => a.merge(b).map_err(err)?,
            _ => {
                return Err(Error::param(
                    "pixel type",
                    "workers with different pixel types",
                ));
            }
        }
        // Every frame was written by exactly one worker; the others hold zeros there.
        for (a, b) in self.dose.iter_mut().zip(&other.dose) {
            *a += b;
        }
        for (a, b) in self.coeffs.iter_mut().zip(&other.coeffs) {
            *a += b;
        }
        self.frames_done += other.frames_done;
        self.frames_nonfinite += other.frames_nonfinite;
        Ok(())
    }

    /// Marks every position outside `done` (sorted, disjoint ranges) as not processed: NaN
    /// dose and detector values, as at a position no frame arrived at. For the merged results
    /// of a run whose failed worker took its positions with it ([`crate::pipeline::Failure`]);
    /// the pattern statistics are those of the positions kept.
    pub fn keep_only(&mut self, done: &[std::ops::Range<usize>]) {
        let (n, k) = (self.dose.len(), self.plan.coeffs_per_frame);
        let mut next = 0;
        for r in done.iter().chain(std::iter::once(&(n..n))) {
            for i in next..r.start.min(n) {
                self.dose[i] = f64::NAN;
                self.coeffs[i * k..(i + 1) * k].fill(f32::NAN);
            }
            next = next.max(r.end);
        }
    }

    /// Frames this reducer (and those merged into it) processed.
    pub fn frames_done(&self) -> u64 {
        self.frames_done
    }

    /// Frames left out of the statistics because they held a NaN or an infinity
    /// ([`ReducePlan::skip_nonfinite`]).
    pub fn frames_nonfinite(&self) -> u64 {
        self.frames_nonfinite
    }

    /// Per-frame totals (the dose map), indexed by frame.
    pub fn dose(&self) -> &[f64] {
        &self.dose
    }

    /// Per-frame coefficients, `frames × coeffs_per_frame`, frame-major.
    pub fn coeffs(&self) -> &[f32] {
        &self.coeffs
    }

    /// The values of one detector for every frame, `frames × slot.len`. Centre of mass is
    /// divided by the frame total and scaled to unbinned pixels (relative to the disc centre).
    pub fn detector_values(&self, slot: &DetectorSlot) -> Vec<f32> {
        let k = self.plan.coeffs_per_frame;
        let mut out = Vec::with_capacity(self.plan.frames * slot.len);
        for (row, &total) in self.coeffs.chunks_exact(k.max(1)).zip(&self.dose) {
            let values = &row[slot.offset..slot.offset + slot.len];
            if slot.kind == "com" {
                let scale = if total > 0.0 {
                    self.plan.bin as f64 / total
                } else {
                    0.0
                };
                out.extend(values.iter().map(|&v| (v as f64 * scale) as f32));
            } else {
                out.extend_from_slice(values);
            }
        }
        out
    }

    /// Mean and population variance of the stage frame over all frames, and (min, max).
    pub fn pattern_stats(&self) -> Result<PatternStats> {
        let area = self.plan.stage.area();
        let (mut mean, mut var) = (vec![0.0; area], vec![0.0; area]);
        let err = |e| Error::core("mean and variance", e);
        macro_rules! derive {
            ($s:expr) => {{
                if $s.frames() > 0 {
                    $s.mean(&mut mean).map_err(err)?;
                    $s.variance(&mut var).map_err(err)?;
                }
                $s.min()
                    .zip($s.max())
                    .map(|(lo, hi)| (lo.to_f64(), hi.to_f64()))
            }};
        }
        let range = match &self.stats {
            AnyStats::U8(s) => derive!(s),
            AnyStats::U16(s) => derive!(s),
            AnyStats::U32(s) => derive!(s),
            AnyStats::F32(s) => derive!(s),
        };
        Ok(PatternStats { mean, var, range })
    }
}

impl Reducer {
    /// The instruction set this reducer's per-frame work runs with.
    pub fn simd(&self) -> SimdLevel {
        self.simd
    }

    /// One frame, all stages; inlined into each instruction-set variant
    /// ([`SimdLevel::run`]), and the core kernels (`#[inline(always)]`) with it.
    #[inline(always)]
    fn process_frame(&mut self, index: usize, frame: Frame<'_>) -> Result<()> {
        match frame {
            Frame::U8(f) => self.process_typed(index, f),
            Frame::U16(f) => self.process_typed(index, f),
            Frame::U32(f) => self.process_typed(index, f),
            Frame::F32(f) => self.process_typed(index, f),
        }
    }
}

impl Worker for Reducer {
    fn process(&mut self, index: usize, frame: Frame<'_>) -> Result<()> {
        self.simd.run(
            #[inline(always)]
            || self.process_frame(index, frame),
        )
    }
}

/// [`DenseMasks::project_batch`], compiled for the widest [`SimdLevel`] the CPU has (the
/// results are the same bits at every level: the kernel fixes its order of additions and
/// no level fuses multiply and add).
pub fn project_dense_batch<'f, S, P, I>(
    masks: &DenseMasks<S>,
    frames: I,
    out: &mut [f32],
) -> std::result::Result<usize, ptyflow_core::Error>
where
    S: AsRef<[f32]>,
    P: Pixel + 'f,
    I: IntoIterator<Item = &'f [P]>,
    I::IntoIter: Clone,
{
    SimdLevel::detect().run(
        #[inline(always)]
        || masks.project_batch(frames, out),
    )
}

/// [`project_dense_batch`] for frames of any pixel type, converting each frame's window to
/// `f32` once per batch instead of once per block of masks ([`DenseMasks::crop_to_f32`], then
/// the [`DenseMasks::cropped`] masks): the same bits, less work per mask. Holds the
/// converted windows of one batch; one per thread.
#[derive(Debug)]
pub struct DenseProjector<'m> {
    masks: &'m DenseMasks<Vec<f32>>,
    windows: Vec<f32>,
}

impl<'m> DenseProjector<'m> {
    /// A projector for batches of up to `batch` frames (allocates their windows now).
    pub fn new(masks: &'m DenseMasks<Vec<f32>>, batch: usize) -> Self {
        DenseProjector {
            masks,
            windows: vec![0.0; batch.max(1) * masks.window().area()],
        }
    }

    /// Projects `frames` (at most the batch size given to [`DenseProjector::new`]) into `out`,
    /// frame-major as [`DenseMasks::project_batch`]; returns the number of frames.
    /// [`ptyflow_core::Error::GeometryMismatch`] for a frame of the wrong size, too many
    /// frames (expected = the batch size, found = the frames given), or an `out` that is not
    /// frames × K long.
    pub fn project<'f, P, I>(
        &mut self,
        frames: I,
        out: &mut [f32],
    ) -> std::result::Result<usize, ptyflow_core::Error>
    where
        P: Pixel + 'f,
        I: IntoIterator<Item = &'f [P]>,
    {
        let win = self.masks.window().area();
        let mut frames = frames.into_iter();
        let mut n = 0;
        for (window, frame) in self.windows.chunks_exact_mut(win).zip(&mut frames) {
            self.masks.crop_to_f32(frame, window)?;
            n += 1;
        }
        if frames.next().is_some() {
            let batch = self.windows.len() / win;
            return Err(ptyflow_core::Error::GeometryMismatch {
                expected: batch,
                found: batch + 1 + frames.count(),
            });
        }
        project_dense_batch(
            &self.masks.cropped(),
            self.windows[..n * win].chunks_exact(win),
            out,
        )
    }
}

/// Merges the reducers of the workers into one (the order does not change integer sums).
pub fn merge_reducers(workers: Vec<Reducer>) -> Result<Reducer> {
    let mut workers = workers.into_iter();
    let mut merged = workers
        .next()
        .ok_or_else(|| Error::Pipeline("no reduction worker finished".into()))?;
    for w in workers {
        merged.merge(&w)?;
    }
    Ok(merged)
}
