"""Scattering tables, the IAM density model and the density-model registry."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import gemmi  # noqa: E402 - a hard dependency: a broken install must fail, not skip

from densrefine import Atoms, DensrefineWarning, InputError
from densrefine.density import available, get_density_model, iam
from densrefine.scattering import coefficients, unknown_elements
from densrefine.scattering.tables import has_ion
from densrefine.simulate.plan import cutoff_radius


def make_atoms(elements, charges=None, xyz=None, b=20.0):
    n = len(elements)
    return Atoms(
        xyz=np.zeros((n, 3)) if xyz is None else xyz, b_iso=np.full(n, b), occ=np.ones(n),
        element=elements, atomic_number=np.zeros(n), charge=np.zeros(n) if charges is None
        else charges, chain=["A"] * n, res_name=["UNK"] * n, res_seq=np.arange(n),
        icode=[" "] * n, atom_name=[f"X{i}" for i in range(n)], altloc=[""] * n,
        het=np.zeros(n, bool), res_index=np.arange(n))


def test_xray_sums_to_electrons_and_constant_is_b0():
    a, b = coefficients(["C", "N", "O", "S", "FE"], table="xray")
    assert a.shape == b.shape == (5, 5)
    np.testing.assert_allclose(a.sum(1), [6, 7, 8, 16, 26], atol=0.02)
    assert np.all(b[:, 4] == 0) and np.all(b[:, :4] > 0)
    ref = gemmi.Element("C").it92.get_coefs()
    np.testing.assert_allclose(a[0], ref[:4] + [ref[8]], rtol=1e-6)


def test_electron_table_is_gemmi_c4322():
    a, b = coefficients(["C", "fe"], table="electron")
    for row, el in enumerate(["C", "Fe"]):
        ref = gemmi.Element(el).c4322.get_coefs()
        np.testing.assert_allclose(a[row], ref[:5], rtol=1e-6)
        np.testing.assert_allclose(b[row], ref[5:], rtol=1e-6)


def test_deuterium_unknown_and_case():
    a, _ = coefficients(["D", "H", "X", "O", "Es", "o"], table="electron")
    np.testing.assert_array_equal(a[0], a[1])
    for row in (2, 4, 5):                       # unknown → O, case-insensitive symbols
        np.testing.assert_array_equal(a[row], a[3])
    assert unknown_elements(["C", "X", "Es", "", "D"]).tolist() == [False, True, True, True, False]


def test_charges_xray_ions_electron_neutral():
    assert has_ion("FE", 2) and not has_ion("C", 1) and not has_ion("FE", 0)
    ax, _ = coefficients(["FE", "FE", "C"], [2, 0, 1], table="xray")
    assert abs(ax[0].sum() - 24) < 0.05 and abs(ax[1].sum() - 26) < 0.05
    np.testing.assert_array_equal(ax[2], coefficients(["C"], table="xray")[0][0])  # no C+ entry
    ae, _ = coefficients(["FE", "FE"], [2, 0], table="electron")
    np.testing.assert_array_equal(ae[0], ae[1])
    assert gemmi.IT92_get_ignore_charge()       # gemmi's global flag restored


def test_bad_table():
    with pytest.raises(ValueError, match="xray"):
        coefficients(["C"], table="neutron")


def test_unknown_element_warns_naming_atoms():
    atoms = make_atoms(["C", "X", "Q"])
    with pytest.warns(DensrefineWarning, match=r"treated as O.*A/UNK1/X1") as rec:
        a, _ = iam.coefficients(atoms, "electron")
    assert "2 atom(s)" in str(rec[0].message)
    np.testing.assert_array_equal(a[1], coefficients(["O"])[0][0])


def test_components_and_gaussian_set():
    import torch

    atoms = make_atoms(["C", "O"], xyz=np.array([[0.0, 0, 0], [1, 2, 3]]), b=30.0)
    atoms = atoms.replace(occ=np.array([1.0, 0.5]))
    terms = iam.terms(atoms, "xray")
    _, amp, w = terms.components(torch.tensor(atoms.xyz), torch.tensor(atoms.b_iso),
                                 torch.tensor(atoms.occ), blur=10.0)
    assert amp.shape == w.shape == (2, 5)
    np.testing.assert_allclose(amp.sum(1).numpy(), [6.0, 4.0], atol=0.01)
    np.testing.assert_allclose(w[:, 4].numpy(), [40.0, 40.0])
    gs = terms.gaussian_set(atoms.xyz, atoms.b_iso, atoms.occ, blur=10.0)
    assert len(gs) == 10 and gs.atom.tolist() == [0] * 5 + [1] * 5
    np.testing.assert_allclose(gs.amplitudes, amp.numpy().ravel())
    np.testing.assert_allclose(gs.widths, w.numpy().ravel())


def test_registry():
    assert "iam" in available() and get_density_model("IAM") is iam
    with pytest.raises(InputError, match="iam"):
        get_density_model("ml-unknown")


def test_cutoff_radius_solves_density_equation():
    a, b = coefficients(["C", "O", "S", "H"], table="electron")
    for bb in (5.0, 40.0, 150.0):
        w = b + bb
        r = cutoff_radius(a, w, 1e-5)
        rho = (a * (4 * np.pi / w) ** 1.5 * np.exp(-4 * np.pi**2 * r[:, None] ** 2 / w)).sum(1)
        np.testing.assert_allclose(rho, 1e-5, rtol=1e-8)
    r20 = cutoff_radius(a, b + 20, 1e-5)
    assert np.all(cutoff_radius(a, b + 60, 1e-5) > r20)          # wider atoms reach further
    assert np.all(cutoff_radius(a, b + 20, 1e-3) < r20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cutoff_radius([[1e-9]], [[50.0]], 1e-5)[0] == 0.0    # never above the level
