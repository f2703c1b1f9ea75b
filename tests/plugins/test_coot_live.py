"""Live mode in Coot's own engine (coot-headless-api): an edit made through Coot's API
changes the displayed R (X-ray) or CC (cryo-EM) within a second, and the numbers equal
``densrefine rfactor`` / ``densrefine score`` on the model Coot saves.

The GUI layer (menu toggle, status bar, difference-map re-read) is tested against the
recording Coot fake in test_coot_gui.py's style here too.
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
from tests.plugins.conftest import coot_python

DRIVER = ROOT / "tests" / "plugins" / "coot_live_driver.py"
EXCHANGE = ROOT / "plugins" / "exchange"


def _env():
    env = dict(os.environ)
    env["DENSREFINE_EXE"] = f"{sys.executable} -m densrefine"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _run_driver(tmp_path, cfg):
    py = coot_python()
    cfg = dict(cfg, outdir=str(tmp_path / "out"), plugin_dir=str(EXCHANGE))
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    env = _env()
    # Coot's Python must not import the system densrefine / numpy: only the plugin dir;
    # the densrefine it starts finds this checkout through its own PYTHONPATH
    env.pop("PYTHONPATH", None)
    env["DENSREFINE_EXE"] = (f"env PYTHONPATH={shlex.quote(str(ROOT))} "
                             f"{shlex.quote(sys.executable)} -m densrefine")
    out = subprocess.run([str(py), str(DRIVER), str(tmp_path / "cfg.json")],
                         check=False, capture_output=True, text=True, env=env, timeout=600,
                         cwd=tmp_path)          # Coot may write ./coot-backup
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, out.stdout[-2000:] + out.stderr[-3000:]
    return json.loads(lines[-1][7:])


def _plain(src, tmp_path):
    dst = tmp_path / os.path.basename(str(src))[:-3]
    with gzip.open(src, "rb") as a, open(dst, "wb") as b:
        shutil.copyfileobj(a, b)
    return dst


def test_coot_edit_updates_r_and_matches_rfactor(tmp_path):
    model = _plain(require_data("5e5z", "5e5z.pdb.gz"), tmp_path)
    data = require_data("5e5z", "5e5z.mtz.gz")
    res = _run_driver(tmp_path, {"model": str(model), "data": str(data), "chain": "A",
                                 "resno": 3, "shift": 0.4})
    assert res["kind"] == "xray" and res["n_moved"] == res["n_expected"] > 0
    assert res["shown_s"] < 1.0, res
    assert "R-work" in res["text"] and res["text"] != res["first_text"]
    assert res["diff_map_valid"] and res["diff_map_rms"] > 0
    assert res["second_tick"] is None
    out = subprocess.run([sys.executable, "-m", "densrefine", "rfactor", res["saved"],
                          str(data), "--json", str(tmp_path / "rf.json")],
                         check=False, capture_output=True, text=True, env=_env(), timeout=600)
    assert out.returncode == 0, out.stderr
    rf = json.loads((tmp_path / "rf.json").read_text())
    assert res["scores"]["r_work"] == pytest.approx(rf["r_work"], abs=1e-4)
    assert res["scores"]["r_free"] == pytest.approx(rf["r_free"], abs=1e-4)
    # no further edit: the status line catches up with the idle refit by itself, to the
    # numbers of `densrefine rfactor` on the saved model
    fresh = res["refresh"]
    assert fresh is not None, "the status line never showed the refitted R"
    assert "scales refitted" in fresh["text"] and fresh["text"] != res["text"]
    print(f"coot: refitted R shown {fresh['s']:.2f} s after the last edit: {fresh['text']}")
    assert fresh["r_work"] == pytest.approx(rf["r_work"], abs=1e-4)
    assert fresh["r_free"] == pytest.approx(rf["r_free"], abs=1e-4)
    # the refreshed line is closer to rfactor than the pre-refit one
    assert abs(fresh["r_work"] - rf["r_work"]) + abs(fresh["r_free"] - rf["r_free"]) <= \
        abs(res["update"]["r_work"] - rf["r_work"]) + abs(res["update"]["r_free"] - rf["r_free"])


def test_coot_edit_updates_cc_and_matches_score(tmp_path):
    model = ROOT / "example_maps" / "helix_start.pdb"
    emap = ROOT / "example_maps" / "helix_3A.mrc"
    res = _run_driver(tmp_path, {"model": str(model), "data": str(emap), "resolution": 3.0,
                                 "chain": "A", "resno": 5, "shift": 0.5, "warm_calls": True})
    assert res["kind"] == "em" and res["shown_s"] < 1.0, res
    assert "CC_mask" in res["text"] and res["update"]["residues"]
    assert res["diff_map_valid"]
    out = subprocess.run([sys.executable, "-m", "densrefine", "score", res["saved"], str(emap),
                          "-d", "3.0", "--json", str(tmp_path / "sc.json")],
                         check=False, capture_output=True, text=True, env=_env(), timeout=600)
    assert out.returncode == 0, out.stderr
    sc = json.loads((tmp_path / "sc.json").read_text())
    assert res["scores"]["cc_mask"] == pytest.approx(sc["cc_mask"], abs=1e-4)
    by_res = {(r["chain"], r["res_seq"]): r["cc"] for r in sc["residues"]}
    for r in res["update"]["residues"]:
        assert r["cc"] == pytest.approx(by_res[(r["chain"], r["res_seq"])], abs=1e-4)
    # the plugin's ordinary score and fit: inside the live session while it runs, in a
    # new process after it is off, with the same results
    warm, cold = res["calls"]["warm"], res["calls"]["cold"]
    assert warm["via"] == ["the warm live session"] * 2
    assert cold["via"] == ["a new densrefine process"] * 2
    assert cold["why"] == ["no live session is running"] * 2
    assert warm["fit_model"] == cold["fit_model"]
    assert warm["summary"].split("(")[0] == cold["summary"].split("(")[0]
    for a, b in ((warm["score"], cold["score"]), (warm["fit_stats"], cold["fit_stats"])):
        fa, fb = _flat(a), _flat(b)
        assert set(fa) == set(fb)
        assert [k for k in fa if fa[k] != fb[k] and not _volatile(k)] == []
    assert warm["score"]["cc_mask"] == cold["score"]["cc_mask"] > 0
    print(f"coot score: warm {warm['score_s']:.2f} s, process {cold['score_s']:.2f} s; "
          f"fit: warm {warm['fit_s']:.2f} s, process {cold['fit_s']:.2f} s")


def _volatile(key):
    """Stats keys that differ between two runs of one command by nature: wall times and
    the paths of the files (each run has its own folder)."""
    return (key.endswith(("time_s", "setup_s", "total_s")) or "/seconds" in key
            or key.startswith("/outputs/") or key in ("/model", "/map", "/input/model",
                                                      "/input/map", "/input/data"))


def _flat(d, p=""):
    if isinstance(d, dict):
        return {k2: v for k, x in d.items() for k2, v in _flat(x, f"{p}/{k}").items()}
    if isinstance(d, list):
        return {k2: v for i, x in enumerate(d) for k2, v in _flat(x, f"{p}[{i}]").items()}
    return {p: d}


@pytest.mark.parametrize("edit", ["rotamer", "refine"])
def test_coot_rotamer_and_coot_refinement_update_cc(tmp_path, edit):
    """The other edits the issue names: a rotamer change and Coot's own real-space
    refinement (through coot-headless-api) reach the status line within a second, and
    the CC equals `densrefine score` on the model Coot saves. The second counts from
    the end of Coot's own computation (the refinement itself takes Coot seconds)."""
    emap = ROOT / "example_maps" / "helix_3A.mrc"
    res = _run_driver(tmp_path, {"model": str(ROOT / "example_maps" / "helix_start.pdb"),
                                 "data": str(emap), "resolution": 3.0, "chain": "A",
                                 "resno": 5, "shift": 0.0, "edit": edit})
    assert res["n_moved"] > 0 and res["shown_s"] < 1.0, res
    assert "CC_mask" in res["text"] and res["text"] != res["first_text"]
    out = subprocess.run([sys.executable, "-m", "densrefine", "score", res["saved"], str(emap),
                          "-d", "3.0", "--json", str(tmp_path / "sc.json")],
                         check=False, capture_output=True, text=True, env=_env(), timeout=600)
    assert out.returncode == 0, out.stderr
    sc = json.loads((tmp_path / "sc.json").read_text())
    assert res["scores"]["cc_mask"] == pytest.approx(sc["cc_mask"], abs=1e-4)
    assert res["update"]["cc_mask"] == pytest.approx(sc["cc_mask"], abs=1e-4)


