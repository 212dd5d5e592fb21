"""Shared fixtures of the ptyflow Python tests: the bundled dataset, the CLI when CI built
it, and small helpers."""

import json
import math
import os
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "fixtures" / "mos2-defocus" / "scan.raw"


@pytest.fixture
def fixture_dump() -> pathlib.Path:
    return FIXTURE


@pytest.fixture
def cli() -> str:
    """The `ptyflow` binary: `$PTYFLOW_CLI` (set by .ci/run after `cargo build`)."""
    path = os.environ.get("PTYFLOW_CLI")
    if not path or not os.access(path, os.X_OK):
        pytest.skip(
            "PTYFLOW_CLI is not set to the ptyflow binary (.ci/run sets it; by hand: "
            "cargo build -p ptyflow && PTYFLOW_CLI=target/debug/ptyflow pytest python/tests)"
        )
    return path


def write_raw(path: pathlib.Path, array: np.ndarray) -> pathlib.Path:
    """Writes a 4D array as a raw dump with the sidecar `ptyflow` reads."""
    rows, cols, height, width = array.shape
    names = {np.uint8: "u8", np.uint16: "u16", np.uint32: "u32", np.float32: "f32"}
    np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tofile(path)
    sidecar = {
        "format": "raw",
        "width": width,
        "height": height,
        "dtype": names[array.dtype.type],
        "byte_order": "little",
        "frames": rows * cols,
        "scan": [rows, cols],
    }
    pathlib.Path(str(path) + ".json").write_text(json.dumps(sidecar))
    return path


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shape, dtype and every bit (NaN equals NaN of the same bits)."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def timeless(report):
    """A report without what changes from run to run: times, rates and paths."""
    if isinstance(report, dict):
        return {
            k: timeless(v)
            for k, v in report.items()
            if not (k.endswith("_s") or k.startswith("fps") or k.endswith("_per_s") or k == "path")
        }
    if isinstance(report, list):
        return [timeless(v) for v in report]
    return report


def assert_same_report(got, want, where="report"):
    """Equal reports; floats to 1 part in 10¹⁴, because the golden file's were parsed by
    serde_json without its exact (`float_roundtrip`) parser and may be off in the last
    digit."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), where
        for k in want:
            assert_same_report(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same_report(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and isinstance(got, float):
        assert math.isclose(got, want, rel_tol=1e-14), f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"
