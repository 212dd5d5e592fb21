"""Pipeline: frames pushed one at a time, from one thread or several, equal to replaying
the same frames; counters readable while another thread pushes."""

import threading

import numpy as np
import pytest

import ptyflow

from conftest import same_bits

DISC = dict(center=(48.0, 48.0), bf_radius=30.0)


def fixture_frames(fixture_dump):
    return np.fromfile(fixture_dump, dtype="<u2").reshape(10, 10, 96, 96)


def test_pushed_frames_equal_a_replay(fixture_dump):
    frames = fixture_frames(fixture_dump)
    job = dict(scan=(10, 10), bin=2, virtual=["bf", "adf:32:46", "com"], threads=1, **DISC)
    p = ptyflow.Pipeline(frame_shape=(96, 96), dtype=np.uint16, **job)
    assert (p.frame_shape, p.pixel, p.positions) == ((96, 96), "u16", 100)
    for frame in frames.reshape(100, 96, 96):
        assert p.push(frame)
    pushed = p.finish()
    replayed = ptyflow.replay(fixture_dump, **job)
    for name in replayed.arrays:
        assert same_bits(pushed[name], replayed[name]), name
    assert pushed.report["frames_processed"] == 100


def test_threaded_push_processes_every_frame(fixture_dump):
    frames = fixture_frames(fixture_dump).reshape(100, 96, 96)
    p = ptyflow.Pipeline(
        {"scan": (10, 10), "virtual": ["bf"], **DISC},
        frame_shape=(96, 96),
        dtype="u16",
        threads=2,
        batch_frames=4,
        queue_batches=2,
    )
    seen = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen.append(p.counters["processed"])

    def push(indices):
        for i in indices:
            p.push(frames[i], index=i)

    watcher = threading.Thread(target=watch)
    watcher.start()
    pushers = [threading.Thread(target=push, args=(range(k, 100, 4),)) for k in range(4)]
    for t in pushers:
        t.start()
    for t in pushers:
        t.join()
    result = p.finish()
    done.set()
    watcher.join()
    c = p.counters
    assert c["pushed"] == 100 and c["processed"] == 100 and c["rejected"] == 0
    assert result.report["frames_processed"] == 100
    assert result.report["frames_dropped"] == 0
    assert seen == sorted(seen)  # the counter only grows
    bf = ptyflow.replay(fixture_dump, virtual=["bf"], threads=1, **DISC).virtual_bf
    np.testing.assert_allclose(result.virtual_bf, bf, rtol=1e-6)


def test_non_contiguous_frames_are_copied_and_taken():
    p = ptyflow.Pipeline(frame_shape=(8, 8), dtype=np.float32, scan=(1, 2), threads=1)
    wide = np.arange(2 * 8 * 16, dtype=np.float32).reshape(2, 8, 16)
    for frame in wide[:, :, ::2]:
        assert not frame.flags.c_contiguous
        p.push(frame)
    r = p.finish()
    np.testing.assert_allclose(r.dose.ravel(), wide[:, :, ::2].sum(axis=(1, 2)))


def test_non_blocking_push_answers_false_when_full():
    p = ptyflow.Pipeline(
        frame_shape=(256, 256), dtype="u16", scan=(64, 64), threads=1,
        batch_frames=1, queue_batches=1, blocking=False,
    )
    frame = np.ones((256, 256), dtype=np.uint16)
    taken = [p.push(frame) for _ in range(2000)]
    r = p.finish()
    c = p.counters
    assert c["pushed"] == sum(taken) and c["rejected"] == taken.count(False)
    assert r.report["frames_processed"] == c["pushed"]


def test_pushed_reconstruction_gives_object_and_probe(fixture_dump):
    frames = fixture_frames(fixture_dump).reshape(100, 96, 96)
    p = ptyflow.Pipeline(
        frame_shape=(96, 96), dtype="u16", scan=(10, 10), threads=1,
        recon={"method": "epie", "sweeps": 1}, center=(48.0, 48.0), bf_radius=30.0,
        optics={"kv": 80, "alpha_mrad": 24, "defocus_angstrom": 800,
                "mrad_per_px": 0.8, "step_angstrom": 2.3},
    )
    for f in frames:
        p.push(f)
    r = p.finish()
    assert r.object.dtype == np.complex64 and r.probe.shape == (96, 96)
    assert p.counters["consumed"] == 100
