#!/usr/bin/env python3
"""Q-scores of a model in a map with jqscore (PyPI, JAX Q-score); print one JSON line.

usage: /tmp/jq/bin/python benchmarks/peer_qscore.py MODEL MAP [--sigma 0.6] [--mapq-compat]

jqscore (PyPI ``jqscore`` 0.2.0) reimplements MapQ's Q-score (Pintilie et al. 2020, Nat
Methods 17, 328). Install it in a venv of its own (it brings jax), never into densrefine's:
``python3 -m venv /tmp/jq && /tmp/jq/bin/pip install jqscore gemmi mrcfile``.
Prints {"q_mean" (heavy atoms), "atoms": [[chain, seq, icode, resname, atom, q], ...] (heavy
atoms), "seconds"}. ``--mapq-compat`` keeps MapQ's map-origin rounding (jqscore's default);
without it the map is sampled in its own frame, as densrefine does.
"""
import argparse
import json
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("map")
    ap.add_argument("--sigma", type=float, default=0.6)
    ap.add_argument("--mapq-compat", action="store_true")
    a = ap.parse_args()
    import jqscore

    t0 = time.perf_counter()
    atoms = jqscore.read_cif(a.model) if ".cif" in a.model else jqscore.read_pdb(a.model)
    data, origin, vox = jqscore.read_mrc(a.map)
    res = jqscore.compute_qscores(atoms, data, origin, vox, sigma=a.sigma,
                                  mapq_compat=a.mapq_compat)
    q = np.asarray(res.atom_qscores, np.float64)
    heavy = [i for i, x in enumerate(atoms) if x.element not in ("H", "D")]
    out = {"tool": "jqscore " + getattr(jqscore, "__version__", "0.2.0"),
           "sigma": a.sigma, "mapq_compat": a.mapq_compat,
           "q_mean": round(float(np.nanmean(q[heavy])), 4),
           "atoms": [[atoms[i].chain_id, atoms[i].res_seq, atoms[i].ins_code, atoms[i].res_name,
                      atoms[i].atom_name, round(float(q[i]), 4)] for i in heavy],
           "seconds": round(time.perf_counter() - t0, 2)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
