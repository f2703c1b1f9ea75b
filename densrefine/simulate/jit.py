"""Compiled CPU path of the splat kernel (numba): one pass per atom, forward and backward.

On an orthogonal grid an atom's K Gaussians factorise along x, y, z, so its cube of
(2R+1)³ voxels is ``Σ_k ez[k, z] ey[k, y] ex[k, x]``: 3·K·(2R+1) exponentials and
K multiply-adds per voxel, written straight into the map (no window, index or product
tensors, one pass over each cube). The backward pass reads the output gradient on the
same cube once and contracts it along x, then y, then z (three running sums per
component: value, first and second moment of the distance), which gives the
gradient of the centre, the amplitudes and the widths of each atom exactly (the chain
rule of `densrefine.simulate.cells._factor_grads`).

Threads: the forward pass splits the map into slabs along z, one per worker; each
worker adds every atom that reaches its slab, in the same (sorted) atom order, so each
voxel sums the same terms in the same order whatever the number of workers (results
are identical bit for bit). The backward pass gives each worker a run of atoms; an
atom's gradient is computed by one worker alone. The kernels release the GIL
(``nogil``) and run on a thread pool, not numba's own threading layer, which would
compete with torch's OpenMP threads.

numba compiles the kernels on first use (about 1-3 s per dtype) and keeps them in its
on-disk cache (``__pycache__`` next to this file, or numba's user-wide cache when that
is read-only), so later processes load them in a few milliseconds. Without numba, when
the kernel module cannot be loaded (e.g. no writable cache directory; a warning says so),
or with ``DENSREFINE_JIT=0`` in the environment, `densrefine.simulate.kernel` uses the
torch paths (which CUDA tensors always take).
"""
from __future__ import annotations

import itertools
import logging
import math
import os
import threading
import time

import numpy as np

log = logging.getLogger("densrefine")

FOUR_PI = 4.0 * math.pi
FOUR_PI2 = 4.0 * math.pi**2

_STATE = {"kernels": None, "tried": False}
_LOCK = threading.Lock()


