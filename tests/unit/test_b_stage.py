"""The B stage of `fit`: restraint pairs, likelihood data weight, recovery of known B."""
from __future__ import annotations

import types

import numpy as np
import pytest

from densrefine import InputError
from densrefine.build import ideal_peptide, with_cell_box
from densrefine.refine import fit, load_config
from densrefine.refine.geometry import (B_SIGMA_13, Geometry, b_data_weight,
                                        b_restraint_pairs, b_similarity)
from densrefine.simulate import simulate

from .refine_standin import patch_geometry


def _geom(bonds, angles):
    rs = types.SimpleNamespace(bonds=np.array(bonds, np.int64).reshape(-1, 2),
                               angles=np.array(angles, np.int64).reshape(-1, 3))
    return Geometry(None, rs, None)


def test_restraint_pairs_are_bonds_then_unique_1_3_pairs():
    # chain 0-1-2-3 and a ring-closing bond 0-2 (so the 0..2 angle pair is also a bond)
    g = _geom([[1, 0], [1, 2], [2, 3], [0, 2], [2, 1]],
              [[0, 1, 2], [2, 1, 0], [1, 2, 3], [0, 2, 3]])
    pairs, sig = b_restraint_pairs(g, 4.0)
    got = {tuple(p): s for p, s in zip(pairs.tolist(), sig)}
    assert got == {(0, 1): 4.0, (1, 2): 4.0, (2, 3): 4.0, (0, 2): 4.0,
                   (1, 3): 4.0 * B_SIGMA_13, (0, 3): 4.0 * B_SIGMA_13}
    assert pairs.dtype == np.int64 and sig.shape == (len(pairs),)


def test_restraint_pairs_without_angles():
    pairs, sig = b_restraint_pairs(_geom([[0, 1]], []), 5.0)
    assert pairs.tolist() == [[0, 1]] and sig.tolist() == [5.0]


def test_b_similarity_per_pair_sigma():
    import torch

    b = torch.tensor([10.0, 20.0, 40.0], dtype=torch.float64)
    pairs = torch.tensor([[0, 1], [1, 2]])
    e = b_similarity(b, pairs, torch.tensor([10.0, 20.0], dtype=torch.float64))
    assert float(e) == pytest.approx(1.0 + 1.0)
    assert float(b_similarity(b, pairs, 10.0)) == pytest.approx(1.0 + 4.0)


def test_data_weight_is_gaussian_likelihood_of_independent_samples():
    # N_ind = V·4π/(3d³); w = N_ind / (2 (1 − CC0²))
    w = b_data_weight(1000.0, 2.0, 0.25)
    assert w == pytest.approx(1000.0 * 4 * np.pi / 24.0 / 0.5)
    assert b_data_weight(2000.0, 2.0, 0.25) == pytest.approx(2 * w)
    assert b_data_weight(1000.0, 4.0, 0.25) == pytest.approx(w / 8)
    assert b_data_weight(1000.0, 2.0, 0.5) == pytest.approx(w / 2)
    assert np.isfinite(b_data_weight(1000.0, 2.0, 0.0))


def test_config_b_fields():
    cfg = load_config()
    assert cfg.b_sigma == 20.0 and cfg.b_weight_scale == 1.0
    assert load_config({"b_weight_scale": 2}).b_weight_scale == 2.0
    for bad in ({"b_sigma": 0}, {"b_sigma": -5.0}, {"b_weight_scale": 0.0},
                {"b_weight_scale": True}, {"b_sigma": "x"}):
        with pytest.raises(InputError):
            load_config(bad)


