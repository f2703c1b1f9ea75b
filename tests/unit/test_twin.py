"""Twinning on synthetic data: twin laws, index lookup, L-test and H-test against their
theoretical values, and the twin fraction refined with the scales (densrefine.xtal.twin,
densrefine.xtal.scale)."""
from __future__ import annotations

import math

import gemmi
import numpy as np
import pytest

from densrefine.io.model import structure_from_model
from densrefine.io.reflections import Reflections
from densrefine.xtal.bulk import fmask
from densrefine.xtal.fcalc import fcalc
from densrefine.xtal.scale import f_model_abs, fit_scales, r_factor
from densrefine.xtal.twin import (ReflectionLookup, analyse_twinning, apply_law, h_test,
                                  l_test, law_name, twin_laws)
from tests.unit.test_xtal import millers, synthetic


@pytest.mark.parametrize("sg,cellp,laws", [
    ("P 43", (53.89, 53.89, 77.36, 90, 90, 90), ["-h,k,-l"]),            # 1L2H
    ("P 65", (130.397, 130.397, 55.061, 90, 90, 120), ["-h-k,k,-l"]),    # 3NR7
    ("P 65 2 2", (71.45, 71.45, 104.2, 90, 90, 120), []),                # 4HG7: holohedral
    ("P 1 21 1", (22, 18, 25, 90, 107, 90), [])])
def test_twin_laws(sg, cellp, laws):
    ops = twin_laws(gemmi.UnitCell(*cellp), gemmi.SpaceGroup(sg))
    assert [law_name(op) for op in ops] == laws


def test_apply_law_matches_gemmi(rng):
    op = twin_laws(gemmi.UnitCell(130.4, 130.4, 55.06, 90, 90, 120), gemmi.SpaceGroup("P 65"))[0]
    hkl = rng.integers(-9, 10, size=(50, 3))
    th = apply_law(op, hkl)
    assert th.tolist() == [op.apply_to_hkl(h) for h in hkl.tolist()]
    # a twin law keeps the resolution (it is a lattice symmetry)
    cell = gemmi.UnitCell(130.4, 130.4, 55.06, 90, 90, 120)
    np.testing.assert_allclose(cell.calculate_1_d2_array(th.astype(np.int32)),
                               cell.calculate_1_d2_array(hkl.astype(np.int32)), rtol=1e-12)


def test_reflection_lookup_finds_mates_and_friedel():
    cell, sg = gemmi.UnitCell(54, 54, 77, 90, 90, 90), gemmi.SpaceGroup("P 43")
    hkl = millers(cell, sg, 4.0)
    lk = ReflectionLookup(hkl, sg)
    rows = np.arange(len(hkl))
    for op in sg.operations():
        mates = np.array([op.apply_to_hkl(h) for h in hkl.tolist()])
        assert np.array_equal(lk.find(mates), rows)
        assert np.array_equal(lk.find(-mates), rows)                 # Friedel mates
    assert lk.find([[0, 0, 0]])[0] == -1                             # not in the list
    assert lk.find([[999, 0, 0]])[0] == -1                           # outside the table


@pytest.fixture(scope="module")
def twinned_case():
    """300 atoms at random positions in P 43 (Wilson statistics), 2.2 Å; F(h), F(Th)."""
    name, cp = "P 43", (53.89, 53.89, 77.36, 90, 90, 90)
    model, cell = synthetic(name, cp, seq="AKLVEFGSAKLVEFGSAKLVEFGSAKLVEFGSAKLVEFGS", b=15.0)
    rng = np.random.default_rng(7)
    orth = np.array(cell.orth.mat.tolist())
    xyz = (orth @ rng.random((len(model.atoms), 3)).T).T
    model = model.with_atoms(model.atoms.replace(xyz=xyz))
    sg = gemmi.SpaceGroup(name)
    hkl = millers(cell, sg, 2.2)
    op = twin_laws(cell, sg)[0]
    both = np.concatenate([hkl, apply_law(op, hkl)])
    fc = fcalc(model, both, cell, sg, 2.2)
    fm, _ = fmask(structure_from_model(model), cell, sg, both, 2.2)
    n = len(hkl)
    return model, cell, sg, hkl, op, fc[:n], fc[n:], fm[:n], fm[n:]


