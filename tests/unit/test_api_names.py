"""The public API names stay callable whatever submodules were imported first."""
import numpy as np

import densrefine as dr
import densrefine.scoring  # noqa: F401  (imports densrefine.simulate as a side effect)
import densrefine.simulate  # noqa: F401
from densrefine.build import ideal_peptide


def test_simulate_callable_after_submodule_import():
    model = ideal_peptide("AKE")
    grid = dr.simulate(model, resolution=3.0, spacing=1.0)
    assert isinstance(grid, dr.Grid) and np.isfinite(grid.values).all()
    assert grid.values.max() > 0
    for name in ("read_model", "read_map", "write_model", "write_map", "score", "fit"):
        assert callable(getattr(dr, name)), name
