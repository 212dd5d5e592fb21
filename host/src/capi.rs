//! The C ABI: detector readout programs (C or C++) link ptyflow (`libptyflow.a` or
//! `libptyflow.so`) and push frames from their receive loop. The header is
//! `include/ptyflow.h`, generated from this file by cbindgen with `host/cbindgen.toml`; a test
//! of the root package fails when it is stale (`PTYFLOW_BLESS=1 cargo test -p ptyflow-suite
//! capi` rewrites it).
//!
//! # Shape of the API
//! - Opaque handle `PtyflowPipeline*`, made by `ptyflow_create` (a `PtyflowConfig` struct) or
//!   `ptyflow_create_json` (the same fields as JSON), released by `ptyflow_free`.
//! - `ptyflow_push(p, frame, bytes, index)` copies one frame into the pipeline's buffer pool;
//!   `ptyflow_finish(p)` waits for every stage; then results are read by name into
//!   caller-provided buffers (`ptyflow_result_shape`, `ptyflow_result_len`, `ptyflow_result_f32`).
//! - Every function returns an `int` status (`PTYFLOW_OK`, `PTYFLOW_QUEUE_FULL`, negative
//!   `PTYFLOW_ERR_*`); a failing call leaves its message in a thread-local last-error
//!   (`ptyflow_last_error_message`).
//! - No Rust type crosses the boundary; no panic either: every entry point runs inside
//!   `catch_unwind` and turns a panic into `PTYFLOW_ERR_PANIC`.
//! - Nor an allocation failure, which would abort the calling program: creation checks the
//!   configuration against the memory budget ([`crate::budget`]; field `memory_budget`)
//!   before it allocates, and allocates the big buffers fallibly; both are
//!   `PTYFLOW_ERR_CONFIG` with a message naming the field.
//!
//! # Thread safety (mirrored in the header)
//! The handle's state sits behind a mutex, so every call on one handle is safe from any thread;
//! calls that need the state are serialized. One receive thread pushing is the intended use.
//! `ptyflow_counters` and `ptyflow_frame_bytes` never take that mutex (atomics and immutable
//! fields), so a monitoring thread can poll them while another thread is blocked in a push.
//! `ptyflow_free` must not race with any other call on the same handle.
//!
//! # One job layer
//! This file holds the C types and the entry points only. The struct converts to the job
//! layer's [`JobConfig`] (`job_from_c`), the JSON *is* a `JobConfig`
//! ([`JobConfig::from_json`]), and the handle drives a [`PushSession`]: the same validation,
//! budget, reduction and reconstruction as `ptyflow replay`, and error messages that name the
//! configuration's fields (`recon.window`, `reduce.virtual[1]`).
//!
//! # Reconstruction
//! The configuration has an optional reconstruction (struct: `recon`; JSON: `"recon"` with
//! the options of `ptyflow replay`, the optics in `"optics"`; steps and sweeps not given are
//! chosen by [`Schedule::Auto`](crate::recon::Schedule) as in `replay`). It runs on its own
//! thread beside the reduction, one update per pushed frame (a serpentine scan's frames go to
//! their raster positions); its sweeps run in `ptyflow_finish`, and its results are `object`
//! (`[rows, cols, 2]`) and `probe` (`[M, M, 2]`), complex values as (re, im) float pairs.

use std::cell::RefCell;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, MutexGuard};

use crate::job::{
    JobConfig, MemorySize, NamedArray, PushSession, PushSource, RadiusUnit, ReconConfig,
    ReconMethod, ReduceConfig, RunConfig, ScanConfig, Source,
};
use crate::optics::Optics;
use crate::pipeline::detectors::VirtualSpec;
use crate::pipeline::push::{CounterReader, PushError};
use crate::source::PixelKind;

// ---------------------------------------------------------------------------------------------
// Status codes

/// Success.
pub const PTYFLOW_OK: c_int = 0;
/// Non-blocking mode only: every buffer is in flight, the frame was NOT taken. Not an error
/// (the last-error message is not set): retry, or count the frame as dropped.
pub const PTYFLOW_QUEUE_FULL: c_int = 1;
/// A required pointer argument was NULL.
pub const PTYFLOW_ERR_NULL: c_int = -1;
/// The configuration is invalid (bad JSON, unknown key, geometry, detector spec, missing disc),
/// or needs more memory than the budget (`memory_budget`) or the system can give.
pub const PTYFLOW_ERR_CONFIG: c_int = -2;
/// A length does not match: the frame's byte count, an output buffer's element count, a
/// dims array or name buffer that is too small. Nothing was written or taken.
pub const PTYFLOW_ERR_LENGTH: c_int = -3;
/// The frame index lies beyond the scan (index >= rows * cols).
pub const PTYFLOW_ERR_INDEX: c_int = -4;
/// The call does not fit the pipeline's state: push or finish after finish, results before
/// finish, results after a failed finish.
pub const PTYFLOW_ERR_STATE: c_int = -5;
/// No result of that name (see ptyflow_result_count and ptyflow_result_name).
pub const PTYFLOW_ERR_NOT_FOUND: c_int = -6;
/// The configuration asks for something this build does not have. Reserved: this version
/// returns it nowhere (the reconstruction, once refused with it, runs).
pub const PTYFLOW_ERR_UNSUPPORTED: c_int = -7;
/// A pipeline stage failed while running (the message names the frame and the reason).
pub const PTYFLOW_ERR_PIPELINE: c_int = -8;
/// A bug: ptyflow panicked inside this call. The panic was caught; the handle is unusable
/// from now on (every later call on it returns this code) and should be freed.
pub const PTYFLOW_ERR_PANIC: c_int = -9;

// ---------------------------------------------------------------------------------------------
// Configuration values

/// Pixel type `uint8_t`.
pub const PTYFLOW_PIXEL_U8: u32 = 1;
/// Pixel type `uint16_t`.
pub const PTYFLOW_PIXEL_U16: u32 = 2;
/// Pixel type `uint32_t`.
pub const PTYFLOW_PIXEL_U32: u32 = 3;
/// Pixel type `float` (IEEE 754 binary32).
pub const PTYFLOW_PIXEL_F32: u32 = 4;

/// Reconstruction by online ePIE.
pub const PTYFLOW_RECON_EPIE: u32 = 1;
/// Reconstruction by online Wirtinger flow.
pub const PTYFLOW_RECON_WF: u32 = 2;

