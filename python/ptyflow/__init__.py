"""ptyflow: streaming 4D-STEM reduction and online ptychography, from Python.

The Python face of the ptyflow library (the CLI and the C API are the other two). It only
translates: keyword arguments become the library's job configuration (``JobConfig``, the
same JSON the C API takes), numpy arrays go in without copying where their layout allows,
and the job layer does the work with the GIL released.

Entry points:

- :func:`info` — what a dump holds.
- :func:`replay` — a recorded dump through the reduction and the optional reconstruction.
- :func:`reduce_array` — the same for a 4D numpy array ``[scan_y, scan_x, det_y, det_x]``.
- :class:`Pipeline` — frames pushed one at a time by a receive loop.
- :func:`simulate` and :func:`compare` — datasets with ground truth, and metrics.

Units everywhere: lengths in Å, angles in mrad, voltage in kV, Cs in mm, detector radii in
unbinned pixels (or mrad when ``optics={"mrad_per_px": ...}`` is given), dose in e⁻/Å² or
electrons per pattern.

Keyword configuration (shared by ``replay``, ``reduce_array`` and ``Pipeline``)
---------------------------------------------------------------------------------
Each section of the job configuration is a keyword taking a dict with the library's field
names: ``scan``, ``reduce``, ``optics``, ``recon``, ``run`` (and ``dump`` for ``replay``:
the raw layout ``format``, ``width``, ``height``, ``dtype``, ``big_endian``,
``header_bytes``, ``frame_header_bytes``, ``frame_footer_bytes``). Shorthands:

==============================  ==============================================
keyword                         configuration field
==============================  ==============================================
``scan=(rows, cols)``           ``scan.shape`` (rows are the slow axis)
``serpentine``, ``allow_partial``  ``scan.*``
``bin``, ``crop``, ``virtual``,  ``reduce.*`` (``virtual``: ``"bf"``,
``center``, ``bf_radius``,       ``"adf:INNER:OUTER"``, ``"rings:N:IN:OUT"``,
``radius_unit``                  ``"dpc"``, ``"com"``; ``center=(x, y)``)
``threads``, ``batch_frames``,   ``run.*``
``queue_batches``, ``blocking``,
``fps``, ``memory_budget``
``recon="epie"`` / ``"wf"``     ``recon={"method": ...}`` (``recon=True``: ePIE)
``out=DIR``                     ``out``: also write ``.npy``/``.png``/``report.json``
==============================  ==============================================

A key the library does not know raises ``ValueError`` with the library's message naming
it (``parameter `configuration`: unknown field `foo`, expected one of ...``); so does a
value it refuses (``parameter `reduce.bin`: 17: expected 1..=16``).

Errors: ``ValueError`` for bad parameters and budgets, ``OSError`` (``FileNotFoundError``
…) for files that cannot be read, ``KeyboardInterrupt`` when Ctrl-C stopped a job,
``RuntimeError`` for a failed pipeline stage or a call on a finished :class:`Pipeline`.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterator, Mapping, Optional

import numpy as np

from . import _ptyflow

__version__ = _ptyflow.__version__

__all__ = [
    "Pipeline",
    "Result",
    "compare",
    "info",
    "reduce_array",
    "replay",
    "simulate",
]

# Shorthand keywords and the section each belongs to.
_SHORTHANDS = {
    "serpentine": "scan",
    "allow_partial": "scan",
    "bin": "reduce",
    "crop": "reduce",
    "virtual": "reduce",
    "center": "reduce",
    "bf_radius": "reduce",
    "radius_unit": "reduce",
    "threads": "run",
    "batch_frames": "run",
    "queue_batches": "run",
    "blocking": "run",
    "fps": "run",
    "memory_budget": "run",
}

# numpy dtypes the library reads, by its pixel names.
_PIXELS = {
    np.dtype(np.uint8): "u8",
    np.dtype(np.uint16): "u16",
    np.dtype(np.uint32): "u32",
    np.dtype(np.float32): "f32",
}


class Result:
    """What a job produced.

    Attributes are numpy arrays named like the files ``ptyflow replay`` writes (``float32``
    unless said otherwise):

    - ``mean``, ``var``: mean and variance pattern ``[height, width]`` of the stage frame
      (after crop and binning), counts per pixel and counts².
    - ``dose``: total counts of each pattern ``[rows, cols]``.
    - ``virtual_bf``, ``virtual_adf``, ``virtual_com_x``/``_y`` (pixels from the disc
      centre), ``virtual_dpc`` and ``virtual_rings`` ``[rows, cols, N]`` with ``_sum``, …:
      one per detector, counts at each scan position.
    - ``object`` (complex64 ``[rows, cols]``, transmission function at
      ``report["object_pixel_angstrom"]`` Å per pixel) and ``probe`` (complex64 ``[M, M]``,
      Σ|P|² = 1) when the job reconstructed.

    ``report`` is the dict ``report.json`` holds; ``arrays`` maps every name to its array;
    ``result["virtual_bf"]`` works too.
    """

    def __init__(self, arrays: Dict[str, np.ndarray], report_json: str) -> None:
        self.arrays: Dict[str, np.ndarray] = dict(arrays)
        self.report: Dict[str, Any] = json.loads(report_json)

    def __getattr__(self, name: str) -> np.ndarray:
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(
            f"no result {name!r}; this job has {sorted(arrays)}"
        )

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def __contains__(self, name: object) -> bool:
        return name in self.arrays

    def __iter__(self) -> Iterator[str]:
        return iter(self.arrays)

    def __dir__(self) -> list:
        return sorted(set(super().__dir__()) | set(self.arrays))

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in self.arrays.items())
        return f"Result({shapes})"


def _plain(value: Any) -> Any:
    """numpy scalars, arrays and paths as what JSON can hold."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{value!r} ({type(value).__name__}) cannot be a configuration value")