def test_gui_live_toggle_status_bar_and_difference_map(monkeypatch, tmp_path):
    """The menu's live toggle with the recording Coot fake: start, an edit (the model file
    Coot writes changes), one tick → status line with CC and the change, the difference
    map box read as a difference map, then off."""
    import numpy as np

    from tests.plugins.test_coot_gui import EXAMPLE, Host

    moved = tmp_path / "moved.pdb"
    shutil.copyfile(EXAMPLE / "helix_start.pdb", moved)
    h = Host(moved, tmp_path)
    for name, mod in h.mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    for sub in ("exchange", "coot"):
        monkeypatch.syspath_prepend(str(ROOT / "plugins" / sub))
    for k, v in _env().items():
        if k in ("DENSREFINE_EXE", "PYTHONPATH"):
            monkeypatch.setenv(k, v)
    monkeypatch.setenv("DENSREFINE_LIVE_DATA", str(EXAMPLE / "helix_3A.mrc"))
    import importlib
    gui = importlib.reload(importlib.import_module("densrefine_coot_gui"))
    gui.SETTINGS.update(resolution=3.0)
    gui.SCHEDULE = lambda ms, fn: None                   # ticks are driven by the test
    gui.live_toggle()
    try:
        assert gui._LIVE["client"] is not None
        lines = [a[0] for n, a in h.log if n == "coot.add_status_bar_text"]
        assert lines[-1].startswith("densrefine live: CC_mask")
        assert gui.live_tick() is None                   # nothing moved yet
        text = moved.read_text().splitlines()
        out = []
        for ln in text:                                   # move residue 5 by 0.5 Å in x
            if ln.startswith("ATOM") and int(ln[22:26]) == 5:
                ln = ln[:30] + "%8.3f" % (float(ln[30:38]) + 0.5) + ln[38:]
            out.append(ln)
        moved.write_text("\n".join(out) + "\n")
        res = gui.live_tick()
        assert res["n_moved"] > 0 and res["d_cc_mask"] != 0.0
        lines = [a[0] for n, a in h.log if n == "coot.add_status_bar_text"]
        assert "CC_mask" in lines[-1] and "(" in lines[-1] and "A 5" in lines[-1]
        reads = [a for n, a in h.log if n == "coot.handle_read_ccp4_map"]
        assert reads and reads[-1][1] == 1 and os.path.getsize(reads[-1][0]) > 1024
        assert np.isfinite(res["cc_mask"])
    finally:
        gui.live_toggle()
    assert gui._LIVE["client"] is None


