"""d_model on the shared cryo-EM maps against their published resolutions."""
from __future__ import annotations

import pytest

from densrefine.io import read_map, read_model
from densrefine.scoring import estimate_resolution

from tests.conftest import EM_PAIRS, require_data


@pytest.mark.parametrize("folder,model,emap,d", [p for p in EM_PAIRS if "shifted" not in p[1]
                                                  and "nstart" not in p[2]])
def test_d_model_near_published_resolution(folder, model, emap, d):
    mp, ep = require_data(folder, model), require_data(folder, emap)
    est = estimate_resolution(read_model(mp), read_map(ep), device="cpu")
    # measured 2026-11-24: 3.26 / 3.77 / 2.97 / 2.94 Å for 3.2 / 3.2 / 3.2 / 2.9 Å
    assert est.d_model == pytest.approx(d, rel=0.2)
    assert est.cc_max > 0.45
