//! The per-frame compression kernel: coefficients, perpendicular components, angle, ratio.
//!
//! For a basis q₁ … q_K on a region (paper 002, eqs. 8, 11, 17, 18), a frame x gives
//!
//! - the coefficients cₖ = ⟨qₖ, x_region⟩ ([`Basis::project`]);
//! - the region's energy ‖x_region‖² and the captured part Σ cₖ² ([`RegionSummary`]), whose
//!   difference is the squared *perpendicular component* ‖x_⊥‖² = ‖x_region‖² − Σ cₖ² (eq. 11,
//!   [`RegionSummary::perpendicular`]);
//! - the angle α between x_region and its projection, cos α = ‖c‖ / ‖x_region‖ (eq. 18,
//!   [`RegionSummary::angle`]): 0 when the basis captures the frame, π/2 when it misses it.
//!
//! A [`Compressor`] pairs a bright-field and a dark-field basis and writes one row of stored
//! values per frame: `[c_bf (K_bf), c_df (K_df), ‖x_⊥,bf‖², ‖x_⊥,df‖²]`, K_bf + K_df + 2
//! values, so the compression ratio is C = pixels / (K_bf + K_df + 2) (eq. 17,
//! [`compression_ratio`]).
//!
//! # The kernel
//!
//! The region's pixels are read run by run (contiguous slices of the frame, nothing outside
//! the region) and converted to `f32` into stack chunks of 512 values. Each full chunk meets
//! every mask while it is in L1, 8 lanes per frame; [`Basis::project_batch`] and
//! [`Compressor::compress_batch`] take [`FRAME_BLOCK`] frames through the chunk together, so
//! each mask value loaded from cache serves 4 frames (the 45 bright-field masks are 580 KB,
//! more than L1 and a large part of L2). A mask that is constant over the region (the
//! annular piston: the dark field's "one value") is not read at all: its coefficient is its
//! weight times Σx. No allocation, no scratch argument: per frame in flight 2 KiB of chunk
//! and 2 KiB of per-mask sums on the stack (16 KiB for a batch group).
//!
//! # Precision
//!
//! - Coefficients: within a chunk, f32 products summed in 8 lanes (64 terms per lane); the
//!   chunk sums are added in f64 and rounded to f32 once. Relative error about 1e-6 of
//!   Σ|qₖ·x| (tested at 1e-5 against an f64 reference). The flat mask's Σx is exact for
//!   `u8`/`u16` pixels.
//! - Energy: exact for `u8` and `u16` pixels (regions below 2²¹ pixels) and for `u32` pixels
//!   below 2²⁴ while the sum stays below 2⁵³. A chunk whose squares are all below 2¹⁸ is
//!   summed in f32 lanes (exact for whole numbers: 64 terms below 2²⁴), any other chunk in
//!   f64; `f32` pixels always in f64 (relative error ≤ n·2⁻⁵³). `u32` pixels above 2²⁴ are
//!   rounded to f32 first, as for the coefficients.
//! - Batches give the same bits as single frames.
//! - The perpendicular component is a difference: its absolute error is about 1e-6 of the
//!   energy, so it can come out slightly negative for a frame inside the span. It is not
//!   clamped (the stored value is the honest difference); [`RegionSummary::angle`] clamps.

use super::region::Run;
use super::{Basis, MAX_BASIS};
use crate::Error;
use crate::geometry::{FrameGeometry, check_len};
use crate::math;
use crate::pixel::{Pixel, StatAccumulator};

/// Pixels converted to f32 per chunk.
const CHUNK: usize = 512;
/// Independent partial sums per frame: f32 for the dot products, f64 for the energy.
const LANES: usize = 8;
/// Independent f32 partial sums of a dot product (two AVX registers).
const DOT_LANES: usize = 16;
/// Squares below this (2¹⁸) sum exactly in an f32 lane of a chunk (CHUNK / LANES = 64 terms).
const EXACT_SQUARE: f32 = (1u32 << 18) as f32;

/// Frames that [`Basis::project_batch`] takes through the masks together.
pub const FRAME_BLOCK: usize = 4;

/// What one frame holds in one region, and how much of it the basis captured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RegionSummary {
    /// ‖x_region‖²: the sum of squared pixels in the region.
    pub energy: f64,
    /// Σ cₖ²: the squared norm of the projection (from the f32 coefficients, in f64).
    pub captured: f64,
}

impl RegionSummary {
    /// ‖x_⊥‖² = energy − captured (paper 002, eq. 11); not clamped (see the
    /// [module docs](self)).
    pub fn perpendicular(&self) -> f64 {
        self.energy - self.captured
    }

    /// The angle α (radians, in [0, π/2]) between the region's pixels and their projection
    /// onto the basis: cos α = ‖c‖ / ‖x_region‖ (paper 002, eq. 18). Computed as
    /// atan2(‖x_⊥‖, ‖c‖) with ‖x_⊥‖² clamped at 0, which is accurate near 0 where arccos is
    /// not. A region with no signal (energy 0) gives 0: nothing was lost; NaN pixels give NaN.
    pub fn angle(&self) -> f64 {
        if self.energy == 0.0 {
            return 0.0;
        }
        let perp = self.perpendicular().max(0.0);
        math::atan2(math::sqrt64(perp), math::sqrt64(self.captured.max(0.0)))
    }
}

