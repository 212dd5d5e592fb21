//! `ptyflow simulate`: a 4D-STEM ptychography dataset with its ground truth (see [`crate::sim`]).

use std::path::PathBuf;

use crate::sim::{self, Dose, DumpFormat, ObjectKind, Preset, SimParams};
use crate::{Error, Result};

/// Flags of `ptyflow simulate`.
///
/// Starts from a preset and overrides any value given on the command line. Writes into `--out`:
/// the dump (`scan.raw` + `scan.raw.json`, or `scan.mib` + `scan.mib.json`), and the ground
/// truth: `object.npy` (complex transmission function at the reconstruction pixel
/// dx = λ/(M·θ_px)), `probe.npy` (M×M, Σ|P|² = 1), `positions.npy` ((y, x) in Å per pattern)
/// and `meta.json` (every parameter).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory (created if needed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Starting point: mos2-defocus = paper 000 (80 kV, α 24 mrad, 800 Å underfocus, 2.3 Å
    /// step, 40x40 scan, 96 px detector at 0.8 mrad/px); mos2-focus = paper 001 (300 kV, α 18
    /// mrad, in focus, 0.273 Å step, 64x64 scan, 64 px at 1 mrad/px); mos2-focus-defocus = the
    /// same at 250 Å underfocus.
    #[arg(long, value_enum, default_value = "mos2-defocus")]
    pub preset: Preset,
    /// Values that override the preset's.
    #[command(flatten)]
    pub set: Box<Overrides>,
    /// Dump format.
    #[arg(long, value_enum, default_value = "raw")]
    pub format: DumpFormat,
    /// Also write previews: object_phase.png and mean_pattern.png (log scale).
    #[arg(long)]
    pub png: bool,
}

/// Values that override the preset's (boxed in [`Args`]: they are many).
#[derive(Debug, Default, clap::Args)]
pub struct Overrides {
    /// Scan shape ROWSxCOLS (rows are the slow axis), e.g. 20x20.
    #[arg(long, value_name = "ROWSxCOLS")]
    pub scan: Option<String>,
    /// Scan step in Å.
    #[arg(long, value_name = "Å", allow_negative_numbers = true)]
    pub step: Option<f64>,
    /// Scan rotation in degrees (counter-clockwise; 0 = scan rows along the detector's y axis).
    #[arg(long, value_name = "DEG", allow_negative_numbers = true)]
    pub scan_rotation: Option<f64>,
    /// Detector side M in pixels (frames are M×M; even).
    #[arg(long, value_name = "PIXELS")]
    pub detector: Option<usize>,
    /// Angle subtended by one detector pixel, in mrad (sets the camera length).
    #[arg(long, value_name = "MRAD", allow_negative_numbers = true)]
    pub mrad_per_px: Option<f64>,
    /// Accelerating voltage in kV.
    #[arg(long, value_name = "KV", allow_negative_numbers = true)]
    pub kv: Option<f64>,
    /// Convergence semi-angle α in mrad.
    #[arg(long, value_name = "MRAD", allow_negative_numbers = true)]
    pub alpha: Option<f64>,
    /// Defocus in Å; positive = underfocus (specimen above the probe's crossover).
    #[arg(long, value_name = "Å", allow_negative_numbers = true)]
    pub defocus: Option<f64>,
    /// Spherical aberration Cs in mm.
    #[arg(long, value_name = "MM", allow_negative_numbers = true)]
    pub cs: Option<f64>,
    /// The phase plate in the probe-forming aperture (paper 003's three probes): `defocus`
    /// (none), `fzp:F` (binary 0/π Fresnel zone plate of focal length F Å: zone n where
    /// n ≤ λF|k|² < n+1; with --defocus 0 the specimen sits F from its ±1st-order foci) or
    /// `random:SEED[:CELL[:RANGE]]` (random phase plate: square cells of CELL mrad, default
    /// α/10, each with a phase uniform in [0, RANGE) rad, default 2π, drawn from SEED; the
    /// same SEED gives the same plate on any grid). Written to the sidecar, so `ptyflow replay`
    /// reconstructs with the same probe without flags.
    #[arg(long, value_name = "KIND")]
    pub probe_kind: Option<crate::optics::ProbeKind>,
    /// Frames recorded at each scan position (paper 000: 8): K independent Poisson draws of
    /// the position's pattern, each with 1/K of the dose (--dose and --dose-per-pattern are
    /// per position, all K frames together), written one after the other (ROWS × COLS × K
    /// frames); the sidecar says K, so `ptyflow replay` sums them (or the first --use N).
    #[arg(long, value_name = "K")]
    pub frames_per_position: Option<usize>,
    /// Dose as electrons per diffraction pattern.
    #[arg(
        long,
        value_name = "ELECTRONS",
        conflicts_with = "dose",
        allow_negative_numbers = true
    )]
    pub dose_per_pattern: Option<f64>,
    /// Dose in e⁻/Å² (= electrons per pattern / step²).
    #[arg(long, value_name = "E_PER_A2", allow_negative_numbers = true)]
    pub dose: Option<f64>,
    /// Seed of the counting noise (same seed → same bytes).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Specimen: MoS2 monolayer, or a smooth random weak-phase object.
    #[arg(long, value_enum)]
    pub object: Option<ObjectKind>,
    /// Weak absorption as a fraction of the phase (t = exp(iσV − η σV)); 0 = pure phase.
    #[arg(long, value_name = "ETA", allow_negative_numbers = true)]
    pub absorption: Option<f64>,
    /// Real-space oversampling of the simulation grid (its angular range is this many times
    /// the detector's; the pattern is cropped to the detector).
    #[arg(long, value_name = "FACTOR")]
    pub oversample: Option<usize>,
}

