"""Nonbonded (van der Waals) repulsion parameters and an O(N) neighbour list.

Per-pair minimum distances follow Refmac/servalcat (servalcat ``Geometry::set_vdw_values``,
after Refmac ``vdw_and_contacts.f``; Murshudov et al. 2011, Acta Cryst D67, 355):

* r_min = r_i + r_j with r from ``ener_lib.cif`` by energy type (``vdw_radius`` when
  the model has hydrogens, else the united-atom ``vdwh_radius``), capped at 2.0 Å;
* 1-4 pairs (three bonds apart): r_i + r_j + inc_i + inc_j, inc = −0.1 Å for O and N,
  −0.15 Å otherwise, here with the explicit-atom radii ``vdw_radius`` (servalcat uses
  the united-atom ones, which push gauche 1-4 pairs apart); rigid 1-4 pairs (within a
  plane, or across an ω/CONST-restrained bond: peptide O…CA) are excluded;
* H-bond donor/acceptor pairs (hb types A–D, A–B, D–B, B–B): r_i + r_j − 0.3 Å;
  polar H (parent D or B) to acceptor A/B: r_acceptor + 0.1 Å;
* metal involved and both ionic radii known: ion_i + ion_j;
* σ = 0.2 Å for all; 1-2 and 1-3 pairs are excluded, as are different altlocs.
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("densrefine")

MAX_VDW_RADIUS = 2.0
NB_SIGMA = 0.2
HBOND_AD = -0.3
HBOND_AH = 0.1
_TORS_INC = {"O": -0.1, "N": -0.1}
_TORS_INC_DEFAULT = -0.15


def _is_metal(elements) -> np.ndarray:
    import gemmi

    table = {e: gemmi.Element(e or "X").is_metal for e in np.unique(elements)}
    return np.array([table[e] for e in elements], bool)


def _pair_keys(p, n) -> np.ndarray:
    return p[:, 0].astype(np.int64) * n + p[:, 1]


def _rigid_pairs(a, n, plane_atoms, plane_id, rigid_bonds) -> np.ndarray:
    """Keys of pairs in one plane, or 1-4 across a rigid central bond (A·R·A)."""
    import scipy.sparse as sp

    out = []
    if len(plane_atoms):
        pl = np.asarray(plane_atoms, np.int64)
        pid = np.asarray(plane_id, np.int64)
        inc = sp.coo_matrix((np.ones(len(pl)), (pid, pl)), shape=(pid.max() + 1, n)).tocsr()
        out.append(sp.triu(inc.T @ inc, k=1).tocoo())
    if len(rigid_bonds):
        rb = np.asarray(rigid_bonds, np.int64)
        r = sp.coo_matrix((np.ones(len(rb)), (rb[:, 0], rb[:, 1])), shape=(n, n)).tocsr()
        out.append(sp.triu(a @ ((r + r.T) > 0).astype(np.int32) @ a, k=1).tocoo())
    keys = [_pair_keys(np.stack([m.row, m.col], 1), n) for m in out]
    return np.concatenate(keys) if keys else np.zeros(0, np.int64)


def _graph_pairs(bonds, n, plane_atoms=(), plane_id=(), rigid_bonds=()):
    """Excluded pairs (1-2, 1-3, and rigid 1-4) and other 1-4 pairs (i < j).

    Rigid 1-4 pairs are excluded: both atoms in one plane (across aromatic rings), or
    the central bond held by a tight period-1 torsion (ω: O(i)…CA(i+1) of a peptide;
    CONST ring torsions).  Bonds, angles, planes and ω fix their distance, and the 1-4
    minimum (≈3.0–3.3 Å) would fight the true 2.7–2.8 Å.
    """
    import scipy.sparse as sp

    if len(bonds) == 0:
        z = np.zeros((0, 2), np.int64)
        return z, z
    b = bonds.astype(np.int64)
    a = sp.coo_matrix((np.ones(len(b)), (b[:, 0], b[:, 1])), shape=(n, n)).tocsr()
    a = ((a + a.T) > 0).astype(np.int32)
    a2 = (a @ a > 0).astype(np.int32)
    a3 = (a2 @ a > 0).astype(np.int32)
    near = sp.triu((a + a2) > 0, k=1).tocoo()
    excl = np.stack([near.row, near.col], 1).astype(np.int64)
    far = sp.triu(a3, k=1).tocoo()
    p14 = np.stack([far.row, far.col], 1).astype(np.int64)
    if len(p14):
        p14 = p14[~np.isin(_pair_keys(p14, n), _pair_keys(excl, n))]
    if len(p14):
        rigid = _rigid_pairs(a, n, plane_atoms, plane_id, rigid_bonds)
        inplane = np.isin(_pair_keys(p14, n), rigid)
        excl = np.concatenate([excl, p14[inplane]])
        p14 = p14[~inplane]
    order = np.argsort(_pair_keys(excl, n))
    return excl[order], p14[np.argsort(_pair_keys(p14, n))]


def nonbonded_parameters(atoms, types, bonds, ener_lib, plane_atoms=(), plane_id=(),
                         rigid_bonds=()) -> dict:
    """Per-atom vdW parameters and exclusion pairs.

    Parameters
    ----------
    atoms : Atoms
    types : ndarray (N,) object
        ener_lib energy type per atom ("" when unknown: element symbol is used).
    bonds : ndarray (nb, 2)
        Bonded pairs (graph for exclusions).
    ener_lib : gemmi.EnerLib
    plane_atoms, plane_id : ndarray
        Plane restraints (1-4 pairs within a plane are excluded).
    rigid_bonds : ndarray (nr, 2)
        Central bonds of tight period-1 torsions (1-4 pairs across them are excluded).

    Returns
    -------
    dict
        vdw_radius, clash_radius, ion_radius, hb_type, tors_inc, metal, exclusions, pairs14.
    """
    n = len(atoms)
    el = atoms.element
    use_h = bool(atoms.is_hydrogen.any())
    lib = ener_lib.atoms
    keys, inverse = np.unique(np.char.add(np.asarray(types, str), np.char.add("|", el)),
                              return_inverse=True)
    table = [_lookup(lib, *k.split("|"), use_h) for k in keys]
    inverse = inverse.reshape(-1)
    vdw, explicit, ion = (np.array([t[c] for t in table], float).reshape(-1)[inverse]
                          for c in range(3))
    hb = np.array([t[3] for t in table], "<U1").reshape(-1)[inverse]
    vdw = np.minimum(np.nan_to_num(vdw, nan=1.7), MAX_VDW_RADIUS)
    explicit = np.minimum(np.nan_to_num(explicit, nan=1.7), MAX_VDW_RADIUS)
    excl, p14 = _graph_pairs(np.asarray(bonds), n, plane_atoms, plane_id, rigid_bonds)
    hb = _hydrogen_hb_types(atoms, hb, np.asarray(bonds, np.int64))
    tors_inc = np.where(np.isin(el, list(_TORS_INC)), -0.1, _TORS_INC_DEFAULT)
    return dict(vdw_radius=vdw, clash_radius=explicit, ion_radius=ion, hb_type=hb,
                tors_inc=tors_inc, metal=_is_metal(el), exclusions=excl, pairs14=p14)


def _lookup(lib, chem_type, element, use_h) -> tuple:
    """(vdw, explicit vdw, ionic radius, hb type) of an energy type (element fallback)."""
    for key in (chem_type, element.capitalize(), element):
        if key and key in lib:
            la = lib[key]
            r = la.vdw_radius if use_h or np.isnan(la.vdwh_radius) else la.vdwh_radius
            return (r, la.vdw_radius, la.ion_radius, la.hb_type if la.hb_type != "\0" else "N")
    return (1.7, 1.7, np.nan, "N")


def _hydrogen_hb_types(atoms, hb, bonds) -> np.ndarray:
    """H bonded to a donor (D or B) is a polar H ("H"), other H are "N" (servalcat)."""
    hb = hb.copy()
    h = atoms.is_hydrogen
    hb[h] = "N"
    if len(bonds):
        for a, b in ((0, 1), (1, 0)):
            sel = h[bonds[:, a]] & ~h[bonds[:, b]]
            parent_hb = hb[bonds[sel, b]]
            hb[bonds[sel, a]] = np.where(np.isin(parent_hb, ("D", "B")), "H", "N")
    return hb


def pair_minimum(rs, i, j, is14, radius=None) -> np.ndarray:
    """Minimum allowed distance (Å) of atom pairs ``(i, j)``; see the module docstring.

    ``radius`` (N,) overrides ``rs.vdw_radius`` (e.g. ``rs.clash_radius`` for clash
    counts).  1-4 pairs always use the explicit-atom radii ``rs.clash_radius``.
    """
    r = rs.vdw_radius if radius is None else radius
    rmin = r[i] + r[j]
    hi, hj = rs.hb_type[i], rs.hb_type[j]
    don_i, don_j = np.isin(hi, ("D", "B")), np.isin(hj, ("D", "B"))
    acc_i, acc_j = np.isin(hi, ("A", "B")), np.isin(hj, ("A", "B"))
    hbond = (acc_i & don_j) | (don_i & acc_j)
    rmin = np.where(hbond, rmin + HBOND_AD, rmin)
    rmin = np.where(acc_i & (hj == "H"), r[i] + HBOND_AH, rmin)
    rmin = np.where(acc_j & (hi == "H"), r[j] + HBOND_AH, rmin)
    ion = rs.ion_radius[i] + rs.ion_radius[j]
    metal = (rs.metal[i] | rs.metal[j]) & np.isfinite(ion)
    rmin = np.where(metal & ~hbond, ion, rmin)
    re = rs.clash_radius
    return np.where(is14, re[i] + re[j] + rs.tors_inc[i] + rs.tors_inc[j], rmin)


class NeighbourList:
    """Nonbonded pairs within r_min + skin, rebuilt when an atom moved > skin / 2.

    Built with a k-d tree (scipy ``cKDTree.query_pairs``), O(N log N) to build and
    O(N) pairs for a protein's density.  A pair left out at build time was farther
    than r_min + skin, so it cannot come closer than r_min before some atom has moved
    more than skin / 2 (triggering a rebuild).

    Parameters
    ----------
    rs : RestraintSet
    skin : float
        Å (default 1.0).
    radius : ndarray (N,), optional
        Radii for the minimum distances (default ``rs.vdw_radius``).
    include14 : bool
        Keep 1-4 pairs (False for clash counting).

    Attributes
    ----------
    pairs : ndarray (npairs, 2) int64, i < j
    rmin : ndarray (npairs,) float64, Å
    n_builds : int
        Number of (re)builds so far.
    """

    def __init__(self, rs, skin: float = 1.0, radius=None, include14: bool = True):
        self.rs = rs
        self.radius = rs.vdw_radius if radius is None else np.asarray(radius)
        self.include14 = include14
        self.skin = float(skin)
        self.ref = None
        self.n_builds = 0
        n = rs.n_atoms
        self._excl_keys = _pair_keys(rs.exclusions, n)
        self._k14 = _pair_keys(rs.pairs14, n)
        self.cutoff = 2 * float(np.max(self.radius, initial=0.0)) if n else 0.0
        if np.isfinite(rs.ion_radius).any():
            self.cutoff = max(self.cutoff, 2 * float(np.nanmax(rs.ion_radius)))

    def needs_update(self, xyz) -> bool:
        """True when no list exists or an atom moved more than skin / 2 since the build."""
        if self.ref is None or len(self.ref) != len(xyz):
            return True
        d2 = ((np.asarray(xyz) - self.ref) ** 2).sum(1)
        return bool(d2.max(initial=0.0) > (0.5 * self.skin) ** 2)

    def build(self, xyz) -> None:
        """(Re)build the list at positions ``xyz`` (N, 3) Å."""
        from scipy.spatial import cKDTree

        xyz = np.asarray(xyz, dtype=np.float64)
        n = len(xyz)
        p = cKDTree(xyz).query_pairs(self.cutoff + self.skin, output_type="ndarray")
        p = p.astype(np.int64).reshape(-1, 2)
        p.sort(axis=1)
        keys = _pair_keys(p, n)
        alt = self.rs.altloc
        keep = ~np.isin(keys, self._excl_keys)
        if not self.include14:
            keep &= ~np.isin(keys, self._k14)
        keep &= (alt[p[:, 0]] == "") | (alt[p[:, 1]] == "") | (alt[p[:, 0]] == alt[p[:, 1]])
        p, keys = p[keep], keys[keep]
        rmin = pair_minimum(self.rs, p[:, 0], p[:, 1], np.isin(keys, self._k14), self.radius)
        d = np.linalg.norm(xyz[p[:, 0]] - xyz[p[:, 1]], axis=1)
        near = d < rmin + self.skin
        order = np.argsort(keys[near], kind="stable")
        self.pairs, self.rmin = p[near][order], rmin[near][order]
        self.ref = xyz.copy()
        self.n_builds += 1
        log.debug("Neighbour list (k-d tree, cutoff %.2f + skin %.2f Å): %d pairs",
                  self.cutoff, self.skin, len(self.pairs))

    def update(self, xyz) -> bool:
        """Rebuild if needed; return True when rebuilt."""
        if self.needs_update(xyz):
            self.build(xyz)
            return True
        return False
