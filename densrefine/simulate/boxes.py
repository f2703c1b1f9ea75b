"""Scatter path of the splat kernel: explicit cubes, any (also non-orthogonal) cell.

For each chunk of atoms with the same half-widths (R_x, R_y, R_z) the density is
evaluated on every voxel of each atom's cube with the full metric
(r = steps · (index − u)), so it is correct for non-orthogonal grids, and added to
the flattened grid with ``index_add_`` (wrapped modulo the grid when periodic,
dropped outside it otherwise). The backward pass recomputes each chunk under
autograd and contracts it with the gathered output gradient.
"""
from __future__ import annotations

import math

import torch

FOUR_PI = 4.0 * math.pi
FOUR_PI2 = 4.0 * math.pi**2


def _offsets(half, device):
    rx, ry, rz = (int(h) for h in half)
    oz, oy, ox = torch.meshgrid(torch.arange(-rz, rz + 1, device=device),
                                torch.arange(-ry, ry + 1, device=device),
                                torch.arange(-rx, rx + 1, device=device), indexing="ij")
    return torch.stack([ox, oy, oz], -1).reshape(-1, 3)                  # (V, 3) x y z


def _indices(anchor, offs, frame):
    """Flat grid indices (C, V) and validity mask of the cube voxels."""
    n = torch.as_tensor(frame.shape_xyz, device=anchor.device)
    ijk = anchor[:, None, :] + offs[None, :, :]
    if frame.periodic:
        ijk = torch.remainder(ijk, n)
        valid = None
    else:
        valid = ((ijk >= 0) & (ijk < n)).all(-1)
        ijk = torch.minimum(torch.clamp(ijk, min=0), n - 1)
    flat = (ijk[..., 2] * n[1] + ijk[..., 1]) * n[0] + ijk[..., 0]
    return flat, valid


def _values(centres, amp, width, anchor, offs, consts):
    """Density (C, V) of each atom on its cube voxels; differentiable in the inputs."""
    u = (centres - consts["origin"]) @ consts["inv_steps_t"]
    d = offs[None, :, :].to(u.dtype) - (u - anchor.to(u.dtype))[:, None, :]
    r = d @ consts["steps_t"]                                            # (C, V, 3) Å
    r2 = (r * r).sum(-1)
    norm = amp * (FOUR_PI / width) ** 1.5
    beta = FOUR_PI2 / width
    return (norm[:, None, :] * torch.exp(-beta[:, None, :] * r2[:, :, None])).sum(-1)


def _chunks(plan, device):
    for half, atoms in plan.boxes:
        idx = torch.as_tensor(atoms, device=device)
        offs = _offsets(half, device)
        yield idx, offs


def boxes_forward(out, centres, amp, width, plan, consts):
    """Add the scatter-path atoms' density onto ``out`` (nz, ny, nx), in place."""
    flat_out = out.view(-1)
    for idx, offs in _chunks(plan, out.device):
        anchor = consts["anchor"][idx]
        vals = _values(centres[idx], amp[idx], width[idx], anchor, offs, consts)
        flat, valid = _indices(anchor, offs, plan.frame)
        if valid is not None:
            vals = vals * valid
        flat_out.index_add_(0, flat.reshape(-1), vals.reshape(-1))


def boxes_backward(grads, grad, centres, amp, width, plan, consts):
    """Accumulate d(loss)/d(centres, amp, width) of the scatter-path atoms into ``grads``."""
    flat_grad = grad.reshape(-1)
    for idx, offs in _chunks(plan, grad.device):
        anchor = consts["anchor"][idx]
        flat, valid = _indices(anchor, offs, plan.frame)
        g = flat_grad[flat]
        if valid is not None:
            g = g * valid
        leaves = [t[idx].detach().requires_grad_() for t in (centres, amp, width)]
        with torch.enable_grad():
            vals = _values(*leaves, anchor, offs, consts)
        parts = torch.autograd.grad(vals, leaves, g, allow_unused=True)
        for acc, p in zip(grads, parts):
            if p is not None:
                acc.index_add_(0, idx, p)

