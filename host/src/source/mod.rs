//! Frame sources: memory-mapped readers for recorded detector dumps.
//!
//! [`Dump::open`] maps a file, works out its format and layout, and checks that the file size
//! is a whole number of frames. [`Dump::reader`] gives a [`FrameReader`] that hands out frames
//! by index without allocating: straight from the map (zero copy) when the stored pixels are
//! already the working type in native byte order and aligned, otherwise decoded into a buffer
//! the reader owns and reuses. A `Dump` is `Send + Sync`; give each thread its own reader.
//!
//! ```no_run
//! use ptyflow::source::{Dump, Frame, OpenOptions};
//! let dump = Dump::open("scan.mib", &OpenOptions::default())?;
//! let mut reader = dump.reader();
//! for i in 0..dump.info().frames {
//!     match reader.frame(i)? {
//!         Frame::U16(px) => { /* px.len() == width * height, row-major, file order */ }
//!         other => { let _ = other.len(); }
//!     }
//! }
//! # Ok::<(), ptyflow::Error>(())
//! ```
//!
//! # Formats
//! - **raw** ([`RawSidecar`]): `header_bytes`, then frames of `frame_header_bytes`,
//!   `width × height` pixels of `u8|u16|u32|i32|f32` (either byte order), `frame_footer_bytes`.
//!   `i32` is delivered as `f32`, exact for |v| ≤ 2^24.
//! - **mib**: Quantum Detectors Merlin, see the `mib` module notes: `U08/U16/U32` → `u8/u16/u32`;
//!   RAW `R64` 1-bit and 6-bit → `u8`, 12-bit → `u16`; quad RAW reassembled to 512 × 512.
//! - **empad**: 128 × 130 `f32` frames, delivered as 128 × 128 (the last two rows dropped).
//! - **npy**: NumPy `.npy` (versions 1–3), 4D `[scan_y, scan_x, det_y, det_x]` or 3D
//!   `[frames, det_y, det_x]` of `u1 u2 u4 i4 f4`, either byte order; C order maps like raw,
//!   Fortran order is gathered pixel by pixel (see the `npy` module).
//!
//! Frames keep the file's layout: row 0 is the first row stored, no flips.
//!
//! # Format detection (`format: None`)
//! 1. a `.mib` extension → Merlin; a `.npy` → NumPy;
//!    (`.h5`/`.hdf5`/`.emd` → an error saying how to convert, unless raw layout options are
//!    given: HDF5 is not read yet);
//! 2. a `.xml` → EMPAD, reading the `.raw` it names; a `.raw` with an EMPAD `.xml` beside it
//!    (same stem, or the only `.xml` in the folder that names it) → EMPAD;
//! 3. a sidecar `<file>.json`, or raw layout options → raw;
//! 4. otherwise an error that names the file and the options needed.
//!
//! # Header checks (Merlin)
//! Frame 0's header is parsed in full and the last frame's header is checked when the file is
//! opened. Every frame's header is checked again when that frame is read (magic, sequence
//! number = frame 0's + index, header size, chip count, width, height, pixel type): a parse of
//! ~35 ASCII bytes that sit beside the pixels, with no allocation. So opening a 100 GB file
//! touches two pages, not every header, and a bad frame is reported, with its index and byte
//! offset, when it is reached.
//!
//! # Files that change while mapped
//! Detector dumps are written once, then replayed; the map assumes nobody rewrites them in
//! place (frames would show the new bytes). A dump that is **truncated** while it is read is
//! an error, never a signal and never frames of zeros: on Linux a `SIGBUS` guard turns a read
//! past the new end into zeros and records it, and [`Dump::check_frames`], which the pipeline
//! calls for every batch, reports the first frame that could not be read
//! ([`Error::Changed`], naming the file, the frame and its byte
//! offset). The `guard` module's docs say how, why, what it costs and its limits.

pub(crate) mod empad;
mod guard;
pub mod live;
pub(crate) mod mib;
pub(crate) mod npy;
mod raw;
pub mod synthetic;

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::{Error, Result};

pub use raw::{ByteOrder, RawDtype, RawSidecar};

/// The file formats ptyflow reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Raw frames described by a sidecar or by options.
    Raw,
    /// Quantum Detectors Merlin `.mib`.
    Mib,
    /// EMPAD `.raw` with its acquisition `.xml`.
    Empad,
    /// NumPy `.npy` array, 4D `[scan_y, scan_x, det_y, det_x]` or 3D `[frames, det_y, det_x]`.
    Npy,
}

impl Format {
    /// The name used on the command line and in JSON output: `raw`, `mib`, `empad`, `npy`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Mib => "mib",
            Format::Empad => "empad",
            Format::Npy => "npy",
        }
    }
}

/// The pixel types frames are delivered as (the core kernels' pixel types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelKind {
    /// `u8`.
    U8,
    /// `u16`.
    U16,
    /// `u32`.
    U32,
    /// `f32`.
    F32,
}