/// How a pipeline is built. Initialise with ptyflow_config_init, then set the fields you need.
/// Fields may be appended in later versions (rebuild against the new header).
///
/// Frames keep the detector's layout: row-major, `height` rows of `width` pixels, native byte
/// order. Pixel (row, col) has its centre at x = col, y = row. Positions and radii are in
/// unbinned detector pixels, or radii in mrad when `mrad_per_px` > 0.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PtyflowConfig {
    /// Frame width in pixels (columns). Required.
    pub width: usize,
    /// Frame height in pixels (rows). Required.
    pub height: usize,
    /// One of PTYFLOW_PIXEL_*. Default PTYFLOW_PIXEL_U16.
    pub pixel: u32,
    /// Bin factor 1..16 (1: no binning); width and height (or the crop) must be multiples.
    pub bin: u32,
    /// Non-zero: use the crop window below (before binning).
    pub has_crop: c_int,
    /// Crop window: first column.
    pub crop_x0: usize,
    /// Crop window: first row.
    pub crop_y0: usize,
    /// Crop window: columns.
    pub crop_width: usize,
    /// Crop window: rows.
    pub crop_height: usize,
    /// Scan rows (slow axis). Required. Frame indices run over 0 .. scan_rows * scan_cols - 1.
    pub scan_rows: usize,
    /// Scan columns (fast axis). Required.
    pub scan_cols: usize,
    /// Non-zero: serpentine scan (odd rows run right to left).
    pub serpentine: c_int,
    /// Virtual detectors, comma-separated, e.g. "bf,adf:20:60,rings:4:20:60,dpc,com"; NULL or
    /// "" for none. Read during ptyflow_create only (the caller keeps ownership).
    pub virtual_detectors: *const c_char,
    /// Non-zero: the bright-field disc below is given. Push mode cannot find the disc from the
    /// data, so every detector (bf, adf, rings, dpc, com) needs it.
    pub has_disc: c_int,
    /// Bright-field disc centre x (column), unbinned pixels.
    pub center_x: f64,
    /// Bright-field disc centre y (row), unbinned pixels.
    pub center_y: f64,
    /// Bright-field disc radius (unbinned pixels, or mrad when mrad_per_px > 0).
    pub bf_radius: f64,
    /// Detector sampling in mrad per unbinned pixel; > 0: radii are in mrad. 0: pixels.
    pub mrad_per_px: f64,
    /// Reduction worker threads; 0: one per CPU.
    pub threads: u32,
    /// Frames per batch handed to the workers; 0: 32.
    pub batch_frames: u32,
    /// Batches that may be in flight (queue depth); 0: 8.
    pub queue_batches: u32,
    /// 0 (default): ptyflow_push blocks while the queue is full. Non-zero: it returns
    /// PTYFLOW_QUEUE_FULL at once and does not take the frame.
    pub non_blocking: c_int,
    /// Optional online reconstruction; NULL: none. Read during ptyflow_create only.
    pub recon: *const PtyflowReconConfig,
    /// Memory the pipeline may use, in bytes, checked at creation before anything is
    /// allocated: a configuration that needs more is refused with PTYFLOW_ERR_CONFIG and a
    /// message naming the field that sets the size. 0 (default): the environment variable
    /// PTYFLOW_MEMORY_BUDGET (e.g. "8G", "50%"), else 75 % of physical memory.
    pub memory_budget: u64,
}

/// The online reconstruction and its optics. Initialise with ptyflow_recon_config_init.
/// Runs ePIE or Wirtinger flow (Poisson loss) on every pushed frame, in push order; the
/// window is the whole (square) frame, or `window` binned pixels centred on the disc.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PtyflowReconConfig {
    /// PTYFLOW_RECON_EPIE (default) or PTYFLOW_RECON_WF.
    pub method: u32,
    /// Accelerating voltage in kV. Required.
    pub kv: f64,
    /// Convergence semi-angle in mrad. Required.
    pub alpha_mrad: f64,
    /// Defocus in Angstrom (positive = underfocus).
    pub defocus_angstrom: f64,
    /// Spherical aberration Cs in mm.
    pub cs_mm: f64,
    /// Two-fold astigmatism |C12| in Angstrom.
    pub astigmatism_angstrom: f64,
    /// Azimuth of the two-fold astigmatism in degrees.
    pub astigmatism_angle_deg: f64,
    /// Detector sampling in mrad per unbinned pixel; 0: the pipeline's mrad_per_px. Required
    /// in one of the two places.
    pub mrad_per_px: f64,
    /// Scan step in Angstrom. Required.
    pub scan_step_angstrom: f64,
    /// Reconstruction window M (pixels); 0: the binned frame's width.
    pub window: usize,
}

/// Counters of a pipeline, readable at any time from any thread.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PtyflowCounters {
    /// Frames taken by ptyflow_push.
    pub pushed: u64,
    /// Frames reduced by the workers so far (equals pushed after ptyflow_finish).
    pub processed: u64,
    /// ptyflow_push calls answered PTYFLOW_QUEUE_FULL (non-blocking mode; 0 otherwise). A frame
    /// that was retried until taken counts once per refusal.
    pub dropped: u64,
    /// Frames the reconstruction has seen so far (0 without one).
    pub consumed: u64,
}

/// A pipeline: opaque to C. Made by ptyflow_create or ptyflow_create_json, released by
/// ptyflow_free.
pub struct PtyflowPipeline {
    state: Mutex<State>,
    counters: CounterReader,
    frame_bytes: usize,
    frames: usize,
}

enum State {
    Running(Box<PushSession>),
    Finished(Vec<NamedArray>),
    Failed(String),
}

// ---------------------------------------------------------------------------------------------
// Errors at the boundary

/// An error on its way to C: the status code and the message for last-error.
#[derive(Debug)]
struct CapiError {
    code: c_int,
    msg: String,
}

impl CapiError {
    fn new(code: c_int, msg: impl Into<String>) -> Self {
        CapiError {
            code,
            msg: msg.into(),
        }
    }
    fn null(arg: &str) -> Self {
        CapiError::new(PTYFLOW_ERR_NULL, format!("`{arg}` is NULL"))
    }
    fn config(e: impl std::fmt::Display) -> Self {
        CapiError::new(PTYFLOW_ERR_CONFIG, format!("configuration: {e}"))
    }
    /// A library error met while setting up: PTYFLOW_ERR_CONFIG. The library names the
    /// configuration's fields (`recon.window`, `run.memory_budget`), the JSON's own names.
    fn setup(e: crate::Error) -> Self {
        CapiError::config(e)
    }
}

