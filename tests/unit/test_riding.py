"""Riding hydrogens for the nonbonded term (`densrefine.restraints.riding`) and the torsion
reference restraints of `fit` (`reference_kind: torsion`)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from densrefine.build import ideal_peptide
from densrefine.restraints import GeometryTerm, build_restraints
from densrefine.restraints.riding import TOLERANCE, riding_hydrogens
from densrefine.validation.clashes import add_hydrogens


@pytest.fixture(scope="module")
def peptide():
    m = ideal_peptide("AKFSE")
    rs = build_restraints(m)
    return m, rs, riding_hydrogens(m, rs)


def test_riding_positions_are_gemmis(peptide):
    m, _, rh = peptide
    h = rh.positions(np.asarray(m.atoms.xyz, np.float64))
    ref = add_hydrogens(m)                   # the clashscore's placement
    assert rh.n_h == ref.n_added
    d = np.linalg.norm(h[:, None] - ref.xyz[ref.is_h][None], axis=2).min(1)
    assert d.max() < 1e-6


def test_riding_follows_a_rigid_motion(peptide):
    m, _, rh = peptide
    x = np.asarray(m.atoms.xyz, np.float64)
    c, s = np.cos(0.7), np.sin(0.7)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    moved = x @ rot.T + [3.0, -1.0, 2.0]
    assert np.allclose(rh.positions(moved), rh.positions(x) @ rot.T + [3.0, -1.0, 2.0],
                       atol=1e-9)


def test_model_with_hydrogens_gets_none(peptide):
    m, _, _ = peptide
    from densrefine.io.model import atoms_from_gemmi
    from densrefine.types import Model

    hm = Model(atoms=atoms_from_gemmi(_with_h(m)[0]), cell=m.cell, space_group=m.space_group)
    assert hm.atoms.is_hydrogen.any()
    assert riding_hydrogens(hm, build_restraints(hm)) is None


def _with_h(m):
    import gemmi

    from densrefine.io.model import structure_from_model
    from densrefine.restraints.monlib import read_library

    st = structure_from_model(m)
    ml, _ = read_library(["ALA", "LYS", "PHE", "SER", "GLU"])
    gemmi.prepare_topology(st, ml, h_change=gemmi.HydrogenChange.ReAddButWater,
                           warnings=None, ignore_unknown_links=True)
    return st


def _clash(m, rh):
    """Coordinates with one residue moved so that a heavy atom of it sits 1.5 Å from a
    hydrogen of a residue two or more away (a hydrogen-only overlap)."""
    from densrefine.restraints.riding import ContactList

    x = np.asarray(m.atoms.xyz, np.float64)
    xa = np.r_[x, rh.positions(x)]
    wide = ContactList(rh.nb, rh.n_heavy, skin=12.0)
    wide.build(xa)
    res = np.asarray(m.atoms.res_index)
    for a, b in wide.pairs:
        h, j = (a, b) if a >= rh.n_heavy else (b, a)
        if j < rh.n_heavy and h >= rh.n_heavy \
                and abs(res[j] - res[rh.parent[h - rh.n_heavy]]) >= 2:
            u = (xa[j] - xa[h]) / np.linalg.norm(xa[j] - xa[h])
            out = x.copy()
            out[res == res[j]] += xa[h] + 1.5 * u - xa[j]
            return out
    raise AssertionError("no candidate pair")


def test_contact_term_gradient_and_overlap(peptide):
    """A hydrogen-only overlap: the riding term sees it, the united-atom term alone does
    not; the gradient matches finite differences."""
    m, rs, rh = peptide
    x = torch.tensor(_clash(m, rh), dtype=torch.float64)
    with_h = GeometryTerm(rs, "cpu", torch.float64, riding=rh)
    plain = GeometryTerm(rs, "cpu", torch.float64)
    e_h, e_0 = with_h.nonbonded_energy(x), plain.nonbonded_energy(x)
    assert float(e_h) > float(e_0) + 1.0
    xa = with_h.with_hydrogens(x)
    d = torch.linalg.norm(xa[with_h.h_idx[:, 0]] - xa[with_h.h_idx[:, 1]], dim=1)
    assert bool((d < with_h.h_rmin - 0.2).any())
    assert np.allclose(with_h.h_rmin.numpy() + TOLERANCE,
                       rh.nb.radius[with_h.h_idx[:, 0]] + rh.nb.radius[with_h.h_idx[:, 1]])
    xg = x.clone().requires_grad_(True)
    with_h.nonbonded_energy(xg).backward()
    k = int(torch.argmax(xg.grad.norm(dim=1)))
    num = []
    for c in range(3):
        xp, xm = x.clone(), x.clone()
        xp[k, c] += 1e-6
        xm[k, c] -= 1e-6
        num.append((float(with_h.nonbonded_energy(xp)) - float(with_h.nonbonded_energy(xm)))
                   / 2e-6)
    assert np.allclose(xg.grad[k].numpy(), num, rtol=1e-5, atol=1e-6)


def test_contacts_leave_out_what_probe_leaves_out(peptide):
    m, rs, rh = peptide
    term = GeometryTerm(rs, "cpu", torch.float64, riding=rh)
    term.nonbonded_energy(torch.tensor(np.asarray(m.atoms.xyz), dtype=torch.float64))
    p = term.h_idx.numpy()
    nb = rh.nb
    assert len(p) and (p.max(1) >= rh.n_heavy).all()         # every pair has an H
    assert not np.asarray(nb.excluded[p[:, 0], p[:, 1]]).any()    # ≤ 4 bonds apart: out
    hb = (nb.donor_h[p[:, 0]] & nb.acceptor[p[:, 1]]) | (nb.donor_h[p[:, 1]] & nb.acceptor[p[:, 0]])
    assert not hb.any()


def test_fixed_atoms_drop_their_contacts(peptide):
    m, rs, rh = peptide
    fixed = np.ones(len(m.atoms), bool)
    term = GeometryTerm(rs, "cpu", torch.float64, riding=rh, fixed=fixed)
    term.nonbonded_energy(torch.tensor(np.asarray(m.atoms.xyz), dtype=torch.float64))
    assert len(term.h_idx) == 0


def test_reference_torsion_energy_top_out():
    from densrefine.refine.engine import reference_torsion_energy

    m = ideal_peptide("AAAA")
    x = torch.tensor(np.asarray(m.atoms.xyz), dtype=torch.float64)
    from densrefine.restraints.energy import dihedrals_deg

    idx = torch.as_tensor(np.array(build_restraints(m).torsions[:3], np.int64))
    start = dihedrals_deg(x, idx)
    assert float(reference_torsion_energy(x, idx, start, 3.0, 15.0)) == pytest.approx(0.0)
    for delta, expect in ((1.0, (1 / 3) ** 2), (90.0, 25.0)):       # harmonic, then flat
        e = reference_torsion_energy(x, idx, start - delta, 3.0, 15.0) / 3
        assert float(e) == pytest.approx(expect, rel=0.02 if delta < 5 else 1e-3)


@pytest.mark.parametrize("kind, sigma, data, expect", [
    ("auto", "auto", "map", "torsion"), ("auto", "auto", "half maps", "torsion"),
    ("auto", "auto", "xray", "position"), ("auto", 0.2, "map", "position"),
    ("position", "auto", "map", "position"), ("torsion", "auto", "xray", "torsion")])
def test_auto_choices_follow_the_data(kind, sigma, data, expect):
    """The "auto" defaults: torsion reference restraints, riding hydrogens and the stronger
    final nonbonded term against maps; none of them against X-ray data."""
    from types import SimpleNamespace

    from densrefine.refine import engine
    from densrefine.refine.config import FitConfig

    cfg = FitConfig(reference_kind=kind, reference_sigma=sigma)
    spec = SimpleNamespace(kind=data)
    assert engine._reference_kind(cfg, spec) == expect
    em = data != "xray"
    assert engine._riding(cfg, spec) is em
    assert engine._nonbonded_final(cfg, spec) == (engine.NONBONDED_FINAL_MAPS if em else None)