def _job(config: Optional[Mapping[str, Any]], kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """The job configuration (as a dict of the library's sections) of a dict and keywords."""
    merged: Dict[str, Any] = dict(config or {})
    for key, value in kwargs.items():
        if key in merged:
            raise ValueError(f"parameter `{key}`: given twice")
        merged[key] = value
    job: Dict[str, Any] = {}
    shorthands: Dict[str, Dict[str, Any]] = {}
    for key, value in merged.items():
        if value is None or value is False and key == "recon":
            continue  # not given: the library's default
        if key in _SHORTHANDS:
            shorthands.setdefault(_SHORTHANDS[key], {})[key] = value
        elif key == "scan" and not isinstance(value, Mapping):
            shorthands.setdefault("scan", {})["shape"] = value
        elif key == "recon" and isinstance(value, str):
            job["recon"] = {"method": value}
        elif key == "recon" and value is True:
            job["recon"] = {}
        else:
            job[key] = value
    for section, values in shorthands.items():
        given = dict(job.get(section) or {})
        for key in values:
            if key in given:
                raise ValueError(f"parameter `{section}.{key}`: given twice")
        given.update(values)
        job[section] = given
    return job


def _json(job: Mapping[str, Any]) -> str:
    return json.dumps(job, default=_plain)


def _native_order(array: np.ndarray) -> np.ndarray:
    """``array`` unchanged when its byte order is the machine's, else converted once."""
    if not array.dtype.isnative:
        return array.astype(array.dtype.newbyteorder("="))
    return array


def _pixel(dtype: Any) -> str:
    """The library's pixel name of a numpy dtype (or of a pixel name: ``u8`` is uint8
    here, not numpy's uint64)."""
    if isinstance(dtype, str) and dtype in _PIXELS.values():
        return dtype
    d = np.dtype(dtype)
    try:
        return _PIXELS[d.newbyteorder("=")]
    except KeyError:
        raise ValueError(f"dtype {d}: expected uint8, uint16, uint32 or float32") from None


def info(path: "str | os.PathLike[str]") -> Dict[str, Any]:
    """What a dump holds, without reading its frames.

    ``path`` is a Merlin ``.mib``, an EMPAD ``.raw``/``.xml``, a NumPy ``.npy`` (4D
    ``[scan_y, scan_x, det_y, det_x]`` or 3D ``[frames, det_y, det_x]``, as ``np.save``
    writes it) or a raw dump with its ``<file>.json`` sidecar. Returns a dict: ``format``, ``width`` and ``height`` (pixels),
    ``dtype`` (pixel type frames are delivered as: ``u8``, ``u16``, ``u32``, ``f32``),
    ``stored_dtype``, ``frames``, ``scan`` (``[rows, cols]`` or ``None``),
    ``declared_frames``, ``file_bytes``, the byte layout (``header_bytes``,
    ``frame_header_bytes``, ``frame_bytes``, ``frame_footer_bytes``), ``zero_copy`` and
    ``notes``. (``ptyflow info`` also totals every pixel; that reader lives in the CLI.)
    """
    return json.loads(_ptyflow.info(os.fspath(path)))


def replay(
    path: "str | os.PathLike[str]",
    config: Optional[Mapping[str, Any]] = None,
    /,
    **kwargs: Any,
) -> Result:
    """Replays a recorded dump through the reduction (and, with ``recon``, the online
    reconstruction), like ``ptyflow replay``.

    ``path``: the dump. Configuration: a dict and/or keywords, mapped as the module docs
    say, e.g. ``replay(path, scan=(10, 10), bin=2, virtual=["bf", "adf:32:46"],
    recon="epie", optics={"kv": 80}, threads=2)``. Optics not given come from the dump's
    sidecar. Without ``out`` nothing is written; with ``out=DIR`` the same files as the CLI
    are. Returns a :class:`Result`. Ctrl-C stops the replay between batches and raises
    ``KeyboardInterrupt`` (what was computed is written to ``out``).
    """
    job = _job(config, kwargs)
    dump = dict(job.pop("dump", None) or {})
    dump["path"] = os.fspath(path)
    if "source" in job:
        raise ValueError("parameter `source`: replay reads `path`; give its layout as `dump`")
    job["source"] = {"dump": dump}
    return Result(*_ptyflow.replay(_json(job)))


def reduce_array(
    array: np.ndarray,
    config: Optional[Mapping[str, Any]] = None,
    /,
    **kwargs: Any,
) -> Result:
    """Reduces (and, with ``recon``, reconstructs) a 4D array held in memory, exactly as
    :func:`replay` treats a dump.

    ``array``: ``[scan_y, scan_x, det_y, det_x]`` of uint8, uint16, uint32 or float32,
    C-contiguous (borrowed without a copy) or not (gathered frame by frame). Frames are
    taken in acquisition order, frame ``k = array[k // scan_x, k % scan_x]``; the scan shape
    defaults to the array's first two axes. Without ``center``/``bf_radius`` the
    bright-field disc is found from the mean of up to 256 frames, as for a dump. Keywords as
    for :func:`replay` (no ``dump``). Returns a :class:`Result`.
    """
    if not isinstance(array, np.ndarray):
        array = np.asarray(array)
    if array.ndim != 4:
        raise ValueError(
            f"array of shape {array.shape}: expected 4-D [scan_y, scan_x, det_y, det_x]"
        )
    pixel = _pixel(array.dtype)
    array = _native_order(array)
    job = _job(config, kwargs)
    if "source" in job:
        raise ValueError("parameter `source`: reduce_array reads the array")
    job["source"] = {
        "push": {"width": array.shape[3], "height": array.shape[2], "pixel": pixel}
    }
    scan = dict(job.get("scan") or {})
    scan.setdefault("shape", [array.shape[0], array.shape[1]])
    job["scan"] = scan
    return Result(*_ptyflow.reduce_array(array, _json(job)))


class Pipeline(_ptyflow.Pipeline):
    """A push session: a receive loop hands in frames one at a time.

    ``Pipeline(config=None, /, *, frame_shape=(height, width), dtype="u16", scan=(rows,
    cols), ...)``: the frame geometry and pixel type (``dtype`` a numpy dtype or ``u8``,
    ``u16``, ``u32``, ``f32``), the scan shape, and the configuration keywords of
    :func:`replay`. Detectors need the disc: ``center=(x, y)`` and ``bf_radius`` (pixels) —
    a push session cannot find it from data it has not seen.

    - ``push(frame, index=None) -> bool``: one 2-D frame ``[height, width]`` of the
      pipeline's dtype, for scan position ``index`` (default: the next one). A C-contiguous
      frame is not copied by Python; the library copies it into its buffer pool with the
      GIL released. Blocks while the queue is full; with ``blocking=False`` returns
      ``False`` instead (the frame was not taken). Safe from several threads.
    - ``finish() -> Result``: waits for every stage, runs the reconstruction's sweeps (GIL
      released) and returns the results; a position never pushed holds 0.
    - ``counters``: ``{"pushed", "rejected", "processed", "consumed"}``, readable from any
      thread while another pushes.
    - ``frame_shape``, ``pixel``, ``positions``.
    """

    def __new__(
        cls,
        config: Optional[Mapping[str, Any]] = None,
        /,
        **kwargs: Any,
    ) -> "Pipeline":
        job = _job(config, kwargs)
        shape = job.pop("frame_shape", None)
        dtype = job.pop("dtype", None)
        if "source" not in job:
            if shape is None or dtype is None:
                raise ValueError(
                    "parameter `frame_shape`: a pipeline needs frame_shape=(height, width) "
                    "and dtype (or source={'push': {...}})"
                )
            height, width = (int(v) for v in shape)
            job["source"] = {"push": {"width": width, "height": height, "pixel": _pixel(dtype)}}
        elif shape is not None or dtype is not None:
            raise ValueError("parameter `source`: give frame_shape/dtype or source, not both")
        return super().__new__(cls, _json(job))

    def __init__(self, config: Optional[Mapping[str, Any]] = None, /, **kwargs: Any) -> None:
        pass  # everything happened in __new__

    def finish(self) -> Result:  # type: ignore[override]
        return Result(*super().finish())


def simulate(
    preset: str = "mos2-defocus",
    *,
    out: "str | os.PathLike[str] | None" = None,
    format: str = "raw",
    png: bool = False,
    **overrides: Any,
) -> Dict[str, Any]:
    """Simulates a 4D-STEM ptychography dataset with its ground truth, like
    ``ptyflow simulate`` (deterministic for a seed).

    ``preset``: ``mos2-defocus`` (80 kV, α 24 mrad, 800 Å underfocus, 2.3 Å step, 40 × 40
    scan, 96 px detector at 0.8 mrad/px), ``mos2-focus`` (300 kV, α 18 mrad, 0.273 Å step,
    64 × 64, 64 px at 1 mrad/px) or ``mos2-focus-defocus`` (250 Å underfocus). Overrides:
    ``scan=(rows, cols)``, ``step`` (Å), ``scan_rotation`` (degrees), ``detector`` (M px,
    even), ``mrad_per_px``, ``kv``, ``alpha`` (mrad), ``defocus`` (Å, positive =
    underfocus), ``cs`` (mm), ``dose`` (e⁻/Å²) or ``dose_per_pattern`` (electrons),
    ``seed``, ``object`` (``mos2``/``random``), ``absorption``, ``oversample``. With
    ``out=DIR`` the dump (``format`` ``raw`` or ``mib``) and the truth files are written
    there too (``png``: previews).

    Returns a dict: ``frames`` (uint16 ``[rows, cols, M, M]``), ``object`` (complex64, at
    the reconstruction pixel), ``probe`` (complex64 ``[M, M]``), ``positions`` (``[N, 2]``
    (y, x) in Å), ``meta`` (the ``meta.json`` dict) and ``dump`` (its path, or ``None``).
    """
    if "scan" in overrides and overrides["scan"] is not None:
        overrides["scan"] = [int(v) for v in overrides["scan"]]
    out_path = None if out is None else os.fspath(out)
    arrays, meta, dump = _ptyflow.simulate(
        preset, out=out_path, format=format, png=png, **overrides
    )
    result: Dict[str, Any] = dict(arrays)
    result["meta"] = json.loads(meta)
    result["dump"] = dump
    return result


def compare(
    recon: np.ndarray,
    truth: np.ndarray,
    *,
    crop_px: int = 0,
    register: bool = True,
    remove_ramp: bool = True,
) -> Dict[str, Any]:
    """Compares a reconstructed complex object with the ground truth (same pixel size),
    like ``ptyflow compare``.

    Both are 2-D complex arrays (converted to complex64); of different shapes they are
    centre-cropped to the common one. ``crop_px``: border (pixels) left out of every
    metric; ``register``: shift the reconstruction onto the truth first; ``remove_ramp``:
    remove a linear phase ramp as well as the global phase. Returns a dict: ``nrmse``,
    ``correlation``, ``phase_correlation``, ``phase_snr``, ``resolution_px`` (FRC ½-bit
    crossing in pixels, ``None`` when above threshold to Nyquist), ``shift_px``
    ``[dy, dx]``, ``shape``, ``crop_px``, ``phase_plane`` and ``frc`` (the curve).
    """
    r = np.ascontiguousarray(recon, dtype=np.complex64)
    t = np.ascontiguousarray(truth, dtype=np.complex64)
    for name, a in (("recon", r), ("truth", t)):
        if a.ndim != 2:
            raise ValueError(f"parameter `{name}`: shape {a.shape}, expected a 2-D object")
    return json.loads(_ptyflow.compare(r, t, crop_px, register, remove_ramp))
