"""Twinning: candidate twin laws, intensity statistics, and which law to model.

A merohedral (or pseudo-merohedral) twin is two lattice orientations in one crystal: every
measured intensity is I_obs(h) = (1 − α) I(h) + α I(Th), with T a twin law (an operator
of the lattice's symmetry that is not in the crystal's point group) and α ≤ 1/2 the twin
fraction. The model side (|F_model|² = (1 − α)|F(h)|² + α|F(Th)|², α refined with the
scales) lives in `densrefine.xtal.scale` and `densrefine.xtal.api`; this module decides
from the data alone whether to use it.

* Candidate laws: gemmi ``find_twin_laws`` (operators of the metric's lattice symmetry,
  obliquity ≤ ``max_obliquity`` degrees, Le Page 1982 J. Appl. Cryst. 15, 255), coset
  representatives only.
* L-test (Padilla & Yeates 2003, Acta Cryst. D59, 1124): local intensity differences
  L = (I(h) − I(h+Δ)) / (I(h) + I(h+Δ)) over pairs of acentric reflections with
  Δ ∈ {−2, 0, 2}³ \\ {0} (the same parity classes, so that translational NCS does not
  bias it). ⟨|L|⟩ = 1/2 and ⟨L²⟩ = 1/3 without twinning; 3/8 and 1/5 for a perfect twin.
  It needs no twin law and is robust to anisotropy.
* H-test (Yeates 1997, Methods Enzymol. 276, 344): for one law,
  H = |I(h) − I(Th)| / (I(h) + I(Th)) over acentric twin-related pairs (both I > 0, the
  stronger half of the pairs as phenix.xtriage, ranked without bias, see `h_test`);
  ⟨H⟩ = 1/2 − α for a partial twin, so
  α_H = 1/2 − ⟨H⟩. Rotational NCS parallel to the law raises α_H too, which is why the
  decision also asks the L-test.

Decision (``twin="auto"`` in `densrefine.xtal.rfactor`): twinning is *indicated* when a
law exists and either ⟨|L|⟩ < `L_TWINNED` (phenix.xtriage's threshold) or the best law's
α_H ≥ `ALPHA_H_TWINNED`; the twin model is then refined and kept when the refined α is at
least `ALPHA_MIN`.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import asdict, dataclass, field

import numpy as np

from .fcalc import symmetry_images

log = logging.getLogger("densrefine")

L_TWINNED = 0.44
"""⟨|L|⟩ below this suggests twinning (phenix.xtriage: 0.5 untwinned, 0.375 perfect twin)."""
ALPHA_H_TWINNED = 0.10
"""α_H from the H-test at or above this (for the best law) suggests twinning. Measured on the
shared entries: 3IO0 0.02 (its refined fraction with cctbx: 0.04), 1L2H 0.32, 3NR7 0.19."""
ALPHA_MIN = 0.05
"""A refined twin fraction below this is not kept (the twin model changes R by < 0.005)."""
MAX_OBLIQUITY = 3.0
"""Largest obliquity (degrees) of a pseudo-merohedral twin law (gemmi ``find_twin_laws``)."""


def twin_laws(cell, spacegroup, max_obliquity: float = MAX_OBLIQUITY) -> list:
    """Candidate twin laws of a lattice: gemmi ``Op`` (real space), one per coset.

    Parameters
    ----------
    cell : gemmi.UnitCell
    spacegroup : gemmi.SpaceGroup
    max_obliquity : float
        Degrees; 0 would keep only merohedral laws, 3 admits pseudo-merohedry.

    Returns
    -------
    list of gemmi.Op
        ``op.as_hkl().triplet()`` names the law in reciprocal space ("-h,k,-l").

    Examples
    --------
    >>> import gemmi
    >>> [op.as_hkl().triplet() for op in twin_laws(gemmi.UnitCell(54, 54, 77, 90, 90, 90),
    ...                                              gemmi.SpaceGroup("P 43"))]
    ['-h,k,-l']
    """
    import gemmi

    return list(gemmi.find_twin_laws(cell, spacegroup, float(max_obliquity), False))


def law_name(op) -> str:
    """Reciprocal-space name of a twin law (gemmi ``Op``), e.g. ``-h,k,-l``."""
    return op.as_hkl().triplet()


def apply_law(op, hkl) -> np.ndarray:
    """Twin mates Th of Miller indices ``hkl`` (n, 3) under a real-space law ``op``.

    Same convention as gemmi ``Op.apply_to_hkl`` (the row vector h·R), int64 (n, 3).
    """
    rot = np.array(op.rot, np.int64)
    return (np.asarray(hkl, np.int64) @ rot) // op.DEN


def _keys(hkl, m):
    w = 2 * m + 1
    h = np.asarray(hkl, np.int64) + m
    return (h[..., 0] * w + h[..., 1]) * w + h[..., 2]


class ReflectionLookup:
    """Row of a reflection list for any index: all symmetry mates and Friedel mates of the
    (merged, ASU) reflections map to their row; absent indices give −1."""

    def __init__(self, hkl, spacegroup, margin: int = 4):

        k, _ = symmetry_images(spacegroup, hkl)                      # (n_ops, n, 3)
        allk = np.concatenate([k, -k]).reshape(-1, 3)
        rows = np.tile(np.arange(len(hkl)), 2 * k.shape[0])
        self.m = int(np.abs(allk).max(initial=0)) + margin
        self.keys, first = np.unique(_keys(allk, self.m), return_index=True)
        self.rows = rows[first]

    def find(self, hkl) -> np.ndarray:
        """Row of each index in ``hkl`` (..., 3), −1 where absent."""
        q = np.asarray(hkl, np.int64)
        inside = np.all(np.abs(q) <= self.m, axis=-1)
        key = _keys(np.where(inside[..., None], q, 0), self.m)
        pos = np.clip(np.searchsorted(self.keys, key), 0, len(self.keys) - 1)
        return np.where(inside & (self.keys[pos] == key), self.rows[pos], -1)


def _unique_pairs(i, j):
    a, b = np.minimum(i, j), np.maximum(i, j)
    pairs = np.unique(np.stack([a, b], 1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def l_test(hkl, intensity, spacegroup, lookup=None) -> dict:
    """Padilla–Yeates L-test on acentric reflections (see module docstring).

    Parameters
    ----------
    hkl : ndarray (n, 3), int
        Unique (ASU) Miller indices.
    intensity : ndarray (n,)
        Intensities (any overall scale; F² when only amplitudes exist).
    spacegroup : gemmi.SpaceGroup
    lookup : ReflectionLookup, optional

    Returns
    -------
    dict
        ``mean_abs_l``, ``mean_l2``, ``n_pairs`` and the reference values
        (``untwinned`` 0.5 / 0.333, ``perfect_twin`` 0.375 / 0.2).
    """
    lookup = lookup or ReflectionLookup(hkl, spacegroup)
    hkl = np.asarray(hkl, np.int64)
    acen = ~np.asarray(spacegroup.operations().centric_flag_array(hkl.astype(np.int32)), bool)
    deltas = [d for d in itertools.product((-2, 0, 2), repeat=3) if d > (0, 0, 0)]
    rows = np.flatnonzero(acen)
    ii, jj = [], []
    for d in deltas:
        j = lookup.find(hkl[rows] + np.array(d))
        ok = j >= 0
        ii.append(rows[ok])
        jj.append(j[ok])
    i, j = np.concatenate(ii), np.concatenate(jj)
    keep = (i != j) & acen[j]
    i, j = _unique_pairs(i[keep], j[keep])
    s = intensity[i] + intensity[j]
    ok = s > 0
    lv = np.clip((intensity[i][ok] - intensity[j][ok]) / s[ok], -1, 1)
    if not lv.size:
        return {"mean_abs_l": None, "mean_l2": None, "n_pairs": 0}
    return {"mean_abs_l": float(np.abs(lv).mean()), "mean_l2": float((lv ** 2).mean()),
            "n_pairs": int(lv.size), "untwinned": [0.5, 1 / 3], "perfect_twin": [0.375, 0.2]}


def h_test(hkl, intensity, spacegroup, law, *, d=None, lookup=None,
           fraction: float = 0.5) -> dict:
    """Yeates H-test for one twin law (see module docstring).

    Parameters
    ----------
    hkl : ndarray (n, 3), int
    intensity : ndarray (n,)
    spacegroup : gemmi.SpaceGroup
    law : gemmi.Op
    d : ndarray (n,), optional
        Resolution (Å) of each reflection, to rank pairs within resolution shells.
    lookup : ReflectionLookup, optional
    fraction : float
        Share of the pairs used: the strongest by I(h) + I(Th) relative to the shell's mean.
        For Wilson statistics H does not depend on the pair's sum (twinned or not), so
        the selection is unbiased and drops the pairs that noise dominates; ranking by
        the weaker partner's I/σ would not be (untwinned α_H 0.15 instead of 0).

    Returns
    -------
    dict
        ``law``, ``alpha`` (= 1/2 − ⟨H⟩, clipped to [0, 0.5]), ``mean_h``, ``n_pairs``.
    """
    lookup = lookup or ReflectionLookup(hkl, spacegroup)
    hkl = np.asarray(hkl, np.int64)
    acen = ~np.asarray(spacegroup.operations().centric_flag_array(hkl.astype(np.int32)), bool)
    j = lookup.find(apply_law(law, hkl))
    i = np.arange(len(hkl))
    keep = (j >= 0) & (j != i) & acen
    keep[keep] &= acen[j[keep]]
    i, j = _unique_pairs(i[keep], j[keep])
    pos = (intensity[i] > 0) & (intensity[j] > 0)
    i, j = i[pos], j[pos]
    out = {"law": law_name(law), "alpha": None, "mean_h": None, "n_pairs": int(len(i))}
    if len(i) < 10:
        return out
    tot = intensity[i] + intensity[j]
    if d is not None:
        inv = 1.0 / np.asarray(d, np.float64)[i] ** 2
        shell = np.searchsorted(np.quantile(inv, np.linspace(0, 1, 11)[1:-1]), inv)
        mean = np.bincount(shell, tot) / np.maximum(np.bincount(shell), 1)
        tot = tot / mean[shell]
    top = np.argsort(-tot)[: max(10, int(fraction * len(i)))]
    i, j = i[top], j[top]
    h = np.abs(intensity[i] - intensity[j]) / (intensity[i] + intensity[j])
    out.update(mean_h=float(h.mean()), alpha=float(np.clip(0.5 - h.mean(), 0.0, 0.5)),
               n_pairs=int(len(i)))
    return out


@dataclass
class TwinAnalysis:
    """What the data say about twinning (JSON-ready through `to_dict`).

    laws : list of str
        Candidate twin laws (reciprocal space, "-h,k,-l").
    l_test : dict
        `l_test` result (over all acentric reflections).
    h_tests : list of dict
        `h_test` result per law.
    indicated : bool
        Whether the statistics suggest twinning (module docstring).
    law : str or None
        The law to model (largest α_H) when indicated.
    alpha_h : float or None
        That law's α_H, the starting twin fraction.
    reason : str
        One sentence for the log.
    source : str
        "intensities" or "amplitudes squared".
    """

    laws: list = field(default_factory=list)
    l_test: dict = field(default_factory=dict)
    h_tests: list = field(default_factory=list)
    indicated: bool = False
    law: str | None = None
    alpha_h: float | None = None
    reason: str = ""
    source: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def analyse_twinning(refl, *, max_obliquity: float = MAX_OBLIQUITY) -> tuple:
    """Twin laws and statistics of reflection data; which law (if any) to model.

    Parameters
    ----------
    refl : densrefine.io.reflections.Reflections
        Uses the intensities when the data were read as such, else F².

    Returns
    -------
    analysis : TwinAnalysis
    op : gemmi.Op or None
        The law to model (``analysis.law``), or None.
    """
    ops = twin_laws(refl.cell, refl.spacegroup, max_obliquity)
    if refl.i is not None and np.isfinite(refl.i).mean() > 0.9:
        ok = np.isfinite(refl.i) & np.isfinite(refl.sigi) & (refl.sigi > 0)
        refl = refl.select(ok)
        inten, source = refl.i, "intensities"
    else:
        # F² of (often French–Wilson) amplitudes flattens weak intensities: the L-test
        # reads lower (3IO0: <|L|> 0.455 from FOBS², 0.481 from IOBS)
        inten, source = refl.f ** 2, "amplitudes squared"
    lookup = ReflectionLookup(refl.hkl, refl.spacegroup)
    lt = l_test(refl.hkl, inten, refl.spacegroup, lookup)
    hts = [h_test(refl.hkl, inten, refl.spacegroup, op, d=refl.d, lookup=lookup) for op in ops]
    out = TwinAnalysis([law_name(op) for op in ops], lt, hts, source=source)
    ml = lt.get("mean_abs_l")
    l_txt = "n/a" if ml is None else f"{ml:.3f}"
    if not ops:
        out.reason = (f"no twin law for {refl.spacegroup.hm} in this cell (obliquity "
                      f"<= {max_obliquity:g} deg); L-test <|L|> {l_txt}")
        _log(out)
        return out, None
    k = int(np.argmax([h["alpha"] if h["alpha"] is not None else -1 for h in hts]))
    best = hts[k]
    by_l = ml is not None and ml < L_TWINNED
    by_h = best["alpha"] is not None and best["alpha"] >= ALPHA_H_TWINNED
    out.indicated = bool(by_l or by_h)
    laws_txt = ", ".join(f"{h['law']} (alpha_H {h['alpha']:.3f})" if h["alpha"] is not None
                         else f"{h['law']} (no pairs)" for h in hts)
    out.reason = (f"L-test <|L|> {l_txt} (0.5 untwinned, 0.375 perfect twin; threshold "
                  f"{L_TWINNED}); H-test: {laws_txt}: "
                  + ("twinning indicated" if out.indicated else "no twinning indicated"))
    if out.indicated:
        out.law, out.alpha_h = best["law"], best["alpha"]
    _log(out)
    return out, (ops[k] if out.indicated else None)


def _log(out: TwinAnalysis) -> None:
    log.info("Twinning (Padilla & Yeates 2003 L-test; Yeates 1997 H-test, from %s): "
             "candidate laws %s; %s", out.source, ", ".join(out.laws) or "none", out.reason)
