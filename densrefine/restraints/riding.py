"""Riding hydrogens for the nonbonded term of models without hydrogens.

Most cryo-EM models (and many X-ray ones) carry no hydrogens. Their van der Waals
repulsion then has to use united-atom radii (ener_lib ``vdwh_radius``: C 1.92, N 1.60,
O 1.52 Å), spheres that stand for the heavy atom and its hydrogens together. These are
too large where no hydrogen points (the deposited 6YYT RNA violates them by 0.4–0.5 Å at
C2′…O2 and C2′…C5′ of the next residue) and blind where one does, so a fit can press
bases and backbones into each other without paying for it, and MolProbity's clashscore,
which places hydrogens before counting (`densrefine.validation.clashes`), goes up
(6YYT from a 0.5 Å start: 10.7 → 22.6, two thirds of the clashes involving H).

Refmac and servalcat add riding hydrogens by default for the same reason (servalcat
``--hydrogen all``; Murshudov et al. 2011, Acta Cryst D67, 355; Yamashita et al. 2021,
Acta Cryst D77, 1282). Here:

1. hydrogens are placed once on the input coordinates by gemmi
   (``prepare_topology(..., HydrogenChange.ReAddButWater)``; CCP4 monomer library ideals,
   electron-cloud X–H distances, the same placement the clashscore uses);
2. each hydrogen H of parent P is written in a local frame of P and two heavy atoms A, B
   (A bonded to P; B a second heavy neighbour of P, else a heavy neighbour of A):
   e1 = (A − P)/|A − P|, e2 = the unit part of B − P orthogonal to e1, e3 = e1 × e2, and
   H = P + c1 e1 + c2 e2 + c3 e3 with c fixed (SHELXL's riding model, AFIX; the frame
   follows the heavy atoms, so a methyl turns with its χ);
3. pairs with a hydrogen (H…X and H…H) get a one-sided contact restraint with Probe's
   radii, the ones MolProbity's clashscore uses (`densrefine.restraints.contacts`):
   Σ (max(0, r_i + r_j − `TOLERANCE` − d)/σ)², σ = `NB_SIGMA`, leaving out what Probe
   leaves out (atoms ≤ 4 bonds apart, polar H with an acceptor, other altlocs). Heavy-atom
   pairs keep the united-atom Refmac term (`densrefine.restraints.nonbonded`); the
   hydrogens add no density and no other restraint (their geometry is the frame's).

Indices of the extended set: the model's atoms keep theirs (0 … N − 1); hydrogen k is
N + k.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from ..io.model import structure_from_model
from .contacts import excluded_pairs, probe_types
from .monlib import read_library
from .nonbonded import NB_SIGMA  # noqa: F401 (σ of the contact term, see GeometryTerm)

log = logging.getLogger("densrefine")

TOLERANCE = 0.3
"""Å: overlap of Probe spheres left free (MolProbity calls ≥ 0.4 Å a clash)."""


@dataclass(frozen=True, eq=False)
class RidingHydrogens:
    """Riding hydrogens of a model and the nonbonded parameters of heavy atoms + H.

    Attributes
    ----------
    n_heavy : int
        Atoms of the model (N).
    parent, ref1, ref2 : ndarray (M,) int64
        P, A and B of each hydrogen's frame (model atom indices).
    coef : ndarray (M, 3) float64
        c1, c2, c3 (Å) of each hydrogen in its frame.
    nb : SimpleNamespace
        Typing of the N + M atoms: radius (Probe, Å), is_h, donor_h, acceptor, water,
        altloc, and ``excluded`` (sparse (N + M)², pairs Probe leaves out).
    """

    n_heavy: int
    parent: np.ndarray
    ref1: np.ndarray
    ref2: np.ndarray
    coef: np.ndarray
    nb: SimpleNamespace

    @property
    def n_h(self) -> int:
        return len(self.parent)

    def contacts(self, skin: float = 1.0) -> ContactList:
        """A neighbour list of the pairs with a hydrogen (`ContactList`)."""
        return ContactList(self.nb, self.n_heavy, skin)

    def positions(self, xyz) -> np.ndarray:
        """Hydrogen positions (M, 3) Å for heavy-atom positions ``xyz`` (N, 3) (numpy; the
        differentiable torch path is `GeometryTerm.with_hydrogens`)."""
        xyz = np.asarray(xyz, np.float64)
        return ride(xyz[self.parent], xyz[self.ref1], xyz[self.ref2], self.coef)


def _unit(v):
    n2 = (v * v).sum(-1)[..., None]
    if isinstance(v, np.ndarray):
        return v / np.sqrt(np.maximum(n2, 1e-24))
    return v / n2.clamp_min(1e-24).sqrt()


def _frame(p, a, b):
    """Orthonormal frame (e1, e2, e3) at P from A and B (numpy or torch, (M, 3) each)."""
    e1 = _unit(a - p)
    v = b - p
    e2 = _unit(v - (v * e1).sum(-1)[..., None] * e1)
    if isinstance(p, np.ndarray):
        return e1, e2, np.cross(e1, e2)
    import torch

    return e1, e2, torch.linalg.cross(e1, e2)


def ride(p, a, b, coef):
    """H = P + c1 e1 + c2 e2 + c3 e3 in the frame of (P, A, B); see the module docstring."""
    e1, e2, e3 = _frame(p, a, b)
    return p + coef[:, 0:1] * e1 + coef[:, 1:2] * e2 + coef[:, 2:3] * e3


def _frames(parent, heavy_nbrs):
    """(A, B) of each hydrogen's frame, or −1 where the parent has no usable neighbours."""
    r1 = np.full(len(parent), -1, np.int64)
    r2 = np.full(len(parent), -1, np.int64)
    for k, p in enumerate(parent):
        nb = heavy_nbrs.get(int(p), [])
        if not nb:
            continue
        a = nb[0]
        second = nb[1:] or [x for x in heavy_nbrs.get(a, []) if x != p]
        if second:
            r1[k], r2[k] = a, second[0]
    return r1, r2