type CResult<T> = Result<T, CapiError>;

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_last_error(msg: String) {
    // NUL bytes would cut the C string short.
    let msg = msg.replace('\0', " ");
    LAST_ERROR.with(|e| *e.borrow_mut() = msg);
}

/// Runs one entry point: its errors become a status code plus last-error, a panic becomes
/// `PTYFLOW_ERR_PANIC`. Nothing unwinds into C.
fn entry(f: impl FnOnce() -> CResult<c_int>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            set_last_error(e.msg);
            e.code
        }
        Err(payload) => {
            let what = crate::error::panic_message(payload.as_ref());
            // Reporting must not unwind either.
            let _ = catch_unwind(|| {
                set_last_error(format!(
                    "internal error (a bug in ptyflow, please report it): {what}"
                ))
            });
            PTYFLOW_ERR_PANIC
        }
    }
}

/// # Safety
/// `p` is NULL or a pointer returned by `ptyflow_create*` and not yet freed.
unsafe fn handle<'a>(p: *const PtyflowPipeline, arg: &str) -> CResult<&'a PtyflowPipeline> {
    // SAFETY: the caller promises `p` is NULL or a live handle; `as_ref` maps NULL to None.
    unsafe { p.as_ref() }.ok_or_else(|| CapiError::null(arg))
}

/// # Safety
/// `s` is NULL or a NUL-terminated string valid for the duration of the call.
unsafe fn c_str<'a>(s: *const c_char, arg: &str) -> CResult<&'a str> {
    if s.is_null() {
        return Err(CapiError::null(arg));
    }
    // SAFETY: non-NULL and, as the caller promises, NUL-terminated and live for the call.
    let bytes = unsafe { CStr::from_ptr(s) };
    bytes
        .to_str()
        .map_err(|e| CapiError::new(PTYFLOW_ERR_CONFIG, format!("`{arg}` is not UTF-8: {e}")))
}

impl PtyflowPipeline {
    fn lock(&self) -> CResult<MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| {
            CapiError::new(
                PTYFLOW_ERR_PANIC,
                "an earlier call on this pipeline panicked; the pipeline is unusable, free it",
            )
        })
    }

    /// Runs `f` on the results, or says why there are none yet.
    fn with_result<T>(&self, name: &str, f: impl FnOnce(&NamedArray) -> CResult<T>) -> CResult<T> {
        let state = self.lock()?;
        let results = finished(&state)?;
        let found = results.iter().find(|r| r.name == name).ok_or_else(|| {
            let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
            CapiError::new(
                PTYFLOW_ERR_NOT_FOUND,
                format!(
                    "no result named `{name}`; this pipeline has: {}",
                    names.join(", ")
                ),
            )
        })?;
        f(found)
    }
}