@pytest.fixture(scope="module")
def b_truth():
    """Peptide with a B gradient along the chain (20 → 80 Å²), side chains +15 Å², noisy map."""
    m, _ = with_cell_box(ideal_peptide("AKELVSAEKL"), margin=6.0)
    at = m.atoms
    res = np.asarray(at.res_seq, float)
    side = ~np.isin(np.asarray(at.atom_name).astype(str), ["N", "CA", "C", "O"])
    b = 20.0 + 60.0 * (res - res.min()) / np.ptp(res) + 15.0 * side
    truth = m.with_atoms(at.replace(b_iso=b))
    emap = simulate(truth, resolution=3.0, spacing=1.0, margin=6.0, method="fourier",
                    device="cpu")
    v = np.asarray(emap.values, np.float64)
    noise = np.random.default_rng(0).normal(size=v.shape)
    f = np.fft.rfftn(noise)   # band-limit the noise like the signal (box ≈ cube of 1 Å voxels)
    k = [np.fft.fftfreq(n) for n in v.shape[:2]] + [np.fft.rfftfreq(v.shape[2])]
    f[(k[0][:, None, None] ** 2 + k[1][None, :, None] ** 2 + k[2][None, None, :] ** 2)
      > 1 / 9.0] = 0
    noise = np.fft.irfftn(f, s=v.shape, axes=(0, 1, 2))
    noisy = v + noise / noise.std() * 0.3 * v[v > 0.1 * v.max()].std()
    start = truth.with_atoms(at.replace(b_iso=np.full(len(b), b.mean())))
    return truth, start, emap.with_values(noisy.astype(np.float32))


def _b_rmsd(model, truth):
    return float(np.sqrt(np.mean((model.atoms.b_iso - truth.atoms.b_iso) ** 2)))


def test_b_stage_recovers_known_b(b_truth, monkeypatch):
    patch_geometry(monkeypatch)
    truth, start, emap = b_truth
    res = fit(start, emap, 3.0, config={"stages": "b", "b_iterations": 30}, device="cpu")
    rmsd0, rmsd = _b_rmsd(start, truth), _b_rmsd(res.model, truth)
    assert rmsd < 0.5 * rmsd0
    assert np.corrcoef(res.model.atoms.b_iso, truth.atoms.b_iso)[0, 1] > 0.8
    np.testing.assert_allclose(res.model.atoms.xyz, start.atoms.xyz, atol=1e-4)  # float32
    rec = [c for c in res.stats["cycles"] if c["stage"] == "b"][-1]
    assert rec["b_weight"] > 0 and rec["cc_mask_term"] > res.stats["cycles"][0]["cc_mask_term"] - 1


def test_data_weight_scale_moves_between_prior_and_data(b_truth, monkeypatch):
    patch_geometry(monkeypatch)
    truth, start, emap = b_truth
    out = {}
    for scale in (1e-3, 1.0):
        res = fit(start, emap, 3.0, config={"stages": "b", "b_iterations": 30,
                                            "b_weight_scale": scale}, device="cpu")
        out[scale] = res.model.atoms.b_iso
    # almost no data: B stay near the flat start; likelihood weight: far better recovery
    assert np.std(out[1e-3]) < 0.3 * np.std(out[1.0])
    assert _b_rmsd(types.SimpleNamespace(atoms=types.SimpleNamespace(b_iso=out[1.0])), truth) \
        < _b_rmsd(types.SimpleNamespace(atoms=types.SimpleNamespace(b_iso=out[1e-3])), truth)


def test_b_overall_absorbs_map_sharpening(b_truth, monkeypatch):
    """A map of the truth with every B lowered by 15 Å² (a 'sharpened' map): with
    b_overall the refined B keep the start's mean and the map-term offset g takes the
    sharpening; without, B follow the map down."""
    patch_geometry(monkeypatch)
    truth, start, _ = b_truth
    sharp = truth.with_atoms(truth.atoms.replace(b_iso=truth.atoms.b_iso - 15.0))
    emap = simulate(sharp, resolution=3.0, spacing=1.0, margin=6.0, method="fourier",
                    device="cpu")
    mean0 = float(start.atoms.b_iso.mean())   # = the truth's mean
    cfg = {"stages": "b", "b_iterations": 30}
    plain = fit(start, emap, 3.0, config=cfg, device="cpu").model.atoms.b_iso
    assert float(plain.mean()) < mean0 - 8.0
    res = fit(start, emap, 3.0, config={**cfg, "b_overall": True}, device="cpu")
    b = res.model.atoms.b_iso
    g = [c for c in res.stats["cycles"] if c["stage"] == "b"][-1]["b_overall_offset"]
    assert abs(float(b.mean()) - mean0) < 1.0 and -18.0 < g < -12.0
    assert np.corrcoef(b, truth.atoms.b_iso)[0, 1] > 0.8