impl clap::ValueEnum for ObjectKind {
    fn value_variants<'a>() -> &'a [Self] {
        &[ObjectKind::Mos2, ObjectKind::Random]
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

/// Parses `ROWSxCOLS`.
pub fn parse_scan(text: &str) -> Result<[usize; 2]> {
    let bad = || {
        Error::param(
            "--scan",
            format!("`{text}`, expected ROWSxCOLS with positive integers, e.g. 20x20"),
        )
    };
    let (r, c) = text.split_once(['x', 'X', '×']).ok_or_else(bad)?;
    let r: usize = r.trim().parse().map_err(|_| bad())?;
    let c: usize = c.trim().parse().map_err(|_| bad())?;
    if r == 0 || c == 0 {
        return Err(bad());
    }
    Ok([r, c])
}

/// The simulation parameters the flags ask for.
pub fn params(args: &Args) -> Result<SimParams> {
    let mut p = SimParams::preset(args.preset);
    let o = &args.set;
    if let Some(scan) = &o.scan {
        p.scan = parse_scan(scan)?;
    }
    let set = |dst: &mut f64, v: Option<f64>| {
        if let Some(v) = v {
            *dst = v;
        }
    };
    set(&mut p.step_angstrom, o.step);
    set(&mut p.scan_rotation_deg, o.scan_rotation);
    set(&mut p.mrad_per_px, o.mrad_per_px);
    set(&mut p.probe.kv, o.kv);
    set(&mut p.probe.alpha_mrad, o.alpha);
    set(&mut p.probe.defocus_angstrom, o.defocus);
    set(&mut p.probe.cs_mm, o.cs);
    if let Some(kind) = o.probe_kind {
        p.probe.kind = kind;
    }
    if let Some(k) = o.frames_per_position {
        p.frames_per_position = k;
    }
    set(&mut p.absorption, o.absorption);
    if let Some(m) = o.detector {
        p.detector_px = m;
    }
    if let Some(s) = o.oversample {
        p.oversample = s;
    }
    if let Some(n) = o.dose_per_pattern {
        p.dose = Dose::PerPattern(n);
    }
    if let Some(d) = o.dose {
        p.dose = Dose::PerArea(d);
    }
    if let Some(seed) = o.seed {
        p.seed = seed;
    }
    if let Some(o) = o.object {
        p.object = o;
    }
    p.validate()?;
    Ok(p)
}

/// Runs `ptyflow simulate`.
pub fn run(args: Args) -> Result<()> {
    let p = params(&args)?;
    for w in p.warnings() {
        eprintln!("ptyflow: warning: {w}");
    }
    let start = std::time::Instant::now();
    let bar = if p.frames_recorded() >= 400 {
        indicatif::ProgressBar::new(p.frames() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("simulating {bar:40} {pos}/{len} patterns {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let ds = sim::simulate_with_progress(&p, &mut |done| bar.set_position(done as u64));
    bar.finish_and_clear();
    let ds = ds?;
    let written = sim::write_dataset(&ds, &args.out, args.format)?;
    if args.png {
        sim::write_previews(&ds, &args.out)?;
    }
    println!(
        "{}: {} patterns × {} frames ({}x{} scan, step {} Å) of {}x{} px at {} mrad/px, {} kV, \
         α {} mrad, defocus {} Å, probe {}",
        written.dump.display(),
        p.frames(),
        p.frames_per_position,
        p.scan[0],
        p.scan[1],
        p.step_angstrom,
        p.detector_px,
        p.detector_px,
        p.mrad_per_px,
        p.probe.kv,
        p.probe.alpha_mrad,
        p.probe.defocus_angstrom,
        p.probe.kind
    );
    println!(
        "dose {:.4e} e-/pattern = {:.4e} e-/Å² (per pattern / step²); mean {:.1} counts per \
         pattern on the detector; reconstruction pixel {:.4} Å, bright-field radius {:.1} px; \
         {:.2} s",
        p.electrons_per_pattern(),
        p.dose_e_per_a2(),
        ds.mean_counts_per_pattern(),
        p.pixel_angstrom(),
        p.bright_field_radius_px(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        args: Args,
    }

    fn parse(extra: &[&str]) -> Args {
        let mut v = vec!["simulate", "--out", "/tmp/x"];
        v.extend_from_slice(extra);
        Wrap::try_parse_from(v).unwrap().args
    }

    #[test]
    fn scan_shape_parses() {
        assert_eq!(parse_scan("20x16").unwrap(), [20, 16]);
        assert_eq!(parse_scan("3X4").unwrap(), [3, 4]);
        for bad in ["20", "0x4", "ax4", "4x-1"] {
            let e = parse_scan(bad).unwrap_err().to_string();
            assert!(e.contains("--scan"), "{e}");
        }
    }

    #[test]
    fn flags_override_the_preset() {
        let a = parse(&[
            "--preset",
            "mos2-focus-defocus",
            "--scan",
            "5x6",
            "--defocus",
            "-100",
            "--dose",
            "1000",
            "--object",
            "random",
        ]);
        let p = params(&a).unwrap();
        assert_eq!(p.probe.kv, 300.0);
        assert_eq!(p.probe.defocus_angstrom, -100.0);
        assert_eq!(p.scan, [5, 6]);
        assert_eq!(p.dose, Dose::PerArea(1000.0));
        assert_eq!(p.object, ObjectKind::Random);
        assert_eq!(
            params(&parse(&["--preset", "mos2-focus-defocus"]))
                .unwrap()
                .probe
                .defocus_angstrom,
            250.0
        );
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (flags, name) in [
            (&["--detector", "7"][..], "--detector"),
            (&["--mrad-per-px", "0"][..], "--mrad-per-px"),
            (&["--step", "-1"][..], "--step"),
            (&["--kv", "0"][..], "--kv"),
            (&["--dose-per-pattern", "0"][..], "--dose-per-pattern"),
            (&["--dose", "nan"][..], "--dose"),
            (&["--oversample", "0"][..], "--oversample"),
            (&["--alpha", "60"][..], "--alpha"),
            (&["--absorption", "2"][..], "--absorption"),
            (&["--scan", "0x3"][..], "--scan"),
        ] {
            // As main_with_args prints it: configuration fields renamed to flags.
            let e = params(&parse(flags))
                .unwrap_err()
                .renamed(crate::cli::flag_of)
                .to_string();
            assert!(e.contains(name), "{flags:?}: {e}");
        }
        // Both dose flags at once is a usage error.
        assert!(
            Wrap::try_parse_from(["s", "--out", "x", "--dose", "1", "--dose-per-pattern", "1"])
                .is_err()
        );
    }
}