fn finished(state: &State) -> CResult<&[NamedArray]> {
    match state {
        State::Finished(r) => Ok(r),
        State::Running(_) => Err(CapiError::new(
            PTYFLOW_ERR_STATE,
            "results are ready after ptyflow_finish",
        )),
        State::Failed(why) => Err(CapiError::new(
            PTYFLOW_ERR_STATE,
            format!("no results: ptyflow_finish failed: {why}"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// The struct's configuration, in the job layer's terms

/// The job a `PtyflowConfig` describes: pushed frames of its geometry, its scan, detectors
/// and disc, and the optional reconstruction. Checked by the job layer
/// ([`PushSession::start`]).
///
/// # Safety
/// The pointers in `c` are NULL or valid as the header says (NUL-terminated string, a
/// `PtyflowReconConfig`), for the duration of the call.
unsafe fn job_from_c(c: &PtyflowConfig) -> CResult<JobConfig> {
    let pixel = match c.pixel {
        PTYFLOW_PIXEL_U8 => PixelKind::U8,
        PTYFLOW_PIXEL_U16 => PixelKind::U16,
        PTYFLOW_PIXEL_U32 => PixelKind::U32,
        PTYFLOW_PIXEL_F32 => PixelKind::F32,
        other => {
            return Err(CapiError::config(format!(
                "pixel {other}: expected one of PTYFLOW_PIXEL_U8 (1), _U16 (2), _U32 (3), _F32 (4)"
            )));
        }
    };
    let detectors = if c.virtual_detectors.is_null() {
        Vec::new()
    } else {
        // SAFETY: non-NULL; the header asks for a NUL-terminated string live during the call.
        let list = unsafe { c_str(c.virtual_detectors, "config->virtual_detectors") }?;
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<VirtualSpec>())
            .collect::<crate::Result<_>>()
            .map_err(CapiError::config)?
    };
    let given = |v: f64| (v != 0.0).then_some(v);
    let mut optics = Optics {
        mrad_per_px: given(c.mrad_per_px),
        ..Optics::default()
    };
    // SAFETY: NULL or a `PtyflowReconConfig` the caller keeps alive during the call.
    let recon = match unsafe { c.recon.as_ref() } {
        None => None,
        Some(r) => {
            let method = match r.method {
                PTYFLOW_RECON_EPIE => ReconMethod::Epie,
                PTYFLOW_RECON_WF => ReconMethod::Wf,
                other => {
                    return Err(CapiError::config(format!(
                        "recon.method {other}: expected PTYFLOW_RECON_EPIE or PTYFLOW_RECON_WF"
                    )));
                }
            };
            // The struct's aberrations are 0 unless set; the job's `optics` says "given".
            optics = Optics {
                kv: Some(r.kv),
                alpha_mrad: Some(r.alpha_mrad),
                defocus_angstrom: Some(r.defocus_angstrom),
                cs_mm: Some(r.cs_mm),
                astigmatism_angstrom: Some(r.astigmatism_angstrom),
                astigmatism_angle_deg: Some(r.astigmatism_angle_deg),
                mrad_per_px: optics.mrad_per_px.or(given(r.mrad_per_px)),
                step_angstrom: Some(r.scan_step_angstrom),
                scan_rotation_deg: None,
                probe_kind: None,
            };
            Some(ReconConfig {
                method,
                // The struct's window is M binned pixels; its reconstruction is not binned.
                window: (r.window != 0).then_some(r.window),
                ..ReconConfig::default()
            })
        }
    };
    let u = |v: u32| (v != 0).then_some(v as usize);
    Ok(JobConfig {
        source: Source::Push(PushSource {
            width: c.width,
            height: c.height,
            pixel,
        }),
        scan: ScanConfig {
            shape: Some([c.scan_rows, c.scan_cols]),
            serpentine: c.serpentine != 0,
            ..ScanConfig::default()
        },
        reduce: ReduceConfig {
            bin: c.bin as usize,
            crop: (c.has_crop != 0).then_some([c.crop_x0, c.crop_y0, c.crop_width, c.crop_height]),
            detectors,
            center: (c.has_disc != 0).then_some([c.center_x, c.center_y]),
            bf_radius: (c.has_disc != 0).then_some(c.bf_radius),
            // Radii are in mrad when the pipeline's own sampling is set, not the recon's.
            radius_unit: Some(if c.mrad_per_px != 0.0 {
                RadiusUnit::Mrad
            } else {
                RadiusUnit::Px
            }),
            keep_nonfinite: false,
        },
        optics,
        recon,
        compress: None,
        run: RunConfig {
            threads: u(c.threads),
            batch_frames: u(c.batch_frames),
            queue_batches: u(c.queue_batches),
            blocking: c.non_blocking == 0,
            fps: None,
            memory_budget: (c.memory_budget != 0).then_some(MemorySize::Bytes(c.memory_budget)),
            sample_memory_s: None,
        },
        out: None,
    })
}

/// Starts the push session of `config`: the handle.
fn start(config: &JobConfig) -> CResult<PtyflowPipeline> {
    let session = PushSession::start(config).map_err(CapiError::setup)?;
    Ok(PtyflowPipeline {
        counters: session.counter_reader(),
        frame_bytes: session.frame_bytes(),
        frames: session.positions(),
        state: Mutex::new(State::Running(Box::new(session))),
    })
}

// ---------------------------------------------------------------------------------------------
// Entry points

/// Fills `config` with the defaults (no detectors, no crop, no disc, u16 pixels, bin 1,
/// blocking push, default threads and queue). Width, height and the scan must still be set.
/// Returns PTYFLOW_OK or PTYFLOW_ERR_NULL.
///
/// # Safety
/// `config` is NULL or points to writable memory for one `PtyflowConfig`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptyflow_config_init(config: *mut PtyflowConfig) -> c_int {
    entry(|| {
        if config.is_null() {
            return Err(CapiError::null("config"));
        }
        let value = PtyflowConfig {
            width: 0,
            height: 0,
            pixel: PTYFLOW_PIXEL_U16,
            bin: 1,
            has_crop: 0,
            crop_x0: 0,
            crop_y0: 0,
            crop_width: 0,
            crop_height: 0,
            scan_rows: 0,
            scan_cols: 0,
            serpentine: 0,
            virtual_detectors: std::ptr::null(),
            has_disc: 0,
            center_x: 0.0,
            center_y: 0.0,
            bf_radius: 0.0,
            mrad_per_px: 0.0,
            threads: 0,
            batch_frames: 0,
            queue_batches: 0,
            non_blocking: 0,
            recon: std::ptr::null(),
            memory_budget: 0,
        };
        // SAFETY: non-NULL and, as the caller promises, writable for one PtyflowConfig; `write`
        // does not read the (possibly uninitialised) old value.
        unsafe { config.write(value) };
        Ok(PTYFLOW_OK)
    })
}

/// Fills `recon` with the defaults (ePIE, no aberrations, window 0 = binned frame width, all
/// required values 0). Returns PTYFLOW_OK or PTYFLOW_ERR_NULL.
///
/// # Safety
/// `recon` is NULL or points to writable memory for one `PtyflowReconConfig`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptyflow_recon_config_init(recon: *mut PtyflowReconConfig) -> c_int {
    entry(|| {
        if recon.is_null() {
            return Err(CapiError::null("recon"));
        }
        let value = PtyflowReconConfig {
            method: PTYFLOW_RECON_EPIE,
            kv: 0.0,
            alpha_mrad: 0.0,
            defocus_angstrom: 0.0,
            cs_mm: 0.0,
            astigmatism_angstrom: 0.0,
            astigmatism_angle_deg: 0.0,
            mrad_per_px: 0.0,
            scan_step_angstrom: 0.0,
            window: 0,
        };
        // SAFETY: non-NULL and, as the caller promises, writable for one PtyflowReconConfig.
        unsafe { recon.write(value) };
        Ok(PTYFLOW_OK)
    })
}

fn store(out: *mut *mut PtyflowPipeline, made: CResult<PtyflowPipeline>) -> CResult<c_int> {
    let pipeline = made?;
    let raw = Box::into_raw(Box::new(pipeline));
    // SAFETY: `out` was checked non-NULL by the caller of `store` and is writable (header).
    unsafe { out.write(raw) };
    Ok(PTYFLOW_OK)
}

/// Creates a pipeline from `config` and starts its worker threads. On success `*out` is the
/// new handle (free it with ptyflow_free); on failure `*out` is NULL and the status says why
/// (PTYFLOW_ERR_CONFIG).
///
/// # Safety
/// `config` is NULL or points to a valid `PtyflowConfig` whose string and `recon` pointers are
/// NULL or valid for the duration of the call; `out` is NULL or writable for one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptyflow_create(
    config: *const PtyflowConfig,
    out: *mut *mut PtyflowPipeline,
) -> c_int {
    entry(|| {
        if out.is_null() {
            return Err(CapiError::null("out"));
        }
        // SAFETY: non-NULL, writable for one pointer (caller's promise).
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: NULL or a valid PtyflowConfig (caller's promise).
        let config = unsafe { config.as_ref() }.ok_or_else(|| CapiError::null("config"))?;
        // SAFETY: the pointers inside `config` are NULL or valid (caller's promise).
        let config = unsafe { job_from_c(config) }?;
        store(out, start(&config))
    })
}

/// Creates a pipeline from a JSON object (UTF-8, NUL-terminated) with the same fields as
/// `PtyflowConfig`; see the header's top comment for the keys. Unknown keys are an error.
/// On success `*out` is the new handle; on failure `*out` is NULL.
///
/// # Safety
/// `json` is NULL or a NUL-terminated string valid for the call; `out` is NULL or writable for
/// one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptyflow_create_json(
    json: *const c_char,
    out: *mut *mut PtyflowPipeline,
) -> c_int {
    entry(|| {
        if out.is_null() {
            return Err(CapiError::null("out"));
        }
        // SAFETY: non-NULL, writable for one pointer (caller's promise).
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: NULL or NUL-terminated and live for the call (caller's promise).
        let text = unsafe { c_str(json, "json") }?;
        let config = JobConfig::from_json(text).map_err(CapiError::config)?;
        store(out, start(&config))
    })
}

/// Bytes one frame must have: width * height * pixel size (before any crop or binning).
///
/// # Safety
/// `p` is NULL or a live handle; `out` is NULL or writable for one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptyflow_frame_bytes(p: *const PtyflowPipeline, out: *mut usize) -> c_int {
    entry(|| {
        // SAFETY: NULL or a live handle (caller's promise).
        let p = unsafe { handle(p, "p") }?;
        if out.is_null() {
            return Err(CapiError::null("out"));
        }
        // SAFETY: non-NULL and writable (caller's promise).
        unsafe { out.write(p.frame_bytes) };
        Ok(PTYFLOW_OK)
    })
}

/// Pushes one frame for scan position `index` (0 .. rows * cols - 1, in acquisition order; a
/// serpentine scan maps odd rows right to left). The frame (`bytes` bytes, exactly
/// ptyflow_frame_bytes) is copied before the call returns: the caller may reuse its buffer at
/// once. Never allocates.
///
/// Blocking mode (default): waits while every buffer is in flight. Non-blocking mode: returns
/// PTYFLOW_QUEUE_FULL at once without taking the frame. Errors: PTYFLOW_ERR_NULL,
/// PTYFLOW_ERR_LENGTH (wrong byte count), PTYFLOW_ERR_INDEX, PTYFLOW_ERR_STATE (after
/// ptyflow_finish), PTYFLOW_ERR_PIPELINE (a stage failed); the frame is then not taken.
///
/// # Safety
/// `p` is NULL or a live handle; `frame` is NULL or readable for `bytes` bytes during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptyflow_push(
    p: *mut PtyflowPipeline,
    frame: *const c_void,
    bytes: usize,
    index: u64,
) -> c_int {
    entry(|| {
        // SAFETY: NULL or a live handle (caller's promise).
        let p = unsafe { handle(p, "p") }?;
        if frame.is_null() {
            return Err(CapiError::null("frame"));
        }
        if bytes != p.frame_bytes {
            return Err(CapiError::new(
                PTYFLOW_ERR_LENGTH,
                format!(
                    "frame {index}: {bytes} bytes, expected {} (width × height × pixel size)",
                    p.frame_bytes
                ),
            ));
        }
        let index = match usize::try_from(index) {
            Ok(i) if i < p.frames => i,
            _ => {
                return Err(CapiError::new(
                    PTYFLOW_ERR_INDEX,
                    format!(
                        "frame index {index} is beyond the {} positions of the scan",
                        p.frames
                    ),
                ));
            }
        };
        // SAFETY: non-NULL and readable for `bytes` bytes during the call (caller's promise);
        // u8 has no alignment or validity requirements.
        let frame = unsafe { std::slice::from_raw_parts(frame.cast::<u8>(), bytes) };
        let mut state = p.lock()?;
        let State::Running(run) = &mut *state else {
            return Err(CapiError::new(
                PTYFLOW_ERR_STATE,
                "ptyflow_push after ptyflow_finish",
            ));
        };
        match run.push(index, frame) {
            Ok(()) => Ok(PTYFLOW_OK),
            Err(PushError::QueueFull) => Ok(PTYFLOW_QUEUE_FULL),
            Err(PushError::Invalid(e)) => Err(CapiError::new(PTYFLOW_ERR_PIPELINE, e.to_string())),
        }
    })
}

