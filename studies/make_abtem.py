#!/usr/bin/env python3
"""Independent multislice data for issue 11 (low-dose online reconstruction), made with abTEM.

A WSe2 monolayer with point defects, simulated ONCE noise-free per set-up with abTEM's
multislice, then Poisson noise at three doses. Writes, under studies/data/:

    <setup>/             noise-free data of one set-up (paper000, paper001)
        intensities.npy      float32 (frames, M, M): expected pattern per electron (incident
                             probe sums to 1; electrons beyond the frame are lost), ptyflow
                             layout: row = y, col = x, zero angle at pixel (M/2, M/2)
        truth_phase.npy      float32 (N, N) [row = y, col = x]: sigma * V_projected, the phase
                             of the specimen's transmission function on abTEM's potential grid
        positions.npy        float64 (frames, 2): probe positions (y, x) in Å relative to scan
                             position 0, scan order (rows = slow axis = y)
        specimen.xyz         the atoms (extended xyz, abTEM coordinates x, y, z in Å)
        meta.json            every parameter
    <setup>-<dose>/      one noisy dump: scan.raw, scan.raw.json (ptyflow sidecar with optics),
                         meta.json, positions.npy

and with --fixture the committed fixture fixtures/wse2-abtem/ from the saved noise-free
paper000 data (no new simulation).

Conventions (ptyflow's): abTEM arrays are indexed (x, y); everything written here is
transposed to [row = y, col = x]. Scan index = row * cols + col, rows the slow axis (y).
Defocus positive = underfocus (abTEM and ptyflow agree: C10 = -defocus).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
FIXTURE = HERE.parent / "fixtures" / "wse2-abtem"

# Every parameter of the two set-ups. `k`: the potential's extent is k windows (lambda/theta_px)
# so abTEM's far-field pixel lambda/extent is theta_px/k; k x k blocks are summed into one
# detector pixel (k odd, so the zero-angle fine pixel is the centre of the centre block).
SETUPS = {
    "paper000": dict(
        reference="Song et al. 2019 (paper 000): defocused-probe ptychography at 80 kV",
        kv=80.0,
        alpha_mrad=24.0,
        defocus_angstrom=800.0,
        cs_mm=0.0,
        scan=(40, 40),
        step_angstrom=2.3,
        frame=128,
        mrad_per_px=0.8,
        k=3,
        gpts=1536,
        se_vacancies=6,
        w_vacancies=1,
        seed=11000,
        # (name, electrons per pattern, dose in e/Å^2); electrons per pattern = dose * step^2
        doses=[("1e5", 1e5), ("1e3", 1e3), ("4e2", 4e2)],
        dose_unit="e/A2",
    ),
    "paper001": dict(
        reference="Leidl et al. 2024 (paper 001): focused-probe ptychography at 300 kV",
        kv=300.0,
        alpha_mrad=18.0,
        defocus_angstrom=0.0,
        cs_mm=0.0,
        scan=(64, 64),
        step_angstrom=0.273,
        frame=64,
        mrad_per_px=1.5,
        k=3,
        gpts=512,
        se_vacancies=4,
        w_vacancies=1,
        seed=11001,
        doses=[("1e6", 1e6), ("1e4", 1e4), ("1e2", 1e2)],
        dose_unit="e/pattern",
    ),
}

SPECIMEN = dict(
    formula="WSe2", kind="2H", a=3.28, thickness=3.34, vacuum=1.0, slices=5,
    parametrization="lobato", projection="infinite",
)

# The committed fixture: a 16 x 16 sub-scan of paper000 at 1e3 e/Å^2 with 64 x 64 frames.
# mode "crop": the central 64 x 64 pixels of the 0.8 mrad frames (bright field + 1.6 mrad of
# dark field; window lambda/theta = 52.2 Å holds the 38.4 Å probe; zero angle at (32, 32)).
# mode "bin2": 2 x 2 binning to 1.6 mrad (window 26.1 Å < probe, zero angle a quarter pixel
# off centre): kept for comparison only, see studies/README.md.
FIXTURE_PARAMS = dict(source="paper000", sub_scan=16, frame=64, dose_e_per_A2=1e3, seed=11100)
FIXTURE_MODES = ("crop", "bin2")


def configure_abtem():
    import dask

    dask.config.set(scheduler="synchronous")
    import abtem

    abtem.config.set({
        "dask.lazy": False,
        "fftw.threads": 1,
        "mkl.threads": 1,
        "diagnostics.progress_bar": False,
        "device": "cpu",
    })
    return abtem


def rel(path: Path) -> str:
    """`path` relative to studies/ when it lies inside, else absolute."""
    try:
        return str(path.resolve().relative_to(HERE))
    except ValueError:
        return str(path.resolve())


def electrons_per_pattern(setup: dict, value: float) -> float:
    if setup["dose_unit"] == "e/A2":
        return value * setup["step_angstrom"] ** 2
    return value


def geometry(setup: dict, abtem) -> dict:
    """Extent, sampling and the scan's place in the potential (abTEM coordinates)."""
    from abtem.core.energy import energy2sigma, energy2wavelength

    lam = energy2wavelength(setup["kv"] * 1e3)
    theta = setup["mrad_per_px"] * 1e-3
    window = lam / theta
    extent = setup["k"] * window
    rows, cols = setup["scan"]
    step = setup["step_angstrom"]
    # Scan centred in the cell: its seam (the cell is cut from a larger lattice) lies as far
    # as possible from every probe.
    x0 = (extent - (cols - 1) * step) / 2
    y0 = (extent - (rows - 1) * step) / 2
    return dict(
        wavelength_angstrom=lam,
        sigma_rad_per_volt_angstrom=energy2sigma(setup["kv"] * 1e3),
        window_angstrom=window,
        recon_pixel_angstrom=window / setup["frame"],
        extent_angstrom=extent,
        potential_sampling_angstrom=extent / setup["gpts"],
        far_field_sampling_mrad=lam / extent * 1e3,
        scan_origin_xy_angstrom=[x0, y0],
    )


