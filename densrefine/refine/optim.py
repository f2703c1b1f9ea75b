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

STALL_EVALS = 4
"""Stop when the best target of the last STALL_EVALS evaluations is not lower than the one
before them by more than FTOL·|target|. L-BFGS-B tests FTOL only when an iteration ends,
and a line search on a float32 target that has reached its rounding noise (~1e-7·|f|)
can go on for 25 trials: rigid-body passes from 1 Å errors on 5NI1 reached their optimum
(to 0.03 of a target of 2e5) after 7–8 evaluations and then spent 16–20 more there."""


class NonFiniteError(RuntimeError):
    """NaN or infinity in the target or its gradient."""


class _Stalled(Exception):
    """Internal: the target stopped improving (`STALL_EVALS`)."""


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
    trace = []                   # best target after each evaluation

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
        trace.append(best["f"])
        if len(trace) > STALL_EVALS and (trace[-STALL_EVALS - 1] - best["f"]
                                         <= FTOL * max(abs(best["f"]), 1.0)):
            raise _Stalled
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
    except _Stalled:
        pass
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
