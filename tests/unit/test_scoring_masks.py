"""Masks and the automatic atom radius of the scoring module."""
from __future__ import annotations

import numpy as np
import pytest

from densrefine.grid import box_cell, inside
from densrefine.scoring import masks
from densrefine.types import Grid, UnitCell
from tests.conftest import require_data

# (d_min Å, mean B Å², cctbx atom_curves(...).image(...).radius, mtriage.get_atom_radius)
# measured with cctbx-base 2025.11 (maptbx.atom_curves("C", "electron"),
# radius_max = max(15, d), radius_step = 0.1)
CCTBX_RADII = [
    (1.5, 10.0, 1.3, 3.0), (2.0, 20.0, 1.7, 3.0), (2.9, 60.0, 2.5, 3.0),
    (3.2, 80.0, 2.9, 3.2), (3.0, 120.0, 2.9, 3.0), (4.0, 200.0, 3.7, 4.0),
    (2.5, 300.0, 3.9, 3.9), (6.0, 400.0, 5.5, 6.0), (1.0, 0.0, 0.9, 3.0),
    (8.0, 50.0, 6.5, 8.0),
]


@pytest.mark.parametrize("d,b,r_image,r_atom", CCTBX_RADII)
def test_atom_radius_matches_cctbx(d, b, r_image, r_atom):
    assert masks.image_radius(d, b) == pytest.approx(r_image, abs=1e-9)
    assert masks.atom_radius(d, b) == pytest.approx(r_atom, abs=1e-9)


def test_molecular_mask_of_one_atom_is_a_shrunk_sphere():
    grid = Grid.box((40, 40, 40), 0.5, (-10.0, -10.0, -10.0))
    m = masks.molecular_mask([[0.1, 0.2, -0.3]], ["C"], grid)
    k, j, i = np.nonzero(m)
    pts = grid.origin + np.stack([i, j, k], -1) * 0.5
    r = np.linalg.norm(pts - [0.1, 0.2, -0.3], axis=1)
    # inside: within r_vdW(C) 1.775 + probe 1.1 = 2.875 Å, minus the 0.9 Å shrink
    assert r.max() <= 2.875 - 0.9 + 0.5 and r.max() > 1.775
    n_expected = 4 / 3 * np.pi * (2.875 - 0.9) ** 3 / 0.5**3
    assert 0.8 * n_expected < m.sum() < 1.2 * n_expected


def test_molecular_mask_counts_hydrogens_like_cctbx():
    grid = Grid.box((30, 30, 30), 0.5, (0.0, 0.0, 0.0))
    no_h = masks.molecular_mask([[7.5, 7.5, 7.5]], ["C"], grid).sum()
    with_h = masks.molecular_mask([[7.5, 7.5, 7.5], [8.6, 7.5, 7.5]], ["C", "H"], grid).sum()
    assert with_h > no_h


def test_molecular_mask_is_periodic_over_the_box():
    grid = Grid.box((20, 20, 20), 0.5, (100.0, 0.0, 0.0))
    m = masks.molecular_mask([[100.0, 5.0, 5.0]], ["O"], grid)  # atom on the x = 0 face
    assert m[10, 10, 0] and m[10, 10, -1]  # wraps to the far face


def test_site_voxels_periodic_and_not():
    grid = Grid.box((10, 12, 14), 1.0, (0.0, 0.0, 0.0))
    site = [[0.2, 6.0, 5.0]]
    s_np, v_np = masks.site_voxels(site, grid, 2.0)
    s_p, v_p = masks.site_voxels(site, grid, 2.0, periodic=True)
    assert np.all(s_np == 0) and len(v_p) > len(v_np)
    idx = np.unravel_index(v_np, grid.shape)
    pts = np.stack([idx[2], idx[1], idx[0]], -1).astype(float)
    assert np.all(np.linalg.norm(pts - site, axis=1) <= 2.0)
    # brute force over the box
    k, j, i = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
    d = np.sqrt((i - 0.2) ** 2 + (j - 6.0) ** 2 + (k - 5.0) ** 2)
    assert set(v_np) == set(np.flatnonzero(d <= 2.0))
    dp = np.sqrt(np.minimum(abs(i - 0.2), 14 - abs(i - 0.2)) ** 2 + (j - 6.0) ** 2 + (k - 5.0) ** 2)
    assert set(v_p) == set(np.flatnonzero(dp <= 2.0))


