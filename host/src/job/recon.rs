//! The reconstruction's part of a job: the request made from the configuration (the optics
//! filled in from the dump's sidecar), the sweeps after the scan, and the outputs: the object
//! and probe, their previews, the loss plot and what the report says.

use std::path::Path;
use std::time::Instant;

use num_complex::Complex32;

use super::config::{JobConfig, ReconMethod};
use super::outputs::NamedArray;
use crate::optics::Optics;
use crate::output::{write_npy, write_png};
use crate::pipeline::recon::{ProbeSource, ReconConsumer, ReconRequest, ReconWindow};
use crate::pipeline::run::{Progress, report};
use crate::recon::{ObjectConstraint, Reconstructor};
use crate::{Error, Result};

/// The reconstruction request of `config`, or `None` without `recon`. The optics not given
/// in the configuration come from `sidecar`; what is still missing is an error naming the
/// field.
pub(super) fn request(config: &JobConfig, sidecar: Optics) -> Result<Option<ReconRequest>> {
    let Some(recon) = &config.recon else {
        return Ok(None);
    };
    let optics = config.optics.or(sidecar);
    let kv = Optics::need(optics.kv, "kv")?;
    let mrad = Optics::need(optics.mrad_per_px, "mrad_per_px")?;
    let step = Optics::need(optics.step_angstrom, "step_angstrom")?;
    let probe = match &recon.probe {
        Some(path) => ProbeSource::File(path.clone()),
        None => ProbeSource::Optics(optics.probe()?),
    };
    let options = recon.method_options();
    let wf = recon.method == ReconMethod::Wf;
    let method = options.method(wf)?;
    let schedule = options.schedule(wf)?;
    for (field, v) in [
        ("optics.kv", kv),
        ("optics.mrad_per_px", mrad),
        ("optics.step_angstrom", step),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(Error::param(field, format!("{v}: need a value > 0")));
        }
    }
    Ok(Some(ReconRequest {
        method,
        probe,
        kv,
        mrad_per_px: mrad,
        step_angstrom: step,
        scan_rotation_deg: optics.scan_rotation_deg.unwrap_or(0.0),
        window: recon.window,
        bin: recon.bin,
        transpose: recon.transpose,
        pad: recon.pad,
        sweeps: recon.sweeps,
        schedule,
        object_constraint: ObjectConstraint::from_name(&recon.object_constraint)?,
    }))
}

/// A finished reconstruction: the engine (object, probe, losses), its window and what the
/// report says of it.
#[derive(Debug)]
pub struct ReconResult {
    /// The engine after its sweeps.
    pub engine: Reconstructor,
    /// Where the window sat on the detector.
    pub window: ReconWindow,
    /// The report's `reconstruction` entry.
    pub summary: serde_json::Value,
}

impl ReconResult {
    /// `object` and `probe` as interleaved (re, im) `f32` arrays, shapes `[rows, cols, 2]`
    /// and `[M, M, 2]`.
    pub fn interleaved(&self) -> Vec<NamedArray> {
        let interleave = |z: &[Complex32]| z.iter().flat_map(|v| [v.re, v.im]).collect();
        let [rows, cols] = self.engine.object_shape();
        let m = self.engine.window();
        vec![
            NamedArray {
                name: "object".into(),
                shape: vec![rows, cols, 2],
                data: interleave(self.engine.object()),
            },
            NamedArray {
                name: "probe".into(),
                shape: vec![m, m, 2],
                data: interleave(self.engine.probe()),
            },
        ]
    }
}

/// Runs the sweeps the engine planned (the reduction is done: they use `threads` threads)
/// and sums up the reconstruction for the report.
pub(super) fn finish(
    consumer: ReconConsumer,
    request: &ReconRequest,
    threads: usize,
    progress: Option<&dyn Progress>,
) -> Result<ReconResult> {
    let window = consumer.window();
    let nonfinite = consumer.nonfinite();
    let mut recon = consumer.into_reconstructor();
    recon.set_threads(threads);
    let online_updates = recon.updates_done();
    let sweeps = recon.planned_sweeps();
    report(progress, |p| p.start("sweeps", sweeps as u64));
    let t = Instant::now();
    for k in 0..sweeps {
        recon.sweep()?;
        report(progress, |p| p.set(k as u64 + 1));
    }
    report(progress, |p| p.finish());
    let sweep_s = t.elapsed().as_secs_f64();
    let [rows, cols] = recon.object_shape();
    let m = recon.window();
    let (r0, r1, c0, c1) = lit_region(&recon);
    let sweep_updates = recon.updates_done() - online_updates;
    let mut summary = serde_json::json!({
        "method": recon.method().name(),
        "parameters": recon.method(),
        "kv": request.kv,
        "mrad_per_px": request.mrad_per_px,
        "step_angstrom": request.step_angstrom,
        "scan_rotation_deg": request.scan_rotation_deg,
        "window": window,
        "window_px": m,
        "preview_region_px": [[r0, r1], [c0, c1]],
        "object_shape": [rows, cols],
        "updates_online": online_updates,
        "updates_sweeps": sweep_updates,
        "sweeps": sweeps,
        "schedule": recon.schedule(),
        "object_constraint": recon.object_constraint(),
        "illumination": recon.illumination(),
        "sweep_updates_per_s": if sweep_s > 0.0 { sweep_updates as f64 / sweep_s } else { 0.0 },
        "skipped": recon.skipped(),
        "probe_updates": recon.probe_updates(),
        "sweep_threads": recon.threads(),
        "auto_step_last_pass": recon.chosen_step(sweeps),
        "loss_history": recon.history(),
    });
    if nonfinite > 0 {
        summary["skipped_nonfinite"] = nonfinite.into();
    }
    Ok(ReconResult {
        engine: recon,
        window,
        summary,
    })
}

