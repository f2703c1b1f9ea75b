"""Poisson reaction field of a continuum solvent (densrefine.simulate.solvent, issue 21)."""
import math

import numpy as np
import pytest
import torch

from densrefine.density.cavity import cavity_radii
from densrefine.simulate.solvent import _laplace_symbol, dielectric, reaction_field
from densrefine.types import GridFrame


def _born(radius=3.0, n=40, h=0.5):
    fr = GridFrame.box((n, n, n), h, origin=(-n * h / 2,) * 3, periodic=True)
    eps = dielectric(torch.zeros(1, 3, dtype=torch.float64), [radius], fr, width=0.2)
    rho = torch.zeros(fr.shape, dtype=torch.float64)
    rho[n // 2, n // 2, n // 2] = 1.0 / h**3
    phi, info = reaction_field(rho, eps, fr)
    lam = _laplace_symbol(fr.shape, [h] * 3, rho)
    inv = torch.where(lam > 0, 1.0 / torch.where(lam > 0, lam, 1.0), 0.0)
    vac = torch.fft.irfftn(torch.fft.rfftn(4 * math.pi * rho) * inv, s=rho.shape)
    return vac, phi, info


def test_born_ion_is_screened_outside_and_sees_a_uniform_field_inside():
    vac, phi, info = _born()
    c = 20
    assert info["residual"] < 1e-4 and info["iterations"] < 60
    tot = vac + phi
    # in the solvent (4 … 9 Å) the total potential is flat: q/(ε r) varies by 0.002
    assert abs(float(tot[c, c, c + 8] - tot[c, c, c + 18])) < 0.005
    assert float(vac[c, c, c + 8] - vac[c, c, c + 18]) > 0.1
    # inside the cavity the reaction field is uniform, and the potential inside is
    # q/r − q/a (Born): 1/1.5 − 1/3 = 0.333, up to the finite-difference Green function
    # of a one-voxel charge 3 voxels away (−10 %)
    assert float(phi[c, c, c] - phi[c, c, c + 3]) == pytest.approx(0.0, abs=2e-3)
    assert float(tot[c, c, c + 3] - tot[c, c, c + 10]) == pytest.approx(1 / 1.5 - 1 / 3,
                                                                        abs=0.05)


def test_cavity_radii_follow_bondi_and_united_atoms_grow():
    r = cavity_radii(["C", "H", "O", "Zn", "Xx"])
    np.testing.assert_allclose(r, 1.2 * np.array([1.70, 1.10, 1.52, 1.39, 2.0]))
    ru = cavity_radii(["C", "O"], implicit_h=[3, 0], united=0.3)
    np.testing.assert_allclose(ru, 1.2 * np.array([1.70, 1.52]) + [0.3, 0.0])


def test_warm_start_reaches_the_same_field_in_fewer_iterations():
    """CG from the field of slightly moved charges (a fit's refresh) lands on the cold-start
    solution of the new charges, in fewer iterations."""
    n, h = 32, 0.5
    fr = GridFrame.box((n, n, n), h, origin=(-n * h / 2,) * 3, periodic=True)
    xyz = torch.tensor([[-1.0, 0.0, 0.0], [1.2, 0.0, 0.0]], dtype=torch.float64)
    eps = dielectric(xyz, [2.0, 2.0], fr, width=0.3)

    def charges(shift):
        rho = torch.zeros(fr.shape, dtype=torch.float64)
        for (x, y, z), q in zip(xyz.tolist(), (1.0, -1.0)):
            i, j, k = (round((v + n * h / 2) / h) for v in (x + shift, y, z))
            rho[k, j, i] += q / h**3
        return rho

    old, _ = reaction_field(charges(0.0), eps, fr)
    cold, info_cold = reaction_field(charges(h), eps, fr, tol=1e-6)
    warm, info_warm = reaction_field(charges(h), eps, fr, tol=1e-6, x0=old)
    assert info_warm["iterations"] < info_cold["iterations"]
    scale = float(cold.abs().max())
    assert float((warm - cold).abs().max()) < 1e-3 * scale
    same, info = reaction_field(charges(h), eps, fr, tol=1e-6, x0=cold)
    assert info["iterations"] <= 2 and float((same - cold).abs().max()) < 1e-3 * scale
