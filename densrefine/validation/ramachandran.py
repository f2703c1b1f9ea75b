"""Ramachandran validation with MolProbity's Top8000 contours and categories.

Residues: amino acids (first conformer, altloc "" or "A") with N, CA, C whose previous
C and next N are peptide-linked (C–N ≤ 2.0 Å, same chain: cctbx's ``are_linked``
bond cut-off) and numbered consecutively (a gap in the residue numbers is a break for
MolProbity too, even when the atoms are bonded); φ = C(i−1)–N–CA–C and ψ = N–CA–C–N(i+1).

Classes, in MolProbity's order of precedence (ramalyze; Read et al. 2011, Structure 19,
1395): Gly; Pro with ω(i−1) = CA(i−1)–C(i−1)–N–CA within ±90° → cis-Pro, else trans-Pro;
residue before a Pro → pre-Pro; Ile or Val → Ile/Val; everything else → general.

Evaluation: bilinear interpolation (periodic) of the class's Top8000 percentile grid
(`densrefine.validation.tables`; Williams et al. 2018, Protein Sci 27, 293) at (φ, ψ);
favoured ≥ 0.02, allowed ≥ 0.0005 (general), ≥ 0.002 (cis-Pro), ≥ 0.001 (others), else
outlier — ramalyze's thresholds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..restraints.chains import AMINO_ACIDS, peptide_links, residue_atoms
from ..restraints.rama import dihedrals
from .tables import RAMA_CLASSES, rama_grids

FAVORED = 0.02
ALLOWED = {"general": 0.0005, "cispro": 0.002}
ALLOWED_DEFAULT = 0.001


@dataclass(frozen=True)
class RamaResult:
    """Per-residue Ramachandran evaluation.

    Attributes
    ----------
    keys : list of (chain, res_seq, icode, res_name)
    cls : ndarray (n,) of str
        One of `densrefine.validation.tables.RAMA_CLASSES`.
    phi_psi : ndarray (n, 2) float64
        φ, ψ in degrees.
    score : ndarray (n,) float64
        Top8000 percentile value (fraction of reference residues outside the contour).
    label : ndarray (n,) of str
        "favored", "allowed" or "outlier".
    """

    keys: list
    cls: np.ndarray
    phi_psi: np.ndarray
    score: np.ndarray
    label: np.ndarray

    def summary(self) -> dict:
        """Counts and percentages (see `densrefine.validation.ValidationReport`)."""
        n = len(self.keys)
        out = {"n": n}
        for name in ("favored", "allowed", "outlier"):
            k = int(np.sum(self.label == name))
            out[name] = k
            out[f"{name}_pct"] = round(100.0 * k / n, 2) if n else 0.0
        out["outliers"] = [_label(k) + f" {c} φ={p:.0f} ψ={s:.0f}" for k, c, (p, s), lab
                           in zip(self.keys, self.cls, self.phi_psi, self.label)
                           if lab == "outlier"]
        return out


def _label(key) -> str:
    chain, seq, icode, name = key
    return f"{chain} {name} {seq}{icode}"


def interpolate(grid, phi, psi) -> np.ndarray:
    """Bilinear periodic interpolation of a (180, 180) 2°-bin grid at angles (degrees)."""
    u = (np.asarray(phi, np.float64) + 179.0) / 2.0
    v = (np.asarray(psi, np.float64) + 179.0) / 2.0
    i0, j0 = np.floor(u).astype(int), np.floor(v).astype(int)
    fu, fv = u - i0, v - j0
    i0, j0 = i0 % 180, j0 % 180
    i1, j1 = (i0 + 1) % 180, (j0 + 1) % 180
    return ((1 - fu) * (1 - fv) * grid[i0, j0] + fu * (1 - fv) * grid[i1, j0]
            + (1 - fu) * fv * grid[i0, j1] + fu * fv * grid[i1, j1])


def classify(cls, score) -> np.ndarray:
    """"favored" / "allowed" / "outlier" (n,) from classes and percentile values."""
    cls, score = np.asarray(cls), np.asarray(score, np.float64)
    allowed = np.array([ALLOWED.get(str(c), ALLOWED_DEFAULT) for c in cls])
    return np.where(score >= FAVORED, "favored",
                    np.where(score >= allowed, "allowed", "outlier")).astype("<U8")


def evaluate(model) -> RamaResult:
    """Ramachandran evaluation of every residue with φ and ψ (module docstring).

    Parameters
    ----------
    model : densrefine.Model

    Returns
    -------
    RamaResult

    Examples
    --------
    >>> from densrefine.build import ideal_peptide
    >>> r = evaluate(ideal_peptide("A" * 8))             # α-helix
    >>> r.summary()["favored"], r.summary()["n"]
    (6, 6)
    """
    at = model.atoms
    rows = [(r, a) for r, a in residue_atoms(at, ("N", "CA", "C")) if len(a) == 3]
    name_all = np.asarray(at.res_name).astype(str)
    rows = [(r, a) for r, a in rows if name_all[a["CA"]] in AMINO_ACIDS]
    empty = RamaResult([], np.zeros(0, "<U8"), np.zeros((0, 2)), np.zeros(0),
                       np.zeros(0, "<U8"))
    if len(rows) < 3:
        return empty
    n, ca, c = (np.array([a[k] for _, a in rows], np.int64) for k in ("N", "CA", "C"))
    xyz = np.asarray(at.xyz, np.float64)
    chain = np.asarray(at.chain).astype(str)[n]
    name = name_all[n]
    seq = np.asarray(at.res_seq)[n]
    link = peptide_links(xyz, c, n, chain) & np.isin(np.diff(seq), (0, 1))
    mid = np.flatnonzero(link[:-1] & link[1:]) + 1
    if len(mid) == 0:
        return empty
    phi = dihedrals(xyz, np.stack([c[mid - 1], n[mid], ca[mid], c[mid]], 1))
    psi = dihedrals(xyz, np.stack([n[mid], ca[mid], c[mid], n[mid + 1]], 1))
    omega = dihedrals(xyz, np.stack([ca[mid - 1], c[mid - 1], n[mid], ca[mid]], 1))
    cls = np.full(len(mid), "general", dtype="<U8")
    cls[np.isin(name[mid], ("ILE", "VAL"))] = "ileval"
    cls[name[mid + 1] == "PRO"] = "prepro"
    is_pro = name[mid] == "PRO"
    cls[is_pro] = np.where(np.abs(omega[is_pro]) < 90.0, "cispro", "transpro")
    cls[name[mid] == "GLY"] = "gly"
    grids = rama_grids()
    score = np.zeros(len(mid))
    for cname in RAMA_CLASSES:
        m = cls == cname
        if m.any():
            score[m] = interpolate(grids[cname], phi[m], psi[m])
    keys = [(str(chain[k]), int(at.res_seq[n[k]]), str(at.icode[n[k]]).strip(), str(name[k]))
            for k in mid]
    return RamaResult(keys, cls, np.stack([phi, psi], 1), score, classify(cls, score))
