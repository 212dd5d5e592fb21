//! Calls every public kernel of `ptyflow-core` with concrete types on stack buffers, so the
//! whole API is instantiated and linked without std or alloc.
#![no_std]

use core::panic::PanicInfo;
use ptyflow_core::basis::gram_schmidt::GramSchmidt;
use ptyflow_core::basis::zernike;
use ptyflow_core::{
    Basis, Binner, Compressor, DenseBuilder, DenseMasks, Error, FrameGeometry, FrameSummary,
    LabelBuilder, LabelMasks, Pixel, Region, RegionSummary, Run, Scan, ScanKind, Stats, Window,
    compression_ratio, math,
};

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

const W: usize = 16;
const H: usize = 16;
const AREA: usize = W * H;

/// Runs every kernel on a synthetic frame built from `seed`; returns a checksum, or a negative
/// number if any call failed.
#[unsafe(no_mangle)]
pub extern "C" fn ptyflow_nostd_check(seed: u32) -> f64 {
    run(seed).unwrap_or(-1.0)
}

fn run(seed: u32) -> Result<f64, Error> {
    let g = FrameGeometry::new(W, H)?;
    let mut total = 0.0;
    let mut f8 = [0u8; AREA];
    let mut f16 = [0u16; AREA];
    let mut f32s = [0u32; AREA];
    let mut ff = [0f32; AREA];
    for i in 0..AREA {
        let v = seed.wrapping_mul(2_654_435_761).wrapping_add(i as u32) % 251;
        (f8[i], f16[i], f32s[i], ff[i]) = (v as u8, v as u16, v, v as f32);
    }
    total += frame_kernels(g, &f8)?;
    total += frame_kernels(g, &f16)?;
    total += frame_kernels(g, &f32s)?;
    total += frame_kernels(g, &ff)?;

    let scan = Scan::new(4, 5, ScanKind::Serpentine)?;
    let (r, c) = scan.position(7).ok_or(Error::OutOfScan)?;
    total += (scan.index(r, c).unwrap_or(0) + scan.rows() + scan.cols() + scan.positions()) as f64;
    let _ = scan.kind();

    total +=
        f64::from(math::sqrt(2.0)) + math::atan2(1.0, 2.0) + math::floor(2.5) + math::ceil(2.5);
    total += math::sqrt64(2.0);
    total += bases(g, &f8, &f16, &f32s, &ff)?;
    Ok(total)
}

