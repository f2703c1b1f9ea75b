"""Local CCs around groups of atoms: main chain, side chain, per residue.

As in cctbx ``mmtbx.maps.map_model_cc`` (Afonine et al. 2018, Acta Cryst. D74, 814):
the CC of a group of atoms is the Pearson CC between the map and the model map over
the union of the voxels within the atom radius (`masks.atom_radius`) of the group's
atoms (``maptbx.grid_indices_around_sites``; see `masks.site_voxels` for periodicity).

* Main chain: atoms named N, CA, C, O, CB of amino-acid residues (standard or
  modified, by gemmi's residue table; cctbx: ``protein and (name C or name N or name
  CA or name O or name CB)``).
* Side chain (whole model, as in cctbx): every other atom — hydrogens, ligands,
  waters and nucleic acids included.
* Per residue: all atoms of the residue (every altloc, hydrogens included); its main
  chain as above; its side chain = its non-hydrogen atoms that are not main chain
  (None for Gly, for residues without such atoms, or when no voxel is in the box).
"""
from __future__ import annotations

import functools

import numpy as np

from ..types import Atoms, Grid
from .cc import pearson
from .masks import site_voxels

MAIN_CHAIN_NAMES = ("N", "CA", "C", "O", "CB")


@functools.lru_cache(maxsize=4096)
def _is_amino_acid(res_name: str) -> bool:
    import gemmi

    info = gemmi.find_tabulated_residue(res_name)
    return bool(info is not None and info.is_amino_acid())


def main_chain_selection(atoms: Atoms) -> np.ndarray:
    """Boolean (N,): main-chain atoms (N, CA, C, O, CB of amino-acid residues)."""
    names = np.char.strip(atoms.atom_name.astype(str))
    aa = np.array([_is_amino_acid(str(r).strip()) for r in atoms.res_name], bool)
    return aa & np.isin(names, MAIN_CHAIN_NAMES)


def group_cc(site, voxel, group_of_site, n_groups: int, emap, mmap):
    """Pearson CC per group over the union of its sites' voxels.

    Parameters
    ----------
    site, voxel : ndarray (M,), int64
        (site, flat voxel) pairs from `masks.site_voxels`.
    group_of_site : ndarray (N_sites,), int
        Group index of each site; negative excludes the site.
    n_groups : int
        Number of groups.
    emap, mmap : ndarray
        Map and model map (any shape; flattened C-order like the voxel indices).

    Returns
    -------
    cc : ndarray (n_groups,), float64
        NaN for groups with fewer than 2 voxels or a flat map there.
    n_voxels : ndarray (n_groups,), int64
    """
    e = np.asarray(emap, np.float64).ravel()
    m = np.asarray(mmap, np.float64).ravel()
    e = e - e.mean()  # centre first: keeps the one-pass variance sums well conditioned
    m = m - m.mean()
    g = np.asarray(group_of_site)[site]
    keep = g >= 0
    key = np.unique(g[keep].astype(np.int64) * e.size + voxel[keep])
    gg, vv = key // e.size, key % e.size
    x, y = e[vv], m[vv]
    n = np.bincount(gg, minlength=n_groups).astype(np.float64)
    sums = [np.bincount(gg, w, minlength=n_groups) for w in (x, y, x * x, y * y, x * y)]
    sx, sy, sxx, syy, sxy = sums
    with np.errstate(divide="ignore", invalid="ignore"):
        vx = sxx - sx * sx / n
        vy = syy - sy * sy / n
        cc = (sxy - sx * sy / n) / np.sqrt(vx * vy)
    cc[(n < 2) | ~(vx > 0) | ~(vy > 0)] = np.nan
    return cc, n.astype(np.int64)


def selection_cc(site, voxel, selected, emap, mmap) -> float | None:
    """CC over the union of the voxels of the selected sites (None when none selected)."""
    selected = np.asarray(selected, bool)
    if not selected.any():
        return None
    vox = np.unique(voxel[selected[site]])
    e = np.asarray(emap).ravel()[vox]
    m = np.asarray(mmap).ravel()[vox]
    return pearson(e, m)


def residue_scores(atoms: Atoms, grid: Grid, mmap, radius: float, *,
                   periodic: bool = False, per_residue: bool = True) -> dict:
    """Main-chain, side-chain and per-residue CCs of a model against a map.

    Parameters
    ----------
    atoms : Atoms
        The model's atoms (model frame, Å).
    grid : Grid
        The experimental map.
    mmap : ndarray, shape grid.shape
        Model map on the same grid.
    radius : float
        Atom radius, Å (`masks.atom_radius`).
    periodic : bool
        Wrap voxels around the box like cctbx (default False: voxels outside the box
        are dropped).
    per_residue : bool
        Also compute the per-residue list.

    Returns
    -------
    dict
        ``cc_main_chain``, ``cc_side_chain`` (float or None) and ``residues`` (list of
        dicts: chain, res_seq, icode, res_name, cc, cc_main, cc_side, n_atoms; CCs are
        None where undefined).
    """
    emap = grid.values
    site, voxel = site_voxels(atoms.xyz, grid, radius, periodic=periodic)
    mc = main_chain_selection(atoms)
    out = {"cc_main_chain": selection_cc(site, voxel, mc, emap, mmap),
           "cc_side_chain": selection_cc(site, voxel, ~mc, emap, mmap), "residues": []}
    if not per_residue or len(atoms) == 0:
        return out
    rid = np.unique(atoms.res_index, return_inverse=True, return_index=True)
    _, first, inv = rid
    n_res = len(first)
    side = ~mc & ~atoms.is_hydrogen
    cc_all, _ = group_cc(site, voxel, inv, n_res, emap, mmap)
    cc_mc, _ = group_cc(site, voxel, np.where(mc, inv, -1), n_res, emap, mmap)
    cc_sc, _ = group_cc(site, voxel, np.where(side, inv, -1), n_res, emap, mmap)
    n_atoms = np.bincount(inv, minlength=n_res)

    def val(x):
        return None if not np.isfinite(x) else float(x)

    order = np.argsort(first, kind="stable")  # file order of residues
    for r in order:
        i = first[r]
        out["residues"].append({
            "chain": str(atoms.chain[i]), "res_seq": int(atoms.res_seq[i]),
            "icode": str(atoms.icode[i]).strip(), "res_name": str(atoms.res_name[i]),
            "cc": val(cc_all[r]), "cc_main": val(cc_mc[r]), "cc_side": val(cc_sc[r]),
            "n_atoms": int(n_atoms[r])})
    return out
