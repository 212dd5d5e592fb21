//! `Reconstructor::update` never allocates: a counting global allocator (only in this test
//! binary) counts the allocations made by the calling thread while updates run.
//!
//! Also holds a rough throughput probe (`#[ignore]`d; run with
//! `cargo test -p ptyflow --test recon_alloc -- --ignored --nocapture`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use num_complex::Complex32;
use ptyflow::optics::{ProbeParams, window_pixel_angstrom};
use ptyflow::recon::{
    EpieParams, Loss, Method, PreparedPattern, ProbeUpdate, RasterScan, ReconSetup, Reconstructor,
    ScanGeometry, WfParams,
};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns the number of allocations it made on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    COUNT.with(|c| c.get())
}

/// A scan (rotated, so positions are sub-pixel) with synthetic frames: the probe's own
/// diffraction pattern with some noise-like modulation, enough to drive every code path.
fn setup(m: usize, scan: usize) -> (Vec<Complex32>, ScanGeometry, Vec<Vec<u16>>) {
    let dx = window_pixel_angstrom(80.0, m, 1.5);
    let probe = ProbeParams::new(80.0, 20.0, 200.0).sample(m, dx).unwrap();
    let geometry = ScanGeometry::raster(
        &RasterScan {
            step_angstrom: [2.5, 2.5],
            shape: [scan, scan],
            rotation_deg: 7.0,
        },
        dx,
        m,
        1,
    )
    .unwrap();
    let frames = (0..scan * scan)
        .map(|j| {
            (0..m * m)
                .map(|i| {
                    let (y, x) = (
                        (i / m) as f64 - m as f64 / 2.0,
                        (i % m) as f64 - m as f64 / 2.0,
                    );
                    let r = (x * x + y * y).sqrt();
                    let disc = if r < 0.4 * m as f64 { 200.0 } else { 2.0 };
                    (disc * (1.0 + 0.3 * ((i * 31 + j * 17) % 7) as f64 / 7.0)) as u16
                })
                .collect()
        })
        .collect();
    (probe, geometry, frames)
}

fn methods() -> Vec<Method> {
    let mut v = vec![Method::Epie(EpieParams {
        probe_update: ProbeUpdate::AfterUpdates(0),
        ..EpieParams::default()
    })];
    for loss in Loss::ALL {
        v.push(Method::Wf(WfParams::new(loss)));
    }
    v.push(Method::Wf(WfParams {
        truncation: Some(5.0),
        tikhonov: 0.05,
        ..WfParams::new(Loss::Poisson)
    }));
    v
}

#[test]
fn update_does_not_allocate() {
    let m = 32;
    let (probe, geometry, frames) = setup(m, 4);
    for method in methods() {
        let mut r = Reconstructor::new(ReconSetup::new(method, probe.clone(), m, geometry.clone()))
            .unwrap();
        let mut pattern = r.new_pattern();
        let n = allocations(|| {
            for (i, f) in frames.iter().enumerate() {
                pattern.prepare(f).unwrap();
                r.update(i, &pattern).unwrap();
            }
            // Revisit an index (already stored) as well.
            r.update(3, &pattern).unwrap();
        });
        assert_eq!(
            n,
            0,
            "{}: {n} allocations during prepare + update",
            method.name()
        );
        assert_eq!(r.updates_done(), frames.len() as u64 + 1);
        assert!(
            r.object()
                .iter()
                .all(|v| v.re.is_finite() && v.im.is_finite())
        );
    }
}

/// `CompressedReconstructor::update` (paper 002's compressed loss) never allocates either,
/// in both value kinds.
#[test]
fn compressed_update_does_not_allocate() {
    use ptyflow::recon::compressed::{
        CompressValues, CompressedBasis, CompressedParams, CompressedReconstructor, Part,
    };
    let m = 32;
    let (probe, geometry, _) = setup(m, 4);
    let h = (m / 2) as f64;
    let parts: Vec<Part> = (0..m * m)
        .map(|i| {
            let d = ((i / m) as f64 - h).hypot((i % m) as f64 - h);
            if d <= 6.0 {
                Part::BrightField
            } else if d <= 20.0 {
                Part::DarkField
            } else {
                Part::Unmeasured
            }
        })
        .collect();
    // Single-pixel masks: orthonormal by construction (two in the disc, one outside it).
    let pixels = [m * m / 2 + m / 2, m * m / 2 + m / 2 + 1, 3 * m + m / 2];
    let mut masks = vec![0f32; 3 * m * m];
    for (k, &p) in pixels.iter().enumerate() {
        masks[k * m * m + p] = 1.0;
    }
    for values in [CompressValues::Amplitude, CompressValues::Intensity] {
        let basis = CompressedBasis {
            m,
            masks: masks.clone(),
            bright: 2,
            dark: 1,
            parts: parts.clone(),
            values,
        };
        let method = Method::Wf(WfParams::new(Loss::Amplitude));
        let engine =
            Reconstructor::new(ReconSetup::new(method, probe.clone(), m, geometry.clone()))
                .unwrap();
        let mut r =
            CompressedReconstructor::new(engine, &basis, CompressedParams::default()).unwrap();
        let stored = [30.0f32, 20.0, 10.0, 500.0, 900.0];
        let positions = geometry.positions.len();
        let n = allocations(|| {
            for i in 0..positions {
                r.update(i, &stored).unwrap();
            }
            r.update(3, &stored).unwrap();
        });
        assert_eq!(
            n, 0,
            "{values:?}: {n} allocations during compressed updates"
        );
        assert_eq!(r.engine().updates_done(), positions as u64 + 1);
        assert!(
            r.engine()
                .object()
                .iter()
                .all(|v| v.re.is_finite() && v.im.is_finite())
        );
    }
}

/// Rough one-off throughput of `update` (not a benchmark: see the criterion benches).
#[test]
#[ignore]
fn rough_updates_per_second() {
    for m in [32usize, 64] {
        let (probe, geometry, frames) = setup(m, 16);
        let prepared: Vec<PreparedPattern> = frames
            .iter()
            .map(|f| PreparedPattern::from_frame(f, m).unwrap())
            .collect();
        for method in methods() {
            let mut r =
                Reconstructor::new(ReconSetup::new(method, probe.clone(), m, geometry.clone()))
                    .unwrap();
            // Warm-up pass, then timed passes.
            for (i, p) in prepared.iter().enumerate() {
                r.update(i, p).unwrap();
            }
            let passes = 5;
            let t = std::time::Instant::now();
            for _ in 0..passes {
                for (i, p) in prepared.iter().enumerate() {
                    r.update(i, p).unwrap();
                }
            }
            let rate = (passes * prepared.len()) as f64 / t.elapsed().as_secs_f64();
            let label = match method {
                Method::Wf(WfParams {
                    truncation: Some(_),
                    ..
                }) => format!("{} truncated+tikhonov", method.name()),
                _ => method.name(),
            };
            println!("M = {m:3} {label:32} {rate:9.0} updates/s (sub-pixel positions)");
        }
    }
}
