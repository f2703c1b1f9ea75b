"""Immutable core types that flow between the stages of densrefine.

Frozen dataclasses over read-only numpy arrays (no torch here); a change returns a
new object. `GridFrame` (where the voxels of a map are, without values) is the one frame
type: `Grid.frame` gives it, `densrefine.grid` and `densrefine.simulate` work on it. Tensors appear only inside simulate/scoring/refine, through one explicit
conversion.

Annotation table of `Atoms` (one row per atom site, N rows; biotite style):

=============  =========  ===========  ============================================
field          dtype      example      meaning
=============  =========  ===========  ============================================
xyz            float64    (12.1, ...)  Cartesian position, Å, shape (N, 3)
b_iso          float64    35.2         isotropic B (or B_eq from ANISOU), Å²
u_aniso        float64    (U11..U23)   ANISOU, Å², shape (N, 6) order U11 U22 U33
                                       U12 U13 U23; rows of isotropic atoms are NaN;
                                       the whole field is None when no atom has one
occ            float64    1.0          occupancy, 0..1
element        <U2        "FE"         element symbol, upper case
atomic_number  int16      26           Z (0 for unknown)
charge         int8       -1           formal charge
chain          <U8        "A"          chain name (auth)
res_name       <U5        "ASP"        residue name
res_seq        int32      42           residue number (auth)
icode          <U1        " "          insertion code (" " when none)
atom_name      <U4        "CA"         atom name
altloc         <U1        ""           alternate location ("" when none)
het            bool       False        HETATM record
res_index      int32      17           index of the residue in the model (0-based)
=============  =========  ===========  ============================================
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

B_PER_U = 8.0 * np.pi**2
"""B = 8π²U (Å²)."""


def _frozen(a, dtype=None) -> np.ndarray:
    arr = np.array(a, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class UnitCell:
    """Unit cell parameters: a, b, c in Å, alpha, beta, gamma in degrees."""

    a: float
    b: float
    c: float
    alpha: float = 90.0
    beta: float = 90.0
    gamma: float = 90.0

    @property
    def parameters(self) -> tuple[float, float, float, float, float, float]:
        return (self.a, self.b, self.c, self.alpha, self.beta, self.gamma)

    @property
    def is_orthogonal(self) -> bool:
        return all(abs(x - 90.0) < 1e-4 for x in (self.alpha, self.beta, self.gamma))

    @property
    def orth(self) -> np.ndarray:
        """Orthogonalisation matrix (3, 3), fractional → Cartesian (PDB convention)."""
        a, b, c = self.a, self.b, self.c
        al, be, ga = np.radians([self.alpha, self.beta, self.gamma])
        cos_al, cos_be, cos_ga = np.cos([al, be, ga])
        sin_ga = np.sin(ga)
        v = np.sqrt(1 - cos_al**2 - cos_be**2 - cos_ga**2 + 2 * cos_al * cos_be * cos_ga)
        return np.array([
            [a, b * cos_ga, c * cos_be],
            [0.0, b * sin_ga, c * (cos_al - cos_be * cos_ga) / sin_ga],
            [0.0, 0.0, c * v / sin_ga],
        ])

    @property
    def frac(self) -> np.ndarray:
        """Fractionalisation matrix (3, 3), Cartesian → fractional."""
        return np.linalg.inv(self.orth)

    @property
    def volume(self) -> float:
        return float(abs(np.linalg.det(self.orth)))


@dataclass(frozen=True, eq=False)
class Atoms:
    """Struct-of-arrays of atom sites; see the module docstring for the field table."""

    xyz: np.ndarray
    b_iso: np.ndarray
    occ: np.ndarray
    element: np.ndarray
    atomic_number: np.ndarray
    charge: np.ndarray
    chain: np.ndarray
    res_name: np.ndarray
    res_seq: np.ndarray
    icode: np.ndarray
    atom_name: np.ndarray
    altloc: np.ndarray
    het: np.ndarray
    res_index: np.ndarray
    u_aniso: np.ndarray | None = None

    _DTYPES = {
        "xyz": np.float64, "b_iso": np.float64, "occ": np.float64, "element": "<U2",
        "atomic_number": np.int16, "charge": np.int8, "chain": "<U8", "res_name": "<U5",
        "res_seq": np.int32, "icode": "<U1", "atom_name": "<U4", "altloc": "<U1",
        "het": bool, "res_index": np.int32, "u_aniso": np.float64,
    }

    def __post_init__(self):
        n = None
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            arr = _frozen(v, self._DTYPES[f.name])
            object.__setattr__(self, f.name, arr)
            if n is None:
                n = arr.shape[0]
            elif arr.shape[0] != n:
                raise ValueError(f"Atoms.{f.name} has {arr.shape[0]} rows, expected {n}")
        if self.xyz.ndim != 2 or self.xyz.shape[1] != 3:
            raise ValueError(f"Atoms.xyz must have shape (N, 3), got {self.xyz.shape}")

    def __len__(self) -> int:
        return int(self.xyz.shape[0])

    @property
    def is_hydrogen(self) -> np.ndarray:
        """Boolean (N,): hydrogen or deuterium."""
        return np.isin(self.element, ("H", "D"))

    def replace(self, **changes) -> "Atoms":
        """Return a copy with some fields replaced (e.g. ``xyz=new_xyz``)."""
        return dataclasses.replace(self, **changes)

    def select(self, mask) -> "Atoms":
        """Return the atoms selected by a boolean mask or index array."""
        kw = {f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[mask])
              for f in dataclasses.fields(self)}
        return Atoms(**kw)


@dataclass(frozen=True, eq=False)
class Model:
    """An atomic model: atoms of the first model plus crystal/frame metadata.

    Attributes
    ----------
    atoms : Atoms
        All atom sites of the first model, in file order.
    cell : UnitCell or None
        Unit cell from CRYST1 / _cell (None when the file has none or a 1 Å dummy cell).
    space_group : str
        Hermann–Mauguin name ("P 1" when unknown).
    path : str or None
        File the model was read from.
    handle : Any
        The gemmi.Structure it came from, so writing back keeps everything not
        refined (headers, TER records, entities, ...). Not part of equality.
    """

    atoms: Atoms
    cell: UnitCell | None = None
    space_group: str = "P 1"
    path: str | None = None
    handle: Any = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.atoms)

    def with_atoms(self, atoms: Atoms) -> "Model":
        """Return a copy with new atoms (same number and order of sites)."""
        if len(atoms) != len(self.atoms):
            raise ValueError("with_atoms needs the same number of atoms")
        return dataclasses.replace(self, atoms=atoms)


@dataclass(frozen=True, eq=False)
class Grid:
    """A map on a regular orthogonal-or-not grid, in the model frame.

    Attributes
    ----------
    values : ndarray, shape (nz, ny, nx), float32
        Map values; axis 0 runs along z, axis 2 along x (C order, x fastest).
    voxel_size : ndarray, shape (3,), float64
        Grid spacing along x, y, z in Å (cell edge / MX, MY, MZ).
    origin : ndarray, shape (3,), float64
        Cartesian position (Å) of voxel [0, 0, 0]: voxel (k, j, i) sits at
        ``origin + (i, j, k) * voxel_size`` for orthogonal cells.
    cell : UnitCell
        Unit cell of the map file (for round-trip writing and crystallographic grids).
    space_group : str
        Space group of the map ("P 1" for cryo-EM).
    full_shape : ndarray, shape (3,), int
        Sampling of the whole cell along x, y, z (MX, MY, MZ).
    start : ndarray, shape (3,), int
        Grid index of voxel [0, 0, 0] within the cell along x, y, z (NxSTART in
        x, y, z order).
    axis_order : tuple of int
        MAPC, MAPR, MAPS of the file it was read from ((1, 2, 3) when made here).
    path : str or None
        File it was read from.
    """

    values: np.ndarray
    voxel_size: np.ndarray
    origin: np.ndarray
    cell: UnitCell
    space_group: str = "P 1"
    full_shape: np.ndarray | None = None
    start: np.ndarray | None = None
    axis_order: tuple = (1, 2, 3)
    path: str | None = None

    def __post_init__(self):
        vals = np.asarray(self.values)
        if vals.ndim != 3:
            raise ValueError(f"Grid.values must be 3-D (nz, ny, nx), got {vals.shape}")
        object.__setattr__(self, "values", _frozen(vals, np.float32))
        object.__setattr__(self, "voxel_size", _frozen(self.voxel_size, np.float64))
        object.__setattr__(self, "origin", _frozen(self.origin, np.float64))
        shape_xyz = np.array(vals.shape[::-1])
        fs = shape_xyz if self.full_shape is None else self.full_shape
        object.__setattr__(self, "full_shape", _frozen(fs, np.int64))
        st = np.zeros(3, int) if self.start is None else self.start
        object.__setattr__(self, "start", _frozen(st, np.int64))
        object.__setattr__(self, "axis_order", tuple(int(x) for x in self.axis_order))

    @property
    def shape(self) -> tuple[int, int, int]:
        """(nz, ny, nx)."""
        return tuple(self.values.shape)  # type: ignore[return-value]

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        """(nx, ny, nz)."""
        return tuple(self.values.shape[::-1])  # type: ignore[return-value]

    @property
    def is_orthogonal(self) -> bool:
        return self.cell.is_orthogonal

    @property
    def covers_cell(self) -> bool:
        """True when the grid samples the whole unit cell (periodic)."""
        return bool(np.all(np.array(self.shape_xyz) == self.full_shape))

    @property
    def extent(self) -> np.ndarray:
        """Box size (3,) in Å along x, y, z (n * voxel_size)."""
        return np.array(self.shape_xyz) * self.voxel_size

    @property
    def frame(self) -> "GridFrame":
        """Where the voxels are (`GridFrame`): shape, origin, step vectors (the cell's
        axes divided by the full sampling) and periodicity (``covers_cell``)."""
        steps = self.cell.orth / np.asarray(self.full_shape, float)[None, :]
        return GridFrame(self.shape, self.origin, steps, self.covers_cell)

    def index_to_xyz(self, ijk) -> np.ndarray:
        """Cartesian positions (..., 3) of grid indices (..., 3) given as (i, j, k) = (x, y, z).

        For non-orthogonal cells the step vectors are the cell's axes divided by
        the full sampling.
        """
        return self.frame.index_to_xyz(ijk)

    def xyz_to_index(self, xyz) -> np.ndarray:
        """Fractional grid indices (..., 3) in (i, j, k) = (x, y, z) order."""
        return self.frame.xyz_to_index(xyz)

    def with_values(self, values) -> "Grid":
        """Same frame, new values (shape must match)."""
        values = np.asarray(values)
        if values.shape != self.values.shape:
            raise ValueError(f"shape {values.shape} != {self.values.shape}")
        return dataclasses.replace(self, values=values, path=None)

    @classmethod
    def box(cls, shape_zyx, voxel_size, origin) -> "Grid":
        """A P1 grid of zeros whose cell is the box itself (cryo-EM style).

        Parameters
        ----------
        shape_zyx : tuple of int
            (nz, ny, nx).
        voxel_size : float or sequence of 3 floats
            Spacing along x, y, z in Å.
        origin : sequence of 3 floats
            Position of voxel [0, 0, 0] in Å.
        """
        vs = np.broadcast_to(np.asarray(voxel_size, float), (3,))
        n_xyz = np.array(shape_zyx[::-1])
        a, b, c = n_xyz * vs
        return cls(values=np.zeros(shape_zyx, np.float32), voxel_size=vs, origin=origin,
                   cell=UnitCell(a, b, c), full_shape=n_xyz, start=np.zeros(3, int))


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
    def box(cls, shape, voxel_size, origin=(0.0, 0.0, 0.0), periodic=False) -> "GridFrame":
        """Orthogonal frame; ``voxel_size`` is a float or (vx, vy, vz) in Å."""
        vs = np.broadcast_to(np.asarray(voxel_size, np.float64), (3,))
        return cls(tuple(shape), origin, np.diag(vs), periodic)

    @classmethod
    def from_grid(cls, grid, periodic=None) -> "GridFrame":
        """Frame of a `densrefine.types.Grid`; periodic by default when it covers its cell."""
        return grid.frame if periodic is None else grid.frame.as_periodic(bool(periodic))

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
        """Fractional grid indices (..., 3) in (x, y, z) order of positions (..., 3) Å.

        The one position → index transform of densrefine (`Grid.xyz_to_index` uses it).
        """
        return (np.asarray(xyz, np.float64) - self.origin) @ np.linalg.inv(self.steps).T

    @property
    def cell_matrix(self) -> np.ndarray:
        """Columns: the box edges (Å) along x, y, z (the P1 cell a periodic grid samples)."""
        return self.steps * self.shape_xyz[None, :]

    def as_periodic(self, periodic: bool = True) -> "GridFrame":
        """The same voxels with ``periodic`` set (a P1 box for FFTs, or clipped)."""
        return GridFrame(self.shape, self.origin, self.steps, periodic)

    def index_to_xyz(self, ijk) -> np.ndarray:
        """Cartesian positions (..., 3) Å of grid indices (..., 3) in (x, y, z) order."""
        return self.origin + np.asarray(ijk, np.float64) @ self.steps.T



@dataclass(frozen=True, eq=False)
class GaussianSet:
    """Gaussian density components produced by a density model.

    Each component m contributes
    ``amplitudes[m] * (4π/widths[m])^{3/2} * exp(-4π² |r - centres[m]|² / widths[m])``
    so that its integral is ``amplitudes[m]`` (electrons for X-ray tables).

    Attributes
    ----------
    centres : ndarray (M, 3) float64, Å
    amplitudes : ndarray (M,) float64 (electrons for X-ray; table units for electron)
    widths : ndarray (M,) float64, Å² (b_k + B_atom + blur)
    atom : ndarray (M,) int64, index of the owning atom
    """

    centres: np.ndarray
    amplitudes: np.ndarray
    widths: np.ndarray
    atom: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "centres", _frozen(self.centres, np.float64))
        object.__setattr__(self, "amplitudes", _frozen(self.amplitudes, np.float64))
        object.__setattr__(self, "widths", _frozen(self.widths, np.float64))
        object.__setattr__(self, "atom", _frozen(self.atom, np.int64))

    def __len__(self) -> int:
        return int(self.amplitudes.shape[0])