def _refl(hkl, inten, cell, sg):
    f = np.sqrt(np.maximum(inten, 0))
    d = 1 / np.sqrt(cell.calculate_1_d2_array(np.asarray(hkl, np.int32)))
    return Reflections("synthetic", np.asarray(hkl, np.int32), f, 0.02 * f + 1e-3, None, cell,
                       sg, d, {}, inten, 0.02 * inten + 1e-3)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5])
def test_l_and_h_tests_against_theory(twinned_case, alpha):
    """Untwinned: <|L|> = 1/2, <L²> = 1/3, α_H = 0; perfect twin: 3/8, 1/5, α_H = 1/2;
    α_H ≈ α for a partial twin (Yeates 1997; Padilla & Yeates 2003)."""
    _, cell, sg, hkl, op, f1, f2, _, _ = twinned_case
    inten = (1 - alpha) * np.abs(f1) ** 2 + alpha * np.abs(f2) ** 2
    lt = l_test(hkl, inten, sg)
    d = 1 / np.sqrt(cell.calculate_1_d2_array(np.asarray(hkl, np.int32)))
    ht = h_test(hkl, inten, sg, op, d=d)
    assert lt["n_pairs"] > 20000 and ht["n_pairs"] > 1000
    if alpha == 0.0:
        assert lt["mean_abs_l"] == pytest.approx(0.5, abs=0.02)
        assert lt["mean_l2"] == pytest.approx(1 / 3, abs=0.02)
        assert ht["alpha"] < 0.03
    elif alpha == 0.5:
        assert lt["mean_abs_l"] == pytest.approx(0.375, abs=0.02)
        assert lt["mean_l2"] == pytest.approx(0.2, abs=0.02)
        assert ht["alpha"] > 0.47
    else:
        assert 0.375 + 0.01 < lt["mean_abs_l"] < 0.5 - 0.02
        assert ht["alpha"] == pytest.approx(alpha, abs=0.04)
    ana, chosen = analyse_twinning(_refl(hkl, inten, cell, sg))
    assert ana.laws == ["-h,k,-l"] and ana.source == "intensities"
    assert ana.indicated == (alpha > 0)
    assert (chosen is not None) == (alpha > 0)
    if alpha > 0:
        assert ana.law == "-h,k,-l" and ana.alpha_h == pytest.approx(alpha, abs=0.04)


def test_fit_scales_refines_twin_fraction(twinned_case):
    """F_obs from a 30 % twin with bulk solvent and anisotropic scale: the twin fit finds
    α = 0.30 and R ≈ 0 from a start of 0.15; the single-domain fit is left at R > 0.1."""
    _, cell, sg, hkl, op, fc, fct, fm, fmt = twinned_case
    sc = hkl @ np.array(cell.frac.mat.tolist())
    s2 = (sc ** 2).sum(1)
    km = 0.38 * np.exp(-50 * s2 / 4)
    u = np.diag([0.1, 0.1, -0.05])
    dw = np.exp(-2 * math.pi ** 2 * np.einsum("ni,ij,nj->n", sc, u, sc))
    alpha = 0.3
    fo = 3.0 * dw * np.sqrt((1 - alpha) * np.abs(fc + km * fm) ** 2
                            + alpha * np.abs(fct + km * fmt) ** 2)
    free = np.random.default_rng(3).random(len(fo)) < 0.05
    res = fit_scales(fo, fc, fm, hkl, cell, sg, ~free, twin=(fct, fmt, 0.15))
    assert res.twin_fraction == pytest.approx(alpha, abs=0.01)
    fa = f_model_abs(fc, fm, sc, s2, res, (fct, fmt))
    assert r_factor(fo, fa, ~free) < 0.005 and r_factor(fo, fa, free) < 0.005
    single = fit_scales(fo, fc, fm, hkl, cell, sg, ~free)
    assert single.twin_fraction is None
    assert r_factor(fo, f_model_abs(fc, fm, sc, s2, single), free) > 0.1