impl PixelKind {
    /// `u8`, `u16`, `u32` or `f32`.
    pub fn name(self) -> &'static str {
        match self {
            PixelKind::U8 => "u8",
            PixelKind::U16 => "u16",
            PixelKind::U32 => "u32",
            PixelKind::F32 => "f32",
        }
    }
    /// Bytes per pixel.
    pub fn bytes(self) -> usize {
        match self {
            PixelKind::U8 => 1,
            PixelKind::U16 => 2,
            PixelKind::U32 | PixelKind::F32 => 4,
        }
    }
    /// Whether the pixels are integers (exact sums).
    pub fn is_integer(self) -> bool {
        self != PixelKind::F32
    }
}

/// Raw-layout options; each one given overrides the sidecar's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawOverrides {
    /// Frame width in pixels.
    pub width: Option<usize>,
    /// Frame height in pixels.
    pub height: Option<usize>,
    /// Stored pixel type.
    pub dtype: Option<RawDtype>,
    /// `Some(true)`: big-endian; `Some(false)`: little-endian.
    pub big_endian: Option<bool>,
    /// Bytes before the first frame.
    pub header_bytes: Option<u64>,
    /// Bytes before the pixels of every frame.
    pub frame_header_bytes: Option<u64>,
    /// Bytes after the pixels of every frame.
    pub frame_footer_bytes: Option<u64>,
}

