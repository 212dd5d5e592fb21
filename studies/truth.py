#!/usr/bin/env python3
"""Samples the abTEM ground truth on exactly the grid a ptyflow run reconstructs on.

    truth.py DATASET_DIR RUN_DIR [--out FILE]

DATASET_DIR has meta.json with `truth_source` (written by make_abtem.py): the fine truth phase
(sigma * V_projected on abTEM's potential grid, [row = y, col = x], pixel (0, 0) at (0, 0) Å,
periodic with the potential's extent), its sampling and the Å coordinates of scan position 0
on it. RUN_DIR is a `ptyflow replay --recon ...` output: object.npy gives the grid's shape,
report.json its pixel (`object_pixel_angstrom`) and `object_origin_px` (the object pixel
[row, col] under the probe centre at scan position 0).

Object pixel (r, c) lies at y = y0 + (r - r0)·dx, x = x0 + (c - c0)·dx on the truth. The truth's
Fourier series is evaluated only up to the grid's Nyquist frequency 1/(2 dx) per axis (a
frequency exactly at Nyquist with half weight), at those points: Fourier interpolation with
the band limit of the grid. Writes truth_object.npy = exp(i·phase), complex64, and
truth_object.json (the grid it belongs to), so
`ptyflow compare RUN_DIR/object.npy truth_object.npy --no-register` works.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def find_key(tree, key):
    """The first value of `key` anywhere in a JSON tree (depth first)."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        for v in tree.values():
            found = find_key(v, key)
            if found is not None:
                return found
    elif isinstance(tree, list):
        for v in tree:
            found = find_key(v, key)
            if found is not None:
                return found
    return None


def read_grid(run_dir: Path) -> dict:
    report = json.loads((run_dir / "report.json").read_text())
    obj = np.load(run_dir / "object.npy", mmap_mode="r")
    dx = find_key(report, "object_pixel_angstrom")
    origin = find_key(report, "object_origin_px")
    if dx is None or origin is None:
        raise SystemExit(f"{run_dir}/report.json has no object_pixel_angstrom/object_origin_px")
    return dict(shape=[int(s) for s in obj.shape], pixel_angstrom=float(dx),
                origin_px=[float(o) for o in origin])


def band_limited_sample(phase: np.ndarray, fine_dx: float, ys: np.ndarray, xs: np.ndarray,
                        k_max: float) -> np.ndarray:
    """Evaluates the Fourier series of the periodic `phase` (pixel fine_dx, pixel (0,0) at 0)
    at y = ys (rows) and x = xs (cols), keeping |k| <= k_max per axis (|k| = k_max halved)."""
    ny, nx = phase.shape
    spec = np.fft.fft2(phase.astype(np.float64)) / (ny * nx)

    def axis(n, coords):
        freq = np.fft.fftfreq(n, d=fine_dx)
        q = np.abs(np.fft.fftfreq(n) * n)  # |frequency| in units of 1/extent
        limit = k_max * n * fine_dx
        weight = np.where(q < limit - 1e-3, 1.0, 0.0)
        weight[np.abs(q - limit) <= 1e-3] = 0.5
        keep = np.flatnonzero(weight > 0)
        basis = np.exp(2j * np.pi * np.outer(coords, freq[keep])) * weight[keep]
        return keep, basis

    ky, ey = axis(ny, ys)
    kx, ex = axis(nx, xs)
    sub = spec[np.ix_(ky, kx)]
    return np.real(ey @ sub @ ex.T)


def truth_on_grid(dataset: Path, grid: dict) -> np.ndarray:
    meta = json.loads((dataset / "meta.json").read_text())
    src = meta["truth_source"]
    phase_path = Path(src["phase_file"])
    if not phase_path.is_absolute():
        phase_path = HERE / phase_path
    phase = np.load(phase_path)
    fine_dx = float(src["sampling_angstrom"])
    y0, x0 = src["scan_position0_yx_angstrom"]
    dx = grid["pixel_angstrom"]
    r0, c0 = grid["origin_px"]
    rows, cols = grid["shape"]
    ys = y0 + (np.arange(rows) - r0) * dx
    xs = x0 + (np.arange(cols) - c0) * dx
    return band_limited_sample(phase, fine_dx, ys, xs, 0.5 / dx)


def write_truth(dataset: Path, run_dir: Path, out: Path | None = None,
                record: bool = True) -> dict:
    """Writes truth_object.npy (and, with `record`, truth_object.json); returns the record."""
    grid = read_grid(run_dir)
    phase = truth_on_grid(dataset, grid)
    out = out or dataset / "truth_object.npy"
    np.save(out, np.exp(1j * phase).astype(np.complex64))
    info = dict(
        grid=grid, from_run=str(run_dir), dataset=str(dataset),
        phase_min=float(phase.min()), phase_max=float(phase.max()),
        band_limit_inv_angstrom=0.5 / grid["pixel_angstrom"],
    )
    if record:
        Path(str(out)[: -len(".npy")] + ".json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def truth_matches(truth_json: Path, grid: dict) -> bool:
    if not truth_json.exists():
        return False
    g = json.loads(truth_json.read_text())["grid"]
    return (g["shape"] == grid["shape"] and np.isclose(g["pixel_angstrom"], grid["pixel_angstrom"])
            and np.allclose(g["origin_px"], grid["origin_px"]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    info = write_truth(args.dataset, args.run, args.out)
    print(f"{args.out or args.dataset / 'truth_object.npy'}: grid {info['grid']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
