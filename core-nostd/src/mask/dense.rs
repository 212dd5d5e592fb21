//! Dense masks: K arbitrary weight maps over one window (the bounding box of their support).
//!
//! Use them for centre of mass, Zernike or recorded-pattern bases: anything where a pixel
//! carries weights for several masks. Only the window is stored and read.
//!
//! # Storage
//!
//! One caller-owned `f32` buffer (`Vec<f32>`, `[f32; N]`, `&mut [f32]` …), row-major, made of
//! `1 + K` window-sized planes: plane 0 is the *region* (1 inside, 0 outside; the whole window
//! unless [`DenseBuilder::set_region`] narrows it), planes 1…K are the masks. Size it with
//! [`DenseBuilder::storage_len`]; the capacity K is whatever fits, up to [`MAX_DENSE_MASKS`].
//!
//! # Precision
//!
//! [`DenseMasks::project`] multiplies and sums in f32 over 16 independent lanes (so it
//! vectorises): the error is at most about (n/16 + 16)·2⁻²⁴·Σ|w·x| for n window pixels, and
//! in practice near √n times less. [`DenseMasks::region_energy`] sums squares in f64: exact
//! for `u8`/`u16` pixels on windows below 2²¹ pixels.
//!
//! # Residual (paper 002, eq. 11)
//!
//! For masks that are orthonormal and supported inside the region, the squared norm of the
//! part of the frame that the masks do not capture is ‖x_region‖² − Σₖ cₖ²
//! ([`DenseMasks::residual`]). It is not clamped: a negative value means rounding (of the f32
//! coefficients, relative error ~1e-6 of ‖x_region‖²) or masks that are not orthonormal.

use crate::Error;
use crate::geometry::{FrameGeometry, Window, check_len};
use crate::pixel::Pixel;

/// Most masks one [`DenseMasks`] holds.
pub const MAX_DENSE_MASKS: usize = 64;

/// Independent f32 partial sums in a dot product (two AVX registers).
const LANES: usize = 16;
/// Frames that [`DenseMasks::project_batch`] takes through the masks together.
const FRAME_BLOCK: usize = 4;
/// Masks that meet a group of frames together (MASK_BLOCK × FRAME_BLOCK × LANES f32
/// accumulators: 8 AVX-512 or 16 AVX2 registers).
const MASK_BLOCK: usize = 2;

/// Fills the planes of a dense mask buffer; see the [module docs](self).
#[derive(Debug)]
pub struct DenseBuilder<S> {
    masks: DenseMasks<S>,
    capacity: usize,
}

impl<S: AsRef<[f32]> + AsMut<[f32]>> DenseBuilder<S> {
    /// The buffer length for `masks` masks over `window`: `(masks + 1) * window.area()`.
    pub const fn storage_len(masks: usize, window: &Window) -> usize {
        (masks + 1) * window.area()
    }

    /// Start with no mask and the region set to the whole window (whatever `storage` held).
    ///
    /// [`Error::CropOutOfBounds`] / [`Error::EmptyGeometry`] for a bad window,
    /// [`Error::BufferTooSmall`] if `storage` cannot hold the region plus one mask.
    pub fn new(geometry: FrameGeometry, window: Window, mut storage: S) -> Result<Self, Error> {
        window.check(geometry)?;
        let (area, len) = (window.area(), storage.as_ref().len());
        let needed = Self::storage_len(1, &window);
        if len < needed {
            return Err(Error::BufferTooSmall { needed, found: len });
        }
        storage.as_mut()[..area].fill(1.0);
        Ok(Self {
            masks: DenseMasks {
                geometry,
                window,
                storage,
                count: 0,
            },
            capacity: (len / area - 1).min(MAX_DENSE_MASKS),
        })
    }

    /// Masks the storage has room for (at most [`MAX_DENSE_MASKS`]).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Masks pushed so far.
    pub fn masks(&self) -> usize {
        self.masks.count
    }

