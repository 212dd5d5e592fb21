#!/usr/bin/env python3
"""Phase correlation against the compression ratio C for the three bases of paper 002 (issue 13).

    run_compress.py [--only abtem|fixture] [--sweeps S] [--quick]

For each dataset (the abTEM multislice data of paper 000's set-up at 1e5 e/Å², data/paper000-1e5,
and the bundled fixture fixtures/mos2-defocus) and each basis size:

    $PTYFLOW_BIN compress DUMP --basis KIND:N --dark-field 1 --values amplitude --out RUN/c
    $PTYFLOW_BIN reconstruct RUN/c --sweeps S --perp-weight 0.1 --quiet --out RUN/r

plus the uncompressed reference `$PTYFLOW_BIN replay DUMP --recon wf --loss amplitude --sweeps S`
(the same loss on the pixels, the same step and sweeps). The phase correlation is taken over
the scanned area at the known registration with the global phase removed
(run_lowdose.phase_correlation; truth sampled on the run's grid by truth.py for the abTEM data,
the simulator's object.npy shifted by the object_origin_px bookkeeping for the fixture).

Values per pattern V = K_bf + 1 + 2 (one dark-field value, two perpendicular components);
C = pixels / V (paper 002 eq. 17). Writes results/compress.json and results/compress.png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True
import truth as truthmod  # noqa: E402
from run_lowdose import DEFAULT_BIN, phase_correlation, scanned_mask  # noqa: E402

RUNS = HERE / "data" / "runs" / "compress"
RESULTS = HERE / "results"

BASES = {
    "zernike": [15, 28, 45, 66],
    "binning": [16, 12, 8, 6],
    "patterns": [5, 10, 15, 30],
}
QUICK = {"zernike": [28, 45], "binning": [8], "patterns": [15]}

DATASETS = {
    "abtem": dict(dump=HERE / "data" / "paper000-1e5" / "scan.raw",
                  label="abTEM WSe2, paper 000 set-up, 1e5 e/Å² (40×40, 128²)"),
    "fixture": dict(dump=HERE.parent / "fixtures" / "mos2-defocus" / "scan.raw",
                    label="fixture mos2-defocus (10×10, 96²)"),
}


def run(cmd: list[str]) -> float:
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}\nfailed ({proc.returncode}): {proc.stderr.strip()}")
    return time.time() - t0


def score(name: str, out: Path) -> float:
    """Phase correlation of out/object.npy over the scanned area."""
    ds = DATASETS[name]["dump"].parent
    recon = np.load(out / "object.npy")
    grid = truthmod.read_grid(out)
    if name == "abtem":
        if not truthmod.truth_matches(ds / "truth_object.json", grid):
            truthmod.write_truth(ds, out)
        truth = np.load(ds / "truth_object.npy")
        positions_px = np.load(ds / "positions.npy") / grid["pixel_angstrom"] + np.array(
            grid["origin_px"])
    else:
        meta = json.loads((ds / "meta.json").read_text())
        t = np.load(ds / "object.npy")
        assert abs(meta["object_pixel_angstrom"] - grid["pixel_angstrom"]) < 1e-6
        # Truth pixel p is reconstruction pixel p + d (whole pixels: no rotation).
        d = np.round(np.array(grid["origin_px"]) - np.array(meta["object_origin_px"])).astype(int)
        truth = np.ones_like(recon)
        rows, cols = recon.shape
        for r in range(rows):
            tr = r - d[0]
            if 0 <= tr < t.shape[0]:
                lo, hi = max(0, d[1]), min(cols, t.shape[1] + d[1])
                truth[r, lo:hi] = t[tr, lo - d[1]:hi - d[1]]
        pos = np.load(ds / "positions.npy")
        positions_px = (pos - pos[0]) / grid["pixel_angstrom"] + np.array(grid["origin_px"])
    mask = scanned_mask(recon.shape, positions_px)
    return phase_correlation(recon, truth, mask)["phase_correlation"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=sorted(DATASETS), action="append")
    ap.add_argument("--sweeps", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="a few sizes only")
    ap.add_argument("--perp-weight", type=float, default=0.1,
                    help="ptyflow reconstruct --perp-weight (default 0.1, its default)")
    args = ap.parse_args(argv)
    binary = os.environ.get("PTYFLOW_BIN", DEFAULT_BIN)
    bases = QUICK if args.quick else BASES
    results = []
    for name in args.only or ["fixture", "abtem"]:
        dump = DATASETS[name]["dump"]
        if not dump.exists():
            print(f"{name}: {dump} missing (run make_abtem.py)", file=sys.stderr)
            continue
        base = RUNS / name
        ref = base / "uncompressed"
        s = run([binary, "replay", str(dump), "--recon", "wf", "--loss", "amplitude",
                 "--sweeps", str(args.sweeps), "--quiet", "--threads", "2", "--out", str(ref)])
        pixels = int(np.prod(np.load(ref / "probe.npy").shape))
        entry = dict(dataset=name, basis="uncompressed", n=None, values_per_pattern=pixels,
                     compression_ratio=1.0, phase_correlation=score(name, ref), seconds=s)
        results.append(entry)
        print(f"{name:>8} uncompressed        pc {entry['phase_correlation']:.4f}", file=sys.stderr)
        for kind, sizes in bases.items():
            for n in sizes:
                tag = f"{kind}-{n}"
                c, r = base / tag / "c", base / tag / "r"
                t_c = run([binary, "compress", str(dump), "--basis", f"{kind}:{n}",
                           "--dark-field", "1", "--values", "amplitude", "--threads", "2",
                           "--out", str(c)])
                t_r = run([binary, "reconstruct", str(c), "--sweeps", str(args.sweeps),
                           "--perp-weight", str(args.perp_weight), "--quiet", "--out", str(r)])
                crep = json.loads((c / "report.json").read_text())
                e = dict(dataset=name, basis=kind, n=n,
                         values_per_pattern=crep["values_per_frame"],
                         compression_ratio=crep["compression_ratio"],
                         angle_mean_rad=crep["angle_mean_rad"],
                         phase_correlation=score(name, r),
                         compress_seconds=t_c, reconstruct_seconds=t_r)
                results.append(e)
                print(f"{name:>8} {tag:<18} V {e['values_per_pattern']:>3}  "
                      f"C {e['compression_ratio']:7.1f}  pc {e['phase_correlation']:.4f}",
                      file=sys.stderr, flush=True)
    text = table(results)
    print(text)
    plot(results, RESULTS / "compress.png")
    git = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "compress.json").write_text(json.dumps(dict(
        date=datetime.datetime.now().isoformat(timespec="seconds"), ptyflow_bin=binary,
        git_head=git, sweeps=args.sweeps, perp_weight=args.perp_weight, results=results, markdown=text), indent=2) + "\n")
    return 0


def table(results: list[dict]) -> str:
    lines = ["| dataset | basis | V | C | phase corr. | Δ vs uncompressed |", "|---|---|---|---|---|---|"]
    ref = {r["dataset"]: r["phase_correlation"] for r in results if r["basis"] == "uncompressed"}
    for r in results:
        b = r["basis"] if r["n"] is None else f"{r['basis']}:{r['n']}"
        lines.append(f"| {r['dataset']} | {b} | {r['values_per_pattern']} | "
                     f"{r['compression_ratio']:.0f} | {r['phase_correlation']:.3f} | "
                     f"{r['phase_correlation'] - ref[r['dataset']]:+.3f} |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({r["dataset"] for r in results})
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        rows = [r for r in results if r["dataset"] == name]
        ref = next(r for r in rows if r["basis"] == "uncompressed")["phase_correlation"]
        for kind, marker in [("zernike", "o"), ("binning", "s"), ("patterns", "^")]:
            pts = sorted((r["compression_ratio"], r["phase_correlation"])
                         for r in rows if r["basis"] == kind)
            if pts:
                ax.plot(*zip(*pts), marker=marker, label=kind)
        ax.axhline(ref, color="k", lw=1, label="uncompressed")
        ax.axhline(ref - 0.03, color="k", lw=1, ls="--", label="uncompressed − 0.03")
        ax.axvline(pixels_over_48(rows), color="grey", lw=1, ls=":", label="V = 48")
        ax.set_xscale("log")
        ax.set_xlabel("compression ratio C (eq. 17)")
        ax.set_ylabel("phase correlation (scanned area)")
        ax.set_title(DATASETS[name]["label"], fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def pixels_over_48(rows: list[dict]) -> float:
    pixels = next(r for r in rows if r["basis"] == "uncompressed")["values_per_pattern"]
    return pixels / 48


if __name__ == "__main__":
    sys.exit(main())