impl RawOverrides {
    /// Whether any option is given.
    pub fn any(&self) -> bool {
        *self != RawOverrides::default()
    }
    /// The command-line flag of the first option given (for error messages).
    fn first_flag(&self) -> Option<&'static str> {
        [
            (self.width.is_some(), "--width"),
            (self.height.is_some(), "--height"),
            (self.dtype.is_some(), "--dtype"),
            (self.big_endian.is_some(), "--big-endian"),
            (self.header_bytes.is_some(), "--header-bytes"),
            (self.frame_header_bytes.is_some(), "--frame-header-bytes"),
            (self.frame_footer_bytes.is_some(), "--frame-footer-bytes"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

/// How to open a dump. The default detects the format and takes raw layouts from the sidecar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// The format, or `None` to detect it (see the module docs).
    pub format: Option<Format>,
    /// Raw-layout options (raw dumps only).
    pub raw: RawOverrides,
}

/// What a dump holds and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpInfo {
    /// The data file.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// Delivered frame width in pixels (columns).
    pub width: usize,
    /// Delivered frame height in pixels (rows).
    pub height: usize,
    /// How pixels are stored, in the format's own words (e.g. `u16, big-endian`,
    /// `R64 (4 chips, layout 2x2, counter depth 1)`).
    pub stored_dtype: String,
    /// The pixel type frames are delivered as.
    pub pixel: PixelKind,
    /// Number of frames in the file.
    pub frames: usize,
    /// Scan shape `(rows, cols)` if the file or its metadata says (a hint; frame index =
    /// row · cols + col for a raster scan).
    pub scan: Option<(usize, usize)>,
    /// Frame count declared by metadata (Merlin `.hdr`, raw sidecar), if any.
    pub declared_frames: Option<u64>,
    /// File size in bytes.
    pub file_bytes: u64,
    /// Bytes before the first frame.
    pub header_bytes: u64,
    /// Bytes before the pixels of every frame (Merlin: the frame header).
    pub frame_header_bytes: u64,
    /// Stored pixel bytes of every frame.
    pub frame_bytes: u64,
    /// Bytes after the pixels of every frame (EMPAD: the two metadata rows).
    pub frame_footer_bytes: u64,
    /// Bytes from one frame to the next.
    pub stride: u64,
    /// Whether every frame is handed out straight from the map, without decoding.
    pub zero_copy: bool,
    /// Remarks worth showing a user (metadata that disagrees, ignored fields …).
    pub notes: Vec<String>,
}

impl DumpInfo {
    /// Pixels per delivered frame (`width × height`).
    pub fn pixels(&self) -> usize {
        self.width * self.height
    }
    /// Byte offset in the file of the stored pixels of frame `index` (not meaningful for a
    /// Fortran-order `.npy`, whose frames are not contiguous).
    pub fn frame_offset(&self, index: usize) -> u64 {
        self.header_bytes + index as u64 * self.stride + self.frame_header_bytes
    }
}

/// One frame, borrowed from the map or from the reader's buffer: `width × height` pixels,
/// row-major in file order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Frame<'a> {
    /// 8-bit counts.
    U8(&'a [u8]),
    /// 16-bit counts.
    U16(&'a [u16]),
    /// 32-bit counts.
    U32(&'a [u32]),
    /// Floating-point values.
    F32(&'a [f32]),
}

impl Frame<'_> {
    /// The pixel type.
    pub fn kind(&self) -> PixelKind {
        match self {
            Frame::U8(_) => PixelKind::U8,
            Frame::U16(_) => PixelKind::U16,
            Frame::U32(_) => PixelKind::U32,
            Frame::F32(_) => PixelKind::F32,
        }
    }
    /// Number of pixels.
    pub fn len(&self) -> usize {
        match self {
            Frame::U8(p) => p.len(),
            Frame::U16(p) => p.len(),
            Frame::U32(p) => p.len(),
            Frame::F32(p) => p.len(),
        }
    }
    /// The pixels as bytes, native byte order (what [`crate::job::PushSession::push`] takes).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Frame::U8(p) => p,
            Frame::U16(p) => bytemuck::cast_slice(p),
            Frame::U32(p) => bytemuck::cast_slice(p),
            Frame::F32(p) => bytemuck::cast_slice(p),
        }
    }
    /// Whether the frame has no pixels (never, for frames of a [`Dump`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How stored bytes become a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decode {
    U8,
    U16 { big: bool },
    U32 { big: bool },
    F32 { big: bool },
    I32ToF32 { big: bool },
    MibR64 { depth: u8, quad: bool },
}

/// A frame count declared by metadata, and whether disagreeing with it is an error.
#[derive(Debug, Clone)]
pub(crate) struct Declared {
    frames: u64,
    source: PathBuf,
    strict: bool,
}

/// What a format module works out before the frame count is known.
#[derive(Debug)]
pub(crate) struct Plan {
    path: PathBuf,
    format: Format,
    width: usize,
    height: usize,
    stored_dtype: String,
    pixel: PixelKind,
    header_bytes: u64,
    frame_header_bytes: u64,
    frame_bytes: u64,
    frame_footer_bytes: u64,
    decode: Decode,
    scan: Option<(usize, usize)>,
    declared: Option<Declared>,
    notes: Vec<String>,
    mib: Option<mib::HeaderCheck>,
}

impl Plan {
    /// The per-frame Merlin header check (the fuzz targets call it on frame 0's header).
    pub(crate) fn header_check(&self) -> Option<&mib::HeaderCheck> {
        self.mib.as_ref()
    }
    /// The frame count the metadata declares (0 if none; the fuzz targets use it).
    pub(crate) fn declared_frames(&self) -> u64 {
        self.declared.as_ref().map_or(0, |d| d.frames)
    }
    /// Pixels per frame.
    pub(crate) fn pixels(&self) -> usize {
        self.width * self.height
    }
    /// Bytes before the first frame.
    pub(crate) fn header_bytes(&self) -> u64 {
        self.header_bytes
    }
    /// Stored pixel bytes of every frame.
    pub(crate) fn frame_bytes(&self) -> u64 {
        self.frame_bytes
    }
}

/// A memory-mapped detector dump. `Send + Sync`: share it between threads, each with its own
/// [`FrameReader`].
#[derive(Debug)]
pub struct Dump {
    info: DumpInfo,
    decode: Decode,
    mib: Option<mib::HeaderCheck>,
    /// How to gather the frames of a Fortran-order `.npy` (pixels not contiguous).
    strided: Option<npy::Strided>,
    /// The open file, to see its size now ([`Dump::check_frames`]).
    file: File,
    /// Declared before `map`: fields drop in order, so the map is unregistered from the
    /// fault handler before it is unmapped.
    guard: guard::Guard,
    map: Mmap,
    /// A generated source ([`Dump::synthetic`]): frame `i` is frame `i % ring` of the map.
    /// 0 for a file.
    ring: usize,
}

/// A dump that shrank (or lost pages) while it was read: the first frame that could not be
/// read. Carried by [`Error::Changed`] and by the pipeline's counters
/// ([`crate::pipeline::Counters::source_changed`]), which write it into `report.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceChanged {
    /// The data file.
    pub path: PathBuf,
    /// The first frame that could not be read (0-based, file order).
    pub frame: usize,
    /// Byte offset in the file where that frame starts.
    pub offset: u64,
    /// File size when it was opened.
    pub opened_bytes: u64,
    /// File size when the change was seen.
    pub file_bytes: u64,
    /// Byte offset of the lowest page that vanished under the map while it was read, if the
    /// fault guard saw one.
    pub fault_offset: Option<u64>,
    /// Frames at or after `frame` that the pipeline had already processed when it saw the
    /// change (read while the file was shrinking); they are in the pattern statistics
    /// (`mean`, `var`), with the pixels past the new end read as 0. Set by the pipeline.
    pub processed_after: u64,
}

