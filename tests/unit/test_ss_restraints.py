"""Secondary-structure H-bond restraints (`densrefine.restraints.ss`) on synthetic peptides."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from densrefine.build import STRAND, ideal_peptide
from densrefine.errors import InputError
from densrefine.restraints import ss

N_RES = 14


@pytest.fixture(scope="module")
def helix():
    return ideal_peptide("AKELAAKELAAKEL"[:N_RES])


def test_ideal_helix_detected(helix):
    hb = ss.detect_hbonds(helix)
    assert hb.source == "detected" and hb.n_helices == 1 and hb.n_strands == 0
    assert len(hb) == N_RES - 4 and set(hb.kind.tolist()) == {"H"}
    at = helix.atoms
    o_res, n_res = at.res_seq[hb.pairs[:, 0]], at.res_seq[hb.pairs[:, 1]]
    assert (at.atom_name[hb.pairs[:, 0]] == "O").all()
    assert (at.atom_name[hb.pairs[:, 1]] == "N").all()
    assert (n_res - o_res == 4).all()  # O(i)…N(i+4)
    d = ss.hbond_distances(at.xyz, hb.pairs)
    assert np.all((d > 2.8) & (d < 3.1)), d
    s = hb.summary(at.xyz)
    assert s["hbonds"] == N_RES - 4 and s["hbond_fraction_lt_3.5"] == 1.0


def test_extended_chain_has_no_helix():
    hb = ss.detect_hbonds(ideal_peptide("A" * 10, phi_psi=STRAND))
    assert len(hb) == 0 and hb.n_helices == 0


def test_dssp_energy_of_ideal_geometry():
    # linear C=O…H–N at 2.9 Å O…N: strongly attractive (about −3 kcal/mol)
    o, c = np.array([0.0, 0, 0]), np.array([-1.23, 0, 0])
    n, h = np.array([2.9, 0, 0]), np.array([1.9, 0, 0])
    e = float(ss.hbond_energy(o, c, n, h))
    assert -4.0 < e < ss.HB_ENERGY


def test_header_annotation_preferred(helix, tmp_path):
    import densrefine as dr

    path = tmp_path / "h.pdb"
    dr.write_model(helix, path)
    text = path.read_text()
    # a 3₁₀ annotation of residues 1-8 (HELIX class 5): i→i+3 bonds, different from detection
    rec = f"HELIX    1   1 ALA A    1  ALA A    8  5{'':>30}8\n"
    path.write_text(rec + text)
    m = dr.read_model(path)
    assert len(m.handle.helices) == 1
    hb = ss.find_hbonds(m)
    at = m.atoms
    assert hb.source == "header" and hb.n_helices == 1
    # i→i+3 for i = 1..5, but O…N(i+3) of an α-helix is ~3.4 Å: some may be cut at 3.5 Å
    steps = at.res_seq[hb.pairs[:, 1]] - at.res_seq[hb.pairs[:, 0]]
    assert len(hb) >= 1 and (steps == 3).all()
    assert ss.find_hbonds(helix).source == "detected"  # no handle: detection


def test_moving_mask_drops_fixed_pairs(helix):
    moving = np.zeros(len(helix), bool)
    assert len(ss.detect_hbonds(helix, moving)) == 0
    moving[helix.atoms.res_seq == 5] = True
    hb = ss.detect_hbonds(helix, moving)
    assert 1 <= len(hb) <= 2  # O(1)…N(5) and O(5)…N(9)


def test_topout_shape():
    sig, lim = 0.05, 0.5
    d = torch.tensor([2.9, 2.92, 4.9, 12.9], dtype=torch.float64)
    e = ss.topout(d, 2.9, sig, lim)
    assert float(e[0]) == 0.0
    assert float(e[1]) == pytest.approx((0.02 / sig) ** 2, rel=1e-2)  # harmonic near ideal
    cap = (lim / sig) ** 2
    assert cap * 0.99 < float(e[2]) <= cap and float(e[3]) == pytest.approx(cap)
    x = d.clone().requires_grad_(True)
    g = torch.autograd.grad(ss.topout(x, 2.9, sig, lim).sum(), x)[0]
    harmonic = 2 * 2.0 / sig ** 2  # slope of ((d − ideal)/σ)² at 2 Å off
    assert abs(float(g[2])) < 1e-3 * harmonic and abs(float(g[3])) < 1e-12


def test_hbond_term_gradient(helix):
    hb = ss.detect_hbonds(helix)
    fixed = np.zeros(len(helix), bool)
    fixed[:8] = True
    rng = np.random.default_rng(0)
    x = torch.tensor(helix.atoms.xyz + rng.normal(0, 0.2, (len(helix), 3)), dtype=torch.float64,
                     requires_grad=True)
    assert torch.autograd.gradcheck(ss.HBondTerm(hb, "cpu", torch.float64).energy, (x,))
    term = ss.HBondTerm(hb, "cpu", torch.float64, fixed=fixed)
    e = term.energy(x)
    g = torch.autograd.grad(e, x)[0]
    assert torch.isfinite(e) and float(e.detach()) > 0 and torch.isfinite(g).all()
    assert float(g[:8].abs().max()) == 0.0  # fixed atoms get no gradient
    t32 = ss.HBondTerm(hb, "cpu", torch.float32)
    assert t32.energy(x.detach().float()).dtype == torch.float32


def test_wanted():
    assert ss.wanted("auto", 3.5) and ss.wanted("auto", 6.0)
    assert not ss.wanted("auto", 3.2) and not ss.wanted("auto", None)
    assert ss.wanted("on", 2.0) and not ss.wanted("off", 6.0)


def test_build_geometry_adds_hbond_term(helix):
    from densrefine.refine.geometry import build_geometry

    xyz = torch.tensor(helix.atoms.xyz, dtype=torch.float64)
    plain = build_geometry(helix, dtype=torch.float64, ss="auto", resolution=3.0)
    assert "hbond" not in plain.term.energy(xyz)[1]
    geom = build_geometry(helix, dtype=torch.float64, ss="auto", resolution=4.5)
    e, parts = geom.term.energy(xyz)
    assert "hbond" in parts and float(e) == pytest.approx(float(plain.term.energy(xyz)[0])
                                                         + float(parts["hbond"]))
    s = geom.stats(helix.atoms.xyz)
    assert s["ss_hbonds"]["hbonds"] == N_RES - 4 and "bond_rmsd" in s
    assert len(geom.bond_pairs) == len(plain.bond_pairs)


def test_config_and_cli_flag():
    from densrefine.cli import fit as cli_fit
    from densrefine.refine import load_config

    assert load_config().ss_restraints == "auto"
    assert load_config({"ss_restraints": "on", "ss_sigma": 0.1}).ss_sigma == 0.1
    with pytest.raises(InputError):
        load_config({"ss_restraints": "maybe"})
    assert load_config({"ss_restraints": False}).ss_restraints == "off"  # YAML `off`
    with pytest.raises(InputError):
        load_config({"ss_sigma": 0})
    import argparse

    p = argparse.ArgumentParser()
    cli_fit.add_args(p)
    args = p.parse_args(["m.pdb", "x.mrc", "-o", "out", "--ss-restraints", "off"])
    assert cli_fit._overrides(args)["ss_restraints"] == "off"
    args = p.parse_args(["m.pdb", "x.mrc", "-o", "out"])
    assert "ss_restraints" not in cli_fit._overrides(args)
