#!/usr/bin/env python3
"""Structured probes against dose on abTEM multislice data (issue 19 item 2, part b).

    run_probes_abtem.py [--scan 24x24] [--probes defocus,fzp,random] [--methods epie,wf-poisson]

The three probes of run_probes.py, on paper 001's set-up of make_abtem.py (WSe2 monolayer with
defects, 300 kV, alpha 18 mrad, 64 x 64 frames at 1.5 mrad/px, window 13.1 A, step 0.273 A,
5-slice multislice) with a smaller scan, because the window is small (13.1 A) the probes are
scaled to it:

- defocus: 150 A underfocus (geometric diameter 2 * 150 A * 18 mrad = 5.4 A);
- fzp: `--probe-kind fzp:150` in focus (2.5 zones; first orders focused 150 A either side);
- random: `--probe-kind random:7:4` in focus (4 mrad cells, about 60 in the aperture;
  speckle envelope about lambda / 4 mrad = 4.9 A).

abTEM gets the same aperture-plane function as ptyflow (`ProbeKind` in host/src/optics.rs) as
a custom `abtem.transfer.BaseAperture` whose `_evaluate_from_angular_grid` returns
`hard disc(alpha) * exp(i phi_plate)`; the random plate's cell phases are recomputed here
from the documented splitmix64 formula, so the dump's sidecar (`optics.probe_kind`) gives
ptyflow's reconstruction the probe abTEM used. Everything else is make_abtem.py's
(`simulate`, `make_doses`: noise-free multislice once per probe, Poisson noise per dose) and
run_lowdose.py's (`run_one`: replay, truth on the run's grid, phase correlation over the
scanned area); the FRC is `ptyflow compare RUN/object.npy truth_object.npy --no-register
--json` over the whole object.

Writes data/probes001-<probe>/ and data/probes001-<probe>-<dose>/ (gitignored),
results/probes_abtem.json, probes_abtem.png.
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
import make_abtem as mk  # noqa: E402
import run_lowdose as rl  # noqa: E402

RESULTS = HERE / "results" / "probes_abtem.json"
PLOT = HERE / "probes_abtem.png"
MASK64 = (1 << 64) - 1

PROBES = {
    "defocus": dict(defocus_angstrom=150.0, probe_kind="defocus"),
    "fzp": dict(defocus_angstrom=0.0, probe_kind="fzp:150"),
    "random": dict(defocus_angstrom=0.0, probe_kind="random:7:4"),
}
DOSES = [("1e3", 1e3), ("1e4", 1e4), ("1e5", 1e5)]  # e/A^2; electrons per pattern = dose * step^2


def splitmix64(state: int) -> int:
    z = (state + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def plate_phase(kind: str, theta_x: np.ndarray, theta_y: np.ndarray, lam: float,
                alpha_mrad: float) -> np.ndarray:
    """ptyflow's `ProbeKind::plate_phase` (angles in rad)."""
    parts = kind.split(":")
    if parts[0] == "defocus":
        return np.zeros_like(theta_x)
    if parts[0] == "fzp":
        f = float(parts[1])
        zone = np.floor(f * (theta_x ** 2 + theta_y ** 2) / lam).astype(np.int64)
        return np.where(zone % 2 == 1, np.pi, 0.0)
    seed = int(parts[1])
    cell = (float(parts[2]) if len(parts) > 2 and parts[2] else alpha_mrad / 10.0) * 1e-3
    rng = float(parts[3]) if len(parts) > 3 else 2.0 * np.pi
    i = np.floor(theta_x / cell).astype(np.int64)
    j = np.floor(theta_y / cell).astype(np.int64)
    out = np.empty(theta_x.shape)
    cache: dict = {}
    s0 = splitmix64(seed)
    for idx, (a, b) in enumerate(zip(i.ravel(), j.ravel())):
        key = (int(a), int(b))
        if key not in cache:
            h = splitmix64(splitmix64(s0 ^ (key[0] & MASK64)) ^ (key[1] & MASK64))
            cache[key] = rng * (h >> 11) / float(1 << 53)
        out.flat[idx] = cache[key]
    return out


def plate_aperture_class(abtem):
    from abtem.transfer import BaseAperture

    class PlateAperture(BaseAperture):
        """Hard disc of radius alpha times exp(i phi_plate) (ptyflow's ProbeKind)."""

        def __init__(self, semiangle_cutoff: float, kind: str, wavelength: float):
            self._kind = kind
            self._lam = wavelength
            super().__init__(semiangle_cutoff=semiangle_cutoff, distributions=())

        @property
        def soft(self) -> bool:
            return False

        def _evaluate_from_angular_grid(self, alpha, phi):
            alpha = np.asarray(alpha)
            phi = np.asarray(phi)
            a = self.semiangle_cutoff * 1e-3
            tx, ty = alpha * np.cos(phi), alpha * np.sin(phi)
            plate = plate_phase(self._kind, tx, ty, self._lam, self.semiangle_cutoff)
            return ((alpha <= a) * np.exp(1j * plate)).astype(np.complex64)

    return PlateAperture