impl<R: AsRef<[Run]>, M: AsRef<[f32]>> Basis<R, M> {
    /// Write the K coefficients of `frame` into `coeffs` (overwriting it) and return the
    /// region's energy and captured part.
    ///
    /// [`Error::GeometryMismatch`] (before writing anything) for a frame that is not the
    /// region's geometry's area or `coeffs` that is not K long.
    #[inline(always)]
    pub fn project<P: Pixel>(
        &self,
        frame: &[P],
        coeffs: &mut [f32],
    ) -> Result<RegionSummary, Error> {
        self.region().geometry().check_len(frame.len())?;
        check_len(self.count(), coeffs.len())?;
        let [summary] = self.project_group([frame], [coeffs]);
        Ok(summary)
    }

    /// Project several frames: [`FRAME_BLOCK`] at a time, so each mask row read from cache
    /// serves that many frames. Coefficient k of frame f goes to `coeffs[f * K + k]`, its
    /// summary to `summaries[f]`; results equal [`Basis::project`]'s bit for bit.
    ///
    /// `frames` is any re-iterable sequence of frames (`contiguous.chunks_exact(area)`,
    /// `list.iter().map(|f| &f[..])`, …). Returns the number of frames;
    /// [`Error::GeometryMismatch`] (before writing anything) if a frame is not the geometry's
    /// area, `coeffs` is not frames × K long or `summaries` not frames long.
    #[inline]
    pub fn project_batch<'f, P, I>(
        &self,
        frames: I,
        coeffs: &mut [f32],
        summaries: &mut [RegionSummary],
    ) -> Result<usize, Error>
    where
        P: Pixel + 'f,
        I: IntoIterator<Item = &'f [P]>,
        I::IntoIter: Clone,
    {
        let frames = frames.into_iter();
        let geometry = self.region().geometry();
        let mut count = 0;
        for frame in frames.clone() {
            geometry.check_len(frame.len())?;
            count += 1;
        }
        let k = self.count();
        check_len(count * k, coeffs.len())?;
        check_len(count, summaries.len())?;
        let mut rest = frames;
        let mut rows = coeffs
            .chunks_mut(k.max(1))
            .chain(core::iter::repeat_with(|| &mut [][..]));
        let mut out = summaries.iter_mut();
        loop {
            let group: [Option<&[P]>; FRAME_BLOCK] = core::array::from_fn(|_| rest.next());
            if let [Some(a), Some(b), Some(c), Some(d)] = group {
                let rows: [&mut [f32]; FRAME_BLOCK] = core::array::from_fn(|_| {
                    let row = rows.next().unwrap_or_default();
                    &mut row[..k]
                });
                // The array first: zip stops on it without taking a fifth slot from `out`.
                for (s, o) in self
                    .project_group([a, b, c, d], rows)
                    .into_iter()
                    .zip(&mut out)
                {
                    *o = s;
                }
                continue;
            }
            // Fewer than FRAME_BLOCK frames left: one at a time.
            for frame in group.into_iter().flatten() {
                let row = rows.next().unwrap_or_default();
                let [s] = self.project_group([frame], [&mut row[..k]]);
                if let Some(o) = out.next() {
                    *o = s;
                }
            }
            return Ok(count);
        }
    }

    /// The kernel for `F` frames of the right length and `F` coefficient rows of length K.
    #[inline(always)]
    fn project_group<P: Pixel, const F: usize>(
        &self,
        frames: [&[P]; F],
        coeffs: [&mut [f32]; F],
    ) -> [RegionSummary; F] {
        let n = self.region().pixels();
        let k = self.count();
        let masks = self.masks();
        // The flat mask (if any) is skipped in the dot products: its weight times Σx.
        let flat = self.flat.unwrap_or(usize::MAX);
        let integer = <P::StatAcc as StatAccumulator>::EXACT;
        let mut sums = [[0.0f64; MAX_BASIS]; F];
        let mut totals = [0.0f64; F];
        let mut energy = [[0.0f64; LANES]; F];
        let mut bufs = [[0.0f32; CHUNK]; F];
        let (mut fill, mut offset) = (0, 0);
        for run in self.region().runs() {
            let (mut pos, end) = (run.start, run.start + run.len);
            while pos < end {
                let take = (CHUNK - fill).min(end - pos);
                for (buf, frame) in bufs.iter_mut().zip(&frames) {
                    for (d, &x) in buf[fill..fill + take]
                        .iter_mut()
                        .zip(&frame[pos..pos + take])
                    {
                        *d = x.to_f32();
                    }
                }
                (fill, pos) = (fill + take, pos + take);
                if fill == CHUNK {
                    let chunk = Chunk {
                        masks,
                        n,
                        count: k,
                        flat,
                        offset,
                    };
                    chunk.full(integer, &bufs, &mut sums, &mut energy, &mut totals);
                    (fill, offset) = (0, offset + CHUNK);
                }
            }
        }
        if fill > 0 {
            let chunk = Chunk {
                masks,
                n,
                count: k,
                flat,
                offset,
            };
            chunk.partial(fill, &bufs, &mut sums, &mut energy, &mut totals);
        }
        if let Some(q) = self.mask(flat) {
            let w = f64::from(q[0]);
            for (s, &t) in sums.iter_mut().zip(&totals) {
                s[flat] = w * t;
            }
        }
        let mut out = [RegionSummary::default(); F];
        for (((o, row), s), e) in out.iter_mut().zip(coeffs).zip(&sums).zip(&energy) {
            let mut captured = 0.0;
            for (c, &v) in row.iter_mut().zip(s) {
                *c = v as f32;
                captured += f64::from(*c) * f64::from(*c);
            }
            *o = RegionSummary {
                energy: e.iter().sum(),
                captured,
            };
        }
        out
    }
}

