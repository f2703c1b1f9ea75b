#!/usr/bin/env python3
"""MolProbity Ramachandran validation of a model with cctbx; print one JSON line.

usage: /tmp/peers/venv/bin/python benchmarks/peer_ramalyze.py MODEL [--residues]

Runs ``mmtbx.validation.ramalyze`` (MolProbity's Top8000 contours, Williams et al.
2018, Protein Sci 27, 293; compiled into cctbx) on MODEL (.pdb/.cif, optionally .gz)
and prints {"favored", "allowed", "outlier", "total", "favored_pct", "allowed_pct",
"outlier_pct", "seconds"}; with --residues also a list of [chain, resseq, icode,
resname, residue class, phi, psi, evaluation] per residue.

Peer script: run it with the peer venv's python, in its own process. It imports cctbx
only; never import gemmi (or densrefine) next to it (cctbx segfaults).
"""
import argparse
import gzip
import json
import os
import tempfile
import time


def _readable(path):
    """A plain-text copy of a gzipped model (iotbx reads plain files)."""
    if not path.endswith(".gz"):
        return path, None
    suffix = os.path.splitext(path[:-3])[1] or ".pdb"
    tmp = tempfile.NamedTemporaryFile("wb", suffix=suffix, delete=False)
    with gzip.open(path, "rb") as f:
        tmp.write(f.read())
    tmp.close()
    return tmp.name, tmp.name


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--residues", action="store_true")
    a = ap.parse_args()
    import iotbx.pdb
    from libtbx.utils import null_out
    from mmtbx.validation.ramalyze import ramalyze

    t0 = time.perf_counter()
    path, tmp = _readable(a.model)
    try:
        h = iotbx.pdb.input(file_name=path).construct_hierarchy()
    finally:
        if tmp:
            os.unlink(tmp)
    r = ramalyze(pdb_hierarchy=h, outliers_only=False, out=null_out(), quiet=True)
    n = max(r.n_total, 1)
    out = {"tool": "cctbx mmtbx.validation.ramalyze", "favored": r.n_favored,
           "allowed": r.n_allowed, "outlier": r.n_outliers, "total": r.n_total,
           "favored_pct": round(100.0 * r.n_favored / n, 2),
           "allowed_pct": round(100.0 * r.n_allowed / n, 2),
           "outlier_pct": round(100.0 * r.n_outliers / n, 2)}
    if a.residues:
        out["residues"] = [[x.chain_id.strip(), int(x.resseq), x.icode.strip(), x.resname,
                            x.residue_type(), round(x.phi, 2), round(x.psi, 2),
                            x.ramalyze_type()] for x in r.results]
    out["seconds"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
