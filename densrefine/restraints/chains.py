"""Chains, backbone atoms and secondary structure from coordinates: the one place that
decides which residues are linked and which form helices or strands.

Used by the secondary-structure H-bond restraints (`densrefine.restraints.ss`), the
Ramachandran restraints (`densrefine.restraints.rama`), the rigid secondary-structure
groups of ``fit`` (`densrefine.refine.sse`) and the benchmark perturbations
(`densrefine.perturb`).

* **Peptide links**: residue k is linked to k + 1 when both are in the same chain and
  C(k)–N(k+1) ≤ `PEPTIDE_MAX` (a peptide bond is 1.33 Å).
* **Trace fragments**: consecutive trace atoms (Cα; P, else C4′, for nucleotides) of one
  chain closer than `TRACE_BREAK` (Cα–Cα is 3.8 Å) or `NA_TRACE_BREAK` (P–P 5.8–7 Å).
* **Secondary structure from the Cα trace alone** (gemmi has no DSSP in Python): a
  Cα(i)–Cα(i+3) distance within `HELIX_D3` marks helical windows (α-helix 5.0–5.4 Å, 3₁₀
  ≈ 5.8 Å), Cα(i)–Cα(i+2) ≥ `STRAND_D2` with Cα(i)–Cα(i+3) ≥ `STRAND_D3` marks extended
  windows (β-strand ≈ 6.4–7.0 / 9.9–10.5 Å); two consecutive windows are needed, and
  helices ≥ 4 and strands ≥ 3 residues are kept (Levitt & Greer 1977, J. Mol. Biol.
  114, 181, for Cα-only assignment). The DSSP-like assignment from backbone H-bonds is
  `densrefine.restraints.ss.detect_hbonds`.
* **Base-paired chains** (`paired_chains`): nucleic-acid strands held together by at
  least `MIN_PAIRS` Watson–Crick pairs (purine N1 to pyrimidine N3, 2.6–3.3 Å), which move
  as one body.
* **χ1 groups** (`flip_groups`): the side-chain atoms a χ1 rotation moves, for the rotamer
  scan of ``fit`` and the benchmark perturbations.
"""
from __future__ import annotations

import numpy as np

AMINO_ACIDS = frozenset(
    "ALA ARG ASN ASP CYS GLN GLU GLY HIS ILE LEU LYS MET PHE PRO SER THR TRP TYR VAL "
    "MSE SEC PYL".split())
"""Residue names treated as amino acids (the 20, selenomethionine, Sec, Pyl)."""
PEPTIDE_MAX = 2.0
"""Å: C(i)–N(i+1) longer than this is a chain break."""
TRACE_BREAK = 4.5
"""Å: consecutive Cα further apart start a new fragment."""
NA_TRACE_BREAK = 8.5
"""Å: the same for P/C4′ traces (P–P ≈ 5.8–7 Å)."""
NOT_ROTATED = frozenset("N CA C O OXT CB H H1 H2 H3 HN HA HA2 HA3 D D1 D2 D3 DA".split())
"""Atoms a χ1 rotation does not move (main chain, Cβ and their hydrogens)."""
PURINES = frozenset("A G DA DG".split())
PYRIMIDINES = frozenset("C U T DC DU DT".split())
WC_N1_N3 = (2.6, 3.3)
"""Å: purine N1 … pyrimidine N3 distance of a Watson–Crick pair (2.85–3.0 Å in duplexes)."""
MIN_PAIRS = 3
"""Base pairs that make two strands one duplex for `paired_chains`."""
HELIX_D3 = (4.2, 5.9)
"""Å: Cα(i)–Cα(i+3) of α/3₁₀ helices."""
STRAND_D2 = 6.2
"""Å: minimum Cα(i)–Cα(i+2) of extended chain."""
STRAND_D3 = 8.8
"""Å: minimum Cα(i)–Cα(i+3) of extended chain."""


def first_conformer(atoms) -> np.ndarray:
    """Boolean (N,): atoms without an altloc or of altloc A."""
    alt = np.asarray(atoms.altloc).astype(str)
    return (alt == "") | (alt == "A")


def runs(flag) -> list[tuple[int, int]]:
    """(start, stop) of the runs of True in a 1-D boolean array.

    Examples
    --------
    >>> runs(np.array([0, 1, 1, 0, 1], bool))
    [(1, 3), (4, 5)]
    """
    f = np.concatenate([[False], np.asarray(flag, bool), [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(f))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def label_runs(labels) -> list[tuple[int, int, object]]:
    """(start, stop, label) of the runs of equal values in a 1-D array.

    Examples
    --------
    >>> label_runs(np.array(list("HHCE")))
    [(0, 2, 'H'), (2, 3, 'C'), (3, 4, 'E')]
    """
    labels = np.asarray(labels)
    if len(labels) == 0:
        return []
    edges = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [len(labels)]])
    return [(int(a), int(b), labels[a].item()) for a, b in zip(starts, stops)]


