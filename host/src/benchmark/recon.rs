//! W4 and W5: updates per second of the reconstruction (ePIE; Poisson Wirtinger flow) at
//! window sizes 32 and 64 (128 in the criterion benches).
//!
//! The data is simulated once (paper 001's in-focus MoS₂ geometry scaled to the window: the
//! bright-field disc spans half the window), prepared once, and fed through one online pass
//! (untimed). Positions are sub-pixel, so every update includes the probe's Fourier shift.
//!
//! - **W4 ePIE, W5 Poisson-WF** (the targets): revisit sweeps with the probe held, as ePIE's
//!   online pass and every Wirtinger-flow pass run it. A sweep cuts the object into stripes
//!   whose windows do not overlap and runs them on [`Context::threads`] threads (see
//!   [`Reconstructor::sweep`]); with one thread this is the online stream's per-update cost.
//! - **W4 ePIE+probe**: ePIE's default revisit sweeps, which update the probe at every
//!   pattern, the most work per update. Every update changes the one shared probe, so this is
//!   one ordered stream on one thread.
//!
//! The online pass inside `replay` is one stream in arrival order (consecutive positions
//! overlap); the second core runs the reduction beside it.

use num_complex::Complex32;
use std::time::Instant;

use super::{Context, Measurement, Workload};
use crate::recon::{
    EpieParams, Loss, Method, PreparedPattern, ProbeUpdate, ReconSetup, Reconstructor,
    ScanGeometry, WfParams,
};
use crate::sim::{Dose, Preset, SimParams, simulate};
use crate::{Error, Result};

/// The engine and the prepared patterns of one benchmark case.
#[derive(Debug)]
pub struct ReconCase {
    /// The engine, built and ready.
    pub recon: Reconstructor,
    /// The prepared patterns, in scan order.
    pub patterns: Vec<PreparedPattern>,
}

/// Simulates a `scan × scan` dataset on an `m × m` detector and builds the engine for `method`
/// (keeping the patterns for sweeps when `keep_patterns`).
pub fn case(m: usize, scan: usize, method: Method, keep_patterns: bool) -> Result<ReconCase> {
    let mut p = SimParams::preset(Preset::Mos2Focus);
    p.detector_px = m;
    // Disc radius m/4 pixels: α / θ_px = m / 4.
    p.mrad_per_px = p.probe.alpha_mrad / (m as f64 / 4.0);
    p.scan = [scan, scan];
    // A step of ~a fifth of the window keeps neighbouring windows overlapping.
    let dx = crate::optics::window_pixel_angstrom(p.probe.kv, m, p.mrad_per_px);
    p.step_angstrom = dx * m as f64 / 5.3;
    p.oversample = 2;
    p.dose = Dose::PerPattern(1e5);
    let (patterns, geometry, probe) = simulated(&p)?;
    let mut setup = ReconSetup::new(method, probe, m, geometry);
    setup.keep_patterns = keep_patterns;
    Ok(ReconCase {
        recon: Reconstructor::new(setup)?,
        patterns,
    })
}

/// Simulates `p` (frames `detector_px` square, the window) and returns its prepared
/// patterns, the raster's geometry on the window's object grid and the probe.
fn simulated(p: &SimParams) -> Result<(Vec<PreparedPattern>, ScanGeometry, Vec<Complex32>)> {
    let m = p.detector_px;
    let ds = simulate(p)?;
    let patterns = ds
        .frames
        .chunks_exact(m * m)
        .map(|f| PreparedPattern::from_frame(f, m))
        .collect::<Result<Vec<_>>>()?;
    let dx = crate::optics::window_pixel_angstrom(p.probe.kv, m, p.mrad_per_px);
    let raster = crate::recon::RasterScan {
        step_angstrom: [p.step_angstrom; 2],
        shape: p.scan,
        rotation_deg: 0.0,
    };
    let geometry = ScanGeometry::raster(&raster, dx, m, 2)?;
    let probe = p.probe.sample(m, dx)?;
    Ok((patterns, geometry, probe))
}

/// ePIE with the probe held (the online pass's default).
pub fn epie() -> Method {
    Method::Epie(EpieParams {
        probe_update: ProbeUpdate::Never,
        ..EpieParams::default()
    })
}

/// ePIE with the probe updated from the first pattern (the most work per update).
pub fn epie_with_probe() -> Method {
    Method::Epie(EpieParams {
        probe_update: ProbeUpdate::AfterUpdates(0),
        ..EpieParams::default()
    })
}

/// Wirtinger flow with the Poisson loss (paper 001), default step.
pub fn poisson_wf() -> Method {
    Method::Wf(WfParams::new(Loss::Poisson))
}

fn no_skips(recon: &Reconstructor) -> Result<()> {
    if recon.skipped() > 0 {
        return Err(Error::param(
            "bench",
            "the benchmark patterns were skipped (no counts)",
        ));
    }
    Ok(())
}

/// Timed sweeps over a `scan × scan` case on `threads` threads, after an untimed online pass.
/// With `probe_refined`, every timed sweep must have updated the probe.
fn timed_sweeps(
    ctx: &Context,
    m: usize,
    scan: usize,
    method: Method,
    threads: usize,
    probe_refined: bool,
) -> Result<Measurement> {
    let mut c = case(m, scan, method, true)?;
    let recon = &mut c.recon;
    recon.set_threads(threads);
    for (i, p) in c.patterns.iter().enumerate() {
        recon.update(i, p)?;
    }
    Measurement::repeat(ctx.seconds, || {
        let before = recon.probe_updates();
        let report = recon.sweep()?;
        no_skips(recon)?;
        if probe_refined && recon.probe_updates() - before != report.patterns {
            return Err(Error::param("bench", "the sweep did not update the probe"));
        }
        Ok(report.patterns)
    })
}