def riding_hydrogens(model, rs, *, monlib=None, ligands=()) -> RidingHydrogens | None:
    """Riding hydrogens for ``model`` (no hydrogens) with restraints ``rs``; None if the
    model has hydrogens already or none can be placed (logged).

    Parameters
    ----------
    model : densrefine.Model
    rs : RestraintSet
        The model's restraints (their bonds, e.g. stretched links, join the exclusion graph).
    monlib, ligands : as for `densrefine.restraints.build_restraints`.
    """
    import gemmi

    from .topology import _arrays, _chem_types, _known_part

    at = model.atoms
    if np.any(at.is_hydrogen) or len(at) == 0:
        return None
    t0 = time.perf_counter()
    ml, missing = read_library(np.unique(at.res_name).tolist(), monlib=monlib,
                               ligands=tuple(ligands))
    sub, keep = _known_part(model, missing) if missing else (model, np.arange(len(at)))
    st = structure_from_model(sub)
    heavy_key = {}
    for ci, ch in enumerate(st[0]):
        for ri, res in enumerate(ch):
            for a in res:
                heavy_key[(ci, ri, a.name, a.altloc)] = int(keep[a.serial - 1])
    try:
        topo = gemmi.prepare_topology(st, ml, h_change=gemmi.HydrogenChange.ReAddButWater,
                                      warnings=None, ignore_unknown_links=True, reorder=False)
    except RuntimeError as exc:
        log.info("Riding hydrogens: none (gemmi could not place them: %s); united-atom "
                 "radii in the nonbonded term", " ".join(str(exc).split()))
        return None
    n = len(at)
    cat = []            # new serial − 1 → index in (model atoms, then hydrogens)
    h_xyz, h_alt = [], []
    for ci, ch in enumerate(st[0]):
        for ri, res in enumerate(ch):
            for a in res:
                if a.is_hydrogen():
                    cat.append(n + len(h_xyz))
                    h_xyz.append((a.pos.x, a.pos.y, a.pos.z))
                    h_alt.append("" if a.altloc == "\0" else a.altloc)
                else:
                    cat.append(heavy_key[(ci, ri, a.name, a.altloc)])
    cat = np.asarray(cat, np.int64)
    m = len(h_xyz)
    if m == 0:
        return None
    arr = _arrays(topo)
    tb = cat[np.asarray(arr["bonds"], np.int64)].reshape(-1, 2)
    bonds = np.unique(np.sort(np.concatenate([tb, np.asarray(rs.bonds, np.int64)]), 1), axis=0)
    is_h = np.r_[np.zeros(n, bool), np.ones(m, bool)]
    parent = np.full(m, -1, np.int64)
    hb = bonds[is_h[bonds].sum(1) == 1]
    hb = np.where(is_h[hb[:, 0]][:, None], hb[:, ::-1], hb)      # (heavy, H)
    parent[hb[:, 1] - n] = hb[:, 0]
    heavy_nbrs: dict[int, list[int]] = {}
    for i, j in bonds[~is_h[bonds].any(1)]:
        heavy_nbrs.setdefault(int(i), []).append(int(j))
        heavy_nbrs.setdefault(int(j), []).append(int(i))
    for v in heavy_nbrs.values():
        v.sort()
    r1, r2 = _frames(parent, heavy_nbrs)
    ok = (parent >= 0) & (r1 >= 0)
    if not ok.all():        # drop hydrogens without a frame (and their bonds)
        old = np.flatnonzero(ok) + n
        new_of = np.full(n + m, -1, np.int64)
        new_of[:n] = np.arange(n)
        new_of[old] = n + np.arange(len(old))
        bonds = new_of[bonds]
        bonds = bonds[(bonds >= 0).all(1)]
        cat = new_of[cat]
        parent, r1, r2 = parent[ok], r1[ok], r2[ok]
        h_xyz = [h for h, k in zip(h_xyz, ok) if k]
        h_alt = [h for h, k in zip(h_alt, ok) if k]
        m = len(parent)
        if m == 0:
            return None
    xyz = np.asarray(at.xyz, np.float64)
    hpos = np.asarray(h_xyz, np.float64)
    e1, e2, e3 = _frame(xyz[parent], xyz[r1], xyz[r2])
    d = hpos - xyz[parent]
    coef = np.stack([(d * e1).sum(1), (d * e2).sum(1), (d * e3).sum(1)], 1)
    n_all = n + m
    types = np.full(n_all, "", dtype=object)
    names = np.full(n_all, "", dtype=object)
    t_aug = _chem_types(topo, len(cat))
    valid = cat >= 0
    types[cat[valid]] = t_aug[valid]
    names[:n] = np.asarray(at.atom_name).astype(str)
    h_names = [a.name for ch in st[0] for res in ch for a in res if a.is_hydrogen()]
    h_kept = np.flatnonzero(ok) if not ok.all() else np.arange(len(h_names))
    names[n:] = np.asarray(h_names, object)[h_kept]
    resn = np.r_[np.asarray(at.res_name).astype(str),
                 np.asarray(at.res_name).astype(str)[parent]]
    element = np.r_[np.char.upper(np.asarray(at.element).astype(str)), np.full(m, "H")]
    typed = probe_types(element, list(names), list(resn), list(types), bonds, ml.ener_lib)
    altloc = np.r_[np.asarray(at.altloc).astype("<U1"), np.asarray(h_alt, "<U1")]
    nb = SimpleNamespace(n_atoms=n_all, altloc=altloc,
                         excluded=excluded_pairs(bonds, typed["is_h"], n_all), **typed)
    log.info("Riding hydrogens for the nonbonded term: %d placed by gemmi (monomer library, "
             "electron-cloud X–H); their contacts use Probe radii, overlaps > %.2f Å "
             "restrained (%.2f s)", m, TOLERANCE, time.perf_counter() - t0)
    return RidingHydrogens(n_heavy=n, parent=parent, ref1=r1, ref2=r2, coef=coef, nb=nb)


