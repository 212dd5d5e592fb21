//! Label masks: virtual detectors where each pixel belongs to at most one segment.
//!
//! The configuration is two caller-owned tables over the frame: a `u16` label per pixel
//! ([`NONE`] or a segment id below [`MAX_SEGMENTS`]) and an `f32` weight per pixel. A
//! [`LabelBuilder`] fills them from shapes; [`LabelBuilder::build`] freezes them into an
//! immutable [`LabelMasks`] that any number of threads can share. The storage is generic
//! (`Vec<u16>`, `[u16; N]`, `&mut [u16]` …), so the host can own vectors and firmware arrays.
//!
//! Projection is one pass over the frame, `out[label[i]] += weight[i] · x[i]`, whose cost does
//! not depend on the number of segments.
//!
//! # Conventions
//!
//! - Pixel (row, col) has its centre at x = col, y = row; a shape's centre (cx, cy) may be
//!   sub-pixel. A pixel belongs to a shape if its *centre* does: at distance d from the shape's
//!   centre, a disk holds 0 ≤ d ≤ r, an annulus r_in ≤ d < r_out. Distances are compared
//!   squared in f64, which is exact for f32 inputs up to the last rounding of d².
//! - Angles are measured from the +x (column) axis towards +y (row), which is clockwise on a
//!   display with row 0 at the top. The pixel at the exact centre has angle 0.
//! - Each builder call takes the next free segment ids and returns them. Shapes must not
//!   overlap: claiming a pixel that already has a segment is [`Error::Overlap`], and a failed
//!   call leaves the tables unchanged.
//!
//! # Precision
//!
//! Products and sums are in f64: exact for integer pixels with weights that are powers of two
//! (all shapes but [`LabelBuilder::orthonormal_bins`] with a factor that is not) while a
//! segment's sum stays below 2⁵³; otherwise relative error ≤ n·2⁻⁵³ for n pixels.
//! [`LabelMasks::project`] rounds each result once to f32; [`LabelMasks::project_f64`] does not.

use core::ops::Range;

use crate::geometry::{FrameGeometry, Window, check_len};
use crate::math;
use crate::pixel::{Accumulator, Pixel};
use crate::{Error, MAX_BIN_FACTOR};

/// Most segments one table can hold.
pub const MAX_SEGMENTS: usize = 256;

/// The label of a pixel that belongs to no segment.
pub const NONE: u16 = u16::MAX;

/// Accumulator slots: one per segment plus one that swallows [`NONE`] pixels, so the hot loop
/// needs neither a branch nor a bounds check (`min(label, MAX_SEGMENTS)` always indexes).
const SLOTS: usize = MAX_SEGMENTS + 1;

/// Independent accumulator tables: consecutive pixels usually hit the same segment, and four
/// tables let four of those read-modify-writes run at once.
const WAYS: usize = 4;

/// Fills a label table and a weight table from shapes; see the [module docs](self).
#[derive(Debug)]
pub struct LabelBuilder<L, W> {
    geometry: FrameGeometry,
    labels: L,
    weights: W,
    next: usize,
}

