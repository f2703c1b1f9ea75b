"""Difference-map peaks and map files from an `FModel`: what users read after ``rfactor``.

Maps: σA-weighted 2mFo−DFc and mFo−DFc (`densrefine.xtal.maps.map_coefficients`) over
the whole unit cell (gemmi ``transform_f_phi_to_map``, symmetry applied), sampled at
d_min/3 or finer.

Peaks (`find_peaks`): local maxima of ±map/σ (σ = rms of the map over the unit cell, the
convention of Coot and phenix) on the periodic grid (3×3×3 neighbourhood, wrapped), with
sub-voxel positions from a parabola through each maximum and its neighbours along each
grid axis. Symmetry copies of a peak are one peak: a candidate within `MERGE_DISTANCE` of
any symmetry image (lattice translations included) of a higher peak is dropped. Each peak
is then moved to the symmetry copy (operator + lattice translation) closest to the model
and labelled with its nearest atom there.
"""
from __future__ import annotations

import logging

import numpy as np

from ..io.mrc import write_map
from ..types import Grid, UnitCell
from .maps import cell_map, map_coefficients

log = logging.getLogger("densrefine")

MERGE_DISTANCE = 1.0
"""Å: peaks closer than this (over all symmetry images) count as one (the higher)."""


def cell_maps(fmodel, kinds=("2fofc", "fofc"), sample_rate: float = 3.0) -> dict:
    """σA-weighted maps over the unit cell: kind → gemmi.FloatGrid.

    Parameters
    ----------
    fmodel : densrefine.xtal.api.FModel
    kinds : sequence of {"2fofc", "fofc"}
    sample_rate : float
        Grid spacing ≤ d_min / sample_rate (gemmi).
    """

    out = {}
    for kind in kinds:
        coefs = map_coefficients(fmodel, kind)
        out[kind] = cell_map(fmodel.hkl, coefs, fmodel.refl.cell, fmodel.refl.spacegroup,
                             sample_rate=sample_rate)
    return out


def _subvoxel(a, idx):
    """Parabolic offsets (−0.5..0.5 voxel) of maxima ``idx`` (m, 3) of periodic array ``a``."""
    shape = np.array(a.shape)
    off = np.zeros(idx.shape, np.float64)
    for ax in range(3):
        e = np.zeros(3, np.int64)
        e[ax] = 1
        lo = a[tuple(((idx - e) % shape).T)]
        hi = a[tuple(((idx + e) % shape).T)]
        c = a[tuple(idx.T)]
        den = lo - 2 * c + hi
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(den < 0, 0.5 * (lo - hi) / den, 0.0)
        off[:, ax] = np.clip(d, -0.5, 0.5)
    return off


def _images(frac, spacegroup):
    """All symmetry images of fractional points (m, 3) → (n_ops, m, 3), wrapped to [0, 1)."""
    ops = list(spacegroup.operations())
    rot = np.array([op.rot for op in ops], np.float64) / ops[0].DEN
    tran = np.array([op.tran for op in ops], np.float64) / ops[0].DEN
    im = np.einsum("oij,mj->omi", rot, frac) + tran[:, None, :]
    return im - np.floor(im)


def _min_image_dist(frac_a, frac_b, orth):
    """Shortest lattice distance (Å) between each of a (m, 3) and each of b (k, 3) → (m, k)."""
    d = frac_a[:, None, :] - frac_b[None, :, :]
    d -= np.round(d)
    return np.linalg.norm(d @ orth.T, axis=-1)


def _symmetry_unique(frac, cell, spacegroup, merge):
    """Indices of ``frac`` (sorted by height) that are not symmetry copies of earlier ones."""
    orth = np.array(cell.orth.mat.tolist())
    kept, kept_images = [], np.zeros((0, 3))
    for i, f in enumerate(frac):
        if len(kept_images) and _min_image_dist(f[None], kept_images, orth).min() < merge:
            continue
        kept.append(i)
        kept_images = np.concatenate([kept_images, _images(f[None], spacegroup)[:, 0]])
    return np.array(kept, np.int64)


def _place_near_model(frac, model, cell, spacegroup):
    """Cartesian position of the symmetry copy of each peak nearest the model, the distance
    (Å) and the index of that nearest atom."""
    from scipy.spatial import cKDTree

    orth = np.array(cell.orth.mat.tolist())
    fracm = np.asarray(model.atoms.xyz) @ np.array(cell.frac.mat.tolist()).T
    centre = np.floor(fracm.mean(0))                     # the model's own cell copy
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
    tree = cKDTree(model.atoms.xyz)
    im = _images(frac, spacegroup)                                    # (n_ops, m, 3)
    cand = im[:, :, None, :] + centre + shifts[None, None]            # (n_ops, m, 27, 3)
    cand = np.moveaxis(cand, 1, 0).reshape(len(frac), -1, 3) @ orth.T  # (m, n_ops·27, 3)
    dist, atom = tree.query(cand.reshape(-1, 3))
    dist, atom = dist.reshape(cand.shape[:2]), atom.reshape(cand.shape[:2])
    best = dist.argmin(1)
    rows = np.arange(len(frac))
    return cand[rows, best], dist[rows, best], atom[rows, best]


