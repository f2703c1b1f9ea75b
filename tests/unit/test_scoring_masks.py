"""Masks and the automatic atom radius of the scoring module."""
from __future__ import annotations

import numpy as np
import pytest

from densrefine.scoring import masks
from densrefine.types import Grid, UnitCell

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
    assert masks.box_cell(grid).parameters == pytest.approx((45.0, 30.0, 15.0, 90, 90, 90))
    inside = masks.fraction_inside([[5.0, 5.0, 5.0], [4.0, 5.0, 5.0], [49.0, 33.0, 18.0]], grid)
    assert inside.tolist() == [True, False, True]