/// Sweeps with the probe held on `ctx.threads` threads.
fn sweeps(ctx: &Context, m: usize, method: Method) -> Result<Measurement> {
    timed_sweeps(ctx, m, ctx.pick(40, 24), method, ctx.threads, false)
}

/// Sweeps of ePIE refining the probe at every pattern (its default from the first sweep on),
/// one ordered stream, one thread.
fn probe_sweeps(ctx: &Context, m: usize) -> Result<Measurement> {
    let method = Method::Epie(EpieParams::default());
    timed_sweeps(ctx, m, ctx.pick(10, 6), method, 1, true)
}

fn w4_64(ctx: &Context) -> Result<Measurement> {
    sweeps(ctx, 64, epie())
}
fn w4_32(ctx: &Context) -> Result<Measurement> {
    sweeps(ctx, 32, epie())
}
fn w5_64(ctx: &Context) -> Result<Measurement> {
    sweeps(ctx, 64, poisson_wf())
}
fn w5_32(ctx: &Context) -> Result<Measurement> {
    sweeps(ctx, 32, poisson_wf())
}
fn w4p_64(ctx: &Context) -> Result<Measurement> {
    probe_sweeps(ctx, 64)
}
fn w4p_32(ctx: &Context) -> Result<Measurement> {
    probe_sweeps(ctx, 32)
}

/// W6: the whole reconstruction job of issue 11 in paper 000's set-up: 40 × 40 patterns of
/// 128 × 128 (MoS₂, 80 kV, α 24 mrad, 800 Å underfocus, 2.3 Å step, 0.8 mrad/px, 10³ e⁻/Å²),
/// Poisson-WF with the defaults `ptyflow replay --recon wf` uses (automatic steps and sweeps,
/// `|O| ≤ 1`): the online pass plus the sweeps, timed from the first update to the last,
/// sweeps on `ctx.threads` threads. Frames/s = patterns / job time; the target, 1600
/// patterns in 5 s, is 320. Quick mode: 20 × 20 patterns.
fn w6_job(ctx: &Context) -> Result<Measurement> {
    use crate::recon::{ObjectConstraint, Schedule, schedule::default_sweeps};
    let scan = ctx.pick(40, 20);
    let m = 128;
    let mut p = SimParams::preset(Preset::Mos2Defocus);
    p.detector_px = m;
    p.scan = [scan, scan];
    p.oversample = 2;
    p.dose = Dose::PerArea(1e3);
    let (patterns, geometry, probe) = simulated(&p)?;
    let positions = geometry.positions.len();
    let sweeps = default_sweeps(positions, m);
    let build = || -> Result<Reconstructor> {
        let mut setup = ReconSetup::new(poisson_wf(), probe.clone(), m, geometry.clone());
        setup.schedule = Schedule::default();
        setup.planned_sweeps = sweeps;
        setup.object_constraint = ObjectConstraint::Passive;
        let mut r = Reconstructor::new(setup)?;
        r.set_threads(ctx.threads);
        Ok(r)
    };
    let mut passes = Vec::new();
    for _ in 0..ctx.pick(2, 1) {
        let mut recon = build()?;
        let t = Instant::now();
        for (i, pat) in patterns.iter().enumerate() {
            recon.update(i, pat)?;
        }
        for _ in 0..sweeps {
            recon.sweep()?;
        }
        let seconds = t.elapsed().as_secs_f64();
        no_skips(&recon)?;
        passes.push(Measurement {
            frames: positions as u64,
            seconds,
            cpu_seconds: 0.0,
        });
    }
    Measurement::median_of(passes).ok_or_else(|| Error::param("bench", "no W6 pass ran"))
}

/// W4 and W5 at 64 × 64 and 32 × 32 (frames/s here = updates per second), and W6, the whole
/// reconstruction job at 128 × 128 (frames/s = patterns per second of job time).
pub fn workloads() -> Vec<Workload> {
    let w = |name, description, m, target_fps, run| Workload {
        name,
        description,
        width: m,
        height: m,
        pixel: "f32",
        pixel_bytes: 4,
        target_fps,
        run,
    };
    const HELD: &str = "ePIE update, probe held, sub-pixel shift; striped sweeps on all threads";
    const WF: &str = "Wirtinger-flow update, Poisson loss; striped sweeps on all threads";
    const PROBE: &str = "ePIE sweep updating object and probe, one ordered stream, 1 thread";
    vec![
        w("W4 ePIE 64", HELD, 64, 50e3, w4_64),
        w("W4 ePIE 32", HELD, 32, 150e3, w4_32),
        w("W5 Poisson-WF 64", WF, 64, 50e3, w5_64),
        w("W5 Poisson-WF 32", WF, 32, 150e3, w5_32),
        w("W4 ePIE+probe 64", PROBE, 64, 50e3, w4p_64),
        w("W4 ePIE+probe 32", PROBE, 32, 150e3, w4p_32),
        w(
            "W6 job 128",
            "Poisson-WF job, defaults: online pass + automatic sweeps (1600 in ≤ 5 s)",
            128,
            320.0,
            w6_job,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_build_and_update() {
        for method in [epie(), epie_with_probe(), poisson_wf()] {
            let mut c = case(32, 3, method, false).unwrap();
            for (i, p) in c.patterns.iter().enumerate() {
                c.recon.update(i, p).unwrap();
            }
            assert_eq!(c.recon.updates_done(), 9);
            assert_eq!(c.recon.skipped(), 0);
        }
    }
}
