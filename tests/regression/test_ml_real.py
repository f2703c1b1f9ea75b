"""The ML density on a real cryo-EM map (issue 6)."""
from __future__ import annotations

import densrefine as dr


def test_ml_scores_a_real_map_with_gain_on_5ni1():
    """`score --density ml` runs on EMD-3488/5NI1 (no H: united atoms) and CC_mask does not
    drop (measured 0.8722 → 0.8780, benchmarks/RESULTS.md)."""
    import warnings

    from tests.conftest import require_data

    m = dr.read_model(require_data("emd-3488_5ni1", "5ni1_updated.cif.gz"))
    e = dr.read_map(require_data("emd-3488_5ni1", "emd_3488.mrc"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r0 = dr.score(m, e, 3.2, per_residue=False, fsc=False)
        r1 = dr.score(m, e, 3.2, per_residue=False, fsc=False, density="ml")
    assert r1.cc_mask > r0.cc_mask