/// Writes `object.npy`, `probe.npy` (complex64), the phase and amplitude previews of the
/// well-lit region and, when a pass scored a pattern, `loss.png`.
pub(super) fn write(out: &Path, result: &ReconResult, written: &mut Vec<String>) -> Result<()> {
    let recon = &result.engine;
    let [rows, cols] = recon.object_shape();
    let m = recon.window();
    write_npy(&out.join("object.npy"), &[rows, cols], recon.object())?;
    write_npy(&out.join("probe.npy"), &[m, m], recon.probe())?;
    // Previews show the well-lit part of the object; the .npy keeps all of it.
    let (r0, r1, c0, c1) = lit_region(recon);
    let crop = |f: fn(&Complex32) -> f32| -> Vec<f32> {
        (r0..r1)
            .flat_map(|r| recon.object()[r * cols + c0..r * cols + c1].iter().map(f))
            .collect()
    };
    write_png(
        &out.join("object_phase.png"),
        c1 - c0,
        r1 - r0,
        &crop(|z| z.arg()),
    )?;
    write_png(
        &out.join("object_amplitude.png"),
        c1 - c0,
        r1 - r0,
        &crop(|z| z.norm()),
    )?;
    written.extend(
        [
            "object.npy",
            "probe.npy",
            "object_phase.png",
            "object_amplitude.png",
        ]
        .map(String::from),
    );
    if recon.history().iter().any(|h| h.evaluated > 0) {
        loss_plot(recon).write(&out.join("loss.png"))?;
        written.push("loss.png".into());
    }
    Ok(())
}

/// The method's own loss per pass (pass 0 = online; ePIE's is the amplitude loss), divided by
/// the counts of the scored patterns, as a plot. Written only when a pass scored a pattern.
pub fn loss_plot(recon: &Reconstructor) -> crate::plot::Plot {
    use crate::plot::{BLUE, Plot, Series};
    let points = recon
        .history()
        .iter()
        .filter(|h| h.evaluated > 0 && h.counts > 0.0)
        .map(|h| (h.pass as f64, h.loss / h.counts))
        .collect();
    let loss = match recon.method() {
        crate::recon::Method::Epie(_) => "AMPLITUDE",
        crate::recon::Method::Wf(w) => w.loss.name(),
    };
    Plot {
        title: format!(
            "{}: {} LOSS PER PASS (0 = ONLINE)",
            recon.method().name().to_uppercase(),
            loss.to_uppercase()
        ),
        x_label: "PASS".into(),
        y_label: "LOSS / COUNTS".into(),
        series: vec![Series {
            points,
            rgb: BLUE,
            dashed: false,
        }],
        log_y: false,
        y_range: None,
    }
}

/// The bounding box `(row0, row1, col0, col1)` of the object pixels whose summed probe
/// intensity over all scan positions is at least half its maximum: where the object is
/// well determined. Rounded positions are good enough for a preview.
pub fn lit_region(recon: &Reconstructor) -> (usize, usize, usize, usize) {
    let [rows, cols] = recon.object_shape();
    let m = recon.window();
    let intensity: Vec<f32> = recon.probe().iter().map(|p| p.norm_sqr()).collect();
    let corners = recon.geometry().positions.iter().map(|p| {
        [
            (p[0].round() as usize).saturating_sub(m / 2),
            (p[1].round() as usize).saturating_sub(m / 2),
        ]
    });
    let lit = crate::recon::schedule::illumination_map(&intensity, m, [rows, cols], corners);
    let max = lit.iter().copied().fold(0.0f32, f32::max);
    let (mut r0, mut r1, mut c0, mut c1) = (rows, 0, cols, 0);
    for (i, &v) in lit.iter().enumerate() {
        if v >= 0.5 * max && max > 0.0 {
            let (r, c) = (i / cols, i % cols);
            (r0, r1, c0, c1) = (r0.min(r), r1.max(r + 1), c0.min(c), c1.max(c + 1));
        }
    }
    if r0 >= r1 || c0 >= c1 {
        (0, rows, 0, cols)
    } else {
        (r0, r1, c0, c1)
    }
}
