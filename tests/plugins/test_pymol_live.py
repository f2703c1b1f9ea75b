"""``densrefine_live`` in real headless PyMOL: an edit through PyMOL's API (``translate``)
and ``densrefine_live update`` give the new CC within a second, equal to ``densrefine
score`` on the model PyMOL saves; the difference map is loaded as a PyMOL map object."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, require_data
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
    assert cold["where"] == [("densrefine: running in a new densrefine process (no live "
                              "session is running)")] * 2
    assert warm["score"] == cold["score"] and warm["xyz"] == cold["xyz"]
    assert warm["fit"]["worst"] == cold["fit"]["worst"]
    assert warm["fit"]["summary"].split("(")[0] == cold["fit"]["summary"].split("(")[0]
    print(f"pymol score: warm {warm['score_s']:.2f} s, process {cold['score_s']:.2f} s; "
          f"fit: warm {warm['fit_s']:.2f} s, process {cold['fit_s']:.2f} s")


def test_pymol_live_xray_status_catches_up_with_the_idle_refit(tmp_path):
    """X-ray (5E5Z): after an edit, ``densrefine_live update`` with nothing moved shows
    the numbers of the session's idle refit ("scales refitted"), equal to ``densrefine
    rfactor`` on the model PyMOL saves."""
    py = pymol_python()
    model = tmp_path / "5e5z.pdb"
    with gzip.open(require_data("5e5z", "5e5z.pdb.gz"), "rb") as a, open(model, "wb") as b:
        shutil.copyfileobj(a, b)
    data = require_data("5e5z", "5e5z.mtz.gz")
    env = dict(os.environ, DENSREFINE_EXE=f"{sys.executable} -m densrefine")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([str(py), str(ROOT / "tests/plugins/pymol_live_driver.py"),
                           str(model), str(data), "", str(ROOT / "plugins/pymol/densrefine_pymol.py"),
                           str(tmp_path), "3"], check=False, capture_output=True, text=True,
                          env=env, timeout=900, cwd=tmp_path)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (proc.stdout + proc.stderr)[-3000:]
    res = json.loads(lines[-1][len("RESULT "):])
    assert res["n_moved"] > 0 and res["shown_s"] < 1.0 and "R-work" in res["text"], res
    fresh = res["refresh"]
    assert fresh is not None and "scales refitted" in fresh["text"], res
    out = subprocess.run([sys.executable, "-m", "densrefine", "rfactor", res["saved"], str(data),
                          "--json", str(tmp_path / "rf.json")], check=False,
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    rf = json.loads((tmp_path / "rf.json").read_text())
    assert fresh["r_work"] == pytest.approx(rf["r_work"], abs=1e-4)
    assert fresh["r_free"] == pytest.approx(rf["r_free"], abs=1e-4)
