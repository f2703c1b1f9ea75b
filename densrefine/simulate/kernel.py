"""Differentiable splatting of Gaussian components onto a 3-D grid (the simulate core).

Each site j carries K isotropic Gaussians (amplitude a_jk, width w_jk Å²)::

    ρ(r) = Σ_j Σ_k a_jk (4π/w_jk)^{3/2} exp(-4π² |r − r_j|² / w_jk)

evaluated on the voxels of a cube of half-width R_j = ceil(radius_j / spacing)
around the voxel nearest to r_j (radius_j: where site j's density drops below
``cutoff``; gemmi's convention). Voxels outside the grid are dropped, or wrapped
when the frame is periodic.

Three paths compute exactly that sum:

jit (CPU tensors on orthogonal grids, when numba is installed; `densrefine.simulate.jit`)
    One compiled pass per atom over its cube, separable along x, y, z; the backward
    pass reads the output gradient on the same cube once. No per-voxel temporaries.
cells (orthogonal grids, the bulk of the atoms; `densrefine.simulate.cells`)
    The Gaussian factorises along x, y, z. Atoms are binned into cells of L voxels
    (L ≈ a typical R); all atoms of a cell share a window of nbw = 1 + ceil(2R/L)
    cells per axis (3 for most atoms), whose density is one matrix product
    ``(gz ⊗ gy) @ gx`` over (atom, component) pairs. Windows are added block-wise into
    a padded accumulator, so the scatter handles ~nbw³ values per cell instead of
    (2R+1)³ per atom and the arithmetic runs at matrix-multiply speed. The backward
    pass is analytic (matmuls with the gathered output gradient + chain rule).
boxes (any cell, and atoms with unusually large boxes; `densrefine.simulate.boxes`)
    Explicit values on each cube (full metric) scattered with ``index_add_``; its
    backward recomputes each chunk under autograd.

The torch paths run chunk by chunk (memory bounded by `CELL_BUDGET` / `BOX_BUDGET`, not by
atoms × box), and the backward pass recomputes each chunk: nothing per voxel is
saved. Gradients flow to centres, amplitudes and widths (hence xyz, B, occupancy
through `densrefine.density.DensityTerms.components`). Device and dtype follow the inputs.
"""
from __future__ import annotations

import numpy as np
import torch

from . import jit as _jit
from . import plan as _plan
from .boxes import boxes_backward, boxes_forward
from .cells import cells_backward, cells_forward

CELL_BUDGET = 1 << 21
"""Elements of the (cells, Wz, Wy, atoms·K) product tensor per fast-path batch."""
BOX_BUDGET = 1 << 20
"""Box voxels per chunk of the scatter path."""
CELL_QUANTILE = 80.0
"""Percentile of box half-widths used as the fast-path cell size L (windows of 3 cells)."""
MAX_CELLS_PER_WINDOW = 5
"""Atoms whose cube needs wider windows (R > 2L) take the scatter path."""