def residue_atoms(atoms, names) -> list[tuple[int, dict]]:
    """Per residue, the first-conformer atom index of each of ``names`` it has.

    Returns
    -------
    list of (int, dict)
        (res_index, {name: atom index}) in residue order, for residues with at least one
        of the names; "HN" is reported as "H".
    """
    nm = np.asarray(atoms.atom_name).astype(str)
    res = np.asarray(atoms.res_index)
    table: dict = {}
    for i in np.flatnonzero(first_conformer(atoms) & np.isin(nm, tuple(names))):
        table.setdefault(int(res[i]), {}).setdefault("H" if nm[i] == "HN" else nm[i], int(i))
    return sorted(table.items())


def peptide_links(xyz, c_idx, n_idx, chain) -> np.ndarray:
    """Boolean (n − 1,): residue k is peptide-linked to residue k + 1.

    Parameters
    ----------
    xyz : ndarray, shape (N, 3)
        Atom positions (Å).
    c_idx, n_idx : ndarray, shape (n,)
        Atom indices of C and N of n consecutive residues (model order).
    chain : ndarray, shape (n,)
        Chain name of each residue.
    """
    xyz = np.asarray(xyz, np.float64)
    if len(c_idx) < 2:
        return np.zeros(0, bool)
    pep = np.linalg.norm(xyz[np.asarray(c_idx)[:-1]] - xyz[np.asarray(n_idx)[1:]], axis=1)
    chain = np.asarray(chain)
    return (pep <= PEPTIDE_MAX) & (chain[1:] == chain[:-1])


def ca_atoms(atoms) -> np.ndarray:
    """One Cα atom index per residue that has one (first conformer; not calcium), in
    residue order."""
    is_ca = (np.asarray(atoms.atom_name) == "CA") & (np.asarray(atoms.element) != "CA") \
        & first_conformer(atoms)
    res = np.asarray(atoms.res_index)
    idx = np.flatnonzero(is_ca)
    idx = idx[np.unique(res[idx], return_index=True)[1]]
    return idx[np.argsort(res[idx], kind="stable")]


def trace(atoms) -> tuple[np.ndarray, np.ndarray]:
    """Per residue: trace position (n_res, 3) (NaN when none) and kind (1 protein, 2 nucleic).

    Amino acids (and non-HETATM residues) use Cα; nucleotides P, else C4′.
    """
    n_res = int(atoms.res_index.max()) + 1 if len(atoms) else 0
    pos = np.full((n_res, 3), np.nan)
    kind = np.zeros(n_res, np.int8)
    first = first_conformer(atoms)
    for name, k in (("C4'", 2), ("P", 2), ("CA", 1)):     # later names win
        sel = (atoms.atom_name == name) & first
        if name == "CA":
            sel &= np.isin(atoms.res_name, list(AMINO_ACIDS)) | ~atoms.het
            sel &= atoms.element != "CA"                     # calcium ions
        pos[atoms.res_index[sel]] = atoms.xyz[sel]
        kind[atoms.res_index[sel]] = k
    return pos, kind


def trace_fragments(pos, kind, chain_of_res) -> list[np.ndarray]:
    """Unbroken fragments of residues with a trace atom: list of residue-index arrays.

    A fragment ends where the chain or the kind changes or consecutive trace atoms are
    further apart than `TRACE_BREAK` (`NA_TRACE_BREAK` for nucleotides).
    """
    idx = np.flatnonzero(~np.isnan(pos[:, 0]))
    if len(idx) == 0:
        return []
    d = np.linalg.norm(np.diff(pos[idx], axis=0), axis=1)
    limit = np.where(kind[idx[1:]] == 2, NA_TRACE_BREAK, TRACE_BREAK)
    brk = (d > limit) | (chain_of_res[idx[1:]] != chain_of_res[idx[:-1]]) \
        | (kind[idx[1:]] != kind[idx[:-1]])
    return np.split(idx, np.flatnonzero(brk) + 1)


def _windows_to_residues(win, span, n, min_len):
    """Residues covered by ≥ 2 consecutive flagged windows of ``span`` residues."""
    res = np.zeros(n, bool)
    for a, b in runs(win):
        if b - a >= 2:
            res[a:b - 1 + span] = True
    for a, b in runs(res):
        if b - a < min_len:
            res[a:b] = False
    return res