/// Reads the counters. Never waits on the pipeline's lock: safe to call from a monitoring
/// thread while another thread pushes or finishes.
///
/// # Safety
/// `p` is NULL or a live handle; `out` is NULL or writable for one `PtyflowCounters`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptyflow_counters(
    p: *const PtyflowPipeline,
    out: *mut PtyflowCounters,
) -> c_int {
    entry(|| {
        // SAFETY: NULL or a live handle (caller's promise).
        let p = unsafe { handle(p, "p") }?;
        if out.is_null() {
            return Err(CapiError::null("out"));
        }
        let c = p.counters.get();
        let value = PtyflowCounters {
            pushed: c.pushed,
            processed: c.processed,
            dropped: c.rejected,
            consumed: c.consumed,
        };
        // SAFETY: non-NULL and writable (caller's promise).
        unsafe { out.write(value) };
        Ok(PTYFLOW_OK)
    })
}

/// Sends the last partial batch, waits for every stage and computes the results. Call once,
/// after the last push. Errors: PTYFLOW_ERR_STATE (already finished), PTYFLOW_ERR_PIPELINE (a
/// stage failed: the message says why; the handle then has no results, free it).
///
/// # Safety
/// `p` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptyflow_finish(p: *mut PtyflowPipeline) -> c_int {
    entry(|| {
        // SAFETY: NULL or a live handle (caller's promise).
        let p = unsafe { handle(p, "p") }?;
        let mut state = p.lock()?;
        let State::Running(_) = &*state else {
            return Err(CapiError::new(
                PTYFLOW_ERR_STATE,
                "ptyflow_finish was already called",
            ));
        };
        // Failed until proven otherwise, so a panic below leaves no half-finished state.
        let State::Running(run) = std::mem::replace(
            &mut *state,
            State::Failed("ptyflow_finish did not complete".into()),
        ) else {
            unreachable!("checked above")
        };
        let done = run.finish(None).map(|outcome| outcome.all_arrays());
        match done {
            Ok(results) => {
                *state = State::Finished(results);
                Ok(PTYFLOW_OK)
            }
            Err(e) => {
                let msg = e.to_string();
                *state = State::Failed(msg.clone());
                Err(CapiError::new(PTYFLOW_ERR_PIPELINE, msg))
            }
        }
    })
}