class SplatPlan:
    """Integer bookkeeping shared by forward and backward (no per-voxel data)."""

    def __init__(self, frame, u, radius, k, path="auto", jit_ok=False):
        self.frame = frame
        b = _plan.make_boxes(u, radius, frame)
        self.anchor, self.half = b.anchor, b.half
        kept = np.flatnonzero(b.keep)
        self.cells = self.jit = None
        if path in ("auto", "jit") and jit_ok and frame.is_orthogonal:
            self.jit = _jit.JitPlan(frame, self.anchor, self.half, kept, _workers())
            self.boxes, self.n_fast, self.n_slow = [], len(kept), 0
            return
        fast = kept[:0]
        if path != "boxes" and frame.is_orthogonal and len(kept):
            h = self.half[kept]
            cell = np.maximum(np.ceil(np.percentile(h, CELL_QUANTILE, axis=0)), 2).astype(np.int64)
            ok = np.all(1 + -(-2 * h // cell) <= MAX_CELLS_PER_WINDOW, axis=1)
            vox = float(np.sum(np.prod(2 * h[ok] + 1, axis=1)))
            if path == "cells" or vox >= 0.25 * float(np.prod(frame.shape)):
                fast = kept[ok]
                self.cells = _plan.cell_plan(self.anchor, self.half, fast, frame, k, CELL_BUDGET,
                                             cell)
        is_fast = np.zeros(len(u), bool)
        is_fast[fast] = True
        slow = kept[~is_fast[kept]]
        self.boxes = _plan.box_groups(self.half, slow, BOX_BUDGET)
        self.n_fast, self.n_slow = len(fast), len(slow)


class _Splat(torch.autograd.Function):
    @staticmethod
    def forward(ctx, centres, amp, width, plan):
        if plan.jit is not None:
            # numpy buffers here and below: torch's parallel fill would wake its OpenMP
            # threads, whose spin-waits cost more CPU than the fill on a busy machine
            out = torch.from_numpy(np.zeros(plan.frame.shape, _NP[amp.dtype]))
            _jit.jit_forward(out, centres, amp, width, plan.jit, plan.anchor, plan.half)
            ctx.save_for_backward(centres, amp, width)
            ctx.plan, ctx.kept = plan, None
            return out
        consts = _consts(plan, centres)
        # keep the fast path's 1-D factors for the backward pass when one will follow
        ctx.kept = [] if plan.cells is not None and any(ctx.needs_input_grad[:3]) else None
        if plan.cells is not None:
            out = cells_forward(centres, amp, width, plan, consts, ctx.kept)
        else:
            out = torch.zeros(plan.frame.shape, dtype=amp.dtype, device=amp.device)
        boxes_forward(out, centres, amp, width, plan, consts)
        ctx.save_for_backward(centres, amp, width)
        ctx.plan = plan
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        centres, amp, width = ctx.saved_tensors
        plan = ctx.plan
        if plan.jit is not None:
            grads = [torch.from_numpy(np.zeros(t.shape, _NP[t.dtype]))
                     for t in (centres, amp, width)]
            _jit.jit_backward(grads, grad, centres, amp, width, plan.jit, plan.anchor, plan.half)
            needs = ctx.needs_input_grad
            return tuple(g if n else None for g, n in zip(grads, needs[:3])) + (None,)
        grads = [torch.zeros_like(t) for t in (centres, amp, width)]
        consts = _consts(plan, centres)
        grad = grad.contiguous()
        if plan.cells is not None:
            cells_backward(grads, grad, centres, amp, width, plan, consts, ctx.kept)
        ctx.kept = None
        boxes_backward(grads, grad, centres, amp, width, plan, consts)
        needs = ctx.needs_input_grad
        return tuple(g if n else None for g, n in zip(grads, needs[:3])) + (None,)


def _consts(plan, like):
    f = plan.frame
    kw = {"dtype": like.dtype, "device": like.device}
    return {
        "origin": torch.tensor(f.origin, **kw),
        "inv_steps_t": torch.tensor(np.linalg.inv(f.steps).T, **kw),
        "steps_t": torch.tensor(f.steps.T, **kw),
        "voxel": torch.tensor(f.voxel_size, **kw),
        "anchor": torch.as_tensor(plan.anchor, device=like.device),
    }


def splat(centres, amp, width, frame, *, radius=None, cutoff: float = 1e-5, path: str = "auto"):
    """Sum of Gaussians on a grid, differentiable in centres, amplitudes and widths.

    Parameters
    ----------
    centres : torch.Tensor, shape (N, 3)
        Gaussian centres in Å (float32 or float64; output dtype/device follow).
    amp : torch.Tensor, shape (N, K)
        Integrated amplitude of each Gaussian.
    width : torch.Tensor, shape (N, K)
        Widths w (Å²) in ``(4π/w)^{3/2} exp(-4π² r²/w)``; must be > 0.
    frame : GridFrame
        Grid geometry (shape, origin, steps, periodic).
    radius : array_like, shape (N,), optional
        Per-site cutoff radius in Å. Default: where ``Σ_k |a_k|`` Gaussians fall to
        ``cutoff`` (`densrefine.simulate.plan.cutoff_radius`).
    cutoff : float
        Density level that defines the default radius.
    path : {"auto", "jit", "cells", "boxes"}
        Force one kernel path (for tests). "auto": the compiled path
        (`densrefine.simulate.jit`) for CPU tensors on orthogonal grids when numba is
        installed, else the torch paths, picked per atom.

    Returns
    -------
    torch.Tensor, shape (nz, ny, nx)
        Density on the grid.

    Examples
    --------
    >>> import torch
    >>> from densrefine.grid import GridFrame
    >>> fr = GridFrame.box((24, 24, 24), 0.5, origin=(-6.0, -6.0, -6.0))
    >>> c = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    >>> a = torch.ones(1, 1, dtype=torch.float64)
    >>> w = torch.full((1, 1), 20.0, dtype=torch.float64)
    >>> rho = splat(c, a, w, fr, cutoff=1e-8)
    >>> round(float(rho.detach().sum() * 0.5**3), 4)
    1.0
    >>> rho.sum().backward(); c.grad.shape
    torch.Size([1, 3])
    """
    if centres.ndim != 2 or centres.shape[1] != 3 or amp.shape != width.shape \
            or amp.shape[0] != centres.shape[0]:
        raise ValueError(f"splat: shapes centres {tuple(centres.shape)}, amp {tuple(amp.shape)}, "
                         f"width {tuple(width.shape)} do not match (N,3), (N,K), (N,K)")
    cpu = centres.device.type == "cpu" and centres.dtype in _NP and width.dtype in _NP
    w_np = width.detach().numpy() if cpu and width.device.type == "cpu" else None
    wmin = (float(w_np.min()) if w_np is not None else float(width.detach().min())) \
        if width.numel() else 1.0
    if not wmin > 0:
        raise ValueError(f"splat: Gaussian widths must be > 0 Å² (smallest is {wmin:g}); "
                         "add blur or fix negative B-factors")
    if radius is None:
        radius = _plan.cutoff_radius(amp.detach().cpu().double().numpy(),
                                     width.detach().cpu().double().numpy(), cutoff)
    u = frame.xyz_to_index(centres.detach().numpy().astype(np.float64) if cpu else
                           centres.detach().cpu().double().numpy())
    jit_ok = path in ("auto", "jit") and cpu and _jit.available()
    if path == "jit" and not jit_ok:
        raise ValueError("splat: path='jit' needs numba, a CPU tensor of float32/float64 "
                         "and DENSREFINE_JIT unset; use path='auto'")
    plan = SplatPlan(frame, u, np.asarray(radius, np.float64), amp.shape[1], path, jit_ok)
    return _Splat.apply(centres, amp.to(centres.dtype), width.to(centres.dtype), plan)


_NP = {torch.float32: np.float32, torch.float64: np.float64}
"""Tensor dtypes the compiled path takes, and their numpy twins."""


def _workers() -> int:
    """Threads for the compiled path: torch's intra-op threads, or the splat workers
    (`densrefine.simulate.cells.set_workers`) when more."""
    from .cells import _POOL

    return max(torch.get_num_threads(), _POOL["workers"])
