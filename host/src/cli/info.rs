//! `ptyflow info`: describe a dump and total its counts.

use std::path::PathBuf;

use super::dump_args::DumpArgs;
use crate::source::{Dump, DumpInfo, Frame};
use crate::{Error, Result};

/// Describe a detector dump: format, frame size, pixel type, number of frames, and the sum,
/// minimum and maximum of all pixels of all frames.
///
/// Reading every frame also checks every Merlin frame header, so `info` is a quick way to
/// validate a file before a long replay.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The dump: a Merlin `.mib`, an EMPAD `.raw` (with its `.xml` beside it, or give the
    /// `.xml`), a NumPy `.npy` (4D [scan_y, scan_x, det_y, det_x] or 3D [frames, det_y,
    /// det_x], as np.save writes it), or a raw dump described by a `<file>.json` sidecar or
    /// the raw layout flags (with --width, --height and --dtype, a `.json` that is not
    /// ptyflow's sidecar is ignored, with a note).
    #[arg(value_name = "DUMP")]
    pub dump: PathBuf,
    /// Print one JSON object with the keys format, width, height, dtype (the pixel type frames
    /// are delivered as: u8, u16, u32 or f32), frames, sum, min, max. `sum` is an exact
    /// integer for integer pixels and a float for f32 pixels.
    #[arg(long)]
    pub json: bool,
    /// How to read the dump.
    #[command(flatten)]
    pub layout: DumpArgs,
}

/// Sum, minimum and maximum over all pixels of all frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Totals {
    /// Integer pixels: exact sum.
    Int {
        /// Sum of all pixels.
        sum: u128,
        /// Smallest pixel.
        min: u32,
        /// Largest pixel.
        max: u32,
    },
    /// Float pixels: sum in f64; NaN pixels are left out of min and max.
    Float {
        /// Sum of all pixels (f64 accumulation).
        sum: f64,
        /// Smallest pixel (`+inf` if there is none that is not NaN).
        min: f32,
        /// Largest pixel (`-inf` if there is none that is not NaN).
        max: f32,
    },
}

fn int_frame<T: Copy + Into<u32>>(px: &[T], sum: &mut u128, min: &mut u32, max: &mut u32) {
    let mut s = 0u64;
    for &v in px {
        let v: u32 = v.into();
        s += u64::from(v);
        *min = (*min).min(v);
        *max = (*max).max(v);
    }
    *sum += u128::from(s);
}

/// Reads every frame of `dump` and totals its pixels; an error if the file shrank meanwhile.
pub fn totals(dump: &Dump) -> Result<Totals> {
    let totals = read_totals(dump);
    // Frames that read as zeros because the file shrank are that error, not data.
    dump.check_frames(0..dump.info().frames)?;
    totals
}

fn read_totals(dump: &Dump) -> Result<Totals> {
    let info = dump.info();
    let mut reader = dump.reader();
    if info.pixel.is_integer() {
        let (mut sum, mut min, mut max) = (0u128, u32::MAX, 0u32);
        for i in 0..info.frames {
            match reader.frame(i)? {
                Frame::U8(px) => int_frame(px, &mut sum, &mut min, &mut max),
                Frame::U16(px) => int_frame(px, &mut sum, &mut min, &mut max),
                Frame::U32(px) => int_frame(px, &mut sum, &mut min, &mut max),
                Frame::F32(_) => return Err(kind_mismatch(info)),
            }
        }
        Ok(Totals::Int { sum, min, max })
    } else {
        let (mut sum, mut min, mut max) = (0f64, f32::INFINITY, f32::NEG_INFINITY);
        for i in 0..info.frames {
            let Frame::F32(px) = reader.frame(i)? else {
                return Err(kind_mismatch(info));
            };
            let mut s = 0f64;
            for &v in px {
                s += f64::from(v);
                min = min.min(v);
                max = max.max(v);
            }
            sum += s;
        }
        Ok(Totals::Float { sum, min, max })
    }
}

fn kind_mismatch(info: &DumpInfo) -> Error {
    Error::file(
        &info.path,
        format!(
            "internal: frames are not of the announced pixel type {}",
            info.pixel.name()
        ),
    )
}

/// Runs `ptyflow info`.
pub fn run(args: Args) -> Result<()> {
    let dump = Dump::open(&args.dump, &args.layout.to_open_options())?;
    let info = dump.info();
    let totals = totals(&dump)?;
    if args.json {
        let (sum, min, max) = match totals {
            Totals::Int { sum, min, max } => {
                let sum = u64::try_from(sum).map_or_else(
                    |_| serde_json::Value::from(sum as f64),
                    serde_json::Value::from,
                );
                (sum, min.into(), max.into())
            }
            Totals::Float { sum, min, max } => {
                let finite = |v: f32| {
                    if v.is_finite() {
                        v.into()
                    } else {
                        serde_json::Value::Null
                    }
                };
                (sum.into(), finite(min), finite(max))
            }
        };
        let out = serde_json::json!({
            "format": info.format.name(),
            "width": info.width,
            "height": info.height,
            "dtype": info.pixel.name(),
            "frames": info.frames,
            "sum": sum,
            "min": min,
            "max": max,
        });
        println!("{out}");
        for note in &info.notes {
            eprintln!("ptyflow: note: {note}");
        }
        return Ok(());
    }
    let pixel = info.pixel;
    println!("file        {}", info.path.display());
    println!("format      {}", info.format.name());
    println!("width       {} pixels", info.width);
    println!("height      {} pixels", info.height);
    println!(
        "dtype       {} (stored as {})",
        pixel.name(),
        info.stored_dtype
    );
    match info.declared_frames {
        Some(d) => println!("frames      {} (metadata declares {d})", info.frames),
        None => println!("frames      {}", info.frames),
    }
    if let Some((r, c)) = info.scan {
        println!("scan        {r} rows × {c} columns");
    }
    println!(
        "layout      {} bytes per frame ({} header + {} pixels + {} footer) after a {}-byte file \
         header; {}",
        info.stride,
        info.frame_header_bytes,
        info.frame_bytes,
        info.frame_footer_bytes,
        info.header_bytes,
        if info.zero_copy {
            "read in place (zero copy)"
        } else {
            "decoded while reading"
        }
    );
    match totals {
        Totals::Int { sum, min, max } => {
            println!("sum         {sum}");
            println!("min         {min}");
            println!("max         {max}");
        }
        Totals::Float { sum, min, max } => {
            println!("sum         {sum}");
            println!("min         {min}");
            println!("max         {max}");
        }
    }
    for note in &info.notes {
        println!("note        {note}");
    }
    Ok(())
}