def build_specimen(setup: dict, geo: dict, rng: np.random.Generator):
    """WSe2 monolayer cut to the square cell, with single Se and W vacancies in the scan."""
    import abtem
    import ase.build

    unit = ase.build.mx2(
        formula=SPECIMEN["formula"], kind=SPECIMEN["kind"], a=SPECIMEN["a"],
        thickness=SPECIMEN["thickness"], vacuum=SPECIMEN["vacuum"],
    )
    orth = abtem.orthogonalize_cell(unit)
    L = geo["extent_angstrom"]
    reps = (int(math.ceil(L / orth.cell[0, 0])) + 1, int(math.ceil(L / orth.cell[1, 1])) + 1, 1)
    atoms = orth * reps
    p = atoms.positions
    atoms = atoms[(p[:, 0] >= 0) & (p[:, 0] < L) & (p[:, 1] >= 0) & (p[:, 1] < L)]
    atoms.set_cell([L, L, orth.cell[2, 2]])
    atoms.pbc = True

    rows, cols = setup["scan"]
    step = setup["step_angstrom"]
    x0, y0 = geo["scan_origin_xy_angstrom"]
    inset = 1.0
    lo = np.array([x0 + inset, y0 + inset])
    hi = np.array([x0 + (cols - 1) * step - inset, y0 + (rows - 1) * step - inset])
    p = atoms.positions
    inside = np.all((p[:, :2] >= lo) & (p[:, :2] <= hi), axis=1)
    symbols = np.array(atoms.get_chemical_symbols())
    chosen: list[int] = []
    min_sep = 4.0

    def pick(symbol: str, count: int):
        candidates = np.flatnonzero(inside & (symbols == symbol))
        order = rng.permutation(candidates)
        n = 0
        for i in order:
            if n == count:
                break
            if all(np.linalg.norm(p[i, :2] - p[j, :2]) >= min_sep for j in chosen):
                chosen.append(int(i))
                n += 1
        if n < count:
            print(f"warning: placed {n} of {count} {symbol} vacancies (scanned area too small)",
                  file=sys.stderr)

    pick("W", setup["w_vacancies"])
    pick("Se", setup["se_vacancies"])
    defects = [
        dict(element=str(symbols[i]), x=float(p[i, 0]), y=float(p[i, 1]), z=float(p[i, 2]),
             y_rel_scan0=float(p[i, 1] - y0), x_rel_scan0=float(p[i, 0] - x0))
        for i in chosen
    ]
    keep = np.ones(len(atoms), bool)
    keep[chosen] = False
    return atoms[keep], defects