/// One chunk's place: packed region pixels `offset .. offset + len` of each of the `count`
/// masks (n values each), the flat mask's index (or `usize::MAX`).
#[derive(Clone, Copy)]
struct Chunk<'m> {
    masks: &'m [f32],
    n: usize,
    count: usize,
    flat: usize,
    offset: usize,
}

impl Chunk<'_> {
    /// The mask `k` values of this chunk, `len` long.
    #[inline(always)]
    fn row(&self, k: usize, len: usize) -> &[f32] {
        let start = k * self.n + self.offset;
        &self.masks[start..start + len]
    }

    /// A full chunk of `F` frames against every mask but the flat one; adds each frame's
    /// squares to `energy` and its pixel sum to `totals` (`integer`: the pixels are whole
    /// numbers, so small squares sum exactly in f32). Fixed-size arrays throughout, so the
    /// loops unroll and vectorise.
    #[inline(always)]
    fn full<const F: usize>(
        &self,
        integer: bool,
        bufs: &[[f32; CHUNK]; F],
        sums: &mut [[f64; MAX_BASIS]; F],
        energy: &mut [[f64; LANES]; F],
        totals: &mut [f64; F],
    ) {
        for ((e, t), buf) in energy.iter_mut().zip(totals.iter_mut()).zip(bufs) {
            // Σx and Σx² in f32 lanes, and the largest square. For integer pixels both sums are
            // exact when every square is below 2¹⁸ (64 terms per lane stay below 2²⁴): then Σx²
            // is used as is; otherwise (or for f32 pixels) the squares are redone in f64.
            // Σx is exact for u8/u16 (64 terms below 2¹⁶).
            let (mut sum, mut sq, mut big) = ([0.0f32; LANES], [0.0f32; LANES], [0.0f32; LANES]);
            for x in buf.chunks_exact(LANES) {
                let x = lanes(x);
                for i in 0..LANES {
                    let x2 = x[i] * x[i];
                    sum[i] += x[i];
                    sq[i] += x2;
                    // Not f32::max: its NaN rule costs extra instructions (a NaN pixel
                    // poisons Σx² either way).
                    big[i] = if x2 > big[i] { x2 } else { big[i] };
                }
            }
            *t += f64::from(sum.iter().sum::<f32>());
            if integer && big.iter().all(|&b| b < EXACT_SQUARE) {
                for (e, &q) in e.iter_mut().zip(&sq) {
                    *e += f64::from(q);
                }
            } else {
                for x in buf.chunks_exact(LANES) {
                    let x = lanes(x);
                    for i in 0..LANES {
                        e[i] += f64::from(x[i]) * f64::from(x[i]);
                    }
                }
            }
        }
        for k in 0..self.count {
            if k == self.flat {
                continue;
            }
            // Always CHUNK long (offset + CHUNK ≤ n); the fallback is unreachable.
            let m: &[f32; CHUNK] = self.row(k, CHUNK).try_into().unwrap_or(&[0.0; CHUNK]);
            let mut acc = [[0.0f32; LANES]; F];
            for (j, m) in m.chunks_exact(LANES).enumerate() {
                let m = lanes(m);
                for (a, buf) in acc.iter_mut().zip(bufs) {
                    let x = lanes(&buf[j * LANES..(j + 1) * LANES]);
                    for i in 0..LANES {
                        a[i] += m[i] * x[i];
                    }
                }
            }
            for (s, a) in sums.iter_mut().zip(&acc) {
                s[k] += f64::from(a.iter().sum::<f32>());
            }
        }
    }

    /// The last, partial chunk: the first `len` values of each of the `F` buffers, against
    /// every mask but the flat one; energy (in f64) and totals as [`Chunk::full`].
    #[inline(always)]
    fn partial<const F: usize>(
        &self,
        len: usize,
        bufs: &[[f32; CHUNK]; F],
        sums: &mut [[f64; MAX_BASIS]; F],
        energy: &mut [[f64; LANES]; F],
        totals: &mut [f64; F],
    ) {
        for ((e, t), buf) in energy.iter_mut().zip(totals.iter_mut()).zip(bufs) {
            let xs = &buf[..len];
            *t += f64::from(xs.iter().sum::<f32>());
            let xc = xs.chunks_exact(LANES);
            for (e, &x) in e.iter_mut().zip(xc.remainder()) {
                *e += f64::from(x) * f64::from(x);
            }
            for x in xc {
                for (e, &x) in e.iter_mut().zip(x) {
                    *e += f64::from(x) * f64::from(x);
                }
            }
        }
        for k in 0..self.count {
            if k == self.flat {
                continue;
            }
            let m = self.row(k, len);
            for (s, buf) in sums.iter_mut().zip(bufs) {
                s[k] += f64::from(dot(m, &buf[..len]));
            }
        }
    }
}

