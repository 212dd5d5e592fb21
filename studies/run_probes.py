#!/usr/bin/env python3
"""Structured probes against dose with ptyflow's own simulator (issue 19 item 2).

    run_probes.py [--doses 1e2,1e3,1e4,1e5] [--scan 20x20] [--methods epie,wf-poisson]
                  [--probes defocus,fzp,random] [--seed 1]

Paper 003 (Pelz et al. 2017, fig. 5 and 6) compares a defocused probe, a defocused Fresnel zone
plate (FZP) and a randomised probe from a holographic phase plate, and finds the random probe
best at high spatial frequencies at low dose. Here, on paper 000's optics (the `mos2-defocus`
preset of `ptyflow simulate`: MoS2, 80 kV, alpha 24 mrad, 96 px at 0.8 mrad/px, step 2.3 A)
with a smaller scan, the three probes are (see `ProbeKind` in host/src/optics.rs):

- defocus: `--defocus 800` (geometric diameter 2 * 800 A * 24 mrad = 38 A);
- fzp: `--defocus 0 --probe-kind fzp:800`, a binary 0/pi zone plate of focal length 800 A
  (11 zones in the aperture); its +-1st orders are focused 800 A before and after the
  specimen, so its footprint is the same 38 A disc;
- random: `--defocus 0 --probe-kind random:7:1.6`, a random phase plate of 1.6 mrad cells
  (2 detector pixels; about 700 cells in the aperture), phases uniform in [0, 2 pi), in focus:
  a speckle probe whose envelope is about lambda / 1.6 mrad = 26 A wide.

For every probe and dose (areal, e/A^2 = electrons per pattern / step^2), one
`ptyflow simulate`, then `ptyflow replay --recon epie` and `--recon wf --loss poisson` with their
defaults (the probe from the sidecar: wf keeps it, ePIE starts from it), one thread each; each
object is scored by `ptyflow compare RECON truth --crop-px 48 --json` against the simulator's
ground truth (on exactly the reconstruction's grid; the 48 px border = half a window drops the
rim the scan does not cover): phase correlation, FRC 1/2-bit resolution (A), and the mean FRC
over the upper half of the frequencies (0.25 - 0.5 cycles/px: periods of 4 to 2 pixels, 2.17 A
to 1.09 A at the 0.544 A pixel) and over the lowest (below 0.1 cycles/px, periods > 4 A).

Writes data/probes/<probe>-<dose>/ (gitignored), results/probes.json and probes.png.
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
ROOT = HERE.parent
DATA = HERE / "data" / "probes"
RESULTS = HERE / "results" / "probes.json"
PLOT = HERE / "probes.png"
DEFAULT_BIN = str(ROOT / "target" / "release" / "ptyflow")

PROBES = {
    "defocus": ["--defocus", "800"],
    "fzp": ["--defocus", "0", "--probe-kind", "fzp:800"],
    "random": ["--defocus", "0", "--probe-kind", "random:7:1.6"],
}
METHODS = {
    "epie": ["--recon", "epie"],
    "wf-poisson": ["--recon", "wf", "--loss", "poisson"],
}


def run(cmd: list[str]) -> tuple[str, float]:
    start = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr}")
    return done.stdout, time.time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--doses", default="1e2,1e3,1e4,1e5")
    ap.add_argument("--scan", default="20x20")
    ap.add_argument("--methods", default="epie,wf-poisson")
    ap.add_argument("--probes", default="defocus,fzp,random")
    ap.add_argument("--seed", default="1")
    ap.add_argument("--rescore", action="store_true",
                    help="reuse simulations and reconstructions already in data/probes/")
    args = ap.parse_args()
    binary = os.environ.get("PTYFLOW_BIN", DEFAULT_BIN)
    doses = [float(d) for d in args.doses.split(",")]
    probes = args.probes.split(",")
    methods = args.methods.split(",")
    rows = []
    total = time.time()
    for probe in probes:
        for dose in doses:
            name = f"{probe}-{dose:g}"
            sim = DATA / name
            cmd = [binary, "simulate", "--out", str(sim), "--preset", "mos2-defocus",
                   "--scan", args.scan, "--dose", f"{dose:g}", "--seed", args.seed,
                   *PROBES[probe]]
            t_sim = None
            if not (args.rescore and (sim / "meta.json").exists()):
                _, t_sim = run(cmd)
            meta = json.loads((sim / "meta.json").read_text())
            pixel = meta["object_pixel_angstrom"]
            for method in methods:
                out = sim / "runs" / method
                rcmd = [binary, "replay", str(sim / "scan.raw"), *METHODS[method],
                        "--threads", "1", "--quiet", "--out", str(out)]
                t_rec = None
                if not (args.rescore and (out / "object.npy").exists()):
                    _, t_rec = run(rcmd)
                ccmd = [binary, "compare", str(out / "object.npy"), str(sim / "object.npy"),
                        "--crop-px", "48", "--json"]
                text, _ = run(ccmd)
                c = json.loads(text)
                frc = c["frc"]
                f = np.array(frc["frequency"])
                v = np.array(frc["frc"])
                high = float(v[(f >= 0.25) & (f <= 0.5)].mean())
                low = float(v[(f > 0.0) & (f < 0.1)].mean())
                crossing = frc["crossing"]
                # The first 1/2-bit crossing is often a dip in the lowest rings (periods of
                # tens of A, the object's slow phase the crop and ramp removal disturb); the
                # crossing above 0.05 cycles/px (periods < 8 A) is the resolution that matters.
                t = np.array(frc["threshold"])
                above = crossing_above(f, v, t, 0.05)
                row = {
                    "probe": probe,
                    "probe_flags": PROBES[probe],
                    "dose_e_per_a2": dose,
                    "electrons_per_pattern": meta["dose_per_pattern"],
                    "method": method,
                    "phase_correlation": c["phase_correlation"],
                    "frc_half_bit_angstrom": None if crossing is None else pixel / crossing,
                    "frc_half_bit_above_005_angstrom": None if above is None else pixel / above,
                    "frc_mean_high": high,
                    "frc_mean_low": low,
                    "frc_frequency_per_angstrom": (f / pixel).tolist(),
                    "frc": v.tolist(),
                    "frc_threshold": t.tolist(),
                    "shift_px": c["shift_px"],
                    "simulate_s": t_sim,
                    "replay_s": t_rec,
                    "simulate": cmd,
                    "replay": rcmd,
                    "compare": ccmd,
                }
                rows.append(row)
                res = row["frc_half_bit_above_005_angstrom"]
                print(f"{probe:8s} {dose:8.0e} {method:10s} phase corr {row['phase_correlation']:.3f}"
                      f"  FRC 1/2-bit {'-' if res is None else f'{res:.2f} A':>8s}"
                      f"  FRC high {high:.3f} low {low:.3f}  (simulate {t_sim or 0:.1f} s, "
                      f"replay {t_rec or 0:.1f} s)",
                      flush=True)
    elapsed = time.time() - total
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "study": "issue 19 item 2: structured probes vs dose, ptyflow simulate",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_head": head,
        "scan": args.scan,
        "object_pixel_angstrom": pixel,
        "elapsed_s": elapsed,
        "rows": rows,
    }, indent=1) + "\n")
    table(rows, doses, probes, methods)
    plot(rows, doses, probes, methods)
    print(f"{len(rows)} runs in {elapsed:.0f} s; wrote {RESULTS} and {PLOT}")


def crossing_above(f, v, t, lo):
    """First frequency above `lo` (cycles/px, linear interpolation) where the FRC `v` drops
    below the threshold `t`; None if it stays above up to Nyquist."""
    for i in range(1, len(f)):
        if f[i] <= lo:
            continue
        if v[i] < t[i]:
            if v[i - 1] >= t[i - 1] and f[i - 1] > lo:
                d0, d1 = v[i - 1] - t[i - 1], v[i] - t[i]
                return float(f[i - 1] + (f[i] - f[i - 1]) * d0 / (d0 - d1))
            return float(f[i])
    return None


def cell(rows, probe, dose, method):
    for r in rows:
        if (r["probe"], r["dose_e_per_a2"], r["method"]) == (probe, dose, method):
            return r
    return None


def table(rows, doses, probes, methods) -> None:
    for key, label, fmt in [
        ("phase_correlation", "phase correlation", "{:.3f}"),
        ("frc_half_bit_above_005_angstrom", "FRC 1/2-bit crossing above 0.05 cycles/px, A",
         "{:.2f}"),
        ("frc_mean_high", "mean FRC at 0.25-0.5 cycles/px", "{:.3f}"),
    ]:
        print(f"\n{label}\n")
        print("| method | probe | " + " | ".join(f"{d:g} e/A^2" for d in doses) + " |")
        print("|---|---|" + "---|" * len(doses))
        for method in methods:
            for probe in probes:
                vals = []
                for d in doses:
                    r = cell(rows, probe, d, method)
                    v = None if r is None else r[key]
                    vals.append("-" if v is None else fmt.format(v))
                print(f"| {method} | {probe} | " + " | ".join(vals) + " |")


def plot(rows, doses, probes, methods) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    styles = {"epie": "-", "wf-poisson": "--"}
    colours = {"defocus": "C0", "fzp": "C1", "random": "C2"}
    for method in methods:
        for probe in probes:
            rs = [cell(rows, probe, d, method) for d in doses]
            label = f"{probe}, {method}"
            kw = dict(ls=styles.get(method, ":"), color=colours.get(probe), marker="o")
            axes[0].plot(doses, [r["phase_correlation"] for r in rs], label=label, **kw)
            axes[1].plot(doses, [r["frc_mean_high"] for r in rs], label=label, **kw)
    for method, ls in [("wf-poisson", "--")]:
        if method not in methods:
            continue
        d = doses[0]
        for probe in probes:
            r = cell(rows, probe, d, method)
            axes[2].plot(r["frc_frequency_per_angstrom"], r["frc"], ls="-",
                         color=colours.get(probe), label=f"{probe}, {method}, {d:g} e/A^2")
    axes[0].set(xscale="log", xlabel="dose (e/A^2)", ylabel="phase correlation",
                title="phase correlation vs dose")
    axes[1].set(xscale="log", xlabel="dose (e/A^2)", ylabel="mean FRC, 0.25-0.5 cycles/px",
                title="high-frequency FRC vs dose")
    axes[2].set(xlabel="spatial frequency (1/A)", ylabel="FRC",
                title=f"FRC at {doses[0]:g} e/A^2")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("ptyflow simulate (paper 000 optics, MoS2): defocus vs Fresnel zone plate "
                 "vs random phase plate (paper 003)", fontsize=10)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


if __name__ == "__main__":
    main()
