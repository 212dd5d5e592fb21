//! The arrays a job produces and how they are written: the reduction's scan-shaped images
//! and mean/variance patterns ([`reduction_outputs`]), the reconstruction's object and probe
//! with their previews, each `.npy` (numpy reads them) and each 2D one also a `.png`.

use std::path::Path;

use ptyflow_core::Scan;

use crate::output::{write_npy, write_png};
use crate::pipeline::reduce::{ReducePlan, Reducer};
use crate::{Error, Result};

/// Places per-frame values (`frames × channels`) at their scan positions: a
/// `rows × cols × channels` array, NaN where no frame arrived.
pub fn scan_shaped(scan: &Scan, values: &[f32], channels: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; scan.positions() * channels];
    for (index, v) in values.chunks_exact(channels.max(1)).enumerate() {
        if let Some((row, col)) = scan.position(index) {
            let at = (row * scan.cols() + col) * channels;
            out[at..at + channels].copy_from_slice(v);
        }
    }
    out
}

/// One output array: its name (the `.npy` file stem, the C API's result name), a C-order
/// shape and `f32` values.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedArray {
    /// Name, e.g. `dose`, `virtual_bf`, `virtual_com_x`.
    pub name: String,
    /// C-order shape.
    pub shape: Vec<usize>,
    /// Values.
    pub data: Vec<f32>,
}

/// The reduction's outputs, as `ptyflow replay` writes them and the C API returns them:
/// `mean`/`var` (`[height, width]` of the stage frame), `dose` and each detector placed at
/// its scan position (`[rows, cols]`, `[rows, cols, channels]` plus a `_sum` over the channels,
/// `com` as `_x` and `_y`). Only the first `read` frames count (NaN at the other positions).
pub fn reduction_outputs(
    plan: &ReducePlan,
    reducer: &Reducer,
    scan: &Scan,
    read: usize,
) -> Result<Vec<NamedArray>> {
    let (rows, cols) = (scan.rows(), scan.cols());
    let (h, w) = (plan.stage.height(), plan.stage.width());
    let mut out = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, data: Vec<f32>| {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        out.push(NamedArray { name, shape, data });
    };
    let stats = reducer.pattern_stats()?;
    add(
        "mean".into(),
        vec![h, w],
        stats.mean.iter().map(|&v| v as f32).collect(),
    );
    add(
        "var".into(),
        vec![h, w],
        stats.var.iter().map(|&v| v as f32).collect(),
    );
    // Frames are handed out in order: the first `read` were processed, the rest stay NaN.
    let dose: Vec<f32> = reducer.dose()[..read].iter().map(|&v| v as f32).collect();
    add("dose".into(), vec![rows, cols], scan_shaped(scan, &dose, 1));
    for slot in &plan.detectors {
        let values = reducer.detector_values(slot);
        let shaped = scan_shaped(scan, &values[..read * slot.len], slot.len);
        let name = format!("virtual_{}", slot.name);
        if slot.kind == "com" {
            for (axis, c) in ["x", "y"].iter().zip(0..) {
                let one = shaped.iter().skip(c).step_by(2).copied().collect();
                add(format!("{name}_{axis}"), vec![rows, cols], one);
            }
        } else if slot.len == 1 {
            add(name, vec![rows, cols], shaped);
        } else {
            let total = shaped
                .chunks_exact(slot.len)
                .map(|c| c.iter().sum())
                .collect();
            add(name.clone(), vec![rows, cols, slot.len], shaped);
            add(format!("{name}_sum"), vec![rows, cols], total);
        }
    }
    Ok(out)
}

/// Writes each output as `.npy`, and each 2D one also as a `.png` preview. A file that
/// cannot be written (the folder vanished, a disk that is full, a name taken by a folder) does
/// not stop the others: every file that can be written is, `written` lists them, and the
/// error names each file that could not be ([`write_failures`]).
pub fn write_arrays(out: &Path, arrays: &[NamedArray], written: &mut Vec<String>) -> Result<()> {
    let failed = write_each(out, arrays, written);
    write_failures(out, failed)
}

/// As [`write_arrays`], returning the error of each file that could not be written.
pub(super) fn write_each(
    out: &Path,
    arrays: &[NamedArray],
    written: &mut Vec<String>,
) -> Vec<Error> {
    let mut failed = Vec::new();
    let mut record = |name: String, result: Result<()>| match result {
        Ok(()) => written.push(name),
        Err(e) => failed.push(e),
    };
    for array in arrays {
        let npy = format!("{}.npy", array.name);
        record(
            npy.clone(),
            write_npy(&out.join(&npy), &array.shape, &array.data),
        );
        if let [h, w] = array.shape[..] {
            let png = format!("{}.png", array.name);
            record(png.clone(), write_png(&out.join(&png), w, h, &array.data));
        }
    }
    failed
}

/// The errors of the output files of `out` that could not be written, as one error: the
/// error itself when there is one (it names the file), else an [`Error::File`] on `out`
/// listing them all. `Ok` when there is none.
pub(super) fn write_failures(out: &Path, mut failed: Vec<Error>) -> Result<()> {
    match failed.len() {
        0 => Ok(()),
        1 => Err(failed.remove(0)),
        n => Err(Error::file(
            out,
            format!(
                "{n} output files could not be written (the others were): {}",
                failed
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )),
    }
}
