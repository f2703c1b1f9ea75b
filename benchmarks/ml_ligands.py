#!/usr/bin/env python3
"""Ligand CC with the ML density vs the IAM at the deposited coordinates (issue 21).

    python3 benchmarks/ml_ligands.py [--sets 5ni1,6vyb,5a3h,3ay4]

Ligands: haem (HEM) in 5NI1 / EMD-3488 (3.2 Å, electron table), the NAG glycans of
6VYB NTD / EMD-21457 (3.2 Å), the covalent 2-deoxy-2-fluoro-cellobiosyl intermediate (G2F)
and BGC in 5A3H (1.82 Å X-ray) and the Fc N-glycans (NAG, MAN, BMA, GAL, FUC) of 3AY4 (2.2 Å
X-ray). X-ray maps: the 2mFo−DFc map (the file's coefficients when present, else computed,
`densrefine.xtal.maps.map_from_data`), scored with the X-ray table. CC: densrefine's
per-residue CC (atom-radius mask of the residue), averaged over the residues of each type.
Ligand charges come from their restraint dictionaries (`densrefine.density.charges`).
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DATA = os.environ.get("DENSREFINE_DATA", os.path.join(ROOT, "..", "shared", "data"))
SETS = {"5ni1": ("emd-3488_5ni1/5ni1_updated.cif.gz", "emd-3488_5ni1/emd_3488.mrc", 3.2,
                 ("HEM",)),
        "6vyb": ("emd-21457_6vyb-ntd/6vyb_Ndom.pdb.gz", "emd-21457_6vyb-ntd/emd_21457_seg.mrc",
                 3.2, ("NAG",)),
        "5a3h": ("5a3h/5a3h.pdb.gz", "5a3h/5a3h_sigmaa.mtz", 1.82, ("G2F", "BGC")),
        "3ay4": ("3ay4/3ay4.pdb.gz", "3ay4/3ay4.mtz.gz", 2.2, ("NAG", "MAN", "BMA", "GAL",
                                                               "FUC"))}


def ligand_cc(name, densities=("iam", "ml")):
    import densrefine as dr
    from densrefine.xtal.maps import map_from_data

    mpath, data, d, ligs = SETS[name]
    model = dr.read_model(os.path.join(DATA, mpath))
    xray = not data.endswith((".mrc", ".map"))
    if xray:
        emap, _ = map_from_data(model, os.path.join(DATA, data))
    else:
        emap = dr.read_map(os.path.join(DATA, data))
    out = {}
    for dens in densities:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rep = dr.score(model, emap, d, density=dens, fsc=False,
                           table="xray" if xray else "electron")
        for lig in ligs:
            cc = [r["cc"] for r in rep.residues if r["res_name"] == lig and r["cc"] == r["cc"]]
            out.setdefault(lig, {})[dens] = (float(np.mean(cc)) if cc else float("nan"), len(cc))
        out.setdefault("_all", {})[dens] = rep.cc_mask
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(SETS))
    a = ap.parse_args(argv)
    print("| entry | ligand (n) | CC IAM | CC ML | Δ | CC_mask whole model IAM → ML |")
    print("|---|---|---|---|---|---|")
    for name in a.sets.split(","):
        res = ligand_cc(name)
        allcc = res.pop("_all")
        for lig, v in res.items():
            print(f"| {name} | {lig} ({v['iam'][1]}) | {v['iam'][0]:.4f} | {v['ml'][0]:.4f} | "
                  f"{v['ml'][0] - v['iam'][0]:+.4f} | {allcc['iam']:.4f} → {allcc['ml']:.4f} |",
                  flush=True)


if __name__ == "__main__":
    main()
