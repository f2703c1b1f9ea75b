"""Boxes: which sites lie in a grid, cutting a sub-box (also of a periodic grid), a new box
around a model, the box as a P1 cell, and moving a crystal map onto a box around the model.

Every test of "is this position in the map" goes through `inside` (fractional grid
index within [−pad, n − 1 + pad] along every axis), and every position → index
conversion through `densrefine.types.GridFrame.xyz_to_index`.
"""
from __future__ import annotations

import logging

import numpy as np

from ..errors import input_error
from ..types import Grid, UnitCell
from .fft import fft_size

log = logging.getLogger("densrefine")


def inside(xyz, grid, pad: float = 0.5) -> np.ndarray:
    """Boolean (N,): which positions lie inside the box of ``grid`` (a Grid or GridFrame).

    A position is inside when its fractional grid index lies within [−pad, n − 1 + pad]
    along every axis; the default ``pad`` = 0.5 voxel means "its nearest voxel exists".

    Examples
    --------
    >>> g = Grid.box((10, 10, 10), 1.0, (0.0, 0.0, 0.0))
    >>> inside([[0.0, 0.0, 0.0], [9.4, 1.0, 1.0], [9.6, 1.0, 1.0]], g).tolist()
    [True, True, False]
    """
    frame = grid.frame if isinstance(grid, Grid) else grid
    ijk = frame.xyz_to_index(np.asarray(xyz, float).reshape(-1, 3))
    n = np.asarray(frame.shape_xyz, float)
    return np.all((ijk >= -pad) & (ijk <= n - 1 + pad), axis=1)


def bounding_corners(xyz, margin: float) -> np.ndarray:
    """The 8 corners (8, 3) Å of the bounding box of ``xyz`` (N, 3) grown by ``margin`` Å."""
    xyz = np.asarray(xyz, float).reshape(-1, 3)
    lo, hi = xyz.min(0) - margin, xyz.max(0) + margin
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    return lo + corners * (hi - lo)


def periodic_box(frame, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """The voxels of a periodic ``frame`` that cover the Cartesian box [lo, hi] (Å).

    Returns
    -------
    start : ndarray, shape (3,), int64
        (x, y, z) index of the first voxel; any integer (indices wrap modulo the grid).
    size : ndarray, shape (3,), int64
        Voxels along x, y, z; at most the grid's own size.

    Examples
    --------
    >>> from densrefine.types import GridFrame
    >>> f = GridFrame((10, 10, 10), (0.0, 0.0, 0.0), np.eye(3), periodic=True)
    >>> [a.tolist() for a in periodic_box(f, [-1.5, 2.0, 3.2], [1.5, 4.0, 30.0])]
    [[-2, 2, 3], [5, 3, 10]]
    """
    lo, hi = np.asarray(lo, float).reshape(3), np.asarray(hi, float).reshape(3)
    u = frame.xyz_to_index(bounding_corners(np.stack([lo, hi]), 0.0))
    start = np.floor(u.min(0)).astype(np.int64)
    end = np.ceil(u.max(0)).astype(np.int64)
    return start, np.minimum(end - start + 1, np.asarray(frame.shape_xyz, np.int64))


def take_periodic(values, start, size) -> np.ndarray:
    """``values`` (nz, ny, nx) of a periodic grid at the box `periodic_box` gives, wrapped:
    shape (size_z, size_y, size_x)."""
    n = values.shape[::-1]
    ix = [np.mod(np.arange(int(start[i]), int(start[i]) + int(size[i])), n[i])
          for i in range(3)]
    return values[np.ix_(ix[2], ix[1], ix[0])]


def sub_box(emap: Grid, xyz, margin: float) -> tuple[Grid, tuple]:
    """Cut ``emap`` to the bounding box of ``xyz`` plus ``margin`` Å (clipped to the map).

    Returns
    -------
    sub : Grid
        The sub-map (same cell/sampling, shifted origin and start).
    slices : tuple of slice
        (z, y, x) slices of ``emap.values`` that make ``sub``.

    Raises
    ------
    InputError
        When the box does not overlap the map.
    """
    fr = emap.frame
    idx = fr.xyz_to_index(bounding_corners(xyz, margin))
    n = fr.shape_xyz
    i0 = np.clip(np.floor(idx.min(0)).astype(int), 0, n)
    i1 = np.clip(np.ceil(idx.max(0)).astype(int) + 1, 0, n)
    if np.any(i1 - i0 < 2):
        raise input_error(emap.path, "the model does not overlap the map box",
                          "check that model and map belong together (densrefine info MAP)")
    sl = tuple(slice(int(a), int(b)) for a, b in zip(i0[::-1], i1[::-1]))
    origin = emap.origin + fr.steps @ i0
    sub = Grid(np.ascontiguousarray(emap.values[sl]), emap.voxel_size, origin, emap.cell,
               emap.space_group, emap.full_shape, np.asarray(emap.start) + i0,
               path=emap.path)
    return sub, sl


def box_around(xyz, spacing: float, margin: float = 5.0, box=None) -> Grid:
    """A P1 `Grid` of zeros around atoms: edges = extent + 2·margin (or ``box`` voxels).

    Parameters
    ----------
    xyz : ndarray, shape (N, 3)
        Positions in Å.
    spacing : float
        Voxel size in Å.
    margin : float
        Space (Å) added on every side of the atoms' bounding box; the voxel count per
        axis follows `fft_size`.
    box : sequence of 3 ints, optional
        Grid size (nx, ny, nz) in voxels, centred on the atoms; overrides ``margin``.
    """
    xyz = np.asarray(xyz, np.float64).reshape(-1, 3)
    lo, hi = (xyz.min(0), xyz.max(0)) if len(xyz) else (np.zeros(3), np.zeros(3))
    if box is None:
        n = np.array([fft_size(int(np.ceil((h - l + 2 * margin) / spacing)))
                      for l, h in zip(lo, hi)])
    else:
        n = np.asarray(box, np.int64).reshape(3)
    origin = 0.5 * (lo + hi) - 0.5 * (n - 1) * spacing
    return Grid.box(tuple(int(v) for v in n[::-1]), spacing, origin)


def box_cell(grid: Grid) -> UnitCell:
    """The unit cell spanned by the box of ``grid`` (its own P1 cell, Å and degrees).

    For a cryo-EM box this is ``(nx·vx, ny·vy, nz·vz, 90, 90, 90)``; for a grid that
    covers a whole crystal cell it is that cell.
    """
    box = grid.frame.cell_matrix
    a, b, c = np.linalg.norm(box, axis=0)

    def angle(u, v):
        return float(np.degrees(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v),
                                                  -1.0, 1.0))))

    return UnitCell(float(a), float(b), float(c), angle(box[:, 1], box[:, 2]),
                    angle(box[:, 0], box[:, 2]), angle(box[:, 0], box[:, 1]))