impl<L, W> LabelBuilder<L, W>
where
    L: AsRef<[u16]> + AsMut<[u16]>,
    W: AsRef<[f32]> + AsMut<[f32]>,
{
    /// Start from empty tables: every label is set to [`NONE`] and every weight to 0, whatever
    /// the buffers held. Both must have the frame's area ([`Error::GeometryMismatch`]).
    pub fn new(geometry: FrameGeometry, mut labels: L, mut weights: W) -> Result<Self, Error> {
        geometry.check_len(labels.as_ref().len())?;
        geometry.check_len(weights.as_ref().len())?;
        labels.as_mut().fill(NONE);
        weights.as_mut().fill(0.0);
        Ok(Self {
            geometry,
            labels,
            weights,
            next: 0,
        })
    }

    /// Segments assigned so far (the next call starts at this id).
    pub fn segments(&self) -> usize {
        self.next
    }

    /// One segment, weight 1: pixels with 0 ≤ d ≤ `r` from (`cx`, `cy`).
    pub fn disk(&mut self, cx: f32, cy: f32, r: f32) -> Result<usize, Error> {
        let c = Centre::new(cx, cy)?;
        let r = radius(r)?;
        let r2 = r * r;
        self.paint(1, |row, col| (c.d2(row, col) <= r2).then_some((0, 1.0)))
            .map(|ids| ids.start)
    }

    /// One segment, weight 1: pixels with `r_in` ≤ d < `r_out`.
    pub fn annulus(&mut self, cx: f32, cy: f32, r_in: f32, r_out: f32) -> Result<usize, Error> {
        let c = Centre::new(cx, cy)?;
        let (r_in2, r_out2) = radii(r_in, r_out)?;
        self.paint(1, |row, col| {
            let d2 = c.d2(row, col);
            (r_in2 <= d2 && d2 < r_out2).then_some((0, 1.0))
        })
        .map(|ids| ids.start)
    }

    /// `n` segments, weight 1: equal-width rings between `r_in` and `r_out`. Ring k holds
    /// `r_in + k·Δ ≤ d < r_in + (k+1)·Δ` with Δ = (`r_out` − `r_in`)/`n`; ring 0 is innermost.
    pub fn rings(
        &mut self,
        cx: f32,
        cy: f32,
        r_in: f32,
        r_out: f32,
        n: usize,
    ) -> Result<Range<usize>, Error> {
        let c = Centre::new(cx, cy)?;
        let (r_in2, r_out2) = radii(r_in, r_out)?;
        if n == 0 {
            return Err(Error::BadParameter);
        }
        let (lo, hi) = (f64::from(r_in), f64::from(r_out));
        // Squared boundary k, exact at both ends (k = 0 gives r_in², k = n gives r_out²).
        let bound2 = |k: usize| {
            let b = lo + (hi - lo) * k as f64 / n as f64;
            b * b
        };
        self.paint(n, |row, col| {
            let d2 = c.d2(row, col);
            if !(r_in2 <= d2 && d2 < r_out2) {
                return None;
            }
            // Estimate from the root, then settle on the exact squared comparison.
            let d = f64::from(math::sqrt(d2 as f32));
            let est = math::floor((d - lo) / (hi - lo) * n as f64);
            let mut k = if est > 0.0 {
                (est as usize).min(n - 1)
            } else {
                0
            };
            while k > 0 && d2 < bound2(k) {
                k -= 1;
            }
            while k + 1 < n && d2 >= bound2(k + 1) {
                k += 1;
            }
            Some((k, 1.0))
        })
    }

    /// `n` segments, weight 1: equal angular sectors of the annulus `r_in` ≤ d < `r_out`.
    ///
    /// Sector k holds angles in [`rotation` + k·2π/n, `rotation` + (k+1)·2π/n), `rotation` in
    /// radians (see the module's angle convention). With `n` = 4 and `rotation` = 0 these are
    /// the DPC quadrants, split exactly on the axes. For `n` dividing 8 and `rotation` = 0
    /// every boundary is exact; otherwise a pixel within 1e-15 rad of a boundary may fall on
    /// either side ([`math::atan2`]'s bound), and never outside 0..n.
    pub fn sectors(
        &mut self,
        cx: f32,
        cy: f32,
        r_in: f32,
        r_out: f32,
        n: usize,
        rotation: f32,
    ) -> Result<Range<usize>, Error> {
        let c = Centre::new(cx, cy)?;
        let (r_in2, r_out2) = radii(r_in, r_out)?;
        if n == 0 || !rotation.is_finite() {
            return Err(Error::BadParameter);
        }
        let rot = f64::from(rotation) / core::f64::consts::FRAC_PI_2;
        self.paint(n, |row, col| {
            let d2 = c.d2(row, col);
            if !(r_in2 <= d2 && d2 < r_out2) {
                return None;
            }
            let (dx, dy) = c.delta(row, col);
            let a = math::quarter_turns(dy, dx) - rot;
            let a = a - 4.0 * math::floor(a / 4.0); // into [0, 4]
            let k = math::floor(a * n as f64 / 4.0);
            Some(((k.max(0.0) as usize).min(n - 1), 1.0))
        })
    }

    /// One segment, weight 1: the pixels of `window` ([`Error::CropOutOfBounds`] if it leaves the frame).
    pub fn rect(&mut self, window: Window) -> Result<usize, Error> {
        window.check(self.geometry)?;
        self.paint(1, |row, col| {
            contains(&window, row, col).then_some((0, 1.0))
        })
        .map(|ids| ids.start)
    }

    /// One segment per `factor` × `factor` block of `window`, weight 1/`factor`, so that each
    /// mask has unit norm (the orthonormal binning basis of paper 002). Blocks are numbered
    /// row-major. Errors as [`crate::Binner::with_window`], plus [`Error::TooManyMasks`].
    pub fn orthonormal_bins(
        &mut self,
        window: Window,
        factor: usize,
    ) -> Result<Range<usize>, Error> {
        if !(1..=MAX_BIN_FACTOR).contains(&factor) {
            return Err(Error::BadFactor(factor));
        }
        window.check(self.geometry)?;
        for dim in [window.width, window.height] {
            if dim % factor != 0 {
                return Err(Error::FactorDoesNotDivide { factor, dim });
            }
        }
        let blocks_x = window.width / factor;
        let n = blocks_x * (window.height / factor);
        let w = 1.0 / factor as f32;
        self.paint(n, |row, col| {
            contains(&window, row, col).then(|| {
                let (by, bx) = ((row - window.y0) / factor, (col - window.x0) / factor);
                (by * blocks_x + bx, w)
            })
        })
    }

    /// `n` segments of any shape: `assign(row, col)` returns `Some((k, weight))` to put the
    /// pixel in the call's k-th segment (k < `n`, else [`Error::BadIndex`]) with a finite
    /// weight (else [`Error::BadParameter`]), or `None`. Called twice per pixel (check, then
    /// write), so it must be a pure function.
    pub fn custom(
        &mut self,
        n: usize,
        assign: impl FnMut(usize, usize) -> Option<(usize, f32)>,
    ) -> Result<Range<usize>, Error> {
        self.paint(n, assign)
    }

    /// Freeze the tables into a [`LabelMasks`] with [`LabelBuilder::segments`] segments.
    pub fn build(self) -> LabelMasks<L, W> {
        let span = span(self.labels.as_ref());
        let unit = unit_weights(self.labels.as_ref(), self.weights.as_ref());
        LabelMasks {
            geometry: self.geometry,
            labels: self.labels,
            weights: self.weights,
            segments: self.next,
            span,
            unit,
        }
    }

    /// Check every pixel `assign` claims, then write them: a failing call changes nothing.
    fn paint(
        &mut self,
        n: usize,
        mut assign: impl FnMut(usize, usize) -> Option<(usize, f32)>,
    ) -> Result<Range<usize>, Error> {
        let first = self.next;
        if n > MAX_SEGMENTS - first {
            return Err(Error::TooManyMasks {
                max: MAX_SEGMENTS,
                found: first.saturating_add(n),
            });
        }
        let w = self.geometry.width();
        for (row, labels) in self.labels.as_ref().chunks_exact(w).enumerate() {
            for (col, &label) in labels.iter().enumerate() {
                if let Some((k, weight)) = assign(row, col) {
                    if k >= n {
                        return Err(Error::BadIndex(k));
                    }
                    if !weight.is_finite() {
                        return Err(Error::BadParameter);
                    }
                    if label != NONE {
                        return Err(Error::Overlap { row, col });
                    }
                }
            }
        }
        let rows = self.labels.as_mut().chunks_exact_mut(w);
        for (row, (labels, weights)) in rows
            .zip(self.weights.as_mut().chunks_exact_mut(w))
            .enumerate()
        {
            for (col, (label, weight)) in labels.iter_mut().zip(weights).enumerate() {
                if let Some((k, wt)) = assign(row, col) {
                    // first + k < MAX_SEGMENTS ≤ u16::MAX, checked above.
                    *label = (first + k) as u16;
                    *weight = wt;
                }
            }
        }
        self.next = first + n;
        Ok(first..first + n)
    }
}

