"""A guarded L-BFGS step shared by every stage (rigid, xyz, B).

Non-finite targets or gradients stop the optimisation: the parameters go back to the
last values that gave a finite target and `NonFiniteError` tells the engine to stop,
keep that model and report it.
"""
from __future__ import annotations

import math

HISTORY = 10
"""L-BFGS memory (pairs of steps and gradient changes)."""


class NonFiniteError(RuntimeError):
    """NaN or infinity in the target or its gradient."""


def minimise(param, fn, iterations: int, history: int | None = None) -> float:
    """Minimise ``fn()`` over the leaf tensor ``param`` with L-BFGS (strong Wolfe).

    Parameters
    ----------
    param : torch.Tensor
        Leaf tensor with ``requires_grad=True``; updated in place.
    fn : callable
        Returns a 0-d tensor (the target) computed from ``param``.
    iterations : int
        Maximum L-BFGS iterations.

    Returns
    -------
    float
        Target at the final parameters.

    Raises
    ------
    NonFiniteError
        After restoring ``param`` to the last finite point.
    """
    import torch

    if iterations <= 0:
        with torch.no_grad():
            return float(fn())
    best = {"x": param.detach().clone(), "f": math.inf}
    opt = torch.optim.LBFGS([param], lr=1.0, max_iter=iterations,
                            history_size=history or HISTORY,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-10,
                            tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        f = fn()
        fv = float(f.detach())
        if not math.isfinite(fv):
            raise NonFiniteError(f"target became {fv}")
        f.backward()
        if not bool(torch.isfinite(param.grad).all()):
            raise NonFiniteError("gradient has NaN/inf")
        if fv < best["f"]:
            best["x"], best["f"] = param.detach().clone(), fv
        return f

    try:
        opt.step(closure)
    except NonFiniteError:
        with torch.no_grad():
            param.copy_(best["x"])
        raise
    with torch.no_grad():
        f = float(fn())
        if not math.isfinite(f) or f > best["f"]:
            param.copy_(best["x"])
            f = best["f"]
    return f
