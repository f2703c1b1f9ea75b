"""χ1 rotamer scan: the ``chi1`` stage of ``fit``.

Gradient refinement cannot move a side chain between rotamers: the three staggered χ1
values (−60°, 180°, +60°) are 120° apart and separated by barriers in both the map
term and the torsion restraints. Like the density-guided rotamer fitting of Coot
(Emsley et al., Acta Cryst. D66, 486 (2010)) this stage tries, for every amino acid
with a γ atom (not Gly/Ala/Pro, no altlocs), the two other staggered χ1 values by
rotating every side-chain atom beyond Cβ rigidly about the Cα→Cβ axis (bond lengths
and angles are kept exactly) and keeps the one with the highest mean map value at
its heavy atoms, provided it beats the current one by ``margin`` (map standard
deviations over the molecular mask) and does not bring heavy atoms closer than
``CLASH`` Å to heavy atoms of other residues. The all-atom stage then polishes it.
"""
from __future__ import annotations

import numpy as np

CLASH = 2.6  # Å, heavy-atom contact that rejects a candidate rotamer
ANGLES = (2.0 * np.pi / 3.0, -2.0 * np.pi / 3.0)


def _rotate(x, centre, axis, angle):
    """Rodrigues rotation of points x (n, 3) about the line (centre, unit axis)."""
    v = x - centre
    c, s = np.cos(angle), np.sin(angle)
    return centre + v * c + np.cross(axis, v) * s + np.outer(v @ axis, axis) * (1 - c)


def _sampler(values, frame, mask):
    """Map value (in σ over ``mask``) at positions (n, 3) Å, trilinear interpolation."""
    from scipy.ndimage import map_coordinates

    v = np.asarray(values, np.float64)
    sel = v[mask] if mask is not None and mask.any() else v
    v = (v - sel.mean()) / max(sel.std(), 1e-12)

    def sample(xyz):
        idx = frame.xyz_to_index(np.asarray(xyz, np.float64))  # (n, 3) in x, y, z order
        return map_coordinates(v, idx[:, ::-1].T, order=1, mode="nearest")
    return sample


def scan_chi1(model, xyz, moving, values, frame, mask=None, margin: float = 0.1):
    """Best staggered χ1 per side chain by the map; returns new coordinates.

    Parameters
    ----------
    model : densrefine.Model
        Supplies names and residues (its coordinates are not used).
    xyz : ndarray, shape (N, 3), float
        Current coordinates (Å).
    moving : ndarray, shape (N,), bool
        Only residues whose side chain is entirely moving are scanned.
    values : ndarray, shape (nz, ny, nx)
        Map values on ``frame``.
    frame : densrefine.simulate.GridFrame
    mask : ndarray of bool like ``values``, optional
        Molecular mask over which the map is normalised.
    margin : float
        Map σ by which a new rotamer must beat the current one.

    Returns
    -------
    new_xyz : ndarray, shape (N, 3)
    n_changed : int
    n_scanned : int
    """
    from scipy.spatial import cKDTree

    from ..perturb import flip_groups

    at = model.atoms
    heavy = ~np.asarray(at.is_hydrogen)
    res = np.asarray(at.res_index)
    out = np.array(xyz, np.float64)
    sample = _sampler(values, frame, mask)
    tree = cKDTree(out[heavy])
    heavy_idx = np.flatnonzero(heavy)
    changed = scanned = 0
    for ca, cb, rot in flip_groups(model):
        if not moving[rot].all() or not moving[cb]:
            continue
        hv = rot[heavy[rot]]
        if len(hv) == 0:
            continue
        scanned += 1
        axis = out[cb] - out[ca]
        axis /= np.linalg.norm(axis)
        best, best_score = None, float(sample(out[hv]).mean()) + margin
        for ang in ANGLES:
            cand = _rotate(out[rot], out[cb], axis, ang)
            ch = cand[heavy[rot]]
            near = tree.query_ball_point(ch, CLASH)
            if any(res[heavy_idx[j]] != res[cb] for lst in near for j in lst):
                continue
            score = float(sample(ch).mean())
            if score > best_score:
                best, best_score = cand, score
        if best is not None:
            out[rot] = best
            changed += 1
    return out, changed, scanned
