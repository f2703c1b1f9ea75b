"""Adapter between ``fit`` and `densrefine.restraints` (the geometry term).

`build_geometry` is the only place the refinement engine touches the restraints
package, so tests can substitute a stand-in and other restraint providers can plug in.
Besides the library restraints it provides the B-factor similarity restraint
(`b_similarity`) over bonded pairs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
                   dtype=None, fixed=None) -> Geometry:
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
    """
    import torch

    from .. import restraints as R

    rs = R.build_restraints(model, monlib=monlib, ligands=tuple(ligands), unknown=unknown)
    term = R.GeometryTerm(rs, device, dtype or torch.float32, fixed=fixed)
    return Geometry(term, rs, lambda xyz: R.geometry_stats(np.asarray(xyz, np.float64), rs))


def b_similarity(b_iso, pairs, sigma: float):
    """Σ((B_i − B_j)/σ)² over bonded pairs (Å² / Å²), a torch 0-d tensor."""
    if len(pairs) == 0:
        return b_iso.sum() * 0.0
    i, j = pairs[:, 0], pairs[:, 1]
    return (((b_iso[i] - b_iso[j]) / sigma) ** 2).sum()