    /// Add a mask with weight `weight(row, col)` at each window pixel (frame coordinates);
    /// returns its index. [`Error::TooManyMasks`] when full, [`Error::BadParameter`] for a
    /// non-finite weight (nothing is added then).
    pub fn push_fn(&mut self, mut weight: impl FnMut(usize, usize) -> f32) -> Result<usize, Error> {
        let Window { x0, y0, width, .. } = self.masks.window;
        self.push_with(|plane| {
            for (r, row) in plane.chunks_exact_mut(width).enumerate() {
                for (c, w) in row.iter_mut().enumerate() {
                    *w = weight(y0 + r, x0 + c);
                }
            }
        })
    }

    /// Add a mask from window-sized, row-major `weights` ([`Error::GeometryMismatch`] if not
    /// window-sized); otherwise as [`DenseBuilder::push_fn`].
    pub fn push_weights(&mut self, weights: &[f32]) -> Result<usize, Error> {
        check_len(self.masks.window.area(), weights.len())?;
        self.push_with(|plane| plane.copy_from_slice(weights))
    }

    /// Add the two centre-of-mass masks, weights x − `cx` and y − `cy` (x = col, y = row);
    /// returns their indices. Dividing the coefficients by the frame's total is the caller's.
    pub fn centre_of_mass(&mut self, cx: f32, cy: f32) -> Result<(usize, usize), Error> {
        if !(cx.is_finite() && cy.is_finite()) {
            return Err(Error::BadParameter);
        }
        if self.capacity - self.masks.count < 2 {
            return Err(Error::TooManyMasks {
                max: self.capacity,
                found: self.masks.count + 2,
            });
        }
        let x = self.push_fn(|_, col| col as f32 - cx)?;
        let y = self.push_fn(|row, _| row as f32 - cy)?;
        Ok((x, y))
    }

    /// Narrow the region (plane 0) to the window pixels where `contains(row, col)` is true.
    /// The region is what [`DenseMasks::region_energy`] sums over.
    pub fn set_region(&mut self, mut contains: impl FnMut(usize, usize) -> bool) {
        let Window { x0, y0, width, .. } = self.masks.window;
        let area = self.masks.window.area();
        let plane = &mut self.masks.storage.as_mut()[..area];
        for (r, row) in plane.chunks_exact_mut(width).enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = if contains(y0 + r, x0 + c) { 1.0 } else { 0.0 };
            }
        }
    }

    /// Freeze into an immutable [`DenseMasks`].
    pub fn build(self) -> DenseMasks<S> {
        self.masks
    }

    fn push_with(&mut self, fill: impl FnOnce(&mut [f32])) -> Result<usize, Error> {
        let k = self.masks.count;
        if k == self.capacity {
            return Err(Error::TooManyMasks {
                max: self.capacity,
                found: k + 1,
            });
        }
        let area = self.masks.window.area();
        let plane = &mut self.masks.storage.as_mut()[(k + 1) * area..(k + 2) * area];
        fill(plane);
        if !plane.iter().all(|w| w.is_finite()) {
            return Err(Error::BadParameter);
        }
        self.masks.count = k + 1;
        Ok(k)
    }
}

/// K dense masks and a region over one window, ready to project; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct DenseMasks<S> {
    geometry: FrameGeometry,
    window: Window,
    storage: S,
    count: usize,
}

impl<S: AsRef<[f32]>> DenseMasks<S> {
    /// Number of masks K: `project` writes K values per frame.
    pub fn masks(&self) -> usize {
        self.count
    }

    /// The frame geometry.
    pub fn geometry(&self) -> FrameGeometry {
        self.geometry
    }

    /// The window the masks cover.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Mask `k`'s weights over the window (row-major), if `k < K`.
    pub fn mask(&self, k: usize) -> Option<&[f32]> {
        let area = self.window.area();
        (k < self.count).then(|| &self.storage.as_ref()[(k + 1) * area..(k + 2) * area])
    }

    /// The region plane (1 inside, 0 outside), row-major over the window.
    pub fn region(&self) -> &[f32] {
        &self.storage.as_ref()[..self.window.area()]
    }

