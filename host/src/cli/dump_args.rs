//! Command-line flags that say how to read a dump, shared by `ptyflow info` and
//! `ptyflow replay` (`#[command(flatten)] dump: DumpArgs`): the job's [`DumpSource`].

use crate::job::DumpSource;
use crate::source::{Format, OpenOptions, RawDtype};

/// `--format` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FormatArg {
    /// Tell from the file: `.mib` is Merlin; `.npy` is a NumPy array; a `.raw` with an EMPAD
    /// `.xml` beside it is EMPAD; a file with a `<file>.json` sidecar (or raw layout flags) is
    /// a raw dump.
    #[default]
    Auto,
    /// Raw frames; layout from the `<file>.json` sidecar and/or the flags below.
    Raw,
    /// Quantum Detectors Merlin `.mib` (Medipix3; U08/U16/U32 and RAW/R64, 1 chip or quad).
    Mib,
    /// EMPAD `.raw` (128 × 130 float32 per frame, scan shape from the acquisition `.xml`).
    Empad,
    /// NumPy `.npy` array (numpy's np.save): 4D [scan_y, scan_x, det_y, det_x] or 3D
    /// [frames, det_y, det_x] of uint8/16/32, int32 or float32, either byte order, C or Fortran
    /// order (Fortran order is gathered pixel by pixel: slower).
    Npy,
}

/// How to read a detector dump: its format and, for raw dumps, the frame layout.
///
/// Merlin, EMPAD and `.npy` files describe themselves; raw dumps are described by a
/// `<file>.json` sidecar next to them (ptyflow's simulator writes one) or by the layout flags,
/// which override the sidecar (and, given in full, replace a `.json` that is not ptyflow's).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DumpArgs {
    /// File format of the dump.
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    pub format: FormatArg,
    /// Raw dumps: frame width in pixels (detector columns).
    #[arg(long, value_name = "PIXELS", help_heading = "Raw dump layout")]
    pub width: Option<usize>,
    /// Raw dumps: frame height in pixels (detector rows).
    #[arg(long, value_name = "PIXELS", help_heading = "Raw dump layout")]
    pub height: Option<usize>,
    /// Raw dumps: how each pixel is stored (i32 is read as float32, exact up to 16,777,216
    /// counts).
    #[arg(
        long,
        value_enum,
        value_name = "TYPE",
        help_heading = "Raw dump layout"
    )]
    pub dtype: Option<RawDtype>,
    /// Raw dumps: pixels are big-endian (most significant byte first). Default: little-endian.
    #[arg(long, help_heading = "Raw dump layout")]
    pub big_endian: bool,
    /// Raw dumps: bytes to skip at the start of the file, before the first frame.
    #[arg(long, value_name = "BYTES", help_heading = "Raw dump layout")]
    pub header_bytes: Option<u64>,
    /// Raw dumps: bytes before the pixels of every frame (a per-frame header).
    #[arg(long, value_name = "BYTES", help_heading = "Raw dump layout")]
    pub frame_header_bytes: Option<u64>,
    /// Raw dumps: bytes after the pixels of every frame (a per-frame footer).
    #[arg(long, value_name = "BYTES", help_heading = "Raw dump layout")]
    pub frame_footer_bytes: Option<u64>,
}

impl DumpArgs {
    /// The job's source: the dump at `path`, read as these flags say.
    pub fn to_source(&self, path: &std::path::Path) -> DumpSource {
        DumpSource {
            path: path.to_path_buf(),
            format: match self.format {
                FormatArg::Auto => None,
                FormatArg::Raw => Some(Format::Raw),
                FormatArg::Mib => Some(Format::Mib),
                FormatArg::Empad => Some(Format::Empad),
                FormatArg::Npy => Some(Format::Npy),
            },
            width: self.width,
            height: self.height,
            dtype: self.dtype,
            big_endian: self.big_endian.then_some(true),
            header_bytes: self.header_bytes,
            frame_header_bytes: self.frame_header_bytes,
            frame_footer_bytes: self.frame_footer_bytes,
            ..DumpSource::default()
        }
    }

    /// The [`OpenOptions`] these flags ask for.
    pub fn to_open_options(&self) -> OpenOptions {
        self.to_source(std::path::Path::new("")).open_options()
    }
}
