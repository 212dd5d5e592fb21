//! `ptyflow compare RECON.npy TRUTH.npy`: registers a reconstructed complex object onto a
//! ground truth and prints NRMSE, correlation, phase correlation, phase SNR and the FRC
//! resolution (see [`crate::metrics`]).

use std::path::{Path, PathBuf};

use num_complex::Complex32;

use crate::metrics::{CompareOptions, Comparison, compare};
use crate::output::read_npy;
use crate::{Error, Result};

/// Flags of `ptyflow compare`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The reconstructed object: a 2-D complex64 .npy (e.g. object.npy of a replay).
    pub recon: PathBuf,
    /// The ground truth: a 2-D complex64 .npy with the same pixel size.
    pub truth: PathBuf,
    /// Leave this many pixels at every border out of the metrics (the registration shift is
    /// added on top). Use it to drop the poorly illuminated rim of the scan.
    #[arg(long, default_value_t = 0)]
    pub crop_px: usize,
    /// Do not register (shift) the reconstruction onto the truth.
    #[arg(long)]
    pub no_register: bool,
    /// Remove only the global phase, not a linear phase ramp.
    #[arg(long)]
    pub keep_ramp: bool,
    /// Print the result as JSON (the full FRC curve included).
    #[arg(long)]
    pub json: bool,
    /// Also draw the FRC curve and its ½-bit threshold into this PNG.
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
}

/// Reads a 2-D complex64 array.
fn read_object(path: &Path) -> Result<(Vec<Complex32>, [usize; 2])> {
    let (shape, data) = read_npy::<Complex32>(path)?;
    match shape[..] {
        [rows, cols] if rows > 0 && cols > 0 => Ok((data, [rows, cols])),
        _ => Err(Error::file(
            path,
            format!("array of shape {shape:?}; expected a 2-D complex object"),
        )),
    }
}

/// Runs the comparison of two files and returns the metrics.
pub fn compare_files(args: &Args) -> Result<Comparison> {
    let (recon, rs) = read_object(&args.recon)?;
    let (truth, ts) = read_object(&args.truth)?;
    let options = CompareOptions {
        crop_px: args.crop_px,
        register: !args.no_register,
        remove_ramp: !args.keep_ramp,
    };
    compare(&recon, rs, &truth, ts, &options)
}

/// Runs `ptyflow compare`.
pub fn run(args: Args) -> Result<()> {
    let c = compare_files(&args)?;
    if let Some(path) = &args.plot {
        frc_plot(&c).write(path)?;
    }
    if args.json {
        let text = serde_json::to_string_pretty(&c)
            .map_err(|e| Error::param("--json", format!("JSON encoding failed: {e}")))?;
        println!("{text}");
    } else {
        println!(
            "compared region   {} × {} px (border {} px)",
            c.shape[0], c.shape[1], c.crop_px
        );
        println!(
            "shift             dy = {:.2} px, dx = {:.2} px",
            c.shift_px[0], c.shift_px[1]
        );
        println!(
            "phase removed     {:.4} rad + ramp ({:.5}, {:.5}) rad/px",
            c.phase_plane.offset, c.phase_plane.ramp[0], c.phase_plane.ramp[1]
        );
        println!("NRMSE             {:.4}", c.nrmse);
        println!("correlation       {:.4}", c.correlation);
        println!("phase correlation {:.4}", c.phase_correlation);
        println!("phase SNR         {:.3}", c.phase_snr);
        match c.frc.resolution_px() {
            Some(r) => println!("FRC ½-bit         {:.2} px ({:.4} cycles/px)", r, 1.0 / r),
            None => println!("FRC ½-bit         above threshold up to Nyquist"),
        }
    }
    Ok(())
}

/// The FRC of a comparison against spatial frequency (cycles per pixel), with the ½-bit
/// threshold dashed.
pub fn frc_plot(c: &Comparison) -> crate::plot::Plot {
    use crate::plot::{BLUE, Plot, RED, Series};
    let curve = |v: &[f64]| {
        c.frc
            .frequency
            .iter()
            .copied()
            .zip(v.iter().copied())
            .collect()
    };
    let title = match c.frc.resolution_px() {
        Some(r) => format!(
            "FRC: PHASE CORR. {:.3}, 1/2-BIT AT {:.2} PX",
            c.phase_correlation, r
        ),
        None => format!(
            "FRC: PHASE CORR. {:.3}, ABOVE 1/2-BIT TO NYQUIST",
            c.phase_correlation
        ),
    };
    Plot {
        title,
        x_label: "SPATIAL FREQUENCY (CYCLES/PX)".into(),
        y_label: "FRC".into(),
        series: vec![
            Series {
                points: curve(&c.frc.frc),
                rgb: BLUE,
                dashed: false,
            },
            Series {
                points: curve(&c.frc.threshold),
                rgb: RED,
                dashed: true,
            },
        ],
        log_y: false,
        y_range: Some((-0.1, 1.05)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_reads_npy_files_and_reports_identity() {
        let dir = tempfile::tempdir().unwrap();
        let shape = [24usize, 20usize];
        let data: Vec<Complex32> = (0..shape[0] * shape[1])
            .map(|i| Complex32::from_polar(1.0, 0.3 * ((i * 7919) % 13) as f32 / 13.0))
            .collect();
        let a = dir.path().join("a.npy");
        crate::output::write_npy(&a, &shape, &data).unwrap();
        let args = Args {
            recon: a.clone(),
            truth: a.clone(),
            crop_px: 1,
            no_register: false,
            keep_ramp: false,
            json: true,
            plot: Some(dir.path().join("frc.png")),
        };
        let c = compare_files(&args).unwrap();
        assert!(c.nrmse < 1e-6 && (c.correlation - 1.0).abs() < 1e-6);
        run(args).unwrap();
        let png = std::fs::read(dir.path().join("frc.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        // A 1-D array is refused with the file named.
        let b = dir.path().join("b.npy");
        crate::output::write_npy(&b, &[4], &data[..4]).unwrap();
        let err = compare_files(&Args {
            recon: b,
            truth: a,
            crop_px: 0,
            no_register: false,
            keep_ramp: false,
            json: false,
            plot: None,
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("b.npy") && err.contains("2-D"), "{err}");
    }
}