/// Immutable label and weight tables, ready to project frames; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct LabelMasks<L, W> {
    geometry: FrameGeometry,
    labels: L,
    weights: W,
    segments: usize,
    /// Pixels from the first to past the last labelled one: the only part projection reads.
    span: (usize, usize),
    /// Every labelled pixel has weight 1: projection adds pixels in their statistics
    /// accumulator (`u64` for integers) instead of multiplying in f64.
    unit: bool,
}

impl<L: AsRef<[u16]>, W: AsRef<[f32]>> LabelMasks<L, W> {
    /// Adopt tables filled elsewhere (e.g. saved from a builder, or a `static` table in
    /// firmware). Checks lengths ([`Error::GeometryMismatch`]), labels ([`Error::BadIndex`] for
    /// one that is neither [`NONE`] nor below [`MAX_SEGMENTS`]) and weights
    /// ([`Error::BadParameter`] if not finite). The segment count is the largest label + 1.
    pub fn from_tables(geometry: FrameGeometry, labels: L, weights: W) -> Result<Self, Error> {
        geometry.check_len(labels.as_ref().len())?;
        geometry.check_len(weights.as_ref().len())?;
        let mut segments = 0;
        for &label in labels.as_ref() {
            if label != NONE {
                if usize::from(label) >= MAX_SEGMENTS {
                    return Err(Error::BadIndex(usize::from(label)));
                }
                segments = segments.max(usize::from(label) + 1);
            }
        }
        if !weights.as_ref().iter().all(|w| w.is_finite()) {
            return Err(Error::BadParameter);
        }
        let span = span(labels.as_ref());
        let unit = unit_weights(labels.as_ref(), weights.as_ref());
        Ok(Self {
            geometry,
            labels,
            weights,
            segments,
            span,
            unit,
        })
    }

    /// Number of segments K: `project` writes K values.
    pub fn segments(&self) -> usize {
        self.segments
    }

    /// The frame geometry the tables cover.
    pub fn geometry(&self) -> FrameGeometry {
        self.geometry
    }

    /// The label table (row-major, [`NONE`] for unassigned pixels).
    pub fn labels(&self) -> &[u16] {
        self.labels.as_ref()
    }

    /// The weight table (row-major, 0 for unassigned pixels when built by [`LabelBuilder`]).
    pub fn weights(&self) -> &[f32] {
        self.weights.as_ref()
    }

    /// Give the storage back.
    pub fn into_tables(self) -> (L, W) {
        (self.labels, self.weights)
    }

    /// Write the K segment sums Σ weight·x of `frame` into `out` (overwriting it), rounded
    /// once from f64 to f32. [`Error::GeometryMismatch`] for a frame that is not the
    /// geometry's area or an `out` that is not K long.
    #[inline(always)]
    pub fn project<P: Pixel>(&self, frame: &[P], out: &mut [f32]) -> Result<(), Error> {
        check_len(self.segments, out.len())?;
        self.accumulate(frame, |k, s| out[k] = s as f32)
    }

