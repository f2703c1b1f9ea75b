#!/usr/bin/env python3
"""Cost of `fit --density ml` against the IAM fit on 5NI1 / EMD-3488 (3.2 Å), same script.

    python3 benchmarks/ml_fit_cost.py [--cases dep,real1] [--densities iam,ml,ml-solvent]
                                      [--rounds 2] [--no-warmup]

Runs `densrefine.fit` in this process (`benchmarks/fit_speed.py`'s runner: threads fixed,
no file output) with each ``density`` (the first is the reference) for each case, and prints
wall and CPU seconds, the ratio of CPU to the first density's, the final RMSD to the deposited model (non-H) and
CC_mask. CPU time is the number to compare on a shared machine (wall time includes waiting
for the other jobs).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))


def main(argv=None):
    import fit_speed

    import densrefine as dr
    from densrefine.refine import stages

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="dep")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--densities", default="iam,ml,ml-solvent")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--no-warmup", action="store_true")
    a = ap.parse_args(argv)
    calls = []
    fit_speed._instrument(stages, calls)
    rows = []
    dens = a.densities.split(",")
    for case in a.cases.split(","):
        if not a.no_warmup:
            fit_speed.run(case, {"map": {"density": dens[0]}}, a.threads, dr, calls)
        for _ in range(a.rounds):
            res = {}
            for d in dens:
                res[d] = fit_speed.run(case, {"map": {"density": d}}, a.threads, dr, calls)
                print(json.dumps({"density": d, **res[d]}), flush=True)
                r0, r = res[dens[0]], res[d]
                rows.append(f"| {case} | {d} | {r['cpu_s']:.1f} | {r['cpu_s'] / r0['cpu_s']:.2f} | "
                            f"{r['wall_s']:.1f} | {r['rmsd']:.3f} | {r['cc_mask']:.4f} |")
    print(f"| case | density | CPU s | CPU / {dens[0]} | wall s | RMSD Å | CC_mask |\n"
          "|---|---|---|---|---|---|---|")
    print("\n".join(rows))

if __name__ == "__main__":
    main()