/// Number of results after ptyflow_finish (PTYFLOW_ERR_STATE before).
///
/// # Safety
/// `p` is NULL or a live handle; `count` is NULL or writable for one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptyflow_result_count(
    p: *const PtyflowPipeline,
    count: *mut usize,
) -> c_int {
    entry(|| {
        // SAFETY: NULL or a live handle (caller's promise).
        let p = unsafe { handle(p, "p") }?;
        if count.is_null() {
            return Err(CapiError::null("count"));
        }
        let n = finished(&*p.lock()?)?.len();
        // SAFETY: non-NULL and writable (caller's promise).
        unsafe { count.write(n) };
        Ok(PTYFLOW_OK)
    })
}

/// Copies the name of result `i` (0 .. count - 1), NUL-terminated, into `buf` (`len` bytes).
/// `*needed` (if not NULL) receives the bytes the name needs including its NUL, also when
/// `buf` is too small (PTYFLOW_ERR_LENGTH, nothing written) or NULL with `len` 0 (a size
/// query, PTYFLOW_ERR_LENGTH). PTYFLOW_ERR_NOT_FOUND when `i` >= count.
///
/// # Safety
/// `p` is NULL or a live handle; `buf` is NULL or writable for `len` bytes; `needed` is NULL or
/// writable for one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptyflow_result_name(
    p: *const PtyflowPipeline,
    i: usize,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> c_int {
    entry(|| {
        // SAFETY: NULL or a live handle (caller's promise).
        let p = unsafe { handle(p, "p") }?;
        let state = p.lock()?;
        let results = finished(&state)?;
        let r = results.get(i).ok_or_else(|| {
            CapiError::new(
                PTYFLOW_ERR_NOT_FOUND,
                format!("result {i}: there are {} results", results.len()),
            )
        })?;
        let need = r.name.len() + 1;
        if !needed.is_null() {
            // SAFETY: non-NULL and writable (caller's promise).
            unsafe { needed.write(need) };
        }
        if buf.is_null() || len < need {
            return Err(CapiError::new(
                PTYFLOW_ERR_LENGTH,
                format!("result {i}'s name needs {need} bytes, the buffer has {len}"),
            ));
        }
        // SAFETY: `buf` is writable for `len` >= need bytes (caller's promise) and cannot
        // overlap the name, which ptyflow owns.
        unsafe {
            std::ptr::copy_nonoverlapping(r.name.as_ptr().cast::<c_char>(), buf, need - 1);
            buf.add(need - 1).write(0);
        }
        Ok(PTYFLOW_OK)
    })
}

/// The shape of result `name` (C order, outermost first). `*ndim` (if not NULL) receives the
/// number of dimensions always; `dims` receives them when `max_dims` >= ndim, else
/// PTYFLOW_ERR_LENGTH and nothing is written to `dims` (call with `max_dims` 0 to ask for
/// ndim). Results: "dose", "virtual_bf", "virtual_adf_IN_OUT", "virtual_dpc" [rows, cols, 4],
/// "virtual_dpc_sum", "virtual_rings…" [rows, cols, N], "virtual_com_x", "virtual_com_y"
/// [rows, cols]; "mean", "var" [binned height, binned width]; with a reconstruction "object"
/// and "probe" [.., 2] (complex as interleaved re, im).
///
/// # Safety
/// `p` is NULL or a live handle; `name` is NULL or NUL-terminated; `dims` is NULL or writable
/// for `max_dims` values; `ndim` is NULL or writable for one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptyflow_result_shape(
    p: *const PtyflowPipeline,
    name: *const c_char,
    dims: *mut usize,
    max_dims: usize,
    ndim: *mut usize,
) -> c_int {
    entry(|| {
        // SAFETY: NULL or a live handle (caller's promise).
        let p = unsafe { handle(p, "p") }?;
        // SAFETY: NULL or NUL-terminated (caller's promise).
        let name = unsafe { c_str(name, "name") }?;
        p.with_result(name, |r| {
            let n = r.shape.len();
            if !ndim.is_null() {
                // SAFETY: non-NULL and writable (caller's promise).
                unsafe { ndim.write(n) };
            }
            if max_dims < n || dims.is_null() {
                return Err(CapiError::new(
                    PTYFLOW_ERR_LENGTH,
                    format!("result `{name}` has {n} dimensions, `dims` has room for {max_dims}"),
                ));
            }
            // SAFETY: `dims` is writable for `max_dims` >= n values (caller's promise) and
            // does not overlap the shape, which ptyflow owns.
            unsafe { std::ptr::copy_nonoverlapping(r.shape.as_ptr(), dims, n) };
            Ok(PTYFLOW_OK)
        })
    })
}

/// Number of `float` values of result `name` (the product of its shape).
///
/// # Safety
/// `p` is NULL or a live handle; `name` is NULL or NUL-terminated; `len` is NULL or writable
/// for one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptyflow_result_len(
    p: *const PtyflowPipeline,
    name: *const c_char,
    len: *mut usize,
) -> c_int {
    entry(|| {
        // SAFETY: NULL or a live handle (caller's promise).
        let p = unsafe { handle(p, "p") }?;
        // SAFETY: NULL or NUL-terminated (caller's promise).
        let name = unsafe { c_str(name, "name") }?;
        if len.is_null() {
            return Err(CapiError::null("len"));
        }
        p.with_result(name, |r| {
            // SAFETY: non-NULL and writable (caller's promise).
            unsafe { len.write(r.data.len()) };
            Ok(PTYFLOW_OK)
        })
    })
}

/// Copies result `name` into `out`, which must hold exactly `len` floats = ptyflow_result_len
/// (else PTYFLOW_ERR_LENGTH and nothing is written). C order. A scan position whose frame was
/// never pushed holds 0 (compare counters.processed with rows * cols to know the scan is whole).
///
/// # Safety
/// `p` is NULL or a live handle; `name` is NULL or NUL-terminated; `out` is NULL or writable
/// for `len` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptyflow_result_f32(
    p: *const PtyflowPipeline,
    name: *const c_char,
    out: *mut f32,
    len: usize,
) -> c_int {
    entry(|| {
        // SAFETY: NULL or a live handle (caller's promise).
        let p = unsafe { handle(p, "p") }?;
        // SAFETY: NULL or NUL-terminated (caller's promise).
        let name = unsafe { c_str(name, "name") }?;
        if out.is_null() {
            return Err(CapiError::null("out"));
        }
        p.with_result(name, |r| {
            if len != r.data.len() {
                return Err(CapiError::new(
                    PTYFLOW_ERR_LENGTH,
                    format!(
                        "result `{name}` has {} floats (shape {:?}), the buffer {len}",
                        r.data.len(),
                        r.shape
                    ),
                ));
            }
            // SAFETY: `out` is writable for `len` floats (caller's promise), which equals the
            // data's length; the buffers cannot overlap (ptyflow owns `data`).
            unsafe { std::ptr::copy_nonoverlapping(r.data.as_ptr(), out, len) };
            Ok(PTYFLOW_OK)
        })
    })
}