    /// As [`LabelMasks::project`], without rounding to f32 (exact integer counts for unit weights).
    pub fn project_f64<P: Pixel>(&self, frame: &[P], out: &mut [f64]) -> Result<(), Error> {
        check_len(self.segments, out.len())?;
        self.accumulate(frame, |k, s| out[k] = s)
    }

    /// Hands `sink(k, sum_k)` every segment's sum: the unit-weight path when every weight is
    /// 1 (with tables just large enough for the segment count, so a frame does not pay for
    /// zeroing and merging 257-slot tables), else the weighted one.
    #[inline(always)]
    fn accumulate<P: Pixel>(
        &self,
        frame: &[P],
        mut sink: impl FnMut(usize, f64),
    ) -> Result<(), Error> {
        self.geometry.check_len(frame.len())?;
        if self.unit {
            match self.segments {
                0..=16 => self.accumulate_unit::<P, 17>(frame, &mut sink),
                17..=64 => self.accumulate_unit::<P, 65>(frame, &mut sink),
                _ => self.accumulate_unit::<P, SLOTS>(frame, &mut sink),
            }
        } else {
            let sums = self.accumulate_weighted(frame);
            for (k, &s) in sums[..self.segments].iter().enumerate() {
                sink(k, s);
            }
        }
        Ok(())
    }

    /// The unit-weight hot loop over tables of `S` slots (`S − 1` ≥ segments; the last slot
    /// swallows unlabelled pixels): `acc[label] += x` in [`Pixel::StatAcc`] (`u64` for integer
    /// pixels: exact, one-cycle adds, no conversion or multiply; `f64` for `f32`, which is what
    /// the weighted loop computes with w = 1). Equal to [`LabelMasks::accumulate_weighted`]
    /// while every segment's sum stays below 2⁵³ (for integers; always for `f32`).
    #[inline(always)]
    fn accumulate_unit<P: Pixel, const S: usize>(
        &self,
        frame: &[P],
        sink: &mut impl FnMut(usize, f64),
    ) {
        let (start, end) = self.span;
        let labels = &self.labels.as_ref()[start..end];
        let frame = &frame[start..end];
        let slot = |label: u16| usize::from(label).min(S - 1);
        let zero = <P::StatAcc as Accumulator>::ZERO;
        let mut acc = [[zero; S]; WAYS];
        let (l4, x4) = (labels.chunks_exact(WAYS), frame.chunks_exact(WAYS));
        for (&l, &x) in l4.remainder().iter().zip(x4.remainder()) {
            let a = &mut acc[0][slot(l)];
            *a = a.add(x.to_stat());
        }
        for (l, x) in l4.zip(x4) {
            for (j, table) in acc.iter_mut().enumerate() {
                let a = &mut table[slot(l[j])];
                *a = a.add(x[j].to_stat());
            }
        }
        for k in 0..self.segments.min(S - 1) {
            sink(
                k,
                acc.iter().fold(zero, |t, table| t.add(table[k])).as_f64(),
            );
        }
    }

    /// The weighted hot loop: one pass over the labelled span, WAYS interleaved f64 tables.
    /// Also the reference for [`LabelMasks::accumulate_unit`].
    #[inline(always)]
    fn accumulate_weighted<P: Pixel>(&self, frame: &[P]) -> [f64; SLOTS] {
        let (start, end) = self.span;
        let labels = &self.labels.as_ref()[start..end];
        let weights = &self.weights.as_ref()[start..end];
        let frame = &frame[start..end];
        let slot = |label: u16| usize::from(label).min(MAX_SEGMENTS);

        let mut acc = [[0.0f64; SLOTS]; WAYS];
        let (l4, w4, x4) = (
            labels.chunks_exact(WAYS),
            weights.chunks_exact(WAYS),
            frame.chunks_exact(WAYS),
        );
        for ((&l, &w), &x) in l4
            .remainder()
            .iter()
            .zip(w4.remainder())
            .zip(x4.remainder())
        {
            acc[0][slot(l)] += f64::from(w) * x.to_f64();
        }
        for ((l, w), x) in l4.zip(w4).zip(x4) {
            for (j, table) in acc.iter_mut().enumerate() {
                table[slot(l[j])] += f64::from(w[j]) * x[j].to_f64();
            }
        }
        let (first, rest) = acc.split_at_mut(1);
        for table in rest.iter() {
            for (a, &b) in first[0].iter_mut().zip(table) {
                *a += b;
            }
        }
        first[0]
    }
}

/// A shape's centre, checked finite.
#[derive(Clone, Copy)]
struct Centre {
    x: f64,
    y: f64,
}

impl Centre {
    fn new(cx: f32, cy: f32) -> Result<Self, Error> {
        if !(cx.is_finite() && cy.is_finite()) {
            return Err(Error::BadParameter);
        }
        Ok(Self {
            x: f64::from(cx),
            y: f64::from(cy),
        })
    }

    /// (x − cx, y − cy) of pixel (row, col), exact in f64.
    fn delta(&self, row: usize, col: usize) -> (f64, f64) {
        (col as f64 - self.x, row as f64 - self.y)
    }

