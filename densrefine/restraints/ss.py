"""Secondary-structure hydrogen-bond restraints for low-resolution refinement.

At 3.5 Å and worse the map no longer fixes backbone carbonyl directions, and helices
and sheets drift apart under the map gradient while bond/angle restraints stay happy.
Restraining the backbone O(i)…N(j) hydrogen bonds of the helices and sheets of the
starting model keeps them intact (phenix.real_space_refine secondary-structure
restraints; Headd et al. 2012, Acta Cryst D68, 381).

Annotation (`find_hbonds`):

* **header** (preferred when present): HELIX/SHEET records or mmCIF ``struct_conf`` /
  ``struct_sheet_range`` read by gemmi (``Structure.helices`` / ``.sheets``). A helix
  of class α / 3₁₀ / π from residue s to e gives O(k)→N(k+n), n = 4 / 3 / 5, for
  k = s … e − n (the donor not a proline). Sheet records carry no reliable register
  here, so strands restrain the detected ladder H-bonds (below) between residues that
  the header puts in strands.
* **detected** otherwise: DSSP-like (Kabsch & Sander 1983, Biopolymers 22, 2577).
  Electrostatic H-bond energy E = 0.084 · 332 · (1/r_ON + 1/r_CH − 1/r_OH − 1/r_CN)
  kcal/mol (Å) between C=O of residue i and N–H of residue j; a bond when E < −0.5.
  The amide H is taken from the model when present, else placed 1.0 Å from N along
  C(i−1)→O(i−1) reversed (DSSP's convention). α-helix: two consecutive 4-turns
  (O(i)→N(i+4), O(i+1)→N(i+5)); the H-bonds of such turns are restrained. β-sheet:
  parallel bridge (i, j) if [Hb(i−1→j) and Hb(j→i+1)] or [Hb(j−1→i) and Hb(i→j+1)],
  antiparallel if [Hb(i→j) and Hb(j→i)] or [Hb(i−1→j+1) and Hb(j−1→i+1)]; bridges in
  ladders of ≥ 2 consecutive bridges are kept and their H-bonds restrained.

Restraint (`HBondTerm`): O…N distance, ideal 2.9 Å, σ 0.05 Å — phenix's
``distance_ideal_n_o`` and ``sigma`` of mmtbx.secondary_structure — in cctbx's
top-out form E = (l²/σ²) · (1 − exp(−δ²/l²)), δ = d − 2.9 Å, l = 0.5 Å: harmonic
(δ²/σ²) near the ideal, flat beyond ~1 Å, so a wrong annotation cannot pull atoms
far (the largest force, at δ = l/√2, equals that of a harmonic restraint at
δ ≈ 0.43 l). σ 0.05 rather than 0.1 Å: on 5NI1 chain A in simulated 5 and 6 Å maps
it kept as many or more helical H-bonds (< 3.5 Å), at RMSD to the deposited model
within ±0.012 Å of σ 0.1 (benchmarks/RESULTS.md). Like phenix (``remove_outliers``) H-bonds that are too long in
the starting model are not restrained, but the cut is 4.0 Å instead of phenix's
``distance_cut_n_o = 3.5``: with the top-out such bonds cannot pull far, and the
3.5–4.0 Å ones are those a perturbed start needs restored (5NI1 chain A, 6 Å map,
1.5 Å of smooth waves, RMSD to the deposited model over three seeds: 1.068 / 1.015 /
0.823 Å with the 4.0 Å cut, 1.076 / 1.029 / 0.825 Å with 3.5 Å, 1.094 / 1.030 /
0.842 Å without SS restraints).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .chains import peptide_links, residue_atoms

log = logging.getLogger("densrefine")

HB_IDEAL = 2.9      # Å, O…N (phenix distance_ideal_n_o)
HB_SIGMA = 0.05     # Å (phenix sigma)
HB_LIMIT = 0.5      # Å, top-out width l
HB_CUT = 4.0        # Å, longer H-bonds in the start model are not restrained
HB_OK = 3.5         # Å, an H-bond counts as kept below this (phenix distance_cut_n_o)
HB_ENERGY = -0.5    # kcal/mol, DSSP threshold
DSSP_F = 0.084 * 332.0  # kcal/mol·Å, q1·q2·f of Kabsch & Sander
HELIX_TURN = {"RAlpha": 4, "R310": 3, "RPi": 5}
RES_AUTO = 3.5      # Å, "auto" switches the restraints on at this resolution and worse


@dataclass(frozen=True)
class HBondSet:
    """Backbone H-bonds to restrain.

    Attributes
    ----------
    pairs : ndarray (n, 2) int64
        Atom indices (O of the acceptor residue, N of the donor residue).
    kind : ndarray (n,) <U1
        "H" (helix) or "E" (sheet) per H-bond.
    n_helices, n_strands : int
        Helices and strands the H-bonds come from.
    source : str
        "header" or "detected".
    """

    pairs: np.ndarray
    kind: np.ndarray
    n_helices: int
    n_strands: int
    source: str

    def __len__(self) -> int:
        return len(self.pairs)

    def summary(self, xyz=None) -> dict:
        """Counts; with ``xyz`` (N, 3) Å also the O…N RMSD from 2.9 Å and fraction < 3.5 Å."""
        out = {"source": self.source, "helices": self.n_helices, "strands": self.n_strands,
               "hbonds": len(self), "helix_hbonds": int(np.sum(self.kind == "H")),
               "sheet_hbonds": int(np.sum(self.kind == "E"))}
        if xyz is not None and len(self):
            d = hbond_distances(xyz, self.pairs)
            out["hbond_rmsd"] = float(np.sqrt(np.mean((d - HB_IDEAL) ** 2)))
            out["hbond_fraction_lt_3.5"] = float(np.mean(d < HB_OK))
        return out


def hbond_distances(xyz, pairs) -> np.ndarray:
    """O…N distances (n,) Å of atom pairs ``pairs`` (n, 2) in ``xyz`` (N, 3)."""
    xyz = np.asarray(xyz, np.float64)
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    return np.linalg.norm(xyz[pairs[:, 0]] - xyz[pairs[:, 1]], axis=1)


def wanted(mode: str, resolution) -> bool:
    """Whether ``mode`` ("auto" | "on" | "off") switches the restraints on at d (Å)."""
    if mode == "auto":
        return resolution is not None and float(resolution) >= RES_AUTO
    return mode == "on"


# ----------------------------------------------------------------------------- residues

@dataclass
class _Backbone:
    """Amino-acid residues with a complete backbone, in model order."""

    atom: dict          # name -> (nr,) atom indices of N, CA, C, O (H: −1 when absent)
    key: list           # (chain, seq, icode) per residue
    chain: np.ndarray   # (nr,) chain name
    seg: np.ndarray     # (nr,) unbroken-fragment id
    is_pro: np.ndarray  # (nr,) bool
    xyz: np.ndarray     # (N, 3) model coordinates

    def pos(self, name):
        return self.xyz[self.atom[name]]

    def linked(self, i, j) -> np.ndarray:
        """True where residue indices i and j (arrays) lie in the same unbroken fragment."""
        i, j = np.asarray(i), np.asarray(j)
        ok = (i >= 0) & (j >= 0) & (i < len(self.seg)) & (j < len(self.seg))
        return ok & (self.seg[np.clip(i, 0, len(self.seg) - 1)]
                     == self.seg[np.clip(j, 0, len(self.seg) - 1)])


def _backbone(model) -> _Backbone:
    at = model.atoms
    rows = [(r, a) for r, a in residue_atoms(at, ("N", "CA", "C", "O", "H", "HN"))
            if all(k in a for k in ("N", "CA", "C", "O"))]
    atom = {k: np.array([a.get(k, -1) for _, a in rows], np.int64)
            for k in ("N", "CA", "C", "O", "H")}
    xyz = np.asarray(at.xyz, np.float64)
    n_idx = atom["N"]
    key = [(str(at.chain[i]), int(at.res_seq[i]), str(at.icode[i]).strip()) for i in n_idx]
    chain = np.array([k[0] for k in key])
    brk = np.ones(len(rows), bool)
    if len(rows) > 1:
        brk[1:] = ~peptide_links(xyz, atom["C"], n_idx, chain)
    is_pro = np.asarray(at.res_name)[n_idx] == "PRO" if len(rows) else np.zeros(0, bool)
    return _Backbone(atom, key, chain, np.cumsum(brk) - 1, is_pro, xyz)


def _amide_h(bb: _Backbone) -> np.ndarray:
    """(nr, 3) amide H positions (model H, else DSSP placement); NaN: no donor."""
    n = bb.pos("N")
    h = np.full_like(n, np.nan)
    has = bb.atom["H"] >= 0
    h[has] = bb.xyz[bb.atom["H"][has]]
    k = np.flatnonzero(~has & ~bb.is_pro)
    k = k[(k > 0) & bb.linked(k, k - 1)] if len(k) else k
    co = bb.pos("C")[k - 1] - bb.pos("O")[k - 1]
    h[k] = n[k] + co / np.linalg.norm(co, axis=1, keepdims=True)
    h[bb.is_pro & ~has] = np.nan
    return h


# ----------------------------------------------------------------------------- DSSP-like

def hbond_energy(o, c, n, h) -> np.ndarray:
    """DSSP electrostatic H-bond energy (kcal/mol) of C=O (o, c) with N–H (n, h), (k, 3) Å."""
    r = lambda a, b: np.linalg.norm(a - b, axis=-1)  # noqa: E731
    return DSSP_F * (1 / r(o, n) + 1 / r(c, h) - 1 / r(o, h) - 1 / r(c, n))


def _hbond_pairs(bb: _Backbone) -> set:
    """{(i, j)}: C=O of residue i accepts an H-bond from N–H of residue j (E < −0.5)."""
    from scipy.spatial import cKDTree

    h = _amide_h(bb)
    donors = np.flatnonzero(np.isfinite(h[:, 0]))
    if len(donors) == 0:
        return set()
    tree = cKDTree(bb.pos("N")[donors])
    out = set()
    o, c = bb.pos("O"), bb.pos("C")
    for i, near in enumerate(tree.query_ball_point(o, 5.2)):
        j = donors[np.asarray(near, np.int64)]
        j = j[np.abs(j - i) >= 2] if len(j) else j
        if len(j) == 0:
            continue
        e = hbond_energy(o[i], c[i], bb.pos("N")[j], h[j])
        out.update((i, int(x)) for x in j[e < HB_ENERGY])
    return out


def _helix_bonds(bb, hb) -> list:
    """α-helix H-bonds: 4-turns O(i)→N(i+4) with a neighbouring 4-turn (DSSP minimal helix)."""
    turn = {i for i, j in hb if j == i + 4 and bb.linked(i, j)}
    return [(i, i + 4) for i in sorted(turn) if i - 1 in turn or i + 1 in turn]


def _bridges(bb, hb) -> dict:
    """{(i, j, "p"|"a"): [H-bonds]} of β-bridges, i < j (DSSP patterns)."""
    cand = {(a + s, b + t) for a, b in hb for s in (-1, 0, 1) for t in (-1, 0, 1)}
    cand |= {(j, i) for i, j in cand}
    out = {}
    for i, j in cand:
        if i >= j or (bb.linked(i, j) and j - i < 3):
            continue
        if not (bb.linked(i - 1, i + 1) and bb.linked(j - 1, j + 1)):
            continue
        for kind, pats in (("p", [((i - 1, j), (j, i + 1)), ((j - 1, i), (i, j + 1))]),
                           ("a", [((i, j), (j, i)), ((i - 1, j + 1), (j - 1, i + 1))])):
            bonds = [b for pat in pats if all(x in hb for x in pat) for b in pat]
            if bonds:
                out[(i, j, kind)] = bonds
    return out


def _ladder_bonds(bridges) -> tuple[list, set]:
    """H-bonds of bridges with a consecutive neighbour bridge, and their residues."""
    bonds, res = [], set()
    for (i, j, kind), hbs in bridges.items():
        dj = 1 if kind == "p" else -1
        if any((i + s, j + s * dj, kind) in bridges for s in (-1, 1)):
            bonds.extend(hbs)
            res.update((i, j))
    return sorted(set(bonds)), res


def _runs(res_set, bb) -> int:
    """Number of runs of consecutive linked residues in ``res_set``."""
    r = sorted(res_set)
    return sum(1 for k, x in enumerate(r) if k == 0 or x != r[k - 1] + 1
               or not bb.linked(x, x - 1))


def _helix_count(bb, bonds) -> int:
    """Helices = runs of residues covered by the restrained i→i+n H-bonds."""
    res = {k for i, j in bonds for k in range(i + 1, j)}
    return _runs(res, bb)


def _to_set(bb, bonds, kinds, n_helices, n_strands, source, moving=None) -> HBondSet:
    """Residue pairs → atom pairs (O, N); drop those longer than `HB_CUT` or all fixed."""
    bonds = np.asarray(bonds, np.int64).reshape(-1, 2)
    pairs = np.stack([bb.atom["O"][bonds[:, 0]], bb.atom["N"][bonds[:, 1]]], 1) \
        if len(bonds) else np.zeros((0, 2), np.int64)
    keep = hbond_distances(bb.xyz, pairs) <= HB_CUT
    if moving is not None and len(pairs):
        keep &= np.asarray(moving, bool)[pairs].any(1)
    return HBondSet(pairs[keep], np.asarray(kinds, "<U1")[keep] if len(bonds) else
                    np.zeros(0, "<U1"), n_helices, n_strands, source)


def detect_hbonds(model, moving=None) -> HBondSet:
    """Helix and sheet H-bonds detected from the backbone (DSSP-like, see the module).

    Parameters
    ----------
    model : densrefine.Model
    moving : ndarray (N,) bool, optional
        H-bonds between fixed atoms only are dropped.

    Returns
    -------
    HBondSet
        source "detected".

    Examples
    --------
    >>> from densrefine.build import ideal_peptide
    >>> len(detect_hbonds(ideal_peptide("A" * 12)))
    8
    """
    bb = _backbone(model)
    hb = _hbond_pairs(bb)
    helix = _helix_bonds(bb, hb)
    sheet, strand_res = _ladder_bonds(_bridges(bb, hb))
    sheet = [b for b in sheet if b not in set(helix)]
    kinds = ["H"] * len(helix) + ["E"] * len(sheet)
    return _to_set(bb, helix + sheet, kinds, _helix_count(bb, helix), _runs(strand_res, bb),
                   "detected", moving)


def _residue_lookup(bb):
    return {k: r for r, k in enumerate(bb.key)}


def _addr(a):
    return (a.chain_name, int(a.res_id.seqid.num), a.res_id.seqid.icode.strip())


def header_hbonds(model, moving=None) -> HBondSet | None:
    """H-bonds from the model's HELIX/SHEET (struct_conf) annotation; None if it has none.

    Parameters
    ----------
    model : densrefine.Model
        Its ``handle`` (gemmi.Structure) carries the annotation.
    moving : ndarray (N,) bool, optional

    Returns
    -------
    HBondSet or None
        source "header"; helices by class (α i→i+4, 3₁₀ i→i+3, π i→i+5), strands by the
        detected ladder H-bonds between residues of annotated strands.
    """
    st = getattr(model, "handle", None)
    helices, sheets = list(getattr(st, "helices", []) or []), list(getattr(st, "sheets", []) or [])
    if not helices and not sheets:
        return None
    bb = _backbone(model)
    look = _residue_lookup(bb)
    bonds, n_hel = [], 0
    for h in helices:
        s, e = look.get(_addr(h.start)), look.get(_addr(h.end))
        n = HELIX_TURN.get(str(h.pdb_helix_class).split(".")[-1])
        if s is None or e is None or n is None or e - s < n:
            continue
        new = [(k, k + n) for k in range(s, e - n + 1)
               if bb.linked(k, k + n) and not bb.is_pro[k + n]]
        n_hel += bool(new)
        bonds.extend(new)
    sheet_bonds, strand_res = _header_sheets(bb, look, sheets)
    kinds = ["H"] * len(bonds) + ["E"] * len(sheet_bonds)
    return _to_set(bb, bonds + sheet_bonds, kinds, n_hel, _runs(strand_res, bb), "header",
                   moving)


def _header_sheets(bb, look, sheets):
    """Detected ladder H-bonds whose two residues both lie in annotated strands.

    Any sheet: PDB files often split one sheet into several SHEET groups.
    """
    in_strand = set()
    for sh in sheets:
        for s in sh.strands:
            a, b = look.get(_addr(s.start)), look.get(_addr(s.end))
            if a is not None and b is not None:
                in_strand.update(range(min(a, b), max(a, b) + 1))
    if not in_strand:
        return [], set()
    hb = _hbond_pairs(bb)
    bonds = [b for b in _ladder_bonds(_bridges(bb, hb))[0]
             if b[0] in in_strand and b[1] in in_strand]
    return bonds, in_strand


def find_hbonds(model, moving=None) -> HBondSet:
    """Header annotation when present (`header_hbonds`), else detection (`detect_hbonds`)."""
    hs = header_hbonds(model, moving)
    if hs is None or len(hs) == 0:
        hs = detect_hbonds(model, moving)
    return hs


# ----------------------------------------------------------------------------- energy

def topout(d, ideal: float, sigma: float, limit: float):
    """Top-out restraint (l²/σ²)·(1 − exp(−(d − ideal)²/l²)) per element (torch).

    ≈ ((d − ideal)/σ)² for |d − ideal| ≪ l, saturating at l²/σ² (cctbx's top-out bond).
    """
    import torch

    x = (d - ideal) / limit
    return (limit / sigma) ** 2 * -torch.expm1(-x * x)


class HBondTerm:
    """Differentiable H-bond restraint energy of an `HBondSet` (torch).

    Parameters
    ----------
    hbonds : HBondSet
    device, dtype : torch device and dtype (float32 default)
    fixed : ndarray (N,) bool, optional
        Atoms held fixed (no gradient).
    sigma, ideal, limit : float
        Å (defaults `HB_SIGMA`, `HB_IDEAL`, `HB_LIMIT`).

    Examples
    --------
    >>> import torch
    >>> from densrefine.build import ideal_peptide
    >>> m = ideal_peptide("A" * 10)
    >>> term = HBondTerm(detect_hbonds(m), "cpu", torch.float64)
    >>> len(term.hbonds), round(float(term.energy(torch.tensor(m.atoms.xyz))), 1)
    (6, 53.6)

    (the ideal-geometry helix has O…N = 3.05 Å, 3σ from 2.9 Å, 8.9 per H-bond).
    """

    def __init__(self, hbonds: HBondSet, device="cpu", dtype=None, *, fixed=None,
                 sigma: float = HB_SIGMA, ideal: float = HB_IDEAL, limit: float = HB_LIMIT):
        import torch

        self.hbonds, self.sigma, self.ideal, self.limit = hbonds, sigma, ideal, limit
        self.idx = torch.as_tensor(np.array(hbonds.pairs, np.int64).reshape(-1, 2),
                                   device=device)
        self.fixed = None if fixed is None else torch.as_tensor(np.asarray(fixed, bool),
                                                                device=device)
        self.dtype = dtype or torch.float32

    def energy(self, xyz):
        """Σ top-out(|O − N|) over the H-bonds; a 0-d tensor of ``xyz``'s dtype."""
        import torch

        from .energy import bond_lengths

        if len(self.idx) == 0:
            return xyz.sum() * 0.0
        x = xyz if self.fixed is None else torch.where(self.fixed[:, None], xyz.detach(), xyz)
        return topout(bond_lengths(x, self.idx), self.ideal, self.sigma, self.limit).sum()
