"""Frames per second pushed from Python (ptyflow.Pipeline.push) against the same job pushed
from C (ptyflow_push), both in release builds, 256 × 256 u16 frames.

    cargo build --release -p ptyflow             # the C library, target/release/
    python python/bench/push_speed.py [--frames 20000] [--rounds 3] [--lib DIR]

Each round runs the C program, then Python, on the same configuration (the JSON both faces
read) and frames (a pool of 64 distinct frames, cycled). Prints frames/s for the pushes and
for pushes plus finish, and the ratio Python/C. Not a test: the numbers depend on the
machine and on what else it runs.
"""

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

import ptyflow
from ptyflow import _job, _json

ROOT = pathlib.Path(__file__).resolve().parents[2]
SIDE, POOL = 256, 64


def pool() -> np.ndarray:
    """The frames push_c.c pushes: the same linear congruential sequence, bits 22..31."""
    n = POOL * SIDE * SIDE
    out = np.empty(n, dtype=np.uint16)
    x = 14
    for i in range(n):  # ~4 M steps, a few seconds, once
        x = (x * 1664525 + 1013904223) & 0xFFFFFFFF
        out[i] = x >> 22
    return out.reshape(POOL, SIDE, SIDE)


def job(frames: int, threads: int) -> dict:
    rows = frames // 100
    return _job(
        None,
        dict(
            source={"push": {"width": SIDE, "height": SIDE, "pixel": "u16"}},
            scan=(rows, 100),
            bin=4,
            virtual=["bf", "adf:40:120", "com"],
            center=(127.5, 127.5),
            bf_radius=30.0,
            threads=threads,
        ),
    )


def python_round(config: dict, frames: np.ndarray, n: int):
    p = ptyflow.Pipeline(config)
    t0 = time.perf_counter()
    for i in range(n):
        p.push(frames[i % POOL], i)
    t_push = time.perf_counter() - t0
    p.finish()
    t_all = time.perf_counter() - t0
    return n / t_push, n / t_all


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lib", type=pathlib.Path, default=ROOT / "target" / "release")
    args = ap.parse_args()
    lib = args.lib / "libptyflow.a"
    if not lib.exists():
        print(f"{lib} is missing: cargo build --release -p ptyflow", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        exe = pathlib.Path(tmp) / "push_c"
        subprocess.run(
            ["cc", "-O2", f"-I{ROOT / 'include'}", str(pathlib.Path(__file__).with_name("push_c.c")),
             str(lib), "-lpthread", "-ldl", "-lm", "-o", str(exe)],
            check=True,
        )
        config = job(args.frames, args.threads)
        text = _json(config)
        frames = pool()
        c_runs, py_runs = [], []
        for _ in range(args.rounds):
            out = subprocess.run([str(exe), str(args.frames), text], check=True,
                                 capture_output=True, text=True).stdout.split()
            c_runs.append(tuple(float(v) for v in out))
            py_runs.append(python_round(config, frames, args.frames))
    best_c = tuple(max(r[k] for r in c_runs) for k in range(2))
    best_py = tuple(max(r[k] for r in py_runs) for k in range(2))
    print(json.dumps({"job": config, "frames": args.frames, "rounds": args.rounds}))
    print(f"{'':22}{'push only':>14}{'push + finish':>16}")
    print(f"{'C (ptyflow_push)':22}{best_c[0]:>12.0f}/s{best_c[1]:>14.0f}/s")
    print(f"{'Python (Pipeline.push)':22}{best_py[0]:>12.0f}/s{best_py[1]:>14.0f}/s")
    print(f"{'Python / C':22}{best_py[0] / best_c[0]:>14.3f}{best_py[1] / best_c[1]:>16.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