def available() -> bool:
    """True when the compiled kernels can be used (numba importable, not disabled)."""
    if os.environ.get("DENSREFINE_JIT", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return _kernels() is not None


def _kernels():
    """The compiled functions (compiled or loaded from cache on the first call), or None."""
    if not _STATE["tried"]:
        with _LOCK:
            if not _STATE["tried"]:
                t0 = time.perf_counter()
                try:
                    _STATE["kernels"] = _build()
                except ImportError as e:            # numba missing: the torch path serves
                    log.debug("numba unavailable (%s): splat uses the torch kernels", e)
                except Exception as e:  # noqa: BLE001 - numba present but unusable
                    # e.g. RuntimeError "cannot cache function": cache=True needs a writable
                    # __pycache__ or user cache directory, checked when the module loads
                    log.warning("numba is installed but its kernels could not be loaded "
                                "(%s: %s): splat uses the torch kernels", type(e).__name__, e)
                _STATE["tried"] = True
                log.debug("splat kernels: numba import %.2f s", time.perf_counter() - t0)
    return _STATE["kernels"]


def _build():
    from . import _jitkernels as kn

    return {"forward": kn.forward, "backward": kn.backward}


TILE_Z, TILE_Y = 8, 8
"""Atoms are processed in tiles of this many z planes and y rows (anchor voxels)."""

MIN_ATOMS_PER_WORKER = 1500
"""Fewer atoms per worker thread than this (a few ms of work) run in fewer threads."""

_POOL = {"n": 0, "pool": None}


def _forget_pool():
    """In a forked child the pool's threads do not exist: start a new pool there."""
    _POOL.update(n=0, pool=None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _pool(n: int):
    """A thread pool of ``n`` workers (kept between calls; None for none)."""
    if n < 1:
        return None
    if _POOL["n"] != n:
        from concurrent.futures import ThreadPoolExecutor

        if _POOL["pool"] is not None:
            _POOL["pool"].shutdown()
        _POOL["pool"] = ThreadPoolExecutor(n, thread_name_prefix="densrefine-jit")
        _POOL["n"] = n
    return _POOL["pool"]


class JitPlan:
    """Atom order and z slabs of the compiled path (integer bookkeeping only).

    Parameters
    ----------
    frame : GridFrame
        Orthogonal frame.
    anchor, half : ndarray (N, 3) int64
        Nearest voxel (unwrapped) and cube half-widths, x y z.
    atoms : ndarray (n,) int64
        The atoms whose cube touches the grid.
    workers : int
        Threads to use (slabs of the forward pass, atom runs of the backward pass).
    """

    def __init__(self, frame, anchor, half, atoms, workers: int):
        self.frame = frame
        n = frame.shape_xyz
        a = anchor[atoms] % n if frame.periodic else anchor[atoms]
        # tiles of TILE_Z planes × TILE_Y rows, x fastest inside: the cubes of
        # neighbouring atoms in the list overlap, so their planes stay in cache
        lo = a.min(0) if len(a) else np.zeros(3, np.int64)
        span = (a.max(0) - lo + 1) if len(a) else np.ones(3, np.int64)
        r = a - lo
        key = ((r[:, 2] // TILE_Z) * (span[1] // TILE_Y + 1) + r[:, 1] // TILE_Y) * span[0] \
            + r[:, 0]
        self.order = np.ascontiguousarray(atoms[np.argsort(key, kind="stable")])
        self.hmax = int(half[atoms].max()) if len(atoms) else 0
        # ≥ MIN_ATOMS_PER_WORKER each: below that a thread hand-off costs more than it saves
        self.workers = max(1, min(int(workers), len(atoms) // MIN_ATOMS_PER_WORKER))
        nz = int(frame.shape[0])
        if self.workers > 1:
            # z slabs on tile boundaries with about equal numbers of atoms
            az = np.sort(np.clip(a[:, 2], 0, nz))
            cuts = sorted({int(az[len(az) * i // self.workers]) // TILE_Z * TILE_Z
                           for i in range(1, self.workers)} - {0})
            edges = [0] + cuts + [nz]
            self.slabs = [(lo, hi) for lo, hi in itertools.pairwise(edges) if hi > lo]
            self.runs = np.array_split(self.order, self.workers)
        else:
            self.slabs = [(0, nz)]
            self.runs = [self.order]


def _np(t):
    return t.detach().contiguous().numpy()


def _tiny(dtype) -> float:
    """1-D factors below this are dropped (`_jitkernels.factors`) in float32: with three
    factors ≥ 1e-10 and an amplitude ≥ 1e-8 every term stays above the subnormal range
    (1.2e-38); the dropped terms are < 1e-10 of an atom's peak, far below float32
    rounding there. Nothing is dropped in float64."""
    return 1e-10 if dtype == np.float32 else 0.0


def _frame_arrays(fr):
    """Voxel size and origin as fresh writable float64 arrays: numba compiles one
    specialisation per array flag, and frames hold read-only arrays."""
    return np.array(fr.voxel_size, np.float64), np.array(fr.origin, np.float64)


def _run(fn, items):
    """fn(*item) for each item: the first in the calling thread, the others on the pool
    (each kernel call releases the GIL, so they run side by side)."""
    pool = _pool(len(items) - 1)
    futures = [pool.submit(fn, *it) for it in items[1:]] if pool is not None else []
    fn(*items[0])
    for f in futures:
        f.result()


def jit_forward(out, centres, amp, width, plan, anchor, half):
    """Add the density of ``plan``'s atoms to ``out`` (a CPU tensor, nz × ny × nx)."""
    k = _kernels()
    fr = plan.frame
    args = (_np(centres), _np(amp), _np(width), anchor, half, *_frame_arrays(fr), plan.order)
    o = out.numpy()
    per, hmax = bool(fr.periodic), plan.hmax
    tiny = _tiny(o.dtype)
    _run(lambda lo, hi: k["forward"](o, *args, lo, hi, per, hmax, tiny), plan.slabs)


def jit_backward(grads, grad, centres, amp, width, plan, anchor, half):
    """Write d(loss)/d(centres, amp, width) of ``plan``'s atoms into ``grads`` (CPU)."""
    k = _kernels()
    fr = plan.frame
    g = [t.numpy() for t in grads]
    gr = _np(grad)
    args = (_np(centres), _np(amp), _np(width), anchor, half, *_frame_arrays(fr))
    per, hmax = bool(fr.periodic), plan.hmax
    tiny = _tiny(gr.dtype)
    _run(lambda run: k["backward"](*g, gr, *args, run, per, hmax, tiny), [(r,) for r in plan.runs])
