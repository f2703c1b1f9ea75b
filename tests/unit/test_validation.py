"""densrefine.validation on synthetic cases: ideal helix, an impossible χ1, a clashing pair,
Q-score of a model in its own Gaussian map; the shipped Top8000 tables."""
from __future__ import annotations

import numpy as np
import pytest

from densrefine.build import STRAND, ideal_peptide
from densrefine.types import Grid
from densrefine.validation import clashes, qscore, ramachandran, rotamers, tables, validate


@pytest.fixture(scope="module")
def helix():
    return ideal_peptide("AVLSKAEFAA")


def test_tables_shipped():
    g = tables.rama_grids()
    assert set(g) == set(tables.RAMA_CLASSES)
    assert all(v.shape == (180, 180) for v in g.values())
    assert g["general"].max() == pytest.approx(1.0, rel=0.03)
    lib = tables.rotamer_library()
    assert {"SER", "VAL", "ARG", "LYS", "PRO"} <= set(lib)
    assert [r["name"] for r in lib["VAL"]] == ["p", "m", "t"]
    assert lib["VAL"][2]["mean"] == [176.0]


def test_interpolation_is_periodic_and_exact_on_bin_centres():
    grid = np.arange(180 * 180, dtype=float).reshape(180, 180)
    assert ramachandran.interpolate(grid, -179.0, -179.0) == 0.0
    assert ramachandran.interpolate(grid, -177.0, -179.0) == 180.0
    # halfway between the last and the first bin along φ (wrapping at ±180°)
    assert ramachandran.interpolate(grid, 180.0, -179.0) == pytest.approx(0.5 * 179 * 180)


def test_ideal_helix_all_favoured_no_outliers_no_clash(helix):
    rep = validate(helix)
    d = rep.to_dict()
    assert d["ramachandran"]["n"] == 8
    assert d["ramachandran"]["favored"] == 8 and d["ramachandran"]["outlier"] == 0
    assert d["rotamers"]["n"] == 6 and d["rotamers"]["outlier"] == 0
    assert d["clashes"]["clashscore"] == 0.0
    assert d["clashes"]["n_h_added"] == 75
    assert "qscore" not in d
    assert "Ramachandran favoured" in rep.table()


def test_disallowed_backbone_is_an_outlier():
    m = ideal_peptide("AAAAAA", phi_psi=(100.0, -60.0))
    r = ramachandran.evaluate(m)
    assert list(r.label) == ["outlier"] * 4
    assert list(r.cls) == ["general"] * 4
    s = ideal_peptide("GGGGG", phi_psi=STRAND)
    assert set(ramachandran.evaluate(s).cls) == {"gly"}


def test_classes_follow_molprobity_precedence():
    r = ramachandran.evaluate(ideal_peptide("AVAGAEA"))
    cls = {k[1]: c for k, c in zip(r.keys, r.cls)}
    assert cls == {2: "ileval", 3: "general", 4: "gly", 5: "general", 6: "general"}
    assert list(ramachandran.classify(["general", "cispro", "gly"], [0.0007, 0.0015, 0.5])) \
        == ["allowed", "outlier", "favored"]


def _rotate_side_chain(model, res_seq, angle):
    """Rotate the atoms beyond CB of one residue about CA→CB by ``angle`` degrees."""
    at = model.atoms
    sel = np.flatnonzero(at.res_seq == res_seq)
    names = list(at.atom_name[sel])
    ca, cb = sel[names.index("CA")], sel[names.index("CB")]
    move = [i for i, n in zip(sel, names) if n not in ("N", "CA", "C", "O", "CB")]
    x = at.xyz.copy()
    axis = (x[cb] - x[ca]) / np.linalg.norm(x[cb] - x[ca])
    t = np.radians(angle)
    v = x[move] - x[cb]
    x[move] = x[cb] + v * np.cos(t) + np.cross(axis, v) * np.sin(t) \
        + np.outer(v @ axis, axis) * (1 - np.cos(t))
    return model.with_atoms(at.replace(xyz=x))


def test_impossible_chi1_is_a_rotamer_outlier(helix):
    before = rotamers.evaluate(helix)
    val = [k[3] for k in before.keys].index("VAL")
    assert before.chi[val][0] == pytest.approx(175.0, abs=1.0)
    bad = _rotate_side_chain(helix, 2, 125.0)          # χ1 ≈ −60 … 0: eclipsed, no rotamer
    after = rotamers.evaluate(bad)
    assert after.chi[val][0] == pytest.approx(-60.0, abs=1.5)    # m rotamer: fine
    assert not after.outlier[val]
    worse = rotamers.evaluate(_rotate_side_chain(helix, 2, 185.0))   # χ1 ≈ 0°
    assert abs(worse.chi[val][0]) < 2.0
    assert worse.outlier[val] and worse.score[val] < 0.01
    assert worse.summary()["outlier"] == 1