def secondary_structure(ca) -> np.ndarray:
    """Cα-only helix/strand assignment of one chain fragment (module docstring).

    Parameters
    ----------
    ca : ndarray, shape (n, 3), float
        Consecutive Cα positions (Å) of one unbroken fragment.

    Returns
    -------
    ndarray, shape (n,), '<U1'
        "H" helix, "E" strand, "C" other.

    Examples
    --------
    >>> from densrefine.build import ideal_peptide
    >>> m = ideal_peptide("A" * 10)
    >>> "".join(secondary_structure(m.atoms.xyz[m.atoms.atom_name == "CA"]))
    'HHHHHHHHHH'
    """
    n = len(ca)
    ss = np.full(n, "C")
    if n < 5:
        return ss
    d2 = np.linalg.norm(ca[2:] - ca[:-2], axis=1)
    d3 = np.linalg.norm(ca[3:] - ca[:-3], axis=1)
    helix = _windows_to_residues((d3 >= HELIX_D3[0]) & (d3 <= HELIX_D3[1]), 4, n, 4)
    ext = (d2[:-1] >= STRAND_D2) & (d3 >= STRAND_D3)
    strand = _windows_to_residues(ext, 4, n, 3) & ~helix
    ss[helix], ss[strand] = "H", "E"
    return ss


def flip_groups(model):
    """Residues whose χ1 can be flipped, with the atoms that rotate.

    Returns
    -------
    list of (int, int, ndarray)
        (index of CA, index of CB, indices of rotated atoms) per eligible residue:
        amino acids other than Gly/Ala/Pro with CA, CB and a γ atom, no altlocs.
    """
    at = model.atoms
    order = np.argsort(at.res_index, kind="stable")
    bounds = np.flatnonzero(np.diff(at.res_index[order])) + 1
    out = []
    for grp in np.split(order, bounds):
        if len(grp) == 0:
            continue
        name = at.res_name[grp[0]]
        if name not in AMINO_ACIDS or name in ("GLY", "ALA", "PRO") or (at.altloc[grp] != "").any():
            continue
        names = list(at.atom_name[grp])
        if "CA" not in names or "CB" not in names:
            continue
        rot = grp[~np.isin(at.atom_name[grp], list(NOT_ROTATED))]
        if not any(at.atom_name[i].startswith(("CG", "OG", "SG", "SE")) for i in rot):
            continue
        out.append((grp[names.index("CA")], grp[names.index("CB")], rot))
    return out


def paired_chains(atoms) -> list[list[str]]:
    """Chains grouped by Watson–Crick pairing: the connected components of the graph whose
    edges join strands with at least `MIN_PAIRS` purine N1 … pyrimidine N3 contacts within
    `WC_N1_N3`, in order of first appearance; unpaired chains stand alone.

    Examples
    --------
    >>> from densrefine.build import ideal_peptide
    >>> paired_chains(ideal_peptide("AG").atoms)
    [['A']]
    """
    from scipy.spatial import cKDTree

    chain = np.asarray(atoms.chain).astype(str)
    names = np.asarray(atoms.res_name).astype(str)
    atom = np.asarray(atoms.atom_name).astype(str)
    order = list(dict.fromkeys(chain.tolist()))
    first = first_conformer(atoms)
    pur = np.flatnonzero(first & np.isin(names, list(PURINES)) & (atom == "N1"))
    pyr = np.flatnonzero(first & np.isin(names, list(PYRIMIDINES)) & (atom == "N3"))
    parent = {c: c for c in order}

    def root(c):
        while parent[c] != c:
            c = parent[c]
        return c

    if len(pur) and len(pyr):
        xyz = np.asarray(atoms.xyz, np.float64)
        counts: dict = {}
        for i, near in zip(pur, cKDTree(xyz[pyr]).query_ball_point(xyz[pur], WC_N1_N3[1])):
            for j in pyr[np.asarray(near, np.int64)]:
                d = np.linalg.norm(xyz[i] - xyz[j])
                if d >= WC_N1_N3[0] and chain[i] != chain[j]:
                    key = tuple(sorted((chain[i], chain[j])))
                    counts[key] = counts.get(key, 0) + 1
        for (a, b), n in counts.items():
            if n >= MIN_PAIRS:
                parent[root(b)] = root(a)
    groups: dict = {}
    for c in order:
        groups.setdefault(root(c), []).append(c)
    return list(groups.values())