    /// Give the storage back.
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// The same masks for frames already cropped to the window: geometry = the window's size,
    /// window = all of it, sharing this storage. Fed the windows that
    /// [`DenseMasks::crop_to_f32`] writes, its [`DenseMasks::project_batch`] gives the same
    /// bits as this one's on the raw frames (`to_f32` is the same conversion, done once per
    /// frame instead of once per mask block).
    pub fn cropped(&self) -> DenseMasks<&[f32]> {
        let Window { width, height, .. } = self.window;
        DenseMasks {
            geometry: FrameGeometry { width, height },
            window: Window {
                x0: 0,
                y0: 0,
                width,
                height,
            },
            storage: self.storage.as_ref(),
            count: self.count,
        }
    }

    /// Copies the window of `frame` into `out` (row-major, window area long) as `f32`.
    /// [`Error::GeometryMismatch`] for a frame that is not the geometry's area or an `out`
    /// that is not the window's area.
    #[inline(always)]
    pub fn crop_to_f32<P: Pixel>(&self, frame: &[P], out: &mut [f32]) -> Result<(), Error> {
        self.geometry.check_len(frame.len())?;
        check_len(self.window.area(), out.len())?;
        for (dst, src) in out
            .chunks_exact_mut(self.window.width)
            .zip(self.window_rows(frame))
        {
            for (d, &x) in dst.iter_mut().zip(src) {
                *d = x.to_f32();
            }
        }
        Ok(())
    }

    /// Write the K coefficients Σ wₖ·x of `frame` into `out` (overwriting it).
    /// [`Error::GeometryMismatch`] for a frame that is not the geometry's area or an `out`
    /// that is not K long.
    #[inline(always)]
    pub fn project<P: Pixel>(&self, frame: &[P], out: &mut [f32]) -> Result<(), Error> {
        self.geometry.check_len(frame.len())?;
        check_len(self.count, out.len())?;
        for (k, o) in out.iter_mut().enumerate() {
            *o = self.dot(self.plane(k + 1), frame);
        }
        Ok(())
    }

    /// Project several frames at once, mask-major: each mask is read once per batch and stays
    /// in L1 while it meets every frame, so choose batches whose windows fit in L2 (e.g. 8–32
    /// frames of a 65 × 65 window). `out` is frame-major: coefficient k of frame f goes to
    /// `out[f * K + k]`. Results equal [`DenseMasks::project`]'s bit for bit.
    ///
    /// `frames` is any re-iterable sequence of frames: `slice.iter().map(|f| &f[..])`,
    /// `contiguous.chunks_exact(area)`, … Returns the number of frames;
    /// [`Error::GeometryMismatch`] (before writing anything) if a frame is not the
    /// geometry's area or `out` is not frames × K long.
    #[inline(always)]
    pub fn project_batch<'f, P, I>(&self, frames: I, out: &mut [f32]) -> Result<usize, Error>
    where
        P: Pixel + 'f,
        I: IntoIterator<Item = &'f [P]>,
        I::IntoIter: Clone,
    {
        let frames = frames.into_iter();
        let mut n = 0;
        for frame in frames.clone() {
            self.geometry.check_len(frame.len())?;
            n += 1;
        }
        check_len(n * self.count, out.len())?;
        let k_all = self.count;
        if k_all == 0 {
            return Ok(n); // chunks_exact_mut(0) below would panic
        }
        // Register blocking (a small GEMM, masks × frames): groups of FRAME_BLOCK frames meet
        // MASK_BLOCK masks at a time, so each mask row loaded from cache serves FRAME_BLOCK
        // frames and each converted frame row MASK_BLOCK masks. Every (mask, frame) pair keeps
        // `dot`'s lanes and order, hence the same bits as `project`.
        let mut rest = frames;
        let mut rows = out.chunks_exact_mut(k_all);
        loop {
            let group: [Option<&[P]>; FRAME_BLOCK] = core::array::from_fn(|_| rest.next());
            let full_group = match group {
                [Some(a), Some(b), Some(c), Some(d)] => Some([a, b, c, d]),
                _ => None,
            };
            let Some(group_frames) = full_group else {
                // Fewer than FRAME_BLOCK frames left: one dot per (mask, frame).
                for (coeffs, frame) in (&mut rows).zip(group.into_iter().flatten()) {
                    for (k, c) in coeffs.iter_mut().enumerate() {
                        *c = self.dot(self.plane(k + 1), frame);
                    }
                }
                break;
            };
            let mut group_rows: [&mut [f32]; FRAME_BLOCK] = Default::default();
            for (slot, row) in group_rows.iter_mut().zip(&mut rows) {
                *slot = row;
            }
            let blocked = k_all / MASK_BLOCK * MASK_BLOCK;
            for k0 in (0..blocked).step_by(MASK_BLOCK) {
                let sums = self.dot_block::<P, MASK_BLOCK>(k0, &group_frames);
                for (i, per_frame) in sums.iter().enumerate() {
                    for (row, &v) in group_rows.iter_mut().zip(per_frame) {
                        row[k0 + i] = v;
                    }
                }
            }
            for k in blocked..k_all {
                for (row, frame) in group_rows.iter_mut().zip(group_frames) {
                    row[k] = self.dot(self.plane(k + 1), frame);
                }
            }
        }
        Ok(n)
    }