def box_map(fgrid, xyz, d_min: float, *, margin: float = 6.0, spacing: float | None = None,
            shift=(0.0, 0.0, 0.0)) -> Grid:
    """Orthogonal P1 `Grid` around ``xyz`` (N, 3) Å, values interpolated from a cell map.

    Parameters
    ----------
    fgrid : gemmi.FloatGrid
        Map over a unit cell (periodic; any cell).
    xyz : ndarray, shape (N, 3)
        Positions (Å) the box must hold, plus ``margin``.
    d_min : float
        Resolution (Å); the spacing defaults to d_min/3 (at most 1 Å).
    margin : float
        Å around the atoms.
    spacing : float, optional
        Voxel size (Å).
    shift : sequence of 3 floats
        Subtracted from positions before looking them up in ``fgrid`` (the Cartesian
        position of ``fgrid``'s point 0, when it is not the cell origin).

    Returns
    -------
    Grid
        Tricubic interpolation (gemmi ``interpolate_values``, order 3).
    """
    import gemmi

    spacing = float(spacing or min(d_min / 3.0, 1.0))
    lo = np.asarray(xyz).min(0) - margin
    hi = np.asarray(xyz).max(0) + margin
    n = np.ceil((hi - lo) / spacing).astype(int) + 1
    n += n % 2
    arr = np.zeros((n[2], n[1], n[0]), np.float32)
    # array index (i, j, k) = (z, y, x) → position lo + (k, j, i) * spacing
    mat = gemmi.Mat33([[0, 0, spacing], [0, spacing, 0], [spacing, 0, 0]])
    start = lo - np.asarray(shift, np.float64)
    fgrid.interpolate_values(arr, gemmi.Transform(mat, gemmi.Vec3(*start)), order=3)
    g = Grid.box(arr.shape, spacing, lo)
    log.info("Map box: %dx%dx%d voxels of %.3f Å around the model (margin %.1f Å), "
             "tricubic from the cell map", n[0], n[1], n[2], spacing, margin)
    return g.with_values(arr)


def rebox_periodic(model, emap: Grid, d_min: float) -> Grid:
    """A map that samples its whole unit cell, with atoms outside it → P1 box around the model.

    Maps written for a crystal (or by Coot, which writes one unit cell from 0) are
    periodic; a model sitting in another cell copy would otherwise fall outside the box.
    Returns ``emap`` unchanged unless it covers its cell, carries a crystallographic space
    group (not P 1: cryo-EM boxes are P 1 and atoms outside them are a frame error the
    caller reports) and > 1 % of the atoms lie outside; then the values are wrapped
    periodically onto a box around the model (tricubic, `box_map`) and the fact is logged.
    """
    import gemmi

    if not emap.covers_cell or len(model) == 0 or emap.space_group.replace(" ", "") == "P1":
        return emap                     # cryo-EM boxes are P 1: atoms outside stay outside
    outside = ~inside(model.atoms.xyz, emap)
    if outside.mean() <= 0.01:
        return emap
    vals = np.ascontiguousarray(np.asarray(emap.values, np.float32).transpose(2, 1, 0))
    g = gemmi.FloatGrid(vals)
    g.set_unit_cell(gemmi.UnitCell(*emap.cell.parameters))
    g.spacegroup = gemmi.SpaceGroup("P 1")
    log.info("Map %s samples its whole unit cell and %.0f %% of the atoms lie outside it: "
             "treated as periodic and wrapped onto a box around the model",
             emap.path or "", 100 * outside.mean())
    return box_map(g, model.atoms.xyz, d_min, spacing=float(np.min(emap.voxel_size)),
                   shift=emap.origin)
