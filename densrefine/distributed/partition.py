"""Blocks of one model for partitioned refinement: compact, of whole residues, with a halo.

A partition is a list of blocks, each the atom indices of whole residues; every atom is
in exactly one block. Three kinds (`plan_partitions`):

``chains``
    One block per chain, in every pass. Chains meet only through nonbonded contacts
    (and the odd disulfide), which the halo carries; the next pass refines each chain
    again against its neighbours' new positions.
``N`` (an integer) / ``auto``
    A regular grid of about N cells over the model's extent (``auto``: N from
    `AUTO_BLOCK_ATOMS`); a residue (or a whole chain, when every chain is below a
    quarter of the block size) goes to the cell of its centroid. Passes alternate with the
    same grid shifted by half a cell along every cut axis (residues assigned one by one),
    so each boundary of one pass lies half a cell inside a block of the next. Cells below
    `MIN_BLOCK_FRACTION` of the mean block join their nearest neighbour.

The halo of a block (`halo_of`) is every residue with an atom within ``radius`` Å of a
block atom: fixed during the block's refinement, it gives the nonbonded, link and
map terms their neighbours. `sub_model` cuts block + halo into a model of its own.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..errors import input_error
from ..types import Model

AUTO_BLOCK_ATOMS = 30000
"""Atoms per block that ``--partition auto`` aims at (a block of 30k atoms and its halo
refine in about 1 GB; `densrefine.refine` measured 2.6 GB per 100k atoms)."""
MIN_BLOCK_FRACTION = 0.35
"""Blocks smaller than this fraction of the mean block are merged into a neighbour."""
HALO = 8.0
"""Å: the default halo radius (the map term's box margin, 6 Å, plus its 2 Å pad)."""


@dataclass(frozen=True)
class Partition:
    """One pass's blocks.

    Attributes
    ----------
    label : str
        How it was made ("chains", "grid 2×2×1", "grid 2×2×1 shifted").
    blocks : tuple of ndarray
        Sorted atom indices (int64) of each block; together every atom once.
    """

    label: str
    blocks: tuple

    def block_of(self, n_atoms: int) -> np.ndarray:
        """(N,) int: the block of every atom."""
        out = np.full(n_atoms, -1, np.int64)
        for k, b in enumerate(self.blocks):
            out[b] = k
        return out


def residues(atoms):
    """Per residue: atom indices, centroid (R, 3) Å, chain (R,) and atom count (R,)."""
    ri = np.asarray(atoms.res_index)
    order = np.argsort(ri, kind="stable")
    _, start = np.unique(ri[order], return_index=True)
    groups = np.split(order, start[1:])
    xyz = np.asarray(atoms.xyz, np.float64)
    cen = np.array([xyz[g].mean(0) for g in groups]).reshape(-1, 3)
    chain = np.array([atoms.chain[g[0]] for g in groups])
    return groups, cen, chain, np.array([len(g) for g in groups])


def parse_mode(mode) -> str | int:
    """``"auto"``, ``"chains"`` or a block count ≥ 2.

    Raises
    ------
    InputError
        Anything else.
    """
    text = str(mode).strip().lower()
    if text in ("auto", "chains"):
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 2:
        raise input_error("--partition", f"{mode!r} is not auto, chains or a block count ≥ 2",
                          "give e.g. --partition auto, --partition chains or --partition 8")
    return n


def axis_counts(extent, n: int) -> np.ndarray:
    """Cells along x, y, z (≥ 1 each) for a box of ``extent`` Å: a product of at least
    ``n`` and at most about 2n, with cells as close to cubes as that allows.

    Examples
    --------
    >>> axis_counts([100, 10, 10], 4).tolist(), axis_counts([50, 50, 50], 8).tolist()
    ([4, 1, 1], [2, 2, 2])
    """
    e = np.maximum(np.asarray(extent, np.float64), 1e-3)
    best, best_score = None, np.inf
    for cx in range(1, n + 1):
        for cy in range(1, n // cx + 2):
            cz = max(1, math.ceil(n / (cx * cy)))
            c = np.array([cx, cy, cz])
            size = e / c
            score = np.log(size.max() / size.min()) + 2.0 * (c.prod() / n - 1.0)
            if score < best_score - 1e-12:
                best, best_score = c, score
    return best


def _edges(lo, hi, count, shifted):
    """Cut positions along one axis: ``count`` equal cells, or the shifted set."""
    width = (hi - lo) / count
    if not shifted:
        return lo + width * np.arange(1, count)
    if count == 1:
        return np.zeros(0)
    mids = lo + width * (np.arange(count) + 0.5)
    return mids if count == 2 else mids[1:-1]


def grid_labels(points, lo, hi, counts, shifted: bool) -> np.ndarray:
    """Cell label of each point (U, 3) on the (shifted) grid."""
    labels = np.zeros(len(points), np.int64)
    for ax in range(3):
        cuts = _edges(lo[ax], hi[ax], int(counts[ax]), shifted)
        labels = labels * (len(cuts) + 1) + np.searchsorted(cuts, points[:, ax], side="right")
    return labels


def _merge_small(labels, points, weights) -> np.ndarray:
    """Relabel 0..K-1, moving blocks below MIN_BLOCK_FRACTION of the mean to a neighbour."""
    while True:
        uniq, inv = np.unique(labels, return_inverse=True)
        w = np.bincount(inv, weights=weights)
        if len(uniq) < 2:
            return inv
        small = np.flatnonzero(w < MIN_BLOCK_FRACTION * w.mean())
        if not len(small):
            return inv
        k = small[np.argmin(w[small])]
        cen = np.array([np.average(points[inv == j], 0, weights[inv == j])
                        for j in range(len(uniq))])
        d = np.linalg.norm(cen - cen[k], axis=1)
        d[k] = np.inf
        inv[inv == k] = int(np.argmin(d))
        labels = inv


def grid_partition(atoms, n: int, shifted: bool = False, by_chain: bool = False) -> Partition:
    """About ``n`` spatially compact blocks of whole residues (or whole chains).

    Parameters
    ----------
    atoms : Atoms
    n : int
        Blocks wanted (the grid has about n cells; empty ones vanish, small ones merge).
    shifted : bool
        The half-cell-shifted grid of the alternate passes.
    by_chain : bool
        Assign whole chains by their centroid instead of residues.
    """
    groups, cen, chain, counts = residues(atoms)
    lo, hi = cen.min(0), cen.max(0) + 1e-6
    ax = axis_counts(hi - lo, n)
    if by_chain:
        names, inv = np.unique(chain, return_inverse=True)
        w = np.bincount(inv, weights=counts)
        pts = np.array([np.average(cen[inv == k], 0, counts[inv == k])
                        for k in range(len(names))])
        lab_units = _merge_small(grid_labels(pts, lo, hi, ax, shifted), pts, w)
        lab = lab_units[inv]
    else:
        lab = _merge_small(grid_labels(cen, lo, hi, ax, shifted), cen, counts)
    blocks = tuple(np.sort(np.concatenate([groups[r] for r in np.flatnonzero(lab == k)]))
                   for k in range(lab.max() + 1))
    label = "grid " + "×".join(str(int(c)) for c in ax) + (" shifted" if shifted else "") + \
        (", whole chains" if by_chain else "")
    return Partition(label, tuple(b for b in blocks if len(b)))


def chain_partition(atoms) -> Partition:
    """One block per chain (chain names in order of appearance)."""
    ch = np.asarray(atoms.chain)
    names = list(dict.fromkeys(ch.tolist()))
    return Partition("chains", tuple(np.flatnonzero(ch == c) for c in names))


def plan_partitions(model: Model, mode, passes: int = 2,
                    block_atoms: int = AUTO_BLOCK_ATOMS) -> list[Partition]:
    """The partition of every pass (see the module docstring).

    Parameters
    ----------
    model : Model
    mode : {"auto", "chains"} or int
        `parse_mode`'s answer (or what it accepts).
    passes : int
        ≥ 1.
    block_atoms : int
        ``auto``: atoms per block aimed at.

    Examples
    --------
    >>> from densrefine.build import ideal_peptide
    >>> m = ideal_peptide("A" * 40)
    >>> parts = plan_partitions(m, 2, passes=2)
    >>> [len(p.blocks) for p in parts], parts[1].label
    ([2, 3], 'grid 1×1×2 shifted')
    >>> sorted(np.concatenate(parts[0].blocks).tolist()) == list(range(len(m)))
    True
    """
    mode = parse_mode(mode)
    if passes < 1:
        raise input_error("--partition-passes", f"{passes} is not ≥ 1", "give 1 or more")
    at = model.atoms
    if mode == "chains":
        p = chain_partition(at)
        if len(p.blocks) < 2:
            raise input_error(model.path or "model", "has one chain, so --partition chains "
                              "makes one block", "use --partition auto or a block count")
        return [p] * passes
    n = mode if isinstance(mode, int) else max(2, math.ceil(len(at) / block_atoms))
    sizes = np.unique(np.asarray(at.chain), return_counts=True)[1]
    # many small chains (capsids, tiled copies): pass 1 keeps every chain whole
    whole = len(sizes) >= 2 * n and sizes.max() <= 0.25 * len(at) / n
    first = grid_partition(at, n, by_chain=bool(whole))
    second = grid_partition(at, n, shifted=True)
    return [first if k % 2 == 0 else second for k in range(passes)]


def halo_of(atoms, block: np.ndarray, radius: float = HALO) -> np.ndarray:
    """Atom indices of the residues outside ``block`` with an atom within ``radius`` Å of it."""
    from scipy.spatial import cKDTree

    xyz = np.asarray(atoms.xyz, np.float64)
    bx = xyz[block]
    lo, hi = bx.min(0) - radius, bx.max(0) + radius
    near = np.flatnonzero(np.all((xyz >= lo) & (xyz <= hi), axis=1))
    near = near[~np.isin(near, block)]
    if not len(near):
        return near
    d, _ = cKDTree(bx).query(xyz[near], distance_upper_bound=radius)
    hit = near[np.isfinite(d)]
    ri = np.asarray(atoms.res_index)
    halo = np.flatnonzero(np.isin(ri, np.unique(ri[hit])))
    return halo[~np.isin(halo, block)]


def sub_model(model: Model, idx: np.ndarray) -> Model:
    """The atoms ``idx`` (sorted) as a model of their own, residues renumbered 0..R−1.

    Its handle is a gemmi.Structure of just these atoms with the original's HELIX/SHEET
    annotation and the LINK/SSBOND connections whose two residues are both present (what
    the restraints read from it), so a block of a huge model stays small to send.
    """
    from ..io.model import structure_from_model

    at = model.atoms.select(idx)
    _, ri = np.unique(at.res_index, return_inverse=True)
    at = at.replace(res_index=ri.astype(np.int32))
    sub = dataclasses.replace(model, atoms=at, handle=None)
    if model.handle is None:
        return sub
    h = structure_from_model(sub)
    _copy_annotation(model.handle, h, at)
    return dataclasses.replace(sub, handle=h)


def _copy_annotation(st, h, at) -> None:
    have = {(c, int(n), i.strip()) for c, n, i in
            zip(at.chain.tolist(), at.res_seq.tolist(), at.icode.tolist())}
    h.helices = st.helices
    h.sheets = st.sheets
    h.connections = st.connections
    conns = h.connections
    for k in range(len(conns) - 1, -1, -1):
        c = conns[k]
        keep = all((p.chain_name, int(p.res_id.seqid.num),
                    (p.res_id.seqid.icode or " ").strip()) in have
                   for p in (c.partner1, c.partner2))
        if not keep:
            del conns[k]
