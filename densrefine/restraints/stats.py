"""Geometry statistics of coordinates against a `RestraintSet` (validation numbers).

RMS deviations over all restraints of a kind (bonds Å, angles °, torsions ° as the
periodic minimum, chiral volumes Å³, planarity Å as the distance to the unweighted
least-squares plane), the ten worst outliers per kind by |z| = |Δ|/σ, and clashes:
nonbonded pairs (1-4 excluded) overlapping their Refmac-style minimum distance, from
explicit-atom radii (ener_lib ``vdw_radius``), by more than 0.4 Å
(MolProbity's threshold, Word et al. 1999, J Mol Biol 285, 1735), with a
clashscore-like count per 1000 atoms (not MolProbity's value: no hydrogens are added
and the minimum distances are Refmac's, not Probe's).
"""
from __future__ import annotations

import numpy as np
import torch

from .energy import (angles_deg, bond_lengths, chiral_volumes, dihedrals_deg, plane_distances,
                     torsion_deviation)
from .nonbonded import NeighbourList

CLASH_OVERLAP = 0.4
N_WORST = 10


def _rms(x) -> float:
    return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0


def _worst(dev, sigma, idx, labels, ideal=None):
    if len(dev) == 0:
        return []
    z = dev / sigma
    order = np.argsort(-np.abs(z))[:N_WORST]
    out = []
    for k in order:
        row = {"atoms": [str(labels[i]) for i in np.atleast_1d(idx[k])],
               "delta": round(float(dev[k]), 4), "z": round(float(z[k]), 2)}
        if ideal is not None:
            row["ideal"] = round(float(ideal[k]), 3)
        out.append(row)
    return out


def _index(a):
    return torch.from_numpy(np.array(a, dtype=np.int64))


def _bond_angle_deviations(x, rs):
    """Bond (Å) and angle (°) deviations from ideal, float64 CPU tensor ``x``."""
    return (bond_lengths(x, _index(rs.bonds)).numpy() - rs.bond_ideal,
            angles_deg(x, _index(rs.angles)).numpy() - rs.angle_ideal)


def _deviations(x, rs) -> dict:
    t = _index
    b, a = _bond_angle_deviations(x, rs)
    th = dihedrals_deg(x, t(rs.torsions))
    tor = torsion_deviation(th, torch.from_numpy(np.array(rs.torsion_ideal, float)),
                            torch.from_numpy(np.array(rs.torsion_period, float))).numpy()
    v = chiral_volumes(x, t(rs.chirals)).numpy()
    v = np.where(rs.chiral_both, np.abs(v) * np.sign(rs.chiral_ideal), v)
    pl = plane_distances(x, t(rs.plane_atoms), t(rs.plane_id), rs.n_planes).numpy()
    return {"bond": b, "angle": a, "torsion": tor, "chiral": v - rs.chiral_ideal, "plane": pl}


def bond_angle_rmsd(xyz, rs, moving=None) -> dict:
    """``bond_rmsd`` (Å) and ``angle_rmsd`` (°) only, as in `geometry_stats`.

    The per-cycle line of ``fit`` needs nothing else; the full report (clash search,
    outlier lists) took ~15 ms per cycle on 5NI1. With ``moving`` (bool (N,)) only the
    bonds and angles with at least one moving atom count: a refinement of part of a
    model (``select``, a block of ``fit --partition``) steers its weight by the geometry
    it can change, not by that of the fixed atoms.
    """
    if isinstance(xyz, torch.Tensor):
        xyz = xyz.detach().cpu().numpy()
    with torch.no_grad():
        b, a = _bond_angle_deviations(torch.from_numpy(np.array(xyz, dtype=np.float64)), rs)
    if moving is not None and not np.all(moving):
        mv = np.asarray(moving, bool)
        bi, ai = np.asarray(rs.bonds, np.int64), np.asarray(rs.angles, np.int64)
        b = b[mv[bi].any(1)] if len(b) else b
        a = a[mv[ai].any(1)] if len(a) else a
    return {"bond_rmsd": _rms(b), "angle_rmsd": _rms(a)}


