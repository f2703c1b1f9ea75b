"""Fallback restraints for residues without a dictionary: keep their input geometry.

Bonds are atom pairs closer than the sum of covalent radii + 0.4 Å (gemmi's
``Element.covalent_r``, Cordero et al. 2008, Dalton Trans. 2832) with at least one atom
in an unknown residue (so covalent attachments to known residues are kept too); ideal
= input distance, σ 0.02 Å.  Angles are all pairs of such bonds sharing an atom,
ideal = input angle, σ 3°.  No chirality or planarity terms (known gap).
"""
from __future__ import annotations

import numpy as np

BOND_TOLERANCE = 0.4
BOND_SIGMA = 0.02
ANGLE_SIGMA = 3.0


def _cov_radii(elements) -> np.ndarray:
    import gemmi

    table = {e: gemmi.Element(e or "X").covalent_r for e in np.unique(elements)}
    return np.array([table[e] for e in elements], float)


def _angles_from_bonds(bonds, n) -> np.ndarray:
    """All (a, centre, b) triples of bonds sharing an atom."""
    if len(bonds) == 0:
        return np.zeros((0, 3), np.int64)
    both = np.concatenate([bonds, bonds[:, ::-1]])  # (centre, other)
    order = np.argsort(both[:, 0], kind="stable")
    both = both[order]
    starts = np.searchsorted(both[:, 0], np.arange(n + 1))
    out = []
    for c in np.unique(both[:, 0]):
        nb = both[starts[c]:starts[c + 1], 1]
        if len(nb) > 1:
            iu, ju = np.triu_indices(len(nb), 1)
            out.append(np.stack([nb[iu], np.full(len(iu), c), nb[ju]], 1))
    return np.concatenate(out) if out else np.zeros((0, 3), np.int64)


def _angle_deg(xyz, tri) -> np.ndarray:
    u = xyz[tri[:, 0]] - xyz[tri[:, 1]]
    v = xyz[tri[:, 2]] - xyz[tri[:, 1]]
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(u, v), axis=1), (u * v).sum(1)))


def self_restraints(atoms, selected) -> dict:
    """Bond and angle restraints to the input geometry for the selected atoms.

    Parameters
    ----------
    atoms : Atoms
        All atoms of the model (neighbours count for attachments).
    selected : ndarray (N,) bool
        Atoms of residues without a dictionary.

    Returns
    -------
    dict
        Arrays in `RestraintSet` field names (bonds, angles; other kinds empty).
    """
    from scipy.spatial import cKDTree

    xyz = atoms.xyz
    cov = _cov_radii(atoms.element)
    pairs = cKDTree(xyz).query_pairs(2 * cov.max() + BOND_TOLERANCE, output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    d = np.linalg.norm(xyz[i] - xyz[j], axis=1)
    alt_ok = (atoms.altloc[i] == "") | (atoms.altloc[j] == "") | (atoms.altloc[i] == atoms.altloc[j])
    keep = (selected[i] | selected[j]) & (d < cov[i] + cov[j] + BOND_TOLERANCE) & alt_ok
    keep &= ~(atoms.is_hydrogen[i] & atoms.is_hydrogen[j])
    bonds = pairs[keep].astype(np.int64)
    ang = _angles_from_bonds(bonds, len(xyz))
    ang = ang[selected[ang].any(1)] if len(ang) else ang
    z = np.zeros(0)
    return dict(bonds=bonds, bond_ideal=d[keep], bond_sigma=np.full(len(bonds), BOND_SIGMA),
                angles=ang, angle_ideal=_angle_deg(xyz, ang) if len(ang) else z,
                angle_sigma=np.full(len(ang), ANGLE_SIGMA),
                torsions=np.zeros((0, 4), np.int64), torsion_ideal=z, torsion_sigma=z,
                torsion_period=np.zeros(0, np.int64), torsion_label=np.zeros(0, "<U16"),
                chirals=np.zeros((0, 4), np.int64), chiral_ideal=z, chiral_sigma=z,
                chiral_both=np.zeros(0, bool), plane_atoms=np.zeros(0, np.int64),
                plane_id=np.zeros(0, np.int64), plane_sigma=z)
