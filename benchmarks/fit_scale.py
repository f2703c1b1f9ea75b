#!/usr/bin/env python3
"""Time per macro cycle and peak memory of `densrefine fit` at ~1k, ~10k, ~100k atoms.

usage: python benchmarks/fit_scale.py [--sizes 1000,10000,100000] [--res 3.2]
                                      [--spacing 1.0] [--fit-args "--stages xyz --cycles 2"]
                                      [--workdir DIR] [--dry-run] [--json FILE]

Models: EMD-3488's 5NI1 (4579 atoms, H removed) replicated on a lattice (extent + 4 Å)
and cut at whole residues (`benchmarks/simulate.py` `replicate`); written as mmCIF
(chain names like "A12" and > 99,999 atoms do not fit PDB). Map: the replicated model's
own noisy map (electron table, "fourier", d = --res, band-limited noise with signal/noise
RMS 2 inside the molecule; `fit_recovery.simulated_map`'s recipe) on a P1 box with 5 Å
margin and --spacing Å voxels. Start: the model perturbed by `densrefine.perturb`
(0.5 Å RMS, seed 0). Each size runs `python -m densrefine fit` in its own process; its
peak RSS comes from os.wait4 (ru_maxrss of that child only), per-cycle times from
PREFIX_stats.json ("cycles"[].time_s of the xyz stage; setup and total from "timings").
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fit_recovery as fr  # noqa: E402


def make_case(n, res, spacing, workdir, seed=0):
    """Write (start.cif, true.cif, map.mrc) for ~n atoms; return paths and atom count."""
    import gemmi

    import densrefine as dr
    from densrefine.io.model import read_model
    from densrefine.perturb import perturb
    from densrefine.simulate import box_around, simulate
    from simulate import replicate

    true_p, start_p, map_p = (os.path.join(workdir, f"scale_{n}_{s}") for s in
                              ("true.cif", "start.cif", "map.mrc"))
    if all(os.path.exists(p) for p in (true_p, start_p, map_p)):
        return true_p, start_p, map_p, len(read_model(true_p))
    src = gemmi.read_structure(fr.CASES["5ni1"][0])
    src.remove_hydrogens()
    st = replicate(src, n)
    st.setup_entities()
    st.make_mmcif_document().write_file(true_p)
    model = read_model(true_p)
    like = box_around(model.atoms.xyz, spacing, margin=5.0)
    sim = simulate(model, like=like, resolution=res, method="fourier").values.astype(np.float64)
    inside = sim > 0.1 * sim.max()
    noise = fr.band_limited_noise(sim.shape, like.voxel_size, res, np.random.default_rng(seed))
    noisy = sim + noise * sim[inside].std() / 2.0
    dr.write_map(like.with_values(((noisy - noisy.mean()) / noisy.std()).astype(np.float32)),
                 map_p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dr.write_model(perturb(model, rms=0.5, seed=seed), start_p)
    return true_p, start_p, map_p, len(model)


def child(n, a):
    """Make the case, run fit in a grandchild, print one JSON row with its peak RSS."""
    os.makedirs(a.workdir, exist_ok=True)
    true_p, start_p, map_p, n_atoms = make_case(n, a.res, a.spacing, a.workdir)
    row = {"target_atoms": n, "n_atoms": n_atoms, "map": map_p,
           "map_shape": list(__import__("mrcfile").open(map_p, header_only=True).header
                             [["nx", "ny", "nz"]].item()),
           "rmsd_start": fr.rmsd_to(true_p, start_p)}
    if a.dry_run:
        print(json.dumps(row))
        return
    prefix = os.path.join(a.workdir, f"scale_{n}_fit")
    cmd = [sys.executable, "-m", "densrefine", "fit", start_p, map_p, "-d", str(a.res),
           "-o", prefix, *shlex.split(a.fit_args)]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         cwd=fr.ROOT)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    row.update(command=shlex.join(cmd), wall_s=time.perf_counter() - t0,
               returncode=os.waitstatus_to_exitcode(status), peak_rss_mb=ru.ru_maxrss / 1024)
    if row["returncode"] != 0:
        row["stderr"] = err[-2000:]
    stats_p = prefix + "_stats.json"
    if os.path.exists(stats_p):
        s = json.load(open(stats_p))
        xyz = [c["time_s"] for c in s.get("cycles", []) if c.get("stage") == "xyz"]
        row.update(cycle_s=xyz, mean_cycle_s=float(np.mean(xyz)) if xyz else None,
                   setup_s=s.get("timings", {}).get("setup_s"),
                   total_s=s.get("timings", {}).get("total_s"), device=s.get("device"),
                   rmsd_after=fr.rmsd_to(true_p, prefix + ".cif")
                   if os.path.exists(prefix + ".cif") else None)
    print(json.dumps(row))


def markdown(rows):
    lines = ["| atoms | map voxels (x×y×z) | s / xyz macro cycle | setup s | total s | wall s "
             "| peak RSS MB | RMSD to truth start → fit Å |", "|---" * 8 + "|"]
    for r in rows:
        f = fr.fmt
        lines.append(f"| {r['n_atoms']:,} | {'×'.join(map(str, r['map_shape']))} | "
                     f"{f(r.get('mean_cycle_s'), 2)} | {f(r.get('setup_s'), 1)} | "
                     f"{f(r.get('total_s'), 1)} | {f(r.get('wall_s'), 1)} | "
                     f"{f(r.get('peak_rss_mb'), 0)} | {f(r['rmsd_start'])} → "
                     f"{f(r.get('rmsd_after'))} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--res", type=float, default=3.2)
    ap.add_argument("--spacing", type=float, default=1.0)
    ap.add_argument("--fit-args", default="--stages xyz --cycles 2")
    ap.add_argument("--workdir", default="/tmp/densrefine_fit_scale")
    ap.add_argument("--timeout", type=int, default=3600)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return child(a.child, a)
    if not a.dry_run and not fr.fit_available():
        ap.error("densrefine.fit is not available yet: use --dry-run")
    rows = []
    for n in (int(x) for x in a.sizes.split(",")):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", str(n), "--res", str(a.res),
               "--spacing", str(a.spacing), "--fit-args", a.fit_args, "--workdir", a.workdir]
        cmd += ["--dry-run"] if a.dry_run else []
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
        if p.returncode != 0:
            print(p.stderr[-3000:], file=sys.stderr)
            continue
        rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    print(markdown(rows))


if __name__ == "__main__":
    main()
