"""Adapter between ``fit`` and `densrefine.restraints` (the geometry term).

`build_geometry` is the only place the refinement engine touches the restraints
package, so tests can substitute a stand-in and other restraint providers can plug in.
Besides the library restraints it provides the B-factor similarity restraint
(`b_similarity`) over bonded pairs and, at low resolution, secondary-structure
H-bond restraints (`densrefine.restraints.ss`) and Ramachandran restraints
(`densrefine.restraints.rama`) added to the geometry term.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .. import restraints as R
from ..restraints import rama as _rama
from ..restraints import ss as _ss

log = logging.getLogger("densrefine")


@dataclass
class Geometry:
    """What the engine needs from a restraint provider.

    Attributes
    ----------
    term : object
        Has ``energy(xyz) -> (total, parts)`` (torch, differentiable).
    restraints : object
        The `RestraintSet` (needs ``bonds``: (nb, 2) int atom indices).
    stats : callable
        ``stats(xyz ndarray (N, 3)) -> dict`` with at least bond_rmsd (Å), angle_rmsd (deg).
    """

    term: object
    restraints: object
    stats: object

    @property
    def bond_pairs(self) -> np.ndarray:
        """(nb, 2) int64 atom index pairs of the bond restraints."""
        b = getattr(self.restraints, "bonds", None)
        idx = getattr(b, "idx", b) if b is not None else None
        if idx is None:
            return np.zeros((0, 2), np.int64)
        return np.asarray(idx, np.int64).reshape(-1, 2)


def build_geometry(model, *, monlib=None, ligands=(), unknown="error", device="cpu",
                   dtype=None, fixed=None, ss="off", resolution=None, ss_sigma=None,
                   rama="off", rama_weight=None, riding=False) -> Geometry:
    """Restraints of ``model`` from the monomer library, wrapped for the engine.

    Parameters
    ----------
    model : densrefine.Model
    monlib : str, optional
        Monomer library folder (`densrefine.restraints.find_monlib` resolves the default).
    ligands : sequence of str
        Extra restraint dictionaries (CCP4 mmCIF).
    unknown : {"error", "self"}
        Residues missing from the library: error, or restrain to their input geometry.
    device, dtype : torch device and dtype of the energy.
    fixed : ndarray (N,) bool, optional
        Atoms held fixed (restraints among fixed atoms only are dropped).
    ss : {"auto", "on", "off"}
        Secondary-structure H-bond restraints (`with_ss_restraints`); "auto": on when
        ``resolution`` ≥ 3.5 Å.
    resolution : float, optional
        Map resolution d (Å), for ``ss="auto"``.
    ss_sigma : float, optional
        σ (Å) of the H-bond restraints (default `densrefine.restraints.ss.HB_SIGMA`).
    rama : {"auto", "on", "off"}
        Ramachandran restraints (`with_rama_restraints`); "auto": on when ``resolution``
        ≥ 3.5 Å.
    rama_weight : float, optional
        Weight of the Ramachandran energy (default `densrefine.restraints.rama.WEIGHT`).
    riding : bool
        Riding hydrogens in the nonbonded term of a model without hydrogens
        (`densrefine.restraints.riding`).
    """
    import torch

    from ..restraints.riding import riding_hydrogens

    rs = R.build_restraints(model, monlib=monlib, ligands=tuple(ligands), unknown=unknown)
    rh = riding_hydrogens(model, rs, monlib=monlib, ligands=ligands) if riding else None
    term = R.GeometryTerm(rs, device, dtype or torch.float32, fixed=fixed, riding=rh)
    geom = Geometry(term, rs, lambda xyz: R.geometry_stats(np.asarray(xyz, np.float64), rs))
    if _ss.wanted(ss, resolution):
        geom = with_ss_restraints(geom, model, device=device, dtype=dtype or torch.float32,
                                  fixed=fixed, sigma=ss_sigma)
    elif ss == "auto" and resolution is not None:
        log.info("Secondary-structure restraints: off (auto: d = %.3g Å is better than "
                 "%.3g Å; --ss-restraints on to use them)", resolution, _ss.RES_AUTO)
    if _rama.wanted(rama, resolution):
        geom = with_rama_restraints(geom, model, device=device, dtype=dtype or torch.float32,
                                    fixed=fixed, weight=rama_weight)
    elif rama == "auto" and resolution is not None:
        log.info("Ramachandran restraints: off (auto: d = %.3g Å is better than %.3g Å; "
                 "--rama-restraints on to use them)", resolution, _rama.RES_AUTO)
    return geom


class _PlusHBonds:
    """Geometry term + H-bond term; ``energy`` adds an "hbond" part, the rest delegates."""

    def __init__(self, base, hterm):
        self.base, self.hterm = base, hterm

    def energy(self, xyz):
        total, parts = self.base.energy(xyz)
        e = self.hterm.energy(xyz)
        return total + e, {**parts, "hbond": e}

    def __getattr__(self, name):
        return getattr(self.base, name)


def with_ss_restraints(geom: Geometry, model, *, device="cpu", dtype=None, fixed=None,
                       sigma=None) -> Geometry:
    """``geom`` plus secondary-structure O…N H-bond restraints of ``model``.

    The H-bonds come from the model's HELIX/SHEET annotation when present, else from
    DSSP-like detection (`densrefine.restraints.ss.find_hbonds`); the stats gain an
    "ss_hbonds" block (source, counts, O…N RMSD from 2.9 Å, fraction < 3.5 Å).
    """
    moving = None if fixed is None else ~np.asarray(fixed, bool)
    hb = _ss.find_hbonds(model, moving)
    s = hb.summary()
    log.info("Secondary-structure restraints (%s): %d helices, %d strands, %d O…N H-bonds "
             "(%d helix, %d sheet), ideal %.2f Å, σ %.3g Å, top-out l = %.2f Å",
             "HELIX/SHEET annotation of the model" if hb.source == "header"
             else "detected, DSSP-like", s["helices"], s["strands"], s["hbonds"],
             s["helix_hbonds"], s["sheet_hbonds"], _ss.HB_IDEAL, sigma or _ss.HB_SIGMA,
             _ss.HB_LIMIT)
    hterm = _ss.HBondTerm(hb, device, dtype, fixed=fixed, sigma=sigma or _ss.HB_SIGMA)
    base_stats = geom.stats

    def stats(xyz):
        return {**base_stats(xyz), "ss_hbonds": hb.summary(np.asarray(xyz, np.float64))}

    return Geometry(_PlusHBonds(geom.term, hterm), geom.restraints, stats)


class _PlusTerm:
    """Geometry term + one extra term; ``energy`` adds it as part ``name``, the rest delegates."""

    def __init__(self, base, extra, name):
        self.base, self.extra, self.name = base, extra, name

    def energy(self, xyz):
        total, parts = self.base.energy(xyz)
        e = self.extra.energy(xyz)
        return total + e, {**parts, self.name: e}

    def __getattr__(self, name):
        return getattr(self.base, name)


def with_rama_restraints(geom: Geometry, model, *, device="cpu", dtype=None, fixed=None,
                         weight=None, params=None) -> Geometry:
    """``geom`` plus Ramachandran restraints (`densrefine.restraints.rama.RamaTerm`).

    Parameters
    ----------
    geom : Geometry
    model : densrefine.Model
    device, dtype : torch device and dtype of the energy.
    fixed : ndarray (N,) bool, optional
        Residues whose five backbone atoms are all fixed are left out.
    weight : float, optional
        w of the energy (χ² units; default `densrefine.restraints.rama.WEIGHT`).
    params : str, optional
        Parameter file (default: the shipped ``rama_params.json``).

    Returns
    -------
    Geometry
        Energy part "rama"; the stats gain a "rama" block (n, classes, favored/allowed/
        outlier by our density, unweighted energy).
    """
    moving = None if fixed is None else ~np.asarray(fixed, bool)
    rs = _rama.find_residues(model, moving)
    par = _rama.load_params(params)
    w = _rama.WEIGHT if weight is None else float(weight)
    s = rs.summary(model.atoms.xyz, par)
    log.info("Ramachandran restraints: −2 log p(φ, ψ) of fitted von Mises mixtures (%s), "
             "weight %.3g; %d residues (%d general, %d Gly, %d Pro, %d pre-Pro; %d cis-Pro "
             "left out); start: %d favored, %d allowed, %d outliers", par["path"], w, s["n"],
             s["n_general"], s["n_gly"], s["n_pro"], s["n_prepro"], s["n_cispro"],
             s["favored"], s["allowed"], s["outlier"])
    term = _rama.RamaTerm(rs, device, dtype, fixed=fixed, weight=w, params=par)
    base_stats = geom.stats

    def stats(xyz):
        return {**base_stats(xyz), "rama": rs.summary(np.asarray(xyz, np.float64), par)}

    return Geometry(_PlusTerm(geom.term, term, "rama"), geom.restraints, stats)


B_SIGMA_13 = 1.5
"""σ of 1-3 (angle) pairs relative to bonded pairs in `b_restraint_pairs`: 7.5 / 5 Å², the
ratio of servalcat's SPA ADP restraint ("diff" mode; gemmi ``Geometry::adpr_diff_sigs``
= 5, 7.5, 15, … Å² for bond, angle, 1-4, … pairs; Yamashita et al. 2021, Acta Cryst D77,
1282)."""


def b_similarity(b_iso, pairs, sigma):
    """Σ((B_i − B_j)/σ)² over atom pairs (Å² / Å²), a torch 0-d tensor.

    Parameters
    ----------
    b_iso : torch.Tensor, shape (N,)
        B-factors (Å²).
    pairs : torch.Tensor, shape (P, 2), int64
        Atom index pairs.
    sigma : float or torch.Tensor, shape (P,)
        σ (Å²) of every pair, or one σ for all.
    """
    if len(pairs) == 0:
        return b_iso.sum() * 0.0
    bi, bj = b_iso.index_select(0, pairs.reshape(-1)).view(-1, 2).unbind(1)
    return (((bi - bj) / sigma) ** 2).sum()


def b_restraint_pairs(geom: Geometry, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Atom pairs of the B-similarity restraint: bonded (1-2) and angle (1-3) pairs.

    The topological classes of servalcat's SPA ADP restraint that need no distance
    search: 1-2 pairs with σ = ``sigma`` and 1-3 pairs (outer atoms of each angle
    restraint, unless also bonded) with σ = `B_SIGMA_13` · ``sigma``. O(N): each atom has
    a bounded number of bonds and angles.

    Parameters
    ----------
    geom : Geometry
        ``restraints.angles`` (n, 3) is used when present.
    sigma : float
        Å², σ of the bonded pairs.

    Returns
    -------
    pairs : ndarray, shape (P, 2), int64
        Unique pairs (i < j).
    sigmas : ndarray, shape (P,), float64
        σ per pair (Å²).
    """
    b = np.sort(geom.bond_pairs, axis=1)
    ang = getattr(geom.restraints, "angles", None)
    a = np.zeros((0, 2), np.int64) if ang is None or len(ang) == 0 else \
        np.sort(np.asarray(ang, np.int64).reshape(-1, 3)[:, [0, 2]], axis=1)
    b = np.unique(b[b[:, 0] != b[:, 1]], axis=0).reshape(-1, 2)
    a = np.unique(a[a[:, 0] != a[:, 1]], axis=0).reshape(-1, 2)
    if len(a) and len(b):
        n = int(max(a.max(), b.max())) + 1
        a = a[~np.isin(a[:, 0] * n + a[:, 1], b[:, 0] * n + b[:, 1])]
    sig = np.concatenate([np.full(len(b), float(sigma)), np.full(len(a), B_SIGMA_13 * sigma)])
    return np.concatenate([b, a]).astype(np.int64), sig


