"""Host-neutral parts of the ChimeraX bundle (job, matching, report), in plain Python.

These modules import nothing from ChimeraX, so they run in the test interpreter: the
selection text, atom matching by identity, the child-process job (progress, errors,
cancel, timeout) and the HTML table.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import textwrap
import types

import numpy as np
import pytest

from tests.conftest import ROOT, require_data

SRC = ROOT / "plugins" / "chimerax" / "src"


def _load(name):
    pkg = "_cx_densrefine_static"
    if pkg not in sys.modules:
        mod = types.ModuleType(pkg)
        mod.__path__ = [str(SRC)]
        sys.modules[pkg] = mod
    spec = importlib.util.spec_from_file_location(f"{pkg}.{name}", SRC / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


job = _load("job")
matching = _load("matching")
report = _load("report")


def test_chimerax_selection_text():
    allr = [("A", n) for n in range(1, 50)] + [("B", n) for n in range(1, 10)]
    assert matching.selection_text([("A", n) for n in range(10, 41)], allr) == "A/10-40"
    assert matching.selection_text([("B", n) for n in range(1, 10)], allr) == "B"
    sel = [("A", 5), ("A", 7), ("A", 8)] + [("B", n) for n in range(1, 10)]
    assert matching.selection_text(sel, allr) == "A/5,A/7-8,B"
    # a gap in the numbering without an unselected residue in it stays one range
    gappy = [("C", 1), ("C", 2), ("C", 5), ("C", 6), ("C", 9)]
    assert matching.selection_text(gappy[:4], gappy) == "C/1-6"


def _pdb_line(serial, name, resn, chain, num, xyz, b, alt=" ", icode=" "):
    return (f"ATOM  {serial:5d} {name:<4s}{alt}{resn:>3s} {chain:1s}{num:4d}{icode}   "
            f"{xyz[0]:8.3f}{xyz[1]:8.3f}{xyz[2]:8.3f}{1.0:6.2f}{b:6.2f}          "
            f"{name[0]:>2s}\n")


def test_chimerax_match_by_identity_not_order(tmp_path):
    keys = [("A", 1, "", "N", ""), ("A", 1, "", "CA", ""), ("A", 2, "B", "CA", ""),
            ("A", 3, "", "CB", "A"), ("A", 3, "", "CB", "B")]
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(5, 3)) * 10
    lines = [_pdb_line(i + 1, k[3], "ALA", k[0], k[1], xyz[i], 20 + i, alt=k[4] or " ",
                       icode=k[2] or " ") for i, k in enumerate(keys)]
    p = tmp_path / "m.pdb"
    p.write_text("".join(lines[::-1]) + "END\n")  # reversed order
    got_xyz, got_b = matching.match_atoms(keys, matching.read_pdb_atoms(p))
    np.testing.assert_allclose(got_xyz, np.round(xyz, 3))
    np.testing.assert_allclose(got_b, 20 + np.arange(5))
    found = matching.read_pdb_atoms(p)
    with pytest.raises(matching.MatchError, match="missing.*A:2B@CA"):
        matching.match_atoms(keys, {k: v for k, v in found.items() if k != keys[2]})
    with pytest.raises(matching.MatchError, match="unexpected"):
        matching.match_atoms(keys[:-1], found)
    with pytest.raises(matching.MatchError, match="duplicate"):
        matching.match_atoms(keys + keys[:1], found)
    p.write_text(lines[0] + lines[0])
    with pytest.raises(matching.MatchError, match="appears twice"):
        matching.read_pdb_atoms(p)


def test_chimerax_rounding_is_not_a_move():
    old = np.array([[1.00004, 2.0, 3.0], [1.0, 2.0, 3.0]])
    new = np.array([[1.0, 2.0, 3.0], [1.1, 2.0, 3.0]])
    out, moved = matching.keep_unchanged(old, new, matching.XYZ_TOL)
    assert moved.tolist() == [False, True]
    np.testing.assert_array_equal(out[0], old[0])
    np.testing.assert_array_equal(out[1], new[1])


def test_chimerax_resolve_executable(tmp_path, monkeypatch):
    exe = tmp_path / "densrefine"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert job.resolve_executable(str(exe), environ={}) == [str(exe)]
    assert job.resolve_executable(None, setting=str(exe), environ={}) == [str(exe)]
    assert job.resolve_executable(None, environ={job.ENV_VAR: str(exe)}) == [str(exe)]
    assert job.resolve_executable(sys.executable, environ={}) == [sys.executable, "-m",
                                                                  "densrefine"]
    assert job.resolve_executable(f"{sys.executable} -m densrefine",
                                  environ={})[1:] == ["-m", "densrefine"]
    with pytest.raises(job.JobError, match="not found or not executable"):
        job.resolve_executable("/nonexistent/densrefine", environ={})
    # nothing configured, nothing on PATH, but importable here: in-process (None)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert job.resolve_executable(None, environ={}) is None


def test_chimerax_args_and_stages():
    a = job.fit_args("m.pdb", "x.mrc", 3.2, "out", select="A/10-40", weight=None,
                     stages=job.check_stages("xyz, b"), cycles=2)
    assert a == ["fit", "m.pdb", "x.mrc", "-d", "3.2", "-o", "out", "--select", "A/10-40",
                 "--stages", "xyz,b", "--cycles", "2"]
    assert job.score_args("m.pdb", "x.mrc", 2.9, "s.json")[-2:] == ["--json", "s.json"]
    with pytest.raises(ValueError, match="wobble"):
        job.check_stages("xyz,wobble")


def _child(tmp_path, body):
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(body))
    return [sys.executable, "-u", str(script)]


def test_chimerax_job_progress_and_error_line(tmp_path):
    argv = _child(tmp_path, """
        import sys
        print("Before: CC_mask 0.70")
        print("xyz 1 ... 0.71 Å")
        print("densrefine fit: error: model.pdb: bad things; fix them", file=sys.stderr)
        sys.exit(2)
    """)
    seen = []
    j = job.Job(argv).start()
    assert j.wait(on_lines=seen.extend, interval=0.02) == job.FAILED
    assert j.returncode == 2 and "xyz 1 ... 0.71 Å" in seen
    line = job.error_line(j.lines, j.returncode)
    assert line == "densrefine fit: error: model.pdb: bad things; fix them"
    assert job.is_user_error(line)
    assert (job.error_line(["boom"], 1, "/x/fit.log")
            == "densrefine exited with code 1; see /x/fit.log")


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_chimerax_job_cancel_and_timeout(tmp_path, how):
    argv = _child(tmp_path, """
        import time
        print("started", flush=True)
        time.sleep(60)
    """)
    j = job.Job(argv, timeout=0.3 if how == "timeout" else None, grace=1.0).start()
    if how == "cancel":
        j.cancel()
    assert j.wait(interval=0.02) == job.CANCELLED
    assert j.elapsed < 10
    assert ("timed out after 0.3 s" if how == "timeout" else "cancelled by user") == j.reason


def test_chimerax_job_cannot_start():
    with pytest.raises(job.JobError, match="cannot run"):
        job.Job(["/nonexistent/densrefine", "fit"]).start()


def test_chimerax_inprocess_job_reports_user_error(tmp_path):
    """The in-process route (densrefine importable in the host's Python) fails cleanly."""
    model = require_data("emd-3488_5ni1", "5me2.pdb.gz")
    emap = require_data("emd-3488_5ni1", "emd_3488.mrc")
    j = job.InProcessJob(job.fit_args(model, emap, -1, os.fspath(tmp_path / "f"))).start()
    assert j.state == job.FAILED and j.returncode == 2
    assert job.error_line(j.poll(), 2).startswith("densrefine fit: error: resolution")


def test_chimerax_report_table_and_residues():
    before = {"cc_mask": 0.70, "cc_box": 0.55, "geometry": {"bond_rmsd": 0.02},
              "residues": [{"chain": "A", "res_seq": 5, "icode": "", "cc": 0.4},
                           {"chain": "A", "res_seq": 6, "icode": "B", "cc": None}]}
    after = dict(before, cc_mask=0.75, geometry={"bond_rmsd": 0.01})
    html = report.scores_html("densrefine fit #1", before, after, ["note <x>"])
    assert "<table" in html and "<td>0.7000</td><td>0.7500</td>" in html
    assert "bond RMSD" in html and "note &lt;x&gt;" in html and "angle" not in html
    assert report.residue_cc(before) == {("A", 5, ""): 0.4, ("A", 6, "B"): None}
    assert report.worst_residues(report.residue_cc(before)) == [(("A", 5, ""), 0.4)]
    one = report.scores_html("densrefine score #1", before)
    assert "<th>value</th>" in one and "<th>after</th>" not in one
