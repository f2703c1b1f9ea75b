"""The free (test) reflections never enter any fit (Brünger 1992, Nature 355, 472).

Every fitted quantity — overall and anisotropic scale, k_sol/B_sol, k_iso(s), R-work —
must be unchanged when the free F_obs are replaced by anything else; only R-free may
move. Synthetic data (no files, no peers): an ideal helix in P 1 21 1 with bulk
solvent and anisotropy, 5 % free.
"""
from __future__ import annotations

import math

import gemmi
import numpy as np
import pytest

from densrefine.io.reflections import Reflections, resolution
from densrefine.xtal.api import FModel
from densrefine.xtal.bulk import fmask
from densrefine.xtal.fcalc import fcalc
from densrefine.xtal.scale import fit_scales
from densrefine.io.model import structure_from_model
from tests.unit.test_xtal import millers, synthetic

SG, CELL = "P 1 21 1", (26, 30, 48, 90, 104, 90)


@pytest.fixture(scope="module")
def case():
    model, cell = synthetic(SG, CELL, seq="AKLVEFGSAKLVEFGSAKLV", b=20.0,
                            centre=(0.25, 0.3, 0.5))
    sg = gemmi.SpaceGroup(SG)
    hkl = millers(cell, sg, 2.2)
    fc = fcalc(model, hkl, cell, sg, 2.2)
    fm, _ = fmask(structure_from_model(model), cell, sg, hkl, 2.2)
    sc = hkl @ np.array(cell.frac.mat.tolist())
    s2 = (sc ** 2).sum(1)
    u = np.array([[0.12, 0.0, 0.05], [0.0, -0.06, 0.0], [0.05, 0.0, 0.25]])
    fo = (3.0 * np.exp(-2 * math.pi ** 2 * np.einsum("ni,ij,nj->n", sc, u, sc))
          * np.abs(fc + 0.35 * np.exp(-46.0 * s2 / 4) * fm))
    rng = np.random.default_rng(7)
    fo = fo * (1 + 0.05 * rng.standard_normal(len(fo)))  # noise: R-work about 0.04
    free = rng.random(len(fo)) < 0.05
    return model, cell, sg, hkl, fc, fm, np.abs(fo), free


def _wild(fo, free, seed=1):
    """Free F_obs replaced by numbers unrelated to the model (0.01–10× the mean)."""
    rng = np.random.default_rng(seed)
    out = fo.copy()
    out[free] = fo.mean() * 10 ** rng.uniform(-2, 1, int(free.sum()))
    return out


def test_scale_fit_ignores_free_reflections(case):
    _, cell, sg, hkl, fc, fm, fo, free = case
    a = fit_scales(fo, fc, fm, hkl, cell, sg, ~free)
    b = fit_scales(_wild(fo, free), fc, fm, hkl, cell, sg, ~free)
    assert a.k_overall == pytest.approx(3.0, rel=0.03)  # the truth, so the fit is real
    for name in ("k_overall", "k_sol", "b_sol"):
        assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-9, abs=1e-12), name
    np.testing.assert_allclose(b.u_aniso, a.u_aniso, rtol=0, atol=1e-12)
    np.testing.assert_allclose(b.k_iso, a.k_iso, rtol=1e-12)
    np.testing.assert_allclose(b.bin_k_mask, a.bin_k_mask, rtol=0, atol=1e-12)


def _refl(fo, free, hkl, cell, sg):
    d = resolution(cell, hkl)
    info = {"n_free": int(free.sum()), "n_work": int((~free).sum()), "free_problem": None,
            "d_min": float(d.min()), "d_max": float(d.max()), "n": len(d)}
    return Reflections(path="synthetic", hkl=np.asarray(hkl, np.int32), f=fo,
                       sigf=np.ones_like(fo), free=free, cell=cell, spacegroup=sg, d=d,
                       info=info)


def test_fmodel_r_work_and_scales_ignore_free_reflections(case):
    model, cell, sg, hkl, _, _, fo, free = case
    a = FModel(model, _refl(fo, free, hkl, cell, sg))
    b = FModel(model, _refl(_wild(fo, free), free, hkl, cell, sg))
    assert 0.02 < a.r_work < 0.08 and 0.02 < a.r_free < 0.12
    assert b.r_work == pytest.approx(a.r_work, rel=1e-9)
    assert b.r_free > 0.5  # the free set is what changed ...
    ra, rb = a.report(), b.report()
    for key in ("k_sol", "b_sol", "k_overall"):  # ... and no fitted number moved with it
        assert getattr(rb, key) == pytest.approx(getattr(ra, key), rel=1e-9), key
    np.testing.assert_allclose(rb.b_aniso, ra.b_aniso, rtol=0, atol=1e-9)
    assert [s["r_work"] for s in rb.shells] == pytest.approx([s["r_work"] for s in ra.shells],
                                                             rel=1e-9)


def test_map_coefficients_of_work_reflections_ignore_free_set(case):
    """σA from the work set; free reflections get D·|F_model| (2mFo−DFc): no coefficient
    depends on a free F_obs."""
    from densrefine.xtal.maps import map_coefficients

    model, cell, sg, hkl, _, _, fo, free = case
    a = map_coefficients(FModel(model, _refl(fo, free, hkl, cell, sg)))
    b = map_coefficients(FModel(model, _refl(_wild(fo, free), free, hkl, cell, sg)))
    np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-9)  # every coefficient


@pytest.mark.parametrize("kind", ["ml", "lsq"])
def test_reciprocal_target_ignores_free_reflections(case, kind):
    """The refinement target (`densrefine.xtal.target.XrayTarget`), its gradient w.r.t.
    coordinates and B, and the likelihood parameters D, S (or the LSQ variances) are the
    same whatever the free F_obs are; only R-free sees them."""
    import torch

    from densrefine.xtal.target import XrayTarget

    model, cell, sg, hkl, _, _, fo, free = case
    at = model.atoms

    def run(f_obs):
        fm = FModel(model, _refl(f_obs, free, hkl, cell, sg))
        tgt = XrayTarget(fm, model, kind=kind, dtype=torch.float64)
        xyz = torch.tensor(np.array(at.xyz), dtype=torch.float64, requires_grad=True)
        b = torch.tensor(np.array(at.b_iso), dtype=torch.float64, requires_grad=True)
        val = tgt(xyz, b, torch.tensor(np.array(at.occ), dtype=torch.float64))
        val.backward()
        # after a refit at moved coordinates too (scales and D/S re-estimated)
        tgt.refit(np.array(at.xyz) + 0.05, np.array(at.b_iso) + 2.0)
        return (float(val), xyz.grad.numpy(), b.grad.numpy(), tgt.ml, tgt.value, fm.r_work,
                fm.r_free)

    a, b = run(fo), run(_wild(fo, free))
    assert a[0] == pytest.approx(b[0], rel=1e-12)
    np.testing.assert_allclose(b[1], a[1], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(b[2], a[2], rtol=1e-10, atol=1e-12)
    for key in a[3]:
        np.testing.assert_allclose(b[3][key], a[3][key], rtol=1e-9)
    assert b[4] == pytest.approx(a[4], rel=1e-10)
    assert b[5] == pytest.approx(a[5], rel=1e-9)
    assert a[6] < 0.12 and b[6] > 0.5            # only R-free moved
    assert np.abs(a[1]).max() > 0                # the gradient is real
