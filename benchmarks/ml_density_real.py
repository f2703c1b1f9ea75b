"""ML vs IAM density on the real cryo-EM maps of ../shared/data, at the deposited coordinates.

For each map/model pair: CC_mask (cctbx definition, our scoring) with ``--density iam`` and
``--density ml``, and the mean side-chain CC of Asp, Glu, Lys, Arg (charged) vs all other
residues. Prints a markdown table; ``--append`` adds it, dated, to benchmarks/RESULTS.md.

    python3 benchmarks/ml_density_real.py [--append]
    python3 benchmarks/ml_density_real.py --densities iam,ml,ml-spdf --pairs 5ni1   # stage 2
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PAIRS = [("emd-3488_5ni1", "5ni1_updated.cif.gz", "emd_3488.mrc", 3.2),
         ("emd-21457_6vyb-ntd", "6vyb_Ndom.pdb.gz", "emd_21457_seg.mrc", 3.2),
         ("emd-2566_3j6b-chain9", "3J6B_9.pdb.gz", "2566_3J6B_9.mrc", 3.2),
         ("emd-11007_6yyt-rna", "6yyt_rna.pdb.gz", "emd_11007_rna_box.map", 2.9)]
CHARGED = ("ASP", "GLU", "LYS", "ARG")


def side_cc(rep):
    """Mean side-chain CC of charged residues and of the others (None when absent)."""
    ch, other = [], []
    for r in rep.residues:
        v = r.get("cc_side")
        if v is None or v != v:
            continue
        (ch if r["res_name"] in CHARGED else other).append(v)
    return (float(np.mean(ch)) if ch else None, len(ch),
            float(np.mean(other)) if other else None, len(other))


def run(densities=("iam", "ml"), pairs=None):
    import densrefine as dr

    data = os.environ.get("DENSREFINE_DATA", os.path.join(ROOT, "..", "shared", "data"))
    rows = []
    for folder, model, emap, d in PAIRS:
        if pairs and not any(p in folder for p in pairs):
            continue
        m = dr.read_model(os.path.join(data, folder, model))
        e = dr.read_map(os.path.join(data, folder, emap))
        out = {"pair": f"{folder}", "d": d}
        for dens in densities:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rep = dr.score(m, e, d, density=dens, fsc=False)
            out[dens] = (rep.cc_mask, *side_cc(rep), time.perf_counter() - t0)
        rows.append(out)
    return rows


def fmt(rows, densities=("iam", "ml")) -> str:
    f = lambda x: "n/a" if x is None else f"{x:.4f}"  # noqa: E731
    arrow = " → ".join(d.upper() for d in densities)
    lines = [f"| pair | d Å | CC_mask {arrow} | side-chain CC charged (n) {arrow} | "
             f"side-chain CC others (n) {arrow} | seconds |", "|---|---|---|---|---|---|"]
    for r in rows:
        v = [r[d] for d in densities]
        lines.append(f"| {r['pair']} | {r['d']} | {' → '.join(f(x[0]) for x in v)} | "
                     f"{' → '.join(f(x[1]) for x in v)} ({v[0][2]}) | "
                     f"{' → '.join(f(x[3]) for x in v)} ({v[0][4]}) | "
                     f"{' / '.join(f'{x[5]:.0f}' for x in v)} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--append", action="store_true")
    ap.add_argument("--densities", default="iam,ml", help="comma-separated density models")
    ap.add_argument("--pairs", default="", help="comma-separated substrings of the pairs to run")
    args = ap.parse_args()
    dens = tuple(args.densities.split(","))
    rows = run(dens, [p for p in args.pairs.split(",") if p])
    table = fmt(rows, dens)
    print(table)
    if args.append:
        load = os.getloadavg()[0]
        head = (f"\n### {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, `python3 "
                f"benchmarks/ml_density_real.py` ({platform.machine()}, {os.cpu_count()} "
                f"cores, load {load:.1f})\n\n")
        with open(os.path.join(ROOT, "benchmarks", "RESULTS.md"), "a") as fh:
            fh.write(head + table + "\n")


if __name__ == "__main__":
    main()
