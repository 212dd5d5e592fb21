//! Frames the caller already holds in memory (a 4D `[scan_y, scan_x, det_y, det_x]` array,
//! e.g. a numpy array in Python) reduced and reconstructed like a dump: when a detector or
//! the reconstruction needs the bright-field disc and the configuration does not give it, it
//! is found from the mean of up to [`DISC_SAMPLE_FRAMES`] frames spread over the array, as
//! [`super::replay`] does for a dump; then every frame goes through a [`PushSession`] in
//! scan order (the same reduction, reconstruction, outputs and report).
//!
//! The frames are reached through [`FrameSet`], so a face can hand over memory laid out in
//! any order: [`ContiguousFrames`] borrows a C-order block as it is; a strided view
//! gathers each frame into a scratch buffer.

use std::sync::atomic::Ordering;

use super::config::{JobConfig, PushSource, Source};
use super::outputs::write_arrays;
use super::push::PushSession;
use super::replay::detectors_px;
use super::{Hooks, JobOutcome, recon, write_report};
use crate::pipeline::detectors::{DISC_SAMPLE_FRAMES, Disc, find_bright_field};
use crate::pipeline::push::PushError;
use crate::pipeline::run::report;
use crate::source::PixelKind;
use crate::{Error, Result};

/// Frames between two looks at [`Hooks::interrupt`] and two progress reports.
const CHECK_EVERY: usize = 64;

/// Frames held in memory, in acquisition (scan) order. `Sync` so a face can lend it to
/// a job that runs while the caller's lock (Python's GIL) is released.
pub trait FrameSet: Sync {
    /// Width, height and pixel type of every frame.
    fn geometry(&self) -> PushSource;
    /// Number of frames.
    fn len(&self) -> usize;
    /// Whether there are no frames.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Frame `index` (`< len()`) as native-order pixel bytes, `width × height × pixel
    /// size` of them, row-major: borrowed when it lies contiguous in memory, else gathered
    /// into `scratch` (one frame long) and returned from there.
    fn frame<'a>(&'a self, index: usize, scratch: &'a mut [u8]) -> &'a [u8];
}

/// A C-order block of frames: `len × height × width` native-order pixels, back to back.
#[derive(Debug, Clone, Copy)]
pub struct ContiguousFrames<'a> {
    geometry: PushSource,
    frame_bytes: usize,
    bytes: &'a [u8],
}

impl<'a> ContiguousFrames<'a> {
    /// Frames of `geometry` in `bytes`; an error unless `bytes` holds a whole number of them.
    pub fn new(geometry: PushSource, bytes: &'a [u8]) -> Result<Self> {
        let frame_bytes = geometry.width * geometry.height * geometry.pixel.bytes();
        if frame_bytes == 0 || bytes.len() % frame_bytes != 0 {
            return Err(Error::param(
                "frames",
                format!(
                    "{} bytes is not a whole number of {} × {} {} frames",
                    bytes.len(),
                    geometry.width,
                    geometry.height,
                    geometry.pixel.name()
                ),
            ));
        }
        Ok(ContiguousFrames {
            geometry,
            frame_bytes,
            bytes,
        })
    }
}

impl FrameSet for ContiguousFrames<'_> {
    fn geometry(&self) -> PushSource {
        self.geometry
    }
    fn len(&self) -> usize {
        self.bytes.len() / self.frame_bytes
    }
    fn frame<'a>(&'a self, index: usize, _scratch: &'a mut [u8]) -> &'a [u8] {
        &self.bytes[index * self.frame_bytes..][..self.frame_bytes]
    }
}

