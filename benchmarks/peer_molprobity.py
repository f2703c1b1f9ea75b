#!/usr/bin/env python3
"""MolProbity Ramachandran + rotamer validation of a model with cctbx; print one JSON line.

usage: /tmp/peers/venv/bin/python benchmarks/peer_molprobity.py MODEL [--residues]
           [--chem-data DIR]
       /tmp/peers/venv/bin/python benchmarks/peer_molprobity.py --setup TOP8000_DIR
           [--chem-data DIR]

Runs ``mmtbx.validation.ramalyze`` (Top8000 contours compiled into cctbx; Williams
et al. 2018, Protein Sci 27, 293) and ``mmtbx.validation.rotalyze`` (Top8000 rotamer
contours, outlier < 0.3 %; Hintze et al. 2016, Proteins 84, 1177) on MODEL and prints
{"rama": {...}, "rota": {...}, "seconds"}; with --residues also per-residue rows.

rotalyze needs ``chem_data/rotarama_data`` (the contour grids of github
rlabduke/reference_data, CC-BY 4.0, plus the pickles ``mmtbx.rebuild_rotarama_cache``
makes), which no PyPI package ships. ``--setup TOP8000_DIR`` builds it under
``--chem-data`` (default /tmp/densrefine_chem) from a checkout's ``Top8000`` folder.
In the snapshot available here the 4-D Arg and Lys grids are missing (too large to be
stored), so Arg and Lys are left out of the rotamer numbers (``"skipped"``).

cctbx also needs a CCP4 monomer library for rotalyze: MMTBX_CCP4_MONOMER_LIB is set to
the copy in coot-headless-api unless already set.

Peer script: run it with the peer venv's python, in its own process. It imports cctbx
only; never import gemmi (or densrefine) next to it (cctbx segfaults).
"""
import argparse
import glob
import gzip
import importlib.util
import json
import os
import shutil
import tempfile
import time

DEFAULT_CHEM = "/tmp/densrefine_chem"


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


def _monlib():
    if os.environ.get("MMTBX_CCP4_MONOMER_LIB") or os.environ.get("CLIBD_MON"):
        return
    spec = importlib.util.find_spec("coot_headless_api")
    os.environ["MMTBX_CCP4_MONOMER_LIB"] = os.path.join(
        list(spec.submodule_search_locations)[0], "share", "coot", "lib", "data", "monomers")


def _add_repository(chem):
    import libtbx.load_env  # noqa: F401
    import libtbx
    from libtbx.path import absolute_path, relocatable_path

    libtbx.env.repository_paths.append(relocatable_path(anchor=absolute_path(chem),
                                                        relocatable="."))


def _available(aa_dict, data_dir, prefix):
    return {k: v for k, v in aa_dict.items()
            if os.path.exists(os.path.join(data_dir, prefix + v + ".data"))}


def setup(top8000, chem):
    """Copy the rotamer/Rama grids into CHEM/chem_data/rotarama_data and build pickles."""
    out = os.path.join(chem, "chem_data", "rotarama_data")
    os.makedirs(out, exist_ok=True)
    for sub in ("Top8000_rotamer_pct_contour_grids", "Top8000_ramachandran_pct_contour_grids"):
        for f in glob.glob(os.path.join(top8000, sub, "*.data")):
            shutil.copy(f, out)
    _add_repository(chem)
    from mmtbx.command_line import rebuild_rotarama_cache as rb
    from mmtbx.rotamer import ramachandran_eval, rotamer_eval

    for prefix, aas in (("rota8000-", rotamer_eval.aminoAcids),
                        ("rama8000-", ramachandran_eval.aminoAcids_8000)):
        db = rotamer_eval.open_rotarama_dlite(rotarama_data_dir=out)
        rb.rebuild_pickle_files(data_dir=out, file_prefix=prefix, target_db=db,
                                amino_acids=_available(aas, out, prefix))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?")
    ap.add_argument("--residues", action="store_true")
    ap.add_argument("--chem-data", default=os.environ.get("DENSREFINE_CHEM_DATA", DEFAULT_CHEM))
    ap.add_argument("--setup", metavar="TOP8000_DIR")
    a = ap.parse_args()
    _monlib()
    if a.setup:
        setup(a.setup, a.chem_data)
        print(json.dumps({"chem_data": a.chem_data}))
        return
    _add_repository(a.chem_data)
    import iotbx.pdb
    from libtbx.utils import null_out
    from mmtbx.rotamer import rotamer_eval
    from mmtbx.validation.ramalyze import ramalyze
    from mmtbx.validation.rotalyze import rotalyze

    data_dir = rotamer_eval.find_rotarama_data_dir(optional=True)
    skipped = []
    if data_dir is None:
        raise SystemExit(f"no chem_data/rotarama_data under {a.chem_data}: run --setup first")
    for k, v in list(rotamer_eval.aminoAcids.items()):
        if not os.path.exists(os.path.join(data_dir, "rota8000-" + v + ".pickle")):
            rotamer_eval.aminoAcids.pop(k)
            skipped.append(k.upper())
    t0 = time.perf_counter()
    path, tmp = _readable(a.model)
    try:
        h = iotbx.pdb.input(file_name=path).construct_hierarchy()
    finally:
        if tmp:
            os.unlink(tmp)
    r = ramalyze(pdb_hierarchy=h, outliers_only=False, out=null_out(), quiet=True)
    n = max(r.n_total, 1)
    rama = {"favored": r.n_favored, "allowed": r.n_allowed, "outlier": r.n_outliers,
            "total": r.n_total, "favored_pct": round(100.0 * r.n_favored / n, 2),
            "outlier_pct": round(100.0 * r.n_outliers / n, 2)}
    ro = rotalyze(pdb_hierarchy=h, outliers_only=False, out=null_out(), quiet=True)
    rota = {"outlier": ro.n_outliers, "total": ro.n_total,
            "outlier_pct": round(100.0 * ro.n_outliers / max(ro.n_total, 1), 2),
            "skipped": sorted(skipped)}
    if a.residues:
        rama["residues"] = [[x.chain_id.strip(), int(x.resseq), x.icode.strip(), x.resname,
                             x.residue_type(), round(x.phi, 2), round(x.psi, 2),
                             x.ramalyze_type(), round(x.score, 4)] for x in r.results]
        rota["residues"] = [[x.chain_id.strip(), int(x.resseq), x.icode.strip(), x.resname,
                             x.altloc.strip(), x.evaluation, x.rotamer_name, round(x.score, 3),
                             [None if c is None else round(c, 1) for c in x.chi_angles]]
                            for x in ro.results]
    out = {"tool": "cctbx mmtbx.validation ramalyze + rotalyze", "rama": rama, "rota": rota,
           "seconds": round(time.perf_counter() - t0, 2)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
