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


def _names_and_amino_acids(atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """Stripped atom names (N,) and whether each atom's residue is an amino acid (N,)."""
    names = np.char.strip(atoms.atom_name.astype(str))
    res, inv = np.unique(np.asarray(atoms.res_name).astype(str), return_inverse=True)
    return names, np.array([_is_amino_acid(r.strip()) for r in res], bool)[inv.ravel()]


def main_chain_selection(atoms: Atoms) -> np.ndarray:
    """Boolean (N,): main-chain atoms (N, CA, C, O, CB of amino-acid residues)."""
    names, aa = _names_and_amino_acids(atoms)
    return aa & np.isin(names, MAIN_CHAIN_NAMES)


def side_chain_beyond_cb(atoms: Atoms) -> np.ndarray:
    """Boolean (N,): atoms of amino-acid residues other than N, CA, C, O, CB (and OXT).

    Hydrogens count with their residue; atoms of other residues (nucleic acids,
    ligands, water) are never selected.
    """
    names, aa = _names_and_amino_acids(atoms)
    return aa & ~np.isin(names, MAIN_CHAIN_NAMES + ("OXT",))


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
    e, m = _centred(emap), _centred(mmap)
    g = np.asarray(group_of_site)[site]
    keep = g >= 0
    key = np.unique(g[keep].astype(np.int64) * e.size + voxel[keep])
    return _keys_cc(key, e, m, n_groups)


def _centred(values) -> np.ndarray:
    """Flat float64 copy minus its mean (keeps the one-pass variance sums well conditioned)."""
    v = np.asarray(values, np.float64).ravel()
    return v - v.mean()


def _keys_cc(key, e, m, n_groups: int):
    """Per-group CC from sorted unique keys ``group · e.size + voxel`` (see `group_cc`)."""
    gg = key // e.size
    vv = key - gg * e.size
    return _groups_cc(gg, e[vv], m[vv], n_groups)


def _groups_cc(gg, x, y, n_groups: int):
    """Per-group Pearson CC of the values ``x``, ``y`` (centred maps) of group ``gg``."""
    n = np.bincount(gg, minlength=n_groups).astype(np.float64)
    sx, sy, sxx, syy, sxy = (np.bincount(gg, w, minlength=n_groups)
                             for w in (x, y, x * x, y * y, x * y))
    with np.errstate(divide="ignore", invalid="ignore"):
        vx = sxx - sx * sx / n
        vy = syy - sy * sy / n
        cc = (sxy - sx * sy / n) / np.sqrt(vx * vy)
    cc[(n < 2) | ~(vx > 0) | ~(vy > 0)] = np.nan
    return cc, n.astype(np.int64)


def union_keys(site, voxel, group_of_site, flags_of_site, size: int):
    """Sorted unique (group, voxel) keys with the OR of the flags of the sites covering them.

    One stable sort of ``(group · size + voxel) · 4 + flags`` replaces one `np.unique`
    per subset: the keys of a subset of sites (e.g. main-chain atoms) are the unique
    keys whose OR-ed flags have that subset's bit, in the same ascending order.

    Parameters
    ----------
    site, voxel : ndarray (M,), int64
        (site, flat voxel) pairs from `masks.site_voxels`.
    group_of_site : ndarray (N_sites,), int
        Group index (>= 0) of each site.
    flags_of_site : ndarray (N_sites,), int
        Two flag bits (values 0..3) per site.
    size : int
        Number of voxels of the map.

    Returns
    -------
    key : ndarray (K,), int64
        Ascending unique ``group · size + voxel``.
    flags : ndarray (K,), int64
        Bitwise OR of the flags of the sites of that group covering that voxel.
    """
    g = np.asarray(group_of_site, np.int64)[site]
    f = np.asarray(flags_of_site, np.int64)[site]
    # the voxels of a site come in ascending runs and a group's sites are usually
    # contiguous: the stable sort (timsort) merges those runs, far faster than np.unique
    code = np.sort((g * size + voxel) * 4 + f, kind="stable")
    key = code >> 2
    if len(key) == 0:
        return key, key.copy()
    start = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    return key[start], np.bitwise_or.reduceat(code & 3, start)


def selection_cc(site, voxel, selected, emap, mmap) -> float | None:
    """CC over the union of the voxels of the selected sites (None when none selected)."""
    selected = np.asarray(selected, bool)
    if not selected.any():
        return None
    e = np.asarray(emap).ravel()
    union = np.zeros(e.size, bool)  # a dense mask: voxels once each, in ascending order
    union[voxel[selected[site]]] = True
    return pearson(e[union], np.asarray(mmap).ravel()[union])


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
    e, m = _centred(emap), _centred(mmap)
    key, flags = union_keys(site, voxel, inv, mc.astype(np.int64) | (side.astype(np.int64) << 1),
                            e.size)
    gg = key // e.size  # one gather of the map values serves all three CCs
    vv = key - gg * e.size
    x, y = e[vv], m[vv]
    cc_all, _ = _groups_cc(gg, x, y, n_res)
    cc_mc, _ = _groups_cc(*(v[flags & 1 > 0] for v in (gg, x, y)), n_res)
    cc_sc, _ = _groups_cc(*(v[flags & 2 > 0] for v in (gg, x, y)), n_res)
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
