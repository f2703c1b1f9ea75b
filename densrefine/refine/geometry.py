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
                   rama="off", rama_weight=None) -> Geometry:
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
    """
    import torch

    from .. import restraints as R

    rs = R.build_restraints(model, monlib=monlib, ligands=tuple(ligands), unknown=unknown)
    term = R.GeometryTerm(rs, device, dtype or torch.float32, fixed=fixed)
    geom = Geometry(term, rs, lambda xyz: R.geometry_stats(np.asarray(xyz, np.float64), rs))
    from ..restraints import ss as _ss

    if _ss.wanted(ss, resolution):
        geom = with_ss_restraints(geom, model, device=device, dtype=dtype or torch.float32,
                                  fixed=fixed, sigma=ss_sigma)
    elif ss == "auto" and resolution is not None:
        log.info("Secondary-structure restraints: off (auto: d = %.3g Å is better than "
                 "%.3g Å; --ss-restraints on to use them)", resolution, _ss.RES_AUTO)
    from ..restraints import rama as _rama

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
    from ..restraints import ss as _ss

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
    from ..restraints import rama as _rama

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


def b_similarity(b_iso, pairs, sigma: float):
    """Σ((B_i − B_j)/σ)² over bonded pairs (Å² / Å²), a torch 0-d tensor."""
    if len(pairs) == 0:
        return b_iso.sum() * 0.0
    i, j = pairs[:, 0], pairs[:, 1]
    return (((b_iso[i] - b_iso[j]) / sigma) ** 2).sum()