/// Σ m·x over equal-length slices, in DOT_LANES f32 partial sums.
#[inline(always)]
fn dot(m: &[f32], xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; DOT_LANES];
    let (mc, xc) = (m.chunks_exact(DOT_LANES), xs.chunks_exact(DOT_LANES));
    let mut tail = 0.0f32;
    for (&m, &x) in mc.remainder().iter().zip(xc.remainder()) {
        tail += m * x;
    }
    for (m, x) in mc.zip(xc) {
        for (j, a) in acc.iter_mut().enumerate() {
            *a += m[j] * x[j];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// A `LANES`-long slice as an array (the fallback is unreachable for the callers' slices).
#[inline(always)]
fn lanes(x: &[f32]) -> &[f32; LANES] {
    x.try_into().unwrap_or(&[0.0; LANES])
}

/// Paper 002's compression ratio C (eq. 17): pixels per pattern over values stored per pattern,
/// `pixels / (bright + dark + 2)` with `bright` and `dark` masks and the two perpendicular
/// components.
pub fn compression_ratio(pixels: usize, bright: usize, dark: usize) -> f64 {
    pixels as f64 / (bright + dark + 2) as f64
}

/// One frame's summaries: bright field and dark field.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FrameSummary {
    /// The bright-field region.
    pub bright: RegionSummary,
    /// The dark-field region.
    pub dark: RegionSummary,
}

/// A bright-field and a dark-field basis on disjoint regions of one frame geometry: the
/// per-frame compression of paper 002; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Compressor<R, M> {
    bright: Basis<R, M>,
    dark: Basis<R, M>,
}

impl<R: AsRef<[Run]>, M: AsRef<[f32]>> Compressor<R, M> {
    /// Pair two bases. [`Error::GeometryMismatch`] (expected: the bright field's frame area)
    /// if their frame geometries differ, [`Error::Overlap`] with the first shared pixel if
    /// their regions overlap. Either basis may have no masks (K = 0): its region then only
    /// contributes its perpendicular component, the region's energy.
    pub fn new(bright: Basis<R, M>, dark: Basis<R, M>) -> Result<Self, Error> {
        let (gb, gd) = (bright.region().geometry(), dark.region().geometry());
        if gb != gd {
            return Err(Error::GeometryMismatch {
                expected: gb.area(),
                found: gd.area(),
            });
        }
        if let Some(i) = first_shared(bright.region().runs(), dark.region().runs()) {
            let w = gb.width();
            return Err(Error::Overlap {
                row: i / w,
                col: i % w,
            });
        }
        Ok(Self { bright, dark })
    }

    /// The frame geometry.
    pub fn geometry(&self) -> FrameGeometry {
        self.bright.region().geometry()
    }

    /// The bright-field basis.
    pub fn bright(&self) -> &Basis<R, M> {
        &self.bright
    }

    /// The dark-field basis.
    pub fn dark(&self) -> &Basis<R, M> {
        &self.dark
    }

    /// Give the two bases back.
    pub fn into_bases(self) -> (Basis<R, M>, Basis<R, M>) {
        (self.bright, self.dark)
    }

    /// Values stored per frame: K_bf + K_df + 2.
    pub fn values_per_frame(&self) -> usize {
        self.bright.count() + self.dark.count() + 2
    }

    /// C of eq. 17 for this set-up: the frame's pixel count over [`Compressor::values_per_frame`].
    pub fn compression_ratio(&self) -> f64 {
        compression_ratio(
            self.geometry().area(),
            self.bright.count(),
            self.dark.count(),
        )
    }

