# Type stubs of the ptyflow package (kept by hand beside __init__.py; the docstrings there
# say what each value means and its unit).
import os
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

_Path = Union[str, "os.PathLike[str]"]
_Config = Mapping[str, Any]

class Result:
    arrays: Dict[str, np.ndarray]
    report: Dict[str, Any]
    # Present on every job:
    mean: npt.NDArray[np.float32]
    var: npt.NDArray[np.float32]
    dose: npt.NDArray[np.float32]
    def __init__(self, arrays: Dict[str, np.ndarray], report_json: str) -> None: ...
    # virtual_bf, virtual_adf, virtual_com_x, ..., object, probe: by the job's detectors.
    def __getattr__(self, name: str) -> np.ndarray: ...
    def __getitem__(self, name: str) -> np.ndarray: ...
    def __contains__(self, name: object) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...

def info(path: _Path) -> Dict[str, Any]: ...
def replay(
    path: _Path,
    config: Optional[_Config] = None,
    /,
    *,
    scan: Union[Tuple[int, int], Sequence[int], _Config, None] = ...,
    serpentine: bool = ...,
    allow_partial: bool = ...,
    bin: int = ...,
    crop: Optional[Sequence[int]] = ...,
    virtual: Sequence[str] = ...,
    center: Optional[Sequence[float]] = ...,
    bf_radius: Optional[float] = ...,
    radius_unit: Optional[str] = ...,
    threads: Optional[int] = ...,
    batch_frames: Optional[int] = ...,
    fps: Optional[float] = ...,
    memory_budget: Union[int, str, None] = ...,
    reduce: Optional[_Config] = ...,
    optics: Optional[_Config] = ...,
    recon: Union[str, bool, _Config, None] = ...,
    run: Optional[_Config] = ...,
    dump: Optional[_Config] = ...,
    out: Optional[_Path] = ...,
) -> Result: ...
def reduce_array(
    array: np.ndarray,
    config: Optional[_Config] = None,
    /,
    *,
    scan: Union[Tuple[int, int], Sequence[int], _Config, None] = ...,
    serpentine: bool = ...,
    allow_partial: bool = ...,
    bin: int = ...,
    crop: Optional[Sequence[int]] = ...,
    virtual: Sequence[str] = ...,
    center: Optional[Sequence[float]] = ...,
    bf_radius: Optional[float] = ...,
    radius_unit: Optional[str] = ...,
    threads: Optional[int] = ...,
    batch_frames: Optional[int] = ...,
    queue_batches: Optional[int] = ...,
    memory_budget: Union[int, str, None] = ...,
    reduce: Optional[_Config] = ...,
    optics: Optional[_Config] = ...,
    recon: Union[str, bool, _Config, None] = ...,
    run: Optional[_Config] = ...,
    out: Optional[_Path] = ...,
) -> Result: ...

class Pipeline:
    def __new__(
        cls,
        config: Optional[_Config] = None,
        /,
        *,
        frame_shape: Tuple[int, int] = ...,
        dtype: Union[str, npt.DTypeLike] = ...,
        scan: Union[Tuple[int, int], Sequence[int], _Config] = ...,
        serpentine: bool = ...,
        bin: int = ...,
        crop: Optional[Sequence[int]] = ...,
        virtual: Sequence[str] = ...,
        center: Optional[Sequence[float]] = ...,
        bf_radius: Optional[float] = ...,
        radius_unit: Optional[str] = ...,
        threads: Optional[int] = ...,
        batch_frames: Optional[int] = ...,
        queue_batches: Optional[int] = ...,
        blocking: bool = ...,
        memory_budget: Union[int, str, None] = ...,
        reduce: Optional[_Config] = ...,
        optics: Optional[_Config] = ...,
        recon: Union[str, bool, _Config, None] = ...,
        run: Optional[_Config] = ...,
        source: Optional[_Config] = ...,
        out: Optional[_Path] = ...,
    ) -> "Pipeline": ...
    def push(self, frame: np.ndarray, index: Optional[int] = None) -> bool: ...
    def finish(self) -> Result: ...
    @property
    def counters(self) -> Dict[str, int]: ...
    @property
    def frame_shape(self) -> Tuple[int, int]: ...
    @property
    def pixel(self) -> str: ...
    @property
    def positions(self) -> int: ...

def simulate(
    preset: str = "mos2-defocus",
    *,
    out: Optional[_Path] = None,
    format: str = "raw",
    png: bool = False,
    scan: Optional[Tuple[int, int]] = ...,
    step: Optional[float] = ...,
    scan_rotation: Optional[float] = ...,
    detector: Optional[int] = ...,
    mrad_per_px: Optional[float] = ...,
    kv: Optional[float] = ...,
    alpha: Optional[float] = ...,
    defocus: Optional[float] = ...,
    cs: Optional[float] = ...,
    dose: Optional[float] = ...,
    dose_per_pattern: Optional[float] = ...,
    seed: Optional[int] = ...,
    object: Optional[str] = ...,
    absorption: Optional[float] = ...,
    oversample: Optional[int] = ...,
) -> Dict[str, Any]: ...
def compare(
    recon: np.ndarray,
    truth: np.ndarray,
    *,
    crop_px: int = 0,
    register: bool = True,
    remove_ramp: bool = True,
) -> Dict[str, Any]: ...
