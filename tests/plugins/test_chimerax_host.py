"""The ChimeraX bundle inside a real no-GUI ChimeraX session, on real data.

Each test runs ``chimerax_driver.py`` in ChimeraX's own Python (the PyPI wheel venv,
found via $DENSREFINE_CHIMERAX_PYTHON): it builds the session, registers the bundle's
commands with the bundle's own register function, calls them through ``run()`` and
prints one JSON line. densrefine runs out of process in this (the test's) Python.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import require_data
from tests.plugins.chimerax_driver import run_driver
from tests.plugins.conftest import chimerax_python


@pytest.fixture
def cx(tmp_path):
    """(ChimeraX python, fresh HOME) or skip/fail when ChimeraX is absent."""
    return chimerax_python(), tmp_path / "cxhome"


def test_chimerax_errors_leave_model_untouched(cx):
    """Bad executable, bad resolution, bad stages, empty selection, timeout, cancel."""
    model = require_data("emd-3488_5ni1", "5ni1_updated.cif.gz")
    emap = require_data("emd-3488_5ni1", "emd_3488.mrc")
    out = run_driver(cx[0], "errors", {"model": str(model), "map": str(emap)}, cx[1])
    err = out["errors"]
    for name, case in err.items():
        msg = case["message"]
        assert msg, f"{name}: no UserError"
        assert "\n" not in msg.strip() and "Traceback" not in msg, f"{name}: {msg!r}"
        assert case["unchanged"], name
    assert "/nonexistent/densrefine" in err["no_executable"]["message"]
    # densrefine's own one-line input error, passed through unchanged
    assert err["negative_resolution"]["message"].startswith("densrefine fit: error: resolution")
    assert "must be a positive number" in err["negative_resolution"]["message"]
    assert "wobble" in err["bad_stages"]["message"]
    assert "no atoms of model #1" in err["empty_selection"]["message"]
    assert "timed out after 0.5 s" in err["timeout"]["message"]
    cancel = out["cancel"]
    assert cancel["state"] == "cancelled" and cancel["stopped"] == 1
    assert "already running" in cancel["busy_message"]
    assert len(cancel["error_lines"]) == 1 and "cancelled by user" in cancel["error_lines"][0]
    assert cancel["folder_removed"] and cancel["unchanged"]
    assert out["unchanged_at_end"] and out["tracebacks_logged"] == 0
    assert out["settings"]["runs"].endswith("-m densrefine")


def test_chimerax_score_matches_cli_in_offset_map(cx, tmp_path):
    """Model and map exported by ChimeraX give the CLI's scores on the original files.

    EMD-2566 box: ORIGIN = (356.44, 155.44, 159.46) Å, so a frame slip on export would show.
    """
    model = require_data("emd-2566_3j6b-chain9", "3J6B_9.pdb.gz")
    emap = require_data("emd-2566_3j6b-chain9", "2566_3J6B_9.mrc")
    out = run_driver(cx[0], "score", {"model": str(model), "map": str(emap),
                                      "resolution": 3.2}, cx[1])
    ref = tmp_path / "ref.json"
    subprocess.run([sys.executable, "-m", "densrefine", "score", str(model), str(emap),
                    "-d", "3.2", "--json", str(ref), "-q"], check=True)
    cli = json.loads(ref.read_text())
    assert out["map_origin"][0] == pytest.approx(356.44, abs=0.01)
    assert out["scores"]["cc_mask"] == pytest.approx(cli["cc_mask"], abs=2e-3)
    assert out["scores"]["cc_box"] == pytest.approx(cli["cc_box"], abs=2e-3)
    assert out["unchanged"]
    assert out["n_residue_cc"] == out["n_residues"] == len(cli["residues"])
    assert out["n_ribbon_colours"] > 10  # coloured by CC, not one flat colour
    assert any("CC<sub>mask</sub>" in h for h in out["html_tables"])


@pytest.mark.slow
def test_chimerax_fit_recovers_perturbed_range(cx):
    """Shift /A:14-24 of 5NI1 by 0.8 Å in ChimeraX, refine /A:10-30, check with ChimeraX.

    Only the selected atoms move; ChimeraX's own ``fitmap`` correlation and ``measure
    mapvalues`` mean over /A:10-30 do not get worse; the range moves back toward the
    deposited coordinates; per-residue CC attribute, colours, HTML table and undo work.
    """
    model = require_data("emd-3488_5ni1", "5ni1_updated.cif.gz")
    emap = require_data("emd-3488_5ni1", "emd_3488.mrc")
    args = {"model": str(model), "map": str(emap), "resolution": 3.2, "chain": "A",
            "perturb": [14, 24], "select": [10, 30], "shift": 0.8, "stages": "xyz",
            "cycles": 2}
    out = run_driver(cx[0], "fit", args, cx[1])
    b, a = out["before"], out["after"]
    assert out["n_moved_selected"] > 0.9 * out["n_selected"]
    assert out["n_moved_outside"] == 0 and out["max_change_outside"] == 0.0
    assert out["n_b_changed_outside"] == 0
    assert a["fitmap_corr"] >= b["fitmap_corr"]
    assert a["mapvalues_mean"] >= b["mapvalues_mean"]
    assert out["rmsd_to_true_before"] == pytest.approx(0.8, abs=1e-6)
    assert out["rmsd_to_true_after"] < 0.7
    p = out["plugin"]
    assert p["select"] == "A/10-30" and p["n_moved"] == out["n_moved_selected"]
    assert p["after"]["cc_mask"] >= p["before"]["cc_mask"]
    assert out["n_residue_cc"] == out["n_residues"]
    before_cc, after_cc = out["residue_cc_sel_mean"]
    assert after_cc > before_cc
    assert out["n_ribbon_colours"] > 10
    html = out["html_tables"]
    assert len(html) == 1 and "<th>before</th><th>after</th>" in html[0]
    assert "CC<sub>mask</sub>" in html[0] and "bond RMSD" in html[0]
    assert out["progress_lines"] >= 2  # densrefine's log reached the ChimeraX log
    assert out["undo_restores"] and out["redo_reapplies"]
