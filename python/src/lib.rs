//! `ptyflow._ptyflow`: the native half of the Python package. It only translates: a
//! configuration arrives as the JSON of a [`JobConfig`] (built from keyword arguments by
//! `ptyflow/__init__.py`), numpy arrays are borrowed without copying where their layout
//! allows, the job layer ([`ptyflow::job`]) does the work with the GIL released, and its
//! results come back as numpy arrays plus the report's JSON. Library errors become Python
//! exceptions carrying the library's message ([`to_py_err`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use num_complex::Complex32;
use numpy::ndarray::{ArrayView4, s};
use numpy::{
    Element, PyArray1, PyArray2, PyArray4, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use ptyflow::Error;
use ptyflow::job::{
    self, ContiguousFrames, FrameSet, Hooks, JobConfig, JobOutcome, Progress, PushSession,
    PushSource, Source,
};
use ptyflow::pipeline::push::{CounterReader, PushError};
use ptyflow::sim::{self, Dose, DumpFormat, ObjectKind, Preset, SimParams};
use ptyflow::source::{Dump, OpenOptions, PixelKind};

/// A library error as the Python exception its kind calls for: bad values (`Param`, `Core`,
/// `Memory`) are `ValueError`; files (`Io`, `File`, `Format`, a dump that shrank while it was
/// read) are `OSError` (with the
/// errno of an I/O error, so a missing file is `FileNotFoundError`); an interrupt is
/// `KeyboardInterrupt`; a failed pipeline stage is `RuntimeError`.
fn to_py_err(e: Error) -> PyErr {
    let msg = e.to_string();
    match &e {
        Error::Param { .. } | Error::Core { .. } | Error::Memory { .. } => {
            PyValueError::new_err(msg)
        }
        Error::Io { source, .. } => match source.raw_os_error() {
            Some(errno) => PyOSError::new_err((errno, msg)),
            None => PyOSError::new_err(msg),
        },
        Error::File { .. } | Error::Format { .. } | Error::Changed(_) | Error::Live { .. } => {
            PyOSError::new_err(msg)
        }
        Error::Interrupted(_) => PyKeyboardInterrupt::new_err(msg),
        Error::Pipeline(_) => PyRuntimeError::new_err(msg),
    }
}

/// Parses the configuration the Python half built; errors name the field.
fn parse_config(config_json: &str) -> PyResult<JobConfig> {
    JobConfig::from_json(config_json).map_err(to_py_err)
}

/// The arrays of a finished job by name (`mean`, `var`, `dose`, `virtual_*`, and `object`,
/// `probe` as complex64 with a reconstruction) and the report as JSON (`report.json`).
fn outcome_to_py(py: Python<'_>, outcome: JobOutcome) -> PyResult<(Bound<'_, PyDict>, String)> {
    let arrays = PyDict::new(py);
    let report = serde_json::to_string(&outcome.report)
        .map_err(|e| PyRuntimeError::new_err(format!("encoding the report: {e}")))?;
    for a in outcome.arrays {
        let values = PyArray1::from_vec(py, a.data).reshape(a.shape.as_slice())?;
        arrays.set_item(a.name, values)?;
    }
    if let Some(recon) = &outcome.recon {
        let engine = &recon.engine;
        let m = engine.window();
        let object = PyArray1::from_slice(py, engine.object()).reshape(engine.object_shape())?;
        let probe = PyArray1::from_slice(py, engine.probe()).reshape([m, m])?;
        arrays.set_item("object", object)?;
        arrays.set_item("probe", probe)?;
    }
    Ok((arrays, report))
}

/// Hooks whose progress callback looks for Ctrl-C: the job layer reports progress from the
/// calling thread between batches and sweeps, so a SIGINT that Python has noted while the
/// GIL was released stops the replay there (the job keeps and writes what it computed).
fn interruptible() -> Hooks {
    let interrupt = Arc::new(AtomicBool::new(false));
    Hooks {
        progress: Some(Arc::new(SignalWatch(Arc::clone(&interrupt)))),
        interrupt,
    }
}

/// Sets the interrupt flag when Python has a pending signal (see [`interruptible`]).
struct SignalWatch(Arc<AtomicBool>);

impl Progress for SignalWatch {
    fn start(&self, _what: &str, _total: u64) {}
    fn set(&self, _done: u64) {
        // `check_signals` runs the Python handlers; the default SIGINT handler raises
        // KeyboardInterrupt, which is raised again once the job has ended.
        if Python::attach(|py| py.check_signals().is_err()) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    fn finish(&self) {}
}

/// Runs `work` with the GIL released and Ctrl-C watched; raises `KeyboardInterrupt` after
/// an interrupted job (whose outputs, with `out`, are written).
fn run_job<'py>(
    py: Python<'py>,
    work: impl FnOnce(&Hooks) -> ptyflow::Result<JobOutcome> + Send,
) -> PyResult<(Bound<'py, PyDict>, String)> {
    let hooks = interruptible();
    let outcome = py.detach(|| work(&hooks)).map_err(to_py_err)?;
    if let Some(changed) = &outcome.report.counters.source_changed {
        // As the CLI does: the outputs of the frames before it are written, then the error.
        return Err(to_py_err(Error::Changed(changed.clone())));
    }
    if hooks.interrupt.load(Ordering::Relaxed) || outcome.report.counters.interrupted {
        return Err(PyKeyboardInterrupt::new_err(format!(
            "interrupted after {} frames",
            outcome.report.counters.frames_processed
        )));
    }
    outcome_to_py(py, outcome)
}

/// Replays the dump of a configuration (JSON with `source.dump`); see `ptyflow.replay`.
#[pyfunction]
fn replay<'py>(py: Python<'py>, config_json: &str) -> PyResult<(Bound<'py, PyDict>, String)> {
    let config = parse_config(config_json)?;
    run_job(py, |hooks| job::replay(&config, hooks))
}