def scan_positions_xy(setup: dict, geo: dict) -> np.ndarray:
    """abTEM (x, y) positions in scan order: row (y) slow, column (x) fast."""
    rows, cols = setup["scan"]
    step = setup["step_angstrom"]
    x0, y0 = geo["scan_origin_xy_angstrom"]
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return np.stack([x0 + c.ravel() * step, y0 + r.ravel() * step], axis=1)


def far_field_to_frames(dp: np.ndarray, frame: int, k: int) -> np.ndarray:
    """abTEM fftshifted patterns (B, Nx, Ny) -> detector frames (B, M, M) [ky, kx].

    The zero angle (fine pixel N//2) becomes the centre of the k x k block summed into
    detector pixel (M/2, M/2)."""
    n = dp.shape[-1]
    start = n // 2 - k // 2 - k * (frame // 2)
    stop = start + k * frame
    if start < 0 or stop > n:
        raise ValueError("the frame reaches beyond the simulated far field")
    crop = dp[:, start:stop, start:stop]
    binned = crop.reshape(dp.shape[0], frame, k, frame, k).sum(axis=(2, 4))
    return np.ascontiguousarray(binned.transpose(0, 2, 1))


def simulate(name: str, setup: dict, out: Path, batch: int, scan_override=None) -> None:
    abtem = configure_abtem()
    import ase.io

    setup = dict(setup)
    if scan_override is not None:
        setup["scan"] = scan_override
    geo = geometry(setup, abtem)
    rng = np.random.default_rng(setup["seed"])
    atoms, defects = build_specimen(setup, geo, rng)
    out.mkdir(parents=True, exist_ok=True)
    ase.io.write(out / "specimen.xyz", atoms, format="extxyz")

    t0 = time.time()
    z = atoms.cell[2, 2]
    potential = abtem.Potential(
        atoms, gpts=setup["gpts"], slice_thickness=z / SPECIMEN["slices"],
        parametrization=SPECIMEN["parametrization"], projection=SPECIMEN["projection"],
    ).build(lazy=False)
    assert np.allclose(potential.extent, geo["extent_angstrom"])
    t_potential = time.time() - t0
    # Ground truth: phase of the transmission function, sigma * projected potential
    # (PotentialArray.project() sums the slices), transposed to [y, x].
    projected = np.asarray(potential.project().array, dtype=np.float64)
    truth = (geo["sigma_rad_per_volt_angstrom"] * projected).T.astype(np.float32)
    np.save(out / "truth_phase.npy", truth)

    probe = abtem.Probe(
        energy=setup["kv"] * 1e3, semiangle_cutoff=setup["alpha_mrad"],
        defocus=setup["defocus_angstrom"], Cs=setup["cs_mm"] * 1e7,
    )
    probe.grid.match(potential)
    # Incident probe normalisation: its full far field (vacuum, no specimen).
    vac = probe.build(scan=np.array([[geo["extent_angstrom"] / 2] * 2]), lazy=False)
    vac_dp = vac.diffraction_patterns(max_angle="full", fftshift=True, parity="same").array
    vac_dp = vac_dp.reshape((-1,) + vac_dp.shape[-2:])
    incident = float(vac_dp.sum())
    vac_frame = far_field_to_frames(vac_dp / incident, setup["frame"], setup["k"])
    incident_in_frame = float(vac_frame.sum())

    pos_xy = scan_positions_xy(setup, geo)
    frames = len(pos_xy)
    m = setup["frame"]
    partial = out / "intensities.partial.npy"
    progress_file = out / "progress.json"
    key = hashlib.sha256(json.dumps([setup, SPECIMEN], sort_keys=True).encode()).hexdigest()
    done = 0
    if partial.exists() and progress_file.exists():
        prog = json.loads(progress_file.read_text())
        if prog.get("key") == key:
            done = prog["done"]
    if done == 0:
        arr = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32,
                                        shape=(frames, m, m))
    else:
        arr = np.lib.format.open_memmap(partial, mode="r+")
        print(f"{name}: resuming at frame {done}/{frames}", flush=True)
    t_sim = time.time()
    start_done = done
    while done < frames:
        sl = slice(done, min(done + batch, frames))
        exit_waves = probe.multislice(potential, scan=pos_xy[sl], lazy=False)
        dp = exit_waves.diffraction_patterns(max_angle="full", fftshift=True, parity="same").array
        dp = np.asarray(dp).reshape((-1,) + dp.shape[-2:])
        arr[sl] = far_field_to_frames(dp / incident, m, setup["k"])
        done = sl.stop
        if done % (batch * 10) == 0 or done == frames:
            arr.flush()
            progress_file.write_text(json.dumps({"key": key, "done": done}))
            el = time.time() - t_sim
            rate = (done - start_done) / max(el, 1e-9)
            print(f"{name}: {done}/{frames} frames, {el:.0f} s, ETA {(frames - done) / rate:.0f} s",
                  flush=True)
    arr.flush()
    sim_seconds = time.time() - t_sim
    intens = np.asarray(arr)
    np.save(out / "intensities.npy", intens)
    del arr
    partial.unlink()
    progress_file.unlink()

    pos_yx = np.stack([pos_xy[:, 1] - pos_xy[0, 1], pos_xy[:, 0] - pos_xy[0, 0]], axis=1)
    np.save(out / "positions.npy", pos_yx.astype(np.float64))
    in_frame = intens.sum(axis=(1, 2))
    meta = dict(
        name=name,
        setup=setup,
        specimen=dict(SPECIMEN, atoms=len(atoms), defects=defects,
                      note="single Se vacancies remove one Se of a Se2 column; the W vacancy "
                           "removes a W atom; sites drawn with default_rng(seed), >= 4 Å apart, "
                           "1 Å inside the scanned area"),
        geometry=geo,
        abtem_version=abtem.__version__,
        python=platform.python_version(),
        numpy=np.__version__,
        simulation=dict(
            method="abTEM multislice, Probe.multislice(PotentialArray, scan=batch of positions), "
                   "Waves.diffraction_patterns(max_angle='full', fftshift=True)",
            batch=batch,
            slices=int(potential.num_slices),
            slice_thickness_angstrom=float(z / SPECIMEN["slices"]),
            potential_seconds=t_potential,
            multislice_seconds=sim_seconds,
            resumed_at_frame=start_done,
            incident_far_field_sum=incident,
            incident_fraction_in_frame=incident_in_frame,
            fraction_in_frame_mean=float(in_frame.mean()),
            fraction_in_frame_min=float(in_frame.min()),
            fraction_in_frame_max=float(in_frame.max()),
        ),
        truth=dict(
            file="truth_phase.npy",
            what="phase of the transmission function: sigma * V_projected, sigma = "
                 "abtem.core.energy.energy2sigma(E), V_projected = PotentialArray.project() "
                 "(sum of the slices of Potential(...).build()); [row = y, col = x]",
            shape=list(truth.shape),
            sampling_angstrom=geo["potential_sampling_angstrom"],
            pixel_00_yx_angstrom=[0.0, 0.0],
            scan_position0_yx_angstrom=[geo["scan_origin_xy_angstrom"][1],
                                        geo["scan_origin_xy_angstrom"][0]],
            periodic_extent_angstrom=geo["extent_angstrom"],
        ),
        intensities=dict(
            file="intensities.npy", dtype="float32", shape=list(intens.shape),
            layout="frames in scan order; [row = ky, col = kx]; zero angle at (M/2, M/2); "
                   "expected electrons per incident electron (incident probe sums to 1)",
        ),
        positions=dict(file="positions.npy",
                       what="(y, x) in Å relative to scan position 0, scan order"),
    )
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{name}: potential {t_potential:.1f} s, multislice {sim_seconds:.1f} s "
          f"({sim_seconds / max(frames - start_done, 1):.3f} s/frame); "
          f"mean fraction in frame {in_frame.mean():.4f}", flush=True)