/// Every basis builder and the compressor on stack buffers, for every pixel type.
fn bases(g: FrameGeometry, f8: &[u8], f16: &[u16], f32s: &[u32], ff: &[f32]) -> Result<f64, Error> {
    let mut total = 0.0;
    let mut disc_runs = [Run::default(); 2 * H];
    let mut ann_runs = [Run::default(); 2 * H];
    let _ = Region::<&mut [Run]>::max_runs(g);
    let disc = Region::disc(g, 7.5, 7.5, 3.0, &mut disc_runs[..])?;
    let annulus = Region::annulus(g, 7.5, 7.5, 3.0, 9.0, &mut ann_runs[..])?;
    let (n, m) = (disc.pixels(), annulus.pixels());
    total += (disc.runs().len() + annulus.as_ref().runs().len()) as f64;
    let _ = (disc.shape(), disc.geometry(), disc.coordinates().count());
    let mut scratch = [0f64; AREA];
    let mut gathered = [0f64; AREA];
    disc.gather_f64(f16, &mut gathered[..n])?;

    // Bright field: each builder in turn on the same storage.
    let mut bf_masks = [0f32; 8 * 64];
    let k = Basis::<&[Run], &mut [f32]>::binning_count(&disc.as_ref(), 2)?;
    let binned = Basis::binning(disc.as_ref(), 2, &mut bf_masks[..k * n])?;
    total += f64::from(binned.masks()[0]) + binned.count() as f64;
    let patterns = [f8, f8];
    let _ = Basis::from_patterns(disc.as_ref(), patterns, &mut bf_masks[..], &mut scratch);
    let _ = Basis::zernike_modes(
        disc.as_ref(),
        [(2, 0), (2, 2)],
        &mut bf_masks[..],
        &mut scratch,
    )?;
    let len = Basis::<&[Run], &mut [f32]>::storage_len(6, n);
    let bf = Basis::zernike(disc.as_ref(), 6, &mut bf_masks[..len], &mut scratch[..n])?;
    let _ = Basis::<&[Run], &mut [f32]>::scratch_len(bf.region());
    total += f64::from(bf.mask(0).map_or(0.0, |q| q[0]));

    // Dark field: one value (the annular piston).
    let mut df_masks = [0f32; AREA];
    let df = Basis::zernike(annulus.as_ref(), 1, &mut df_masks[..m], &mut scratch)?;

    let comp = Compressor::new(bf, df)?;
    let mut out = [0f32; 16];
    let vals = comp.values_per_frame();
    let s8 = comp.compress(f8, &mut out[..vals])?;
    let s16 = comp.compress(f16, &mut out[..vals])?;
    let s32 = comp.compress(f32s, &mut out[..vals])?;
    let sf = comp.compress(ff, &mut out[..vals])?;
    total += s8.bright.angle() + s16.dark.perpendicular() + s32.bright.captured + sf.dark.energy;
    total += comp.compression_ratio() + compression_ratio(AREA, 45, 1);
    let mut rows = [0f32; 5 * 9];
    let mut summaries = [FrameSummary::default(); 5];
    let five = [f16, f16, f16, f16, f16];
    comp.compress_batch(five.iter().copied(), &mut rows[..5 * vals], &mut summaries)?;
    let mut coeffs = [0f32; 5 * 6];
    let mut regions = [RegionSummary::default(); 5];
    comp.bright()
        .project_batch(five.iter().copied(), &mut coeffs, &mut regions)?;
    total += f64::from(rows[0] + coeffs[0]) + summaries[4].dark.energy + regions[4].energy;
    let _ = (comp.geometry(), comp.bright().region(), comp.dark().count());
    let (bf, _df) = comp.into_bases();
    let mut c = [0f32; 6];
    total += bf.project(f16, &mut c)?.energy;
    let _ = bf.into_parts();

    // The pieces on their own.
    let mut q = [0f32; 8];
    let mut gs = GramSchmidt::new(&mut q, 4)?;
    gs.push(&mut [1.0, 2.0, 3.0, 4.0])?;
    let _ = (gs.count(), gs.capacity());
    let (zn, zm) = zernike::osa_to_nm(7);
    total += zernike::zernike(zn, zm, 0.1, 0.2)
        + zernike::radial(4, 2, 0.5)
        + zernike::nm_to_osa(3, 1).unwrap_or(0) as f64;
    let _ = disc.into_runs();
    Ok(total)
}

