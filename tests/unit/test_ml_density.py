"""The learned deformation density (densrefine.density.ml) and formal charges."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from densrefine.build import ideal_peptide
from densrefine.density import charges, ml, ml_basis
from densrefine.errors import InputError
from densrefine.scattering import tables


@pytest.mark.parametrize("el,z", [("C", 6), ("N", 7), ("O", 8), ("S", 16)])
def test_mott_bethe_constant_links_our_xray_and_electron_tables(el, z):
    """f_e(q) = C (Z − f_x(q))/q² with q = 1/d: the constant and convention of `postprocess`."""
    ax, bx = tables.coefficients([el], None, "xray")
    ae, be = tables.coefficients([el], None, "electron")
    for q in (0.3, 0.6, 1.0, 1.5):
        fx = (ax[0] * np.exp(-bx[0] * q * q / 4)).sum()
        fe = (ae[0] * np.exp(-be[0] * q * q / 4)).sum()
        assert ml.MOTT_BETHE_C * (z - fx) / q**2 == pytest.approx(fe, rel=5e-3)


def _carboxylate():
    el = np.array(["C", "C", "O", "O", "H", "H", "H"])
    xyz = np.array([[0, 0, 0], [1.52, 0, 0], [2.14, 1.08, 0], [2.14, -1.08, 0],
                    [-0.38, 1.02, 0], [-0.38, -0.51, 0.88], [-0.38, -0.51, -0.88]], float)
    return el, xyz


def test_charge_feature_does_not_depend_on_which_oxygen_carries_it():
    el, xyz = _carboxylate()
    bonds = ml.bonds_from_distances(el, xyz)
    assert len(bonds) == 6
    f1 = ml.features(el, bonds, [0, 0, 0, -1, 0, 0, 0])
    f2 = ml.features(el, bonds, [0, 0, -0.5, -0.5, 0, 0, 0])
    assert np.allclose(f1, f2)
    assert f1[2, -4] == -1 and f1[1, -4] == -1          # both O and the carboxyl C see −1


def test_total_charge_is_conserved_exactly_per_component():
    torch.manual_seed(0)
    net = ml.make_net()
    el, xyz = _carboxylate()
    ion_el = np.concatenate([el, ["NA"]])
    ion_xyz = np.concatenate([xyz, [[10.0, 0, 0]]])
    q = np.array([0, 0, -0.5, -0.5, 0, 0, 0, 1.0])
    c = ml.predict(ion_el, ion_xyz, q, net=net)
    assert c[:7].sum() == pytest.approx(1.0, abs=1e-5)    # acetate: ∫Δρ = −Q = +1 e
    assert c[7].sum() == pytest.approx(-1.0, abs=1e-5)    # Na+
    assert np.all(c[4:7, 4:] == 0)                         # H has 4 functions
    imp = np.array([3, 0, 0, 0, 0, 0, 0, 0])
    c2 = ml.predict(ion_el, ion_xyz, q, net=net, implicit_h=imp)
    assert c2[:7].sum() == pytest.approx(1.0 + 3, abs=1e-5)


def test_weights_round_trip_and_bad_files(tmp_path):
    torch.manual_seed(1)
    net = ml.make_net()
    p = tmp_path / "w.npz"
    ml.save_net(net, str(p), {"note": "test"})
    net2 = ml.load_net(str(p))
    el, xyz = _carboxylate()
    q = [0, 0, 0, -1, 0, 0, 0]
    assert np.allclose(ml.predict(el, xyz, q, net=net), ml.predict(el, xyz, q, net=net2))
    with pytest.raises(InputError, match="missing"):
        ml.load_net(str(tmp_path / "absent.npz"))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(InputError, match="cannot be read"):
        ml.load_net(str(bad))


def test_potential_of_extra_electrons_is_negative_and_screened():
    """ΔV = −C Δρ/(q²+κ²): extra electrons lower the potential; its integral is −C·N·λ²."""
    from densrefine.density import GaussianExtra
    from densrefine.grid import GridFrame
    from densrefine.simulate import grid_extra

    fr = GridFrame.box((48, 48, 48), 0.5, origin=(-12.0, -12.0, -12.0), periodic=True)
    xyz = torch.zeros(1, 3, dtype=torch.float64)
    c = np.zeros((1, 8))
    c[0, 5] = 1.0                                           # one electron, σ ≈ 0.7 Å
    w, _ = ml_basis.s_widths(["C"])
    out = grid_extra(GaussianExtra(c, w, ml.POTENTIAL), xyz, torch.tensor([20.0], dtype=torch.float64),
                     torch.ones(1, dtype=torch.float64), fr, 0.0, 1e-7)
    assert float(out[24, 24, 24]) < 0
    total = float(out.sum()) * 0.5**3
    assert total == pytest.approx(-ml.MOTT_BETHE_C * ml.SCREENING_LENGTH**2, rel=1e-3)


def test_grid_part_gradient_is_exact():
    """gradcheck (float64) of the filtered Gaussian grid part w.r.t. xyz, B and occupancy."""
    from densrefine.density import GaussianExtra
    from densrefine.grid import GridFrame
    from densrefine.simulate import grid_extra

    fr = GridFrame.box((12, 12, 12), 0.7, origin=(-4.0, -4.0, -4.0))
    w, _ = ml_basis.s_widths(["C", "O"])
    c = np.random.default_rng(0).normal(size=w.shape) * 0.3
    extra = GaussianExtra(c, w, ml.POTENTIAL)
    xyz = torch.tensor([[0.1, -0.2, 0.3], [1.1, 0.6, -0.4]], dtype=torch.float64,
                       requires_grad=True)
    b = torch.tensor([15.0, 22.0], dtype=torch.float64, requires_grad=True)
    occ = torch.tensor([1.0, 0.7], dtype=torch.float64, requires_grad=True)
    probe = torch.randn(12, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def f(x, bb, oo):
        return (grid_extra(extra, x, bb, oo, fr, 5.0, 1e-9) * probe).sum()

    assert torch.autograd.gradcheck(f, (xyz, b, occ), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_ml_terms_are_typed_and_simulate_never_calls_back():
    """`ml.terms`: X-ray Δρ as extra Gaussian columns; electron as a filtered GaussianExtra."""
    from densrefine.density import DensityTerms, GaussianExtra, get_density_model

    m = ideal_peptide("AEKG")
    tx, te = ml.terms(m.atoms, "xray"), ml.terms(m.atoms, "electron")
    assert isinstance(tx, DensityTerms) and tx.extra is None and tx.a.shape[1] == 5 + 8
    assert isinstance(te.extra, GaussianExtra) and te.a.shape[1] == 5
    assert te.extra.filter is ml.POTENTIAL and te.extra.c.shape[0] == len(m.atoms)
    assert te.extra.solvent is None                         # "ml": screened, no solve
    sub = te.select([0, 2])
    np.testing.assert_array_equal(sub.extra.c, te.extra.c[[0, 2]])
    ts = get_density_model("ml-solvent").terms(m.atoms, "electron")
    assert ts.extra.filter is ml.COULOMB and ts.name == "ml-solvent"
    assert ts.extra.solvent is not None and len(ts.extra.solvent.radii) == len(m.atoms)
    np.testing.assert_array_equal(ts.select([0, 2]).extra.solvent.radii,
                                  ts.extra.solvent.radii[[0, 2]])
    np.testing.assert_array_equal(ts.extra.c, te.extra.c)  # the same Δρ


def test_unscreened_coulomb_drops_only_the_mean():
    """κ = 0: −C/s² for s > 0 and 0 for the s = 0 term (no division by zero)."""
    k = ml.COULOMB.kernel(torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64))
    assert torch.isfinite(k).all() and float(k[0]) == 0.0
    assert float(k[1]) == pytest.approx(-ml.MOTT_BETHE_C / 0.25)


def test_reaction_field_screens_an_ion_and_leaves_a_neutral_dipole_small():
    """Poisson reaction field of Δρ: a −1 charge gets a positive field inside its cavity
    (Born sign) that cancels most of its potential far away; the solvated potential
    decays much faster than the bare one."""
    from densrefine.density import GaussianExtra
    from densrefine.grid import GridFrame
    from densrefine.simulate import grid_extra

    fr = GridFrame.box((40, 40, 40), 0.6, origin=(-12.0, -12.0, -12.0), periodic=True)
    m = ideal_peptide("G")
    atoms = m.atoms.select(np.arange(1))
    atoms = atoms.replace(xyz=np.zeros((1, 3)))
    w, _ = ml_basis.s_widths(["O"])
    c = np.zeros((1, 8))
    c[0, 5] = 1.0                                           # one extra electron
    rf = ml.solvent_of(atoms)
    bare = GaussianExtra(c, w, ml.COULOMB)
    solv = GaussianExtra(c, w, ml.COULOMB, rf)
    args = (torch.zeros(1, 3, dtype=torch.float64), torch.tensor([10.0], dtype=torch.float64),
            torch.ones(1, dtype=torch.float64), fr, 16.0, 1e-7)
    vb, vs = grid_extra(bare, *args), grid_extra(solv, *args)
    centre, far = (20, 20, 20), (20, 20, 33)                # 7.8 Å away
    assert float(vs[centre] - vb[centre]) > 0               # reaction field of an anion
    drop_bare = float(vb[far] - vb[centre])
    drop_solv = float(vs[far] - vs[centre])
    assert 0 < drop_solv < 0.8 * drop_bare


def test_formal_charges_and_implicit_hydrogens_of_a_peptide():
    m = ideal_peptide("AEKG")
    q, unknown = charges.formal_charges(m.atoms)
    assert unknown == []
    names = np.char.strip(m.atoms.atom_name.astype(str))
    by_res = {r: q[m.atoms.res_name == r].sum() for r in ("GLU", "LYS")}
    assert by_res == pytest.approx({"GLU": -1, "LYS": 1})
    n_term = (m.atoms.res_name == "ALA") & (names == "N")
    assert q[n_term][0] == 1.0
    assert q.sum() == pytest.approx(1 - ("OXT" in set(names)))
    h = ml.implicit_hydrogens(m.atoms)
    ala = m.atoms.res_name == "ALA"
    assert h[ala & (names == "CB")][0] == 3 and h[ala & (names == "CA")][0] == 1
    assert h[(m.atoms.res_name == "LYS") & (names == "NZ")][0] == 3


def test_shipped_weights_load_and_conserve_charge():
    """The packaged weights exist, load without pickle and give Σc = −Q on acetate."""
    import os

    assert os.path.exists(ml.WEIGHTS)
    net = ml.load_net()
    el, xyz = _carboxylate()
    c = ml.predict(el, xyz, [0, 0, 0, -1, 0, 0, 0], net=net)
    assert c.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.abs(c).max() < 5                                  # electrons, sane scale



def test_ligand_charges_come_from_the_restraint_dictionary():
    """HEM's dictionary formal charges (Fe +2, propionate O −1, pyrrole N ∓1) reach the
    network's input; a residue no dictionary has is reported as undecided; a charge in the
    file wins over the dictionary."""
    m = ideal_peptide("GGG")
    sel = np.arange(7)
    atoms = m.atoms.select(sel)
    names = np.array(["FE", "O2A", "O2D", "NA", "NB", "CHA", "C1A"])
    hem = atoms.replace(res_name=np.full(7, "HEM"), atom_name=names,
                        res_index=np.zeros(7, np.int32), res_seq=np.ones(7, np.int32))
    q, unknown = charges.formal_charges(hem)
    assert unknown == []
    np.testing.assert_allclose(q, [2, -1, -1, -1, 1, 0, 0])
    full = charges.dictionary_charges(["HEM"])["HEM"]
    assert sum(full.values()) == pytest.approx(0.0)             # the dictionary's net charge
    given = hem.replace(charge=np.array([3, 0, 0, 0, 0, 0, 0], np.int8))
    assert charges.formal_charges(given)[0][0] == 3.0              # the file's charge wins
    odd = hem.replace(res_name=np.full(7, "QQ9"))
    q2, unknown2 = charges.formal_charges(odd)
    assert unknown2 and not q2.any()


def test_predict_terms_reused_for_the_same_bond_graph():
    """`ml.predict_terms` runs the network once per atoms + bond graph (issue 21, fit cost:
    a fit asks for the terms three times): moved atoms with the same bonds get the same
    coefficients, the warnings are said again, and a changed charge is predicted afresh."""
    import warnings

    from densrefine.build import ideal_peptide

    at = ideal_peptide("AKEG").atoms
    with warnings.catch_warnings(record=True) as first:
        warnings.simplefilter("always")
        c1, w1, imp1, q1 = ml.predict_terms(at)
    moved = at.replace(xyz=np.asarray(at.xyz) + 0.05)
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        c2, w2, imp2, q2 = ml.predict_terms(moved)
    assert np.array_equal(c1, c2) and np.array_equal(q1, q2) and np.array_equal(w1, w2)
    assert (imp1 is None and imp2 is None) or np.array_equal(imp1, imp2)
    assert [str(w.message) for w in first] == [str(w.message) for w in again]
    c2[:] = 0.0                                          # a copy: the cache is not touched
    assert np.array_equal(ml.predict_terms(at)[0], c1)
    charge = np.asarray(at.charge).copy()
    charge[np.flatnonzero(np.asarray(at.atom_name) == "CB")[0]] = -1
    c3 = ml.predict_terms(at.replace(charge=charge))[0]
    assert not np.allclose(c3, c1)
    ml._PREDICTED.clear()
    assert np.allclose(ml.predict_terms(at)[0], c1)      # the same answer made afresh
