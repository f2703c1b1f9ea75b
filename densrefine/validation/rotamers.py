"""Rotamer validation against the Top8000 rotamer library (χ means and widths).

MolProbity's rotalyze (Hintze et al. 2016, Proteins 84, 1177) interpolates 1- to 4-D
contour grids of the Top8000 χ distributions and calls a side chain an outlier where
less than 0.3 % of the reference side chains lie outside the contour through it. Those
grids are megabytes; here each residue type's χ distribution is a mixture with one
Gaussian per rotamer, with the Top8000 χ means, standard deviations (widened by
`SD_SCALE`) and frequencies as weights (`densrefine.validation.tables`) — the compact
"rotamer library" idea of Lovell et al. 2000 (Proteins 40, 389) applied to the newer data:

    p(χ) = Σ_r f_r Π_k N(χ_k; μ_rk, s·σ_rk)     (Δχ periodic; mod 180° for the symmetric
                                                  χ2 of Phe, Tyr, Asp and χ3 of Glu)

A side chain's **score** is the percentile of p(χ) in the mixture itself: the fraction
(in %) of the mixture's mass where the density is lower (estimated once per residue type
from `N_SAMPLES` draws, fixed seed). It is an **outlier** when the score is below
`OUTLIER_PCT`. s = 1.4 and 1 % were chosen against cctbx's rotalyze on the 12 protein
models in ../shared/data (2539 side chains, Arg/Lys excluded because their grids were not
available to the peer): 99.0 % agree, 142 outliers against rotalyze's 129
(benchmarks/validation_vs_peers.py; docs/validation.md). The nearest rotamer (smallest
Σ_k (Δχ_k/σ_rk)²) is reported by name.

χ atoms are the IUPAC ones (Val χ1 to CG1, Ile χ1 to CG1, Leu χ2 to CD1, Asn/Asp χ2 to
OD1, Gln/Glu χ3 to OE1, His χ2 to ND1, Phe/Tyr/Trp χ2 to CD1, Pro χ1–χ3 of the ring);
selenomethionine is scored as Met. First conformer only; residues missing an atom are
skipped.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..restraints.chains import first_conformer
from ..restraints.rama import dihedrals
from .tables import rotamer_library

SD_SCALE = 1.4
"""Factor on the Top8000 χ standard deviations (their tails are wider than a Gaussian's)."""
OUTLIER_PCT = 1.0
"""Score (percentile of the mixture density, %) below which a side chain is an outlier."""
N_SAMPLES = 20000
"""Draws per residue type that set the percentile scale."""

_B = ("N", "CA", "CB")
CHI_ATOMS = {
    "SER": ("OG",), "THR": ("OG1",), "CYS": ("SG",), "VAL": ("CG1",),
    "ILE": ("CG1", "CD1"), "LEU": ("CG", "CD1"), "ASP": ("CG", "OD1"), "ASN": ("CG", "OD1"),
    "HIS": ("CG", "ND1"), "PHE": ("CG", "CD1"), "TYR": ("CG", "CD1"), "TRP": ("CG", "CD1"),
    "MET": ("CG", "SD", "CE"), "MSE": ("CG", "SE", "CE"), "GLU": ("CG", "CD", "OE1"),
    "GLN": ("CG", "CD", "OE1"), "LYS": ("CG", "CD", "CE", "NZ"),
    "ARG": ("CG", "CD", "NE", "CZ"), "PRO": ("CG", "CD", "N"),
}
"""Side-chain atoms after N, CA, CB: χ_k is the torsion of the chain's atoms k … k + 3."""
SYMMETRIC = {"PHE": (1,), "TYR": (1,), "ASP": (1,), "GLU": (2,)}
"""0-based χ indices with 180° symmetry."""


@dataclass(frozen=True)
class RotamerResult:
    """Per-side-chain rotamer evaluation.

    Attributes
    ----------
    keys : list of (chain, res_seq, icode, res_name)
    chi : list of ndarray
        χ angles (degrees) per residue.
    score : ndarray (n,) float64
        Percentile (%) of the side chain's mixture density (module docstring).
    rotamer : list of str
        Name of the nearest rotamer.
    outlier : ndarray (n,) bool
        score < `OUTLIER_PCT`.
    """

    keys: list
    chi: list
    score: np.ndarray
    rotamer: list
    outlier: np.ndarray

    def summary(self) -> dict:
        """Counts and percentage (see `densrefine.validation.ValidationReport`)."""
        n = len(self.keys)
        k = int(self.outlier.sum())
        return {"n": n, "outlier": k, "outlier_pct": round(100.0 * k / n, 2) if n else 0.0,
                "outliers": [f"{c} {rn} {s}{i} score={p:.2f}%" for (c, s, i, rn), p, o
                             in zip(self.keys, self.score, self.outlier) if o]}


def _side_chains(model):
    """{residue name: (keys, (n, n_atoms) atom indices)} for residues with all χ atoms."""
    at = model.atoms
    first = first_conformer(at)
    name = np.asarray(at.atom_name).astype(str)
    resn = np.asarray(at.res_name).astype(str)
    res = np.asarray(at.res_index)
    groups: dict = {}
    starts = np.flatnonzero(np.r_[True, res[1:] != res[:-1]])
    stops = np.r_[starts[1:], len(res)]
    for a, b in zip(starts, stops):
        rn = resn[a]
        if rn not in CHI_ATOMS:
            continue
        idx = {name[i]: i for i in range(a, b) if first[i]}
        want = _B + CHI_ATOMS[rn]
        if all(w in idx for w in want):
            key = (str(at.chain[a]), int(at.res_seq[a]), str(at.icode[a]).strip(), str(rn))
            groups.setdefault(rn, ([], []))
            groups[rn][0].append(key)
            groups[rn][1].append([idx[w] for w in want])
    return groups


def _params(rn):
    lib = rotamer_library()["MET" if rn == "MSE" else rn]
    mean = np.array([r["mean"] for r in lib])                 # (R, n_chi) degrees
    sd = np.array([r["sd"] for r in lib])
    f = np.array([r["freq"] for r in lib])
    period = np.full(mean.shape[1], 360.0)
    for k in SYMMETRIC.get(rn, ()):
        period[k] = 180.0
    return mean, sd, f / f.sum(), period, [r["name"] for r in lib]


def _z2(rn, chi, scale=1.0):
    """(n, R) Σ_k (Δχ_k / (scale σ_rk))² for χ (n, n_chi) degrees."""
    mean, sd, _, period, _ = _params(rn)
    d = chi[:, None, :] - mean[None]
    d = (d + period / 2) % period - period / 2
    return ((d / (scale * sd)[None]) ** 2).sum(-1)


def log_density(rn, chi) -> np.ndarray:
    """log p(χ) (n,) of the widened Top8000 mixture of residue type ``rn`` (up to a constant)."""
    _, sd, f, _, _ = _params(rn)
    e = np.log(f)[None] - np.log(SD_SCALE * sd).sum(1)[None] - 0.5 * _z2(rn, chi, SD_SCALE)
    m = e.max(1, keepdims=True)
    return (m + np.log(np.exp(e - m).sum(1, keepdims=True)))[:, 0]


@functools.lru_cache(maxsize=None)
def _reference(rn) -> np.ndarray:
    """Sorted log p of `N_SAMPLES` draws from the mixture (fixed seed): the percentile scale."""
    mean, sd, f, _, _ = _params(rn)
    rng = np.random.default_rng(20)
    k = rng.choice(len(f), N_SAMPLES, p=f)
    draw = mean[k] + rng.standard_normal(mean[k].shape) * SD_SCALE * sd[k]
    return np.sort(log_density(rn, draw))


def evaluate(model) -> RotamerResult:
    """Rotamer evaluation of every side chain with χ angles (module docstring).

    Parameters
    ----------
    model : densrefine.Model

    Returns
    -------
    RotamerResult

    Examples
    --------
    >>> from densrefine.build import ideal_peptide
    >>> r = evaluate(ideal_peptide("AVA"))
    >>> r.keys[0][3], r.rotamer[0], bool(r.outlier[0])
    ('VAL', 't', False)
    """
    xyz = np.asarray(model.atoms.xyz, np.float64)
    rows = []
    for rn, (keys, idx) in sorted(_side_chains(model).items()):
        idx = np.asarray(idx, np.int64)
        chi = np.stack([dihedrals(xyz, idx[:, j:j + 4]) for j in range(idx.shape[1] - 3)], 1)
        ref = _reference(rn)
        score = 100.0 * np.searchsorted(ref, log_density(rn, chi)) / len(ref)
        names = _params(rn)[4]
        best = _z2(rn, chi).argmin(1)
        rows += [(k, c, s, names[b]) for k, c, s, b in zip(keys, chi, score, best)]
    rows.sort(key=lambda r: r[0][:3])
    score = np.array([r[2] for r in rows], np.float64)
    return RotamerResult([r[0] for r in rows], [r[1] for r in rows], score,
                         [r[3] for r in rows], score < OUTLIER_PCT)
