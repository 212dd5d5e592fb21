"""replay of the bundled fixture: equal to the CLI's outputs bit for bit (the arrays Python
returns, the files it writes, the report), and to the outputs recorded in
tests/golden/fixture.json, which need no CLI."""

import json
import subprocess

import numpy as np
import pytest

import ptyflow

from conftest import ROOT, assert_same_report, same_bits, timeless

# The README's main job, on one thread: with more, the statistics are merged in whatever
# order the workers finish, and floating-point sums are not associative.
README_FLAGS = ["--virtual", "bf", "--virtual", "adf:32:46", "--virtual", "com", "--recon", "epie"]
README_KWARGS = dict(virtual=["bf", "adf:32:46", "com"], recon="epie", threads=1)
BINNED_WF_KWARGS = dict(
    bin=2,
    crop=(8, 8, 80, 80),
    virtual=["rings:3:10:20", "dpc"],
    recon={"method": "wf", "loss": "poisson", "window": 64, "bin": 2, "sweeps": 3},
    threads=1,
)


def fnv1a(data: bytes) -> str:
    """The digest tests/golden.rs records (FNV-1a, 64 bits)."""
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def test_info_of_the_fixture(fixture_dump):
    i = ptyflow.info(fixture_dump)
    assert (i["format"], i["width"], i["height"], i["dtype"]) == ("raw", 96, 96, "u16")
    assert i["frames"] == 100 and i["scan"] == [10, 10] and i["zero_copy"]


def test_replay_equals_the_cli_bit_for_bit(tmp_path, fixture_dump, cli):
    cli_out = tmp_path / "cli"
    subprocess.run(
        [cli, "replay", str(fixture_dump), *README_FLAGS, "--threads", "1", "-q",
         "--out", str(cli_out)],
        check=True,
    )
    py_out = tmp_path / "py"
    r = ptyflow.replay(fixture_dump, out=py_out, **README_KWARGS)
    npy = sorted(p.name for p in cli_out.glob("*.npy"))
    assert npy == sorted(f"{name}.npy" for name in r.arrays)
    for name in npy:
        assert same_bits(r[name[:-4]], np.load(cli_out / name)), name
        assert (py_out / name).read_bytes() == (cli_out / name).read_bytes(), name
    cli_report = json.loads((cli_out / "report.json").read_text())
    assert timeless(r.report) == timeless(cli_report)
    assert r.report["outputs"] == cli_report["outputs"]


@pytest.mark.parametrize(
    "job, kwargs",
    [("cli_readme_epie", README_KWARGS), ("cli_binned_wf", BINNED_WF_KWARGS)],
)
def test_replay_writes_the_recorded_golden_outputs(tmp_path, fixture_dump, job, kwargs):
    golden = json.loads((ROOT / "tests" / "golden" / "fixture.json").read_text())[job]
    r = ptyflow.replay(fixture_dump, out=tmp_path, **kwargs)
    written = {p.name: fnv1a(p.read_bytes()) for p in tmp_path.glob("*.npy")}
    assert written == golden["npy"]
    assert_same_report(timeless(r.report), golden["report"])


def test_results_without_out_write_nothing(tmp_path, fixture_dump, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = ptyflow.replay(fixture_dump, scan=(10, 10), bin=2, virtual=["bf"], threads=2)
    assert list(tmp_path.iterdir()) == []
    assert r.report["outputs"] == []
    assert r.mean.shape == (48, 48) and r.virtual_bf.shape == (10, 10)
    assert r.mean.dtype == np.float32
    assert "virtual_bf" in r and set(r) == set(r.arrays)
    with pytest.raises(AttributeError, match="no result 'object'"):
        r.object
