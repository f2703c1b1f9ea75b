"""The plugins' ordinary fit and score calls through a warm ``densrefine serve`` session
(issue 23, item 3): the ``run``/``job``/``cancel_job`` requests, the exchange module's
`ServedJob`, identical outputs to the ``densrefine`` process, refusals, and the session
answering edits while a run goes on. Also the idle-refit refresh of the X-ray numbers
(`ScoreWatch`) over the socket.
"""
from __future__ import annotations

import os
import sys
import time

import pytest

from tests.conftest import ROOT, require_data

EX = ROOT / "example_maps"
MODEL, EMAP = str(EX / "helix_start.pdb"), str(EX / "helix_3A.mrc")


def _modules():
    sys.path.insert(0, str(ROOT / "plugins" / "exchange"))
    import densrefine_exchange
    import densrefine_live

    return densrefine_exchange, densrefine_live


@pytest.fixture(scope="module")
def env():
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "DENSREFINE_EXE")}
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [saved["PYTHONPATH"]]
                                                              if p])
    os.environ["DENSREFINE_EXE"] = f"{sys.executable} -m densrefine"
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def em(env):
    _, live = _modules()
    c = live.LiveClient.start(MODEL, EMAP, 3.0)
    yield c
    c.close()


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


def _same(a, b):
    fa, fb = _flat(a), _flat(b)
    assert set(fa) == set(fb)
    diff = [k for k in fa if fa[k] != fb[k] and not _volatile(k)]
    assert not diff, [(k, fa[k], fb[k]) for k in diff[:10]]


def test_score_and_fit_in_the_session_equal_the_process(em, tmp_path):
    ex, _ = _modules()
    warm = ex.start_score(MODEL, EMAP, 3.0, workdir=str(tmp_path / "sw"), live=em)
    assert isinstance(warm, ex.ServedJob) and warm.via == "the warm live session"
    cold = ex.start_score(MODEL, EMAP, 3.0, workdir=str(tmp_path / "sp"))
    assert not isinstance(cold, ex.ServedJob) and cold.why == "no live session is running"
    s_warm, s_cold = warm.wait(600), cold.wait(600)
    assert s_warm["residues"] and s_warm["cc_mask"] == s_cold["cc_mask"]
    _same(s_warm, s_cold)

    kw = {"stages": "xyz", "cycles": 2, "select": "A/3-8"}
    f_warm = ex.run_fit(MODEL, EMAP, 3.0, workdir=str(tmp_path / "fw"), live=em, timeout=600,
                        **kw)
    f_cold = ex.run_fit(MODEL, EMAP, 3.0, workdir=str(tmp_path / "fp"), timeout=600, **kw)
    assert f_warm.stats["after"]["cc_mask"] > f_warm.stats["before"]["cc_mask"]
    with open(f_warm.model_path, "rb") as a, open(f_cold.model_path, "rb") as b:
        assert a.read() == b.read()                     # the refined model, byte for byte
    _same(f_warm.stats, f_cold.stats)
    assert f_warm.summary().split("(")[0] == f_cold.summary().split("(")[0]


def test_session_keeps_answering_edits_while_a_run_goes_on(em, tmp_path):
    ex, live = _modules()
    job = ex.start_fit(MODEL, EMAP, 3.0, workdir=str(tmp_path / "f"), stages="xyz", cycles=3,
                       live=em)
    x, y, z = _first_xyz()
    t0 = time.monotonic()
    res = em.update([0], [[x + 0.2, y, z]])
    assert "cc_mask" in res and time.monotonic() - t0 < 30
    assert em.job(job.number)["state"] == "running"        # answered during the run
    with pytest.raises(live.LiveError) as err:            # one run at a time
        em.run(["score", MODEL, EMAP, "-d", "3", "--json", str(tmp_path / "x.json")])
    assert err.value.code == "busy"
    # a second ordinary call while one runs falls back to a process, and says why
    other = ex.start_score(MODEL, EMAP, 3.0, workdir=str(tmp_path / "s"), live=em)
    assert not isinstance(other, ex.ServedJob) and other.via == "a new densrefine process"
    assert "cannot take it" in other.why and "still running" in other.why
    assert other.wait(600)["cc_mask"] > 0
    assert job.wait(600).stats["status"] == "finished"
    em.update([0], [[float(v) for v in _first_xyz()]])    # put the atom back


