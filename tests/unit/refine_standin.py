"""Test-only stand-in for `densrefine.restraints`: bonds and angles from the input geometry.

Bonds: heavy-atom pairs closer than 1.9 Å (σ 0.02 Å); angles: every pair of bonds
sharing an atom (σ 2°). Ideal values are the input values, so a model restrained by
this keeps its starting local geometry. Used through `patch_geometry(monkeypatch)`.
"""
from __future__ import annotations

import types

import numpy as np
from scipy.spatial import cKDTree


def standin_restraints(xyz):
    xyz = np.asarray(xyz, float)
    pairs = np.array(sorted(cKDTree(xyz).query_pairs(1.9)), np.int64).reshape(-1, 2)
    nbr = {i: [] for i in range(len(xyz))}
    for i, j in pairs:
        nbr[i].append(j)
        nbr[j].append(i)
    angles = np.array([(a, c, b) for c, ns in nbr.items() for k, a in enumerate(ns)
                       for b in ns[k + 1:]], np.int64).reshape(-1, 3)
    d = np.linalg.norm(xyz[pairs[:, 0]] - xyz[pairs[:, 1]], axis=1)
    return types.SimpleNamespace(bonds=pairs, bond_ideal=d, bond_sigma=np.full(len(d), 0.02),
                                 angles=angles, angle_ideal=_angles(xyz, angles),
                                 angle_sigma=np.full(len(angles), 2.0))


def _angles(xyz, ang):
    u = xyz[ang[:, 0]] - xyz[ang[:, 1]]
    v = xyz[ang[:, 2]] - xyz[ang[:, 1]]
    c = (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    return np.degrees(np.arccos(np.clip(c, -1, 1)))


class StandinTerm:
    def __init__(self, rs, device, dtype):
        import torch

        kw = {"device": device, "dtype": dtype}
        self.bi = torch.as_tensor(rs.bonds, device=device)
        self.ai = torch.as_tensor(rs.angles, device=device)
        self.b0 = torch.as_tensor(rs.bond_ideal, **kw)
        self.a0 = torch.as_tensor(np.radians(rs.angle_ideal), **kw)
        self.bs, self.as_ = 0.02, np.radians(2.0)

    def energy(self, xyz):
        import torch

        d = (xyz[self.bi[:, 0]] - xyz[self.bi[:, 1]]).norm(dim=1)
        eb = (((d - self.b0) / self.bs) ** 2).sum()
        u = xyz[self.ai[:, 0]] - xyz[self.ai[:, 1]]
        v = xyz[self.ai[:, 2]] - xyz[self.ai[:, 1]]
        c = (u * v).sum(1) / (u.norm(dim=1) * v.norm(dim=1))
        ea = (((torch.acos(c.clamp(-0.999999, 0.999999)) - self.a0) / self.as_) ** 2).sum()
        return eb + ea, {"bond": eb, "angle": ea}


def standin_stats(xyz, rs):
    xyz = np.asarray(xyz, float)
    d = np.linalg.norm(xyz[rs.bonds[:, 0]] - xyz[rs.bonds[:, 1]], axis=1)
    a = _angles(xyz, rs.angles)
    return {"bond_rmsd": float(np.sqrt(np.mean((d - rs.bond_ideal) ** 2))),
            "angle_rmsd": float(np.sqrt(np.mean((a - rs.angle_ideal) ** 2)))}


def build_standin(model, *, device="cpu", dtype=None, **_):
    import torch

    from densrefine.refine.geometry import Geometry

    rs = standin_restraints(model.atoms.xyz)
    term = StandinTerm(rs, device, dtype or torch.float32)
    return Geometry(term, rs, lambda x: standin_stats(x, rs))


def patch_geometry(monkeypatch):
    """Make `densrefine.refine` use the stand-in restraints."""
    from densrefine.refine import geometry

    monkeypatch.setattr(geometry, "build_geometry", build_standin)
