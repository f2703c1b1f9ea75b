"""Unit tests of the smooth model-perturbation generator (densrefine.perturb)."""
from __future__ import annotations

import pathlib
import warnings

import numpy as np
import pytest

import densrefine as dr
from densrefine.errors import DensrefineWarning
from densrefine.perturb import (_apply_flips, _rotate, flip_groups, perturb,
                                secondary_structure)

pytestmark = pytest.mark.filterwarnings("ignore::densrefine.errors.DensrefineWarning")

HELIX = pathlib.Path(__file__).resolve().parents[2] / "example_maps" / "helix_true.pdb"


@pytest.fixture(scope="module")
def helix():
    return dr.read_model(HELIX)


@pytest.fixture(scope="module")
def two_helices(helix):
    """Two copies of the example helix as chains A and B, 12 Å apart (350 atoms)."""
    at = helix.atoms
    n = len(at)
    cat = {f: np.concatenate([getattr(at, f)] * 2) for f in
           ("b_iso", "occ", "element", "atomic_number", "charge", "res_name", "res_seq",
            "icode", "atom_name", "altloc", "het")}
    xyz = np.concatenate([at.xyz, at.xyz + [12.0, 0.0, 0.0]])
    res_index = np.concatenate([at.res_index, at.res_index + at.res_index.max() + 1])
    atoms = dr.Atoms(xyz=xyz, chain=["A"] * n + ["B"] * n, res_index=res_index, **cat)
    return dr.Model(atoms)


def _rms(a, b):
    return float(np.sqrt(((a - b) ** 2).sum(1).mean()))


@pytest.mark.parametrize("rms", [0.5, 1.0, 1.5])
def test_rms_as_requested(two_helices, rms):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DensrefineWarning)
        out = perturb(two_helices, rms=rms, seed=3)
    assert _rms(out.atoms.xyz, two_helices.atoms.xyz) == pytest.approx(rms, rel=1e-6)


@pytest.mark.parametrize("kw", [{"rigid_sse": False}, {"low_freq": False},
                                {"rotamer_flips": 0.0}])
def test_rms_each_component(two_helices, kw):
    out = perturb(two_helices, rms=1.0, seed=5, **kw)
    assert _rms(out.atoms.xyz, two_helices.atoms.xyz) == pytest.approx(1.0, rel=1e-6)


def test_smooth_neighbouring_ca_correlated(two_helices):
    out = perturb(two_helices, rms=1.0, seed=7, rotamer_flips=0.0)
    ca = np.flatnonzero(two_helices.atoms.atom_name == "CA")
    d = out.atoms.xyz[ca] - two_helices.atoms.xyz[ca]
    same_chain = two_helices.atoms.chain[ca][1:] == two_helices.atoms.chain[ca][:-1]
    a, b = d[:-1][same_chain], d[1:][same_chain]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.mean() > 0.8          # independent per-atom noise gives ~0
    # consecutive CA displacements differ much less than the displacement itself
    # (independent random displacements: ratio ≈ √2)
    assert np.linalg.norm(a - b, axis=1).mean() < 0.5 * np.linalg.norm(a, axis=1).mean()
    ca_ca = np.linalg.norm(np.diff(out.atoms.xyz[ca], axis=0), axis=1)[same_chain]
    assert np.all(np.abs(ca_ca - 3.8) < 0.6)


def test_flips_keep_side_chain_bonds_exactly(helix):
    groups = flip_groups(helix)
    assert len(groups) == 19        # 22 residues minus 3 Ala (no Gly/Pro in the sequence)
    out = perturb(helix, rms=1.0, seed=0, rigid_sse=False, low_freq=False, rotamer_flips=1.0)
    x0, x1 = helix.atoms.xyz, out.atoms.xyz
    moved = np.linalg.norm(x1 - x0, axis=1) > 1e-6
    assert moved.sum() > 30
    for ca, cb, atoms in groups:
        sc = np.concatenate([[ca, cb], atoms])
        d0 = np.linalg.norm(x0[sc][:, None] - x0[sc][None], axis=-1)
        d1 = np.linalg.norm(x1[sc][:, None] - x1[sc][None], axis=-1)
        np.testing.assert_allclose(d1, d0, atol=1e-9)
        assert not moved[[ca, cb]].any()
    backbone = np.isin(helix.atoms.atom_name, ["N", "CA", "C", "O", "CB"])
    assert not moved[backbone].any()


def test_flip_is_120_degrees_about_ca_cb():
    xyz = np.array([[0.0, 0, 0], [0, 0, 1.53], [1.4, 0, 2.1]])   # CA, CB, CG
    out = _apply_flips(xyz, [(0, 1, np.array([2]), 2 * np.pi / 3)])
    v0, v1 = xyz[2, :2], out[2, :2]
    ang = np.degrees(np.arccos(v0 @ v1 / np.linalg.norm(v0) / np.linalg.norm(v1)))
    assert ang == pytest.approx(120.0)
    assert out[2, 2] == pytest.approx(2.1)


def test_rotate_preserves_distances(rng):
    x = rng.normal(size=(10, 3))
    axis = np.array([0.0, 0.6, 0.8])
    y = _rotate(x, np.array([1.0, 2, 3]), axis, np.full(10, 0.7))
    np.testing.assert_allclose(np.linalg.norm(y[:, None] - y[None], axis=-1),
                               np.linalg.norm(x[:, None] - x[None], axis=-1), atol=1e-12)


def test_seed_determinism(two_helices):
    a = perturb(two_helices, rms=1.0, seed=11)
    b = perturb(two_helices, rms=1.0, seed=11)
    c = perturb(two_helices, rms=1.0, seed=12)
    np.testing.assert_array_equal(a.atoms.xyz, b.atoms.xyz)
    assert _rms(a.atoms.xyz, c.atoms.xyz) > 0.3


def test_chains_atoms_order_unchanged(two_helices):
    out = perturb(two_helices, rms=1.0, seed=2)
    assert len(out) == len(two_helices)
    for f in ("chain", "res_name", "res_seq", "atom_name", "element", "res_index",
              "b_iso", "occ", "altloc"):
        np.testing.assert_array_equal(getattr(out.atoms, f), getattr(two_helices.atoms, f))
    assert not out.atoms.xyz.flags.writeable
    assert two_helices.atoms.xyz is not out.atoms.xyz


def test_secondary_structure_helix_and_strand(helix):
    ca = helix.atoms.xyz[helix.atoms.atom_name == "CA"]
    assert set(secondary_structure(ca)) == {"H"}
    strand = np.c_[np.arange(8) * 3.3, 0.9 * (-1.0) ** np.arange(8), np.zeros(8)]
    assert "".join(secondary_structure(strand)) == "EEEEEEEE"


def test_flip_budget_warns(helix):
    with pytest.warns(DensrefineWarning, match="side-chain flips"):
        out = perturb(helix, rms=0.2, seed=0, rotamer_flips=1.0)
    assert _rms(out.atoms.xyz, helix.atoms.xyz) == pytest.approx(0.2, rel=1e-6)


def test_bad_arguments(helix):
    with pytest.raises(ValueError, match="rms"):
        perturb(helix, rms=0.0)
    with pytest.raises(ValueError, match="rotamer_flips"):
        perturb(helix, rotamer_flips=1.5)
