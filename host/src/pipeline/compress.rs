//! The per-frame compression of paper 002 as a pipeline stage: the core's
//! [`Compressor`] compiled for the widest [`SimdLevel`] the CPU has, and a [`Worker`] that
//! keeps each frame's stored values and angles.
//!
//! What is projected: the frame as given ([`CompressValues::Intensity`], counts), or its
//! square root ([`CompressValues::Amplitude`], paper 002 eq. 8 projects √I). The job layer
//! ([`crate::job`]) decides which and builds the bases; this module only runs them.

use std::sync::Arc;

use ptyflow_core::{Compressor, FrameSummary, Pixel, Run};

use super::run::Worker;
use crate::simd::SimdLevel;
use crate::source::Frame;
use crate::{Error, Result};

/// The compressor the stage runs: packed run lists and masks in `Vec`s.
pub type FrameCompressor = Compressor<Vec<Run>, Vec<f32>>;

/// What the bases project.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressValues {
    /// The pixel values as recorded (counts): the frame as given to the kernel.
    #[default]
    Intensity,
    /// √ of each pixel (paper 002 eq. 8), converted into a per-worker `f32` frame first.
    Amplitude,
}

/// [`Compressor::compress_batch`] compiled for the widest [`SimdLevel`] the CPU has (the
/// same bits at every level: the kernel fixes its order of additions and no level fuses
/// multiply and add).
pub fn compress_batch<'f, P, I>(
    compressor: &FrameCompressor,
    frames: I,
    out: &mut [f32],
    summaries: &mut [FrameSummary],
) -> std::result::Result<usize, ptyflow_core::Error>
where
    P: Pixel + 'f,
    I: IntoIterator<Item = &'f [P]>,
    I::IntoIter: Clone,
{
    SimdLevel::detect().run(
        #[inline(always)]
        || compressor.compress_batch(frames, out, summaries),
    )
}

/// A plan shared by the workers: the compressor and what it projects.
#[derive(Debug)]
pub struct CompressPlan {
    /// The two bases.
    pub compressor: FrameCompressor,
    /// Intensity or amplitude.
    pub values: CompressValues,
    /// Frames the job will process (each worker reserves its share up front).
    pub frames: usize,
    /// Worker threads (to size each worker's share).
    pub threads: usize,
}

/// One thread's compressed frames: their indices, their rows of
/// [`Compressor::values_per_frame`] values and their two angles (bright field, dark field,
/// radians, paper 002 eq. 18), in the order the thread met them.
#[derive(Debug)]
pub struct CompressWorker {
    plan: Arc<CompressPlan>,
    simd: SimdLevel,
    /// Frame indices met.
    pub indices: Vec<usize>,
    /// Their rows, `indices.len() × V`.
    pub rows: Vec<f32>,
    /// Their angles, `indices.len() × 2` (bright field, dark field).
    pub angles: Vec<f32>,
    /// The √ of the current frame (amplitude mode only; empty otherwise).
    amplitude: Vec<f32>,
}

impl CompressWorker {
    /// A worker for `plan`; reserves room for its share of the frames (a quarter more than
    /// an even split, so a thread that takes more batches rarely grows its buffers).
    pub fn new(plan: Arc<CompressPlan>) -> Self {
        let share = plan.frames / plan.threads.max(1) + plan.frames / (4 * plan.threads.max(1));
        let share = (share + 256).min(plan.frames);
        let v = plan.compressor.values_per_frame();
        let area = plan.compressor.geometry().area();
        let amplitude = match plan.values {
            CompressValues::Amplitude => vec![0.0; area],
            CompressValues::Intensity => Vec::new(),
        };
        CompressWorker {
            simd: SimdLevel::detect(),
            indices: Vec::with_capacity(share),
            rows: Vec::with_capacity(share * v),
            angles: Vec::with_capacity(share * 2),
            amplitude,
            plan,
        }
    }

    /// The plan.
    pub fn plan(&self) -> &CompressPlan {
        &self.plan
    }

    /// One frame: a new row (amortised growth, reserved up front), its values and angles.
    #[inline(always)]
    fn push<P: Pixel>(&mut self, index: usize, frame: &[P]) -> Result<()> {
        let c = &self.plan.compressor;
        let v = c.values_per_frame();
        let start = self.rows.len();
        self.rows.resize(start + v, 0.0);
        let row = &mut self.rows[start..];
        let summary = match self.plan.values {
            CompressValues::Intensity => c.compress(frame, row),
            CompressValues::Amplitude => {
                c.geometry()
                    .check_len(frame.len())
                    .map_err(|e| Error::core(format!("frame {index}"), e))?;
                for (a, x) in self.amplitude.iter_mut().zip(frame) {
                    *a = x.to_f32().max(0.0).sqrt();
                }
                c.compress(&self.amplitude[..], row)
            }
        }
        .map_err(|e| Error::core(format!("frame {index}"), e))?;
        self.indices.push(index);
        self.angles.push(summary.bright.angle() as f32);
        self.angles.push(summary.dark.angle() as f32);
        Ok(())
    }

    #[inline(always)]
    fn process_frame(&mut self, index: usize, frame: Frame<'_>) -> Result<()> {
        match frame {
            Frame::U8(f) => self.push(index, f),
            Frame::U16(f) => self.push(index, f),
            Frame::U32(f) => self.push(index, f),
            Frame::F32(f) => self.push(index, f),
        }
    }
}

impl Worker for CompressWorker {
    fn process(&mut self, index: usize, frame: Frame<'_>) -> Result<()> {
        self.simd.run(
            #[inline(always)]
            || self.process_frame(index, frame),
        )
    }
}

/// The workers' rows and angles in frame order: `frames × V` values and `frames × 2` angles
/// (NaN for a frame no worker met).
pub fn gather(workers: &[CompressWorker], frames: usize) -> (Vec<f32>, Vec<f32>) {
    let v = workers
        .first()
        .map_or(0, |w| w.plan.compressor.values_per_frame());
    let mut rows = vec![f32::NAN; frames * v];
    let mut angles = vec![f32::NAN; frames * 2];
    for w in workers {
        for (k, &index) in w.indices.iter().enumerate() {
            if index < frames {
                rows[index * v..(index + 1) * v].copy_from_slice(&w.rows[k * v..(k + 1) * v]);
                angles[index * 2..index * 2 + 2].copy_from_slice(&w.angles[k * 2..k * 2 + 2]);
            }
        }
    }
    (rows, angles)
}