def test_site_voxels_general_path_agrees_on_orthogonal_grid(rng):
    grid = Grid.box((16, 18, 20), (0.9, 1.0, 1.1), (1.0, 2.0, 3.0))
    xyz = rng.uniform([1, 2, 3], [19, 19, 19], size=(30, 3))
    steps = np.diag(grid.voxel_size)
    inv = np.linalg.inv(steps)
    u = (xyz - grid.origin) @ inv.T
    half = np.ceil(2.7 * np.linalg.norm(inv, axis=1)).astype(int) + 1
    rng_ = [np.arange(-h + 1, h + 1) for h in half]
    n = np.array(grid.shape_xyz)
    a = masks._near_diagonal(u, steps, rng_, n, 2.7, False)
    b = masks._near_general(u, steps, rng_, n, 2.7, False)
    assert set(zip(*map(list, a))) == set(zip(*map(list, b)))


def test_sites_mask_on_a_non_orthogonal_cell():
    cell = UnitCell(20.0, 20.0, 20.0, 90.0, 90.0, 120.0)
    grid = Grid(values=np.zeros((20, 20, 20), np.float32), voxel_size=[1.0, 1.0, 1.0],
                origin=[0.0, 0.0, 0.0], cell=cell)
    centre = grid.index_to_xyz([10, 10, 10])
    m = masks.sites_mask([centre], grid, 2.5)
    k, j, i = np.nonzero(m)
    d = np.linalg.norm(grid.index_to_xyz(np.stack([i, j, k], -1)) - centre, axis=1)
    assert d.max() <= 2.5 and m.sum() > 4 / 3 * np.pi * 2.5**3 * 0.6


def test_box_cell_and_fraction_inside():
    grid = Grid.box((10, 20, 30), 1.5, (5.0, 5.0, 5.0))
    assert box_cell(grid).parameters == pytest.approx((45.0, 30.0, 15.0, 90, 90, 90))
    ins = inside([[5.0, 5.0, 5.0], [4.0, 5.0, 5.0], [49.0, 33.0, 18.0]], grid)
    assert ins.tolist() == [True, False, True]


# ------------------------------------------- fast interval masks vs the brute force
def ref_site_voxels(xyz, grid, radius, periodic=False):
    """Straightforward reference (the original implementation): every candidate voxel of
    a (2h)³ box per site, the 4-D broadcast distance test ``(dz² + dy²) + dx² <= r²``."""
    xyz = np.asarray(xyz, float).reshape(-1, 3)
    steps = grid.cell.orth / np.asarray(grid.full_shape, float)[None, :]
    inv = np.linalg.inv(steps)
    half = np.ceil(radius * np.linalg.norm(inv, axis=1)).astype(int) + 1
    rng = [np.arange(-h + 1, h + 1) for h in half]
    n = np.asarray(grid.shape_xyz, np.int64)
    u = (xyz - grid.origin) @ inv.T
    base = np.floor(u).astype(np.int64)
    g = [base[:, a, None] + rng[a][None, :] for a in range(3)]
    d2 = [(steps[a, a] * (g[a] - u[:, a, None])) ** 2 for a in range(3)]
    if periodic:
        g = [np.mod(g[a], n[a]) for a in range(3)]
        ok = [np.ones(ga.shape, bool) for ga in g]
    else:
        ok = [(g[a] >= 0) & (g[a] < n[a]) for a in range(3)]
    dist2 = d2[2][:, :, None, None] + d2[1][:, None, :, None] + d2[0][:, None, None, :]
    keep = (dist2 <= radius * radius) & ok[2][:, :, None, None] & ok[1][:, None, :, None] \
        & ok[0][:, None, None, :]
    ci, kz, ky, kx = np.nonzero(keep)
    return ci, (g[2][ci, kz] * n[1] + g[1][ci, ky]) * n[0] + g[0][ci, kx]