/// A 4D array's frames, gathered one at a time: for arrays numpy does not hold C-contiguous.
struct StridedFrames<'a, T> {
    view: ArrayView4<'a, T>,
    geometry: PushSource,
}

impl<T: bytemuck::Pod + Sync> FrameSet for StridedFrames<'_, T> {
    fn geometry(&self) -> PushSource {
        self.geometry
    }
    fn len(&self) -> usize {
        self.view.shape()[0] * self.view.shape()[1]
    }
    fn frame<'a>(&'a self, index: usize, scratch: &'a mut [u8]) -> &'a [u8] {
        let cols = self.view.shape()[1];
        let frame = self.view.slice(s![index / cols, index % cols, .., ..]);
        let size = std::mem::size_of::<T>();
        for (dst, v) in scratch.chunks_exact_mut(size).zip(frame.iter()) {
            dst.copy_from_slice(bytemuck::bytes_of(v));
        }
        scratch
    }
}

/// Reduces a typed 4D array: borrowed as it is when C-contiguous, else frame by frame.
fn reduce_typed<'py, T: Element + bytemuck::Pod + Sync>(
    py: Python<'py>,
    array: &Bound<'py, PyArray4<T>>,
    pixel: PixelKind,
    config: JobConfig,
) -> PyResult<(Bound<'py, PyDict>, String)> {
    let array = array
        .try_readonly()
        .map_err(|e| PyValueError::new_err(format!("the array: {e}")))?;
    let shape = array.shape();
    let geometry = PushSource {
        width: shape[3],
        height: shape[2],
        pixel,
    };
    match array.as_slice() {
        Ok(pixels) => {
            let frames =
                ContiguousFrames::new(geometry, bytemuck::cast_slice(pixels)).map_err(to_py_err)?;
            run_job(py, |hooks| job::reduce_frames(&config, &frames, hooks))
        }
        Err(_) => {
            let frames = StridedFrames {
                view: array.as_array(),
                geometry,
            };
            run_job(py, |hooks| job::reduce_frames(&config, &frames, hooks))
        }
    }
}

