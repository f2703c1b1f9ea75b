"""Planning a splat: cutoff radii, per-atom boxes, and the cell batches of the fast path.

Nothing here is differentiable: it decides which voxels each atom touches (integer
bookkeeping, numpy on the CPU), the kernels then compute values and gradients.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FOUR_PI = 4.0 * np.pi
FOUR_PI2 = 4.0 * np.pi**2


def cutoff_radius(amp, width, cutoff: float = 1e-5, iterations: int = 4) -> np.ndarray:
    """Radius (Å) beyond which an atom's density stays below ``cutoff``.

    Solves ``Σ_k |a_k| (4π/w_k)^{3/2} exp(-4π² r²/w_k) = cutoff`` vectorised over
    atoms (gemmi's ``determine_cutoff_radius`` does the same per atom with a secant
    step). Like gemmi, the amplitude excludes occupancy, and the level is in the
    table's density units (e/Å³ for X-ray). In t = r² the log of the sum is convex
    and decreasing, so Newton's method started at the largest single-term root (a
    lower bound of the answer) converges monotonically from below.

    Parameters
    ----------
    amp : array_like, shape (N, K)
        Gaussian amplitudes (table a_k; absolute values are used, so a negative
        term can only enlarge the radius).
    width : array_like, shape (N, K)
        Gaussian widths w_k = b_k + B + blur in Å² (must be > 0).
    cutoff : float
        Density level.
    iterations : int
        Newton steps (3 already reach 1e-12 Å for the tables' coefficients).

    Returns
    -------
    ndarray, shape (N,), float64
        0 for atoms whose peak density is below ``cutoff``.

    Examples
    --------
    >>> r = cutoff_radius([[1.0]], [[50.0]], 1e-5)
    >>> rho = (4 * np.pi / 50) ** 1.5 * np.exp(-4 * np.pi**2 * r[0]**2 / 50)
    >>> bool(abs(rho - 1e-5) < 1e-12)
    True
    """
    a = np.abs(np.asarray(amp, np.float64))
    w = np.asarray(width, np.float64)
    c = a * (FOUR_PI / w) ** 1.5
    beta = FOUR_PI2 / w
    with np.errstate(divide="ignore"):
        t = np.clip(np.log(np.maximum(c, 1e-300) / cutoff) / beta, 0, None).max(1)
    log_cut = np.log(cutoff)
    for _ in range(iterations):
        e = c * np.exp(-beta * t[:, None])
        rho = e.sum(1)
        slope = -(beta * e).sum(1) / np.maximum(rho, 1e-300)       # d log ρ / dt
        step = (np.log(np.maximum(rho, 1e-300)) - log_cut) / np.maximum(-slope, 1e-300)
        t = t + np.where(rho > cutoff, step, 0.0)
    return np.sqrt(t)


@dataclass
class Boxes:
    """Per-atom cubes of voxels: anchor (nearest voxel) and half-widths."""

    anchor: np.ndarray      # (N, 3) int64, round(u) before periodic wrapping, x y z
    half: np.ndarray        # (N, 3) int64, half-width R per axis (voxels)
    keep: np.ndarray        # (N,) bool, box intersects the grid (always True if periodic)


def make_boxes(u: np.ndarray, radius: np.ndarray, frame) -> Boxes:
    """Anchors and half-widths ``ceil(radius / plane spacing)`` (gemmi's du, dv, dw)."""
    n = frame.shape_xyz
    anchor = np.rint(u).astype(np.int64)
    half = np.ceil(radius[:, None] / frame.plane_spacing[None, :] - 1e-9).astype(np.int64)
    half = np.maximum(half, 0)
    if frame.periodic:
        half = np.minimum(half, n[None, :])
        keep = np.ones(len(u), bool)
    else:
        keep = np.all((anchor + half >= 0) & (anchor - half <= n - 1), axis=1)
    return Boxes(anchor, half, keep)


SIZE_RATIO = 1.5
"""Cells whose atom counts differ by less than this factor share batches (padding vs calls)."""


@dataclass
class CellBatch:
    """Atoms of a few cells of one window class, laid out as (cells, slots) for one matmul."""

    atoms: np.ndarray       # (n,) atom indices
    slot: np.ndarray        # (n,) position in the flattened (B * nmax) slot array
    offset: np.ndarray      # (n, 3) box start inside its cell (voxels), x y z
    cells: np.ndarray       # (B, 3) cell index x y z
    nmax: int
    cache: dict = field(default_factory=dict)   # device tensors, made on first use


@dataclass
class CellClass:
    """Atoms whose cubes fit windows of ``nbw`` cells per axis."""

    nbw: np.ndarray         # (3,) x y z
    batches: list = field(default_factory=list)


@dataclass
class CellPlan:
    """Fast-path layout shared by all classes: cells of L voxels, padded offset p0.

    Padded coordinate p = grid index + p0; cell c holds the atoms whose cube starts
    in [cL, cL + L); its window covers [cL, cL + nbw·L).
    """

    cell: np.ndarray        # (3,) L, x y z
    p0: np.ndarray          # (3,) padding before the grid, x y z
    nblocks: np.ndarray     # (3,) cells per axis of the padded accumulator, x y z
    classes: list = field(default_factory=list)


def cell_plan(anchor, half, atoms, frame, k: int, budget: int, cell) -> CellPlan:
    """Bin atoms into cells of ``cell`` voxels and cut them into batches.

    Parameters
    ----------
    anchor, half : ndarray (N, 3) int64
        Anchors (unwrapped; wrapped here when periodic) and half-widths of all atoms.
    atoms : ndarray (n,) int64
        Atoms handled by the fast path.
    frame : GridFrame
    k : int
        Gaussians per atom.
    budget : int
        Max elements of the (B, Wz, Wy, nmax·K) product tensor of one batch.
    cell : array_like (3,)
        L per axis; windows have nbw = 1 + ceil(2R/L) cells, so L ≈ the typical R
        (nbw = 3) balances wasted window corners against matrix-product length.
    """
    n = frame.shape_xyz
    L = np.asarray(cell, np.int64)
    a = anchor[atoms] % n if frame.periodic else anchor[atoms]
    h = half[atoms]
    p0 = 2 * h.max(0)
    start = a + p0 - h                                   # >= 0: cube start, padded coords
    c = start // L
    nbw = 1 + -(-2 * h // L)
    nblocks = np.maximum((c + nbw).max(0), -(-(n + p0) // L))
    plan = CellPlan(L, p0, nblocks)
    code = (nbw[:, 2] * 64 + nbw[:, 1]) * 64 + nbw[:, 0]          # nbw ≤ 63 per axis
    present = np.flatnonzero(np.bincount(code))
    for cc in present:
        sel = np.flatnonzero(code == cc)
        key = nbw[sel[0]]
        win = key * L
        klass = CellClass(key)
        klass.batches = _batches(atoms[sel], c[sel], start[sel] - c[sel] * L, nblocks, key,
                                 max(1, budget // int(win[2] * win[1] * k)))
        plan.classes.append(klass)
    return plan


def _batches(atoms, c, offset, nblocks, nbw, slots_per_batch):
    """Group atoms by cell, cells by size, and cut batches of ≤ slots_per_batch slots.

    Block ids of a batch are ordered (cell, dz, dy, dx).
    """
    key = (c[:, 2] * nblocks[1] + c[:, 1]) * nblocks[0] + c[:, 0]
    order = np.argsort(key)
    ks = key[order]
    first = np.flatnonzero(np.concatenate([[True], ks[1:] != ks[:-1]]))
    count = np.diff(np.append(first, len(ks)))
    cell_of = np.repeat(np.arange(len(count)), count)            # per sorted atom
    within = np.arange(len(order)) - first[cell_of]
    # cells of similar size (within ~15 %) go together; inside a size class they stay in
    # grid order, so a batch's windows land close together in the accumulator
    bucket = np.floor(np.log(count) / np.log(SIZE_RATIO)).astype(np.int64)
    by_size = np.argsort(-bucket, kind="stable")
    rank = np.empty_like(by_size)
    rank[by_size] = np.arange(len(by_size))
    csize = count[by_size]
    bsorted = bucket[by_size]
    bounds, nmaxes = [0], []
    while bounds[-1] < len(csize):
        i = bounds[-1]
        end = int(np.searchsorted(-bsorted, -bsorted[i], side="right"))  # end of size class
        cap = int(csize[i:end].max())
        j = i + max(1, min(end - i, slots_per_batch // cap))
        bounds.append(j)
        nmaxes.append(int(csize[i:j].max()))
    bounds, nmaxes = np.asarray(bounds), np.asarray(nmaxes)
    r = rank[cell_of]
    bi = np.searchsorted(bounds, r, side="right") - 1
    slot = (r - bounds[bi]) * nmaxes[bi] + within
    # atoms in rank order without another sort: position = start of its cell's rank + within
    rank_start = np.concatenate([[0], np.cumsum(csize)])
    perm = np.empty_like(order)
    perm[rank_start[r] + within] = np.arange(len(order))
    split = rank_start[bounds[1:-1]]
    cell_xyz = c[order[first]]                                    # per unique cell
    out = []
    for b, p in enumerate(np.split(perm, split)):
        cells = cell_xyz[by_size[bounds[b]:bounds[b + 1]]]
        ix = order[p]
        out.append(CellBatch(atoms[ix], slot[p], offset[ix], cells, int(nmaxes[b])))
    return out


def box_groups(half: np.ndarray, atoms: np.ndarray, budget: int) -> list:
    """Chunks of atoms with equal half-widths, each with ≤ ``budget`` box voxels."""
    out = []
    if len(atoms) == 0:
        return out
    h = half[atoms]
    uniq, inv = np.unique(h, axis=0, return_inverse=True)
    for g, r in enumerate(uniq):
        sel = atoms[inv.reshape(-1) == g]
        vox = int(np.prod(2 * r + 1))
        step = max(1, budget // vox)
        out.extend((r, sel[i:i + step]) for i in range(0, len(sel), step))
    return out
