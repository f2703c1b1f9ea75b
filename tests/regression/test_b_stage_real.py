"""The B stage of `fit` on real data: deposited 5NI1 in EMD-3488 (3.2 Å), B stage only.

With the likelihood data weight and σ = 20 Å² the B refined from the deposited model
raise cctbx's CC_mask (0.873 → 0.891 measured) with bonded RMS ΔB near the deposited
model's 6.4 Å² (5.2 measured; the former weighting gave 0.880 and 2.9). With
``b_overall`` the map's ~40 Å² sharpening goes into the map-term offset: median B stays
at the input's 52 Å² (54 measured) and no pile-up at the 2 Å² bound appears. ~30 s.
"""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from scipy.spatial import cKDTree

from tests.conftest import peers_dir, peers_python, require_data

pytestmark = pytest.mark.slow


def _cctbx_cc(model_path, map_path) -> float:
    cmd = [str(peers_python()), str(peers_dir() / "cctbx_map_model_cc.py"), str(model_path),
           str(map_path), "3.2"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    return float(json.loads(p.stdout.strip().splitlines()[-1])["cc_mask"])


def _bonded_rms_db(model) -> float:
    xyz, b = np.asarray(model.atoms.xyz), np.asarray(model.atoms.b_iso)
    p = np.array(sorted(cKDTree(xyz).query_pairs(1.9)), int)
    return float(np.sqrt(np.mean((b[p[:, 0]] - b[p[:, 1]]) ** 2)))


@pytest.fixture(scope="module")
def inputs():
    import densrefine as dr

    model_path = require_data("emd-3488_5ni1", "5ni1_updated.cif.gz")
    map_path = require_data("emd-3488_5ni1", "emd_3488.mrc")
    peers_python()
    return dr.read_model(model_path), dr.read_map(map_path), model_path, map_path


def test_b_stage_real_map_raises_cc_with_realistic_b_spread(inputs, tmp_path):
    import densrefine as dr

    model, emap, model_path, map_path = inputs
    res = dr.fit(model, emap, 3.2, config={"stages": "b"}, device="cpu")
    out = tmp_path / "b.pdb"
    dr.write_model(res.model, out)
    cc0, cc1 = _cctbx_cc(model_path, map_path), _cctbx_cc(out, map_path)
    assert cc1 > cc0 + 0.01, (cc0, cc1)
    # independent reference: the deposited model's own bonded RMS ΔB (6.4 Å², refined by
    # its authors), computed here from the file; ours within 25 % of it (measured 5.2)
    dep = _bonded_rms_db(model)
    assert 0.75 * dep < _bonded_rms_db(res.model) < 1.25 * dep, dep


def test_b_overall_keeps_the_input_b_scale(inputs):
    import densrefine as dr

    model, emap, _, _ = inputs
    res = dr.fit(model, emap, 3.2, config={"stages": "b", "b_overall": True}, device="cpu")
    b0, b1 = np.asarray(model.atoms.b_iso), np.asarray(res.model.atoms.b_iso)
    assert abs(np.median(b1) - np.median(b0)) < 5.0
    assert np.sum(b1 < 3.0) < 1.2 * np.sum(b0 < 3.0) + 10
    g = [c for c in res.stats["cycles"] if c["stage"] == "b"][-1]["b_overall_offset"]
    assert g < -20.0   # EMD-3488 is sharper than 5NI1's B