/// Binner, label masks, dense masks and statistics (full and binned) for one pixel type.
fn frame_kernels<P: Pixel>(g: FrameGeometry, frame: &[P]) -> Result<f64, Error> {
    let mut total = 0.0;

    let binner = Binner::with_window(
        g,
        2,
        Window {
            x0: 2,
            y0: 0,
            width: 12,
            height: 16,
        },
    )?;
    let _ = (
        binner.factor(),
        binner.geometry(),
        binner.window(),
        Binner::new(g, 4)?,
    );
    let mut binned = [<P::BinAcc as ptyflow_core::Accumulator>::ZERO; 48];
    binner.bin(frame, &mut binned[..binner.out_len()])?;
    let small = binner.out_geometry();
    total += (binner.out_width() + binner.out_height()) as f64;

    // Label masks: every builder on one shared table.
    let mut b = LabelBuilder::new(g, [0u16; AREA], [0f32; AREA])?;
    b.disk(7.5, 7.5, 2.0)?;
    b.annulus(7.5, 7.5, 2.0, 3.0)?;
    b.rings(7.5, 7.5, 3.0, 5.0, 2)?;
    b.sectors(7.5, 7.5, 5.0, 7.0, 4, 0.0)?;
    b.rect(Window {
        x0: 0,
        y0: 0,
        width: 2,
        height: 1,
    })?;
    b.orthonormal_bins(
        Window {
            x0: 12,
            y0: 14,
            width: 4,
            height: 2,
        },
        2,
    )?;
    b.custom(1, |row, col| (row == 15 && col == 0).then_some((0, 2.0)))?;
    let _ = b.segments();
    let labels = b.build();
    let mut k32 = [0f32; 16];
    let mut k64 = [0f64; 16];
    let k = labels.segments();
    labels.project(frame, &mut k32[..k])?;
    labels.project_f64(frame, &mut k64[..k])?;
    total += f64::from(k32[0]) + k64[1];
    let (l, w) = labels.into_tables();
    let again = LabelMasks::from_tables(g, l, w)?;
    total += f64::from(again.labels()[0])
        + f64::from(again.weights()[0])
        + again.geometry().area() as f64;

    // Dense masks over a disc's bounding window.
    let win = Window::bounding_disk(g, 7.5, 7.5, 4.0)?;
    let mut storage = [0f32; 5 * 64];
    let mut d = DenseBuilder::new(
        g,
        win,
        &mut storage[..DenseBuilder::<&mut [f32]>::storage_len(4, &win)],
    )?;
    d.centre_of_mass(7.5, 7.5)?;
    d.push_fn(|row, col| if (row + col) % 2 == 0 { 1.0 } else { -1.0 })?;
    d.push_weights(&[0.5; 64][..win.area()])?;
    d.set_region(|row, col| row + col > 10);
    let _ = (d.capacity(), d.masks());
    let dense: DenseMasks<_> = d.build();
    let mut c = [0f32; 4];
    dense.project(frame, &mut c)?;
    let mut cb = [0f32; 8];
    let frames = [frame, frame];
    dense.project_batch(frames.iter().copied(), &mut cb)?;
    total += dense.residual(frame, &c)? + dense.region_energy(frame)?;
    total += f64::from(dense.mask(0).map_or(0.0, |m| m[0]) + dense.region()[0]);
    // Windows converted to f32 once, projected by the cropped masks.
    let mut windows = [0f32; 2 * 64];
    let area = win.area();
    dense.crop_to_f32(frame, &mut windows[..area])?;
    dense.crop_to_f32(frame, &mut windows[area..2 * area])?;
    dense
        .cropped()
        .project_batch(windows[..2 * area].chunks_exact(area), &mut cb)?;
    let _ = (dense.window(), dense.geometry(), dense.into_storage());

    // Statistics at full resolution (P) and at binned resolution (P::BinAcc).
    total += stats(g, frame)?;
    total += stats(small, &binned[..small.area()])?;
    Ok(total)
}

fn stats<P: Pixel>(g: FrameGeometry, frame: &[P]) -> Result<f64, Error> {
    let zero = <P::StatAcc as ptyflow_core::Accumulator>::ZERO;
    let (mut s1, mut q1, mut s2, mut q2) = ([zero; AREA], [zero; AREA], [zero; AREA], [zero; AREA]);
    let n = g.area();
    let mut a = Stats::<P, _>::new(g, &mut s1[..n], &mut q1[..n])?;
    let mut b = Stats::<P, _>::new(g, &mut s2[..n], &mut q2[..n])?;
    let mut dose = [zero; 2];
    a.add_with_dose(frame, 0, &mut dose)?;
    b.add(frame)?;
    a.merge(&b)?;
    let mut mean = [0f64; AREA];
    let mut var = [0f64; AREA];
    a.mean(&mut mean[..n])?;
    a.variance(&mut var[..n])?;
    let extremes = a.min().map_or(0.0, P::to_f64) + a.max().map_or(0.0, P::to_f64);
    let _ = (
        a.is_exact(),
        a.frames(),
        a.sum()[0],
        a.sum_sq()[0],
        a.geometry(),
    );
    b.reset();
    let _ = b.into_buffers();
    Ok(mean[0] + var[0] + extremes)
}
