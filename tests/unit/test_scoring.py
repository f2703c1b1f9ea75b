"""Map–model scores on synthetic data: a toy "peptide" of Gaussian atoms on a small box.

The model map is built here (sum of Gaussians) and passed to `score(model_map=...)`, so
these tests do not depend on `densrefine.simulate`.
"""
from __future__ import annotations

import numpy as np
import pytest

from densrefine.errors import DensrefineWarning, InputError
from densrefine.scoring import cc as C
from densrefine.scoring import d_at_fsc, fsc_curve, score
from densrefine.types import Atoms, Grid, Model

VOXEL = 0.8
SHAPE = (36, 32, 40)  # nz, ny, nx
NAMES = ("N", "CA", "C", "O", "CB", "CG")
ELEMS = ("N", "C", "C", "O", "C", "C")


def toy_model(n_res=8, seed=0, origin=(10.0, -5.0, 3.0)) -> Model:
    """n_res residues of 6 atoms (main chain N CA C O CB + side chain CG) in a helix-ish
    curve inside the box."""
    rng = np.random.default_rng(seed)
    xyz, names, elems, res_seq, res_index = [], [], [], [], []
    centre = np.array(origin) + np.array(SHAPE[::-1]) * VOXEL / 2
    for r in range(n_res):
        t = r * 1.7
        base = centre + np.array([5.5 * np.cos(t), 5.5 * np.sin(t), 1.6 * r - 6.0])
        for a in range(6):
            xyz.append(base + rng.normal(0, 1.0, 3))
            names.append(NAMES[a])
            elems.append(ELEMS[a])
            res_seq.append(r + 1)
            res_index.append(r)
    n = len(xyz)
    atoms = Atoms(xyz=np.array(xyz), b_iso=np.full(n, 30.0), occ=np.ones(n),
                  element=elems, atomic_number=np.zeros(n), charge=np.zeros(n),
                  chain=["A"] * n, res_name=["LEU"] * n, res_seq=res_seq, icode=[" "] * n,
                  atom_name=names, altloc=[""] * n, het=np.zeros(n, bool), res_index=res_index)
    return Model(atoms=atoms, path="toy.pdb")


def empty_grid(origin=(10.0, -5.0, 3.0)) -> Grid:
    return Grid.box(SHAPE, VOXEL, origin)


def gaussian_map(model: Model, grid: Grid, sigma=0.9) -> np.ndarray:
    """Sum of isotropic Gaussians (σ Å) at the atoms, on the grid (nz, ny, nx)."""
    nz, ny, nx = grid.shape
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    pts = grid.origin + np.stack([i, j, k], -1) * grid.voxel_size
    out = np.zeros(grid.shape)
    for p in model.atoms.xyz:
        out += np.exp(-((pts - p) ** 2).sum(-1) / (2 * sigma * sigma))
    return out.astype(np.float32)


@pytest.fixture(scope="module")
def toy():
    model = toy_model()
    grid = empty_grid()
    mmap = gaussian_map(model, grid)
    return model, grid, mmap


def test_self_score_is_perfect(toy):
    model, grid, mmap = toy
    rep = score(model, grid.with_values(mmap), 3.0, model_map=mmap)
    for k in ("cc_mask", "cc_box", "cc_volume", "cc_peaks", "cc_main_chain", "cc_side_chain"):
        assert getattr(rep, k) == pytest.approx(1.0, abs=1e-6), k
    assert rep.rsr == pytest.approx(0.0, abs=1e-6)
    fsc = [s["fsc"] for s in rep.fsc if np.isfinite(s["fsc"])]
    assert len(fsc) > 5 and np.allclose(fsc, 1.0, atol=1e-6)
    assert rep.d_fsc05 is None
    assert all(r["cc"] == pytest.approx(1.0, abs=1e-6) for r in rep.residues)
    assert rep.n_mask_voxels > 0 and rep.n_atoms == len(model)


