#!/usr/bin/env python3
"""Radius of convergence of `densrefine fit`: perturb a real model, refine, compare to truth.

usage: python benchmarks/fit_recovery.py [--cases 5ni1,helix,6vyb,3j6b,6yyt,actin]
                                         [--rms 0.5,1.0,1.5] [--maps real,sim,uneven,seg]
                                         [--seed 0] [--workdir DIR]
                                         [--fit-args "..."] [--peers] [--dry-run]
                                         [--force] [--json FILE]

Truth = the deposited model (EMD-3488's 5NI1, 4579 atoms, 3.2 Å; and the bundled
example helix_true.pdb, 175 atoms, 3.0 Å). Start models: `densrefine.perturb.perturb`
(rigid moves of helices/strands/loop segments + 15–30 Å plane-wave field + 10 % χ1
flips) at each RMS. Maps: "real" = the experimental map (EMD-3488; for the helix the
bundled noisy helix_3A.mrc), "sim" = the truth's map on the real map's grid
(electron table, method "fourier", Fourier-truncated at d) plus band-limited Gaussian
noise (signal RMS / noise RMS = 2 inside the molecule), normalised.

Each start model is refined with the CLI (`python -m densrefine fit START MAP -d D -o
PREFIX`, default settings unless --fit-args) in a subprocess; measured: RMSD (Å,
non-H atoms matched by chain/residue/name/altloc) to the truth before and after,
CC_mask (densrefine's score; with --peers also cctbx map_model_cc) and bond/angle RMSD
(densrefine's stats; with --peers cctbx_geometry.py), wall time. Prints a markdown
table. --dry-run makes all inputs and scores the start models but skips the fit.
Finished cases are cached as JSON in --workdir (--force refits).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

DATA = os.environ.get("DENSREFINE_DATA", os.path.join(os.path.dirname(ROOT), "shared", "data"))
PEERS = os.path.join(os.path.dirname(ROOT), "shared", "tools", "peers")
PEERS_PY = os.path.join(os.environ.get("PEERS_VENV", "/tmp/peers/venv"), "bin", "python")

CASES = {   # name: (truth model, real map, resolution Å)
    "5ni1": (os.path.join(DATA, "emd-3488_5ni1", "5ni1_updated.cif.gz"),
             os.path.join(DATA, "emd-3488_5ni1", "emd_3488.mrc"), 3.2),
    "helix": (os.path.join(ROOT, "example_maps", "helix_true.pdb"),
              os.path.join(ROOT, "example_maps", "helix_3A.mrc"), 3.0),
    "6vyb": (os.path.join(DATA, "emd-21457_6vyb-ntd", "6vyb_Ndom.pdb.gz"),
             os.path.join(DATA, "emd-21457_6vyb-ntd", "emd_21457_seg.mrc"), 3.2),
    "3j6b": (os.path.join(DATA, "emd-2566_3j6b-chain9", "3J6B_9.pdb.gz"),
             os.path.join(DATA, "emd-2566_3j6b-chain9", "2566_3J6B_9.mrc"), 3.2),
    "6yyt": (os.path.join(DATA, "emd-11007_6yyt-rna", "6yyt_rna.pdb.gz"),
             os.path.join(DATA, "emd-11007_6yyt-rna", "emd_11007_rna_box.map"), 2.9),
    "actin": (os.path.join(DATA, "emd-5168_actin-lowres", "3mfp_modeller.pdb.gz"),
              os.path.join(DATA, "emd-5168_actin-lowres", "emd_5168.map"), 6.6),
}
UNEVEN_RES = 6.0   # Å, the poorly resolved part of the "uneven" maps
"""Map kinds: "real" (the deposited map), "sim" (the truth's 3.2 Å map + noise), "uneven"
(the same with the half of the model at larger x blurred to UNEVEN_RES and noisier, a
smooth 6 Å transition: a flexible domain) and "seg" (the real map multiplied by a soft
mask 4 Å around the truth: an EMDB segmented map)."""
SIM_RES = 3.2      # Å, resolution of the simulated maps (brief: 3.2 Å with noise)


def band_limited_noise(shape, voxel, d_min, rng):
    """White Gaussian noise (nz, ny, nx) low-pass filtered at d_min Å, unit RMS."""
    noise = rng.normal(size=shape)
    f = np.fft.rfftn(noise)
    fz, fy = (np.fft.fftfreq(n, v) for n, v in zip(shape[:2], voxel[::-1][:2]))
    fx = np.fft.rfftfreq(shape[2], voxel[0])
    s2 = fz[:, None, None] ** 2 + fy[None, :, None] ** 2 + fx[None, None, :] ** 2
    f[s2 >= 1.0 / d_min**2] = 0.0
    out = np.fft.irfftn(f, s=shape, axes=(0, 1, 2))
    return out / out.std()


def simulated_map(truth_path, like_path, out_path, d_min=SIM_RES, snr=2.0, seed=0):
    """Write the truth's noisy model map on the grid of ``like_path``; return out_path."""
    import densrefine as dr
    from densrefine.simulate import simulate   # (dr.simulate is shadowed by the subpackage)

    model, like = dr.read_model(truth_path), dr.read_map(like_path)
    sim = simulate(model, like=like, resolution=d_min, method="fourier",
                      table="electron").values.astype(np.float64)
    inside = sim > 0.1 * sim.max()
    rng = np.random.default_rng(seed)
    noisy = sim + band_limited_noise(sim.shape, like.voxel_size, d_min, rng) * (
        sim[inside].std() / snr)
    noisy = (noisy - noisy.mean()) / noisy.std()
    dr.write_map(like.with_values(noisy.astype(np.float32)), out_path)
    return out_path


def uneven_map(truth_path, like_path, out_path, seed=0):
    """The truth's map at SIM_RES where x < median(x) of the atoms, at UNEVEN_RES (and twice
    the noise) beyond, blended over 6 Å; noise band-limited as in `simulated_map`."""
    import densrefine as dr
    from densrefine.simulate import simulate

    model, like = dr.read_model(truth_path), dr.read_map(like_path)
    maps = [simulate(model, like=like, resolution=r, method="fourier").values.astype(np.float64)
            for r in (SIM_RES, UNEVEN_RES)]
    cut = float(np.median(model.atoms.xyz[:, 0]))
    nz, ny, nx = like.shape
    x = like.origin[0] + np.arange(nx) * like.voxel_size[0]
    w = np.clip((x - cut) / 6.0 + 0.5, 0.0, 1.0)[None, None, :]      # 0: sharp, 1: blurred
    sig = maps[0] * (1 - w) + maps[1] * w
    inside = sig > 0.1 * sig.max()
    rng = np.random.default_rng(seed)
    noise = band_limited_noise(sig.shape, like.voxel_size, SIM_RES, rng) * (1 + w)
    noisy = sig + noise * sig[inside].std() / 2.0
    noisy = (noisy - noisy.mean()) / noisy.std()
    dr.write_map(like.with_values(noisy.astype(np.float32)), out_path)
    return out_path


def segmented_map(truth_path, like_path, out_path, radius=4.0):
    """The real map times a soft mask ``radius`` Å around the truth's atoms (zero beyond,
    cosine edge of 2 Å): what an EMDB segmented map looks like."""
    from scipy import ndimage

    import densrefine as dr

    model, like = dr.read_model(truth_path), dr.read_map(like_path)
    ijk = np.rint(like.xyz_to_index(model.atoms.xyz)).astype(int)
    ok = np.all((ijk >= 0) & (ijk < np.array(like.shape_xyz)), axis=1)
    seed = np.zeros(like.shape, bool)
    seed[ijk[ok, 2], ijk[ok, 1], ijk[ok, 0]] = True
    dist = ndimage.distance_transform_edt(~seed, sampling=like.voxel_size[::-1])
    w = np.clip((radius + 2.0 - dist) / 2.0, 0.0, 1.0)
    w = 0.5 - 0.5 * np.cos(np.pi * w)
    dr.write_map(like.with_values((np.asarray(like.values) * w).astype(np.float32)), out_path)
    return out_path


def perturbed_model(truth_path, rms, seed, out_path):
    """Write ``perturb(truth, rms=rms, seed=seed)`` as PDB; return out_path."""
    import warnings

    import densrefine as dr
    from densrefine.perturb import perturb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        truth = dr.read_model(truth_path)
        start = truth if rms == 0 else perturb(truth, rms=rms, seed=seed)   # 0: the deposited
    dr.write_model(start, out_path)
    return out_path


def _coords(path):
    import densrefine as dr

    at = dr.read_model(path).atoms
    keep = ~at.is_hydrogen
    keys = zip(at.chain[keep], at.res_seq[keep], at.icode[keep], at.atom_name[keep],
               at.altloc[keep])
    return dict(zip(keys, at.xyz[keep]))


def matched_rmsd(truth_path, model_path):
    """(RMSD Å, atoms matched, truth atoms) over non-H atoms matched by (chain, res_seq,
    icode, name, altloc)."""
    ref, mod = _coords(truth_path), _coords(model_path)
    keys = [k for k in mod if k in ref]
    d = np.array([mod[k] for k in keys]) - np.array([ref[k] for k in keys])
    return float(np.sqrt((d**2).sum(1).mean())), len(keys), len(ref)


def rmsd_to(truth_path, model_path):
    """RMSD (Å) over non-H atoms matched by (chain, res_seq, icode, name, altloc)."""
    return matched_rmsd(truth_path, model_path)[0]


def peer_json(script, *args, timeout=600):
    """Run a peer script in the peer venv (cctbx must not share a process with gemmi)."""
    p = subprocess.run([PEERS_PY, os.path.join(PEERS, script), *map(str, args)],
                       capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        return {"error": (p.stderr or p.stdout).strip().splitlines()[-1:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def our_score(model_path, map_path, d):
    import densrefine as dr
    from densrefine.scoring import score       # (dr.score is shadowed by the subpackage)

    r = score(dr.read_model(model_path), dr.read_map(map_path), d)
    return float(r.cc_mask)


def fit_available():
    try:
        import densrefine as dr

        return callable(getattr(dr, "fit", None))
    except Exception:  # noqa: BLE001
        return False


def run_fit(model_path, map_path, d, prefix, extra=(), timeout=3600):
    """`python -m densrefine fit` in a subprocess; (output model path, seconds, stats)."""
    suffix = ".cif" if model_path.endswith((".cif", ".cif.gz", ".mmcif")) else ".pdb"
    cmd = [sys.executable, "-m", "densrefine", "fit", model_path, map_path, "-d", str(d),
           "-o", prefix, *extra]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    secs = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
    stats_path = prefix + "_stats.json"
    stats = json.load(open(stats_path)) if os.path.exists(stats_path) else {}
    return prefix + suffix, secs, stats, shlex.join(cmd)


def _geom_from_stats(stats, when="after"):
    """(bond_rmsd, angle_rmsd) from a PREFIX_stats.json, tolerant of layout."""
    for key in (when, f"geometry_{when}"):
        g = stats.get(key)
        if isinstance(g, dict):
            g = g.get("geometry", g)
            if "bond_rmsd" in g:
                return g.get("bond_rmsd"), g.get("angle_rmsd")
    return None, None


def peer_scores(model, map_path, d, when):
    """cctbx CC_mask and bond/angle RMSD of ``model`` (keys cctbx_*_{when})."""
    cc = peer_json("cctbx_map_model_cc.py", model, map_path, d)
    g = peer_json("cctbx_geometry.py", model)
    return {f"cctbx_cc_mask_{when}": cc.get("cc_mask"), f"cctbx_bond_{when}": g.get("bond_rmsd"),
            f"cctbx_angle_{when}": g.get("angle_rmsd")}


def one_case(name, kind, rms, a, workdir):
    truth, real_map, d = CASES[name]
    if kind in ("sim", "uneven"):
        map_path = os.path.join(workdir, f"{name}_{kind}{SIM_RES:g}_s{a.seed}.mrc")
        if not os.path.exists(map_path):
            (simulated_map if kind == "sim" else uneven_map)(truth, real_map, map_path,
                                                             seed=a.seed)
        d = SIM_RES
    elif kind == "seg":
        map_path = os.path.join(workdir, f"{name}_seg.mrc")
        if not os.path.exists(map_path):
            segmented_map(truth, real_map, map_path)
    else:
        map_path = real_map
    start = perturbed_model(truth, rms, a.seed, os.path.join(workdir, f"{name}_rms{rms:g}_s{a.seed}.pdb"))
    row = {"case": name, "map": kind, "d": d, "rms_target": rms,
           "rmsd_before": rmsd_to(truth, start), "cc_mask_before": our_score(start, map_path, d),
           "cc_mask_truth": our_score(truth, map_path, d)}
    if a.peers:
        row.update(peer_scores(start, map_path, d, "before"))
    if a.dry_run:
        return row
    prefix = os.path.join(workdir, f"fit_{name}_{kind}_rms{rms:g}_s{a.seed}")
    cache = prefix + "_row.json"
    if os.path.exists(cache) and not a.force:
        cached = json.load(open(cache))
        if cached.get("fit_args", "") == a.fit_args:     # same seed (in the name) and options
            return cached
    out, secs, stats, cmd = run_fit(start, map_path, d, prefix, shlex.split(a.fit_args))
    row.update(seconds=secs, command=cmd, fit_args=a.fit_args, rmsd_after=rmsd_to(truth, out),
               cc_mask_after=our_score(out, map_path, d))
    row["bond_after"], row["angle_after"] = _geom_from_stats(stats)
    for key in ("validation",):           # Ramachandran, rotamers, clashscore when fit has them
        if isinstance(stats.get("after"), dict) and key in stats["after"]:
            row[f"{key}_after"] = stats["after"][key]
            row[f"{key}_before"] = (stats.get("before") or {}).get(key)
    if a.peers:
        row.update(peer_scores(out, map_path, d, "after"))
    with open(cache, "w") as f:
        json.dump(row, f, indent=1)
    return row


def fmt(v, nd=3):
    return "–" if v is None else f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def markdown(rows):
    head = ("| case | map | d Å | RMSD start → fit Å | ratio | CC_mask start → fit (truth) "
            "| cctbx CC_mask start → fit | bond Å / angle ° after (cctbx) | wall s |")
    lines = [head, "|---" * 9 + "|"]
    for r in rows:
        ratio = r["rmsd_after"] / r["rmsd_before"] if "rmsd_after" in r and r["rmsd_before"] else None
        lines.append(
            f"| {r['case']} | {r['map']} | {r['d']:g} | {fmt(r['rmsd_before'])} → "
            f"{fmt(r.get('rmsd_after'))} | {fmt(ratio, 2)} | {fmt(r['cc_mask_before'])} → "
            f"{fmt(r.get('cc_mask_after'))} ({fmt(r['cc_mask_truth'])}) | "
            f"{fmt(r.get('cctbx_cc_mask_before'))} → {fmt(r.get('cctbx_cc_mask_after'))} | "
            f"{fmt(r.get('cctbx_bond_after', r.get('bond_after')), 4)} / "
            f"{fmt(r.get('cctbx_angle_after', r.get('angle_after')), 2)} | "
            f"{fmt(r.get('seconds'), 1)} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="5ni1,helix")
    ap.add_argument("--rms", default="0.5,1.0,1.5")
    ap.add_argument("--maps", default="real,sim", help="real, sim, uneven, seg")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default="/tmp/densrefine_fit_recovery")
    ap.add_argument("--fit-args", default="", help="extra arguments for densrefine fit")
    ap.add_argument("--peers", action="store_true", help="also score with the cctbx peer scripts")
    ap.add_argument("--dry-run", action="store_true", help="make inputs, skip the fit")
    ap.add_argument("--force", action="store_true", help="refit cases cached in --workdir")
    ap.add_argument("--json", help="write all rows as JSON here")
    a = ap.parse_args(argv)
    os.makedirs(a.workdir, exist_ok=True)
    if not a.dry_run and not fit_available():
        ap.error("densrefine.fit is not available yet: use --dry-run")
    rows = []
    for name in a.cases.split(","):
        for kind in a.maps.split(","):
            for rms in (float(x) for x in a.rms.split(",")):
                rows.append(one_case(name, kind, rms, a, a.workdir))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    print(markdown(rows))


if __name__ == "__main__":
    main()