/// Reduces (and reconstructs) an in-memory 4D array `[scan_y, scan_x, det_y, det_x]` of
/// u8, u16, u32 or f32; see `ptyflow.reduce_array`.
#[pyfunction]
fn reduce_array<'py>(
    py: Python<'py>,
    array: &Bound<'py, PyAny>,
    config_json: &str,
) -> PyResult<(Bound<'py, PyDict>, String)> {
    let config = parse_config(config_json)?;
    if let Ok(a) = array.cast::<PyArray4<u8>>() {
        reduce_typed(py, a, PixelKind::U8, config)
    } else if let Ok(a) = array.cast::<PyArray4<u16>>() {
        reduce_typed(py, a, PixelKind::U16, config)
    } else if let Ok(a) = array.cast::<PyArray4<u32>>() {
        reduce_typed(py, a, PixelKind::U32, config)
    } else if let Ok(a) = array.cast::<PyArray4<f32>>() {
        reduce_typed(py, a, PixelKind::F32, config)
    } else {
        Err(PyValueError::new_err(
            "expected a 4-D numpy array [scan_y, scan_x, det_y, det_x] of uint8, uint16, \
             uint32 or float32 in native byte order",
        ))
    }
}

/// What a dump holds (format, geometry, pixel type, frames, scan, layout), as JSON.
#[pyfunction]
fn info(py: Python<'_>, path: std::path::PathBuf) -> PyResult<String> {
    let dump = py
        .detach(|| Dump::open(&path, &OpenOptions::default()))
        .map_err(to_py_err)?;
    let i = dump.info();
    Ok(serde_json::json!({
        "path": i.path.display().to_string(),
        "format": i.format.name(),
        "width": i.width,
        "height": i.height,
        "dtype": i.pixel.name(),
        "stored_dtype": i.stored_dtype,
        "frames": i.frames,
        "scan": i.scan.map(|(r, c)| [r, c]),
        "declared_frames": i.declared_frames,
        "file_bytes": i.file_bytes,
        "header_bytes": i.header_bytes,
        "frame_header_bytes": i.frame_header_bytes,
        "frame_bytes": i.frame_bytes,
        "frame_footer_bytes": i.frame_footer_bytes,
        "zero_copy": i.zero_copy,
        "notes": i.notes,
    })
    .to_string())
}

/// A push session: frames handed in one at a time (`ptyflow.Pipeline` subclasses it).
///
/// Every method may be called from any Python thread. The session sits behind a mutex
/// taken with the GIL released; the counters are atomics read without it, so a monitoring
/// thread never waits on a thread blocked in `push`.
#[pyclass(subclass, frozen, module = "ptyflow._ptyflow", name = "Pipeline")]
struct NativePipeline {
    session: Mutex<Option<PushSession>>,
    counters: CounterReader,
    geometry: PushSource,
    positions: usize,
    next_index: AtomicUsize,
}

/// The error of a call on a finished pipeline.
fn finished() -> PyErr {
    PyRuntimeError::new_err("the pipeline is finished")
}

impl NativePipeline {
    /// Pushes one frame's bytes with the GIL released: `True` if taken, `False` if a
    /// non-blocking pipeline's queue was full.
    fn push_bytes(&self, py: Python<'_>, index: usize, bytes: &[u8]) -> PyResult<bool> {
        py.detach(|| {
            let mut guard = self.session.lock().map_err(|_| poisoned())?;
            let session = guard.as_mut().ok_or_else(finished)?;
            match session.push(index, bytes) {
                Ok(()) => Ok(true),
                Err(PushError::QueueFull) => Ok(false),
                Err(PushError::Invalid(e)) => Err(to_py_err(e)),
            }
        })
    }

    /// Checks a frame's shape and pushes it: borrowed when C-contiguous, else copied once.
    fn push_typed<T: Element + bytemuck::Pod>(
        &self,
        py: Python<'_>,
        frame: &Bound<'_, PyArray2<T>>,
        index: usize,
    ) -> PyResult<bool> {
        let frame: PyReadonlyArray2<'_, T> = frame
            .try_readonly()
            .map_err(|e| PyValueError::new_err(format!("the frame: {e}")))?;
        let (h, w) = (self.geometry.height, self.geometry.width);
        if frame.shape() != [h, w] {
            return Err(PyValueError::new_err(format!(
                "frame of shape {:?}, expected ({h}, {w}) (height, width)",
                frame.shape()
            )));
        }
        match frame.as_slice() {
            Ok(pixels) => self.push_bytes(py, index, bytemuck::cast_slice(pixels)),
            Err(_) => {
                let copy: Vec<T> = frame.as_array().iter().copied().collect();
                self.push_bytes(py, index, bytemuck::cast_slice(&copy))
            }
        }
    }
}

