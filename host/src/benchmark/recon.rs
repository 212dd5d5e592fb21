//! W4 and W5: updates per second of the online reconstruction (ePIE; Poisson Wirtinger flow)
//! at window sizes 32 and 64 (128 in the criterion benches), one thread.
//!
//! The data is simulated once (paper 001's in-focus MoS₂ geometry scaled to the window: the
//! bright-field disc spans half the window), prepared once, and then every timed pass runs
//! one [`Reconstructor::update`] per pattern, exactly what `ptyflow replay --recon` does per
//! arriving frame. Positions are sub-pixel, so every update includes the probe's Fourier shift.
//!
//! The reconstruction is one ordered stream: consecutive scan positions overlap, so updates
//! depend on each other. The second core runs the reduction workers beside it in `replay`;
//! running non-overlapping positions concurrently is not implemented (see the issue notes).

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

/// Simulates a `scan × scan` dataset on an `m × m` detector and builds the engine for `method`.
pub fn case(m: usize, scan: usize, method: Method) -> Result<ReconCase> {
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
    let ds = simulate(&p)?;
    let patterns = ds
        .frames
        .chunks_exact(m * m)
        .map(|f| PreparedPattern::from_frame(f, m))
        .collect::<Result<Vec<_>>>()?;
    let raster = crate::recon::RasterScan {
        step_angstrom: [p.step_angstrom; 2],
        shape: p.scan,
        rotation_deg: 0.0,
    };
    let geometry = ScanGeometry::raster(&raster, dx, m, 2)?;
    let probe = p.probe.sample(m, dx)?;
    let mut setup = ReconSetup::new(method, probe, m, geometry);
    setup.keep_patterns = false;
    Ok(ReconCase {
        recon: Reconstructor::new(setup)?,
        patterns,
    })
}

/// ePIE with the probe updated from the first pattern (the most work per update).
pub fn epie() -> Method {
    Method::Epie(EpieParams {
        probe_update: ProbeUpdate::AfterUpdates(0),
        ..EpieParams::default()
    })
}

/// Wirtinger flow with the Poisson loss (paper 001), default step.
pub fn poisson_wf() -> Method {
    Method::Wf(WfParams::new(Loss::Poisson))
}

fn measure(ctx: &Context, m: usize, method: Method) -> Result<Measurement> {
    let mut c = case(m, ctx.pick(10, 6), method)?;
    let (recon, patterns) = (&mut c.recon, &c.patterns);
    Measurement::repeat(ctx.seconds, || {
        for (i, p) in patterns.iter().enumerate() {
            recon.update(i, p)?;
        }
        if recon.skipped() > 0 {
            return Err(Error::param(
                "bench",
                "the benchmark patterns were skipped (no counts)",
            ));
        }
        Ok(patterns.len() as u64)
    })
}

fn w4_64(ctx: &Context) -> Result<Measurement> {
    measure(ctx, 64, epie())
}
fn w4_32(ctx: &Context) -> Result<Measurement> {
    measure(ctx, 32, epie())
}
fn w5_64(ctx: &Context) -> Result<Measurement> {
    measure(ctx, 64, poisson_wf())
}
fn w5_32(ctx: &Context) -> Result<Measurement> {
    measure(ctx, 32, poisson_wf())
}

/// W4 and W5 at 64 × 64 and 32 × 32 (frames/s here = updates per second, one thread).
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
    vec![
        w(
            "W4 ePIE 64",
            "ePIE update (object + probe, sub-pixel shift), 1 thread",
            64,
            50e3,
            w4_64,
        ),
        w(
            "W4 ePIE 32",
            "ePIE update (object + probe, sub-pixel shift), 1 thread",
            32,
            150e3,
            w4_32,
        ),
        w(
            "W5 Poisson-WF 64",
            "Wirtinger-flow update, Poisson loss, 1 thread",
            64,
            50e3,
            w5_64,
        ),
        w(
            "W5 Poisson-WF 32",
            "Wirtinger-flow update, Poisson loss, 1 thread",
            32,
            150e3,
            w5_32,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_build_and_update() {
        for method in [epie(), poisson_wf()] {
            let mut c = case(32, 3, method).unwrap();
            for (i, p) in c.patterns.iter().enumerate() {
                c.recon.update(i, p).unwrap();
            }
            assert_eq!(c.recon.updates_done(), 9);
            assert_eq!(c.recon.skipped(), 0);
        }
    }
}