    /// Squared distance of pixel (row, col)'s centre.
    fn d2(&self, row: usize, col: usize) -> f64 {
        let (dx, dy) = self.delta(row, col);
        dx * dx + dy * dy
    }
}

/// A radius as f64, finite and ≥ 0.
fn radius(r: f32) -> Result<f64, Error> {
    if r.is_finite() && r >= 0.0 {
        Ok(f64::from(r))
    } else {
        Err(Error::BadParameter)
    }
}

/// Squared radii of an annulus, both valid and `r_in < r_out`.
fn radii(r_in: f32, r_out: f32) -> Result<(f64, f64), Error> {
    let (a, b) = (radius(r_in)?, radius(r_out)?);
    if a < b {
        Ok((a * a, b * b))
    } else {
        Err(Error::BadParameter)
    }
}

fn contains(w: &Window, row: usize, col: usize) -> bool {
    (w.y0..w.y0 + w.height).contains(&row) && (w.x0..w.x0 + w.width).contains(&col)
}

/// Whether every labelled pixel has weight exactly 1 (unlabelled ones may weigh anything).
fn unit_weights(labels: &[u16], weights: &[f32]) -> bool {
    labels
        .iter()
        .zip(weights)
        .all(|(&l, &w)| l == NONE || w == 1.0)
}