/// Reduces (and, with `config.recon`, reconstructs) the frames of `frames` — see the
/// module docs. `config.source` must be `push` with the frames' geometry;
/// `config.scan.shape` must hold `frames.len()` positions (fewer with
/// `scan.allow_partial`: the positions without a frame hold 0). With `config.out` the
/// outputs and `report.json` are written as a replay writes them. An interrupt stops
/// pushing; what was pushed is finished and `report.counters.interrupted` is set.
pub fn reduce_frames(
    config: &JobConfig,
    frames: &dyn FrameSet,
    hooks: &Hooks,
) -> Result<JobOutcome> {
    config.validate()?;
    let geometry = frames.geometry();
    match config.source {
        Source::Push(p) if p == geometry => {}
        _ => {
            return Err(Error::param(
                "source",
                format!(
                    "in-memory frames are {} × {} {}: give `source.push` with that width, height and pixel",
                    geometry.width,
                    geometry.height,
                    geometry.pixel.name()
                ),
            ));
        }
    }
    let n = frames.len();
    if let Some([rows, cols]) = config.scan.shape {
        let positions = rows * cols;
        if n > positions || (n < positions && !config.scan.allow_partial) {
            return Err(Error::param(
                "scan.shape",
                format!(
                    "{rows}x{cols} = {positions} positions but the array holds {n} frames{}",
                    if n < positions {
                        "; set `scan.allow_partial` to reduce them anyway"
                    } else {
                        ""
                    }
                ),
            ));
        }
    }

    // The disc as a replay finds it, written into the configuration the session starts from.
    let mut job = config.clone();
    let out = job.out.take();
    let needs_disc = !detectors_px(config).is_empty() || config.recon.is_some();
    let (center, radius) = (config.reduce.center, config.reduce.bf_radius);
    let disc_source = match (center, radius) {
        (Some(_), Some(_)) => "given",
        _ if !needs_disc => {
            // Nothing uses a disc: a half-given one is dropped, as a replay ignores it.
            (job.reduce.center, job.reduce.bf_radius) = (None, None);
            ""
        }
        _ => {
            let Some(d) = estimate_disc(frames)? else {
                return Err(Error::param(
                    "reduce.center",
                    "no bright-field disc found in the mean pattern of the frames; give \
                     `reduce.center` X,Y and `reduce.bf_radius` R",
                ));
            };
            job.reduce.center = Some(center.unwrap_or([d.cx, d.cy]));
            // The session reads the radius in the configuration's unit.
            let m = config.radii_mrad_per_px();
            job.reduce.bf_radius = Some(radius.unwrap_or(m.map_or(d.r, |m| d.r * m)));
            match (center.is_some(), radius.is_some()) {
                (false, false) => "found in the mean pattern",
                (true, _) => "given centre, radius found",
                (false, true) => "centre found, given radius",
            }
        }
    };

    let mut session = PushSession::start(&job)?;
    let progress = hooks.progress.as_deref();
    report(progress, |p| p.start("frames", n as u64));
    let mut scratch = vec![0u8; session.frame_bytes()];
    let mut interrupted = false;
    for index in 0..n {
        if index % CHECK_EVERY == 0 {
            if hooks.interrupt.load(Ordering::Relaxed) {
                interrupted = true;
                break;
            }
            report(progress, |p| p.set(index as u64));
        }
        match session.push(index, frames.frame(index, &mut scratch)) {
            Ok(()) => {}
            Err(PushError::Invalid(e)) => return Err(e),
            // `run.blocking = false` refuses frames when the queue is full; an array is
            // not a detector, so it waits instead of dropping.
            Err(PushError::QueueFull) => {
                return Err(Error::param(
                    "run.blocking",
                    "in-memory frames are never dropped: leave `run.blocking` true",
                ));
            }
        }
    }
    report(progress, |p| p.finish());
    let mut outcome = session.finish(progress)?;

    let report = &mut outcome.report;
    report.frames_in_file = n;
    report.counters.interrupted = interrupted;
    if let Some(disc) = &mut report.bright_field_disc {
        disc.source = disc_source.to_string();
    }
    // The session wrote nothing (`out` was taken above) so the report can say how the
    // disc was found; the outputs are written here in the order a replay writes them.
    if let Some(out) = &out {
        crate::output::ensure_dir(out)?;
        write_arrays(out, &outcome.arrays, &mut report.outputs)?;
        if let Some(result) = &outcome.recon {
            recon::write(out, result, &mut report.outputs)?;
        }
        write_report(out, report)?;
    }
    Ok(outcome)
}

/// The bright-field disc of the mean of up to [`DISC_SAMPLE_FRAMES`] frames spread evenly
/// over `frames` (the frames [`crate::pipeline::detectors::estimate_disc`] takes of a dump).
fn estimate_disc(frames: &dyn FrameSet) -> Result<Option<Disc>> {
    let g = frames.geometry();
    let n = frames.len();
    if n == 0 {
        return Ok(None);
    }
    let take = n.min(DISC_SAMPLE_FRAMES);
    let mut mean = vec![0.0f64; g.width * g.height];
    let mut scratch = vec![0u8; mean.len() * g.pixel.bytes()];
    for k in 0..take {
        let bytes = frames.frame(k * n / take, &mut scratch);
        add_frame(&mut mean, g.pixel, bytes);
    }
    Ok(find_bright_field(&mean, g.width, g.height))
}