/// Stops the pipeline's threads (discarding unfinished work when ptyflow_finish was not called)
/// and releases the handle. NULL is accepted and ignored.
///
/// # Safety
/// `p` is NULL or a live handle from ptyflow_create*, not used by any other thread during or
/// after this call, and not freed twice.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptyflow_free(p: *mut PtyflowPipeline) {
    if p.is_null() {
        return;
    }
    // SAFETY: a handle made by Box::into_raw in `store`, freed once (caller's promise).
    let boxed = unsafe { Box::from_raw(p) };
    // Joining the threads runs their destructors; nothing may unwind into C.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(boxed)));
}

/// Copies the message of the last failing call on this thread (UTF-8, NUL-terminated,
/// truncated at a character boundary to fit `len` bytes) into `buf`. Returns the message's
/// full length in bytes without the NUL (0 when no call on this thread has failed), so a
/// result >= `len` means it was truncated. `buf` may be NULL with `len` 0 (a size query).
/// Successful calls do not clear the message.
///
/// # Safety
/// `buf` is NULL or writable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ptyflow_last_error_message(buf: *mut c_char, len: usize) -> usize {
    let copied = catch_unwind(|| {
        LAST_ERROR.with(|e| {
            let msg = e.borrow();
            if !buf.is_null() && len > 0 {
                let mut n = msg.len().min(len - 1);
                while !msg.is_char_boundary(n) {
                    n -= 1;
                }
                // SAFETY: `buf` is writable for `len` > n bytes (caller's promise); the message
                // is ptyflow's own string, so they cannot overlap.
                unsafe {
                    std::ptr::copy_nonoverlapping(msg.as_ptr().cast::<c_char>(), buf, n);
                    buf.add(n).write(0);
                }
            }
            msg.len()
        })
    });
    copied.unwrap_or(0)
}

/// A static name for a status code ("PTYFLOW_OK", "PTYFLOW_ERR_LENGTH", …; "unknown" for
/// other values). Never NULL; never freed.
#[unsafe(no_mangle)]
pub extern "C" fn ptyflow_status_name(status: c_int) -> *const c_char {
    let name: &'static CStr = match status {
        PTYFLOW_OK => c"PTYFLOW_OK",
        PTYFLOW_QUEUE_FULL => c"PTYFLOW_QUEUE_FULL",
        PTYFLOW_ERR_NULL => c"PTYFLOW_ERR_NULL",
        PTYFLOW_ERR_CONFIG => c"PTYFLOW_ERR_CONFIG",
        PTYFLOW_ERR_LENGTH => c"PTYFLOW_ERR_LENGTH",
        PTYFLOW_ERR_INDEX => c"PTYFLOW_ERR_INDEX",
        PTYFLOW_ERR_STATE => c"PTYFLOW_ERR_STATE",
        PTYFLOW_ERR_NOT_FOUND => c"PTYFLOW_ERR_NOT_FOUND",
        PTYFLOW_ERR_UNSUPPORTED => c"PTYFLOW_ERR_UNSUPPORTED",
        PTYFLOW_ERR_PIPELINE => c"PTYFLOW_ERR_PIPELINE",
        PTYFLOW_ERR_PANIC => c"PTYFLOW_ERR_PANIC",
        _ => c"unknown",
    };
    name.as_ptr()
}

