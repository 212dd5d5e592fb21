"""Every kind of library error reaches Python as the exception its kind calls for, with
the library's message naming the field, the file or the stage."""

import os
import signal
import threading

import numpy as np
import pytest

import ptyflow

from conftest import write_raw


def test_unknown_keys_are_value_errors_naming_them(fixture_dump):
    with pytest.raises(ValueError, match="unknown field `virtul`"):
        ptyflow.replay(fixture_dump, virtul=["bf"])
    with pytest.raises(ValueError, match=r"recon.*unknown field `windw`"):
        ptyflow.replay(fixture_dump, recon={"windw": 64})


def test_bad_values_are_value_errors_naming_the_field(fixture_dump):
    with pytest.raises(ValueError, match=r"reduce\.bin"):
        ptyflow.replay(fixture_dump, bin=17)
    with pytest.raises(ValueError, match=r"reduce\.virtual\[1\]"):
        ptyflow.replay(fixture_dump, virtual=["bf", "adf:3"])
    with pytest.raises(ValueError, match=r"run\.threads"):
        ptyflow.replay(fixture_dump, threads=0)
    with pytest.raises(ValueError, match=r"scan\.shape"):
        ptyflow.replay(fixture_dump, scan=(3, 3))
    with pytest.raises(ValueError, match="given twice"):
        ptyflow.replay(fixture_dump, {"bin": 2}, bin=2)
    with pytest.raises(ValueError, match=r"reduce\.bin.*given twice"):
        ptyflow.replay(fixture_dump, reduce={"bin": 2}, bin=2)


def test_core_errors_are_value_errors(fixture_dump):
    # 96 is not a multiple of 5: the core's binner refuses it.
    with pytest.raises(ValueError, match="bin"):
        ptyflow.replay(fixture_dump, bin=5)


def test_budget_errors_are_value_errors_naming_the_field(fixture_dump):
    with pytest.raises(ValueError, match="memory budget"):
        ptyflow.replay(fixture_dump, memory_budget="1K")


def test_missing_file_is_file_not_found(tmp_path):
    (tmp_path / "gone.raw.json").write_text('{"width": 4, "height": 4, "dtype": "u16"}')
    with pytest.raises(FileNotFoundError):
        ptyflow.replay(tmp_path / "gone.raw")
    with pytest.raises(OSError, match="cannot tell the format"):
        ptyflow.info(tmp_path / "nothing.bin")


def test_truncated_dump_is_os_error(tmp_path):
    dump = write_raw(tmp_path / "scan.raw", np.zeros((2, 2, 8, 8), dtype=np.uint16))
    with open(dump, "r+b") as f:
        f.truncate(os.path.getsize(dump) - 3)
    with pytest.raises(OSError, match="scan.raw"):
        ptyflow.replay(dump)


def test_array_errors_are_value_errors():
    with pytest.raises(ValueError, match="4-D"):
        ptyflow.reduce_array(np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match="dtype float64"):
        ptyflow.reduce_array(np.zeros((2, 2, 4, 4)))
    with pytest.raises(ValueError, match=r"scan\.shape"):
        ptyflow.reduce_array(np.zeros((2, 2, 4, 4), dtype=np.uint8), scan=(3, 3))
    with pytest.raises(ValueError, match=r"reduce\.center"):
        # No contrast: no disc to find for the detector.
        ptyflow.reduce_array(np.zeros((2, 2, 8, 8), dtype=np.uint8), virtual=["bf"])


def test_pipeline_errors():
    with pytest.raises(ValueError, match="frame_shape"):
        ptyflow.Pipeline(scan=(2, 2))
    with pytest.raises(ValueError, match=r"scan\.shape"):
        ptyflow.Pipeline(frame_shape=(8, 8), dtype="u8")
    with pytest.raises(ValueError, match=r"reduce\.center"):
        ptyflow.Pipeline(frame_shape=(8, 8), dtype="u8", scan=(2, 2), virtual=["bf"])
    p = ptyflow.Pipeline(frame_shape=(8, 8), dtype="u8", scan=(2, 2), threads=1)
    with pytest.raises(ValueError, match="u8"):
        p.push(np.zeros((8, 8), dtype=np.uint16))
    with pytest.raises(ValueError, match=r"expected \(8, 8\)"):
        p.push(np.zeros((8, 9), dtype=np.uint8))
    with pytest.raises(ValueError, match="frame index"):
        p.push(np.zeros((8, 8), dtype=np.uint8), index=4)
    p.finish()
    with pytest.raises(RuntimeError, match="finished"):
        p.push(np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(RuntimeError, match="finished"):
        p.finish()


def test_simulate_and_compare_errors():
    with pytest.raises(ValueError, match="preset"):
        ptyflow.simulate("mos3")
    with pytest.raises(ValueError, match="detector"):
        ptyflow.simulate(detector=7)
    with pytest.raises(ValueError, match="not both"):
        ptyflow.simulate(dose=1, dose_per_pattern=1)
    with pytest.raises(ValueError, match="2-D"):
        ptyflow.compare(np.ones((2, 2, 2)), np.ones((2, 2)))


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs pthread_kill")
def test_ctrl_c_stops_a_replay_with_keyboard_interrupt(fixture_dump, tmp_path):
    # Paced at 20 frames/s the 100 frames take 5 s; SIGINT after 0.5 s stops the replay.
    # Python installs its KeyboardInterrupt handler only when it inherits SIGINT's default
    # disposition; a shell's background job inherits SIGINT ignored (as `.ci/run &` does), so
    # the test installs the handler itself and restores what was there.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    main = threading.main_thread().ident
    timer = threading.Timer(0.5, lambda: signal.pthread_kill(main, signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt, match="interrupted after"):
            ptyflow.replay(fixture_dump, fps=20, batch_frames=2, threads=1, out=tmp_path)
    finally:
        timer.join()
        signal.signal(signal.SIGINT, previous)
    # What was computed is written, and the report says it was interrupted.
    import json

    report = json.loads((tmp_path / "report.json").read_text())
    assert report["interrupted"] and 0 < report["frames_read"] < 100
