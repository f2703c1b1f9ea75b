"""Each restraint kind's energy pinned to an absolute value computed by hand.

Relative tests (zero at the ideal, grows when perturbed, gradcheck) pass for a wrong
functional form such as Δ²/σ instead of (Δ/σ)², or a repulsion with its sign flipped.
Here every term is evaluated on a few atoms placed by hand, with restraints written by
hand, and compared with the number worked out in the comment (Refmac's least-squares
form Σ((x − ideal)/σ)², Murshudov et al. 2011, Acta Cryst. D67, 355).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from densrefine.restraints import GeometryTerm, geometry_stats
from densrefine.restraints.restraint_set import RestraintSet

F64 = torch.float64


def make_rs(n, **kw) -> RestraintSet:
    """A `RestraintSet` of ``n`` atoms with no restraints except those given."""
    z = {"bonds": np.zeros((0, 2)), "bond_ideal": [], "bond_sigma": [],
         "angles": np.zeros((0, 3)), "angle_ideal": [], "angle_sigma": [],
         "torsions": np.zeros((0, 4)), "torsion_ideal": [], "torsion_sigma": [],
         "torsion_period": [], "chirals": np.zeros((0, 4)), "chiral_ideal": [],
         "chiral_sigma": [], "chiral_both": np.zeros(0, bool), "plane_atoms": [],
         "plane_id": [], "plane_sigma": [], "vdw_radius": np.full(n, 1.6),
         "clash_radius": np.full(n, 1.6), "ion_radius": np.full(n, np.nan),
         "hb_type": np.full(n, "N"), "tors_inc": np.full(n, -0.15),
         "exclusions": np.zeros((0, 2)), "pairs14": np.zeros((0, 2)),
         "metal": np.zeros(n, bool), "altloc": np.full(n, ""), "hydrogen": np.zeros(n, bool),
         "labels": np.array([f"A/ALA 1/X{i}" for i in range(n)])}
    z.update(kw)
    for k in ("bond_ideal", "bond_sigma", "angle_ideal", "angle_sigma", "torsion_ideal",
              "torsion_sigma", "chiral_ideal", "chiral_sigma", "plane_sigma"):
        z[k] = np.asarray(z[k], float)
    return RestraintSet(n_atoms=n, **z)


def energy(rs, xyz, nonbonded=False):
    term = GeometryTerm(rs, "cpu", F64, nonbonded=nonbonded)
    total, parts = term.energy(torch.tensor(np.asarray(xyz, float), dtype=F64))
    return float(total), {k: float(v) for k, v in parts.items()}


def test_bond_energy_absolute():
    # d = 1.6 Å, ideal 1.5, σ 0.02: ((1.6 − 1.5)/0.02)² = 5² = 25 (Δ²/σ would give 0.5)
    rs = make_rs(2, bonds=[[0, 1]], bond_ideal=[1.5], bond_sigma=[0.02])
    total, parts = energy(rs, [[0, 0, 0], [1.6, 0, 0]])
    assert parts["bond"] == pytest.approx(25.0, rel=1e-9)
    assert total == pytest.approx(25.0, rel=1e-9)
    s = geometry_stats(np.array([[0, 0, 0], [1.6, 0, 0]]), rs)
    assert s["bond_rmsd"] == pytest.approx(0.1, rel=1e-9)


def test_two_bonds_sum():
    # 1.45 vs 1.5 σ 0.01 → 25; 1.33 vs 1.33 → 0; sum 25; RMSD sqrt(0.05²/2) = 0.035355
    rs = make_rs(3, bonds=[[0, 1], [1, 2]], bond_ideal=[1.5, 1.33], bond_sigma=[0.01, 0.02])
    xyz = [[0, 0, 0], [1.45, 0, 0], [1.45, 1.33, 0]]
    assert energy(rs, xyz)[1]["bond"] == pytest.approx(25.0, rel=1e-9)
    assert geometry_stats(np.array(xyz, float), rs)["bond_rmsd"] == pytest.approx(
        0.05 / math.sqrt(2), rel=1e-9)


def test_angle_energy_absolute():
    # angle 100°, ideal 109.5°, σ 2°: (9.5/2)² = 22.5625 (degrees, not radians)
    t = math.radians(100.0)
    xyz = [[1.5, 0, 0], [0, 0, 0], [1.5 * math.cos(t), 1.5 * math.sin(t), 0]]
    rs = make_rs(3, angles=[[0, 1, 2]], angle_ideal=[109.5], angle_sigma=[2.0])
    assert energy(rs, xyz)[1]["angle"] == pytest.approx(22.5625, rel=1e-9)
    assert geometry_stats(np.array(xyz), rs)["angle_rmsd"] == pytest.approx(9.5, rel=1e-9)


def _dihedral_60():
    """Atoms with a dihedral of ±60° (gemmi confirms the value)."""
    import gemmi

    t = math.radians(60.0)
    xyz = np.array([[1.0, 0, 0], [0, 0, 0], [0, 0, 1.5], [math.cos(t), math.sin(t), 1.5]])
    dih = math.degrees(gemmi.calculate_dihedral(*(gemmi.Position(*p) for p in xyz)))
    assert abs(abs(dih) - 60.0) < 1e-9
    return xyz


@pytest.mark.parametrize("ideal,period,sigma,expect", [
    (180.0, 1, 15.0, (120.0 / 15.0) ** 2),   # Δ = 120° → 64
    (0.0, 2, 15.0, (60.0 / 15.0) ** 2),      # wrap(2·60)/2 = 60° → 16
    (60.0, 3, 10.0, 0.0),                    # on a staggered minimum either sign: 0
    (0.0, 3, 10.0, (60.0 / 10.0) ** 2),      # wrap(3·60)/3 = 60° → 36 (the max of period 3)
])
def test_torsion_energy_absolute(ideal, period, sigma, expect):
    rs = make_rs(4, torsions=[[0, 1, 2, 3]], torsion_ideal=[ideal], torsion_sigma=[sigma],
                 torsion_period=[period])
    assert energy(rs, _dihedral_60())[1]["torsion"] == pytest.approx(expect, abs=1e-9)


@pytest.mark.parametrize("ideal,both,expect", [
    (-2.5, False, ((1.0 + 2.5) / 0.2) ** 2),   # V = +1 Å³ against −2.5: 306.25
    (2.5, False, ((1.0 - 2.5) / 0.2) ** 2),    # 56.25
    (-1.0, True, 0.0),                         # "both": |V| = 1 matches |ideal|
])
def test_chiral_energy_absolute(ideal, both, expect):
    # centre at 0, neighbours along x, y, z: V = x·(y × z) = +1 Å³
    xyz = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    rs = make_rs(4, chirals=[[0, 1, 2, 3]], chiral_ideal=[ideal], chiral_sigma=[0.2],
                 chiral_both=np.array([both]))
    assert energy(rs, xyz)[1]["chiral"] == pytest.approx(expect, rel=1e-9, abs=1e-12)


def test_plane_energy_absolute():
    # (±1, 0, +h), (0, ±1, −h): LSQ plane z = 0, each atom h = 0.05 Å off, σ 0.02:
    # 4 · (0.05/0.02)² = 25
    h = 0.05
    xyz = [[1, 0, h], [-1, 0, h], [0, 1, -h], [0, -1, -h]]
    rs = make_rs(4, plane_atoms=[0, 1, 2, 3], plane_id=[0, 0, 0, 0], plane_sigma=[0.02] * 4)
    assert energy(rs, xyz)[1]["plane"] == pytest.approx(25.0, rel=1e-9)
    # two planes: the second flat (0), the energies add
    xyz2 = xyz + [[10, 0, 0], [12, 0, 0], [11, 1, 0], [11, -1, 0]]
    rs2 = make_rs(8, plane_atoms=list(range(8)), plane_id=[0] * 4 + [1] * 4,
                  plane_sigma=[0.02] * 8)
    assert energy(rs2, xyz2)[1]["plane"] == pytest.approx(25.0, rel=1e-9)


def test_nonbonded_energy_absolute_and_repulsive():
    # radii 1.6 + 1.6 → r_min 3.2 Å, σ 0.2: the pair at 2.8 Å costs ((3.2 − 2.8)/0.2)² = 4;
    # the pair at 3.5 Å (beyond r_min) costs nothing; 1–2 at 6.3 Å is out of range
    xyz = [[0, 0, 0], [2.8, 0, 0], [-3.5, 0, 0]]
    rs = make_rs(3)
    total, parts = energy(rs, xyz, nonbonded=True)
    assert parts["nonbonded"] == pytest.approx(4.0, rel=1e-9)
    # repulsion: pushing the close pair apart lowers the energy (gradient along −x on atom 0)
    x = torch.tensor(xyz, dtype=F64, requires_grad=True)
    GeometryTerm(rs, "cpu", F64).energy(x)[0].backward()
    assert float(x.grad[0, 0]) == pytest.approx(2 * 2.0 / 0.2, rel=1e-9)  # dE/dx0 = +20
    assert float(x.grad[1, 0]) == pytest.approx(-20.0, rel=1e-9)


def test_nonbonded_hbond_pair_minimum():
    # donor–acceptor pair: r_min = 1.6 + 1.6 − 0.3 = 2.9 Å; at 2.7 Å: (0.2/0.2)² = 1
    rs = make_rs(2, hb_type=np.array(["D", "A"]))
    assert energy(rs, [[0, 0, 0], [2.7, 0, 0]], nonbonded=True)[1]["nonbonded"] == \
        pytest.approx(1.0, rel=1e-9)


def test_hbond_restraint_energy_absolute():
    from densrefine.restraints.ss import HBondSet, HBondTerm

    # O…N 3.2 Å, ideal 2.9, σ 0.05, top-out l 0.5:
    # (l/σ)² · (1 − exp(−((3.2 − 2.9)/l)²)) = 100 · (1 − e^−0.36) = 30.2323674
    hb = HBondSet(pairs=np.array([[0, 1]]), kind=np.array(["H"]), n_helices=1, n_strands=0,
                  source="test")
    term = HBondTerm(hb, "cpu", F64)
    e = float(term.energy(torch.tensor([[0, 0, 0], [3.2, 0, 0]], dtype=F64)))
    assert e == pytest.approx(100.0 * (1.0 - math.exp(-0.36)), rel=1e-9)
    assert e == pytest.approx(30.2323674, rel=1e-8)
    # near the ideal it is the plain ((d − ideal)/σ)²: 2.91 Å → (0.01/0.05)² ≈ 0.04
    e2 = float(term.energy(torch.tensor([[0, 0, 0], [2.91, 0, 0]], dtype=F64)))
    assert e2 == pytest.approx(0.04, rel=1e-3)


def test_rama_energy_matches_numpy_and_is_zero_at_the_mode():
    from densrefine.build import ideal_peptide
    from densrefine.restraints.rama import (RamaTerm, find_residues, load_params,
                                            residue_energy)

    params = load_params()
    m = ideal_peptide("A" * 6, phi_psi=(-120.0, 130.0))   # β region, off the α mode
    rama = find_residues(m)
    t = RamaTerm(rama, "cpu", F64, weight=3.0)
    e = float(t.energy(torch.tensor(m.atoms.xyz, dtype=F64)))
    pp = rama.phi_psi(m.atoms.xyz)
    ref = 3.0 * residue_energy(pp, rama.cls, params).sum()    # independent numpy form
    assert e == pytest.approx(ref, rel=1e-9) and e > 0
    # the energy is −2 log((p + p_floor)/(p_max + p_floor)) ≥ 0, = 0 exactly at the mode
    g = params["general"]
    grid = np.radians(np.stack(np.meshgrid(np.arange(-180, 180, 1.0),
                                           np.arange(-180, 180, 1.0)), -1).reshape(-1, 2))
    from densrefine.restraints.rama import log_density_np

    lp = log_density_np(grid[:, 0], grid[:, 1], g)
    best = np.degrees(grid[np.argmax(lp)])
    e_best = residue_energy(best[None], np.array([0]), params)[0]
    assert 0.0 <= e_best < 0.01