/// ptyflow's version ("0.1.0"), static, never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn ptyflow_version() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => panic!("the version has no NUL inside"),
        };
    VERSION.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last() -> String {
        let mut buf = [0 as c_char; 512];
        // SAFETY: `buf` is writable for its length.
        unsafe { ptyflow_last_error_message(buf.as_mut_ptr(), buf.len()) };
        // SAFETY: the function NUL-terminates within `buf`.
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_code_and_a_message() {
        let code = entry(|| panic!("boom at frame 3"));
        assert_eq!(code, PTYFLOW_ERR_PANIC);
        assert!(last().contains("boom at frame 3"), "{}", last());
    }

    #[test]
    fn last_error_truncates_at_a_character_boundary() {
        set_last_error("ab×cd".into()); // '×' is two bytes: a b 0xC3 0x97 c d
        let mut buf = [0x7f as c_char; 4];
        // SAFETY: `buf` is writable for its length.
        let full = unsafe { ptyflow_last_error_message(buf.as_mut_ptr(), buf.len()) };
        assert_eq!(full, 6);
        // Room for 3 bytes: "ab" and the NUL, not half of '×'.
        assert_eq!(buf[..3], [b'a' as c_char, b'b' as c_char, 0]);
        // SAFETY: a size query (NULL, 0) writes nothing.
        let needed = unsafe { ptyflow_last_error_message(std::ptr::null_mut(), 0) };
        assert_eq!(needed, 6);
    }

    fn create_json(json: &str) -> (c_int, *mut PtyflowPipeline) {
        let text = std::ffi::CString::new(json).unwrap();
        let mut p = std::ptr::null_mut();
        // SAFETY: a NUL-terminated string and a writable out pointer.
        let code = unsafe { ptyflow_create_json(text.as_ptr(), &mut p) };
        (code, p)
    }

    #[test]
    fn recon_is_validated() {
        let base = r#""source": {"push": {"width": 8, "height": 8, "pixel": "u16"}}, "scan": {"shape": [2, 2]}"#;
        let optics = r#""optics": {"kv": 80, "alpha_mrad": 25, "defocus_angstrom": 0,
            "mrad_per_px": 1.5, "step_angstrom": 0.4}"#;
        let (code, p) = create_json(&format!(
            r#"{{{base}, {optics}, "recon": {{"alpha": 0.5}}}}"#
        ));
        assert_eq!(code, PTYFLOW_ERR_CONFIG, "{}", last());
        assert!(p.is_null());
        assert!(last().contains("alpha"), "unknown option named: {}", last());
        // 8 px at 1.5 mrad/px reach ±6 mrad: a 25 mrad aperture does not fit the window.
        let (code, _) = create_json(&format!(r#"{{{base}, {optics}, "recon": {{}}}}"#));
        assert_eq!(code, PTYFLOW_ERR_CONFIG, "{}", last());
        assert!(last().contains("Nyquist"), "{}", last());
        let (code, _) = create_json(&format!(
            r#"{{{base}, "optics": {{"kv": 80, "alpha_mrad": 25, "defocus_angstrom": 0, "step_angstrom": 0.4}}, "recon": {{}}}}"#
        ));
        assert_eq!(code, PTYFLOW_ERR_CONFIG);
        assert!(last().contains("optics.mrad_per_px"), "{}", last());
    }

    #[test]
    fn a_pipeline_runs_from_rust_through_the_c_entry_points() {
        let (code, p) = create_json(
            r#"{"source": {"push": {"width": 8, "height": 6, "pixel": "u8"}},
                "scan": {"shape": [2, 3]}, "reduce": {"virtual": ["bf"], "center": [3.5, 2.5],
                "bf_radius": 2}, "run": {"threads": 1}}"#,
        );
        assert_eq!(code, PTYFLOW_OK, "{}", last());
        let frame = [1u8; 48];
        for i in 0..5u64 {
            // SAFETY: a live handle and a readable frame of the stated length.
            let code = unsafe { ptyflow_push(p, frame.as_ptr().cast(), frame.len(), i) };
            assert_eq!(code, PTYFLOW_OK);
        }
        // SAFETY: a live handle.
        assert_eq!(unsafe { ptyflow_finish(p) }, PTYFLOW_OK);
        let mut dose = [0f32; 6];
        // SAFETY: a live handle, a NUL-terminated name, a buffer of 6 floats.
        let code = unsafe { ptyflow_result_f32(p, c"dose".as_ptr(), dose.as_mut_ptr(), 6) };
        assert_eq!(code, PTYFLOW_OK);
        // Position 5 got no frame: 0, as in `ptyflow replay` (the reducer does not track arrivals).
        assert_eq!(dose, [48.0, 48.0, 48.0, 48.0, 48.0, 0.0]);
        // SAFETY: a live handle, freed once.
        unsafe { ptyflow_free(p) };
    }

    #[test]
    fn issue_13_push_compression_through_the_c_entry_points() {
        // 8 × 6 frames, the disc at (3.5, 2.5) r = 2 (12 px), the dark field around it
        // (36 px); frame i is flat with value i + 1. Flat frames lie in the span of the
        // pistons: c_bf[0] = v·√12, c_df[0] = v·√36, every other value 0.
        let json = |basis: &str, disc: &str| {
            format!(
                r#"{{"source": {{"push": {{"width": 8, "height": 6, "pixel": "u8"}}}},
                    "scan": {{"shape": [2, 3]}}, "reduce": {{{disc}}},
                    "compress": {{"basis": "{basis}", "dark_field": 1}},
                    "run": {{"threads": 2, "batch_frames": 2}}}}"#
            )
        };
        let disc = r#""center": [3.5, 2.5], "bf_radius": 2"#;
        let (code, p) = create_json(&json("zernike:3", disc));
        assert_eq!(code, PTYFLOW_OK, "{}", last());
        for i in 0..6u8 {
            let frame = [i + 1; 48];
            // SAFETY: a live handle and a readable frame of the stated length.
            let code = unsafe { ptyflow_push(p, frame.as_ptr().cast(), frame.len(), i.into()) };
            assert_eq!(code, PTYFLOW_OK);
        }
        // SAFETY: a live handle.
        assert_eq!(unsafe { ptyflow_finish(p) }, PTYFLOW_OK, "{}", last());
        let (mut dims, mut ndim) = ([0usize; 4], 0usize);
        // SAFETY: a live handle, a NUL-terminated name, writable dims and ndim.
        let code = unsafe {
            ptyflow_result_shape(p, c"coefficients".as_ptr(), dims.as_mut_ptr(), 4, &mut ndim)
        };
        assert_eq!(code, PTYFLOW_OK, "{}", last());
        assert_eq!(dims[..ndim], [2, 3, 6]);
        let mut c = [0f32; 36];
        // SAFETY: a live handle, a NUL-terminated name, a buffer of 36 floats.
        let code = unsafe { ptyflow_result_f32(p, c"coefficients".as_ptr(), c.as_mut_ptr(), 36) };
        assert_eq!(code, PTYFLOW_OK);
        for (i, row) in c.chunks_exact(6).enumerate() {
            let v = (i + 1) as f32;
            let want = [v * 12f32.sqrt(), 0.0, 0.0, v * 6.0, 0.0, 0.0];
            for (k, (&g, &w)) in row.iter().zip(&want).enumerate() {
                // The perpendicular parts are differences of squares ~ v²·36.
                let tol = if k >= 4 {
                    1e-5 * v * v * 36.0
                } else {
                    1e-5 * v * 6.0
                };
                assert!((g - w).abs() <= tol, "frame {i} value {k}: {g} vs {w}");
            }
        }
        let mut angle = [1f32; 6];
        // SAFETY: a live handle, a NUL-terminated name, a buffer of 6 floats.
        let code = unsafe { ptyflow_result_f32(p, c"angle".as_ptr(), angle.as_mut_ptr(), 6) };
        assert_eq!(code, PTYFLOW_OK);
        assert!(angle.iter().all(|a| a.abs() < 2e-3), "{angle:?}");
        // SAFETY: a live handle, freed once.
        unsafe { ptyflow_free(p) };

        // Bad input names the field.
        let (code, _) = create_json(&json("patterns:2", disc));
        assert_eq!(code, PTYFLOW_ERR_CONFIG);
        assert!(last().contains("compress.basis"), "{}", last());
        let (code, _) = create_json(&json("zernike:3", ""));
        assert_eq!(code, PTYFLOW_ERR_CONFIG);
        assert!(last().contains("reduce.center"), "{}", last());
        let (code, _) = create_json(&json("zernike:13", disc));
        assert_eq!(code, PTYFLOW_ERR_CONFIG);
        assert!(last().contains("compress.basis"), "{}", last());
    }
}
