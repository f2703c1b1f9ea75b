"""Build peptide models from ideal geometry (for examples and synthetic tests).

Backbone and side chains are placed from internal coordinates with the NeRF method
(Parsons et al. 2005, J Comput Chem 26, 1063). Bond lengths and angles are the
Engh & Huber (1991, Acta Cryst A47, 392; 2001 update in Int. Tables F, ch. 18.3)
values used by the CCP4 monomer library, rounded to 0.001 Å / 0.1°; side-chain
torsions are common rotamers (Lovell et al. 2000, Proteins 40, 389) compatible with
an α-helix.
"""
from __future__ import annotations

import numpy as np

from .types import Atoms, Model, UnitCell

# Backbone (Engh & Huber): bonds Å, angles degrees.
_BACKBONE = {"N-CA": 1.458, "CA-C": 1.525, "C-N": 1.329, "C-O": 1.231,
             "N-CA-C": 111.2, "CA-C-N": 116.2, "C-N-CA": 121.7, "CA-C-O": 120.1}
# Secondary structure (phi, psi) in degrees; omega = 180.
HELIX = (-57.8, -47.0)
STRAND = (-119.0, 113.0)

# Side chains as z-matrix rows: (atom, element, (ref3, ref2, ref1), bond, angle, torsion).
# The new atom bonds to ref1, makes `angle` with ref2-ref1 and `torsion` with ref3-ref2-ref1.
# CB placement: C-N-CA-CB torsion -122.6° (L-amino acid; measured -122.6 ± 1.8° on 5NI1).
_CB = ("CB", "C", ("C", "N", "CA"), 1.530, 110.5, -122.6)
_SIDE = {
    "GLY": [],
    "ALA": [_CB],
    "SER": [_CB, ("OG", "O", ("N", "CA", "CB"), 1.417, 111.1, -65.0)],
    "VAL": [_CB, ("CG1", "C", ("N", "CA", "CB"), 1.524, 110.7, 175.0),
            ("CG2", "C", ("N", "CA", "CB"), 1.524, 110.4, -60.0)],
    "LEU": [_CB, ("CG", "C", ("N", "CA", "CB"), 1.530, 116.3, -65.0),
            ("CD1", "C", ("CA", "CB", "CG"), 1.524, 110.7, 175.0),
            ("CD2", "C", ("CA", "CB", "CG"), 1.525, 110.7, -65.0)],
    "LYS": [_CB, ("CG", "C", ("N", "CA", "CB"), 1.520, 113.8, -65.0),
            ("CD", "C", ("CA", "CB", "CG"), 1.520, 111.3, 180.0),
            ("CE", "C", ("CB", "CG", "CD"), 1.520, 111.7, 180.0),
            ("NZ", "N", ("CG", "CD", "CE"), 1.489, 111.9, 180.0)],
    "GLU": [_CB, ("CG", "C", ("N", "CA", "CB"), 1.520, 113.8, -65.0),
            ("CD", "C", ("CA", "CB", "CG"), 1.516, 112.6, 180.0),
            ("OE1", "O", ("CB", "CG", "CD"), 1.252, 118.4, 0.0),
            ("OE2", "O", ("CB", "CG", "CD"), 1.252, 118.4, 180.0)],
    "PHE": [_CB, ("CG", "C", ("N", "CA", "CB"), 1.502, 113.8, 180.0),  # t80 rotamer
            ("CD1", "C", ("CA", "CB", "CG"), 1.389, 120.7, 80.0),
            ("CD2", "C", ("CA", "CB", "CG"), 1.389, 120.7, -100.0),
            ("CE1", "C", ("CB", "CG", "CD1"), 1.389, 120.7, 180.0),
            ("CE2", "C", ("CB", "CG", "CD2"), 1.389, 120.7, 180.0),
            ("CZ", "C", ("CG", "CD1", "CE1"), 1.389, 120.0, 0.0)],
}
_ONE = {"G": "GLY", "A": "ALA", "S": "SER", "V": "VAL", "L": "LEU", "K": "LYS",
        "E": "GLU", "F": "PHE"}


def place(a, b, c, bond, angle, torsion) -> np.ndarray:
    """NeRF: position of atom d bonded to c, with angle b-c-d and torsion a-b-c-d.

    Parameters
    ----------
    a, b, c : ndarray (3,)
        Reference positions, Å.
    bond : float
        |cd|, Å.
    angle, torsion : float
        Degrees.

    Examples
    --------
    >>> import numpy as np
    >>> d = place(np.array([1., 1, 0]), np.array([1., 0, 0]), np.zeros(3), 1.5, 90.0, 180.0)
    >>> bool(np.isclose(np.linalg.norm(d), 1.5))
    True
    """
    ang, tor = np.radians(angle), np.radians(torsion)
    bc = c - b
    bc /= np.linalg.norm(bc)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.stack([bc, np.cross(n, bc), n], axis=1)
    d2 = bond * np.array([-np.cos(ang), np.sin(ang) * np.cos(tor), np.sin(ang) * np.sin(tor)])
    return c + m @ d2


