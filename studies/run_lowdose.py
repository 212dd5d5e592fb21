#!/usr/bin/env python3
"""Runs ptyflow on the abTEM datasets and prints a table of phase correlations (issue 11).

    run_lowdose.py [--only NAME]... [--methods epie,wf-poisson,wf-amplitude] [PTYFLOW FLAGS...]

For every dataset (default: the six of make_abtem.py) and method, one at a time:
`$PTYFLOW_BIN replay <dump> --recon ... --quiet --threads 2 --out data/runs/<dataset>/<method>`
plus any extra flags given after the options (e.g. `--sweeps 10`). Then:

- the ground truth is sampled on the run's object grid (truth.py; rewritten when the grid
  changes);
- the phase correlation over the SCANNED area (object pixels inside the convex hull of the
  probe-centre positions), at the known registration (no shift search): the global phase is
  removed (recon · conj(c)/|c|, c = mean of recon · conj(truth) over the area) and the Pearson
  correlation of the two phases is taken;
- `ptyflow compare RUN/object.npy truth_object.npy --no-register --json` (whole array, with
  its phase-ramp removal) for comparison.

Prints markdown tables (rows: method, columns: set-up/dose) and writes everything to
results/last.json.
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
sys.dont_write_bytecode = True  # no __pycache__ in the work tree
import truth as truthmod  # noqa: E402

DATA = HERE / "data"
RUNS = DATA / "runs"
RESULTS = HERE / "results" / "last.json"
DEFAULT_BIN = "/work/main/target/release/ptyflow"

METHODS = {
    "epie": ["--recon", "epie"],
    "wf-poisson": ["--recon", "wf", "--loss", "poisson"],
    "wf-amplitude": ["--recon", "wf", "--loss", "amplitude"],
}

# The six datasets of make_abtem.py, in table order.
DEFAULT_DATASETS = [
    "paper000-1e5", "paper000-1e3", "paper000-4e2",
    "paper001-1e6", "paper001-1e4", "paper001-1e2",
]


def column_label(meta: dict) -> str:
    unit = "e/Å²" if meta["dose_unit"] == "e/A2" else "e/pattern"
    return f"{meta['name']} ({unit})"


def scanned_mask(shape, positions_px: np.ndarray) -> np.ndarray:
    """Object pixels (centres at integer [row, col]) inside the convex hull of the positions."""
    from scipy.spatial import Delaunay

    tri = Delaunay(positions_px)
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]]
    pts = np.stack([rr.ravel(), cc.ravel()], axis=1).astype(np.float64)
    return (tri.find_simplex(pts, tol=1e-9) >= 0).reshape(shape)


def phase_correlation(recon: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict:
    a = recon[mask].astype(np.complex128)
    t = truth[mask].astype(np.complex128)
    c = np.mean(a * np.conj(t))
    a = a * np.conj(c) / abs(c)
    pa, pt = np.angle(a), np.angle(t)
    pc = float(np.corrcoef(pa, pt)[0, 1])
    return dict(phase_correlation=pc, global_phase_rad=float(np.angle(c)),
                phase_rms_error_rad=float(np.sqrt(np.mean((pa - pt) ** 2))),
                area_px=int(mask.sum()))


def datasets_to_run(only) -> list[Path]:
    present = {p.parent.name: p.parent for p in DATA.glob("*/scan.raw")}
    if not only:
        names = [n for n in DEFAULT_DATASETS if n in present]
        missing = [n for n in DEFAULT_DATASETS if n not in present]
        if missing:
            print(f"missing (run make_abtem.py): {', '.join(missing)}", file=sys.stderr)
    else:
        names = []
        for pattern in only:
            hits = [n for n in present if n == pattern] or sorted(n for n in present if pattern in n)
            if not hits:
                raise SystemExit(f"--only {pattern}: no dataset in {DATA} matches")
            names += [n for n in hits if n not in names]
        def key(n):
            meta = json.loads((present[n] / "meta.json").read_text())
            return (meta["setup_meta"]["name"], n.count("-"), -meta["electrons_per_pattern"], n)

        names.sort(key=key)
    return [present[n] for n in names]


def run_one(binary: str, dataset: Path, method: str, extra: list[str], threads: int) -> dict:
    out = RUNS / dataset.name / method
    out.mkdir(parents=True, exist_ok=True)
    cmd = [binary, "replay", str(dataset / "scan.raw"), *METHODS[method], "--quiet",
           "--threads", str(threads), *extra, "--out", str(out)]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.time() - t0
    if proc.returncode != 0:
        return dict(dataset=dataset.name, method=method, command=cmd, error=proc.stderr.strip(),
                    exit_code=proc.returncode)
    report = json.loads((out / "report.json").read_text())
    grid = truthmod.read_grid(out)
    truth_npy = dataset / "truth_object.npy"
    if not truthmod.truth_matches(dataset / "truth_object.json", grid):
        truthmod.write_truth(dataset, out)
    recon = np.load(out / "object.npy")
    truth = np.load(truth_npy)
    positions_px = np.load(dataset / "positions.npy") / grid["pixel_angstrom"] + np.array(
        grid["origin_px"])
    mask = scanned_mask(recon.shape, positions_px)
    own = phase_correlation(recon, truth, mask)
    cmp = subprocess.run([binary, "compare", str(out / "object.npy"), str(truth_npy),
                          "--no-register", "--json"], capture_output=True, text=True)
    compare = {}
    if cmp.returncode == 0:
        c = json.loads(cmp.stdout)
        compare = {k: c[k] for k in ("phase_correlation", "correlation", "nrmse", "phase_snr")}
    recon_report = report.get("reconstruction", {})
    history = recon_report.get("loss_history") or []
    return dict(
        dataset=dataset.name, method=method, command=cmd,
        wall_s=report.get("wall_s"), process_s=elapsed,
        sweeps=recon_report.get("sweeps"), skipped=recon_report.get("skipped"),
        probe_updates=recon_report.get("probe_updates"),
        final_loss=history[-1] if history else None,
        **own, compare_no_register=compare,
    )


def table(results: list[dict], columns: list[str], labels: dict, methods: list[str], fmt) -> str:
    head = "| method | " + " | ".join(labels[c] for c in columns) + " |"
    sep = "|---|" + "---|" * len(columns)
    lines = [head, sep]
    by = {(r["dataset"], r["method"]): r for r in results}
    for m in methods:
        cells = []
        for c in columns:
            r = by.get((c, m))
            cells.append("—" if r is None else ("error" if "error" in r else fmt(r)))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="Unknown flags are passed on to `ptyflow replay` (e.g. --sweeps 10).")
    ap.add_argument("--only", action="append",
                    help="dataset name, or a part of one (paper000, 1e5 ...); repeatable")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma-separated subset of {','.join(METHODS)}")
    ap.add_argument("--threads", type=int, default=2, help="ptyflow --threads (default 2)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args, extra = ap.parse_known_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            raise SystemExit(f"--methods: unknown method {m!r}; expected {', '.join(METHODS)}")
    binary = os.environ.get("PTYFLOW_BIN", DEFAULT_BIN)
    datasets = datasets_to_run(args.only)
    if not datasets:
        raise SystemExit("no datasets: run make_abtem.py first")
    results, labels = [], {}
    for ds in datasets:
        labels[ds.name] = column_label(json.loads((ds / "meta.json").read_text()))
        for m in methods:
            r = run_one(binary, ds, m, extra, args.threads)
            results.append(r)
            if "error" in r:
                print(f"{ds.name} {m}: FAILED ({r['exit_code']}): {r['error']}", file=sys.stderr)
            else:
                print(f"{ds.name:>14} {m:<13} phase corr {r['phase_correlation']:.4f} "
                      f"(compare {r['compare_no_register'].get('phase_correlation', float('nan')):.4f})"
                      f"  {r['wall_s']:.2f} s", file=sys.stderr, flush=True)
    columns = [d.name for d in datasets]
    flags = " ".join(extra) if extra else "(defaults)"
    text = "\n\n".join([
        f"ptyflow replay flags: {flags}",
        "Phase correlation over the scanned area (known registration, global phase removed):",
        table(results, columns, labels, methods, lambda r: f"{r['phase_correlation']:.3f}"),
        "`ptyflow compare --no-register` phase correlation (whole object, ramp removed):",
        table(results, columns, labels, methods,
              lambda r: f"{r['compare_no_register'].get('phase_correlation', float('nan')):.3f}"),
        "Replay wall time (report.json `wall_s`, seconds):",
        table(results, columns, labels, methods, lambda r: f"{r['wall_s']:.2f}"),
    ])
    print(text)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    git = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    args.results.write_text(json.dumps(dict(
        date=datetime.datetime.now().isoformat(timespec="seconds"),
        ptyflow_bin=binary, ptyflow_version=version, git_head=git, extra_flags=extra,
        threads=args.threads, methods=methods, datasets=columns, labels=labels,
        results=results, markdown=text,
    ), indent=2) + "\n")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
