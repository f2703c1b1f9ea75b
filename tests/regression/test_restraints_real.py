"""Restraints on real models: counts, links, neighbour list, and cctbx side by side.

cctbx (peer venv, separate process: never import it next to gemmi) reads the same
coot monomer library.  It refuses 3J6B_9 (229 hydrogen names without an energy type)
and 6YYT RNA (modification ``rna3p_pyr`` missing from coot's library), so those two
are checked on their own numbers only.
"""
from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import warnings

import numpy as np
import pytest

import densrefine as dr
from densrefine.restraints import NeighbourList, build_restraints, geometry_stats
from densrefine.restraints.nonbonded import _pair_keys, pair_minimum
from tests.conftest import peers_dir, peers_python, require_data

CCTBX_CASES = [("emd-3488_5ni1", "5ni1_updated.cif.gz"), ("emd-21457_6vyb-ntd", "6vyb_Ndom.pdb.gz")]
OWN_CASES = [("emd-2566_3j6b-chain9", "3J6B_9.pdb.gz"), ("emd-11007_6yyt-rna", "6yyt_rna.pdb.gz")]


def _read(folder, name):
    return dr.read_model(require_data(folder, name))


def _cctbx(path, tmp_path):
    py = peers_python()
    script = peers_dir() / "cctbx_geometry.py"
    plain = tmp_path / path.name.removesuffix(".gz")
    with gzip.open(path, "rb") as f, open(plain, "wb") as g:
        shutil.copyfileobj(f, g)
    out = subprocess.run([str(py), str(script), str(plain)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("folder,name", CCTBX_CASES)
def test_geometry_stats_match_cctbx(folder, name, tmp_path):
    path = require_data(folder, name)
    model = dr.read_model(path)
    rs = build_restraints(model)
    ours = geometry_stats(model.atoms.xyz, rs)
    peer = _cctbx(path, tmp_path)
    assert abs(ours["bond_rmsd"] - peer["bond_rmsd"]) < 0.003
    assert abs(ours["angle_rmsd"] - peer["angle_rmsd"]) < 0.3
    assert 0.95 < ours["n_bonds"] / peer["n_bonds"] < 1.05
    assert 0.95 < ours["n_angles"] / peer["n_angles"] < 1.05


@pytest.mark.parametrize("folder,name", OWN_CASES)
def test_models_cctbx_refuses_still_work(folder, name):
    model = _read(folder, name)
    rs = build_restraints(model)
    s = geometry_stats(model.atoms.xyz, rs)
    assert s["n_bonds"] >= 0.99 * (len(model) - 4)  # ~one bond per atom in polymers
    assert s["bond_rmsd"] < 0.04 and s["angle_rmsd"] < 2.5
    assert s["clashscore"] < 50


def test_hydrogens_restrained_in_3j6b():
    model = _read("emd-2566_3j6b-chain9", "3J6B_9.pdb.gz")
    rs = build_restraints(model)
    h = model.atoms.is_hydrogen
    assert h.sum() > 1000
    with_h = h[rs.bonds].any(1)
    assert with_h.sum() >= 0.95 * h.sum()  # (almost) every H has its riding bond
    assert (rs.hb_type[h] == "H").sum() > 100  # polar H recognised for H-bond rules


def test_haem_his_links_5ni1():
    model = _read("emd-3488_5ni1", "5ni1_updated.cif.gz")
    rs = build_restraints(model)
    at = model.atoms
    fe = np.flatnonzero(at.atom_name == "FE")
    ne2 = np.flatnonzero((at.res_name == "HIS") & (at.atom_name == "NE2"))
    linked = [b for b in rs.bonds if (b[0] in fe and b[1] in ne2) or (b[1] in fe and b[0] in ne2)]
    assert len(fe) == 4 and len(linked) == 4 and rs.unknown_links == ()


def test_glycan_and_disulfide_links_6vyb():
    model = _read("emd-21457_6vyb-ntd", "6vyb_Ndom.pdb.gz")
    rs = build_restraints(model)
    at = model.atoms
    pairs = {frozenset((at.res_name[i] + "." + at.atom_name[i], at.res_name[j] + "." +
                        at.atom_name[j])) for i, j in rs.bonds if at.res_index[i] != at.res_index[j]}
    assert frozenset(("NAG.C1", "ASN.ND2")) in pairs  # pyr-ASN glycosidic link
    assert frozenset(("CYS.SG",)) in pairs  # disulfide SG-SG


def test_neighbour_list_equals_brute_force_6vyb():
    model = _read("emd-21457_6vyb-ntd", "6vyb_Ndom.pdb.gz")
    rs = build_restraints(model)
    xyz = model.atoms.xyz
    nl = NeighbourList(rs, skin=0.8)
    nl.build(xyz)
    n = len(xyz)
    i, j = np.triu_indices(n, 1)
    d = np.linalg.norm(xyz[i] - xyz[j], axis=1)
    keys = _pair_keys(np.stack([i, j], 1), n)
    alt = rs.altloc
    ok = ~np.isin(keys, _pair_keys(rs.exclusions, n))
    ok &= (alt[i] == "") | (alt[j] == "") | (alt[i] == alt[j])
    rmin = pair_minimum(rs, i, j, np.isin(keys, _pair_keys(rs.pairs14, n)))
    want = keys[ok & (d < rmin + 0.8)]
    got = _pair_keys(nl.pairs, n)
    assert len(got) > 1000 and np.array_equal(np.sort(got), np.sort(want))
    rng = np.random.default_rng(0)
    assert not nl.update(xyz + 0.1 * rng.standard_normal(xyz.shape).clip(-2, 2))
    assert nl.update(xyz + np.array([0.3, 0.3, 0.0]))


def test_unknown_residue_in_real_model_lists_residue(tmp_path):
    model = _read("emd-3488_5ni1", "5ni1_updated.cif.gz")
    at = model.atoms
    bad = model.with_atoms(at.replace(res_name=np.where(at.res_name == "HEM", "XYZ",
                                                        at.res_name)))
    with pytest.raises(dr.InputError, match="XYZ"):
        build_restraints(bad)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rs = build_restraints(bad, unknown="self")
    s = geometry_stats(at.xyz, rs)
    assert rs.unknown_residues == ("XYZ",) and s["bond_rmsd"] < 0.03


def test_h_distance_auto_picks_nuclear_ideals_for_3io0():
    model = _read("3io0", "3io0_before.pdb.gz")  # hydrogens at nuclear positions (~1.08 Å)
    auto = geometry_stats(model.atoms.xyz, build_restraints(model))
    xray = geometry_stats(model.atoms.xyz, build_restraints(model, h_distance="xray"))
    assert auto["bond_rmsd"] < 0.02 < xray["bond_rmsd"]
    assert auto["bond_rmsd_non_h"] == pytest.approx(xray["bond_rmsd_non_h"])