/// (first labelled pixel, one past the last), or (0, 0) for an empty table.
fn span(labels: &[u16]) -> (usize, usize) {
    match labels.iter().position(|&l| l != NONE) {
        Some(first) => {
            let last = labels.iter().rposition(|&l| l != NONE).unwrap_or(first);
            (first, last + 1)
        }
        None => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::testing::{TestPixel, allclose, dirty, random_frame};
    use core::f64::consts::TAU;
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    /// The reference shapes, written plainly with std's exact functions.
    #[derive(Debug, Clone, Copy)]
    enum Shape {
        Disk(f32),
        Annulus(f32, f32),
        Rings(f32, f32, usize),
        Sectors(f32, f32, usize, f32),
    }

    /// Segment of pixel (row, col) by std's sqrt/atan2, or `None`. `Err(())` when the pixel lies
    /// within 1e-9 rad of a sector boundary, where the reference may round differently.
    fn naive_segment(
        s: Shape,
        cx: f32,
        cy: f32,
        row: usize,
        col: usize,
    ) -> Result<Option<usize>, ()> {
        let (dx, dy) = (col as f64 - f64::from(cx), row as f64 - f64::from(cy));
        let d = (dx * dx + dy * dy).sqrt();
        let in_annulus = |a: f32, b: f32| f64::from(a) <= d && d < f64::from(b);
        Ok(match s {
            Shape::Disk(r) => (d <= f64::from(r)).then_some(0),
            Shape::Annulus(a, b) => in_annulus(a, b).then_some(0),
            Shape::Rings(a, b, n) => in_annulus(a, b).then(|| {
                let (a, b) = (f64::from(a), f64::from(b));
                (0..n)
                    .find(|&k| d < a + (b - a) * (k + 1) as f64 / n as f64)
                    .unwrap_or(n - 1)
            }),
            Shape::Sectors(a, b, n, rot) => {
                if !in_annulus(a, b) {
                    return Ok(None);
                }
                let angle = (dy.atan2(dx) - f64::from(rot)).rem_euclid(TAU);
                let pos = angle * n as f64 / TAU;
                let frac = pos - pos.round();
                if frac.abs() * TAU / (n as f64) < 1e-9 || (TAU - angle) < 1e-9 {
                    return Err(());
                }
                Some((pos.floor() as usize).min(n - 1))
            }
        })
    }

    fn build(
        s: Shape,
        cx: f32,
        cy: f32,
        g: FrameGeometry,
    ) -> Result<LabelMasks<Vec<u16>, Vec<f32>>, Error> {
        // Dirty tables: the builder must clear them.
        let (mut l, mut w) = (vec![0u16; g.area()], vec![0f32; g.area()]);
        dirty(&mut l);
        dirty(&mut w);
        let mut b = LabelBuilder::new(g, l, w)?;
        match s {
            Shape::Disk(r) => b.disk(cx, cy, r).map(|_| ())?,
            Shape::Annulus(a, r) => b.annulus(cx, cy, a, r).map(|_| ())?,
            Shape::Rings(a, r, n) => b.rings(cx, cy, a, r, n).map(|_| ())?,
            Shape::Sectors(a, r, n, rot) => b.sectors(cx, cy, a, r, n, rot).map(|_| ())?,
        }
        Ok(b.build())
    }

    /// Segment sums by explicit indexing over the table, in f64.
    fn naive_project<P: TestPixel>(m: &LabelMasks<Vec<u16>, Vec<f32>>, frame: &[P]) -> Vec<f64> {
        let g = m.geometry();
        let mut out = vec![0.0; m.segments()];
        for row in 0..g.height() {
            for col in 0..g.width() {
                let i = row * g.width() + col;
                if m.labels()[i] != NONE {
                    out[usize::from(m.labels()[i])] +=
                        f64::from(m.weights()[i]) * frame[i].to_f64();
                }
            }
        }
        out
    }

    fn check_projection<P: TestPixel>(m: &LabelMasks<Vec<u16>, Vec<f32>>, seed: u64, exact: bool) {
        let frame: Vec<P> = random_frame(m.geometry().area(), seed);
        let want = naive_project(m, &frame);
        let mut got64 = vec![0.0; m.segments()];
        let mut got32 = vec![0.0f32; m.segments()];
        dirty(&mut got64);
        dirty(&mut got32);
        m.project_f64(&frame, &mut got64).unwrap();
        m.project(&frame, &mut got32).unwrap();
        if exact && !P::IS_FLOAT {
            assert_eq!(got64, want);
        } else {
            allclose(&got64, &want, 1e-12, 1e-9);
        }
        let got32: Vec<f64> = got32.iter().map(|&x| f64::from(x)).collect();
        allclose(&got32, &want, 1e-7, 1e-6);
        // The unit-weight fast path against the weighted loop it replaces: same bits (the
        // discard slot differs: unlabelled pixels land there unweighted).
        if m.unit {
            let k = m.segments();
            let weighted = m.accumulate_weighted(&frame);
            let mut full = vec![f64::NAN; k];
            m.accumulate_unit::<P, SLOTS>(&frame, &mut |i, v| full[i] = v);
            assert_eq!(full, weighted[..k]);
            let mut sized = vec![f64::NAN; k];
            m.accumulate(&frame, |i, v| sized[i] = v).unwrap();
            assert_eq!(sized, weighted[..k], "tables sized to {k} segments");
        }
    }

    fn shape() -> impl Strategy<Value = Shape> {
        let radii = (0.0f32..12.0, 0.3f32..25.0);
        prop_oneof![
            (0.0f32..25.0).prop_map(Shape::Disk),
            radii.clone().prop_map(|(a, d)| Shape::Annulus(a, a + d)),
            (radii.clone(), 1usize..70).prop_map(|((a, d), n)| Shape::Rings(a, a + d, n)),
            (radii, 1usize..40, -7.0f32..7.0).prop_map(|((a, d), n, rot)| Shape::Sectors(
                a,
                a + d,
                n,
                rot
            )),
        ]
    }

    proptest! {
        #[test]
        fn shapes_match_naive_and_project_every_pixel_type(
            s in shape(), w in 1usize..41, h in 1usize..41,
            cx in -5.0f32..45.0, cy in -5.0f32..45.0, seed in any::<u64>(),
        ) {
            let g = FrameGeometry::new(w, h).unwrap();
            let m = build(s, cx, cy, g).unwrap();
            let n = match s { Shape::Rings(_, _, n) | Shape::Sectors(_, _, n, _) => n, _ => 1 };
            prop_assert_eq!(m.segments(), n);
            for row in 0..h {
                for col in 0..w {
                    let i = row * w + col;
                    let got = (m.labels()[i] != NONE).then(|| usize::from(m.labels()[i]));
                    if let Ok(want) = naive_segment(s, cx, cy, row, col) {
                        prop_assert_eq!(got, want, "pixel ({}, {}) of {:?}", row, col, s);
                    }
                    prop_assert_eq!(m.weights()[i], if got.is_some() { 1.0 } else { 0.0 });
                }
            }
            check_projection::<u8>(&m, seed, true);
            check_projection::<u16>(&m, seed, true);
            check_projection::<u32>(&m, seed, true);
            check_projection::<f32>(&m, seed, true);
        }

        #[test]
        fn orthonormal_bins_are_scaled_bins(
            b in 1usize..6, bw in 1usize..5, bh in 1usize..5, x0 in 0usize..4, y0 in 0usize..4,
            seed in any::<u64>(),
        ) {
            let win = Window { x0, y0, width: bw * b, height: bh * b };
            let g = FrameGeometry::new(x0 + win.width + 2, y0 + win.height + 1).unwrap();
            let mut builder = LabelBuilder::new(g, vec![0u16; g.area()], vec![0f32; g.area()]).unwrap();
            prop_assert_eq!(builder.orthonormal_bins(win, b).unwrap(), 0..bw * bh);
            let m = builder.build();
            prop_assert_eq!(m.unit, b == 1, "weights 1/b are unit only for b = 1");
            // Unit norm per segment.
            let mut norm2 = vec![0.0f64; m.segments()];
            for (&l, &wt) in m.labels().iter().zip(m.weights()) {
                if l != NONE {
                    norm2[usize::from(l)] += f64::from(wt) * f64::from(wt);
                }
            }
            allclose(&norm2, &vec![1.0; m.segments()], 1e-6, 0.0);
            // Projection = binned sums / b.
            let frame: Vec<u16> = random_frame(g.area(), seed);
            let binner = crate::Binner::with_window(g, b, win).unwrap();
            let mut binned = vec![0u32; binner.out_len()];
            binner.bin(&frame, &mut binned).unwrap();
            let want: Vec<f64> = binned.iter().map(|&s| f64::from(s) * f64::from(1.0 / b as f32)).collect();
            let mut got = vec![0.0; m.segments()];
            m.project_f64(&frame, &mut got).unwrap();
            allclose(&got, &want, 1e-12, 0.0);
            check_projection::<f32>(&m, seed, false);
        }
    }

    #[test]
    fn shapes_take_the_unit_weight_path_and_match_the_weighted_one() {
        let g = FrameGeometry::new(40, 30).unwrap();
        let mut b = LabelBuilder::new(g, vec![0u16; g.area()], vec![0f32; g.area()]).unwrap();
        b.disk(19.5, 14.5, 5.0).unwrap();
        b.rings(19.5, 14.5, 5.0, 14.0, 7).unwrap();
        let m = b.build();
        assert!(m.unit);
        for seed in 0..4 {
            check_projection::<u8>(&m, seed, true);
            check_projection::<u16>(&m, seed, true);
            check_projection::<u32>(&m, seed, true);
            check_projection::<f32>(&m, seed, false);
        }
        // Every table size: 17 slots (above), 65 and 257.
        for n in [16, 17, 64, 65, 200] {
            let mut b = LabelBuilder::new(g, vec![0u16; g.area()], vec![0f32; g.area()]).unwrap();
            b.rings(19.5, 14.5, 0.0, 25.0, n).unwrap();
            let rings = b.build();
            assert!(rings.unit);
            check_projection::<u16>(&rings, n as u64, true);
            check_projection::<u32>(&rings, n as u64, true);
        }
        let (labels, mut weights) = m.into_tables();
        weights[labels.iter().position(|&l| l != NONE).unwrap()] = 0.5;
        let m = LabelMasks::from_tables(g, labels, weights).unwrap();
        assert!(!m.unit, "one weight of 0.5 takes the weighted path");
        check_projection::<u16>(&m, 9, true);
    }

    #[test]
    fn quadrants_split_on_the_axes_symmetrically() {
        // Odd frame, integer centre: the axes pass through pixel centres.
        let g = FrameGeometry::new(21, 21).unwrap();
        let mut b = LabelBuilder::new(g, vec![0u16; 441], vec![0f32; 441]).unwrap();
        assert_eq!(b.sectors(10.0, 10.0, 0.0, 8.0, 4, 0.0).unwrap(), 0..4);
        let m = b.build();
        let label = |row: usize, col: usize| m.labels()[row * 21 + col];
        assert_eq!(label(10, 10), 0, "the centre has angle 0");
        assert_eq!(label(10, 15), 0, "+x axis starts sector 0");
        assert_eq!(label(15, 10), 1, "+y axis starts sector 1");
        assert_eq!(label(10, 5), 2, "−x axis starts sector 2");
        assert_eq!(label(5, 10), 3, "−y axis starts sector 3");
        let mut counts = [0usize; 4];
        for &l in m.labels().iter().filter(|&&l| l != NONE) {
            counts[usize::from(l)] += 1;
        }
        // Each quadrant: one axis arm of 7 pixels plus the same interior; sector 0 also has the centre.
        assert_eq!(counts[0], counts[1] + 1);
        assert_eq!(counts[1], counts[2]);
        assert_eq!(counts[2], counts[3]);
        // Eight sectors split exactly on the diagonals too.
        let mut b = LabelBuilder::new(g, vec![0u16; 441], vec![0f32; 441]).unwrap();
        b.sectors(10.0, 10.0, 1.0, 8.0, 8, 0.0).unwrap();
        let m = b.build();
        assert_eq!(m.labels()[13 * 21 + 13], 1, "(+3, +3) starts sector 1");
        assert_eq!(m.labels()[7 * 21 + 13], 7, "(+3, −3) starts sector 7");
    }

    #[test]
    fn sixty_four_rings_tile_their_annulus() {
        // Paper 001's dark-field detector: 64 rings between two radii cover exactly the annulus.
        let g = FrameGeometry::new(128, 128).unwrap();
        let mut rings = LabelBuilder::new(g, vec![0u16; g.area()], vec![0f32; g.area()]).unwrap();
        assert_eq!(rings.rings(63.5, 63.5, 20.0, 60.0, 64).unwrap(), 0..64);
        let rings = rings.build();
        let mut ann = LabelBuilder::new(g, vec![0u16; g.area()], vec![0f32; g.area()]).unwrap();
        ann.annulus(63.5, 63.5, 20.0, 60.0).unwrap();
        let ann = ann.build();
        for (&a, &r) in ann.labels().iter().zip(rings.labels()) {
            assert_eq!(a == NONE, r == NONE);
        }
        let frame: Vec<u16> = random_frame(g.area(), 9);
        let (mut per_ring, mut total) = ([0.0f64; 64], [0.0f64; 1]);
        rings.project_f64(&frame, &mut per_ring).unwrap();
        ann.project_f64(&frame, &mut total).unwrap();
        assert_eq!(per_ring.iter().sum::<f64>(), total[0]);
    }

    #[test]
    fn detectors_share_a_table_and_rect_and_custom() {
        let g = FrameGeometry::new(33, 31).unwrap();
        let mut b = LabelBuilder::new(g, vec![0u16; g.area()], vec![0f32; g.area()]).unwrap();
        assert_eq!(b.disk(16.0, 15.0, 4.0), Ok(0));
        assert_eq!(b.annulus(16.0, 15.0, 6.0, 9.0), Ok(1));
        assert_eq!(b.sectors(16.0, 15.0, 10.0, 14.0, 4, 0.3), Ok(2..6));
        assert_eq!(
            b.rect(Window {
                x0: 0,
                y0: 0,
                width: 3,
                height: 2
            }),
            Ok(6)
        );
        assert_eq!(
            b.custom(2, |row, col| (row == 30)
                .then_some((col % 2, 0.5 + col as f32))),
            Ok(7..9)
        );
        assert_eq!(b.segments(), 9);
        let m = b.build();
        assert_eq!(m.labels()[33 + 2], 6, "row 1, col 2");
        assert_eq!(
            (m.labels()[30 * 33 + 5], m.weights()[30 * 33 + 5]),
            (8, 5.5)
        );
        for seed in 0..3 {
            check_projection::<u8>(&m, seed, false);
            check_projection::<u16>(&m, seed, false);
            check_projection::<u32>(&m, seed, false);
            check_projection::<f32>(&m, seed, false);
        }
        // Round trip through from_tables.
        let (l, w) = m.into_tables();
        let again = LabelMasks::from_tables(g, l, w).unwrap();
        assert_eq!(again.segments(), 9);
        check_projection::<u16>(&again, 5, false);
    }

    #[test]
    fn empty_table_projects_nothing() {
        let g = FrameGeometry::new(4, 3).unwrap();
        let m = LabelBuilder::new(g, [0u16; 12], [0f32; 12])
            .unwrap()
            .build();
        assert_eq!(m.segments(), 0);
        assert_eq!(m.project(&[1u8; 12], &mut []), Ok(()));
    }

    #[test]
    fn errors() {
        let g = FrameGeometry::new(10, 10).unwrap();
        assert_eq!(
            LabelBuilder::new(g, [0u16; 99], [0f32; 100]).unwrap_err(),
            Error::GeometryMismatch {
                expected: 100,
                found: 99
            }
        );
        let mut b = LabelBuilder::new(g, [0u16; 100], [0f32; 100]).unwrap();
        assert_eq!(b.disk(5.0, 5.0, f32::NAN), Err(Error::BadParameter));
        assert_eq!(b.disk(f32::INFINITY, 5.0, 1.0), Err(Error::BadParameter));
        assert_eq!(b.disk(5.0, 5.0, -1.0), Err(Error::BadParameter));
        assert_eq!(b.annulus(5.0, 5.0, 3.0, 3.0), Err(Error::BadParameter));
        assert_eq!(b.rings(5.0, 5.0, 1.0, 3.0, 0), Err(Error::BadParameter));
        assert_eq!(
            b.sectors(5.0, 5.0, 1.0, 3.0, 4, f32::NAN),
            Err(Error::BadParameter)
        );
        assert_eq!(
            b.custom(1, |_, _| Some((0, f32::NAN))),
            Err(Error::BadParameter)
        );
        assert_eq!(b.custom(2, |_, _| Some((2, 1.0))), Err(Error::BadIndex(2)));
        assert_eq!(
            b.rect(Window {
                x0: 5,
                y0: 5,
                width: 6,
                height: 1
            }),
            Err(Error::CropOutOfBounds)
        );
        let win = Window::full(g);
        assert_eq!(b.orthonormal_bins(win, 0), Err(Error::BadFactor(0)));
        assert_eq!(
            b.orthonormal_bins(win, 3),
            Err(Error::FactorDoesNotDivide { factor: 3, dim: 10 })
        );
        let top = Window {
            x0: 0,
            y0: 0,
            width: 10,
            height: 5,
        };
        assert_eq!(b.orthonormal_bins(top, 1), Ok(0..50));
        assert_eq!(
            b.disk(5.0, 5.0, 2.0),
            Err(Error::Overlap { row: 3, col: 5 })
        );
        assert_eq!(b.segments(), 50, "failed calls assign nothing");
        assert_eq!(
            b.labels.as_ref()[7 * 10 + 5],
            NONE,
            "failed calls write nothing"
        );
        assert_eq!(
            b.rings(5.0, 5.0, 1.0, 3.0, 207),
            Err(Error::TooManyMasks {
                max: MAX_SEGMENTS,
                found: 257
            })
        );
        let m = b.build();
        assert_eq!(
            m.project(&[0u8; 100], &mut [0.0; 49]),
            Err(Error::GeometryMismatch {
                expected: 50,
                found: 49
            })
        );
        assert_eq!(
            m.project_f64(&[0u8; 101], &mut [0.0; 50]),
            Err(Error::GeometryMismatch {
                expected: 100,
                found: 101
            })
        );
        let mut bad = [NONE; 100];
        bad[7] = 256;
        assert_eq!(
            LabelMasks::from_tables(g, bad, [0f32; 100]).unwrap_err(),
            Error::BadIndex(256)
        );
        assert_eq!(
            LabelMasks::from_tables(g, [NONE; 100], [f32::NAN; 100]).unwrap_err(),
            Error::BadParameter
        );
    }
}