    /// Compress `frame` into `out` (overwritten, [`Compressor::values_per_frame`] long):
    /// `[c_bf, c_df, ‖x_⊥,bf‖², ‖x_⊥,df‖²]`, and return both regions' summaries (for the
    /// angles of eq. 18).
    ///
    /// [`Error::GeometryMismatch`] (before writing anything) for a frame that is not the
    /// geometry's area or an `out` of the wrong length.
    ///
    /// `#[inline(always)]` (as [`Compressor::compress_batch`]): the host compiles the kernel
    /// again for a wider vector unit by inlining it into a `#[target_feature]` function.
    #[inline(always)]
    pub fn compress<P: Pixel>(&self, frame: &[P], out: &mut [f32]) -> Result<FrameSummary, Error> {
        self.geometry().check_len(frame.len())?;
        check_len(self.values_per_frame(), out.len())?;
        let (cb, rest) = out.split_at_mut(self.bright.count());
        let (cd, perp) = rest.split_at_mut(self.dark.count());
        let summary = FrameSummary {
            bright: self.bright.project(frame, cb)?,
            dark: self.dark.project(frame, cd)?,
        };
        perp[0] = summary.bright.perpendicular() as f32;
        perp[1] = summary.dark.perpendicular() as f32;
        Ok(summary)
    }

    /// Compress several frames, [`FRAME_BLOCK`] at a time through both bases (the bright
    /// field, then the dark field of the same frames while they are in cache). Frame f's row
    /// goes to `out[f * V .. (f + 1) * V]` for V = [`Compressor::values_per_frame`], its
    /// summaries to `summaries[f]`; results equal [`Compressor::compress`]'s bit for bit.
    ///
    /// Returns the number of frames; [`Error::GeometryMismatch`] (before writing anything) if a
    /// frame is not the geometry's area, `out` is not frames × V long or `summaries` not
    /// frames long.
    #[inline(always)]
    pub fn compress_batch<'f, P, I>(
        &self,
        frames: I,
        out: &mut [f32],
        summaries: &mut [FrameSummary],
    ) -> Result<usize, Error>
    where
        P: Pixel + 'f,
        I: IntoIterator<Item = &'f [P]>,
        I::IntoIter: Clone,
    {
        let frames = frames.into_iter();
        let mut count = 0;
        for frame in frames.clone() {
            self.geometry().check_len(frame.len())?;
            count += 1;
        }
        let v = self.values_per_frame();
        check_len(count * v, out.len())?;
        check_len(count, summaries.len())?;
        let mut rest = frames;
        let mut rows = out.chunks_exact_mut(v).zip(summaries.iter_mut());
        loop {
            let group: [Option<&[P]>; FRAME_BLOCK] = core::array::from_fn(|_| rest.next());
            if let [Some(a), Some(b), Some(c), Some(d)] = group {
                let slots = core::array::from_fn(|_| rows.next());
                self.compress_group([a, b, c, d], slots);
                continue;
            }
            for frame in group.into_iter().flatten() {
                self.compress_group([frame], [rows.next()]);
            }
            return Ok(count);
        }
    }

    /// Both bases on `F` frames, into their rows and summaries (the caller sized both, so
    /// every slot is `Some`; a `None` slot would get nothing written).
    #[inline(always)]
    fn compress_group<P: Pixel, const F: usize>(
        &self,
        frames: [&[P]; F],
        slots: [Option<(&mut [f32], &mut FrameSummary)>; F],
    ) {
        let (kb, kd) = (self.bright.count(), self.dark.count());
        let mut summaries: [Option<&mut FrameSummary>; F] = [const { None }; F];
        let mut perps: [&mut [f32]; F] = core::array::from_fn(|_| &mut [][..]);
        let mut cbs: [&mut [f32]; F] = core::array::from_fn(|_| &mut [][..]);
        let mut cds: [&mut [f32]; F] = core::array::from_fn(|_| &mut [][..]);
        for (f, slot) in slots.into_iter().enumerate() {
            if let Some((row, summary)) = slot {
                let (cb, rest) = row.split_at_mut(kb);
                let (cd, perp) = rest.split_at_mut(kd);
                (cbs[f], cds[f], perps[f], summaries[f]) = (cb, cd, perp, Some(summary));
            }
        }
        let bright = self.bright.project_group(frames, cbs);
        let dark = self.dark.project_group(frames, cds);
        for (((summary, perp), b), d) in summaries.into_iter().zip(perps).zip(bright).zip(dark) {
            if let (Some(summary), [pb, pd]) = (summary, perp) {
                (*pb, *pd) = (b.perpendicular() as f32, d.perpendicular() as f32);
                *summary = FrameSummary { bright: b, dark: d };
            }
        }
    }
}