def test_scaled_offset_map_gives_cc_one(toy):
    model, grid, mmap = toy
    rep = score(model, grid.with_values(3.5 * mmap - 2.0), 3.0, model_map=mmap, fsc=False)
    for k in ("cc_mask", "cc_box", "cc_volume", "cc_peaks"):
        assert getattr(rep, k) == pytest.approx(1.0, abs=1e-5), k
    assert rep.rsr == pytest.approx(0.0, abs=1e-5)
    assert rep.fsc == [] and rep.d_fsc05 is None


def test_noise_decreases_all_ccs(toy, rng):
    model, grid, mmap = toy
    noise = rng.normal(size=mmap.shape).astype(np.float32)
    reps = [score(model, grid.with_values(mmap + s * mmap.std() * noise), 3.0, model_map=mmap,
                  per_residue=False, fsc=False) for s in (0.0, 0.3, 1.0)]
    for k in ("cc_mask", "cc_box", "cc_volume", "cc_peaks"):
        vals = [getattr(r, k) for r in reps]
        assert vals[0] > vals[1] > vals[2], (k, vals)
    assert reps[0].rsr < reps[1].rsr < reps[2].rsr


def test_shifted_model_lowers_cc_mask(toy):
    model, grid, mmap = toy
    emap = grid.with_values(mmap)
    moved = model.with_atoms(model.atoms.replace(xyz=model.atoms.xyz + [2.0, 0.0, 0.0]))
    good = score(model, emap, 3.0, model_map=mmap, per_residue=False, fsc=False)
    bad = score(moved, emap, 3.0, model_map=gaussian_map(moved, grid), per_residue=False,
                fsc=False)
    assert good.cc_mask > 0.99 and bad.cc_mask < good.cc_mask - 0.2


def test_per_residue_cc_finds_displaced_residue(toy):
    model, grid, mmap = toy
    xyz = model.atoms.xyz.copy()
    sel = model.atoms.res_index == 5
    xyz[sel] += [0.0, 1.8, -1.2]
    moved = model.with_atoms(model.atoms.replace(xyz=xyz))
    rep = score(moved, grid.with_values(mmap), 3.0, model_map=gaussian_map(moved, grid),
                fsc=False)
    ccs = [r["cc"] for r in rep.residues]
    assert [r["res_seq"] for r in rep.residues] == list(range(1, 9))
    assert int(np.argmin(ccs)) == 5
    assert min(ccs) < 0.8 < np.median(ccs)
    assert all(r["cc_main"] is not None and r["cc_side"] is not None for r in rep.residues)
    assert all(r["n_atoms"] == 6 for r in rep.residues)


def test_side_chain_none_without_side_chain_atoms(toy):
    model, grid, mmap = toy
    keep = ~np.isin(model.atoms.atom_name, ["CG"])  # main chain only
    mc_only = Model(atoms=model.atoms.select(keep), path="mc.pdb")
    rep = score(mc_only, grid.with_values(mmap), 3.0, model_map=mmap, fsc=False)
    assert rep.cc_side_chain is None and rep.cc_main_chain is not None
    assert all(r["cc_side"] is None for r in rep.residues)


def test_all_atoms_outside_raises_with_origin(toy):
    model, grid, mmap = toy
    far = model.with_atoms(model.atoms.replace(xyz=model.atoms.xyz + 500.0))
    with pytest.raises(InputError) as e:
        score(far, grid.with_values(mmap), 3.0, model_map=mmap)
    msg = str(e.value)
    assert "origin" in msg.lower() and "toy.pdb" in msg and "densrefine info" in msg
    assert "10.00, -5.00, 3.00" in msg  # the map's origin in Å


def test_some_atoms_outside_warns(toy):
    model, grid, mmap = toy
    xyz = model.atoms.xyz.copy()
    xyz[:3] += 200.0
    part = model.with_atoms(model.atoms.replace(xyz=xyz))
    with pytest.warns(DensrefineWarning, match="outside the map box"):
        rep = score(part, grid.with_values(mmap), 3.0, model_map=mmap, fsc=False)
    assert rep.fraction_inside == pytest.approx(1 - 3 / len(model))


