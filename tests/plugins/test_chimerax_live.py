"""``densrefine live`` in a real no-GUI ChimeraX session (the PyPI wheel): an edit made
with ChimeraX's API changes the shown R (X-ray) or CC (cryo-EM) within a second, the
map volumes follow, and the numbers equal ``densrefine rfactor`` / ``score`` on the saved
model. The bundle's copy of the live client must equal plugins/exchange/densrefine_live.py.
"""
from __future__ import annotations

import gzip
import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, require_data
from tests.plugins.conftest import chimerax_python

DRIVER = ROOT / "tests" / "plugins" / "chimerax_live_driver.py"


def test_bundle_copy_of_the_live_client_is_current():
    a = (ROOT / "plugins" / "exchange" / "densrefine_live.py").read_text()
    b = (ROOT / "plugins" / "chimerax" / "src" / "live_client.py").read_text()
    assert a == b, "copy plugins/exchange/densrefine_live.py to plugins/chimerax/src/live_client.py"


def _env(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path / "cxhome"),
               DENSREFINE_EXE=f"{shlex.quote(sys.executable)} -m densrefine")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _drive(tmp_path, args):
    py = chimerax_python()
    args = dict(args, out=str(tmp_path / "out"))
    proc = subprocess.run([str(py), str(DRIVER), json.dumps(args)], check=False, capture_output=True,
                          text=True, env=_env(tmp_path), timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("DRIVER_JSON ")]
    assert proc.returncode == 0 and lines, (proc.stdout + proc.stderr)[-4000:]
    return json.loads(lines[-1][len("DRIVER_JSON "):])


def test_chimerax_live_em_cc_follows_edit_and_matches_score(tmp_path):
    emap = ROOT / "example_maps" / "helix_3A.mrc"
    out = _drive(tmp_path, {"model": str(ROOT / "example_maps" / "helix_start.pdb"),
                            "map": str(emap), "resolution": 3.0, "chain": "A", "resno": 5,
                            "shift": 0.5, "warm_calls": True})
    assert out["kind"] == "em" and out["nothing"] is None
    assert out["n_moved"] == out["n_selected"] > 0 and out["shown_s"] < 1.0, out
    assert out["text"].startswith("densrefine live: CC_mask") and out["text"] != out["first"]
    assert out["volumes"] == ["difference", "model"] and out["same_volumes"]
    assert all(v > 0 for v in out["volume_max"].values())
    assert out["off"]
    proc = subprocess.run([sys.executable, "-m", "densrefine", "score", out["saved"], str(emap),
                           "-d", "3.0", "--json", str(tmp_path / "sc.json")],
                          check=False, capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr
    sc = json.loads((tmp_path / "sc.json").read_text())
    assert out["scores"]["cc_mask"] == pytest.approx(sc["cc_mask"], abs=1e-4)
    # `densrefine score` / `fit` run inside the live session while it is on, in a new
    # process once it is off, with the same results (scores, refined coordinates)
    warm, cold = out["calls"]["warm"], out["calls"]["cold"]
    assert all("in the warm live session" in m for m in warm["running"]) and \
        len(warm["running"]) == 2
    assert all("a new densrefine process: no live session" in m for m in cold["running"]) \
        and len(cold["running"]) == 2
    for key in ("score", "fit_before", "fit_after", "n_moved", "xyz"):
        assert warm[key] == cold[key], key
    assert warm["fit_after"]["cc_mask"] > warm["fit_before"]["cc_mask"]
    print(f"chimerax score: warm {warm['score_s']:.2f} s, process {cold['score_s']:.2f} s; "
          f"fit: warm {warm['fit_s']:.2f} s, process {cold['fit_s']:.2f} s")


def test_chimerax_live_xray_r_follows_edit_and_matches_rfactor(tmp_path):
    src = require_data("5e5z", "5e5z.pdb.gz")
    data = require_data("5e5z", "5e5z.mtz.gz")
    model = tmp_path / "5e5z.pdb"
    with gzip.open(src, "rb") as a, open(model, "wb") as b:
        shutil.copyfileobj(a, b)
    out = _drive(tmp_path, {"model": str(model), "data": str(data), "chain": "A",
                            "resno": 3, "shift": 0.4})
    assert out["kind"] == "xray" and out["shown_s"] < 1.0, out
    assert "R-work" in out["text"] and out["volumes"] == ["2fofc", "fofc"]
    proc = subprocess.run([sys.executable, "-m", "densrefine", "rfactor", out["saved"],
                           str(data), "--json", str(tmp_path / "rf.json")],
                          check=False, capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr
    rf = json.loads((tmp_path / "rf.json").read_text())
    assert out["scores"]["r_work"] == pytest.approx(rf["r_work"], abs=1e-4)
    assert out["scores"]["r_free"] == pytest.approx(rf["r_free"], abs=1e-4)
    # no further edit: the status line catches up with the idle refit by itself
    fresh = out["refresh"]
    assert fresh is not None, "the status line never showed the refitted R"
    assert fresh["status"] == fresh["text"] and "scales refitted" in fresh["text"]
    assert fresh["r_work"] == pytest.approx(rf["r_work"], abs=1e-4)
    assert fresh["r_free"] == pytest.approx(rf["r_free"], abs=1e-4)