    /// ‖x_region‖²: the sum of squared pixels of `frame` inside the region, in f64.
    /// [`Error::GeometryMismatch`] for a frame that is not the geometry's area.
    pub fn region_energy<P: Pixel>(&self, frame: &[P]) -> Result<f64, Error> {
        self.geometry.check_len(frame.len())?;
        const L: usize = LANES / 2;
        let mut lanes = [0.0f64; L];
        let mut tail = 0.0;
        let width = self.window.width;
        for (region, x) in self
            .plane(0)
            .chunks_exact(width)
            .zip(self.window_rows(frame))
        {
            let (rc, xc) = (region.chunks_exact(L), x.chunks_exact(L));
            for (&r, &x) in rc.remainder().iter().zip(xc.remainder()) {
                let v = f64::from(r) * x.to_f64();
                tail += v * v;
            }
            for (r, x) in rc.zip(xc) {
                for (j, lane) in lanes.iter_mut().enumerate() {
                    let v = f64::from(r[j]) * x[j].to_f64();
                    *lane += v * v;
                }
            }
        }
        Ok(lanes.iter().sum::<f64>() + tail)
    }

    /// The perpendicular component of paper 002 (eq. 11): ‖x_region‖² − Σₖ `coeffs`ₖ², with
    /// `coeffs` the K coefficients [`DenseMasks::project`] gave for `frame`. Not clamped (see
    /// the module docs). [`Error::GeometryMismatch`] for a wrong frame or `coeffs` length.
    pub fn residual<P: Pixel>(&self, frame: &[P], coeffs: &[f32]) -> Result<f64, Error> {
        check_len(self.count, coeffs.len())?;
        let captured: f64 = coeffs.iter().map(|&c| f64::from(c) * f64::from(c)).sum();
        Ok(self.region_energy(frame)? - captured)
    }

    /// Plane `p` (0 = region, k + 1 = mask k).
    fn plane(&self, p: usize) -> &[f32] {
        let area = self.window.area();
        &self.storage.as_ref()[p * area..(p + 1) * area]
    }