impl std::fmt::Display for SourceChanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: the file changed while it was read: frame {} (at byte {}) and the frames \
             after it could not be read; the file had {} bytes when it was opened and has {} now",
            self.path.display(),
            self.frame,
            self.offset,
            self.opened_bytes,
            self.file_bytes
        )?;
        if let Some(at) = self.fault_offset {
            write!(f, " (the page at byte {at} vanished while mapped)")?;
        }
        if self.processed_after > 0 {
            write!(
                f,
                "; {} frames at or after it were being read as it shrank and are in the mean \
                 and variance with their missing pixels read as 0",
                self.processed_after
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for SourceChanged {}

const NATIVE_BIG: bool = cfg!(target_endian = "big");

fn has_ext(p: &Path, ext: &str) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Picks the format of `path` (see the module docs) and, for an EMPAD `.xml`, the `.raw` it
/// names.
fn detect(path: &Path, opts: &OpenOptions) -> Result<(Format, PathBuf)> {
    if let Some(f) = opts.format {
        if f == Format::Empad && has_ext(path, "xml") {
            return Ok((f, empad::raw_for_xml(path)?));
        }
        return Ok((f, path.to_owned()));
    }
    if has_ext(path, "mib") {
        return Ok((Format::Mib, path.to_owned()));
    }
    if has_ext(path, "npy") {
        return Ok((Format::Npy, path.to_owned()));
    }
    if ["h5", "hdf5", "emd"].iter().any(|e| has_ext(path, e)) && !opts.raw.any() {
        return Err(Error::file(
            path,
            "HDF5/EMD files are not read by ptyflow yet. Save the 4D dataset as .npy, which is \
             read in place: python -c \"import h5py, numpy; \
             numpy.save('scan.npy', h5py.File('FILE')['DATASET'])\" (for py4DSTEM files the \
             dataset is '<root>/<datacube>/data', or in older ones \
             '4DSTEM_experiment/data/datacubes/<name>/data')",
        ));
    }
    if has_ext(path, "xml") {
        return Ok((Format::Empad, empad::raw_for_xml(path)?));
    }
    if has_ext(path, "raw") && empad::find_xml(path).is_some() {
        return Ok((Format::Empad, path.to_owned()));
    }
    if RawSidecar::path_for(path).is_file() || opts.raw.any() {
        return Ok((Format::Raw, path.to_owned()));
    }
    Err(Error::file(
        path,
        format!(
            "cannot tell the format: not a `.mib` or `.npy`, no EMPAD `.xml` beside it, and no sidecar {}. \
             Give --format mib, --format empad or --format npy, or describe a raw dump with --format raw \
             --width W --height H --dtype u8|u16|u32|i32|f32 (plus --header-bytes, \
             --frame-header-bytes, --frame-footer-bytes, --big-endian if needed)",
            RawSidecar::path_for(path).display()
        ),
    ))
}

impl Dump {
    /// Opens and maps `path`, detects or applies its format, and checks its size (and, for
    /// Merlin files, the first and last frame headers).
    pub fn open(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<Dump> {
        let given = path.as_ref();
        let (format, path) = detect(given, opts)?;
        if format != Format::Raw {
            if let Some(flag) = opts.raw.first_flag() {
                return Err(Error::param(
                    flag,
                    format!(
                        "describes raw dumps only, but {} is read as {} (use --format raw to \
                         read it as raw frames)",
                        path.display(),
                        format.name()
                    ),
                ));
            }
        }
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            return Err(Error::file(&path, "is a folder, expected a dump file"));
        }
        let size = meta.len();
        if size == 0 {
            return Err(Error::file(
                &path,
                "the file is empty (0 bytes); a dump holds at least one frame",
            ));
        }
        // SAFETY: `Mmap::map` is unsafe because the mapped bytes can change if the file is
        // modified or truncated while mapped. The map is read-only; if the file is modified,
        // frames may show the new bytes (any bit pattern is a valid u8/u16/u32/f32). If it is
        // truncated, a read past the new end faults; the `guard` module (registered in
        // `from_plan`) maps zeros there instead and `check_frames` reports the frames lost.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        #[cfg(unix)]
        {
            // Replay reads front to back: ask for aggressive read-ahead. Only a hint.
            let _ = map.advise(memmap2::Advice::Sequential);
        }
        // Guarded from here on: a read of a page that vanishes sees zeros, not SIGBUS.
        let guard = guard::Guard::register(&map);
        let (plan, xml, strided) = match format {
            Format::Raw => (raw::plan(&path, &opts.raw)?, None, None),
            Format::Mib => (mib::plan(&path, &map)?, None, None),
            Format::Empad => {
                let (plan, xml) = empad::plan(&path)?;
                (plan, xml, None)
            }
            Format::Npy => {
                let (plan, strided) = npy::plan(&path, &map)?;
                (plan, None, strided)
            }
        };
        #[cfg(unix)]
        if strided.is_some() {
            // A Fortran-order frame gathers pixels from all over the file.
            let _ = map.advise(memmap2::Advice::Normal);
        }
        let mut dump = Self::from_plan(plan, size, file, guard, map)?;
        dump.strided = strided;
        if strided.is_some() {
            dump.info.zero_copy = false;
        }
        if format == Format::Empad {
            let (scan, note) = empad::resolve_scan(&path, xml.as_ref(), dump.info.frames);
            dump.info.scan = scan;
            dump.info.notes.extend(note);
        }
        if let Some(check) = &dump.mib {
            let last = dump.info.frames - 1;
            let header = check.check(
                &dump.info.path,
                &dump.map,
                last,
                dump.info.header_bytes + last as u64 * dump.info.stride,
            );
            // A header that reads as zeros because the file just shrank is that, not a bad
            // header.
            dump.check_frames(last..last + 1)?;
            header?;
        }
        Ok(dump)
    }

    /// Opens a raw dump that is still being written, to be read as its frames land
    /// (`ptyflow replay --follow`). `frames` is how many the finished dump will hold (from the
    /// scan); `None`: the sidecar's `frames`, else its scan shape. The file may hold fewer
    /// frames now, or none; a partly written last frame is not one of them.
    ///
    /// The map covers the finished length from the start: a shared file map past the end of
    /// the file becomes readable page by page as the file grows (Linux reads the file's size
    /// at every fault), so nothing is re-mapped. A frame must only be read once
    /// [`Dump::landed_frames`] counts it: a read past the current end would hit the SIGBUS
    /// guard (zeros, and [`Dump::check_frames`] reporting the dump as changed). Raw dumps
    /// only: other formats need their first frame to work out the layout.
    pub fn open_growing(
        path: impl AsRef<Path>,
        opts: &OpenOptions,
        frames: Option<usize>,
    ) -> Result<Dump> {
        let (format, path) = detect(path.as_ref(), opts)?;
        if format != Format::Raw {
            return Err(Error::param(
                "source.dump.follow",
                format!(
                    "following a dump as it is written reads raw dumps only; {} is {}",
                    path.display(),
                    format.name()
                ),
            ));
        }
        let plan = raw::plan(&path, &opts.raw)?;
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            return Err(Error::file(&path, "is a folder, expected a dump file"));
        }
        let expected = frames
            .or(plan.declared.as_ref().map(|d| d.frames as usize))
            .or(plan.scan.map(|(r, c)| r.saturating_mul(c)))
            .ok_or_else(|| {
                Error::param(
                    "scan.shape",
                    format!(
                        "{}: following a dump needs the number of frames it will hold: give                          `scan.shape` ROWSxCOLS (or `frames` or `scan` in its sidecar)",
                        path.display()
                    ),
                )
            })?;
        let stride = plan
            .frame_header_bytes
            .checked_add(plan.frame_bytes)
            .and_then(|n| n.checked_add(plan.frame_footer_bytes))
            .unwrap_or(u64::MAX);
        let full = (expected as u64)
            .checked_mul(stride)
            .and_then(|b| b.checked_add(plan.header_bytes))
            .filter(|&b| b > 0 && usize::try_from(b).is_ok())
            .ok_or_else(|| {
                Error::param(
                    "scan.shape",
                    format!(
                        "{}: {expected} frames of {stride} bytes do not fit in the address                          space (or are none)",
                        path.display()
                    ),
                )
            })?;
        // SAFETY: as in `open`; in addition the map reaches past the file's current end. Bytes
        // there are only read after `landed_frames` saw the file grow over them (the pipeline
        // waits for that); a read that comes too early, or after a truncation, faults into
        // the guard, which maps zeros and records it for `check_frames`.
        let map = unsafe { memmap2::MmapOptions::new().len(full as usize).map(&file) }
            .map_err(|e| Error::io(&path, e))?;
        let guard = guard::Guard::register(&map);
        let declared = plan.declared.clone();
        let mut plan = plan;
        // The finished dump's size: the frame count to check is the scan's, not today's.
        plan.declared = None;
        let mut dump = Self::from_plan(plan, full, file, guard, map)?;
        dump.info.file_bytes = meta.len();
        dump.info.declared_frames = declared.map(|d| d.frames);
        Ok(dump)
    }

    /// Frames the file holds whole now (at most [`DumpInfo::frames`]): for a dump still being
    /// written ([`Dump::open_growing`]), the frames that may be read. One `fstat`.
    pub fn landed_frames(&self) -> Result<usize> {
        let info = &self.info;
        if self.ring != 0 {
            return Ok(info.frames);
        }
        let now = self.file_bytes_now()?;
        let whole = now.saturating_sub(info.header_bytes) / info.stride;
        Ok(usize::try_from(whole).map_or(info.frames, |w| w.min(info.frames)))
    }

    /// The file's size now, in bytes.
    pub fn file_bytes_now(&self) -> Result<u64> {
        Ok(self
            .file
            .metadata()
            .map_err(|e| Error::io(&self.info.path, e))?
            .len())
    }

    fn from_plan(p: Plan, size: u64, file: File, guard: guard::Guard, map: Mmap) -> Result<Dump> {
        // The byte counts come from a sidecar or a header: their sum may not fit.
        let stride = p
            .frame_header_bytes
            .checked_add(p.frame_bytes)
            .and_then(|n| n.checked_add(p.frame_footer_bytes))
            .ok_or_else(|| {
                Error::file(
                    &p.path,
                    format!(
                        "frames of {} header + {} pixel + {} footer bytes overflow 64 bits",
                        p.frame_header_bytes, p.frame_bytes, p.frame_footer_bytes
                    ),
                )
            })?;
        if p.header_bytes > size {
            return Err(Error::file(
                &p.path,
                format!(
                    "the file has {size} bytes, fewer than its {}-byte header",
                    p.header_bytes
                ),
            ));
        }
        let body = size - p.header_bytes;
        let frames = body / stride;
        let rem = body % stride;
        let geometry = format!("{} × {} pixels of {}", p.width, p.height, p.stored_dtype);
        if rem != 0 {
            return Err(Error::file(
                &p.path,
                format!(
                    "file size {size} bytes is not a whole number of frames: after the \
                     {}-byte file header, frames of {stride} bytes ({} header + {} pixel + {} \
                     footer bytes; {geometry}) leave {rem} bytes over. The last frame is \
                     truncated, or the geometry is wrong",
                    p.header_bytes, p.frame_header_bytes, p.frame_bytes, p.frame_footer_bytes
                ),
            ));
        }
        if frames == 0 {
            return Err(Error::file(
                &p.path,
                format!(
                    "file size {size} bytes holds no frame (file header {} bytes, frame stride \
                     {stride} bytes)",
                    p.header_bytes
                ),
            ));
        }
        let frames = usize::try_from(frames)
            .map_err(|_| Error::file(&p.path, format!("{frames} frames do not fit in memory")))?;
        let mut notes = p.notes;
        if let Some(d) = &p.declared {
            if d.frames != frames as u64 {
                let msg = format!(
                    "{} declares {} frames, the file holds {frames} ({geometry}, {stride} bytes \
                     per frame)",
                    d.source.display(),
                    d.frames
                );
                if d.strict {
                    return Err(Error::file(&p.path, msg));
                }
                notes.push(msg);
            }
        }
        if let Some((r, c)) = p.scan {
            if r.checked_mul(c) != Some(frames) {
                notes.push(format!(
                    "scan shape {r} × {c} = {} positions, but the file holds {frames} frames",
                    u128::from(r as u64) * u128::from(c as u64)
                ));
            }
        }
        let align = p.pixel.bytes() as u64;
        let aligned = (p.header_bytes + p.frame_header_bytes) % align == 0 && stride % align == 0;
        let zero_copy = match p.decode {
            Decode::U8 => true,
            Decode::U16 { big } | Decode::U32 { big } | Decode::F32 { big } => {
                big == NATIVE_BIG && aligned
            }
            Decode::I32ToF32 { .. } | Decode::MibR64 { .. } => false,
        };
        if !guard.is_active() && cfg!(any(target_os = "linux", target_os = "android")) {
            notes.push(format!(
                "more than {} dumps are open: this one is not guarded against truncation while \
                 it is read (a read past a new end would raise SIGBUS)",
                guard::SLOTS
            ));
        }
        Ok(Dump {
            info: DumpInfo {
                path: p.path,
                format: p.format,
                width: p.width,
                height: p.height,
                stored_dtype: p.stored_dtype,
                pixel: p.pixel,
                frames,
                scan: p.scan,
                declared_frames: p.declared.map(|d| d.frames),
                file_bytes: size,
                header_bytes: p.header_bytes,
                frame_header_bytes: p.frame_header_bytes,
                frame_bytes: p.frame_bytes,
                frame_footer_bytes: p.frame_footer_bytes,
                stride,
                zero_copy,
                notes,
            },
            decode: p.decode,
            mib: p.mib,
            strided: None,
            file,
            guard,
            map,
            ring: 0,
        })
    }

    /// A generated stream of `frames` `u16` frames of `width × height` pixels, no file
    /// needed: a ring of `distinct` frames made once by [`synthetic::frame`] into an
    /// anonymous map, frame `i` being slot `i % distinct` (see the `synthetic` module). Read
    /// like a raw dump, zero copy; `check_frames` always passes.
    pub fn synthetic(frames: usize, width: usize, height: usize, distinct: usize) -> Result<Dump> {
        let name = format!("synthetic:{frames}x{width}x{height}");
        let bad = |msg: String| Error::param("source.synthetic", format!("{name}: {msg}"));
        if frames == 0 || width == 0 || height == 0 || distinct == 0 {
            return Err(bad(
                "frames, width, height and distinct frames must be positive".into(),
            ));
        }
        let pixels = width
            .checked_mul(height)
            .ok_or_else(|| bad("frames too large".into()))?;
        let frame_bytes = pixels * 2;
        let ring = distinct.min(frames);
        let bytes = ring
            .checked_mul(frame_bytes)
            .filter(|_| (frames as u64).checked_mul(frame_bytes as u64).is_some())
            .ok_or_else(|| bad("the ring of distinct frames does not fit in memory".into()))?;
        let mut map = memmap2::MmapOptions::new()
            .len(bytes)
            .map_anon()
            .map_err(|e| Error::memory("source.synthetic", format!("{name}: {e}"), None, None))?;
        for (slot, px) in map.chunks_exact_mut(frame_bytes).enumerate() {
            // The map is page-aligned and frames are whole u16s: the cast cannot fail.
            synthetic::frame(slot, width, height, bytemuck::cast_slice_mut(px));
        }
        let map = map
            .make_read_only()
            .map_err(|e| Error::memory("source.synthetic", format!("{name}: {e}"), None, None))?;
        let null = Path::new("/dev/null");
        let file = File::open(null).map_err(|e| Error::io(null, e))?;
        let guard = guard::Guard::register(&map);
        let plan = Plan {
            path: PathBuf::from(name),
            format: Format::Raw,
            width,
            height,
            stored_dtype: format!("u16, generated (a ring of {ring} distinct frames)"),
            pixel: PixelKind::U16,
            header_bytes: 0,
            frame_header_bytes: 0,
            frame_bytes: frame_bytes as u64,
            frame_footer_bytes: 0,
            decode: Decode::U16 { big: NATIVE_BIG },
            scan: None,
            declared: None,
            notes: Vec::new(),
            mib: None,
        };
        let size = frames as u64 * frame_bytes as u64;
        let mut dump = Self::from_plan(plan, size, file, guard, map)?;
        dump.info.notes.retain(|n| !n.contains("not guarded"));
        dump.info.file_bytes = bytes as u64;
        dump.ring = ring;
        Ok(dump)
    }

    /// Checks that frames `frames` are still intact: the file still holds them and none of
    /// their pages vanished while mapped (see "Files that change while mapped" in the module
    /// docs). Call it after reading the frames (the pipeline calls it for every batch, before
    /// and after processing it). Costs one `fstat` and an atomic load; never allocates unless
    /// it fails.
    ///
    /// Errors: [`Error::Changed`] naming the first frame of `frames` that is not intact; an
    /// I/O error if the file's size cannot be read.
    pub fn check_frames(&self, frames: Range<usize>) -> Result<()> {
        if frames.is_empty() || self.ring != 0 {
            return Ok(());
        }
        let info = &self.info;
        let fault = self.guard.first_fault();
        let now = self
            .file
            .metadata()
            .map_err(|e| Error::io(&info.path, e))?
            .len();
        // Frames wholly inside the file now, and the first frame that overlaps a lost page.
        let whole = now.saturating_sub(info.header_bytes) / info.stride;
        let faulted = fault.map_or(u64::MAX, |at| {
            at.saturating_sub(info.header_bytes) / info.stride
        });
        let mut first_bad = whole.min(faulted);
        if self.strided.is_some() && (now < info.file_bytes || fault.is_some()) {
            // Fortran order: every frame has pixels near the end of the file.
            first_bad = 0;
        }
        if first_bad >= frames.end as u64 {
            return Ok(());
        }
        let frame = (first_bad as usize).max(frames.start);
        Err(Error::Changed(SourceChanged {
            path: info.path.clone(),
            frame,
            offset: info.header_bytes + frame as u64 * info.stride,
            opened_bytes: info.file_bytes,
            file_bytes: now,
            fault_offset: fault,
            processed_after: 0,
        }))
    }

    /// What the dump holds.
    pub fn info(&self) -> &DumpInfo {
        &self.info
    }

    /// A frame reader. Allocates its decode buffer (one frame) here, when the dump needs one;
    /// [`FrameReader::frame`] never allocates.
    pub fn reader(&self) -> FrameReader<'_> {
        let bufs = if self.info.zero_copy {
            DecodeBuffers::default()
        } else {
            DecodeBuffers::for_frames(self.info.pixel, self.info.pixels())
        };
        FrameReader { dump: self, bufs }
    }
}

