#!/usr/bin/env python3
"""Cost of `fit --density ml` against the IAM fit on 5NI1 / EMD-3488 (3.2 Å), same script.

    python3 benchmarks/ml_fit_cost.py [--cases dep,real1] [--threads 1]

Runs `densrefine.fit` in this process (`benchmarks/fit_speed.py`'s runner: threads fixed,
no file output) with ``density`` "iam" and then "ml" for each case, and prints wall and CPU
seconds, the ML/IAM ratio of CPU, the final RMSD to the deposited model (non-H) and
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
    a = ap.parse_args(argv)
    calls = []
    fit_speed._instrument(stages, calls)
    rows = []
    for case in a.cases.split(","):
        res = {}
        for dens in ("iam", "ml"):
            res[dens] = fit_speed.run(case, {"map": {"density": dens}}, a.threads, dr, calls)
            print(json.dumps({"density": dens, **res[dens]}), flush=True)
        ratio = res["ml"]["cpu_s"] / res["iam"]["cpu_s"]
        rows.append(f"| {case} | {res['iam']['cpu_s']:.0f} / {res['ml']['cpu_s']:.0f} | "
                    f"{ratio:.2f} | {res['iam']['wall_s']:.0f} / {res['ml']['wall_s']:.0f} | "
                    f"{res['iam']['rmsd']:.3f} / {res['ml']['rmsd']:.3f} | "
                    f"{res['iam']['cc_mask']:.4f} / {res['ml']['cc_mask']:.4f} |")
    print("| case | CPU s IAM / ML | ratio ML/IAM | wall s IAM / ML | RMSD Å IAM / ML | "
          "CC_mask IAM / ML |\n|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