    /// The window's part of each frame row.
    fn window_rows<'a, P>(&self, frame: &'a [P]) -> impl Iterator<Item = &'a [P]> {
        let w = self.geometry.width();
        let Window {
            x0,
            y0,
            width,
            height,
        } = self.window;
        frame[y0 * w..]
            .chunks(w)
            .take(height)
            .map(move |row| &row[x0..x0 + width])
    }

    /// [`DenseMasks::dot`] of masks `k0 .. k0 + M` with each of `frames`, all at once:
    /// `out[i][f]` equals `self.dot(plane(k0 + i + 1), frames[f])` bit for bit (same lanes,
    /// same order of additions per pair). Frames must have the geometry's area (checked by
    /// the caller).
    #[inline(always)]
    fn dot_block<P: Pixel, const M: usize>(
        &self,
        k0: usize,
        frames: &[&[P]; FRAME_BLOCK],
    ) -> [[f32; FRAME_BLOCK]; M] {
        let w = self.geometry.width();
        let Window {
            x0,
            y0,
            width,
            height,
        } = self.window;
        let area = self.window.area();
        let storage = self.storage.as_ref();
        let mut lanes = [[[0.0f32; LANES]; FRAME_BLOCK]; M];
        let mut tail = [[0.0f32; FRAME_BLOCK]; M];
        for r in 0..height {
            let start = (y0 + r) * w + x0;
            let xrows: [&[P]; FRAME_BLOCK] = [
                &frames[0][start..start + width],
                &frames[1][start..start + width],
                &frames[2][start..start + width],
                &frames[3][start..start + width],
            ];
            let mut mrows: [&[f32]; M] = [&[]; M];
            for (i, m) in mrows.iter_mut().enumerate() {
                let p = (k0 + i + 1) * area + r * width;
                *m = &storage[p..p + width];
            }
            // Fixed-size arrays from here on: the compiler sees every bound and vectorises.
            let mut xcs = xrows.map(|x| x.chunks_exact(LANES));
            let mut mcs = mrows.map(|m| m.chunks_exact(LANES));
            for _ in 0..width / LANES {
                let mut xs = [[0.0f32; LANES]; FRAME_BLOCK];
                for (dst, it) in xs.iter_mut().zip(xcs.iter_mut()) {
                    for (d, &x) in dst.iter_mut().zip(it.next().unwrap_or(&[])) {
                        *d = x.to_f32();
                    }
                }
                for (lanes_i, it) in lanes.iter_mut().zip(mcs.iter_mut()) {
                    let mut m = [0.0f32; LANES];
                    for (d, &v) in m.iter_mut().zip(it.next().unwrap_or(&[])) {
                        *d = v;
                    }
                    for (acc, x) in lanes_i.iter_mut().zip(&xs) {
                        for j in 0..LANES {
                            acc[j] += m[j] * x[j];
                        }
                    }
                }
            }
            for (tail_i, mc) in tail.iter_mut().zip(&mcs) {
                for (t, xc) in tail_i.iter_mut().zip(&xcs) {
                    for (&m, &x) in mc.remainder().iter().zip(xc.remainder()) {
                        *t += m * x.to_f32();
                    }
                }
            }
        }
        let mut out = [[0.0f32; FRAME_BLOCK]; M];
        for ((o, l), t) in out.iter_mut().zip(&lanes).zip(&tail) {
            for ((o, l), &t) in o.iter_mut().zip(l).zip(t) {
                *o = l.iter().sum::<f32>() + t;
            }
        }
        out
    }

    /// Σ mask·x over the window, in LANES f32 partial sums.
    #[inline(always)]
    fn dot<P: Pixel>(&self, mask: &[f32], frame: &[P]) -> f32 {
        let mut lanes = [0.0f32; LANES];
        let mut tail = 0.0f32;
        for (m, x) in mask
            .chunks_exact(self.window.width)
            .zip(self.window_rows(frame))
        {
            let (mc, xc) = (m.chunks_exact(LANES), x.chunks_exact(LANES));
            for (&m, &x) in mc.remainder().iter().zip(xc.remainder()) {
                tail += m * x.to_f32();
            }
            for (m, x) in mc.zip(xc) {
                for (j, lane) in lanes.iter_mut().enumerate() {
                    *lane += m[j] * x[j].to_f32();
                }
            }
        }
        lanes.iter().sum::<f32>() + tail
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::testing::{TestPixel, allclose, dirty, random_frame};
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64;
    use std::vec;
    use std::vec::Vec;

    /// A random test configuration: frame, window, K masks given as full-frame functions.
    struct Case {
        g: FrameGeometry,
        win: Window,
        /// Full-frame weights of each mask, zero outside the window.
        full: Vec<Vec<f32>>,
        /// Full-frame region indicator.
        region: Vec<bool>,
    }

    fn case(w: usize, h: usize, k: usize, seed: u64) -> Case {
        let mut rng = Pcg64::seed_from_u64(seed);
        let g = FrameGeometry::new(w, h).unwrap();
        let (x0, y0) = (rng.gen_range(0..w), rng.gen_range(0..h));
        let win = Window {
            x0,
            y0,
            width: rng.gen_range(1..=w - x0),
            height: rng.gen_range(1..=h - y0),
        };
        let inside = |i: usize| {
            let (row, col) = (i / w, i % w);
            (y0..y0 + win.height).contains(&row) && (x0..x0 + win.width).contains(&col)
        };
        let full = (0..k)
            .map(|_| {
                (0..w * h)
                    .map(|i| {
                        if inside(i) {
                            rng.gen_range(-1.0..1.0)
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        let (cx, cy, r) = (
            rng.gen_range(0.0..w as f32),
            rng.gen_range(0.0..h as f32),
            rng.gen_range(0.0..20.0),
        );
        let region = (0..w * h)
            .map(|i| {
                let (dx, dy) = ((i % w) as f32 - cx, (i / w) as f32 - cy);
                inside(i) && dx * dx + dy * dy <= r * r
            })
            .collect();
        Case {
            g,
            win,
            full,
            region,
        }
    }

    fn build(c: &Case) -> DenseMasks<Vec<f32>> {
        let mut storage =
            vec![0.0; DenseBuilder::<Vec<f32>>::storage_len(c.full.len().max(1), &c.win)];
        dirty(&mut storage);
        let mut b = DenseBuilder::new(c.g, c.win, storage).unwrap();
        let w = c.g.width();
        for (k, m) in c.full.iter().enumerate() {
            assert_eq!(b.push_fn(|row, col| m[row * w + col]), Ok(k));
        }
        b.set_region(|row, col| c.region[row * w + col]);
        b.build()
    }

    /// Naive full-frame references, in f64: coefficients, Σ|w·x| per mask, region energy.
    fn naive<P: TestPixel>(c: &Case, frame: &[P]) -> (Vec<f64>, Vec<f64>, f64) {
        let (w, h) = (c.g.width(), c.g.height());
        let mut coeffs = vec![0.0; c.full.len()];
        let mut mags = vec![0.0; c.full.len()];
        let mut energy = 0.0;
        for row in 0..h {
            for col in 0..w {
                let x = frame[row * w + col].to_f64();
                for (k, m) in c.full.iter().enumerate() {
                    coeffs[k] += f64::from(m[row * w + col]) * x;
                    mags[k] += (f64::from(m[row * w + col]) * x).abs();
                }
                if c.region[row * w + col] {
                    energy += x * x;
                }
            }
        }
        (coeffs, mags, energy)
    }

    fn check<P: TestPixel>(c: &Case, m: &DenseMasks<Vec<f32>>, seed: u64) {
        let area = c.g.area();
        // Seven frames: one blocked group of FRAME_BLOCK and a remainder of three.
        let frames: Vec<P> = random_frame(7 * area, seed);
        let k = m.masks();
        let mut batch = vec![0.0f32; 7 * k];
        dirty(&mut batch);
        assert_eq!(
            m.project_batch(frames.chunks_exact(area), &mut batch),
            Ok(7)
        );
        // Windows cropped to f32 first, then projected by the cropped masks: the same bits.
        let win = m.window().area();
        let mut windows = vec![0.0f32; 7 * win];
        dirty(&mut windows);
        for (frame, w) in frames.chunks_exact(area).zip(windows.chunks_exact_mut(win)) {
            m.crop_to_f32(frame, w).unwrap();
        }
        let mut via_crop = vec![0.0f32; 7 * k];
        dirty(&mut via_crop);
        let cropped = m.cropped();
        assert_eq!(cropped.geometry().area(), win);
        assert_eq!(
            cropped.project_batch(windows.chunks_exact(win), &mut via_crop),
            Ok(7)
        );
        assert!(
            batch
                .iter()
                .zip(&via_crop)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "cropped projection differs"
        );
        assert!(
            m.crop_to_f32(&frames[..area - 1], &mut windows[..win])
                .is_err()
        );
        assert!(
            m.crop_to_f32(&frames[..area], &mut windows[..win - 1])
                .is_err()
        );
        for (f, frame) in frames.chunks_exact(area).enumerate() {
            let (want, mags, energy) = naive(c, frame);
            let mut got = vec![0.0f32; k];
            dirty(&mut got);
            m.project(frame, &mut got).unwrap();
            assert_eq!(
                got,
                &batch[f * k..(f + 1) * k],
                "batch equals single, bit for bit"
            );
            for ((&g, &w), &mag) in got.iter().zip(&want).zip(&mags) {
                assert!(
                    (f64::from(g) - w).abs() <= 1e-5 * mag + 1e-6,
                    "{g} vs {w} (Σ|wx| {mag})"
                );
            }
            let e = m.region_energy(frame).unwrap();
            // Exact for u8/u16 only (the test's u32 squares reach 2⁴⁸, their sums pass 2⁵³).
            if size_of::<P>() == 4 {
                allclose(&[e], &[energy], 1e-12, 0.0);
            } else {
                assert_eq!(e, energy);
            }
            let cap: f64 = got.iter().map(|&c| f64::from(c) * f64::from(c)).sum();
            assert_eq!(m.residual(frame, &got), Ok(e - cap));
        }
    }

    proptest! {
        #[test]
        fn project_batch_energy_match_naive_every_pixel_type(
            w in 1usize..50, h in 1usize..40, k in 0usize..7, seed in any::<u64>(),
        ) {
            let c = case(w, h, k, seed);
            let m = build(&c);
            check::<u8>(&c, &m, seed);
            check::<u16>(&c, &m, seed);
            check::<u32>(&c, &m, seed);
            check::<f32>(&c, &m, seed);
        }
    }

    #[test]
    fn centre_of_mass_of_a_point() {
        let g = FrameGeometry::new(9, 7).unwrap();
        let win = Window {
            x0: 1,
            y0: 1,
            width: 7,
            height: 5,
        };
        let mut b = DenseBuilder::new(g, win, [0.0f32; 3 * 35]).unwrap();
        assert_eq!(b.capacity(), 2);
        assert_eq!(b.centre_of_mass(4.0, 3.5), Ok((0, 1)));
        let m = b.build();
        let mut frame = [0u16; 63];
        frame[2 * 9 + 6] = 10; // row 2, col 6
        let mut c = [0.0f32; 2];
        m.project(&frame, &mut c).unwrap();
        assert_eq!(c, [20.0, -15.0]);
    }

    #[test]
    fn residual_is_the_perpendicular_norm() {
        // Orthonormal binning masks (weight 1/b on b × b blocks) over a 6 × 4 window: the
        // residual of eq. 11 equals ‖x − Σ cₖ mₖ‖² computed directly.
        let (b, win) = (
            2,
            Window {
                x0: 2,
                y0: 1,
                width: 6,
                height: 4,
            },
        );
        let g = FrameGeometry::new(11, 7).unwrap();
        let mut builder = DenseBuilder::new(
            g,
            win,
            vec![0.0; DenseBuilder::<Vec<f32>>::storage_len(6, &win)],
        )
        .unwrap();
        for k in 0..6 {
            let (by, bx) = (k / 3, k % 3);
            builder
                .push_fn(|row, col| {
                    let inside = (row - win.y0) / b == by && (col - win.x0) / b == bx;
                    if inside { 0.5 } else { 0.0 }
                })
                .unwrap();
        }
        let m = builder.build();
        let frame: Vec<u16> = random_frame(g.area(), 4);
        let mut c = [0.0f32; 6];
        m.project(&frame, &mut c).unwrap();
        let mut perp = 0.0;
        for row in win.y0..win.y0 + 4 {
            for col in win.x0..win.x0 + 6 {
                let k = (row - win.y0) / b * 3 + (col - win.x0) / b;
                let d = f64::from(frame[row * 11 + col]) - f64::from(c[k]) * 0.5;
                perp += d * d;
            }
        }
        let r = m.residual(&frame, &c).unwrap();
        assert!(
            (r - perp).abs() <= 1e-6 * m.region_energy(&frame).unwrap(),
            "{r} vs {perp}"
        );
        // A frame inside the span has no perpendicular component.
        let flat = [7u16; 77];
        m.project(&flat, &mut c).unwrap();
        assert!(m.residual(&flat, &c).unwrap().abs() < 1e-3);
    }

    #[test]
    fn errors() {
        let g = FrameGeometry::new(8, 8).unwrap();
        let win = Window {
            x0: 2,
            y0: 2,
            width: 4,
            height: 4,
        };
        assert_eq!(
            DenseBuilder::new(g, win, [0.0f32; 31]).unwrap_err(),
            Error::BufferTooSmall {
                needed: 32,
                found: 31
            }
        );
        let outside = Window {
            x0: 6,
            y0: 0,
            width: 4,
            height: 4,
        };
        assert_eq!(
            DenseBuilder::new(g, outside, [0.0f32; 64]).unwrap_err(),
            Error::CropOutOfBounds
        );
        let mut b = DenseBuilder::new(g, win, [0.0f32; 48]).unwrap();
        assert_eq!(b.push_fn(|_, _| f32::NAN), Err(Error::BadParameter));
        assert_eq!(
            b.push_weights(&[1.0; 15]),
            Err(Error::GeometryMismatch {
                expected: 16,
                found: 15
            })
        );
        assert_eq!(b.centre_of_mass(f32::NAN, 1.0), Err(Error::BadParameter));
        assert_eq!(b.push_weights(&[1.0; 16]), Ok(0));
        assert_eq!(
            b.centre_of_mass(1.0, 1.0),
            Err(Error::TooManyMasks { max: 2, found: 3 })
        );
        assert_eq!(b.push_fn(|_, _| 1.0), Ok(1));
        assert_eq!(
            b.push_fn(|_, _| 1.0),
            Err(Error::TooManyMasks { max: 2, found: 3 })
        );
        let m = b.build();
        assert_eq!(m.masks(), 2);
        assert_eq!(m.mask(1), Some(&[1.0; 16][..]));
        assert_eq!(m.mask(2), None);
        assert_eq!(
            m.project(&[0u8; 63], &mut [0.0; 2]),
            Err(Error::GeometryMismatch {
                expected: 64,
                found: 63
            })
        );
        assert_eq!(
            m.project(&[0u8; 64], &mut [0.0; 3]),
            Err(Error::GeometryMismatch {
                expected: 2,
                found: 3
            })
        );
        let frames = [[0u8; 64]; 2];
        let iter = frames.iter().map(|f| &f[..]);
        assert_eq!(
            m.project_batch(iter.clone(), &mut [0.0; 3]),
            Err(Error::GeometryMismatch {
                expected: 4,
                found: 3
            })
        );
        assert_eq!(m.project_batch(iter, &mut [0.0; 4]), Ok(2));
        assert_eq!(
            m.residual(&[0u8; 64], &[0.0; 1]),
            Err(Error::GeometryMismatch {
                expected: 2,
                found: 1
            })
        );
        assert_eq!(
            m.region_energy(&[0u8; 65]),
            Err(Error::GeometryMismatch {
                expected: 64,
                found: 65
            })
        );
        // Capacity is capped.
        let big = DenseBuilder::new(
            g,
            Window {
                x0: 0,
                y0: 0,
                width: 1,
                height: 1,
            },
            [0.0f32; 100],
        )
        .unwrap();
        assert_eq!(big.capacity(), MAX_DENSE_MASKS);
    }
}
