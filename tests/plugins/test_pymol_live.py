"""``densrefine_live`` in real headless PyMOL: an edit through PyMOL's API (``translate``)
and ``densrefine_live update`` give the new CC within a second, equal to ``densrefine
score`` on the model PyMOL saves; the difference map is loaded as a PyMOL map object."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.plugins.conftest import pymol_python

EX = ROOT / "example_maps"


def test_pymol_live_em(tmp_path):
    py = pymol_python()
    env = dict(os.environ, DENSREFINE_EXE=f"{sys.executable} -m densrefine")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([str(py), str(ROOT / "tests/plugins/pymol_live_driver.py"),
                           str(EX / "helix_start.pdb"), str(EX / "helix_3A.mrc"), "3.0",
                           str(ROOT / "plugins/pymol/densrefine_pymol.py"), str(tmp_path)],
                          check=False, capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (proc.stdout + proc.stderr)[-3000:]
    res = json.loads(lines[-1][len("RESULT "):])
    assert res["first"].startswith("densrefine live: CC_mask") and res["nothing"] is None
    assert res["n_moved"] > 0 and res["shown_s"] < 1.0 and res["diff_loaded"], res
    out = subprocess.run([sys.executable, "-m", "densrefine", "score", res["saved"],
                          str(EX / "helix_3A.mrc"), "-d", "3.0", "--json",
                          str(tmp_path / "sc.json")], check=False, capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    sc = json.loads((tmp_path / "sc.json").read_text())
    assert res["scores"]["cc_mask"] == pytest.approx(sc["cc_mask"], abs=1e-4)
    # densrefine_score / densrefine_fit inside the live session while it is on, in a new
    # process once it is off: the same results and refined coordinates
    warm, cold = res["calls"]["warm"], res["calls"]["cold"]
    assert warm["where"] == ["densrefine: running in the warm live session"] * 2
    assert cold["where"] == ["densrefine: running in a new densrefine process (no live "
                             "session is running)"] * 2
    assert warm["score"] == cold["score"] and warm["xyz"] == cold["xyz"]
    assert warm["fit"]["worst"] == cold["fit"]["worst"]
    assert warm["fit"]["summary"].split("(")[0] == cold["fit"]["summary"].split("(")[0]
    print(f"pymol score: warm {warm['score_s']:.2f} s, process {cold['score_s']:.2f} s; "
          f"fit: warm {warm['fit_s']:.2f} s, process {cold['fit_s']:.2f} s")
