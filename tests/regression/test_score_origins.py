"""The same EMD-21457 map in three origin conventions gives identical scores.

``emd_21457_seg.mrc`` (MRC2014 ORIGIN), ``emd_21457_seg_nstart.mrc`` (NSTART) and
``emd_21457_seg_orig0.mrc`` (origin 0, with the model shifted to match) hold the same
voxels; every global score must agree to 1e-6 (ARCHITECTURE, "Physics conventions").
Per-residue CCs (a few hundred voxels each) and FSC shells must agree to 1e-5: the
model map itself differs between the frames at the float32 rounding level.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from tests.conftest import EM_PAIRS, require_data

PAIRS = [p for p in EM_PAIRS if p[0] == "emd-21457_6vyb-ntd"]
KEYS = ("cc_mask", "cc_box", "cc_volume", "cc_peaks", "cc_main_chain", "cc_side_chain", "rsr")


@pytest.fixture(scope="module")
def reports():
    from densrefine import read_map, read_model
    from densrefine.scoring import score

    out = []
    for folder, model, emap, d in PAIRS:
        m = read_model(require_data(folder, model))
        g = read_map(require_data(folder, emap))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 0.2 % of the atoms lie outside the box
            out.append(score(m, g, d, device="cpu"))
    return out


def test_three_conventions_are_the_same_pairs():
    assert len(PAIRS) == 3


def test_scores_identical_across_origin_conventions(reports):
    first = reports[0]
    # the right frame (a wrong one gives ~0 or an error). Independent reference: cctbx
    # map_model_cc CC_mask 0.4963, the same for all three conventions
    # (../shared/tools/peers/README.md, cctbx-base 2025.11); contract 0.01
    assert abs(first.cc_mask - 0.4963) < 0.01, first.cc_mask
    for rep in reports[1:]:
        for k in KEYS:
            assert getattr(rep, k) == pytest.approx(getattr(first, k), abs=1e-6), k
        assert rep.n_mask_voxels == first.n_mask_voxels
        assert rep.atom_radius == first.atom_radius
        assert rep.fraction_inside == first.fraction_inside


def test_per_residue_and_fsc_identical_across_conventions(reports):
    first = reports[0]
    for rep in reports[1:]:
        a = np.array([r["cc"] if r["cc"] is not None else np.nan for r in first.residues])
        b = np.array([r["cc"] if r["cc"] is not None else np.nan for r in rep.residues])
        assert np.allclose(a, b, atol=1e-5, equal_nan=True)
        fa = np.array([s["fsc"] for s in first.fsc])
        fb = np.array([s["fsc"] for s in rep.fsc])
        assert np.allclose(fa, fb, atol=1e-5, equal_nan=True)
        assert (rep.d_fsc05 is None) == (first.d_fsc05 is None)
        if first.d_fsc05 is not None:
            assert rep.d_fsc05 == pytest.approx(first.d_fsc05, abs=1e-3)


def test_cli_score_json_matches_api(reports, tmp_path):
    """The real CLI on the NSTART map writes the same numbers to its JSON, and a log."""
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    folder, model, emap, d = PAIRS[1]
    out = tmp_path / "ntd_score.json"
    p = subprocess.run([sys.executable, "-m", "densrefine", "score",
                        str(require_data(folder, model)), str(require_data(folder, emap)),
                        "-d", str(d), "--json", str(out), "--device", "cpu"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "CC_mask" in p.stdout and "worst 10" in p.stdout
    data = json.loads(out.read_text())
    for k in KEYS + ("d_fsc05",):
        assert data[k] == pytest.approx(getattr(reports[1], k), abs=1e-6), k
    assert len(data["residues"]) == len(reports[1].residues) and data["fsc"]
    assert (tmp_path / "ntd_score.log").read_text().count("Molecular mask") == 1