def b_data_weight(mask_volume: float, d: float, resid0: float) -> float:
    """Weight of the B stage's data term ``resid = 1 − CC²`` as a Gaussian log-likelihood.

    With e = k·m + n, n Gaussian with variance σ_n² per independent sample and k fitted,
    −log L = Σ(e − k m)²/(2σ_n²) = N_ind · var(e) · (1 − CC²)/(2σ_n²) (the least-squares
    residual of a fitted scale is var(e)(1 − CC²)). σ_n² is estimated from the fit at
    the start of the stage, var(e)(1 − CC0²), so −log L ≈ N_ind (1 − CC²)/(2 (1 − CC0²)).
    N_ind is the number of independent real values of a map band-limited to |s| ≤ 1/d
    over the mask volume V: V · 4π/(3 d³) (reciprocal-space sphere volume × V; Friedel
    pairs make each complex coefficient one real degree of freedom on average; Shannon
    sampling in 3D, e.g. Landau & Pollak 1962, Bell Syst. Tech. J. 41, 1295). Together
    with restraints Σ ΔB²/(2σ²) this is the negative log posterior, as in servalcat's
    SPA refinement (likelihood + ``0.5 w (ΔB/σ)²`` ADP restraints; Yamashita et al.
    2021, Acta Cryst D77, 1282).

    Parameters
    ----------
    mask_volume : float
        Å³.
    d : float
        Resolution (Å).
    resid0 : float
        1 − CC0² at the start (clamped to ≥ 1e-3).

    Returns
    -------
    float
        w such that w · (1 − CC²) is −log L (up to a constant).
    """
    n_ind = float(mask_volume) * 4.0 * np.pi / (3.0 * float(d) ** 3)
    return n_ind / (2.0 * max(float(resid0), 1e-3))
