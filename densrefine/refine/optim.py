"""A guarded L-BFGS minimisation shared by every stage (rigid, xyz, B).

The optimiser is SciPy's L-BFGS-B (Byrd, Lu, Nocedal & Zhu 1995, SIAM J. Sci. Comput.
16, 1190; Zhu et al. 1997, ACM TOMS 23, 550: limited-memory BFGS with the Moré–Thuente
line search and optional box bounds), driven by a torch closure that returns the target
and its autograd gradient. It replaces ``torch.optim.LBFGS``, whose first construction
imports ``torch._dynamo`` (~1 s of every CPU fit on this project's machines) and which
has no bounds.

Non-finite targets or gradients stop the optimisation: the parameters go back to the
last values that gave a finite target and `NonFiniteError` tells the engine to stop,
keep that model and report it.
"""
from __future__ import annotations

import math

import numpy as np

HISTORY = 10
"""L-BFGS memory (pairs of steps and gradient changes)."""

FTOL = 1e-6
"""L-BFGS-B stops when an iteration lowers the target by less than FTOL·|target|: on 5NI1
(EMD-3488) the rigid-body passes of a deposited model then end after 4–6 evaluations
instead of 15–18, and no other stage or result changes (CC_mask, RMSD to truth)."""

EVALS_PER_ITERATION = 1.25
"""Evaluation budget per iteration (line-search trials included), as torch's default."""


class NonFiniteError(RuntimeError):
    """NaN or infinity in the target or its gradient."""


def minimise(param, fn, iterations: int, history: int | None = None,
             bounds: tuple | None = None) -> float:
    """Minimise ``fn()`` over the leaf tensor ``param`` with L-BFGS(-B).

    Parameters
    ----------
    param : torch.Tensor
        Leaf tensor with ``requires_grad=True``; updated in place (any dtype/device;
        the optimiser works in float64 on the host).
    fn : callable
        Returns a 0-d tensor (the target) computed from ``param``.
    iterations : int
        Maximum L-BFGS iterations (at most 1.25 evaluations each, plus one).
    history : int, optional
        L-BFGS memory (default `HISTORY`).
    bounds : (lower, upper), optional
        Scalars or arrays shaped like ``param`` (None: unbounded on that side).

    Returns
    -------
    float
        Target at the final parameters.

    Raises
    ------
    NonFiniteError
        After restoring ``param`` to the last finite point.
    """
    import scipy.optimize
    import torch

    if iterations <= 0:
        with torch.no_grad():
            return float(fn())
    shape = param.shape
    best = {"x": param.detach().clone(), "f": math.inf}

    def set_param(x):
        with torch.no_grad():
            param.copy_(torch.as_tensor(x, dtype=param.dtype, device=param.device).view(shape))

    def fg(x):
        set_param(x)
        param.grad = None
        f = fn()
        fv = float(f.detach())
        if not math.isfinite(fv):
            raise NonFiniteError(f"target became {fv}")
        f.backward()
        g = param.grad
        if not bool(torch.isfinite(g).all()):
            raise NonFiniteError("gradient has NaN/inf")
        if fv < best["f"]:
            best["x"], best["f"] = param.detach().clone(), fv
        return fv, g.detach().cpu().double().numpy().ravel()

    x0 = param.detach().cpu().double().numpy().ravel()
    opts = {"maxiter": int(iterations), "maxfun": int(iterations * EVALS_PER_ITERATION) + 1,
            "maxcor": int(history or HISTORY), "ftol": FTOL, "gtol": 0.0, "maxls": 25}
    try:
        scipy.optimize.minimize(fg, x0, jac=True, method="L-BFGS-B",
                                bounds=_bounds(bounds, x0.size), options=opts)
    except NonFiniteError:
        set_param(best["x"])
        raise
    set_param(best["x"])     # the best point evaluated (the last trial may be worse)
    param.grad = None
    return best["f"]


def _bounds(bounds, n):
    """SciPy ``Bounds`` from (lower, upper) scalars/arrays, or None."""
    if bounds is None:
        return None
    import scipy.optimize

    out = []
    for b, inf in zip(bounds, (-np.inf, np.inf)):
        if hasattr(b, "detach"):
            b = b.detach().cpu().double().numpy()
        out.append(np.broadcast_to(np.asarray(inf if b is None else b, float).ravel(), (n,)))
    return scipy.optimize.Bounds(*out)
