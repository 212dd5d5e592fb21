"""simulate and compare: a small dataset, its dump read back, and metrics of objects
against themselves and against noise."""

import numpy as np

import ptyflow


def small(**kw):
    return ptyflow.simulate(scan=(4, 5), detector=32, mrad_per_px=2.4, oversample=2, **kw)


def test_simulate_returns_arrays_and_is_deterministic():
    a, b = small(seed=5), small(seed=5)
    assert a["frames"].shape == (4, 5, 32, 32) and a["frames"].dtype == np.uint16
    assert a["object"].dtype == np.complex64 and a["probe"].shape == (32, 32)
    assert a["positions"].shape == (20, 2)
    assert np.array_equal(a["frames"], b["frames"])
    assert a["dump"] is None and isinstance(a["meta"], dict)
    np.testing.assert_allclose((np.abs(a["probe"]) ** 2).sum(), 1.0, rtol=1e-4)


def test_simulated_dump_replays_like_its_array(tmp_path):
    s = small(seed=2, out=tmp_path)
    assert s["dump"].endswith("scan.raw")
    from_dump = ptyflow.replay(s["dump"], threads=1)
    from_array = ptyflow.reduce_array(s["frames"], threads=1)
    np.testing.assert_array_equal(from_dump.dose, from_array.dose)
    np.testing.assert_array_equal(
        from_dump.dose, s["frames"].astype(np.float64).sum(axis=(2, 3))
    )


def test_compare_an_object_with_itself_and_with_noise():
    obj = small(seed=1, object="random")["object"]
    same = ptyflow.compare(obj, obj)
    assert same["nrmse"] < 1e-5 and same["phase_correlation"] > 0.9999
    rng = np.random.default_rng(0)
    noise = np.exp(1j * rng.normal(size=obj.shape)).astype(np.complex64)
    other = ptyflow.compare(noise, obj, register=False)
    assert other["phase_correlation"] < 0.2
    assert set(same) >= {"nrmse", "correlation", "phase_snr", "resolution_px", "frc"}
