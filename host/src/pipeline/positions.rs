//! Several frames per scan position (paper 000: eight 2 ms frames at each position, summed
//! 8, 4, 2 or 1 at a time into a dose series from one acquisition). A [`Grouping`] says how
//! many frames each position has and how many of them make its pattern; a
//! [`PatternReader`] hands out the pattern of a position: the frame itself when there is one
//! per position, else the sum of the first `used` frames in a per-thread
//! [`FrameSum`] made at set-up (no allocation per frame).

use ptyflow_core::{FrameGeometry, FrameSum};

use crate::budget::try_filled;
use crate::source::{Dump, Frame, FrameReader, PixelKind};
use crate::{Error, Result};

/// Frames per scan position, and how many of them (the first ones) are summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Grouping {
    /// Frames recorded at each position (K).
    pub per_position: usize,
    /// Frames summed into each position's pattern: the first `used` of every K (N ≤ K).
    pub used: usize,
}

impl Default for Grouping {
    fn default() -> Self {
        Grouping {
            per_position: 1,
            used: 1,
        }
    }
}

impl Grouping {
    /// A grouping of `per_position` frames with the first `used` summed; errors name the
    /// configuration fields.
    pub fn new(per_position: usize, used: Option<usize>) -> Result<Self> {
        let used = used.unwrap_or(per_position);
        if per_position == 0 {
            return Err(Error::param(
                "scan.frames_per_position",
                "0: need at least 1",
            ));
        }
        if used == 0 || used > per_position {
            return Err(Error::param(
                "scan.use_frames",
                format!("{used}: need 1 ..= {per_position} (`scan.frames_per_position`)"),
            ));
        }
        Ok(Grouping { per_position, used })
    }

    /// Whether patterns are sums (else each frame is its position's pattern).
    pub fn sums(&self) -> bool {
        self.per_position > 1
    }

    /// The pixel type of the patterns: integer frames sum in `u32`, `f32` frames in `f32`.
    pub fn pattern_pixel(&self, frames: PixelKind) -> PixelKind {
        match (self.sums(), frames) {
            (false, kind) => kind,
            (true, PixelKind::F32) => PixelKind::F32,
            (true, _) => PixelKind::U32,
        }
    }
}

/// The running sum of one thread, in the accumulator of the dump's pixel type.
#[derive(Debug)]
enum Sum {
    Int(FrameSum<u32, Vec<u32>>),
    Float(FrameSum<f32, Vec<f32>>),
}

/// Reads the pattern of each position of a dump; see the [module docs](self).
#[derive(Debug)]
pub struct PatternReader<'d> {
    reader: FrameReader<'d>,
    grouping: Grouping,
    sum: Option<Sum>,
}

impl<'d> PatternReader<'d> {
    /// A reader of `dump`'s patterns (its buffer, when it sums, allocated here).
    pub fn new(dump: &'d Dump, grouping: Grouping) -> Result<Self> {
        let info = dump.info();
        let sum = if grouping.sums() {
            let g = FrameGeometry::new(info.width, info.height)
                .map_err(|e| Error::core(info.path.display().to_string(), e))?;
            let (name, what) = ("scan.frames_per_position", "the sum of a position's frames");
            let err = |e| Error::core(what, e);
            Some(match info.pixel {
                PixelKind::F32 => Sum::Float(
                    FrameSum::new(g, try_filled(g.area(), 0.0, name, what)?).map_err(err)?,
                ),
                _ => Sum::Int(FrameSum::new(g, try_filled(g.area(), 0, name, what)?).map_err(err)?),
            })
        } else {
            None
        };
        Ok(PatternReader {
            reader: dump.reader(),
            grouping,
            sum,
        })
    }

    /// The pattern of position `index`: frame `index`, or the sum of frames
    /// `index·K .. index·K + N`.
    pub fn pattern(&mut self, index: usize) -> Result<Frame<'_>> {
        let Some(sum) = self.sum.as_mut() else {
            return self.reader.frame(index);
        };
        let first = index * self.grouping.per_position;
        let err = |e| Error::core(format!("summing the frames of position {index}"), e);
        match sum {
            Sum::Int(s) => s.clear(),
            Sum::Float(s) => s.clear(),
        }
        for k in first..first + self.grouping.used {
            match (&mut *sum, self.reader.frame(k)?) {
                (Sum::Int(s), Frame::U8(f)) => s.add(f),
                (Sum::Int(s), Frame::U16(f)) => s.add(f),
                (Sum::Int(s), Frame::U32(f)) => s.add(f),
                (Sum::Float(s), Frame::F32(f)) => s.add(f),
                (_, other) => {
                    return Err(Error::param(
                        "pixel type",
                        format!(
                            "frame {k} is {}, unlike the dump's others",
                            other.kind().name()
                        ),
                    ));
                }
            }
            .map_err(err)?;
        }
        Ok(match sum {
            Sum::Int(s) => Frame::U32(s.sum()),
            Sum::Float(s) => Frame::F32(s.sum()),
        })
    }
}