@pytest.mark.parametrize("d", [0.0, -2.0, 1000.0, float("nan")])
def test_bad_resolution_raises(toy, d):
    model, grid, mmap = toy
    with pytest.raises(InputError, match="resolution"):
        score(model, grid.with_values(mmap), d, model_map=mmap)


def test_nan_map_raises(toy):
    model, grid, mmap = toy
    bad = mmap.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        score(model, grid.with_values(bad), 3.0, model_map=mmap)


# ------------------------------------------------------------------ CC definitions
def test_top_selection_keeps_ties_like_cctbx():
    v = np.array([5.0, 4.0, 4.0, 4.0, 1.0, 0.0])
    # cctbx: m >= sorted_desc[n]; n = 1 -> threshold 4 -> 4 voxels
    assert C.top_selection(v, 1).sum() == 4
    assert C.top_selection(v, 4).sum() == 5
    assert C.top_selection(v, 99).all()


def test_cc_volume_and_peaks_use_the_right_voxels():
    m = np.array([9.0, 8.0, 7.0, 0.0, 0.0, 0.0, 1.0])  # model map
    e = np.array([1.0, 2.0, 3.0, 0.0, 9.0, 0.0, 0.0])  # map: its peak is elsewhere
    # top 2 (+1, cctbx rule) of the model map: indices 0, 1, 2 -> anti-correlated
    assert C.cc_volume(e, m, 2) == pytest.approx(-1.0)
    union = C.top_selection(e, 2) | C.top_selection(m, 2)
    assert C.cc_peaks(e, m, 2) == pytest.approx(C.pearson(e[union], m[union]))


def test_rsr_uncorrelated_is_about_one(rng):
    a, b = rng.normal(size=20000), rng.normal(size=20000)
    assert C.rsr(a, b, np.ones(a.shape, bool)) == pytest.approx(1.0, abs=0.05)


def test_cc_torch_matches_numpy_and_gradcheck(rng):
    import torch

    a = torch.tensor(rng.normal(size=(4, 5, 6)), dtype=torch.float64, requires_grad=True)
    b = torch.tensor(rng.normal(size=(4, 5, 6)), dtype=torch.float64, requires_grad=True)
    mask = torch.tensor(rng.random((4, 5, 6)) > 0.4)
    got = C.cc_torch(a, b, mask).item()
    ref = C.cc_mask(a.detach().numpy(), b.detach().numpy(), mask.numpy())
    assert got == pytest.approx(ref, abs=1e-10)
    assert torch.autograd.gradcheck(lambda x, y: C.cc_torch(x, y, mask), (a, b))
    f32 = C.cc_torch(a.detach().float(), b.detach().float())
    assert f32.dtype == torch.float32


# ----------------------------------------------------------------------------- FSC
def test_fsc_noise_falls_and_crossing_is_interpolated(toy, rng):
    model, grid, mmap = toy
    noisy = mmap + 0.5 * mmap.std() * rng.normal(size=mmap.shape)
    curve = fsc_curve(noisy, mmap, grid)
    f = np.array([s["fsc"] for s in curve])
    assert f[0] > 0.9 and f[-1] < 0.5
    d05 = d_at_fsc(curve)
    assert d05 is not None and curve[-1]["d"] < d05 < curve[0]["d"]
    assert sum(s["n"] for s in curve) > 0.4 * mmap.size


def test_d_at_fsc_interpolates_in_s():
    curve = [{"d": 10.0, "fsc": 0.9}, {"d": 5.0, "fsc": 0.7}, {"d": 2.5, "fsc": 0.3}]
    # halfway between s = 0.2 and 0.4 -> s = 0.3
    assert d_at_fsc(curve) == pytest.approx(1 / 0.3)
    assert d_at_fsc([{"d": 4.0, "fsc": float("nan")}, {"d": 3.0, "fsc": 0.8}]) is None