def ideal_peptide(sequence: str, phi_psi=HELIX, chain: str = "A", b_iso=30.0,
                  first_seq: int = 1) -> Model:
    """Build a peptide with ideal geometry and uniform backbone torsions.

    Parameters
    ----------
    sequence : str
        One-letter codes from G A S V L K E F.
    phi_psi : tuple of float or sequence of tuples
        (phi, psi) in degrees for every residue, or one pair per residue.
        Default: α-helix (-57.8°, -47.0°).
    chain : str
        Chain name.
    b_iso : float or array-like
        B factor in Å² for every atom, or one value per residue.
    first_seq : int
        Number of the first residue.

    Returns
    -------
    Model
        Atoms only (no hydrogens), P 1, no cell; its first N at the origin.

    Examples
    --------
    >>> m = ideal_peptide("AAKE")
    >>> len(m), sorted(set(m.atoms.res_name.tolist()))
    (28, ['ALA', 'GLU', 'LYS'])
    """
    seq = [_ONE[c] for c in sequence.upper()]
    pp = np.broadcast_to(np.asarray(phi_psi, float), (len(seq), 2))
    bres = np.broadcast_to(np.asarray(b_iso, float), (len(seq),))
    bb = _BACKBONE
    rows = []  # (res_i, name, element, xyz)
    n = np.zeros(3)
    ca = np.array([bb["N-CA"], 0.0, 0.0])
    ang = np.radians(180.0 - bb["N-CA-C"])
    c = ca + bb["CA-C"] * np.array([np.cos(ang), np.sin(ang), 0.0])
    for i, name in enumerate(seq):
        if i > 0:
            prev = {r[1]: r[3] for r in rows if r[0] == i - 1}
            n = place(prev["N"], prev["CA"], prev["C"], bb["C-N"], bb["CA-C-N"], pp[i - 1, 1])
            ca = place(prev["CA"], prev["C"], n, bb["N-CA"], bb["C-N-CA"], 180.0)
            c = place(prev["C"], n, ca, bb["CA-C"], bb["N-CA-C"], pp[i, 0])
        # O is trans to the next N: torsion N-CA-C-O = psi + 180
        o = place(n, ca, c, bb["C-O"], bb["CA-C-O"], pp[i, 1] + 180.0)
        pos = {"N": n, "CA": ca, "C": c, "O": o}
        for atom, el, xyz in (("N", "N", n), ("CA", "C", ca), ("C", "C", c), ("O", "O", o)):
            rows.append((i, atom, el, xyz))
        for atom, el, refs, bond, angle, tor in _SIDE[name]:
            xyz = place(pos[refs[0]], pos[refs[1]], pos[refs[2]], bond, angle, tor)
            pos[atom] = xyz
            rows.append((i, atom, el, xyz))
    return _model_from_rows(rows, seq, chain, bres, first_seq)


def _model_from_rows(rows, seq, chain, bres, first_seq) -> Model:
    import gemmi

    res_i = np.array([r[0] for r in rows])
    elements = np.array([r[2] for r in rows])
    n = len(rows)
    atoms = Atoms(
        xyz=np.array([r[3] for r in rows]), b_iso=bres[res_i], occ=np.ones(n),
        element=elements, atomic_number=[gemmi.Element(e).atomic_number for e in elements],
        charge=np.zeros(n), chain=np.full(n, chain), res_name=[seq[i] for i in res_i],
        res_seq=res_i + first_seq, icode=np.full(n, " "), atom_name=[r[1] for r in rows],
        altloc=np.full(n, ""), het=np.zeros(n, bool), res_index=res_i)
    return Model(atoms=atoms, cell=None, space_group="P 1")


def with_cell_box(model: Model, margin: float = 8.0) -> tuple[Model, np.ndarray]:
    """Translate a model into a box with `margin` Å on each side; return (model, box edges Å)."""
    xyz = model.atoms.xyz
    lo, hi = xyz.min(0), xyz.max(0)
    edges = hi - lo + 2 * margin
    moved = model.atoms.replace(xyz=xyz - lo + margin)
    return Model(atoms=moved, cell=UnitCell(*edges), space_group="P 1"), edges
