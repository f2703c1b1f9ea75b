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


def test_local_resolution_finds_the_blurred_half():
    """Two helices side by side: one in a 3 Å map, the other in a 6 Å map (blended into one
    map): the local estimate reads ~3 Å at the first and ~6 Å at the second."""
    from densrefine.scoring import local_resolution

    a = ideal_peptide("AKELVSAEGLAKE")
    xyz_b = a.atoms.xyz + np.array([14.0, 0.0, 0.0])
    from densrefine.types import Atoms, Model

    fields = {f: np.concatenate([getattr(a.atoms, f)] * 2) for f in
              ("b_iso", "occ", "element", "atomic_number", "charge", "res_name", "res_seq",
               "icode", "atom_name", "altloc", "het")}
    atoms = Atoms(xyz=np.concatenate([a.atoms.xyz, xyz_b]),
                  chain=np.array(["A"] * len(a) + ["B"] * len(a)),
                  res_index=np.concatenate([a.atoms.res_index, a.atoms.res_index + 100]),
                  **fields)
    both, _ = with_cell_box(Model(atoms=atoms), margin=6.0)
    sharp = simulate(both, resolution=3.0, spacing=0.8, margin=6.0, method="fourier",
                     device="cpu")
    blurred = simulate(both, like=sharp, resolution=6.0, method="fourier", device="cpu")
    x = sharp.origin[0] + np.arange(sharp.shape[2]) * sharp.voxel_size[0]
    cut = both.atoms.xyz[:len(a), 0].max() + 3.5
    w = np.clip((x - cut) / 3.0 + 0.5, 0, 1)[None, None, :]
    v = np.asarray(sharp.values) * (1 - w) + np.asarray(blurred.values) * w
    v = v + np.random.default_rng(1).normal(0, 0.05 * v.std(), v.shape)
    lr = local_resolution(both, sharp.with_values(v.astype(np.float32)), 3.0, device="cpu")
    first, second = lr.d_atom[:len(a)], lr.d_atom[len(a):]
    assert np.median(first) == pytest.approx(3.0, rel=0.15)
    assert np.median(second) == pytest.approx(6.0, rel=0.2)
    assert lr.cc.shape == (len(lr.levels), len(both)) and lr.d_atom.min() >= 3.0
    s = lr.summary()
    assert len(s["percentiles_10_25_50_75_90"]) == 5 and s["window"] == 5.0