/// A mutex poisoned by a panic in an earlier call.
fn poisoned() -> PyErr {
    PyRuntimeError::new_err("an earlier call on this pipeline panicked (a bug in ptyflow)")
}

#[pymethods]
impl NativePipeline {
    /// Starts a push session from a configuration's JSON (with `source.push`).
    #[new]
    fn new(py: Python<'_>, config_json: &str) -> PyResult<Self> {
        let config = parse_config(config_json)?;
        let Source::Push(geometry) = config.source else {
            return Err(PyValueError::new_err(
                "parameter `source`: a pipeline takes pushed frames: give `source.push`",
            ));
        };
        let session = py
            .detach(|| PushSession::start(&config))
            .map_err(to_py_err)?;
        Ok(NativePipeline {
            counters: session.counter_reader(),
            positions: session.positions(),
            session: Mutex::new(Some(session)),
            geometry,
            next_index: AtomicUsize::new(0),
        })
    }

    /// Pushes one 2-D frame `[height, width]` of the pipeline's dtype for scan position
    /// `index` (default: one after the last frame pushed without an index).
    #[pyo3(signature = (frame, index = None))]
    fn push(
        &self,
        py: Python<'_>,
        frame: &Bound<'_, PyAny>,
        index: Option<usize>,
    ) -> PyResult<bool> {
        let index = index.unwrap_or_else(|| self.next_index.fetch_add(1, Ordering::Relaxed));
        let wrong = || {
            PyValueError::new_err(format!(
                "expected a 2-D numpy array of {} in native byte order",
                self.geometry.pixel.name()
            ))
        };
        match self.geometry.pixel {
            PixelKind::U8 => self.push_typed(
                py,
                frame.cast::<PyArray2<u8>>().map_err(|_| wrong())?,
                index,
            ),
            PixelKind::U16 => self.push_typed(
                py,
                frame.cast::<PyArray2<u16>>().map_err(|_| wrong())?,
                index,
            ),
            PixelKind::U32 => self.push_typed(
                py,
                frame.cast::<PyArray2<u32>>().map_err(|_| wrong())?,
                index,
            ),
            PixelKind::F32 => self.push_typed(
                py,
                frame.cast::<PyArray2<f32>>().map_err(|_| wrong())?,
                index,
            ),
        }
    }

    /// Waits for every stage, runs the reconstruction's sweeps (GIL released) and returns
    /// the arrays and the report's JSON.
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyDict>, String)> {
        let session = py
            .detach(|| self.session.lock().map(|mut s| s.take()).map_err(|_| ()))
            .map_err(|_| poisoned())?
            .ok_or_else(finished)?;
        let outcome = py.detach(|| session.finish(None)).map_err(to_py_err)?;
        outcome_to_py(py, outcome)
    }

    /// Frames pushed, rejected (non-blocking, queue full), processed and consumed (by the
    /// reconstruction) so far.
    #[getter]
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.counters.get();
        let d = PyDict::new(py);
        d.set_item("pushed", c.pushed)?;
        d.set_item("rejected", c.rejected)?;
        d.set_item("processed", c.processed)?;
        d.set_item("consumed", c.consumed)?;
        Ok(d)
    }

    /// `(height, width)` of a frame.
    #[getter]
    fn frame_shape(&self) -> (usize, usize) {
        (self.geometry.height, self.geometry.width)
    }

    /// Pixel type of a frame: `u8`, `u16`, `u32` or `f32`.
    #[getter]
    fn pixel(&self) -> &'static str {
        self.geometry.pixel.name()
    }

    /// Positions of the scan (frame indices run over `0 .. positions`).
    #[getter]
    fn positions(&self) -> usize {
        self.positions
    }
}