def test_symmetric_chi_is_folded():
    chi = np.array([[-67.0, -81.0], [-67.0, 99.0]])    # Phe χ2 and χ2 + 180° are the same
    lp = rotamers.log_density("PHE", chi)
    assert lp[0] == pytest.approx(lp[1])


def test_clashing_pair_gives_clashscore():
    a = ideal_peptide("AAAA", chain="A")
    b = ideal_peptide("AAAA", chain="B")
    from densrefine.types import Model
    import dataclasses

    shift = np.array([2.2, 0.0, 0.0])                  # second copy 2.2 Å away: overlaps
    fields = {f.name: np.concatenate([getattr(a.atoms, f.name), getattr(b.atoms, f.name)])
              for f in dataclasses.fields(a.atoms) if getattr(a.atoms, f.name) is not None}
    fields["xyz"] = np.concatenate([a.atoms.xyz, b.atoms.xyz + shift])
    fields["res_index"] = np.concatenate([a.atoms.res_index, b.atoms.res_index + 4])
    both = Model(atoms=type(a.atoms)(**fields))
    r = clashes.clashscore(both)
    assert len(r.pairs) > 10
    assert r.clashscore > 50.0
    assert r.overlap.min() >= clashes.OVERLAP
    alone = clashes.clashscore(a)
    assert alone.clashscore == 0.0


def test_bonded_and_hbond_pairs_are_not_clashes(helix):
    at = clashes.add_hydrogens(helix)
    assert at.is_h.sum() == 75
    # helix backbone H-bonds (H(i+4)…O(i)) are closer than the radii: never clashes
    r = clashes.find_clashes(at)
    assert len(r.pairs) == 0
    assert at.donor_h.sum() == 3 + 9 + 1 + 3      # NH3⁺ of residue 1, 9 NH, Ser HG, Lys NZ H3
    assert at.radius[at.donor_h].max() == clashes.R_POLAR_H


def _gaussian_map(model, sigma=0.6, step=0.5, pad=5.0):
    xyz = model.atoms.xyz[~model.atoms.is_hydrogen]
    lo = xyz.min(0) - pad
    shape = tuple((np.ceil((xyz.max(0) + pad - lo) / step).astype(int) + 1)[::-1])
    g = Grid.box(shape, step, lo)
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    pts = np.stack([xx, yy, zz], -1).reshape(-1, 3) * step + lo
    from scipy.spatial import cKDTree

    v = np.zeros(len(pts))
    for i, nb in enumerate(cKDTree(pts).query_ball_point(xyz, 4 * sigma)):
        d2 = ((pts[nb] - xyz[i]) ** 2).sum(1)
        v[nb] += np.exp(-0.5 * d2 / sigma**2)
    return g.with_values(v.reshape(shape).astype(np.float32))


def test_qscore_high_in_own_map_lower_when_shifted(helix):
    emap = _gaussian_map(helix)
    q = qscore.qscore(helix, emap)
    assert q.q.mean() > 0.85
    shifted = helix.with_atoms(helix.atoms.replace(xyz=helix.atoms.xyz + [0.8, 0.0, 0.0]))
    q2 = qscore.qscore(shifted, emap)
    assert q2.q.mean() < q.q.mean() - 0.2          # 0.97 → 0.70 for a 0.8 Å shift
    assert len(q.residues) == 10 and q.q_residue.shape == (10,)
    d = validate(helix, emap, 3.0).to_dict()["qscore"]
    assert d["q_mean"] == pytest.approx(q.q.mean(), abs=1e-4)
    assert d["resolution"] == 3.0 and len(d["residues"]) == 10


def test_sphere_directions_match_mapq_spiral():
    d = qscore.sphere_directions(8)
    assert d.shape == (8, 3)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0)
    np.testing.assert_allclose(d[0], [0, 0, -1], atol=1e-12)    # h = −1 first
    np.testing.assert_allclose(d[-1], [0, 0, 1], atol=1e-12)


def test_empty_model_is_an_input_error():
    from densrefine.errors import InputError
    from densrefine.types import Model

    m = ideal_peptide("A")
    with pytest.raises(InputError):
        validate(Model(atoms=m.atoms.select(np.zeros(len(m.atoms), bool))))