/// Reads frames of one [`Dump`] by index, reusing one decode buffer. Cheap to create; one per
/// thread.
#[derive(Debug)]
pub struct FrameReader<'d> {
    dump: &'d Dump,
    bufs: DecodeBuffers,
}

/// Unpacks RAW Merlin pixels stored in one byte or less.
type Unpack8 = fn(&[u8], &mut [u8]);

/// `buf` sized to `n` (a no-op after the first call for a dump).
fn sized<T: Clone + Default>(buf: &mut Vec<T>, n: usize) -> &mut [T] {
    if buf.len() != n {
        buf.resize(n, T::default());
    }
    buf
}

impl<'d> FrameReader<'d> {
    /// The dump this reader reads.
    pub fn dump(&self) -> &'d Dump {
        self.dump
    }

    /// Frame `index` (0-based, file order). Zero copy when [`DumpInfo::zero_copy`]; otherwise
    /// decoded into this reader's buffer, which the next call overwrites. Never allocates.
    ///
    /// Errors: an index beyond the last frame; for Merlin files, a frame header that
    /// disagrees with frame 0 (named by frame index and byte offset).
    pub fn frame(&mut self, index: usize) -> Result<Frame<'_>> {
        let dump = self.dump;
        let info = &dump.info;
        if index >= info.frames {
            return Err(Error::param(
                "frame index",
                format!(
                    "{index} is beyond the last frame of {} ({} frames)",
                    info.path.display(),
                    info.frames
                ),
            ));
        }
        if let Some(s) = &dump.strided {
            return Ok(s.frame(&dump.map, index, &mut self.bufs));
        }
        // A generated source repeats its ring (a predictable branch, 0 for files).
        let slot = if dump.ring == 0 {
            index
        } else {
            index % dump.ring
        };
        let start = info.header_bytes + slot as u64 * info.stride;
        if let Some(check) = &dump.mib {
            check.check(&info.path, &dump.map, index, start)?;
        }
        let off = (start + info.frame_header_bytes) as usize;
        let bytes: &'d [u8] = &dump.map[off..off + info.frame_bytes as usize];
        Ok(decode_frame(
            dump.decode,
            bytes,
            info.pixels(),
            &mut self.bufs,
        ))
    }
}