# ------------------------------- fast paths vs straightforward reference versions
def ref_group_cc(site, voxel, group_of_site, n_groups, emap, mmap):
    """Reference: one np.unique of (group, voxel) keys, then the CC of each group."""
    e = np.asarray(emap, np.float64).ravel()
    m = np.asarray(mmap, np.float64).ravel()
    e, m = e - e.mean(), m - m.mean()
    g = np.asarray(group_of_site)[site]
    key = np.unique(g[g >= 0].astype(np.int64) * e.size + voxel[g >= 0])
    out = np.full(n_groups, np.nan)
    for k in range(n_groups):
        vv = key[key // e.size == k] % e.size
        if len(vv) >= 2 and np.ptp(e[vv]) > 0 and np.ptp(m[vv]) > 0:
            out[k] = np.corrcoef(e[vv], m[vv])[0, 1]
    return out


def ref_top_selection(values, n):
    flat = np.asarray(values).ravel()
    if n >= flat.size:
        return np.ones(np.shape(values), bool)
    return np.asarray(values) >= np.sort(flat)[::-1][n]


def test_residue_scores_match_per_group_references(toy, rng):
    from densrefine.scoring import masks, residues

    model, grid, mmap = toy
    atoms = model.atoms
    emap = mmap + rng.normal(0, 0.05, mmap.shape).astype(np.float32)
    got = residues.residue_scores(atoms, grid.with_values(emap), mmap, 2.1)
    site, voxel = masks.site_voxels(atoms.xyz, grid, 2.1)
    mc = residues.main_chain_selection(atoms)
    _, inv = np.unique(atoms.res_index, return_inverse=True)
    for key, sel in (("cc", np.ones(len(atoms), bool)), ("cc_main", mc), ("cc_side", ~mc)):
        ref = ref_group_cc(site, voxel, np.where(sel, inv, -1), inv.max() + 1, emap, mmap)
        assert np.allclose([r[key] for r in got["residues"]], ref, rtol=0, atol=1e-12)
    for key, sel in (("cc_main_chain", mc), ("cc_side_chain", ~mc)):
        vox = np.unique(voxel[sel[site]])
        assert got[key] == pytest.approx(C.pearson(emap.ravel()[vox], mmap.ravel()[vox]),
                                         abs=1e-12)


def test_group_cc_and_union_keys_on_random_pairs(rng):
    from densrefine.scoring.residues import group_cc, union_keys

    size, n_sites, n_groups = 500, 40, 7
    site = rng.integers(0, n_sites, 3000)
    voxel = rng.integers(0, size, 3000)
    group = rng.integers(-1, n_groups, n_sites)
    flags = rng.integers(0, 4, n_sites)
    e, m = rng.normal(size=size), rng.normal(size=size)
    cc, n = group_cc(site, voxel, group, n_groups, e, m)
    ref = ref_group_cc(site, voxel, group, n_groups, e, m)
    assert np.allclose(cc, ref, rtol=0, atol=1e-12, equal_nan=True)
    keep = group[site] >= 0
    key, fl = union_keys(site[keep], voxel[keep], np.maximum(group, 0), flags, size)
    for bit in (1, 2):  # a flag subset's keys = np.unique over that subset's sites
        sub = keep & (flags[site] & bit > 0)
        assert np.array_equal(key[fl & bit > 0], np.unique(group[site[sub]] * size + voxel[sub]))
    assert np.array_equal(key, np.unique(group[site[keep]] * size + voxel[keep]))
    assert n.sum() == len(key)


@pytest.mark.parametrize("size", [1, 7, 5000, 200_000])
def test_top_selection_equals_a_full_sort(rng, size):
    for trial in range(12):
        v = rng.normal(size=size).astype(np.float32 if trial % 2 else np.float64)
        if trial % 3 == 0:
            v[rng.random(size) < 0.7] = 0.0  # flat (masked) region, ties at the threshold
        if trial % 4 == 1:
            v = np.round(v, 1)
        if trial == 5:
            v[rng.random(size) < 0.01] = np.nan
        for n in {0, size // 10, size // 2, size - 1, size + 1, int(rng.integers(0, size + 1))}:
            assert np.array_equal(C.top_selection(v, n), ref_top_selection(v, n)), (trial, n)