class ContactList:
    """Pairs with a hydrogen within reach of a contact restraint, rebuilt when an atom of
    heavy atoms + hydrogens moved more than skin / 2 (as `nonbonded.NeighbourList`).

    Attributes
    ----------
    pairs : ndarray (k, 2) int64
        Indices into heavy atoms + hydrogens (N + M), i < j, at least one ≥ N.
    rmin : ndarray (k,) float64
        r_i + r_j − `TOLERANCE` (Å).
    """

    def __init__(self, nb, n_heavy: int, skin: float = 1.0):
        import scipy.sparse as sp

        self.nb, self.n_heavy, self.skin = nb, int(n_heavy), float(skin)
        self.cutoff = 2 * float(np.max(nb.radius)) - TOLERANCE
        self.pairs = np.zeros((0, 2), np.int64)
        self.rmin = np.zeros(0)
        n = len(nb.radius)
        ex = sp.triu(nb.excluded, k=1).tocoo()
        with_h = nb.is_h[ex.row] | nb.is_h[ex.col]
        self._excl = np.sort(ex.row[with_h].astype(np.int64) * n + ex.col[with_h])

    def build(self, xyz) -> None:
        """(Re)build at positions ``xyz`` (N + M, 3) Å."""
        from scipy.spatial import cKDTree

        xyz = np.asarray(xyz, np.float64)
        nb, n = self.nb, len(xyz)
        p = cKDTree(xyz).query_pairs(self.cutoff + self.skin, output_type="ndarray")
        p = p.astype(np.int64).reshape(-1, 2)
        p.sort(axis=1)
        p = p[nb.is_h[p[:, 0]] | nb.is_h[p[:, 1]]]
        a, b = p[:, 0], p[:, 1]
        keys = a * n + b
        pos = np.searchsorted(self._excl, keys)
        excluded = (pos < len(self._excl)) & (self._excl[np.minimum(pos, len(self._excl) - 1)]
                                              == keys)
        hbond = (nb.donor_h[a] & nb.acceptor[b]) | (nb.donor_h[b] & nb.acceptor[a])
        alt = nb.altloc
        same = (alt[a] == "") | (alt[b] == "") | (alt[a] == alt[b])
        p = p[~excluded & ~hbond & same]
        rmin = nb.radius[p[:, 0]] + nb.radius[p[:, 1]] - TOLERANCE
        d = np.linalg.norm(xyz[p[:, 0]] - xyz[p[:, 1]], axis=1)
        near = d < rmin + self.skin
        self.pairs, self.rmin = p[near], rmin[near]