/// Decode buffers, one per delivered pixel type, reused frame after frame (only the one of
/// the source's pixel type is ever sized).
#[derive(Debug, Default)]
pub(crate) struct DecodeBuffers {
    u8: Vec<u8>,
    u16: Vec<u16>,
    u32: Vec<u32>,
    f32: Vec<f32>,
}

impl DecodeBuffers {
    /// Buffers sized for frames of `n` pixels of type `pixel` (allocates).
    pub(crate) fn for_frames(pixel: PixelKind, n: usize) -> Self {
        let mut b = DecodeBuffers::default();
        match pixel {
            PixelKind::U8 => b.u8.resize(n, 0),
            PixelKind::U16 => b.u16.resize(n, 0),
            PixelKind::U32 => b.u32.resize(n, 0),
            PixelKind::F32 => b.f32.resize(n, 0.0),
        }
        b
    }
}

/// Stored pixel `bytes` as a frame of `n` pixels: borrowed from `bytes` when they are already
/// the working type in native order and aligned, else decoded into `bufs`. Never allocates
/// once `bufs` is sized ([`DecodeBuffers::for_frames`]).
pub(crate) fn decode_frame<'a>(
    decode: Decode,
    bytes: &'a [u8],
    n: usize,
    bufs: &'a mut DecodeBuffers,
) -> Frame<'a> {
    match decode {
        Decode::U8 => Frame::U8(bytes),
        Decode::U16 { big } => {
            if big == NATIVE_BIG {
                if let Ok(px) = bytemuck::try_cast_slice(bytes) {
                    return Frame::U16(px);
                }
            }
            let buf = sized(&mut bufs.u16, n);
            raw::decode_u16(bytes, buf, big);
            Frame::U16(buf)
        }
        Decode::U32 { big } => {
            if big == NATIVE_BIG {
                if let Ok(px) = bytemuck::try_cast_slice(bytes) {
                    return Frame::U32(px);
                }
            }
            let buf = sized(&mut bufs.u32, n);
            raw::decode_u32(bytes, buf, big);
            Frame::U32(buf)
        }
        Decode::F32 { big } => {
            if big == NATIVE_BIG {
                if let Ok(px) = bytemuck::try_cast_slice(bytes) {
                    return Frame::F32(px);
                }
            }
            let buf = sized(&mut bufs.f32, n);
            raw::decode_f32(bytes, buf, big);
            Frame::F32(buf)
        }
        Decode::I32ToF32 { big } => {
            let buf = sized(&mut bufs.f32, n);
            raw::decode_i32_to_f32(bytes, buf, big);
            Frame::F32(buf)
        }
        Decode::MibR64 { depth, quad } => match depth {
            12 => {
                let buf = sized(&mut bufs.u16, n);
                if quad {
                    mib::assemble_quad(bytes, buf, 512, mib::unpack_r12);
                } else {
                    mib::unpack_r12(bytes, buf);
                }
                Frame::U16(buf)
            }
            _ => {
                let buf = sized(&mut bufs.u8, n);
                let (unpack, chip_row_bytes): (Unpack8, usize) = if depth == 1 {
                    (mib::unpack_r1, 32)
                } else {
                    (mib::unpack_r6, 256)
                };
                if quad {
                    mib::assemble_quad(bytes, buf, chip_row_bytes, unpack);
                } else {
                    unpack(bytes, buf);
                }
                Frame::U8(buf)
            }
        },
    }
}

#[cfg(test)]
mod tests;