/// The first frame index that both sorted, non-overlapping run lists cover.
fn first_shared(a: &[Run], b: &[Run]) -> Option<usize> {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (ra, rb) = (a[i], b[j]);
        if ra.start + ra.len <= rb.start {
            i += 1;
        } else if rb.start + rb.len <= ra.start {
            j += 1;
        } else {
            return Some(ra.start.max(rb.start));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::basis::region::Region;
    use crate::testing::{TestPixel, allclose, dirty, random_frame};
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    type VecBasis = Basis<Vec<Run>, Vec<f32>>;

    /// The plain reference: each mask spread over the whole frame (zero outside its region),
    /// dotted with every pixel in f64; the energy over the region's indicator.
    fn naive<P: TestPixel>(basis: &VecBasis, frame: &[P]) -> (Vec<f64>, Vec<f64>, f64) {
        let g = basis.region().geometry();
        let w = g.width();
        let mut inside = vec![false; g.area()];
        let mut full = vec![vec![0.0f64; g.area()]; basis.count()];
        for (p, (row, col)) in basis.region().coordinates().enumerate() {
            inside[row * w + col] = true;
            for (k, f) in full.iter_mut().enumerate() {
                f[row * w + col] = f64::from(basis.mask(k).unwrap()[p]);
            }
        }
        let dot = |m: &[f64]| -> f64 { m.iter().zip(frame).map(|(&m, x)| m * x.to_f64()).sum() };
        let mags = |m: &[f64]| -> f64 {
            m.iter()
                .zip(frame)
                .map(|(&m, x)| (m * x.to_f64()).abs())
                .sum()
        };
        let coeffs = full.iter().map(|m| dot(m)).collect();
        let magnitudes = full.iter().map(|m| mags(m)).collect();
        let energy = inside
            .iter()
            .zip(frame)
            .filter(|(i, _)| **i)
            .map(|(_, x)| x.to_f64() * x.to_f64())
            .sum();
        (coeffs, magnitudes, energy)
    }

    /// The fast kernel against the reference on a random frame of pixel type P.
    fn check<P: TestPixel>(basis: &VecBasis, seed: u64) {
        let area = basis.region().geometry().area();
        let frame: Vec<P> = random_frame(area, seed);
        let (want, mags, energy) = naive(basis, &frame);
        let mut got = vec![0.0f32; basis.count()];
        dirty(&mut got);
        let summary = basis.project(&frame, &mut got).unwrap();
        for ((&g, &w), &m) in got.iter().zip(&want).zip(&mags) {
            assert!(
                (f64::from(g) - w).abs() <= 1e-5 * m + 1e-6,
                "{g} vs {w} (Σ|qx| {m})"
            );
        }
        // Exact for u8/u16; the test's u32 squares reach 2⁴⁸ and their sums pass 2⁵³.
        if size_of::<P>() == 4 {
            allclose(&[summary.energy], &[energy], 1e-12, 0.0);
        } else {
            assert_eq!(summary.energy, energy);
        }
        let captured: f64 = got.iter().map(|&c| f64::from(c) * f64::from(c)).sum();
        assert_eq!(summary.captured, captured);
        let cos = (captured / energy).sqrt().min(1.0);
        if energy > 0.0 {
            assert!(
                (summary.angle() - cos.acos()).abs() < 1e-3,
                "{}",
                summary.angle()
            );
        }
    }

    /// A random disc basis from recorded patterns and an annular Zernike basis beside it.
    fn case(
        w: usize,
        h: usize,
        k_bf: usize,
        k_df: usize,
        seed: u64,
    ) -> Option<(VecBasis, VecBasis)> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
        let g = FrameGeometry::new(w, h).unwrap();
        let r_max = (w.min(h) as f32 - 1.0) / 2.0;
        let r = rng.gen_range(0.5..=r_max);
        let cx = rng.gen_range(r - 0.5..=w as f32 - 0.5 - r);
        let cy = rng.gen_range(r - 0.5..=h as f32 - 0.5 - r);
        let runs = || vec![Run::default(); Region::<Vec<Run>>::max_runs(g)];
        let disc = Region::disc(g, cx, cy, r, runs()).ok()?;
        let n = disc.pixels();
        let k_bf = k_bf.min(n);
        let patterns: Vec<u16> = random_frame(k_bf * g.area(), seed ^ 1);
        let mut scratch = vec![0.0; g.area()];
        let bright = Basis::from_patterns(
            disc,
            patterns.chunks_exact(g.area()),
            vec![0.0; k_bf * n],
            &mut scratch,
        )
        .ok()?;
        let ann = Region::annulus(g, cx, cy, r, r + rng.gen_range(1.0..40.0), runs()).ok()?;
        let m = ann.pixels();
        let dark = Basis::zernike(ann, k_df.min(m), vec![0.0; k_df * m], &mut scratch).ok()?;
        Some((bright, dark))
    }

    proptest! {
        #[test]
        fn kernel_matches_naive_reference_every_pixel_type(
            w in 2usize..70, h in 2usize..70, k_bf in 0usize..11, k_df in 0usize..4,
            seed in any::<u64>(),
        ) {
            let Some((bright, dark)) = case(w, h, k_bf, k_df, seed) else {
                return Err(TestCaseError::reject("degenerate set-up"));
            };
            for basis in [&bright, &dark] {
                check::<u8>(basis, seed);
                check::<u16>(basis, seed);
                check::<u32>(basis, seed);
                check::<f32>(basis, seed);
            }
            // The compressor writes both rows and the perpendicular components.
            let c = Compressor::new(bright, dark).unwrap();
            let frame: Vec<u16> = random_frame(w * h, seed ^ 2);
            let mut out = vec![0.0f32; c.values_per_frame()];
            dirty(&mut out);
            let s = c.compress(&frame, &mut out).unwrap();
            let (kb, kd) = (c.bright().count(), c.dark().count());
            let mut cb = vec![0.0f32; kb];
            let mut cd = vec![0.0f32; kd];
            prop_assert_eq!(c.bright().project(&frame, &mut cb).unwrap(), s.bright);
            prop_assert_eq!(c.dark().project(&frame, &mut cd).unwrap(), s.dark);
            prop_assert_eq!(&out[..kb], &cb[..]);
            prop_assert_eq!(&out[kb..kb + kd], &cd[..]);
            prop_assert_eq!(out[kb + kd], s.bright.perpendicular() as f32);
            prop_assert_eq!(out[kb + kd + 1], s.dark.perpendicular() as f32);
            check_batches::<u16>(&c, seed);
            check_batches::<f32>(&c, seed);
        }
    }

    /// Seven frames (a group of FRAME_BLOCK and three single ones) through the batch paths
    /// equal the single-frame calls bit for bit.
    fn check_batches<P: TestPixel>(c: &Compressor<Vec<Run>, Vec<f32>>, seed: u64) {
        let area = c.geometry().area();
        let frames: Vec<P> = random_frame(7 * area, seed ^ 3);
        let v = c.values_per_frame();
        let mut out = vec![0.0f32; 7 * v];
        dirty(&mut out);
        let mut summaries = vec![FrameSummary::default(); 7];
        assert_eq!(
            c.compress_batch(frames.chunks_exact(area), &mut out, &mut summaries),
            Ok(7)
        );
        for basis in [c.bright(), c.dark()] {
            let k = basis.count();
            let mut coeffs = vec![0.0f32; 7 * k];
            dirty(&mut coeffs);
            let mut region = vec![RegionSummary::default(); 7];
            let n = basis.project_batch(frames.chunks_exact(area), &mut coeffs, &mut region);
            assert_eq!(n, Ok(7));
            for (f, frame) in frames.chunks_exact(area).enumerate() {
                let mut single = vec![0.0f32; k];
                let s = basis.project(frame, &mut single).unwrap();
                assert_eq!(s, region[f], "frame {f}, k {k}");
                assert_eq!(single, &coeffs[f * k..(f + 1) * k]);
            }
        }
        for (f, frame) in frames.chunks_exact(area).enumerate() {
            let mut single = vec![0.0f32; v];
            let s = c.compress(frame, &mut single).unwrap();
            assert_eq!(s, summaries[f]);
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&single), bits(&out[f * v..(f + 1) * v]), "frame {f}");
        }
    }

    #[test]
    fn flat_mask_shortcut_equals_the_dot_product() {
        // The annular piston is flat: its coefficient is w·Σx without reading the mask. The
        // same mask made non-flat by one ulp at one pixel takes the dot-product path.
        let g = FrameGeometry::new(64, 64).unwrap();
        let ann = Region::annulus(g, 31.5, 31.5, 8.0, 40.0, vec![Run::default(); 128]).unwrap();
        let n = ann.pixels();
        assert!(n > 4 * CHUNK);
        let piston: VecBasis =
            Basis::zernike(ann.clone(), 1, vec![0.0; n], &mut vec![0.0; n]).unwrap();
        assert_eq!(piston.flat, Some(0));
        let mut q = piston.masks().to_vec();
        q[n - 1] = f32::from_bits(q[n - 1].to_bits() + 1);
        let mut bumped: VecBasis = Basis::zernike(ann, 1, vec![0.0; n], &mut vec![0.0; n]).unwrap();
        bumped.masks = q;
        bumped.flat = None;
        let frame: Vec<u16> = random_frame(g.area(), 5);
        let (mut a, mut b) = ([0.0f32], [0.0f32]);
        let sa = piston.project(&frame, &mut a).unwrap();
        let sb = bumped.project(&frame, &mut b).unwrap();
        let sum: f64 = piston
            .region()
            .coordinates()
            .map(|(r, c)| f64::from(frame[r * 64 + c]))
            .sum();
        assert_eq!(
            f64::from(a[0]),
            (f64::from(piston.masks()[0]) * sum) as f32 as f64
        );
        assert!((a[0] - b[0]).abs() <= 1e-6 * a[0], "{} vs {}", a[0], b[0]);
        assert_eq!(sa.energy, sb.energy);
    }

    #[test]
    fn energy_is_exact_on_both_paths() {
        // Small counts take the f32 path, large ones the f64 redo; both exact for u16.
        let g = FrameGeometry::new(80, 80).unwrap();
        let ann = Region::annulus(g, 39.5, 39.5, 5.0, 39.0, vec![Run::default(); 160]).unwrap();
        let n = ann.pixels();
        let basis: VecBasis = Basis::zernike(ann, 3, vec![0.0; 3 * n], &mut vec![0.0; n]).unwrap();
        for scale in [1u64, 600, 65535] {
            let frame: Vec<u16> = (0..g.area() as u64)
                .map(|i| ((i * 2_654_435_761) % (scale + 1)) as u16)
                .collect();
            let want: f64 = basis
                .region()
                .coordinates()
                .map(|(r, c)| f64::from(frame[r * 80 + c]).powi(2))
                .sum();
            let s = basis.project(&frame, &mut [0.0; 3]).unwrap();
            assert_eq!(s.energy, want, "scale {scale}");
        }
    }

    #[test]
    fn perpendicular_and_angle_of_frames_in_and_out_of_the_span() {
        let g = FrameGeometry::new(64, 64).unwrap();
        let disc = Region::disc(g, 31.5, 31.5, 20.0, vec![Run::default(); 128]).unwrap();
        let n = disc.pixels();
        let mut scratch = vec![0.0; n];
        let basis: VecBasis = Basis::zernike(disc, 15, vec![0.0; 15 * n], &mut scratch).unwrap();
        // A frame equal to 300 + 50·(mask 4) on the disc lies in the span (mask 0 is flat).
        let mut frame = vec![0.0f32; g.area()];
        let w = g.width();
        for (p, (row, col)) in basis.region().coordinates().enumerate() {
            frame[row * w + col] = 300.0 + 50.0 * basis.mask(4).unwrap()[p];
        }
        let mut c = vec![0.0f32; 15];
        let s = basis.project(&frame, &mut c).unwrap();
        assert!(s.perpendicular().abs() <= 1e-6 * s.energy, "{s:?}");
        assert!(s.angle() < 2e-3, "{}", s.angle());
        assert!((c[4] - 50.0).abs() < 1e-3 && c[1].abs() < 1e-2, "{c:?}");
        // A frame orthogonal to every mask: perpendicular = energy, angle π/2.
        let mut odd = vec![0.0f32; g.area()];
        odd[31 * 64 + 31] = 1.0;
        odd[31 * 64 + 32] = -1.0;
        odd[32 * 64 + 31] = -1.0;
        odd[32 * 64 + 32] = 1.0;
        // (x y-antisymmetric checker at the centre: orthogonal to the low modes only up to
        // rounding, so test the angle loosely.)
        let s = basis.project(&odd, &mut c).unwrap();
        assert_eq!(s.energy, 4.0);
        assert!(s.angle() > 1.4, "{}", s.angle());
        // An empty frame: angle 0, nothing lost.
        let s = basis.project(&vec![0u8; g.area()], &mut c).unwrap();
        assert_eq!((s.energy, s.captured, s.angle()), (0.0, 0.0, 0.0));
    }

    #[test]
    fn compression_ratio_of_paper_002_set_ups() {
        // 45 Zernike bright-field masks, 1 dark-field value, 2 perpendicular components.
        assert_eq!(compression_ratio(256 * 256, 45, 1), 65536.0 / 48.0);
        assert_eq!(compression_ratio(100, 0, 0), 50.0);
    }

    #[test]
    fn compressor_errors() {
        let g = FrameGeometry::new(32, 32).unwrap();
        let other = FrameGeometry::new(16, 64).unwrap();
        let runs = || vec![Run::default(); 128];
        let basis = |region: Region<Vec<Run>>, k: usize| -> VecBasis {
            let n = region.pixels();
            Basis::zernike(region, k, vec![0.0; k * n], &mut vec![0.0; n]).unwrap()
        };
        let disc = Region::disc(g, 15.5, 15.5, 6.0, runs()).unwrap();
        let ann = Region::annulus(g, 15.5, 15.5, 6.0, 14.0, runs()).unwrap();
        let overlapping = Region::annulus(g, 15.5, 15.5, 5.0, 14.0, runs()).unwrap();
        let elsewhere = Region::annulus(other, 7.5, 31.5, 6.0, 14.0, runs()).unwrap();
        assert_eq!(
            Compressor::new(basis(disc.clone(), 3), basis(elsewhere, 1)).unwrap_err(),
            Error::GeometryMismatch {
                expected: 1024,
                found: 1024
            }
        );
        let e = Compressor::new(basis(disc.clone(), 3), basis(overlapping, 1)).unwrap_err();
        assert!(matches!(e, Error::Overlap { row: 10..=21, .. }), "{e:?}");
        let c = Compressor::new(basis(disc, 3), basis(ann, 1)).unwrap();
        assert_eq!(c.values_per_frame(), 6);
        assert_eq!(c.compression_ratio(), 1024.0 / 6.0);
        assert_eq!(
            c.compress(&[0u16; 1023], &mut [0.0; 6]).unwrap_err(),
            Error::GeometryMismatch {
                expected: 1024,
                found: 1023
            }
        );
        assert_eq!(
            c.compress(&[0u16; 1024], &mut [0.0; 5]).unwrap_err(),
            Error::GeometryMismatch {
                expected: 6,
                found: 5
            }
        );
        assert_eq!(
            c.bright()
                .project(&[0u16; 1024], &mut [0.0; 2])
                .unwrap_err(),
            Error::GeometryMismatch {
                expected: 3,
                found: 2
            }
        );
        let (b, d) = c.into_bases();
        assert_eq!((b.count(), d.count()), (3, 1));
    }
}
