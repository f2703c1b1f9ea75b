#!/usr/bin/env python3
"""densrefine `score` vs cctbx mmtbx.maps.map_model_cc on every cryo-EM pair of the
shared data; prints a markdown table (ours / cctbx / difference per metric).

usage: python3 benchmarks/score_vs_cctbx.py [--extra]   (from the repository root)

--extra adds 3J6B_9 scored with our electron table (cctbx still n_gaussian).
Needs the peer venv (/tmp/peers/venv or $PEERS_VENV) and ../shared/data.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time
import warnings

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from tests.conftest import EM_PAIRS  # noqa: E402
from tests.regression import test_score_cctbx as T  # noqa: E402

METRICS = T.METRICS + ("atom_radius",)


def ours(pair, table):
    from densrefine import read_map, read_model
    from densrefine.scoring import score

    model = read_model(T.require_data(pair[0], pair[1]))
    emap = read_map(T.require_data(pair[0], pair[2]))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = score(model, emap, pair[3], table=table, device="cpu", fsc=True)
    return rep, time.perf_counter() - t0


def fmt(x):
    return "–" if x is None else f"{x:.4f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--extra", action="store_true")
    a = ap.parse_args()
    rows = [(p, T.settings(p)[0]) for p in EM_PAIRS]
    if a.extra:
        rows += [(p, "electron") for p in EM_PAIRS if p[1].startswith("3J6B")]
    tmp = pathlib.Path(tempfile.mkdtemp())
    print("| pair (model / map, d) | tables ours / cctbx | "
          + " | ".join(METRICS) + " | max abs diff (CCs) | RSR | d(FSC=0.5) | ours s |")
    print("|" + "---|" * (len(METRICS) + 6))
    for pair, table in rows:
        ref = T.run_peer(pair, tmp)
        rep, secs = ours(pair, table)
        cells, diffs = [], []
        for k in METRICS:
            o, c = getattr(rep, k), ref[k]
            cells.append(f"{fmt(o)} / {fmt(c)}")
            if k != "atom_radius" and o is not None and c is not None:
                diffs.append(abs(o - c))
        d05 = "–" if rep.d_fsc05 is None else f"{rep.d_fsc05:.2f}"
        print(f"| {pair[1]} / {pair[2]}, {pair[3]} | {table} / {ref['scattering_table']} | "
              + " | ".join(cells) + f" | {max(diffs):.4f} | {rep.rsr:.3f} | {d05} | {secs:.2f} |")


if __name__ == "__main__":
    main()
