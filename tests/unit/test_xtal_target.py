"""The reciprocal-space X-ray target (`densrefine.xtal.target`): the likelihood against
scipy's distributions, the D/S estimate against simulated data, and gradients (float64
gradcheck) w.r.t. coordinates and B on 5E5Z — through the direct (anisotropic) F_calc the
file needs and through the FFT path with its ANISOU removed.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from densrefine.xtal.target import XrayTarget, estimate_ml_params, ml_nll
from tests.conftest import require_data


def _t(a, dtype=torch.float64):
    return torch.as_tensor(np.array(a), dtype=dtype)


def test_ml_nll_is_rice_and_folded_normal_up_to_data_constants():
    """Acentric: the Rice density of |D F_c + complex Gaussian (var Σ)|, Σ = εS + 2σ²;
    centric: the folded normal, Σ = εS + σ². −log p = ml_nll − log(2F_o) (acentric) and
    ml_nll + ½ log(π/2) (centric): constants that depend on the data alone."""
    from scipy.stats import foldnorm, rice

    fo = np.array([3.0, 10.0, 25.0, 7.0])
    fc = np.array([5.0, 9.0, 20.0, 0.5])
    d, s, sig, eps = 0.8, 30.0, 1.5, np.array([1.0, 2.0, 1.0, 1.0])
    acen = ml_nll(_t(fo), _t(np.full(4, sig)), _t(fc), _t(np.full(4, d)), _t(np.full(4, s)),
                  _t(eps), torch.zeros(4, dtype=torch.bool)).numpy()
    big = eps * s + 2 * sig ** 2
    scale = np.sqrt(big / 2)
    ref = -rice.logpdf(fo, d * fc / scale, scale=scale)
    np.testing.assert_allclose(acen - np.log(2 * fo), ref, rtol=1e-10, atol=1e-10)
    cen = ml_nll(_t(fo), _t(np.full(4, sig)), _t(fc), _t(np.full(4, d)), _t(np.full(4, s)),
                 _t(eps), torch.ones(4, dtype=torch.bool)).numpy()
    sc = np.sqrt(eps * s + sig ** 2)
    ref_c = -foldnorm.logpdf(fo, d * fc / sc, scale=sc)
    np.testing.assert_allclose(cen + 0.5 * math.log(math.pi / 2), ref_c, rtol=1e-10,
                               atol=1e-10)


def test_ml_params_recover_simulated_d_and_s():
    """F_o = |D F_c e^{iφ} + Gaussian error of variance S (S/2 per component)| in 3 bins
    with D 0.9 / 0.7 / 0.4 and S 40 / 25 / 10: the estimate is within a few per cent."""
    rng = np.random.default_rng(3)
    n = 6000
    bins = np.repeat(np.arange(3), n // 3)
    d_true, s_true = np.array([0.9, 0.7, 0.4]), np.array([40.0, 25.0, 10.0])
    fc = rng.rayleigh(8.0, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    err = (rng.standard_normal(n) + 1j * rng.standard_normal(n)) * np.sqrt(s_true[bins] / 2)
    fo = np.abs(d_true[bins] * fc * np.exp(1j * phase) + err)
    d, s = estimate_ml_params(fo, np.zeros(n), fc, np.ones(n), np.zeros(n, bool), bins)
    np.testing.assert_allclose(d, d_true, rtol=0.04)
    np.testing.assert_allclose(s, s_true, rtol=0.08)


@pytest.fixture(scope="module")
def e5z():
    import densrefine as dr
    from densrefine.xtal.api import make_fmodel

    model = dr.read_model(require_data("5e5z", "5e5z.pdb.gz"))
    mtz = str(require_data("5e5z", "5e5z.mtz.gz"))
    return model, mtz, make_fmodel


def _gradcheck(model, mtz, make_fmodel, kind):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm = make_fmodel(model, mtz, twin="off")
        tgt = XrayTarget(fm, model, kind=kind, dtype=torch.float64)
    at = model.atoms
    sel = np.array([3, 17, 30])          # a few atoms (every input is one extra evaluation)
    xyz0, b0 = _t(at.xyz), _t(at.b_iso)
    occ = _t(at.occ)

    def f(xs, bs):
        xyz = xyz0.index_copy(0, torch.as_tensor(sel), xs)
        b = b0.index_copy(0, torch.as_tensor(sel), bs)
        return tgt(xyz, b, occ) / 100.0

    xs = xyz0[sel].clone().requires_grad_(True)
    bs = b0[sel].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (xs, bs), eps=1e-5, atol=1e-5, rtol=1e-3, fast_mode=True)
    return fm, tgt


def test_gradcheck_direct_anisotropic(e5z):
    """5E5Z carries ANISOU on every atom: F_calc by direct summation, U scaled by B/B₀."""
    model, mtz, make_fmodel = e5z
    fm, tgt = _gradcheck(model, mtz, make_fmodel, "ml")
    assert tgt.method == "direct"
    # the target's F_calc is the FModel's (R before = cctbx's 0.1706 / 0.1952 ± 0.01)
    assert abs(fm.r_work - 0.1706) < 0.01


def test_gradcheck_fft_isotropic_lsq(e5z):
    """ANISOU dropped: F_calc by FFT with symmetry (P 1 21 1); least-squares kind."""
    model, mtz, make_fmodel = e5z
    iso = model.with_atoms(model.atoms.replace(u_aniso=None))
    _, tgt = _gradcheck(iso, mtz, make_fmodel, "lsq")
    assert tgt.method == "fft"


def test_target_f_calc_matches_fmodel_and_refit_keeps_r(e5z):
    """The target's FFT F_calc (rate 1.25, cutoff 1e-5) agrees with `fcalc` (rate 1.5) to
    ≤ 1e-3 normalised RMS; a refit at unchanged coordinates gives the same R."""
    from densrefine.xtal.fcalc import fcalc

    model, mtz, make_fmodel = e5z
    iso = model.with_atoms(model.atoms.replace(u_aniso=None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm = make_fmodel(iso, mtz, twin="off")
        tgt = XrayTarget(fm, iso, dtype=torch.float64)
        r0 = (fm.r_work, fm.r_free)
        at = iso.atoms
        with torch.no_grad():
            fc = tgt.fcalc(_t(at.xyz), _t(at.b_iso), _t(at.occ)).numpy()
        ref = fcalc(iso, fm.hkl, fm.refl.cell, fm.refl.spacegroup, fm.d_min)
        nrms = np.sqrt(np.mean(np.abs(fc - ref) ** 2) / np.mean(np.abs(ref) ** 2))
        assert nrms < 1e-3, nrms
        tgt.refit(at.xyz, at.b_iso)
    assert fm.r_work == pytest.approx(r0[0], abs=2e-4)
    assert fm.r_free == pytest.approx(r0[1], abs=2e-3)


def test_ml_nll_grad_matches_torch_autograd():
    """The numpy likelihood used for D/S estimation equals `ml_nll`, and its derivatives
    w.r.t. log D and log S equal autograd's."""
    from densrefine.xtal.target import ml_nll_grad

    rng = np.random.default_rng(5)
    n = 50
    fo, fc = rng.uniform(0.5, 30, n), rng.uniform(0.5, 30, n)
    sig, eps = rng.uniform(0, 2, n), rng.choice([1.0, 2.0], n)
    cen = rng.random(n) < 0.3
    d, s = rng.uniform(0.3, 1.0, n), rng.uniform(5, 60, n)
    nll, gd, gs = ml_nll_grad(fo, sig, fc, d, s, eps, cen)
    ld = torch.tensor(np.log(d), requires_grad=True)
    ls = torch.tensor(np.log(s), requires_grad=True)
    ref = ml_nll(_t(fo), _t(sig), _t(fc), ld.exp(), ls.exp(), _t(eps), torch.as_tensor(cen))
    ref.sum().backward()
    np.testing.assert_allclose(nll, ref.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gd, ld.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gs, ls.grad.numpy(), rtol=1e-10, atol=1e-12)