def test_gui_fit_and_score_go_through_the_live_session(monkeypatch, tmp_path):
    """The menu's Refine and Score (recording Coot fake): with live mode on for the active
    model they run inside the warm session and the status bar says so; with it off they
    start a process and say why; the results are the same."""
    from tests.plugins.test_coot_gui import EXAMPLE, Host, drive

    h = Host(EXAMPLE / "helix_start.pdb", tmp_path)
    for name, mod in h.mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    for sub in ("exchange", "coot"):
        monkeypatch.syspath_prepend(str(ROOT / "plugins" / sub))
    for k, v in _env().items():
        if k in ("DENSREFINE_EXE", "PYTHONPATH"):
            monkeypatch.setenv(k, v)
    monkeypatch.setenv("DENSREFINE_LIVE_DATA", str(EXAMPLE / "helix_3A.mrc"))
    import importlib
    gui = importlib.reload(importlib.import_module("densrefine_coot_gui"))
    gui.SETTINGS.update(resolution=3.0, stages="xyz", cycles=2)
    # job polls are driven to the end; live ticks (every LIVE_TICK_MS) are left to the test
    gui.SCHEDULE = lambda ms, fn: None if ms == gui.LIVE_TICK_MS else drive(ms, fn)
    assert gui.install() == ("menu", "densrefine")

    def calls():
        n0 = len(h.log)
        h.click("Score model")
        h.click("Refine active model against map...")
        new = h.log[n0:]
        status = [a[0] for n, a in new if n == "coot.add_status_bar_text"]
        (_imol, path), = [a for n, a in new
                         if n == "coot.clear_and_update_model_molecule_from_file"]
        things = [a for n, a in new if n == "coot_gui.interesting_things_gui"]
        with open(path) as fh:
            return status, fh.read(), things

    h.click("Live mode on/off")
    assert gui._LIVE["client"] is not None
    try:
        warm_status, warm_model, warm_things = calls()
    finally:
        h.click("Live mode on/off")
    assert gui._LIVE["client"] is None
    cold_status, cold_model, cold_things = calls()
    assert "densrefine score started in the warm live session" in warm_status
    assert "densrefine fit started (all atoms) in the warm live session" in warm_status
    assert ("densrefine score started in a new densrefine process (no live session is "
            "running)") in cold_status
    assert warm_model == cold_model and warm_things == cold_things and len(warm_things) == 2
    summary = [s for s in warm_status if s.startswith("densrefine score: CC_mask")]
    assert summary and summary == [s for s in cold_status
                                   if s.startswith("densrefine score: CC_mask")]