/// The parameters of `ptyflow.simulate`: a preset with the given values overriding it.
#[allow(clippy::too_many_arguments)]
fn sim_params(
    preset: &str,
    scan: Option<[usize; 2]>,
    step: Option<f64>,
    scan_rotation: Option<f64>,
    detector: Option<usize>,
    mrad_per_px: Option<f64>,
    kv: Option<f64>,
    alpha: Option<f64>,
    defocus: Option<f64>,
    cs: Option<f64>,
    dose_per_pattern: Option<f64>,
    dose: Option<f64>,
    seed: Option<u64>,
    object: Option<&str>,
    absorption: Option<f64>,
    oversample: Option<usize>,
) -> PyResult<SimParams> {
    let preset = match preset {
        "mos2-defocus" => Preset::Mos2Defocus,
        "mos2-focus" => Preset::Mos2Focus,
        "mos2-focus-defocus" => Preset::Mos2FocusDefocus,
        other => {
            return Err(PyValueError::new_err(format!(
                "parameter `preset`: `{other}`, expected mos2-defocus, mos2-focus or \
                 mos2-focus-defocus"
            )));
        }
    };
    let mut p = SimParams::preset(preset);
    let set = |dst: &mut f64, v: Option<f64>| {
        if let Some(v) = v {
            *dst = v;
        }
    };
    if let Some(scan) = scan {
        p.scan = scan;
    }
    set(&mut p.step_angstrom, step);
    set(&mut p.scan_rotation_deg, scan_rotation);
    set(&mut p.mrad_per_px, mrad_per_px);
    set(&mut p.probe.kv, kv);
    set(&mut p.probe.alpha_mrad, alpha);
    set(&mut p.probe.defocus_angstrom, defocus);
    set(&mut p.probe.cs_mm, cs);
    set(&mut p.absorption, absorption);
    if let Some(m) = detector {
        p.detector_px = m;
    }
    if let Some(s) = oversample {
        p.oversample = s;
    }
    match (dose_per_pattern, dose) {
        (Some(_), Some(_)) => {
            return Err(PyValueError::new_err(
                "give `dose` (e⁻/Å²) or `dose_per_pattern` (electrons), not both",
            ));
        }
        (Some(n), None) => p.dose = Dose::PerPattern(n),
        (None, Some(d)) => p.dose = Dose::PerArea(d),
        (None, None) => {}
    }
    if let Some(seed) = seed {
        p.seed = seed;
    }
    match object {
        None => {}
        Some("mos2") => p.object = ObjectKind::Mos2,
        Some("random") => p.object = ObjectKind::Random,
        Some(other) => {
            return Err(PyValueError::new_err(format!(
                "parameter `object`: `{other}`, expected mos2 or random"
            )));
        }
    }
    p.validate().map_err(to_py_err)?;
    Ok(p)
}