def write_dump(path: Path, counts: np.ndarray, scan, optics: dict) -> str:
    dtype = "u16" if counts.max() <= np.iinfo(np.uint16).max else "u32"
    data = counts.astype("<u2" if dtype == "u16" else "<u4")
    path.parent.mkdir(parents=True, exist_ok=True)
    data.tofile(path)
    sidecar = {
        "format": "raw", "width": int(counts.shape[2]), "height": int(counts.shape[1]),
        "dtype": dtype, "byte_order": "little", "header_bytes": 0, "frame_header_bytes": 0,
        "frame_footer_bytes": 0, "frames": int(counts.shape[0]), "scan": [int(s) for s in scan],
        "optics": optics,
    }
    Path(str(path) + ".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return dtype


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_doses(name: str, setup: dict, src: Path) -> None:
    meta = json.loads((src / "meta.json").read_text())
    setup = meta["setup"]
    intens = np.load(src / "intensities.npy", mmap_mode="r")
    positions = np.load(src / "positions.npy")
    optics = dict(
        kv=setup["kv"], alpha_mrad=setup["alpha_mrad"], defocus_angstrom=setup["defocus_angstrom"],
        cs_mm=setup["cs_mm"], mrad_per_px=setup["mrad_per_px"],
        step_angstrom=setup["step_angstrom"], scan_rotation_deg=0.0,
    )
    suffix = "" if src.name == name else src.name[len(name):]
    for index, (label, value) in enumerate(setup["doses"]):
        epp = electrons_per_pattern(setup, value)
        seed = [setup["seed"], index + 1]
        rng = np.random.default_rng(seed)
        counts = np.empty(intens.shape, np.uint32)
        for i in range(intens.shape[0]):
            counts[i] = rng.poisson(epp * intens[i].astype(np.float64))
        out = DATA / f"{name}{suffix}-{label}"
        out.mkdir(parents=True, exist_ok=True)
        dtype = write_dump(out / "scan.raw", counts, setup["scan"], optics)
        np.save(out / "positions.npy", positions)
        per = counts.sum(axis=(1, 2))
        dmeta = dict(
            name=out.name,
            setup_dir=rel(src),
            dose_label=label,
            dose_value=value,
            dose_unit=setup["dose_unit"],
            dose_definition="electrons per pattern = dose [e/Å^2] * step^2 (paper000); paper001's "
                            "doses are given in electrons per pattern directly",
            electrons_per_pattern=epp,
            dose_e_per_A2=epp / setup["step_angstrom"] ** 2,
            noise="counts = Poisson(electrons_per_pattern * I), I = noise-free intensities.npy "
                  "of the set-up (incident probe sums to 1, so electrons beyond the frame are lost)",
            rng=f"numpy.random.default_rng({seed}), frames drawn in scan order",
            dtype=dtype,
            counts_per_pattern_mean=float(per.mean()),
            counts_max_pixel=int(counts.max()),
            sha256_scan_raw=sha256(out / "scan.raw"),
            optics=optics,
            scan=setup["scan"],
            truth_source=dict(
                phase_file=rel(src / "truth_phase.npy"),
                sampling_angstrom=meta["truth"]["sampling_angstrom"],
                scan_position0_yx_angstrom=meta["truth"]["scan_position0_yx_angstrom"],
            ),
            setup_meta=meta,
        )
        (out / "meta.json").write_text(json.dumps(dmeta, indent=2) + "\n")
        print(f"{out.name}: {epp:.4g} electrons/pattern, mean {per.mean():.1f} counts recorded, "
              f"max pixel {counts.max()}, {dtype}", flush=True)


def fixture_block(meta: dict, n: int) -> tuple[int, int]:
    """The n x n sub-scan holding the most defects at least 2 steps inside its edges (ties:
    the W vacancy nearest the block centre, then the first in scan order)."""
    rows, cols = meta["setup"]["scan"]
    step = meta["setup"]["step_angstrom"]
    defects = meta["specimen"]["defects"]
    w = [d for d in defects if d["element"] == "W"][0]
    best = None
    for r0 in range(rows - n + 1):
        for c0 in range(cols - n + 1):
            inside = sum(
                r0 + 2 <= d["y_rel_scan0"] / step <= r0 + n - 3
                and c0 + 2 <= d["x_rel_scan0"] / step <= c0 + n - 3
                for d in defects)
            dist = math.hypot(w["y_rel_scan0"] / step - (r0 + (n - 1) / 2),
                              w["x_rel_scan0"] / step - (c0 + (n - 1) / 2))
            key = (-inside, round(dist, 6), r0, c0)
            if best is None or key < best[0]:
                best = (key, r0, c0)
    return best[1], best[2]


def make_fixture(out: Path = FIXTURE, mode: str = "crop") -> None:
    """Sub-scan of paper000 at 1e3 e/Å^2 with 64 x 64 frames, from the saved noise-free data
    (deterministic for FIXTURE_PARAMS["seed"])."""
    if mode not in FIXTURE_MODES:
        raise ValueError(f"fixture mode {mode!r}, expected one of {FIXTURE_MODES}")
    fp = dict(FIXTURE_PARAMS, mode=mode)
    src = DATA / fp["source"]
    meta = json.loads((src / "meta.json").read_text())
    setup = meta["setup"]
    rows, cols = setup["scan"]
    n = fp["sub_scan"]
    step = setup["step_angstrom"]
    r0, c0 = fixture_block(meta, n)
    intens = np.load(src / "intensities.npy", mmap_mode="r")
    idx = (np.arange(r0, r0 + n)[:, None] * cols + np.arange(c0, c0 + n)[None, :]).ravel()
    sub = np.asarray(intens[idx], dtype=np.float64)
    big = sub.shape[-1]
    m = fp["frame"]
    if mode == "crop":
        a = big // 2 - m // 2
        frames = sub[:, a : a + m, a : a + m]
        mrad_per_px = setup["mrad_per_px"]
        zero = [m / 2, m / 2]
        zero_note = (f"central {m} x {m} pixels of the {big} x {big} frames: zero angle at pixel "
                     f"({m // 2}, {m // 2}); frame edge {m / 2 * mrad_per_px:.1f} mrad")
    else:
        b = big // m
        frames = sub.reshape(len(idx), m, b, m, b).sum(axis=(2, 4))
        mrad_per_px = setup["mrad_per_px"] * b
        zero = [(big / 2 - (b - 1) / 2) / b] * 2
        zero_note = (f"{b} x {b} binning of {big}-px frames with zero angle at pixel centre "
                     f"({big // 2}, {big // 2}) puts it at binned ({zero[0]}, {zero[1]}), off "
                     f"(M/2, M/2); window {meta['geometry']['window_angstrom'] / b:.1f} Å is "
                     "smaller than the probe")
    binned = frames.astype(np.float32).astype(np.float64)  # stored precision, deterministic
    epp = fp["dose_e_per_A2"] * step ** 2
    rng = np.random.default_rng(fp["seed"])
    counts = np.empty(binned.shape, np.uint32)
    for i in range(len(idx)):
        counts[i] = rng.poisson(epp * binned[i])
    optics = dict(
        kv=setup["kv"], alpha_mrad=setup["alpha_mrad"], defocus_angstrom=setup["defocus_angstrom"],
        cs_mm=setup["cs_mm"], mrad_per_px=mrad_per_px, step_angstrom=step,
        scan_rotation_deg=0.0,
    )
    out.mkdir(parents=True, exist_ok=True)
    dtype = write_dump(out / "scan.raw", counts, (n, n), optics)
    if dtype != "u16":
        raise RuntimeError("fixture counts do not fit u16")
    pos_all = np.load(src / "positions.npy")
    pos = pos_all[idx] - pos_all[idx[0]]
    np.save(out / "positions.npy", pos)
    origin = np.array(meta["truth"]["scan_position0_yx_angstrom"]) + pos_all[idx[0]]
    per = counts.sum(axis=(1, 2))
    fmeta = dict(
        name=out.name,
        made_by=f"studies/make_abtem.py --fixture --fixture-mode {mode} "
                "(from studies/data/paper000/intensities.npy)",
        fixture=fp,
        sub_scan_rows=[r0, r0 + n],
        sub_scan_cols=[c0, c0 + n],
        frame=m,
        mrad_per_px=mrad_per_px,
        zero_angle_px=zero,
        zero_angle_note=zero_note,
        fraction_in_frame_mean=float(binned.sum(axis=(1, 2)).mean()),
        electrons_per_pattern=epp,
        dose_e_per_A2=fp["dose_e_per_A2"],
        rng=f"numpy.random.default_rng({fp['seed']}), frames in scan order; expected counts "
            "= electrons_per_pattern * float32(frame intensities)",
        counts_per_pattern_mean=float(per.mean()),
        counts_max_pixel=int(counts.max()),
        optics=optics,
        scan=[n, n],
        truth=dict(
            file="truth_object.npy",
            what="exp(i * sigma * V_projected), band-limited to the grid's Nyquist, on the "
                 "grid `ptyflow replay scan.raw --recon epie` reconstructs on",
            scan_position0_yx_angstrom_on_truth_phase=origin.tolist(),
        ),
        positions="positions.npy: (y, x) in Å relative to the fixture's scan position 0",
        sha256_scan_raw=sha256(out / "scan.raw"),
        truth_source=dict(
            phase_file=rel(src / "truth_phase.npy"),
            sampling_angstrom=meta["truth"]["sampling_angstrom"],
            scan_position0_yx_angstrom=origin.tolist(),
        ),
        abtem_version=meta["abtem_version"],
        setup_meta=meta,
    )
    (out / "meta.json").write_text(json.dumps(fmeta, indent=2) + "\n")
    # The truth on exactly the grid ptyflow reconstructs this dump on: the grid comes from a
    # ptyflow run (report.json + object.npy), as in run_lowdose.py.
    import subprocess
    import tempfile

    sys.dont_write_bytecode = True
    sys.path.insert(0, str(HERE))
    import truth as truthmod

    binary = os.environ.get("PTYFLOW_BIN", "/work/main/target/release/ptyflow")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([binary, "replay", str(out / "scan.raw"), "--recon", "epie",
                               "--sweeps", "0", "--quiet", "--threads", "1", "--out", tmp],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{binary} replay failed: {proc.stderr.strip()}")
        info = truthmod.write_truth(out, Path(tmp), out / "truth_object.npy", record=False)
    fmeta["truth"]["grid"] = info["grid"]
    fmeta["truth"]["band_limit_inv_angstrom"] = info["band_limit_inv_angstrom"]
    fmeta["truth"]["grid_from"] = ("ptyflow replay scan.raw --recon epie: report.json "
                                   "object_pixel_angstrom, object_origin_px; object.npy shape")
    (out / "meta.json").write_text(json.dumps(fmeta, indent=2) + "\n")
    print(f"fixture: rows {r0}..{r0 + n}, cols {c0}..{c0 + n}, {m}x{m} frames, "
          f"mean {per.mean():.1f} counts, max {counts.max()}, sha256 {fmeta['sha256_scan_raw']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", action="append", help="set-up name (paper000, paper001); repeatable")
    ap.add_argument("--batch", type=int, default=8, help="probe positions per multislice call")
    ap.add_argument("--scan", help="RxC: a smaller test scan, written as <setup>-RxC")
    ap.add_argument("--doses-only", action="store_true",
                    help="redraw the noisy dumps from saved noise-free data, no simulation")
    ap.add_argument("--force", action="store_true", help="simulate even if intensities.npy exists")
    ap.add_argument("--fixture", action="store_true",
                    help="only (re)make fixtures/wse2-abtem from studies/data/paper000")
    ap.add_argument("--fixture-mode", choices=FIXTURE_MODES, default="crop",
                    help="crop (the committed fixture) or bin2 (comparison only)")
    ap.add_argument("--fixture-out", type=Path,
                    help="fixture folder (default: fixtures/wse2-abtem for crop, "
                         "studies/data/fixture-bin2 for bin2)")
    args = ap.parse_args(argv)
    if args.fixture:
        out = args.fixture_out or (FIXTURE if args.fixture_mode == "crop"
                                   else DATA / "fixture-bin2")
        make_fixture(out, args.fixture_mode)
        return 0
    names = args.only or list(SETUPS)
    for name in names:
        setup = SETUPS[name]
        override = None
        src = DATA / name
        if args.scan:
            override = tuple(int(v) for v in args.scan.lower().split("x"))
            src = DATA / f"{name}-{args.scan}"
        if not args.doses_only and (args.force or not (src / "intensities.npy").exists()):
            simulate(name, setup, src, args.batch, override)
        make_doses(name, setup, src)
    return 0


if __name__ == "__main__":
    sys.exit(main())
