"""Secondary-structure rigid groups for the ``sse`` stage of ``fit``.

Real starting models (homology models, fits into a neighbouring map, models from a
lower-resolution map) are wrong mostly by rigid moves of helices, strands and loops;
a rigid-body pass over these elements fixes such errors with a handful of parameters
per element before the all-atom stage, which only sees the map gradient within about
half the resolution.

Helices and strands are assigned from the Cα trace alone with
`densrefine.restraints.chains.secondary_structure` (Cα(i)–Cα(i+3) and Cα(i)–Cα(i+2)
distance windows; Levitt & Greer, J. Mol. Biol. 114, 181 (1977)); the remaining residues form
loop segments of at most ``max_loop`` residues, and loop pieces shorter than
``min_loop`` residues join the preceding element of the same fragment (a rigid group of
one or two residues is poorly determined by the map). Residues without a Cα (ligands,
waters, ions, nucleotides) join the group of the nearest Cα residue.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..restraints.chains import ca_atoms, label_runs, secondary_structure, trace_fragments

def _segment_labels(ss, max_loop, min_loop):
    """Segment number (from 0) of each residue of one fragment with SS string ``ss``."""
    pieces = []
    for a, b, lab in label_runs(ss):
        step = max_loop if lab == "C" else b - a
        pieces.extend((s, min(s + step, b), lab) for s in range(a, b, step))
    seg = np.zeros(len(ss), np.int64)
    k = -1
    for a, b, lab in pieces:
        if not (lab == "C" and b - a < min_loop and k >= 0):
            k += 1
        seg[a:b] = k
    return seg


def sse_groups(model, moving=None, *, max_loop: int = 8, min_loop: int = 3):
    """Rigid groups of helices, strands and loop segments.

    Parameters
    ----------
    model : densrefine.Model
    moving : ndarray, shape (N,), bool, optional
        Only these atoms are put in groups (default: all).
    max_loop, min_loop : int
        Longest loop segment; shorter loop pieces join the preceding element.

    Returns
    -------
    groups : list of ndarray of int
        Atom indices of each group (disjoint, non-empty, only moving atoms).
    labels : list of str
        "H", "E" or "C" per group (of its first residue).
    """
    at = model.atoms
    n = len(at)
    moving = np.ones(n, bool) if moving is None else np.asarray(moving, bool)
    res = np.asarray(at.res_index)
    ca_idx = ca_atoms(at)                                   # one Cα per residue
    ca_res, ca_xyz = res[ca_idx], np.asarray(at.xyz, np.float64)[ca_idx]
    chain = np.asarray(at.chain).astype(str)
    seg_of_res = np.full(int(res.max()) + 1 if n else 0, -1, np.int64)
    label_of_seg = []
    frags = trace_fragments(ca_xyz, np.ones(len(ca_idx), np.int8), chain[ca_idx])
    for frag in frags:
        ss = secondary_structure(ca_xyz[frag])
        seg = _segment_labels(ss, max_loop, min_loop)
        first = {int(s): ss[i] for i, s in reversed(list(enumerate(seg)))}
        seg_of_res[ca_res[frag]] = seg + len(label_of_seg)
        label_of_seg.extend(str(first[s]) for s in range(int(seg.max()) + 1))
    seg_of_atom = seg_of_res[res] if n else np.zeros(0, np.int64)
    orphan = seg_of_atom < 0
    if orphan.any() and len(ca_idx):
        _, j = cKDTree(ca_xyz).query(np.asarray(at.xyz, np.float64)[orphan])
        seg_of_atom[orphan] = seg_of_res[ca_res[j]]
    elif orphan.any():
        seg_of_atom[orphan] = 0
        label_of_seg = label_of_seg or ["C"]
    groups, labels = [], []
    for s, lab in enumerate(label_of_seg):
        g = np.flatnonzero((seg_of_atom == s) & moving)
        if len(g):
            groups.append(g)
            labels.append(lab)
    return groups, labels