/// Simulates a dataset (see `ptyflow.simulate`): its arrays by name, `meta.json` as JSON,
/// and the dump's path when `out` was given.
#[pyfunction]
#[pyo3(signature = (
    preset = "mos2-defocus", scan = None, step = None, scan_rotation = None, detector = None,
    mrad_per_px = None, kv = None, alpha = None, defocus = None, cs = None,
    dose_per_pattern = None, dose = None, seed = None, object = None, absorption = None,
    oversample = None, out = None, format = "raw", png = false
))]
#[allow(clippy::too_many_arguments)]
fn simulate<'py>(
    py: Python<'py>,
    preset: &str,
    scan: Option<[usize; 2]>,
    step: Option<f64>,
    scan_rotation: Option<f64>,
    detector: Option<usize>,
    mrad_per_px: Option<f64>,
    kv: Option<f64>,
    alpha: Option<f64>,
    defocus: Option<f64>,
    cs: Option<f64>,
    dose_per_pattern: Option<f64>,
    dose: Option<f64>,
    seed: Option<u64>,
    object: Option<&str>,
    absorption: Option<f64>,
    oversample: Option<usize>,
    out: Option<std::path::PathBuf>,
    format: &str,
    png: bool,
) -> PyResult<(Bound<'py, PyDict>, String, Option<String>)> {
    let p = sim_params(
        preset,
        scan,
        step,
        scan_rotation,
        detector,
        mrad_per_px,
        kv,
        alpha,
        defocus,
        cs,
        dose_per_pattern,
        dose,
        seed,
        object,
        absorption,
        oversample,
    )?;
    let format = match format {
        "raw" => DumpFormat::Raw,
        "mib" => DumpFormat::Mib,
        other => {
            return Err(PyValueError::new_err(format!(
                "parameter `format`: `{other}`, expected raw or mib"
            )));
        }
    };
    let (ds, dump) = py
        .detach(|| -> ptyflow::Result<_> {
            let ds = sim::simulate(&p)?;
            let dump = match &out {
                Some(dir) => {
                    let written = sim::write_dataset(&ds, dir, format)?;
                    if png {
                        sim::write_previews(&ds, dir)?;
                    }
                    Some(written.dump.display().to_string())
                }
                None => None,
            };
            Ok((ds, dump))
        })
        .map_err(to_py_err)?;
    let meta = ds.meta(format).to_string();
    let [rows, cols] = p.scan;
    let m = p.detector_px;
    let arrays = PyDict::new(py);
    let positions: Vec<f64> = ds.positions.iter().flatten().copied().collect();
    arrays.set_item(
        "frames",
        PyArray1::from_vec(py, ds.frames).reshape([rows, cols, m, m])?,
    )?;
    arrays.set_item(
        "object",
        PyArray1::from_vec(py, ds.object).reshape(ds.object_shape)?,
    )?;
    arrays.set_item("probe", PyArray1::from_vec(py, ds.probe).reshape([m, m])?)?;
    arrays.set_item(
        "positions",
        PyArray1::from_vec(py, positions).reshape([rows * cols, 2])?,
    )?;
    Ok((arrays, meta, dump))
}

/// A C-contiguous 2-D array's values and `[rows, cols]`.
fn contiguous<'a>(
    a: &'a PyReadonlyArray2<'_, Complex32>,
    what: &str,
) -> PyResult<(&'a [Complex32], [usize; 2])> {
    let shape = [a.shape()[0], a.shape()[1]];
    a.as_slice()
        .map(|values| (values, shape))
        .map_err(|_| PyValueError::new_err(format!("{what}: expected a C-contiguous array")))
}

/// Compares a reconstructed object with the truth (see `ptyflow.compare`); the metrics as
/// JSON.
#[pyfunction]
#[pyo3(signature = (recon, truth, crop_px = 0, register = true, remove_ramp = true))]
fn compare(
    py: Python<'_>,
    recon: PyReadonlyArray2<'_, Complex32>,
    truth: PyReadonlyArray2<'_, Complex32>,
    crop_px: usize,
    register: bool,
    remove_ramp: bool,
) -> PyResult<String> {
    let (r, rs) = contiguous(&recon, "recon")?;
    let (t, ts) = contiguous(&truth, "truth")?;
    let options = ptyflow::metrics::CompareOptions {
        crop_px,
        register,
        remove_ramp,
    };
    let c = py
        .detach(|| ptyflow::metrics::compare(r, rs, t, ts, &options))
        .map_err(to_py_err)?;
    let mut value = serde_json::to_value(&c)
        .map_err(|e| PyRuntimeError::new_err(format!("encoding the metrics: {e}")))?;
    value["resolution_px"] = c.frc.resolution_px().into();
    Ok(value.to_string())
}

/// The native module.
#[pymodule]
fn _ptyflow(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(info, m)?)?;
    m.add_function(wrap_pyfunction!(replay, m)?)?;
    m.add_function(wrap_pyfunction!(reduce_array, m)?)?;
    m.add_function(wrap_pyfunction!(simulate, m)?)?;
    m.add_function(wrap_pyfunction!(compare, m)?)?;
    m.add_class::<NativePipeline>()?;
    Ok(())
}
