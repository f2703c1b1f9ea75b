"""Unit tests of densrefine.restraints on synthetic peptides (ideal geometry)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from densrefine.build import ideal_peptide
from densrefine.errors import DensrefineWarning, InputError
from densrefine.restraints import (GeometryTerm, NeighbourList, build_restraints, find_monlib,
                                   geometry_stats)
from densrefine.restraints.energy import TERMS

SEQ = "GASVLKEF"


@pytest.fixture(scope="module")
def peptide():
    return ideal_peptide(SEQ)


@pytest.fixture(scope="module")
def rs(peptide):
    return build_restraints(peptide)


def _rename(model, resname, new):
    at = model.atoms
    return model.with_atoms(at.replace(res_name=np.where(at.res_name == resname, new,
                                                         at.res_name)))


def test_find_monlib_default_env_and_explicit(tmp_path, monkeypatch):
    monkeypatch.delenv("CLIBD_MON", raising=False)
    lib = find_monlib()
    assert lib.endswith("monomers")  # the coot-headless-api copy
    monkeypatch.setenv("CLIBD_MON", lib)
    assert find_monlib() == lib
    assert find_monlib(lib) == lib
    with pytest.raises(InputError, match="not a CCP4 monomer library"):
        find_monlib(tmp_path)


def test_counts_and_ideal_peptide_geometry(rs, peptide):
    c = rs.counts()
    assert c["bonds"] == len(peptide)  # a tree (N - 1 bonds) plus the Phe ring closure
    # 7 CA (Gly has none) + Val CB and Leu CG ("both" signs in the library)
    assert c["angles"] > c["bonds"] and c["chirals"] == 9 and c["planes"] >= 8
    assert rs.chiral_both.sum() == 2
    s = geometry_stats(peptide.atoms.xyz, rs)
    assert s["bond_rmsd"] < 0.02
    assert s["angle_rmsd"] < 2.0
    assert s["planarity_rmsd"] < 0.01 and s["chiral_rmsd"] < 0.2
    assert s["clashes"] == 0
    assert len(s["worst"]["bond"]) == 10 and "/" in s["worst"]["bond"][0]["atoms"][0]


def _own_ideals(rs, xyz):
    """Restraint set whose ideals are the values at xyz (energy exactly zero there)."""
    from densrefine.restraints.stats import _deviations

    dev = _deviations(torch.from_numpy(np.array(xyz)), rs)
    return rs.replace(bond_ideal=rs.bond_ideal + dev["bond"],
                      angle_ideal=rs.angle_ideal + dev["angle"],
                      torsion_ideal=rs.torsion_ideal + dev["torsion"],
                      chiral_ideal=rs.chiral_ideal + dev["chiral"])


def test_energy_zero_at_ideal_and_grows(rs, peptide, rng):
    xyz = peptide.atoms.xyz
    rs0 = _own_ideals(rs, xyz)
    term = GeometryTerm(rs0, "cpu", torch.float64, nonbonded=False)
    _, parts = term.energy(torch.tensor(xyz))
    for k in ("bond", "angle", "torsion", "chiral", "plane"):
        assert float(parts[k]) < 1e-9, k
    prev = {k: 0.0 for k in parts}
    for scale in (0.05, 0.2):
        _, parts = term.energy(torch.tensor(xyz + scale * rng.standard_normal(xyz.shape)))
        for k in ("bond", "angle", "torsion", "chiral", "plane"):
            assert float(parts[k]) > prev[k], (k, scale)
            prev[k] = float(parts[k])
    # library ideals: the ideal peptide is close to them (mean z² per bond/angle small)
    _, lib = GeometryTerm(rs, "cpu", torch.float64).energy(torch.tensor(xyz))
    assert float(lib["bond"]) / len(rs.bonds) < 1.0
    assert float(lib["angle"]) / len(rs.angles) < 1.0


@pytest.mark.parametrize("name", TERMS)
def test_gradcheck_each_term(rs, peptide, name, rng):
    xyz = peptide.atoms.xyz + 0.08 * rng.standard_normal(peptide.atoms.xyz.shape)
    if name == "nonbonded":  # push two non-bonded atoms into contact
        xyz = xyz.copy()
        xyz[-1] = xyz[0] + np.array([2.0, 0.5, 0.3])
    term = GeometryTerm(rs, "cpu", torch.float64)
    x = torch.tensor(xyz, requires_grad=True)
    val = term.energy(x)[1][name]
    assert float(val.detach()) > 0, name
    assert torch.autograd.gradcheck(lambda y: term.energy(y)[1][name], (x,), eps=1e-6,
                                    atol=1e-5, rtol=1e-4)


def test_total_is_weighted_sum_and_dtype_follows(rs, peptide):
    term = GeometryTerm(rs, "cpu", torch.float32, weights={"nonbonded": 0.0, "bond": 2.0})
    total, parts = term.energy(torch.tensor(peptide.atoms.xyz, dtype=torch.float32))
    assert total.dtype == torch.float32
    expect = sum(v for k, v in parts.items() if k not in ("nonbonded", "bond")) + 2 * parts["bond"]
    assert torch.allclose(total, expect)


def test_fixed_atoms_zero_gradient(rs, peptide, rng):
    n = len(peptide)
    fixed = np.zeros(n, bool)
    fixed[: n // 2] = True
    term = GeometryTerm(rs, "cpu", torch.float64, fixed=fixed)
    x = torch.tensor(peptide.atoms.xyz + 0.1 * rng.standard_normal((n, 3)), requires_grad=True)
    term.energy(x)[0].backward()
    assert torch.all(x.grad[torch.from_numpy(fixed)] == 0)
    assert x.grad[torch.from_numpy(~fixed)].abs().sum() > 0


def test_neighbour_list_matches_brute_force_and_rebuilds(rs, peptide):
    xyz = np.array(peptide.atoms.xyz)
    nl = NeighbourList(rs, skin=1.0)
    nl.build(xyz)
    n = len(xyz)
    i, j = np.triu_indices(n, 1)
    d = np.linalg.norm(xyz[i] - xyz[j], axis=1)
    from densrefine.restraints.nonbonded import _pair_keys, pair_minimum

    keys = _pair_keys(np.stack([i, j], 1), n)
    ok = ~np.isin(keys, _pair_keys(rs.exclusions, n))
    rmin = pair_minimum(rs, i, j, np.isin(keys, _pair_keys(rs.pairs14, n)))
    want = set(keys[ok & (d < rmin + 1.0)].tolist())
    assert set(_pair_keys(nl.pairs, n).tolist()) == want
    assert not nl.update(xyz + 0.25)  # rigid shift 0.25·√3 = 0.43 Å < skin/2
    assert nl.update(xyz + 0.4) and nl.n_builds == 2  # 0.69 Å > skin/2 → rebuild
    moved = xyz + 0.4
    moved[3, 0] += 0.3
    assert not nl.update(moved) and nl.n_builds == 2
    moved[3, 0] += 0.3
    assert nl.update(moved) and nl.n_builds == 3


def test_neighbour_list_rebuilt_inside_energy(rs, peptide):
    term = GeometryTerm(rs, "cpu", torch.float64)
    x = torch.tensor(peptide.atoms.xyz)
    term.energy(x)
    term.energy(x + 0.1)
    assert term.nl.n_builds == 1
    term.energy(x + 1.0)
    assert term.nl.n_builds == 2


def test_mirror_image_violates_chirality(rs, peptide):
    xyz = np.array(peptide.atoms.xyz) * np.array([-1.0, 1.0, 1.0])
    s = geometry_stats(xyz, rs)
    assert s["chiral_rmsd"] > 2.0  # D-amino acids: ideal volume ≈ ±2.5 Å³
    assert abs(s["bond_rmsd"] - geometry_stats(peptide.atoms.xyz, rs)["bond_rmsd"]) < 1e-9


def test_bond_angle_rmsd_equals_the_full_report(rs, peptide):
    """The per-cycle RMSDs of `fit` (`bond_angle_rmsd`) are those of `geometry_stats`."""
    from densrefine.restraints.stats import bond_angle_rmsd

    rng = np.random.default_rng(0)
    xyz = np.array(peptide.atoms.xyz) + rng.normal(0, 0.05, (len(peptide), 3))
    full, light = geometry_stats(xyz, rs), bond_angle_rmsd(torch.tensor(xyz), rs)
    assert light["bond_rmsd"] > 0.02 and light["angle_rmsd"] > 1.0
    assert light == {k: full[k] for k in ("bond_rmsd", "angle_rmsd")}


def test_unknown_residue_error_lists_fixes(peptide):
    bad = _rename(peptide, "LYS", "XYZ")
    with pytest.raises(InputError) as e:
        build_restraints(bad)
    msg = str(e.value)
    assert "XYZ" in msg and "A/XYZ 6" in msg and "--ligand" in msg and "self" in msg


def test_unknown_residue_self_fallback(peptide):
    bad = _rename(peptide, "LYS", "XYZ")
    with pytest.warns(DensrefineWarning, match="input geometry"):
        rs = build_restraints(bad, unknown="self")
    assert rs.unknown_residues == ("XYZ",)
    lys = np.flatnonzero(bad.atoms.res_name == "XYZ")
    inb = np.isin(rs.bonds, lys).any(1)
    assert inb.sum() >= 9  # 8 internal bonds of LYS + the peptide bonds to its neighbours
    s = geometry_stats(bad.atoms.xyz, rs)
    assert s["bond_rmsd"] < 0.02
    assert np.all(np.isin(lys, rs.bonds))
    with pytest.raises(InputError):
        build_restraints(bad, unknown="maybe")


def test_ligand_dictionary_file(tmp_path, peptide):
    import os

    src = os.path.join(find_monlib(), "a", "ALA.cif")
    text = open(src).read().replace("ALA", "XYZ")
    lig = tmp_path / "xyz.cif"
    lig.write_text(text)
    bad = _rename(peptide, "ALA", "XYZ")
    rs_lig = build_restraints(bad, ligands=(str(lig),))
    rs_ref = build_restraints(peptide)
    assert rs_lig.unknown_residues == ()
    ala = np.flatnonzero(peptide.atoms.res_name == "ALA")
    for kind in ("bonds", "angles", "chirals"):  # restraints inside the residue are the same
        a = getattr(rs_lig, kind)
        b = getattr(rs_ref, kind)
        assert np.isin(a, ala).all(1).sum() == np.isin(b, ala).all(1).sum() > 0, kind
    assert np.array_equal(rs_lig.bonds, rs_ref.bonds)  # peptide bonds via gemmi's ad-hoc links
    with pytest.raises(InputError, match="not found"):
        build_restraints(bad, ligands=(str(tmp_path / "missing.cif"),))


def test_hydrogens_do_not_break(rs):
    # a peptide with one H added on the N of residue 2 (amide H, riding position)
    m = ideal_peptide("GA")
    at = m.atoms
    n = np.flatnonzero((at.res_seq == 2) & (at.atom_name == "N"))[0]
    h_xyz = at.xyz[n] + np.array([0.0, 0.0, 0.86])
    new = {f: np.concatenate([getattr(at, f), getattr(at, f)[n:n + 1]])
           for f in ("b_iso", "occ", "atomic_number", "charge", "chain", "res_name", "res_seq",
                     "icode", "altloc", "het", "res_index")}
    new.update(xyz=np.vstack([at.xyz, h_xyz]), element=np.append(at.element, "H"),
               atom_name=np.append(at.atom_name, "H"))
    order = np.argsort(new["res_index"], kind="stable")
    from densrefine.types import Atoms

    atoms = Atoms(**{k: v[order] for k, v in new.items()})
    rsh = build_restraints(m.__class__(atoms=atoms))
    h = np.flatnonzero(atoms.is_hydrogen)[0]
    assert np.isin(h, rsh.bonds) and rsh.hb_type[h] == "H"


def test_dihedral_sign_matches_gemmi_iupac():
    """Period-1 torsion ideals (ligand rings, sugars) need the IUPAC sign, as gemmi's."""
    import gemmi
    import torch

    from densrefine.restraints.energy import dihedrals_deg

    rng = np.random.default_rng(3)
    p = rng.normal(size=(20, 4, 3))
    ours = dihedrals_deg(torch.tensor(p.reshape(-1, 3)),
                         torch.arange(80).reshape(20, 4)).numpy()
    ref = [np.degrees(gemmi.calculate_dihedral(*[gemmi.Position(*x) for x in q])) for q in p]
    assert np.allclose(ours, ref, atol=1e-9)


def test_plane_energy_is_the_smallest_eigenvalue(rs, peptide, rng):
    """Σ w (n·r)² with the eigenvector held fixed equals Σ λ_min of the weighted scatter."""
    from densrefine.restraints.energy import _plane_scatter, plane_energy

    xyz = torch.tensor(peptide.atoms.xyz + 0.1 * rng.standard_normal(peptide.atoms.xyz.shape))
    atoms, pid = torch.as_tensor(rs.plane_atoms), torch.as_tensor(rs.plane_id)
    sigma = torch.as_tensor(rs.plane_sigma, dtype=xyz.dtype)
    s, _ = _plane_scatter(xyz, atoms, pid, 1.0 / sigma**2, rs.n_planes)
    ref = torch.linalg.eigvalsh(s)[:, 0].sum()
    assert rs.n_planes >= 8
    torch.testing.assert_close(plane_energy(xyz, atoms, pid, sigma, rs.n_planes), ref,
                               rtol=1e-10, atol=1e-12)
