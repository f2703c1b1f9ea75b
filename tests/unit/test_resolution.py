"""d_model resolution estimate (densrefine.scoring.resolution) on simulated maps."""
from __future__ import annotations

import numpy as np
import pytest

from densrefine import InputError
from densrefine.build import ideal_peptide, with_cell_box
from densrefine.scoring import estimate_resolution
from densrefine.scoring.resolution import cc_vs_resolution
from densrefine.simulate import simulate


@pytest.fixture(scope="module")
def peptide():
    m, _ = with_cell_box(ideal_peptide("AKELVSAEGLAKE"), margin=6.0)
    return m


def _noisy(m, d, level=0.2, seed=0):
    sim = simulate(m, resolution=d, spacing=0.8, margin=6.0, method="fourier", device="cpu")
    v = np.asarray(sim.values, np.float64)
    v = v + np.random.default_rng(seed).normal(0.0, level * v.std(), v.shape)
    return sim.with_values(v.astype(np.float32))


@pytest.mark.parametrize("d", [2.5, 4.0, 6.0])
def test_d_model_recovers_the_simulated_resolution(peptide, d):
    est = estimate_resolution(peptide, _noisy(peptide, d), device="cpu")
    assert est.d_model == pytest.approx(d, rel=0.08)
    assert 0.3 < est.cc_max <= 1.0
    assert est.d_nyquist == pytest.approx(1.6, abs=1e-3) and not est.at_limit
    assert set(est.to_dict()) >= {"d_model", "cc_max", "d_nyquist", "method"}


def test_cc_curve_peaks_at_the_cutoff_of_an_exact_map(peptide):
    """With no noise the sharp-cut model map at the map's own cut-off matches it exactly."""
    emap = _noisy(peptide, 4.0, level=0.0)
    full = simulate(peptide, like=emap, resolution=1.601, method="fourier", device="cpu")
    s, cc = cc_vs_resolution(emap.values, full.values, emap)
    assert np.all(np.diff(s) >= 0)
    i = int(np.argmax(cc))
    assert cc[i] > 0.999 and 1.0 / s[i] == pytest.approx(4.0, rel=0.03)


def test_unrelated_map_gives_a_one_line_error(peptide):
    emap = _noisy(peptide, 4.0)
    rng = np.random.default_rng(1)
    junk = emap.with_values(rng.normal(size=emap.shape).astype(np.float32))
    with pytest.raises(InputError) as exc:
        estimate_resolution(peptide, junk, device="cpu")
    msg = str(exc.value)
    assert "\n" not in msg and "-d" in msg and "correlates poorly" in msg