def random_case(rng, trial):
    """A random orthogonal box, sites in and around it, radius; every 4th case puts the
    sites on voxel centres with radii of whole voxels (distance ties at the sphere)."""
    shape = tuple(int(v) for v in rng.integers(3, 22, 3))
    vs = rng.uniform(0.4, 2.0, 3) if trial % 3 else np.full(3, rng.choice([0.5, 1.0, 1.05]))
    grid = Grid.box(shape, vs, rng.uniform(-5, 5, 3))
    ext = np.array(shape[::-1]) * vs
    xyz = grid.origin + rng.uniform(-0.2, 1.2, (int(rng.integers(0, 25)), 3)) * ext
    if trial % 4 == 0:
        xyz = grid.origin + rng.integers(-2, 20, xyz.shape) * vs
    radius = float(rng.choice([rng.uniform(0.3, 6.0), 1.0, 2.0, 2.0 * float(vs[0])]))
    return grid, xyz, radius


@pytest.mark.parametrize("periodic", [False, True])
def test_site_voxels_and_sites_mask_equal_the_brute_force(rng, periodic):
    for trial in range(60):
        grid, xyz, r = random_case(rng, trial)
        s_ref, v_ref = ref_site_voxels(xyz, grid, r, periodic)
        s, v = masks.site_voxels(xyz, grid, r, periodic=periodic)
        assert s.dtype == v.dtype == np.int64
        assert set(zip(s.tolist(), v.tolist())) == set(zip(s_ref.tolist(), v_ref.tolist()))
        if not periodic:  # no wrapping: even the order is the brute force's
            assert np.array_equal(s, s_ref) and np.array_equal(v, v_ref)
        ref_mask = np.zeros(grid.values.size, bool)
        ref_mask[v_ref] = True
        got = masks.sites_mask(xyz, grid, r, periodic=periodic)
        assert got.shape == grid.shape and np.array_equal(got.ravel(), ref_mask)


@pytest.mark.parametrize("periodic", [False, True])
def test_sites_mask_dense_and_sparse_paths_equal_the_brute_force(rng, periodic):
    grid = Grid.box((12, 14, 16), (0.9, 1.1, 1.0), (2.0, -1.0, 0.5))
    for n_sites, r in ((300, 2.5), (2, 1.7)):  # difference array / listed voxels
        xyz = grid.origin + rng.uniform(-0.1, 1.1, (n_sites, 3)) * grid.extent
        _, v_ref = ref_site_voxels(xyz, grid, r, periodic)
        ref_mask = np.zeros(grid.values.size, bool)
        ref_mask[v_ref] = True
        assert np.array_equal(masks.sites_mask(xyz, grid, r, periodic=periodic).ravel(),
                              ref_mask)


def test_sites_mask_periodic_sphere_larger_than_the_box():
    grid = Grid.box((4, 5, 6), 1.0, (0.0, 0.0, 0.0))
    m = masks.sites_mask([[1.0, 1.0, 1.0]], grid, 5.0, periodic=True)
    assert m.all()
    assert not masks.sites_mask(np.zeros((0, 3)), grid, 2.0).any()


def test_interval_masks_equal_the_brute_force_on_real_data():
    from densrefine import read_map, read_model

    model = read_model(require_data("emd-3488_5ni1", "5ni1_updated.cif.gz"))
    grid = read_map(require_data("emd-3488_5ni1", "emd_3488.mrc"))
    for r, periodic, xyz in ((3.2, False, model.atoms.xyz), (4.3, True, model.atoms.xyz[::5])):
        s_ref, v_ref = ref_site_voxels(xyz, grid, r, periodic)
        s, v = masks.site_voxels(xyz, grid, r, periodic=periodic)
        assert np.array_equal(s, s_ref) and np.array_equal(v, v_ref)  # no wrap in this box
        ref_mask = np.zeros(grid.values.size, bool)
        ref_mask[v_ref] = True
        assert np.array_equal(masks.sites_mask(xyz, grid, r, periodic=periodic).ravel(),
                              ref_mask)