def _first_xyz():
    with open(MODEL) as fh:
        for ln in fh:
            if ln.startswith(("ATOM", "HETATM")):
                return float(ln[30:38]), float(ln[38:46]), float(ln[46:54])
    raise AssertionError("no atom")


def test_run_refusals_are_one_line_and_keep_serving(em, tmp_path):
    ex, live = _modules()
    for argv, code in ((["serve", MODEL, EMAP], "bad_request"), ([], "bad_request"),
                       ([1, 2], "bad_request")):
        with pytest.raises(live.LiveError) as err:
            em.request("run", argv=argv)
        assert err.value.code == code and "\n" not in str(err.value)
    with pytest.raises(live.LiveError) as err:
        em.job(12345)
    assert err.value.code == "input"
    # a user error of the command: exit code 2 and densrefine's own one line, as a process
    bad = str(tmp_path / "no.map")
    with pytest.raises(ex.DensrefineError) as warm:
        ex.run_score(MODEL, bad, 3.0, workdir=str(tmp_path / "w"), live=em, timeout=600)
    with pytest.raises(ex.DensrefineError) as cold:
        ex.run_score(MODEL, bad, 3.0, workdir=str(tmp_path / "c"), timeout=600)
    assert str(warm.value) == str(cold.value)
    assert str(warm.value).startswith("densrefine") and "Traceback" not in str(warm.value)
    assert em.request("ping")["pong"]


def test_cancelling_a_run_in_the_session(em, tmp_path):
    ex, _ = _modules()
    job = ex.start_fit(MODEL, EMAP, 3.0, workdir=str(tmp_path / "f"), stages="xyz", cycles=10,
                       live=em)
    time.sleep(0.5)
    job.cancel()
    t0 = time.monotonic()
    while em.job(job.number)["state"] == "running":
        assert time.monotonic() - t0 < 120, "the run did not stop"
        time.sleep(0.1)
    st = em.job(job.number)
    assert st["cancelled"] and st["returncode"] != 0
    with pytest.raises(ex.DensrefineError, match="cancelled; the model was not changed"):
        job.poll()
    assert "cc_mask" in em.scores()


def test_status_refreshes_after_the_idle_refit_without_an_edit(env):
    """An X-ray edit answers with the scales as they were; polling (pings every 0.1 s,
    which must not hold off the idle refit) brings the refitted numbers, equal to the
    settled ``scores`` (what ``densrefine rfactor`` gives on the saved model)."""
    _, live = _modules()
    c = live.LiveClient.start(str(require_data("5e5z", "5e5z.pdb.gz")),
                              str(require_data("5e5z", "5e5z.mtz.gz")))
    try:
        rows = c.info()["atoms"]
        idx = [i for i, r in enumerate(rows) if r[1] == 3]
        import numpy as np

        xyz0 = np.array(_xyz(c, idx))
        res = c.update(idx, (xyz0 + 0.4 / 3 ** 0.5).tolist())
        watch = live.ScoreWatch()
        watch.shown(res)
        t0, fresh = time.monotonic(), None
        while fresh is None:
            assert time.monotonic() - t0 < 60, "no refreshed numbers after the idle refit"
            time.sleep(0.1)
            fresh = watch.poll(c)
        assert fresh["refit"] and fresh["version"] > res["version"]
        assert "scales refitted" in live.status_text(fresh, "xray")
        settled = c.scores()
        assert fresh["r_work"] == pytest.approx(settled["r_work"], abs=1e-6)
        assert fresh["r_free"] == pytest.approx(settled["r_free"], abs=1e-6)
        assert fresh["d_r_work"] == pytest.approx(
            fresh["r_work"] - (res["r_work"] - res["d_r_work"]), abs=1e-9)
        assert abs(fresh["r_work"] - res["r_work"]) > 0 or abs(
            fresh["r_free"] - res["r_free"]) > 0                # the refit moved R
        assert watch.poll(c) is None                             # settled: nothing more
    finally:
        c.close()


def _xyz(c, idx):
    """Current positions of atoms ``idx`` (written model, read back)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = c.write_model(os.path.join(d, "m.pdb"))["path"]
        with open(path) as fh:
            rows = [ln for ln in fh if ln.startswith(("ATOM", "HETATM"))]
    return [[float(rows[i][30:38]), float(rows[i][38:46]), float(rows[i][46:54])] for i in idx]
