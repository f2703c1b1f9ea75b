"""Rigid-body parametrisation: 6 parameters per group (axis-angle ω, translation t).

x' = R(ω) (x − c) + c + t, with c the group's centroid at the start and
R(ω) = exp([ω]×) (matrix exponential of the skew matrix; |ω| is the angle in radians),
which is smooth at ω = 0 so L-BFGS can start from zero.
"""
from __future__ import annotations

import numpy as np


def rotation(omega):
    """Rotation matrices (G, 3, 3) from rotation vectors ``omega`` (G, 3), radians.

    Examples
    --------
    >>> import torch, math
    >>> R = rotation(torch.tensor([[0.0, 0.0, math.pi / 2]]))
    >>> [round(v, 6) for v in (R[0] @ torch.tensor([1.0, 0.0, 0.0])).tolist()]
    [0.0, 1.0, 0.0]
    """
    import torch

    z = torch.zeros_like(omega[:, 0])
    k = torch.stack([torch.stack([z, -omega[:, 2], omega[:, 1]], -1),
                     torch.stack([omega[:, 2], z, -omega[:, 0]], -1),
                     torch.stack([-omega[:, 1], omega[:, 0], z], -1)], 1)
    return torch.linalg.matrix_exp(k)


class RigidGroups:
    """Apply per-group rigid motions to a (N, 3) coordinate tensor.

    Parameters
    ----------
    xyz : torch.Tensor, shape (N, 3)
        Start coordinates (Å), all atoms.
    groups : list of ndarray of int
        Atom indices of each group (disjoint); atoms in no group stay fixed.
    """

    def __init__(self, xyz, groups):
        import torch

        self.xyz0 = xyz.detach()
        self.groups = [torch.as_tensor(np.asarray(g, np.int64), device=xyz.device)
                       for g in groups]
        self.centres = torch.stack([self.xyz0[g].mean(0) for g in self.groups])
        # rotations are parametrised as ω·r_g (Å, r_g = radius of gyration) so that all
        # six parameters move atoms by similar amounts: L-BFGS is then well conditioned
        self.radii = torch.stack([((self.xyz0[g] - c) ** 2).sum(1).mean().sqrt().clamp_min(1.0)
                                  for g, c in zip(self.groups, self.centres)])
        self.params = torch.zeros(len(groups), 6, dtype=xyz.dtype, device=xyz.device,
                                  requires_grad=True)
        # all grouped atoms at once: their indices and each one's group
        self._atoms = torch.cat(self.groups)
        self._gid = torch.cat([torch.full((len(g),), i, dtype=torch.int64, device=xyz.device)
                               for i, g in enumerate(self.groups)])
        self._rel = self.xyz0.index_select(0, self._atoms) - self.centres[self._gid]
        if len(torch.unique(self._atoms)) != len(self._atoms):
            raise ValueError("rigid groups overlap: an atom may belong to one group only")

    def angles_deg(self):
        """Rotation angle of each group, degrees."""
        import torch

        return torch.rad2deg(self.params.detach()[:, :3].norm(dim=1) / self.radii)

    def apply(self, params=None):
        """Moved coordinates (N, 3), differentiable in ``params`` (G, 6): ω·r_g (Å), t (Å)."""
        p = self.params if params is None else params
        rot = rotation(p[:, :3] / self.radii[:, None])
        shift = (self.centres + p[:, 3:]).index_select(0, self._gid)
        moved = (rot.index_select(0, self._gid) @ self._rel[:, :, None])[:, :, 0] + shift
        return self.xyz0.index_copy(0, self._atoms, moved)