# ----------------------------- non-orthogonal cells: the general path vs the brute force
NON_ORTHOGONAL = [UnitCell(20.0, 20.0, 20.0, 90.0, 90.0, 120.0),   # hexagonal
                  UnitCell(18.0, 22.0, 25.0, 90.0, 104.0, 90.0),    # monoclinic
                  UnitCell(17.0, 19.0, 23.0, 72.0, 83.0, 101.0)]    # triclinic


def brute_mask(xyz, grid, radius, periodic):
    """Every voxel of the grid (every periodic image when ``periodic``) against every
    site; returns (mask, ambiguous) where ambiguous voxels lie within 1e-9 Å² of the
    sphere (rounding may put them on either side)."""
    n = np.asarray(grid.shape_xyz)
    k, j, i = np.meshgrid(*(np.arange(m) for m in grid.shape), indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], -1)
    shifts = ([np.zeros(3, int)] if not periodic else
              [np.array(s) * n for s in np.ndindex(3, 3, 3)] and
              [(np.array(s) - 1) * n for s in np.ndindex(3, 3, 3)])
    mask = np.zeros(len(ijk), bool)
    amb = np.zeros(len(ijk), bool)
    rr = radius * radius
    for s in shifts:
        pos = grid.index_to_xyz(ijk + s)
        for x in np.asarray(xyz, float):
            dd = ((pos - x) ** 2).sum(1)
            mask |= dd <= rr
            amb |= np.abs(dd - rr) < 1e-9
    return mask.reshape(grid.shape), amb.reshape(grid.shape)


@pytest.mark.parametrize("cell", NON_ORTHOGONAL, ids=["hexagonal", "monoclinic", "triclinic"])
@pytest.mark.parametrize("periodic", [False, True])
def test_non_orthogonal_sites_mask_equals_the_brute_force(cell, periodic, rng):
    shape = (14, 12, 10)  # z, y, x
    grid = Grid(values=np.zeros(shape, np.float32), voxel_size=[2.0, 2.0, 2.0],
                origin=[1.5, -2.0, 0.5], cell=cell, full_shape=np.array(shape[::-1]) * 2)
    assert not masks._is_diagonal(grid.frame.steps)
    centre = grid.index_to_xyz(np.array([5, 6, 7]))
    covered = 0
    for trial in range(6):
        xyz = centre + rng.uniform(-9, 9, (int(rng.integers(1, 6)), 3))
        r = float(rng.uniform(1.0, 4.5))
        want, amb = brute_mask(xyz, grid, r, periodic)
        got = masks.sites_mask(xyz, grid, r, periodic=periodic)
        covered += int(want.sum())
        assert np.array_equal(got[~amb], want[~amb]), (trial, int((got != want).sum()))
        _, vox = masks.site_voxels(xyz, grid, r, periodic=periodic)
        assert set(vox.tolist()) == set(np.flatnonzero(got).tolist())
    assert covered > 50


@pytest.mark.parametrize("cell", NON_ORTHOGONAL, ids=["hexagonal", "monoclinic", "triclinic"])
def test_non_orthogonal_voxel_exactly_at_the_radius_is_inside(cell):
    """cctbx's test is distance <= radius: a voxel exactly one step along a from a site on
    a voxel centre belongs to it. The site is the grid origin (fractional index exactly 0)
    and a runs along x (orth column (a, 0, 0)), so that distance is exactly a/MX."""
    shape = (6, 6, 6)
    grid = Grid(values=np.zeros(shape, np.float32), voxel_size=[1.0, 1.0, 1.0],
                origin=[0.0, 0.0, 0.0], cell=cell, full_shape=np.array([20, 20, 20]))
    step_a = cell.parameters[0] / 20
    assert np.array_equal(grid.frame.steps[:, 0], [step_a, 0.0, 0.0])
    m = masks.sites_mask([[0.0, 0.0, 0.0]], grid, step_a)
    assert m[0, 0, 0] and m[0, 0, 1]          # the site's voxel and the one at exactly r
    assert not m[0, 0, 2]
    mp = masks.sites_mask([[0.0, 0.0, 0.0]], grid, step_a, periodic=True)
    assert mp[0, 0, 1] and mp[0, 0, 5]        # and its periodic image on the far side
