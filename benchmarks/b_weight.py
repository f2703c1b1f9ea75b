#!/usr/bin/env python3
"""B stage of `densrefine fit`: data weight and restraint σ against known and real B.

usage: python benchmarks/b_weight.py sim  [--overall] [--sigma 20] [--scale 0.25,0.5,1,2,4]
                                          [--iters 40] [--start mean|noisy] [--old-tree DIR]
                                          [--json F]
       python benchmarks/b_weight.py real [--overall] [--sigma 20] [--scale 1] [--iters 40]
                                          [--stages b] [--old-tree DIR] [--json F]

sim: truth = deposited 5NI1 (EMD-3488 entry); map = its noisy 3.2 Å map on the EMD-3488
grid (`fit_recovery.simulated_map`, seed 0, signal/noise RMS 2 inside the molecule);
start = the truth with every B set to the mean B ("mean") or B + N(0, 15 Å²) ("noisy");
only the B stage runs (coordinates are exact). Measured: RMSD and correlation of the
refined B to the true B (non-H atoms), bonded RMS ΔB, median B, atoms at the B bounds.

real: deposited 5NI1 in the real map EMD-3488 (d = 3.2 Å), stages as given (default only
"b"; "rigid,sse,chi1,xyz,b" = full fit); CC_mask by cctbx (peer script
cctbx_map_model_cc.py, own process), bonded RMS ΔB, median B, atoms at the bounds.

--old-tree DIR runs the same cases with the densrefine package found in DIR (e.g. a
`git archive HEAD` of the version before the change, whose B stage used wb = 10·n_bonds
and Σ(ΔB/10 Å²)² over bonds); --scale / --sigma are then ignored. Work files go to
/tmp/bhelper/b_weight (or $B_WORKDIR). --overall sets ``b_overall: true``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.environ.get("B_WORKDIR", "/tmp/bhelper/b_weight")


def _import_densrefine(old_tree):
    if old_tree:
        sys.path.insert(0, os.path.abspath(old_tree))
    import densrefine as dr

    return dr


def bonded_rms_db(model):
    """RMS ΔB (Å²) over bonded non-H pairs (distance < 1.9 Å, as a proxy for bonds)."""
    from scipy.spatial import cKDTree

    at = model.atoms
    keep = np.flatnonzero(~np.asarray(at.is_hydrogen))
    xyz, b = np.asarray(at.xyz)[keep], np.asarray(at.b_iso)[keep]
    p = np.array(sorted(cKDTree(xyz).query_pairs(1.9)), int).reshape(-1, 2)
    return float(np.sqrt(np.mean((b[p[:, 0]] - b[p[:, 1]]) ** 2)))


def b_summary(model, lo=2.0, hi=300.0, truth=None):
    at = model.atoms
    heavy = ~np.asarray(at.is_hydrogen)
    b = np.asarray(at.b_iso, float)[heavy]
    out = {"median_b": float(np.median(b)), "mean_b": float(b.mean()),
           "at_bounds": int(np.sum((b <= lo + 1.0) | (b >= hi - 1.0))),
           "n_b_below_5": int(np.sum(b < 5.0)), "bonded_rms_db": bonded_rms_db(model)}
    if truth is not None:
        t = np.asarray(truth.atoms.b_iso, float)[heavy]
        out["b_rmsd"] = float(np.sqrt(np.mean((b - t) ** 2)))
        out["b_corr"] = float(np.corrcoef(b, t)[0, 1])
        out["logb_rmsd"] = float(np.sqrt(np.mean((np.log(b) - np.log(np.clip(t, 2, 300))) ** 2)))
    return out


def sim_inputs(dr, start_kind, seed=0):
    sys.path.insert(1, HERE)
    import fit_recovery as fr

    truth_path, real_map, _ = fr.CASES["5ni1"]
    os.makedirs(WORK, exist_ok=True)
    sim = os.path.join(WORK, "5ni1_sim3.2.mrc")
    if not os.path.exists(sim):
        fr.simulated_map(truth_path, real_map, sim, seed=seed)
    truth = dr.read_model(truth_path)
    b = np.asarray(truth.atoms.b_iso, float)
    if start_kind == "mean":
        b0 = np.full_like(b, b.mean())
    else:
        b0 = np.clip(b + np.random.default_rng(seed).normal(0, 15.0, b.shape), 5.0, 250.0)
    start = truth.with_atoms(truth.atoms.replace(b_iso=b0, u_aniso=None))
    return truth, start, dr.read_map(sim), fr.SIM_RES


def run_one(dr, start, emap, d, cfg):
    import logging

    logging.getLogger("densrefine").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    res = dr.fit(start, emap, d, config=cfg, device="cpu")
    secs = time.perf_counter() - t0
    last = [c for c in res.stats["cycles"] if c.get("stage") == "b"]
    return res.model, secs, (last[-1] if last else {})


def cctbx_cc(dr, model, map_path, d, tag):
    sys.path.insert(1, HERE)
    import fit_recovery as fr

    path = os.path.join(WORK, f"{tag}.pdb")
    dr.write_model(model, path)
    return fr.peer_json("cctbx_map_model_cc.py", path, map_path, d).get("cc_mask")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["sim", "real"])
    ap.add_argument("--sigma", default="20")
    ap.add_argument("--scale", default="1")
    ap.add_argument("--iters", default="40")
    ap.add_argument("--start", default="mean", choices=["mean", "noisy"])
    ap.add_argument("--stages", default="b")
    ap.add_argument("--overall", action="store_true", help="b_overall: true (map-term B offset)")
    ap.add_argument("--old-tree", default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    dr = _import_densrefine(a.old_tree)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if a.mode == "sim":
        truth, start, emap, d = sim_inputs(dr, a.start)
    else:
        sys.path.insert(1, HERE)
        import fit_recovery as fr

        tp, map_path, d = fr.CASES["5ni1"]
        truth, emap = None, dr.read_map(map_path)
        start = dr.read_model(tp)
    grid = [(s, w, n) for s in map(float, a.sigma.split(","))
            for w in map(float, a.scale.split(",")) for n in map(int, a.iters.split(","))]
    if a.old_tree:
        grid = [(10.0, None, n) for n in map(int, a.iters.split(","))]
    rows = [{"case": "start", **b_summary(start, truth=truth)}]
    for sigma, scale, iters in grid:
        cfg = {"stages": a.stages, "b_iterations": iters, "threads": 1}
        if not a.old_tree:
            cfg.update(b_sigma=sigma, b_weight_scale=scale, b_overall=a.overall)
        model, secs, rec = run_one(dr, start, emap, d, cfg)
        row = {"case": "old" if a.old_tree else f"σ={sigma:g} scale={scale:g}", "iters": iters,
               "seconds": round(secs, 1), "cc_fourier": rec.get("cc_mask_term"),
               "b_weight": rec.get("b_weight"), "target": rec.get("target"),
               "b_overall_offset": rec.get("b_overall_offset"), **b_summary(model, truth=truth)}
        if a.mode == "real":
            tag = f"real_{'old' if a.old_tree else f's{sigma:g}_w{scale:g}'}_{iters}_{a.stages}"
            tag += "_overall" if a.overall else ""
            row["cctbx_cc_mask"] = cctbx_cc(dr, model, fr.CASES["5ni1"][1], d, tag.replace(",", ""))
        rows.append(row)
        print(json.dumps(row), flush=True)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    keys = [k for k in ("case", "iters", "b_rmsd", "b_corr", "logb_rmsd", "cctbx_cc_mask",
                        "cc_fourier", "bonded_rms_db", "median_b", "at_bounds", "n_b_below_5",
                        "b_overall_offset", "b_weight", "target", "seconds")
            if any(k in r for r in rows)]
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{r[k]:.4g}" if isinstance(r.get(k), float) else str(r.get(k, ""))
                                for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
