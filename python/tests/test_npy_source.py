"""NumPy arrays saved with np.save as sources of info and replay: the fixture's frames as
.npy (C and Fortran order, another dtype) replay to the same arrays as the raw dump."""

import numpy as np
import pytest

import ptyflow

KWARGS = dict(virtual=["bf", "adf:32:46", "com"], threads=1)


@pytest.fixture
def frames(fixture_dump) -> np.ndarray:
    return np.fromfile(fixture_dump, dtype="<u2").reshape(10, 10, 96, 96)


@pytest.mark.parametrize("order", ["C", "F"])
def test_npy_replays_like_the_raw_dump(tmp_path, fixture_dump, frames, order):
    path = tmp_path / f"scan_{order}.npy"
    np.save(path, np.asarray(frames, order=order))
    i = ptyflow.info(path)
    assert (i["format"], i["width"], i["height"], i["dtype"]) == ("npy", 96, 96, "u16")
    assert i["frames"] == 100 and i["scan"] == [10, 10]
    assert i["zero_copy"] == (order == "C")
    want = ptyflow.replay(fixture_dump, **KWARGS)
    got = ptyflow.replay(path, **KWARGS)
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert got.report["frames_processed"] == got.report["frames_in_file"] == 100


def test_npy_float32_3d_needs_the_scan(tmp_path, fixture_dump, frames):
    path = tmp_path / "scan3d.npy"
    np.save(path, frames.reshape(100, 96, 96).astype(np.float32))
    assert ptyflow.info(path)["scan"] is None
    want = ptyflow.replay(fixture_dump, **KWARGS)
    got = ptyflow.replay(path, scan=(10, 10), **KWARGS)
    # Float pixels are summed as floats: equal to the integer sums to float precision.
    np.testing.assert_allclose(got["virtual_bf"], want["virtual_bf"], rtol=1e-6)


def test_npy_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.npy"
    np.save(path, np.zeros((2, 2, 4, 4), dtype=np.float64))
    with pytest.raises(Exception, match=r"bad\.npy.*<f8"):
        ptyflow.info(path)
