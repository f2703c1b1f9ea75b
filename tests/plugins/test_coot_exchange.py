"""The host-neutral exchange module (plugins/exchange/densrefine_exchange.py), no host needed.

It runs inside Coot's and PyMOL's own Python, so it may only use the standard library;
these tests run it from the system Python against the real densrefine CLI on the bundled
synthetic example (example_maps/).
"""
from __future__ import annotations

import ast
import shutil
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "plugins" / "exchange"))
import densrefine_exchange as ex  # noqa: E402

EXAMPLE = ROOT / "example_maps"
EXE = f"{sys.executable} -m densrefine"


def test_exchange_imports_only_stdlib():
    tree = ast.parse((ROOT / "plugins/exchange/densrefine_exchange.py").read_text())
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
            for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree)
             if isinstance(n, ast.ImportFrom) and n.module}
    assert mods <= set(sys.stdlib_module_names) | {"__future__"}, mods


@pytest.mark.parametrize("args, sel", [(("A", 10, 40), "A/10-40"), (("A", 40, 10), "A/10-40"),
                                       (("B", 7, 7), "B/7"), (("B",), "B"),
                                       ((" C ", -3, 2), "C/-3-2")])
def test_selection_for_range_coot_style(args, sel):
    assert ex.selection_for_range(*args) == sel


def test_selection_for_residues_pymol_style():
    pairs = [("A", 3), ("A", 1), ("A", 2), ("A", 7), ("B", 5), ("A", 2)]
    assert ex.selection_for_residues(pairs) == "A/1-3,A/7,B/5"
    assert ex.selection_for_residues([("A", -2), ("A", -1), ("A", 0)]) == "A/-2-0"


def test_selection_rejects_odd_chain():
    with pytest.raises(ex.DensrefineError, match="chain ID"):
        ex.selection_for_range("A/B", 1, 2)


def test_one_line_error_prefers_densrefine_line():
    err = "Traceback (most recent call last):\n  File x\nValueError: boom\n"
    assert ex.one_line_error(err + "densrefine fit: error: no map\n", 2) == \
        "densrefine fit: error: no map"
    msg = ex.one_line_error(err, 1)
    assert msg.startswith("densrefine failed (exit code 1)") and "\n" not in msg
    assert "Traceback" not in msg


def test_command_from_env(monkeypatch):
    monkeypatch.setenv("DENSREFINE_EXE", "/opt/py/bin/python3 -m densrefine")
    assert ex.densrefine_command() == ["/opt/py/bin/python3", "-m", "densrefine"]
    assert ex.densrefine_command(["x", 1]) == ["x", "1"]


def _stats():
    res = [("A", 1, 0.9, 0.8), ("A", 2, 0.5, 0.4), ("A", 3, 0.7, 0.75), ("B", 1, 0.1, 0.1)]
    blk = {r: [{"chain": c, "res_seq": n, "icode": "", "res_name": "ALA",
                "cc": (a if r == "after" else b)} for c, n, a, b in res]
           for r in ("before", "after")}
    return {"before": {"cc_mask": 0.6, "residues": blk["before"]},
            "after": {"cc_mask": 0.7, "residues": blk["after"], "geometry": {"bond_rmsd": 0.01}},
            "timings": {"total_s": 3.0}}


def test_worst_residues_sorted_and_selected():
    rows = ex.worst_residues(_stats(), selection="A/1-3")
    assert [(r["chain"], r["res_seq"]) for r in rows] == [("A", 2), ("A", 3), ("A", 1)]
    assert rows[0]["cc_before"] == 0.4 and rows[0]["label"] == "A 2 ALA  CC 0.500 (was 0.400)"
    assert [r["res_seq"] for r in ex.worst_residues(_stats(), n=1)] == [1]  # B/1, CC 0.1
    assert [r["res_seq"] for r in ex.worst_residues(_stats(), selection="A/-5-1,B")] == [1, 1]
    line = ex.summary_line(_stats(), "A/1-3")
    assert line == "densrefine: CC_mask 0.600 -> 0.700, bond RMSD 0.010 A (A/1-3, 3.0 s)"


def _copy(src):
    return lambda path: shutil.copyfile(src, path)


def test_run_fit_real_cli(tmp_path):
    res = ex.run_fit(_copy(EXAMPLE / "helix_start.pdb"), _copy(EXAMPLE / "helix_3A.mrc"), 3.0,
                     select="A/8-14", stages="xyz", cycles=1, workdir=str(tmp_path), exe=EXE,
                     timeout=300)
    assert res.model_path.endswith(".pdb") and (tmp_path / "fit.pdb").exists()
    assert res.stats["status"] == "finished" and res.selection == "A/8-14"
    worst = res.worst()
    assert sorted(w["res_seq"] for w in worst) == list(range(8, 15))  # refined range only
    assert [w["cc"] for w in worst] == sorted(w["cc"] for w in worst)  # worst first
    assert all(w["cc_before"] is not None for w in worst)
    assert res.summary().startswith("densrefine: CC_mask ")


def test_run_fit_bad_input_one_line(tmp_path):
    with pytest.raises(ex.DensrefineError) as err:
        ex.run_fit(_copy(EXAMPLE / "helix_start.pdb"), _copy(EXAMPLE / "helix_3A.mrc"), -1,
                   workdir=str(tmp_path), exe=EXE, timeout=300)
    msg = str(err.value)
    assert msg.startswith("densrefine fit: error: resolution") and "\n" not in msg
    assert not (tmp_path / "fit.pdb").exists()


def test_missing_executable_one_line(tmp_path):
    with pytest.raises(ex.DensrefineError, match="DENSREFINE_EXE"):
        ex.run_fit(_copy(EXAMPLE / "helix_start.pdb"), _copy(EXAMPLE / "helix_3A.mrc"), 3.0,
                   workdir=str(tmp_path), exe="/nonexistent/densrefine")


def test_writer_that_writes_nothing(tmp_path):
    with pytest.raises(ex.DensrefineError, match="did not write the map"):
        ex.run_fit(_copy(EXAMPLE / "helix_start.pdb"), lambda p: None, 3.0,
                   workdir=str(tmp_path), exe=EXE)


def test_run_score_real_cli(tmp_path):
    stats = ex.run_score(_copy(EXAMPLE / "helix_start.pdb"), _copy(EXAMPLE / "helix_3A.mrc"),
                         3.0, workdir=str(tmp_path), exe=EXE, timeout=300)
    assert stats["cc_mask"] == pytest.approx(0.772, abs=0.01)  # example_maps/README.md
    rows = ex.worst_residues(stats)
    assert len(rows) == 22 and rows[0]["cc"] == min(r["cc"] for r in rows)
    assert rows[0]["cc_before"] is None
