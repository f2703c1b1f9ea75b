"""Ramachandran restraints (`densrefine.restraints.rama`) on synthetic peptides."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from densrefine.build import HELIX, STRAND, ideal_peptide
from densrefine.errors import InputError
from densrefine.restraints import rama

PHI_PSI = [(-60.0, -45.0), (-120.0, 130.0), (-75.0, 150.0), (60.0, 40.0), (-140.0, 160.0),
           (-65.0, -40.0), (80.0, -170.0), (-90.0, 0.0)]


@pytest.fixture(scope="module")
def params():
    return rama.load_params()


@pytest.fixture(scope="module")
def peptide():
    return ideal_peptide("AKGLSVEF", phi_psi=PHI_PSI)


def _renamed(model, res_seq, name):
    at = model.atoms
    rn = np.array(at.res_name, dtype="<U5")
    rn[np.asarray(at.res_seq) == res_seq] = name
    return model.with_atoms(at.replace(res_name=rn))


def test_phi_psi_match_gemmi(peptide, tmp_path):
    import gemmi

    import densrefine as dr

    rs = rama.find_residues(peptide)
    assert len(rs) == len(PHI_PSI) - 2                   # ends have no φ or no ψ
    path = tmp_path / "p.pdb"
    dr.write_model(peptide, path)
    ch = gemmi.read_structure(str(path))[0][0]
    ref = np.degrees([gemmi.calculate_phi_psi(ch[i - 1], ch[i], ch[i + 1])
                      for i in range(1, len(ch) - 1)])
    got = rs.phi_psi(peptide.atoms.xyz)
    d = (got - ref + 180.0) % 360.0 - 180.0
    assert np.abs(d).max() < 0.2, (got, ref)          # PDB coordinates: 0.001 Å
    # and they are the angles the peptide was built with
    d = (got - np.array(PHI_PSI[1:-1]) + 180.0) % 360.0 - 180.0
    assert np.abs(d).max() < 1e-3


def test_classes_and_chain_break(peptide):
    m = _renamed(peptide, 5, "PRO")                      # residue 4 becomes pre-Pro
    rs = rama.find_residues(m)
    cls = {k[1]: rama.CLASSES[c] for k, c in zip(rs.keys, rs.cls)}
    assert cls == {2: "general", 3: "gly", 4: "prepro", 5: "pro", 6: "general", 7: "general"}
    assert rs.n_cispro == 0
    # a broken peptide bond (residue 5 moved away) removes residues 4, 5, 6
    at = peptide.atoms
    xyz = np.array(at.xyz)
    xyz[np.asarray(at.res_seq) >= 5] += 10.0
    rs2 = rama.find_residues(peptide.with_atoms(at.replace(xyz=xyz)))
    assert sorted(k[1] for k in rs2.keys) == [2, 3, 6, 7]


def test_moving_mask_drops_fixed_residues(peptide):
    at = peptide.atoms
    moving = np.asarray(at.res_seq) >= 6                 # residues 6–8 move
    rs = rama.find_residues(peptide, moving)
    # residue 5 has N(6) in its ψ, so it stays; 2–4 are entirely fixed
    assert sorted(k[1] for k in rs.keys) == [5, 6, 7]


def test_energy_minima(params):
    g = np.arange(-179.0, 180.0, 2.0)
    phi, psi = np.meshgrid(g, g, indexing="ij")
    pp = np.stack([phi.ravel(), psi.ravel()], 1)
    e = rama.residue_energy(pp, np.zeros(len(pp), np.int64), params).reshape(phi.shape)
    assert e.min() >= -1e-6                              # 0 at the mode by construction
    i, j = np.unravel_index(np.argmin(e), e.shape)
    assert -90 <= g[i] <= -40 and -65 <= g[j] <= -10     # general: global minimum at αR
    beta = (phi < -90) & (psi > 100)
    left = (phi > 0) & (psi > -90) & (psi < 90)
    assert e[beta].min() < 8.0                           # β region populated (helix: 0)
    assert e[left].min() > e[beta].min()                 # αL rarer than β for non-Gly
    assert e.max() <= 2 * np.log(1 + np.exp(params["general"]["log_p_max"]
                                           - params["general"]["log_p_allowed"])) + 1e-6
    lab = rama.classify([HELIX, STRAND, (60.0, -120.0)], [0, 0, 0], params)
    assert lab.tolist() == ["favored", "favored", "outlier"]
    # Gly: αL and the (φ > 0, ψ ≈ 180) region are favoured
    assert rama.classify([(80.0, 10.0), (80.0, -170.0)], [1, 1], params).tolist() == \
        ["favored", "favored"]


def test_torch_matches_numpy_and_dtypes(peptide, params):
    rs = rama.find_residues(peptide)
    ref = rama.residue_energy(rs.phi_psi(peptide.atoms.xyz), rs.cls, params)
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-3)):
        t = rama.RamaTerm(rs, "cpu", dtype, weight=2.0, params=params)
        x = torch.tensor(peptide.atoms.xyz, dtype=dtype)
        e = t.residue_energies(x)
        assert e.dtype == dtype
        assert np.allclose(e.double().numpy(), ref, atol=tol * max(1, abs(ref).max()))
        assert abs(float(t.energy(x)) - 2.0 * ref.sum()) < tol * 10 * max(1, ref.sum())


def test_gradcheck(peptide, params):
    rs = rama.find_residues(peptide)
    t = rama.RamaTerm(rs, "cpu", torch.float64, params=params)
    rng = np.random.default_rng(0)
    x = torch.tensor(peptide.atoms.xyz + rng.normal(scale=0.1, size=peptide.atoms.xyz.shape),
                     dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(t.energy, (x,), eps=1e-6, atol=1e-5)


def test_fixed_atoms_get_no_gradient(peptide, params):
    at = peptide.atoms
    fixed = np.asarray(at.res_seq) <= 4
    rs = rama.find_residues(peptide, ~fixed)
    t = rama.RamaTerm(rs, "cpu", torch.float64, fixed=fixed, params=params)
    x = torch.tensor(at.xyz, dtype=torch.float64, requires_grad=True)
    t.energy(x).backward()
    g = x.grad.numpy()
    assert np.all(g[fixed] == 0) and np.abs(g[~fixed]).sum() > 0


def test_minimisation_moves_outlier_towards_allowed(params):
    # a residue at a disallowed (φ, ψ): minimising the rama energy alone lowers it
    pp = [HELIX, HELIX, (60.0, -120.0), HELIX, HELIX]
    m = ideal_peptide("AAAAA", phi_psi=pp)
    rs = rama.find_residues(m)
    t = rama.RamaTerm(rs, "cpu", torch.float64, params=params)
    x = torch.tensor(m.atoms.xyz, requires_grad=True)
    e0 = float(t.energy(x.detach()))
    opt = torch.optim.Adam([x], lr=0.02)
    for _ in range(200):
        opt.zero_grad()
        t.energy(x).backward()
        opt.step()
    assert float(t.energy(x.detach())) < e0 - 1.0


def test_with_rama_restraints_in_geometry(peptide):
    from densrefine.refine.geometry import build_geometry

    moving = np.asarray(peptide.atoms.res_seq) >= 4
    g_off = build_geometry(peptide, fixed=~moving, rama="off", resolution=4.5)
    g = build_geometry(peptide, fixed=~moving, rama="auto", resolution=4.5,
                       rama_weight=3.0, dtype=torch.float64)
    x = torch.tensor(peptide.atoms.xyz, dtype=torch.float64)
    total, parts = g.term.energy(x)
    assert "rama" in parts and "rama" not in g_off.term.energy(x.float())[1]
    base = sum(g.term.base.weights[k] * v for k, v in parts.items() if k != "rama")
    assert abs(float(total - base - parts["rama"])) < 1e-6 * max(1.0, float(total))
    s = g.stats(peptide.atoms.xyz)["rama"]
    # residues 3–7 (3: N(4) of its ψ moves)
    assert s["n"] == 5 and s["favored"] + s["allowed"] + s["outlier"] == 5
    assert s["energy"] >= 0
    g_hi = build_geometry(peptide, rama="auto", resolution=3.0)
    assert "rama" not in g_hi.stats(peptide.atoms.xyz)


def test_config_and_cli():
    from densrefine.cli import fit as cli_fit
    from densrefine.refine.config import load_config

    cfg = load_config()
    assert cfg.rama_restraints == "auto" and cfg.rama_weight == rama.WEIGHT
    assert load_config({"rama_restraints": False}).rama_restraints == "off"
    assert load_config({"rama_restraints": "on", "rama_weight": 2}).rama_weight == 2.0
    for bad in ({"rama_restraints": "maybe"}, {"rama_weight": -1.0}, {"rama_weight": "x"}):
        with pytest.raises(InputError):
            load_config(bad)
    import argparse

    p = argparse.ArgumentParser()
    cli_fit.add_args(p)
    args = p.parse_args(["m.pdb", "x.mrc", "-o", "out", "--rama-restraints", "on"])
    assert cli_fit._overrides(args)["rama_restraints"] == "on"
    args = p.parse_args(["m.pdb", "x.mrc", "-o", "out"])
    assert "rama_restraints" not in cli_fit._overrides(args)


def test_wanted():
    assert rama.wanted("auto", 4.5) and not rama.wanted("auto", 3.0)
    assert not rama.wanted("auto", None) and rama.wanted("on", 2.0) and not rama.wanted("off", 6)