class AbtemWithPlate:
    """abtem, with `Probe` building the plate of `kind` into its aperture."""

    def __init__(self, abtem, kind: str):
        self._abtem = abtem
        self._kind = kind
        self._cls = plate_aperture_class(abtem)

    def __getattr__(self, name):
        return getattr(self._abtem, name)

    def Probe(self, energy, semiangle_cutoff, defocus, Cs):  # noqa: N802 (abtem's name)
        from abtem.core.energy import energy2wavelength

        if self._kind == "defocus":
            return self._abtem.Probe(energy=energy, semiangle_cutoff=semiangle_cutoff,
                                     defocus=defocus, Cs=Cs)
        aperture = self._cls(semiangle_cutoff, self._kind, energy2wavelength(energy))
        return self._abtem.Probe(energy=energy, aperture=aperture, defocus=defocus, Cs=Cs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scan", default="24x24")
    ap.add_argument("--probes", default="defocus,fzp,random")
    ap.add_argument("--methods", default="epie,wf-poisson")
    args = ap.parse_args()
    binary = os.environ.get("PTYFLOW_BIN", rl.DEFAULT_BIN)
    scan = tuple(int(v) for v in args.scan.split("x"))
    abtem = mk.configure_abtem()
    rows = []
    t_all = time.time()
    for probe in args.probes.split(","):
        spec = PROBES[probe]
        name = f"probes001-{probe}"
        setup = dict(mk.SETUPS["paper001"], scan=scan, doses=DOSES, dose_unit="e/A2",
                     defocus_angstrom=spec["defocus_angstrom"])
        src = mk.DATA / name
        t0 = time.time()
        if not (src / "intensities.npy").exists():
            mk.configure_abtem = lambda: AbtemWithPlate(abtem, spec["probe_kind"])
            mk.simulate(name, setup, src, batch=8)
        t_sim = time.time() - t0
        mk.make_doses(name, setup, src)
        for label, dose in DOSES:
            ds = mk.DATA / f"{name}-{label}"
            side = ds / "scan.raw.json"
            sc = json.loads(side.read_text())
            sc["optics"]["probe_kind"] = spec["probe_kind"]
            side.write_text(json.dumps(sc, indent=2) + "\n")
            for method in args.methods.split(","):
                r = rl.run_one(binary, ds, method, [], 1)
                if "error" in r:
                    sys.exit(f"{ds.name} {method}: {r['error']}")
                out = rl.RUNS / ds.name / method
                cmp = subprocess.run([binary, "compare", str(out / "object.npy"),
                                      str(ds / "truth_object.npy"), "--no-register", "--json"],
                                     capture_output=True, text=True, check=True)
                c = json.loads(cmp.stdout)
                pixel = json.loads((ds / "truth_object.json").read_text())["grid"]["pixel_angstrom"]
                f = np.array(c["frc"]["frequency"])
                v = np.array(c["frc"]["frc"])
                crossing = c["frc"]["crossing"]
                row = dict(
                    probe=probe, probe_kind=spec["probe_kind"],
                    defocus_angstrom=spec["defocus_angstrom"], dose_e_per_a2=dose,
                    electrons_per_pattern=dose * setup["step_angstrom"] ** 2, method=method,
                    phase_correlation_scanned=r["phase_correlation"],
                    phase_correlation_compare=c["phase_correlation"],
                    frc_half_bit_angstrom=None if crossing is None or pixel is None
                    else pixel / crossing,
                    frc_mean_high=float(v[(f >= 0.25) & (f <= 0.5)].mean()),
                    frc_mean_low=float(v[(f > 0.0) & (f < 0.1)].mean()),
                    frc_frequency_per_angstrom=(f / pixel).tolist() if pixel else None,
                    frc=v.tolist(), noise_free_simulation_s=t_sim,
                    replay_s=r.get("process_s"), command=r["command"],
                )
                rows.append(row)
                res = row["frc_half_bit_angstrom"]
                print(f"{probe:8s} {dose:8.0e} {method:10s} phase corr "
                      f"{row['phase_correlation_scanned']:.3f} (compare "
                      f"{row['phase_correlation_compare']:.3f})  FRC 1/2-bit "
                      f"{'-' if res is None else f'{res:.2f} A':>8s}  FRC high "
                      f"{row['frc_mean_high']:.3f}", flush=True)
    head = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    RESULTS.write_text(json.dumps(dict(
        study="issue 19 item 2: structured probes vs dose, abTEM multislice (paper001 set-up)",
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        git_head=head, scan=list(scan), abtem_version=abtem.__version__,
        elapsed_s=time.time() - t_all, rows=rows), indent=1) + "\n")
    plot(rows)
    print(f"{len(rows)} runs in {time.time() - t_all:.0f} s; wrote {RESULTS} and {PLOT}")


def plot(rows) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    colours = {"defocus": "C0", "fzp": "C1", "random": "C2"}
    styles = {"epie": "-", "wf-poisson": "--"}
    keys = sorted({(r["probe"], r["method"]) for r in rows})
    for probe, method in keys:
        rs = sorted((r for r in rows if (r["probe"], r["method"]) == (probe, method)),
                    key=lambda r: r["dose_e_per_a2"])
        d = [r["dose_e_per_a2"] for r in rs]
        kw = dict(color=colours.get(probe), ls=styles.get(method, ":"), marker="o",
                  label=f"{probe}, {method}")
        axes[0].plot(d, [r["phase_correlation_scanned"] for r in rs], **kw)
        axes[1].plot(d, [r["frc_mean_high"] for r in rs], **kw)
    axes[0].set(xscale="log", xlabel="dose (e/A^2)", ylabel="phase correlation (scanned area)")
    axes[1].set(xscale="log", xlabel="dose (e/A^2)", ylabel="mean FRC, 0.25-0.5 cycles/px")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("abTEM multislice (WSe2, paper 001 set-up): defocus vs FZP vs random plate",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


if __name__ == "__main__":
    main()
