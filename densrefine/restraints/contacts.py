"""Probe's atom typing for all-atom contacts (hydrogens explicit), shared by the
clashscore (`densrefine.validation.clashes`) and the riding-hydrogen contact term of
refinement (`densrefine.restraints.riding`).

Radii: Probe's electron-cloud radii (``atomprops.h``; Word et al. 1999, J Mol Biol 285,
1735): H 1.22, polar H (on N, O, S) and aromatic H 1.05, C 1.70, aromatic C 1.75,
carbonyl C 1.65, N 1.55, O 1.40, S 1.80, P 1.80, Se 1.90, halogens and metals as there
(metals: ionic radii). Acceptors: monomer-library ``hb_type`` A/B plus Probe's
aromatic-ring acceptors (mmtbx.probe.AtomTypes). Pairs not scored: atoms up to 3 bonds
apart, and 4 when either is a hydrogen (Probe ``-4H``).
"""
from __future__ import annotations

import numpy as np

WATER = frozenset(("HOH", "WAT", "H2O", "DOD", "SOL"))
RADIUS = {"H": 1.22, "C": 1.70, "N": 1.55, "O": 1.40, "S": 1.80, "P": 1.80, "SE": 1.90,
          "F": 1.30, "CL": 1.77, "BR": 1.95, "I": 2.10, "AS": 2.00, "B": 0.20, "SI": 2.10,
          "LI": 0.60, "NA": 0.95, "AL": 0.50, "K": 1.33, "MG": 0.65, "CA": 0.99, "MN": 0.80,
          "FE": 0.74, "CO": 0.70, "NI": 0.66, "CU": 0.72, "ZN": 0.71, "RB": 1.48, "SR": 1.10,
          "MO": 0.93, "AG": 1.26, "CD": 0.91, "IN": 0.81, "CS": 1.69, "BA": 1.29, "AU": 1.10,
          "HG": 1.00, "TL": 1.44, "PB": 0.84, "PT": 0.63, "W": 0.66, "V": 0.79, "CR": 0.73}
"""Probe's explicit-H electron-cloud radii by element (Å); others get 1.70."""
R_POLAR_H, R_AROMATIC_C, R_CARBONYL_C = 1.05, 1.75, 1.65
CARBONYL = {"ASP": "CG", "ASN": "CG", "GLU": "CD", "GLN": "CD"}
AROMATIC_ACCEPTOR = {
    "HIS": ("ND1", "NE2"), "TRP": ("CH2", "CZ3", "CZ2", "CE3", "CE2", "CD2"),
    "PHE": ("CZ", "CE2", "CE1", "CD2", "CD1", "CG"), "TYR": ("CZ", "CE2", "CE1", "CD2", "CD1", "CG"),
    "HEM": ("NA", "NB", "NC", "ND"),
    "A": ("N1", "N3", "N7", "C2", "C4", "C5", "C6", "C8", "N9"),
    "DA": ("N1", "N3", "N7", "C2", "C4", "C5", "C6", "C8", "N9"),
    "G": ("N3", "N7", "N1", "C2", "C4", "C5", "C6", "C8", "N9"),
    "DG": ("N3", "N7", "N1", "C2", "C4", "C5", "C6", "C8", "N9"),
    "C": ("N3", "N1", "C2", "C4", "C5", "C6"), "DC": ("N3", "N1", "C2", "C4", "C5", "C6"),
    "U": ("N1", "C2", "N3", "C4", "C5", "C6"), "DT": ("N1", "C2", "N3", "C4", "C5", "C6")}
"""Probe's aromatic-ring acceptors (mmtbx.probe.AtomTypes)."""


def probe_types(el, name, resn, ctype, bonds, ener_lib) -> dict:
    """Probe radius, donor-H, acceptor and water flags of each atom.

    Parameters
    ----------
    el : ndarray (n,) str
        Upper-case element symbols.
    name, resn, ctype : sequences (n,) of str
        Atom name, residue name, ener_lib energy type ("" when unknown).
    bonds : ndarray (m, 2) int
    ener_lib : gemmi.EnerLib

    Returns
    -------
    dict
        radius (n,) Å, is_h, donor_h, acceptor, water (n,) bool.
    """
    n = len(el)
    el = np.asarray(el).astype(str)
    nbr = [[] for _ in range(n)]
    for i, j in np.asarray(bonds, np.int64).reshape(-1, 2):
        nbr[i].append(j)
        nbr[j].append(i)
    is_h = np.isin(el, ("H", "D"))
    radius = np.array([RADIUS.get(e, 1.70) for e in el])
    aromatic_c = np.array([str(t).startswith("CR") for t in ctype], bool) & (el == "C")
    radius[aromatic_c] = R_AROMATIC_C
    carbonyl = np.array([(nm == "C" and e == "C" and "O" in [name[k] for k in nbr[i]])
                         or CARBONYL.get(r) == nm for i, (nm, e, r) in
                         enumerate(zip(name, el, resn))], bool)
    radius[carbonyl] = R_CARBONYL_C
    parent = np.array([el[nbr[i][0]] if nbr[i] else "" for i in range(n)])
    donor_h = is_h & np.isin(parent, ("N", "O", "S"))
    h_on_aromatic = is_h & np.array([bool(nbr[i]) and aromatic_c[nbr[i][0]] for i in range(n)],
                                    bool)
    radius[donor_h | h_on_aromatic] = R_POLAR_H
    hb = {k: v.hb_type for k, v in ener_lib.atoms.items()}
    acceptor = np.array([hb.get(t, "") in ("A", "B") or nm in AROMATIC_ACCEPTOR.get(r, ())
                         for t, nm, r in zip(ctype, name, resn)], bool) & ~is_h
    water = np.isin(np.asarray(resn).astype(str), tuple(WATER))
    acceptor |= water & (el == "O")
    return {"radius": radius, "is_h": is_h, "donor_h": donor_h, "acceptor": acceptor,
            "water": water}


def excluded_pairs(bonds, is_h, n):
    """Sparse boolean (n, n): pairs ≤ 3 bonds apart, or 4 when either atom is H."""
    import scipy.sparse as sp

    bonds = np.asarray(bonds, np.int64).reshape(-1, 2)
    a = sp.coo_matrix((np.ones(len(bonds), bool), (bonds[:, 0], bonds[:, 1])), shape=(n, n))
    a = (a + a.T).tocsr().astype(np.int32)
    eye = sp.identity(n, dtype=np.int32, format="csr")
    r1 = ((a + eye) > 0).astype(np.int32)
    r3 = (r1 @ r1 @ r1) > 0
    r4 = (r3.astype(np.int32) @ r1) > 0
    h = sp.diags(is_h.astype(np.int32), dtype=np.int32)
    hr4 = ((h @ r4.astype(np.int32)) + (r4.astype(np.int32) @ h)) > 0
    return (r3 + hr4).tocsr()
