#!/usr/bin/env python3
"""Partitioned vs whole-model `densrefine fit` on tiled real chains with a simulated map.

usage: python benchmarks/partition_scale.py --atoms 100000 [--whole] [--partition auto]
           [--passes 2] [--res 3.2] [--spacing 1.0] [--fit-args "--stages xyz --cycles 2"]
           [--workers N] [--memory-limit 4GB] [--workdir DIR] [--json FILE]

The case is `benchmarks/fit_scale.py`'s: EMD-3488's 5NI1 (H removed) copied on a lattice
to ~--atoms atoms (mmCIF), its own noisy map (electron table, Fourier-truncated at --res,
band-limited noise, signal/noise RMS 2), the start perturbed by `densrefine.perturb`
(0.5 Å RMS, seed 0). Both fits run as `python -m densrefine fit` children with the same
--fit-args; the partitioned one adds ``--partition``. Reported: wall time, peak RSS of the
fit process (os.wait4; for the partitioned run that is the client), peak RSS of each Dask
worker (the workers' own ru_maxrss, from the stats), blocks per pass, the bonds across
block boundaries (max |z|, count beyond 4σ), and — with --whole — the RMSD between the
two refined models, each one's RMSD to the truth and CC_mask after (whole-model scores).
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
sys.path.insert(0, HERE)

import fit_recovery as fr
from fit_scale import make_case


def run_fit(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         cwd=fr.ROOT)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    return {"command": shlex.join(cmd), "wall_s": round(time.perf_counter() - t0, 1),
            "returncode": os.waitstatus_to_exitcode(status),
            "peak_rss_mb": round(ru.ru_maxrss / 1024), "stderr": err[-1500:]}


def _json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def coords(path):
    import densrefine as dr

    return np.asarray(dr.read_model(path).atoms.xyz)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--atoms", type=int, default=100000)
    ap.add_argument("--res", type=float, default=3.2)
    ap.add_argument("--spacing", type=float, default=1.0)
    ap.add_argument("--partition", default="auto")
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--fit-args", default="--stages xyz --cycles 2")
    ap.add_argument("--part-args", default="", help="extra options of the partitioned run")
    ap.add_argument("--whole", action="store_true", help="also the whole-model fit")
    ap.add_argument("--workdir", default="/tmp/densrefine_partition")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    os.makedirs(a.workdir, exist_ok=True)
    t0 = time.perf_counter()
    true_p, start_p, map_p, n = make_case(a.atoms, a.res, a.spacing, a.workdir)
    row = {"n_atoms": n, "map": map_p, "case_s": round(time.perf_counter() - t0, 1),
           "load_avg_start": os.getloadavg()[0], "fit_args": a.fit_args,
           "rmsd_start": fr.rmsd_to(true_p, start_p)}
    base = [sys.executable, "-m", "densrefine", "fit", start_p, map_p, "-d", str(a.res),
            *shlex.split(a.fit_args), "-q"]
    tag = f"{a.partition}_{a.passes}"
    pre = os.path.join(a.workdir, f"part_{n}_{tag}")
    row["partitioned"] = run_fit(base + ["-o", pre, "--partition", a.partition,
                                         "--partition-passes", str(a.passes),
                                         *shlex.split(a.part_args)])
    s = _json(pre + "_stats.json")
    part = s["partition"]
    row["partitioned"].update(
        blocks=[len(p["blocks"]) for p in part["passes"]],
        block_atoms=[[min(b["n_atoms"] for b in p["blocks"]),
                      max(b["n_atoms"] for b in p["blocks"])] for p in part["passes"]],
        block_halo=[[min(b["n_halo"] for b in p["blocks"]),
                     max(b["n_halo"] for b in p["blocks"])] for p in part["passes"]],
        worker_peak_rss_mb=round(part["peak_rss_mb_per_worker"]),
        client_peak_rss_mb=round(part.get("client_peak_rss_mb") or 0),
        per_block_peak_rss_mb=[[round(b["peak_rss_mb"]) for b in p["blocks"]]
                               for p in part["passes"]],
        workers=part.get("workers"), boundary={k: part["boundary"][k] for k in
                                                ("bonds_across", "max_abs_z", "n_beyond",
                                                 "rmsz", "per_pass")},
        cc_mask_before=(s.get("before") or {}).get("cc_mask"),
        cc_mask_after=(s.get("after") or {}).get("cc_mask"),
        bond_rmsd_after=s["after"]["geometry"]["bond_rmsd"],
        max_bond_z=s["after"]["geometry"].get("max_bond_z"),
        n_bonds_beyond_4sigma=s["after"]["geometry"].get("n_bonds_beyond"),
        updated_atoms=[p.get("updated_atoms") for p in part["passes"]],
        angle_rmsd_after=s["after"]["geometry"]["angle_rmsd"],
        total_s=round(s["timings"]["total_s"], 1),
        rmsd_to_truth=fr.rmsd_to(true_p, pre + ".cif"))
    row["partitioned"].pop("stderr", None) if row["partitioned"]["returncode"] == 0 else None
    if a.whole:
        wpre = os.path.join(a.workdir, f"whole_{n}")
        row["whole"] = run_fit(base + ["-o", wpre])
        w = _json(wpre + "_stats.json")
        row["whole"].update(cc_mask_before=w["before"]["cc_mask"],
                            cc_mask_after=w["after"]["cc_mask"],
                            bond_rmsd_after=w["after"]["geometry"]["bond_rmsd"],
                            angle_rmsd_after=w["after"]["geometry"]["angle_rmsd"],
                            total_s=round(w["timings"]["total_s"], 1),
                            rmsd_to_truth=fr.rmsd_to(true_p, wpre + ".cif"))
        row["whole"].pop("stderr", None) if row["whole"]["returncode"] == 0 else None
        d = coords(wpre + ".cif") - coords(pre + ".cif")
        row["rmsd_whole_vs_partitioned"] = float(np.sqrt((d ** 2).sum(1).mean()))
        row["max_dev_whole_vs_partitioned"] = float(np.sqrt((d ** 2).sum(1)).max())
        row["cc_mask_difference"] = row["partitioned"]["cc_mask_after"] - w["after"]["cc_mask"]
    row["load_avg_end"] = os.getloadavg()[0]
    print(json.dumps(row, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(row, f, indent=1)


if __name__ == "__main__":
    main()
