"""reduce_array against plain numpy: statistics, dose and virtual detectors of random 4D
arrays of every pixel type, C-contiguous or not; and against replay of the same data as a
dump (the disc found the same way, the results bit for bit)."""

import numpy as np
import pytest

import ptyflow

from conftest import same_bits, write_raw

RNG = np.random.default_rng(14)
DTYPES = [np.uint8, np.uint16, np.uint32, np.float32]
CX, CY, R = 10.0, 9.0, 4.5  # disc centre (x = column, y = row) and radius, pixels


def random_frames(dtype, shape=(5, 6, 20, 22)):
    if dtype == np.float32:
        return (RNG.random(shape) * 100).astype(np.float32)
    high = {np.uint8: 200, np.uint16: 5000, np.uint32: 100_000}[dtype]
    return RNG.integers(0, high, size=shape).astype(dtype)


def radius_map(height, width, cx=CX, cy=CY):
    rows, cols = np.mgrid[0:height, 0:width]
    return np.sqrt((cols - cx) ** 2 + (rows - cy) ** 2)


def tolerance(dtype):
    # Integer pixels are summed exactly; f32 pixels in f32 (frames) or f64 (statistics).
    return dict(rtol=1e-5, atol=1e-3) if dtype == np.float32 else dict(rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layout", ["c", "strided"])
def test_statistics_and_detectors_match_numpy(dtype, layout):
    data = random_frames(dtype)
    if layout == "strided":
        # Same values, not C-contiguous: every other detector column of a wider array.
        wide = np.zeros(data.shape[:3] + (2 * data.shape[3],), dtype=dtype)
        wide[..., ::2] = data
        frames = wide[..., ::2]
        assert not frames.flags.c_contiguous
    else:
        frames = data
    r = ptyflow.reduce_array(
        frames,
        virtual=["bf", "adf:6:9", "com"],
        center=(CX, CY),
        bf_radius=R,
        threads=2,
    )
    x = data.astype(np.float64)
    tol = tolerance(dtype)
    np.testing.assert_allclose(r.mean, x.mean(axis=(0, 1)), **tol)
    np.testing.assert_allclose(r.var, x.var(axis=(0, 1)), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(r.dose, x.sum(axis=(2, 3)), **tol)
    d = radius_map(*data.shape[2:])
    np.testing.assert_allclose(r.virtual_bf, x[..., d <= R].sum(axis=-1), **tol)
    adf = (d >= 6) & (d < 9)
    np.testing.assert_allclose(r.virtual_adf, x[..., adf].sum(axis=-1), **tol)
    rows, cols = np.mgrid[0 : data.shape[2], 0 : data.shape[3]]
    total = x.sum(axis=(2, 3))
    com_x = (x * (cols - CX)).sum(axis=(2, 3)) / total
    com_y = (x * (rows - CY)).sum(axis=(2, 3)) / total
    np.testing.assert_allclose(r.virtual_com_x, com_x, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(r.virtual_com_y, com_y, rtol=1e-4, atol=1e-4)
    assert r.report["frames_processed"] == 30
    assert r.report["frames_dropped"] == 0


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_binning_matches_numpy(dtype):
    data = random_frames(dtype, shape=(3, 4, 16, 12))
    r = ptyflow.reduce_array(data, bin=4, threads=1)
    x = data.astype(np.float64)
    binned = x.reshape(3, 4, 4, 4, 3, 4).sum(axis=(3, 5))
    np.testing.assert_allclose(r.mean, binned.mean(axis=(0, 1)), **tolerance(dtype))
    assert r.report["geometry"]["stage"] == [4, 3]


def disc_frames(dtype=np.uint16):
    """A 6 × 7 scan of 32 × 32 frames: a bright disc of radius 8 at (15, 16) on noise."""
    d = radius_map(32, 32, cx=15.0, cy=16.0)
    bright = np.where(d <= 8, 400, 5)
    counts = RNG.poisson(bright, size=(6, 7, 32, 32))
    return counts.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_same_as_a_replay_of_the_same_data(tmp_path, dtype):
    data = disc_frames(dtype)
    dump = write_raw(tmp_path / "scan.raw", data)
    job = dict(virtual=["bf", "adf:10:14", "dpc"], threads=1)
    from_array = ptyflow.reduce_array(data, **job)
    from_dump = ptyflow.replay(dump, **job)
    assert from_array.report["bright_field_disc"] == from_dump.report["bright_field_disc"]
    assert from_array.report["bright_field_disc"]["source"] == "found in the mean pattern"
    assert sorted(from_array.arrays) == sorted(from_dump.arrays)
    for name in from_dump.arrays:
        assert same_bits(from_array[name], from_dump[name]), name


def test_scan_shape_may_differ_from_the_array_axes():
    data = random_frames(np.uint16, shape=(5, 6, 8, 8))
    r = ptyflow.reduce_array(data, scan=(3, 10), threads=1)
    # Frames are taken in acquisition order, frame k = data[k // 6, k % 6].
    flat = data.reshape(30, 8, 8).astype(np.float64)
    np.testing.assert_array_equal(r.dose, flat.sum(axis=(1, 2)).reshape(3, 10))


def test_big_endian_arrays_are_read_in_their_order():
    data = random_frames(np.uint16, shape=(2, 3, 8, 8))
    r = ptyflow.reduce_array(data.astype(">u2"), threads=1)
    np.testing.assert_array_equal(r.dose, data.astype(np.float64).sum(axis=(2, 3)))


def test_reconstruction_of_an_array_returns_complex_object_and_probe():
    sim = ptyflow.simulate(scan=(6, 6), detector=48, mrad_per_px=1.6, oversample=2, seed=3)
    r = ptyflow.reduce_array(
        sim["frames"],
        recon={"method": "epie", "sweeps": 2},
        optics={"kv": 80, "alpha_mrad": 24, "defocus_angstrom": 800,
                "mrad_per_px": 1.6, "step_angstrom": 2.3},
        threads=2,
    )
    assert r.object.dtype == np.complex64 and r.object.ndim == 2
    assert r.probe.dtype == np.complex64 and r.probe.shape == (48, 48)
    np.testing.assert_allclose((np.abs(r.probe) ** 2).sum(), 1.0, rtol=1e-3)
    assert r.report["reconstruction"]["sweeps"] == 2
