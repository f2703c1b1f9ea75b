"""The sampling frame of a simulated map: shape, origin, step vectors, periodicity."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class GridFrame:
    """Where the voxels of a map are, without the values.

    Voxel (k, j, i) (array index order z, y, x) sits at
    ``origin + steps @ (i, j, k)`` (Å), the convention of `densrefine.types.Grid`.

    Attributes
    ----------
    shape : tuple of int
        (nz, ny, nx).
    origin : ndarray, shape (3,), float64
        Position of voxel [0, 0, 0] in Å.
    steps : ndarray, shape (3, 3), float64
        Columns are the Å vectors of one index step along x, y, z
        (``diag(voxel_size)`` for orthogonal grids).
    periodic : bool
        True when the grid samples a whole unit cell: density leaving one side
        enters at the other (crystallographic / P1 box convention). False: density
        outside the box is dropped.
    """

    shape: tuple
    origin: np.ndarray
    steps: np.ndarray
    periodic: bool = False

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "origin", np.asarray(self.origin, np.float64).reshape(3))
        object.__setattr__(self, "steps", np.asarray(self.steps, np.float64).reshape(3, 3))
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError("GridFrame.shape must be 3 positive ints (nz, ny, nx), "
                             f"got {self.shape}")

    @classmethod
    def box(cls, shape, voxel_size, origin=(0.0, 0.0, 0.0), periodic=False) -> GridFrame:
        """Orthogonal frame; ``voxel_size`` is a float or (vx, vy, vz) in Å."""
        vs = np.broadcast_to(np.asarray(voxel_size, np.float64), (3,))
        return cls(tuple(shape), origin, np.diag(vs), periodic)

    @classmethod
    def from_grid(cls, grid, periodic=None) -> GridFrame:
        """Frame of a `densrefine.types.Grid`; periodic by default when it covers its cell."""
        steps = grid.cell.orth / np.asarray(grid.full_shape, float)[None, :]
        per = grid.covers_cell if periodic is None else bool(periodic)
        return cls(grid.shape, grid.origin, steps, per)

    @property
    def shape_xyz(self) -> np.ndarray:
        """(nx, ny, nz) as an int64 array."""
        return np.array(self.shape[::-1], np.int64)

    @property
    def is_orthogonal(self) -> bool:
        off = self.steps - np.diag(np.diag(self.steps))
        return bool(np.all(np.abs(off) <= 1e-9 * np.abs(self.steps).max()))

    @property
    def voxel_size(self) -> np.ndarray:
        """Length of each step vector (x, y, z) in Å."""
        return np.linalg.norm(self.steps, axis=0)

    @property
    def plane_spacing(self) -> np.ndarray:
        """Distance (Å) between neighbouring grid planes along x, y, z (gemmi's ``spacing``)."""
        return 1.0 / np.linalg.norm(np.linalg.inv(self.steps), axis=1)

    def xyz_to_index(self, xyz) -> np.ndarray:
        """Fractional grid indices (..., 3) in (x, y, z) order of positions (..., 3) Å."""
        return (np.asarray(xyz, np.float64) - self.origin) @ np.linalg.inv(self.steps).T

    @property
    def cell_matrix(self) -> np.ndarray:
        """Columns: the box edges (Å) along x, y, z (the P1 cell a periodic grid samples)."""
        return self.steps * self.shape_xyz[None, :]