def _atom_label(model, i) -> str:
    a = model.atoms
    return f"{a.chain[i]}/{a.res_name[i]} {int(a.res_seq[i])}{a.icode[i].strip()}/{a.atom_name[i]}"


def find_peaks(fgrid, model, cell, spacegroup, *, n: int = 20, sign: int = 1,
               threshold: float = 3.0, merge: float = MERGE_DISTANCE) -> list[dict]:
    """The ``n`` highest symmetry-unique peaks of ``sign``·map above ``threshold`` σ.

    Parameters
    ----------
    fgrid : gemmi.FloatGrid
        A map over the whole unit cell (e.g. from `cell_maps`).
    model : densrefine.Model
        Peaks are placed next to it (nearest symmetry copy) and labelled by its atoms.
    cell, spacegroup : gemmi.UnitCell, gemmi.SpaceGroup
    n : int
        How many peaks at most.
    sign : {1, -1}
        1: positive peaks (missing atoms), −1: negative (atoms to remove).
    threshold : float
        Lowest peak height, in σ (rms of the map over the cell).
    merge : float
        Å; see `MERGE_DISTANCE`.

    Returns
    -------
    list of dict
        Highest first: ``height_sigma`` (signed, σ), ``height`` (map units, e/Å³),
        ``xyz`` (Å, next to the model), ``nearest_atom`` (chain/residue number/atom),
        ``distance`` (Å to that atom).
    """
    from scipy.ndimage import maximum_filter

    arr = np.array(fgrid, copy=False).astype(np.float64)          # (nx, ny, nz)
    sigma = float(np.sqrt(np.mean((arr - arr.mean()) ** 2)))
    a = sign * (arr - arr.mean()) / sigma
    is_max = (a == maximum_filter(a, size=3, mode="wrap")) & (a >= threshold)
    idx = np.argwhere(is_max)
    if not len(idx):
        return []
    order = np.argsort(-a[tuple(idx.T)])[: max(50, 20 * n) * len(spacegroup.operations())]
    idx = idx[order]
    frac = (idx + _subvoxel(a, idx)) / np.array(a.shape)
    keep = _symmetry_unique(frac, cell, spacegroup, merge)[:n]
    xyz, dist, atom = _place_near_model(frac[keep], model, cell, spacegroup)
    out = []
    for k, i in enumerate(keep):
        h = a[tuple(idx[i])]
        out.append({"height_sigma": float(sign * h), "height": float(sign * h * sigma),
                    "xyz": [round(float(x), 3) for x in xyz[k]],
                    "nearest_atom": _atom_label(model, atom[k]), "distance": float(dist[k])})
    return out


def difference_peaks(fmodel, model, *, n: int = 20, threshold: float = 3.0,
                     maps: dict | None = None) -> dict:
    """Positive and negative mFo−DFc peaks of ``model`` (see `find_peaks`).

    Returns
    -------
    dict
        ``positive``, ``negative`` (lists of peak dicts), ``sigma`` (map rms, e/Å³),
        ``method`` (one sentence).
    """
    fofc = (maps or cell_maps(fmodel, ("fofc",)))["fofc"]
    cell, sg = fmodel.refl.cell, fmodel.refl.spacegroup
    pos = find_peaks(fofc, model, cell, sg, n=n, sign=1, threshold=threshold)
    neg = find_peaks(fofc, model, cell, sg, n=n, sign=-1, threshold=threshold)
    arr = np.array(fofc, copy=False)
    method = (f"sigmaA-weighted mFo-DFc (Read 1986) over the unit cell, grid "
              f"{'x'.join(map(str, arr.shape))}; peaks >= {threshold:g} sigma (map rms), "
              f"symmetry-unique within {MERGE_DISTANCE:g} A, placed next to the model")
    log.info("Difference peaks: %s; %d positive (highest %s), %d negative (deepest %s)",
             method, len(pos), f"{pos[0]['height_sigma']:.1f} sigma" if pos else "-",
             len(neg), f"{neg[0]['height_sigma']:.1f} sigma" if neg else "-")
    return {"positive": pos, "negative": neg, "sigma": float(arr.std()), "method": method}


def write_cell_maps(maps: dict, fmodel, prefix: str, *, inputs=()) -> list[str]:
    """Write each map of `cell_maps` as ``PREFIX_2fofc.ccp4`` / ``PREFIX_fofc.ccp4``.

    One unit cell, origin 0, the data's space group in the header (CCP4/MRC2014 through
    `densrefine.io.mrc.write_map`, atomically). Returns the paths written.
    """

    cell, sg = fmodel.refl.cell, fmodel.refl.spacegroup
    uc = UnitCell(*cell.parameters)
    paths = []
    for kind, g in maps.items():
        arr = np.ascontiguousarray(np.array(g, copy=False).transpose(2, 1, 0))  # (z, y, x)
        n = np.array(arr.shape[::-1])
        grid = Grid(arr, np.array([cell.a, cell.b, cell.c]) / n, np.zeros(3), uc,
                    space_group=sg.hm, full_shape=n, start=np.zeros(3, int))
        paths.append(write_map(grid, f"{prefix}_{kind}.ccp4", inputs=inputs))
    return paths