def bond_z(xyz, rs) -> np.ndarray:
    """|z| = |d − ideal|/σ of every bond (nb,), from positions (N, 3) Å."""
    if isinstance(xyz, torch.Tensor):
        xyz = xyz.detach().cpu().numpy()
    with torch.no_grad():
        d = bond_lengths(torch.from_numpy(np.array(xyz, dtype=np.float64)),
                         _index(rs.bonds)).numpy()
    return np.abs(d - rs.bond_ideal) / rs.bond_sigma


def geometry_stats(xyz, rs) -> dict:
    """Bond/angle/torsion/chiral/planarity RMSDs, worst outliers and clashes.

    Parameters
    ----------
    xyz : array-like or torch.Tensor (N, 3)
        Coordinates, Å, in ``rs`` atom order.
    rs : RestraintSet

    Returns
    -------
    dict
        ``n_atoms``, ``n_bonds``, ``n_angles``, ``n_torsions``, ``n_chirals``, ``n_planes``;
        ``bond_rmsd`` (Å, all bonds), ``bond_rmsd_non_h`` (Å, bonds without H),
        ``bond_max`` (Å), ``angle_rmsd`` (°), ``angle_max`` (°),
        ``torsion_rmsd`` (°), ``chiral_rmsd`` (Å³), ``planarity_rmsd`` (Å),
        ``bond_rmsz``, ``angle_rmsz``, ``clashes`` (pairs overlapping > 0.4 Å),
        ``clashscore`` (clashes per 1000 atoms), ``worst`` (dict kind → up to 10
        outliers with atom labels, delta and z), ``worst_clashes``.
    """
    if isinstance(xyz, torch.Tensor):
        xyz = xyz.detach().cpu().numpy()
    xyz = np.asarray(xyz, dtype=np.float64)
    with torch.no_grad():
        dev = _deviations(torch.from_numpy(xyz.copy()), rs)
    nl = NeighbourList(rs, skin=0.0, radius=rs.clash_radius, include14=False)
    nl.build(xyz)
    d = np.linalg.norm(xyz[nl.pairs[:, 0]] - xyz[nl.pairs[:, 1]], axis=1)
    overlap = nl.rmin - d
    clash = overlap > CLASH_OVERLAP
    corder = np.argsort(-overlap[clash])[:N_WORST]
    cp, co = nl.pairs[clash][corder], overlap[clash][corder]
    n = max(rs.n_atoms, 1)
    out = {
        "n_atoms": rs.n_atoms, "n_bonds": len(rs.bonds), "n_angles": len(rs.angles),
        "n_torsions": len(rs.torsions), "n_chirals": len(rs.chirals), "n_planes": rs.n_planes,
        "bond_rmsd": _rms(dev["bond"]),
        "bond_rmsd_non_h": _rms(dev["bond"][~rs.hydrogen[rs.bonds].any(1)]) if len(rs.bonds)
        else 0.0, "bond_max": float(np.abs(dev["bond"]).max(initial=0)),
        "angle_rmsd": _rms(dev["angle"]), "angle_max": float(np.abs(dev["angle"]).max(initial=0)),
        "torsion_rmsd": _rms(dev["torsion"]), "chiral_rmsd": _rms(dev["chiral"]),
        "planarity_rmsd": _rms(dev["plane"]),
        "bond_rmsz": _rms(dev["bond"] / rs.bond_sigma) if len(rs.bonds) else 0.0,
        "angle_rmsz": _rms(dev["angle"] / rs.angle_sigma) if len(rs.angles) else 0.0,
        "clashes": int(clash.sum()), "clashscore": 1000.0 * int(clash.sum()) / n,
    }
    pl_sig = rs.plane_sigma
    out["worst"] = {
        "bond": _worst(dev["bond"], rs.bond_sigma, rs.bonds, rs.labels, rs.bond_ideal),
        "angle": _worst(dev["angle"], rs.angle_sigma, rs.angles, rs.labels, rs.angle_ideal),
        "torsion": _worst(dev["torsion"], rs.torsion_sigma, rs.torsions, rs.labels,
                          rs.torsion_ideal),
        "chiral": _worst(dev["chiral"], rs.chiral_sigma, rs.chirals, rs.labels, rs.chiral_ideal),
        "plane": _worst(dev["plane"], pl_sig, rs.plane_atoms, rs.labels),
    }
    out["worst_clashes"] = [{"atoms": [str(rs.labels[i]), str(rs.labels[j])],
                             "overlap": round(float(o), 3)} for (i, j), o in zip(cp, co)]
    return out
