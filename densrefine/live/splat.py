"""Density of a few atoms on small boxes of a large grid (the same voxels, the same values).

`local_density` splats atoms with `densrefine.simulate.simulate_tensor` onto boxes
whose voxels coincide with voxels of ``frame`` (origin shifted by whole steps). Each atom
covers the cube `simulate_tensor` gives it on the full grid, so the box values are
exactly the atom's share of a full splat (`densrefine.simulate.simulate_tensor`
for density models without a grid part, e.g. "iam"), and the difference of the boxes before and
after a move is the exact change of the full grid.
"""
from __future__ import annotations

import numpy as np
import torch

from ..simulate.api import atom_radii
from ..simulate.kernel import splat
from ..types import GridFrame

MAX_BOX = 72
"""Largest box edge (voxels) before the atoms are split into clusters."""
CLUSTER = 32
"""Cluster edge (voxels) when splitting."""


def _clusters(u, half):
    """Groups of atom indices whose boxes stay compact."""
    lo, hi = (u - half).min(0), (u + half).max(0)
    if np.all(hi - lo <= MAX_BOX):
        return [np.arange(len(u))]
    key = np.floor(u / CLUSTER).astype(np.int64)
    _, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.ravel()
    return [np.flatnonzero(inv == g) for g in range(int(inv.max()) + 1)]


def local_density(frame: GridFrame, xyz, b_iso, occ, terms, *, blur: float, cutoff: float):
    """Density of ``xyz`` atoms on boxes aligned with ``frame``'s voxels.

    Parameters
    ----------
    frame : GridFrame
        The full grid (its ``periodic`` flag is ignored: boxes may run past its edges;
        callers wrap the indices).
    xyz : ndarray, shape (k, 3)
        Positions, Å.
    b_iso, occ : ndarray, shape (k,)
        B (Å²) and occupancy (negative occupancy subtracts the atom).
    terms : DensityTerms
        The atoms' terms (k rows).
    blur, cutoff : float
        As in `simulate_tensor`.

    Returns
    -------
    list of (values, lo)
        values (bz, by, bx) float64 and lo, the absolute (x, y, z) index (int64, may be
        negative or past the grid) of the box's first voxel.
    """
    xyz = np.asarray(xyz, np.float64).reshape(-1, 3)
    if not len(xyz):
        return []
    t = lambda a: torch.as_tensor(np.asarray(a, np.float64))
    b = np.asarray(b_iso, np.float64)
    width = t(terms.b + b[:, None] + blur)
    radius = atom_radii(terms.a, width, cutoff)
    u = frame.xyz_to_index(xyz)
    half = np.ceil(radius[:, None] / frame.plane_spacing[None, :] - 1e-9).astype(np.int64) + 1
    anchor = np.rint(u).astype(np.int64)
    out = []
    for idx in _clusters(u, half):
        lo = (anchor[idx] - half[idx]).min(0)
        hi = (anchor[idx] + half[idx]).max(0)
        shape = tuple(int(s) for s in (hi - lo + 1)[::-1])
        box = GridFrame(shape, frame.origin + frame.steps @ lo.astype(np.float64),
                        frame.steps, periodic=False)
        sel = terms.select(idx)
        centres, amp, wid = sel.components(t(xyz[idx]), t(b[idx]),
                                           t(np.asarray(occ, np.float64)[idx]), blur)
        rho = splat(centres, amp, wid, box, radius=radius[idx], cutoff=cutoff)
        out.append((rho.detach().numpy().astype(np.float64, copy=False), lo))
    return out