/// Adds the pixels of one frame (native-order bytes of `pixel`) to `sum`.
fn add_frame(sum: &mut [f64], pixel: PixelKind, bytes: &[u8]) {
    fn add<P: bytemuck::Pod + Into<f64>>(sum: &mut [f64], bytes: &[u8]) {
        // The bytes may sit at any address (a slice of a caller's buffer): read unaligned.
        let size = std::mem::size_of::<P>();
        for (s, px) in sum.iter_mut().zip(bytes.chunks_exact(size)) {
            *s += bytemuck::pod_read_unaligned::<P>(px).into();
        }
    }
    match pixel {
        PixelKind::U8 => add::<u8>(sum, bytes),
        PixelKind::U16 => add::<u16>(sum, bytes),
        PixelKind::U32 => add::<u32>(sum, bytes),
        PixelKind::F32 => add::<f32>(sum, bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{DumpSource, ReduceConfig, ScanConfig};
    use crate::pipeline::detectors::VirtualSpec;

    /// A 6 × 5 scan of 16 × 16 u16 frames with a bright disc of radius 4 at (7, 8).
    fn frames() -> Vec<u16> {
        let mut v = Vec::new();
        for f in 0..30u16 {
            for row in 0..16i32 {
                for col in 0..16i32 {
                    let d2 = (col - 7).pow(2) + (row - 8).pow(2);
                    v.push(if d2 <= 16 { 100 + f } else { f % 3 });
                }
            }
        }
        v
    }

    fn config(detectors: Vec<VirtualSpec>) -> JobConfig {
        let mut c = JobConfig::dump("unused");
        c.source = Source::Push(PushSource {
            width: 16,
            height: 16,
            pixel: PixelKind::U16,
        });
        c.scan = ScanConfig {
            shape: Some([6, 5]),
            ..ScanConfig::default()
        };
        c.reduce = ReduceConfig {
            detectors,
            ..ReduceConfig::default()
        };
        c.run.threads = Some(2);
        c
    }

    #[test]
    fn finds_the_disc_and_reduces_every_frame() {
        let data = frames();
        let set = ContiguousFrames::new(
            PushSource {
                width: 16,
                height: 16,
                pixel: PixelKind::U16,
            },
            bytemuck::cast_slice(&data),
        )
        .unwrap();
        let outcome = reduce_frames(
            &config(vec![VirtualSpec::BrightField]),
            &set,
            &Hooks::default(),
        )
        .unwrap();
        let disc = outcome.report.bright_field_disc.as_ref().unwrap();
        assert_eq!(disc.source, "found in the mean pattern");
        assert!((disc.disc.cx - 7.0).abs() < 0.5 && (disc.disc.cy - 8.0).abs() < 0.5);
        assert_eq!(outcome.report.counters.frames_processed, 30);
        let bf = outcome
            .arrays
            .iter()
            .find(|a| a.name == "virtual_bf")
            .unwrap();
        // The reference: every pixel whose centre lies in the found disc, summed.
        let d = disc.disc;
        for (f, &v) in bf.data.iter().enumerate() {
            let frame = &data[f * 256..][..256];
            let expected: u32 = (0..256)
                .filter(|&i| {
                    let (row, col) = ((i / 16) as f64, (i % 16) as f64);
                    (col - d.cx).powi(2) + (row - d.cy).powi(2) <= d.r * d.r
                })
                .map(|i| u32::from(frame[i]))
                .sum();
            assert_eq!(v, expected as f32, "frame {f}");
        }
    }

    #[test]
    fn wrong_source_or_scan_names_the_field() {
        let data = frames();
        let geometry = PushSource {
            width: 16,
            height: 16,
            pixel: PixelKind::U16,
        };
        let set = ContiguousFrames::new(geometry, bytemuck::cast_slice(&data)).unwrap();
        let mut c = config(vec![]);
        c.source = Source::Dump(DumpSource::new("x.raw"));
        let e = reduce_frames(&c, &set, &Hooks::default()).unwrap_err();
        assert!(e.to_string().contains("`source`"), "{e}");
        let mut c = config(vec![]);
        c.scan.shape = Some([7, 5]);
        let e = reduce_frames(&c, &set, &Hooks::default()).unwrap_err();
        assert!(e.to_string().contains("scan.shape"), "{e}");
        assert!(ContiguousFrames::new(geometry, &[0u8; 3]).is_err());
    }
}
