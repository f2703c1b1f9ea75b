#!/usr/bin/env python3
"""In-process recovery benchmark over every cryo-EM pair in ../shared/data (issue 20): fit
perturbed copies of the deposited model with default settings (or a config), report the
RMSD (heavy atoms) to the deposited model before and after.

usage (from the repository root)::

    python3 benchmarks/fit_policy.py OUT.json [--config '{"json": "overrides"}']
        [--cases 5ni1,6vyb,3j6b,6yyt,actin,uneven] [--seeds 0,1,2] [--rms 0.5,1.0]
        [--workdir /tmp/densrefine_fit_policy]

Cases: the deposited map of each pair, and ``uneven`` (5NI1's simulated 3.2 Å map with the
half at larger x blurred to 6 Å, `fit_recovery.uneven_map`). Starts: `densrefine.perturb`
at each rms and seed (rms 0: the deposited model itself). One JSON line per fit on stdout;
all rows in OUT.json. Faster than `fit_recovery.py` (no subprocess per fit, no peers);
use that one for the CLI and cctbx numbers.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fit_recovery as FR  # noqa: E402

CASES = {name: FR.CASES[name] for name in ("5ni1", "6vyb", "3j6b", "6yyt", "actin")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--config", default="{}")
    ap.add_argument("--cases", default="5ni1,6vyb,3j6b,6yyt,actin,uneven")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rms", default="0.5,1.0")
    ap.add_argument("--workdir", default="/tmp/densrefine_fit_policy")
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.getLogger("densrefine").setLevel(logging.ERROR)
    import densrefine as dr
    from densrefine.perturb import perturb

    os.makedirs(a.workdir, exist_ok=True)
    cfg = json.loads(a.config)
    rows = []
    for case in a.cases.split(","):
        truth_path, map_path, d = CASES["5ni1" if case == "uneven" else case]
        if case == "uneven":
            map_path = os.path.join(a.workdir, "5ni1_uneven.mrc")
            if not os.path.exists(map_path):
                FR.uneven_map(truth_path, FR.CASES["5ni1"][1], map_path, seed=0)
        truth, emap = dr.read_model(truth_path), dr.read_map(map_path)
        heavy = ~truth.atoms.is_hydrogen

        def rmsd(xyz):
            return float(np.sqrt(((xyz - truth.atoms.xyz)[heavy] ** 2).sum(1).mean()))

        for rms in (float(x) for x in a.rms.split(",")):
            for seed in (int(x) for x in a.seeds.split(",")):
                start = truth if rms == 0 else perturb(truth, rms=rms, seed=seed)
                t0 = time.perf_counter()
                res = dr.fit(start, emap, d, config=cfg)
                row = {"case": case, "rms": rms, "seed": seed, "before": rmsd(start.atoms.xyz),
                       "after": rmsd(res.model.atoms.xyz), "cc": res.stats["after"]["cc_mask"],
                       "bond": res.stats["after"]["geometry"]["bond_rmsd"],
                       "seconds": time.perf_counter() - t0, "load": os.getloadavg()[0]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    with open(a.out, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
