"""Fast path of the splat kernel for orthogonal grids: cells, windows, batched matmuls.

Atoms are binned by their anchor voxel into cells of L voxels per axis. Every
atom's cube lies inside its cell's window of nbw·L ≥ L + 2R voxels, whose density is

    window[z, y, x] = Σ_m gz[m, z] gy[m, y] gx[m, x]          (m = atom, component)

i.e. ``(gz ⊗ gy) @ gx``, one batched matmul per batch of cells. gz carries the
amplitude a (4π/w)^{3/2}; the 1-D factors are zero outside each atom's own cube, so
the result is exactly the per-atom cube sum of `densrefine.simulate.kernel`. Windows
are added with one ``scatter_add_`` into a padded copy of the grid (whole cells per
axis; a window is Wz·Wy runs of Wx contiguous voxels), which is then cropped (or
folded, periodic) onto the grid. The backward pass gathers the output gradient on
the same windows, contracts it with the factors (two more matmuls) and applies the
chain rule analytically (`_factor_grads`). Large intermediates live in buffers each
thread keeps between calls: fresh multi-MB allocations cost more than the arithmetic
on CPU (pages are mapped on first write).

Batches are split into `PARTS` groups with their own accumulators, summed in a fixed
order; `set_workers` runs the groups on threads (their matmuls, exp and scatters
release the GIL), with the same result bit for bit.

Cost per atom is O(K·W³) flops in matmuls plus ~nbw³/ρ scattered values (ρ atoms
per voxel), against (2R+1)³ scattered values for a plain per-atom scatter.
"""
from __future__ import annotations

import math
import threading

import numpy as np
import torch

FOUR_PI = 4.0 * math.pi
FOUR_PI2 = 4.0 * math.pi**2


class Workspace:
    """Reusable flat buffers, one per name, grown on demand."""

    def __init__(self, dtype, device):
        self.dtype, self.device, self.buf = dtype, device, {}

    def get(self, name, shape, dtype=None):
        dtype = dtype or self.dtype
        n = int(np.prod(shape))
        b = self.buf.get(name)
        if b is None or b.numel() < n or b.dtype != dtype:
            b = torch.empty(max(n, 1), dtype=dtype, device=self.device)
            self.buf[name] = b
        return b[:n].view(tuple(int(s) for s in shape))


_LOCAL = threading.local()


def _workspace(dtype, device) -> Workspace:
    """This thread's workspace for (dtype, device), kept between calls.

    Kept because a fresh multi-MB buffer is mapped page by page on first write: on the
    project's VM that made the window index and accumulator writes 3-6x slower than
    the same writes into memory already touched. `release_workspaces` frees them.
    """
    d = getattr(_LOCAL, "ws", None)
    if d is None:
        d = _LOCAL.ws = {}
        with _ALL_LOCK:
            _ALL.append(d)
    key = (dtype, str(device))
    if key not in d:
        d[key] = Workspace(dtype, device)
    return d[key]


_ALL, _ALL_LOCK = [], threading.Lock()


def release_workspaces() -> None:
    """Free the buffers every thread keeps (`_workspace`)."""
    with _ALL_LOCK:
        for d in _ALL:
            d.clear()


def _tensors(batch, plan, device):
    """Device copies of a batch's integer arrays, per slot where padded (cached)."""
    t = batch.cache.get(device)
    if t is None:
        nslots = len(batch.cells) * batch.nmax
        half = np.full((nslots, 3), -1, np.int64)
        half[batch.slot] = plan.half[batch.atoms]
        rel0 = np.zeros((nslots, 3), np.int64)
        rel0[batch.slot] = batch.offset + plan.half[batch.atoms]
        t = {"idx": torch.as_tensor(batch.atoms, device=device),
             "slot": torch.as_tensor(batch.slot, device=device),
             "p_half": torch.as_tensor(half, device=device),
             "p_rel0": torch.as_tensor(rel0, device=device)}
        batch.cache[device] = t
    return t


def _slot_params(centres, amp, width, t, nslots, consts):
    """Per-slot (padded) parameters: f (S, 3) voxels, beta (S, K) Å⁻², norm (S, K).

    Padding slots get beta = 1 and norm = 0 (and half = −1 in ``t``: empty cube).
    """
    u = (centres - consts["origin"]) / consts["voxel"]
    f = u - consts["anchor"][t["idx"]].to(u.dtype)                      # (n, 3) in [-0.5, 0.5]
    slot, k = t["slot"], amp.shape[1]
    pf = f.new_zeros((nslots, 3)).index_copy_(0, slot, f)
    pbeta = width.new_ones((nslots, k)).index_copy_(0, slot, FOUR_PI2 / width)
    pnorm = amp.new_zeros((nslots, k)).index_copy_(0, slot, amp * (FOUR_PI / width) ** 1.5)
    return pf, pbeta, pnorm


def _factors(centres, amp, width, batch, win, plan, consts):
    """1-D factors of a batch: (gz, gy, gx) and the pieces the backward pass needs.

    gx[b, m, x] (B, M, Wx), gy[b, y, m] (B, Wy, M), gz[b, z, m] (B, Wz, M) with
    m = (slot, component), M = nmax·K: exp(−β (d·voxel)²), zero outside each atom's
    cube; gz also carries the amplitude a (4π/w)^{3/2}. Not differentiable (see
    `_factor_grads`).
    """
    t = _tensors(batch, plan, centres.device)
    nb, nmax, k = len(batch.cells), batch.nmax, amp.shape[1]
    pf, pbeta, pnorm = _slot_params(centres, amp, width, t, nb * nmax, consts)
    vox = consts["voxel"]
    ds, es = [], []
    for i in range(3):
        w = torch.arange(int(win[i]), device=pf.device, dtype=pf.dtype)
        rel = w[None, :] - t["p_rel0"][:, i, None]                      # (S, W) voxels
        inside = (rel.abs() <= t["p_half"][:, i, None]).to(pf.dtype)
        d = (rel - pf[:, i, None]) * vox[i]                             # (S, W) Å
        if i == 0:                                                      # (S, K, Wx)
            d = d[:, None, :]
            e = torch.exp(-pbeta[:, :, None] * d * d) * inside[:, None, :]
        else:                                                           # (B, W, nmax, K)
            d = d.view(nb, nmax, -1).transpose(1, 2).contiguous()[..., None]
            inside = inside.view(nb, nmax, -1).transpose(1, 2).contiguous()[..., None]
            e = torch.exp(-pbeta.view(nb, 1, nmax, k) * d * d) * inside
        ds.append(d)
        es.append(e)
    gx = es[0].view(nb, nmax * k, int(win[0]))
    gy = es[1].view(nb, int(win[1]), nmax * k)
    gz = (es[2] * pnorm.view(nb, 1, nmax, k)).view(nb, int(win[2]), nmax * k)
    return gz, gy, gx, (ds, es, pbeta, pnorm)


def _factor_grads(d_gz, d_gy, d_gx, aux, t, amp, width):
    """Chain rule from the factor gradients to (centres, amp, width) of the batch atoms.

    With e = exp(−β d²), d = (x − c) along an axis, β = 4π²/w and
    norm = a (4π/w)^{3/2}: ∂e/∂c = 2β d e, ∂e/∂β = −d² e, ∂β/∂w = −β/w,
    ∂norm/∂a = (4π/w)^{3/2}, ∂norm/∂w = −1.5 norm/w.
    """
    ds, es, pbeta, pnorm = aux
    s, k = pbeta.shape
    nb = d_gy.shape[0]
    p_pos, q_beta = [], pbeta.new_zeros((s, k))
    for i, grad in enumerate((d_gx, d_gy, d_gz)):
        if i == 0:
            g = grad.view(s, k, -1) * es[0]                              # (S, K, Wx)
            p = (g * ds[0]).sum(-1)
            q = (g * ds[0] ** 2).sum(-1)
        else:
            g = grad.view(nb, grad.shape[1], -1, k) * es[i]              # (B, W, nmax, K)
            p = (g * ds[i]).sum(1).view(s, k)
            q = (g * ds[i] ** 2).sum(1).view(s, k)
            if i == 2:
                n_grad = g.sum(1).view(s, k)                             # dL/dnorm
                p, q = p * pnorm, q * pnorm
        p_pos.append((2 * pbeta * p).sum(1))
        q_beta -= q
    slot = t["slot"]
    d_c = torch.stack(p_pos, 1)[slot]                                    # (n, 3)
    d_beta, d_norm = q_beta[slot], n_grad[slot]                          # (n, K)
    beta = FOUR_PI2 / width
    scale = (FOUR_PI / width) ** 1.5
    d_w = -d_beta * beta / width - 1.5 * d_norm * amp * scale / width
    return d_c, d_norm * scale, d_w


def _window_index(batch, nbw, plan, ws, device):
    """Accumulator index of every window voxel, in window order (B, Wz, Wy, Wx).

    The accumulator is the padded grid (Pz, Py, Px), flat; cell c's window starts at
    voxel c·L, so voxel (b, z, y, x) is at row part base[b] + (z·Py + y)·Px plus
    column part x (runs of Wx contiguous voxels).
    """
    cp = plan.cells
    pz, py, px = _padded_shape(cp)
    lx, ly, lz = (int(v) for v in cp.cell)
    wx, wy, wz = (int(v) for v in nbw * cp.cell)
    key = ("zy", wz, wy, py, px)
    zy = ws.buf.get(key)
    if zy is None:
        zy = (torch.arange(wz, device=device)[:, None] * (py * px)
              + torch.arange(wy, device=device)[None, :] * px).view(1, -1)
        ws.buf[key] = zy
    xs = ws.buf.get(("x", wx))
    if xs is None:                      # keyed apart: windows may share (Wz, Wy) only
        xs = ws.buf[("x", wx)] = torch.arange(wx, device=device).view(1, -1)
    t = _tensors(batch, plan, device)
    base = t.get("base")
    if base is None:
        c = batch.cells.astype(np.int64)
        base = t["base"] = torch.as_tensor(((c[:, 2] * lz * py) + c[:, 1] * ly) * px
                                           + c[:, 0] * lx, device=device).view(-1, 1)
    rows = ws.get("rows", (base.shape[0], zy.shape[1]), torch.int64)
    torch.add(base, zy, out=rows)
    el = ws.get("el", (rows.numel(), wx), torch.int64)
    torch.add(rows.view(-1, 1), xs, out=el)
    return el.view(-1)


def _padded_shape(cp):
    """(Pz, Py, Px): the padded grid, whole cells per axis."""
    return tuple(int(n) * int(L) for n, L in zip(cp.nblocks[::-1], cp.cell[::-1]))


def _fold_axis(t, ax, n, off):
    """Periodic fold along one axis: out[i] = Σ_t t[off + i + t·n] over valid positions."""
    lp = t.shape[ax]
    shape = list(t.shape)
    shape[ax] = n
    out = t.new_zeros(shape)
    start = off - ((off + n - 1) // n) * n                              # ≤ 0, ≡ off mod n
    for s in range(start, lp, n):
        lo, hi = max(s, 0), min(s + n, lp)
        if hi > lo:
            out.narrow(ax, lo - s, hi - lo).add_(t.narrow(ax, lo, hi - lo))
    return out


def _padded_to_grid(acc, plan):
    """Grid (nz, ny, nx) from the padded accumulator: crop, or fold if periodic (a new
    tensor)."""
    cp, fr = plan.cells, plan.frame
    padded = acc.view(_padded_shape(cp))
    offs = [int(cp.p0[2 - ax]) for ax in range(3)]
    if not fr.periodic:
        nz, ny, nx = fr.shape
        return padded[offs[0]:offs[0] + nz, offs[1]:offs[1] + ny,
                      offs[2]:offs[2] + nx].clone(memory_format=torch.contiguous_format)
    for ax in range(3):
        padded = _fold_axis(padded, ax, fr.shape[ax], offs[ax])
    return padded


def _grid_to_padded(grad, plan, ws):
    """Transpose of `_padded_to_grid`: the gradient on the padded grid, flat."""
    cp, fr = plan.cells, plan.frame
    shape = _padded_shape(cp)
    offs = [int(cp.p0[2 - ax]) for ax in range(3)]
    if not fr.periodic:
        t = ws.get("gpad", shape).zero_()
        nz, ny, nx = fr.shape
        t[offs[0]:offs[0] + nz, offs[1]:offs[1] + ny, offs[2]:offs[2] + nx] = grad
        return t.view(-1)
    t = grad
    for ax in range(3):
        q = (np.arange(shape[ax]) - offs[ax]) % fr.shape[ax]
        t = t.index_select(ax, torch.as_tensor(q, device=grad.device))
    return t.reshape(-1)


PARTS = 2
"""Batches are split into this many groups, each with its own accumulator, summed in a
fixed order: the result does not depend on how many workers run the groups."""

_POOL = {"workers": 1, "pool": None}


def set_workers(n: int) -> int:
    """Run the batch groups on ``n`` threads (1: in the calling thread); returns the old n.

    Each group's large operations (matmuls, exp, scatter) release the GIL, so on a CPU
    with torch at one intra-op thread two workers overlap them (`densrefine.refine.engine`
    sets this for small models; CUDA ignores it). Results are identical for any ``n``.
    """
    old = _POOL["workers"]
    n = max(1, min(int(n), PARTS))
    if n != old:
        if _POOL["pool"] is not None:
            _POOL["pool"].shutdown()
        _POOL["pool"] = None
        if n > 1:
            from concurrent.futures import ThreadPoolExecutor

            _POOL["pool"] = ThreadPoolExecutor(n, thread_name_prefix="densrefine-splat")
        _POOL["workers"] = n
    return old


def _groups(cp):
    """``PARTS`` lists of (n, class, batch), balanced by matmul size (cached on the plan)."""
    g = getattr(cp, "_groups", None)
    if g is None:
        items = [(n, klass, batch) for n, (klass, batch) in enumerate(
            (kl, b) for kl in cp.classes for b in kl.batches)]
        cost = [len(b.cells) * b.nmax * float(np.prod(kl.nbw * cp.cell)) for _, kl, b in items]
        g, load = [[] for _ in range(PARTS)], [0.0] * PARTS
        for i in sorted(range(len(items)), key=lambda i: -cost[i]):
            j = int(np.argmin(load))
            g[j].append(items[i])
            load[j] += cost[i]
        g = [sorted(x, key=lambda it: it[0]) for x in g if x]
        cp._groups = g
    return g


def _map(fn, groups, device):
    """fn over the groups: on the worker threads (CPU, workers > 1) or in turn."""
    pool = _POOL["pool"]
    if pool is None or device.type != "cpu" or len(groups) < 2:
        return [fn(x) for x in groups]

    def run(x):
        with torch.no_grad():
            return fn(x)

    return list(pool.map(run, groups))


def cells_forward(centres, amp, width, plan, consts, keep=None):
    """Density (nz, ny, nx) of the fast-path atoms (a new tensor).

    ``keep``: a list that receives each batch's factors (for `cells_backward`, which
    then skips recomputing them; a few bytes per atom·component·window voxel row).
    """
    cp = plan.cells
    groups = _groups(cp)
    kept = {}
    size = int(np.prod(_padded_shape(cp)))

    def run(item):
        part, group = item
        ws = _workspace(amp.dtype, amp.device)
        acc = ws.get(("acc", part), (size,)).zero_()
        for n, klass, batch in group:
            idx = _tensors(batch, plan, amp.device)["idx"]
            gz, gy, gx, aux = _factors(centres[idx], amp[idx], width[idx], batch,
                                       klass.nbw * cp.cell, plan, consts)
            if keep is not None:
                kept[n] = (gz, gy, gx, aux)
            b, wz, m = gz.shape
            wy, wx = gy.shape[1], gx.shape[2]
            prod = ws.get("prod", (b, wz, wy, m))
            torch.mul(gz[:, :, None, :], gy[:, None, :, :], out=prod)
            win = ws.get("win", (b, wz * wy, wx))
            torch.bmm(prod.view(b, wz * wy, m), gx, out=win)
            acc.scatter_add_(0, _window_index(batch, klass.nbw, plan, ws, amp.device),
                             win.view(-1))
        return acc

    accs = _map(run, list(enumerate(groups)), amp.device)
    acc = accs[0]
    for a in accs[1:]:
        acc += a
    if keep is not None:
        keep.extend(kept[n] for n in sorted(kept))
    return _padded_to_grid(acc, plan)      # a new tensor: the kept accumulator never leaks


def cells_backward(grads, grad, centres, amp, width, plan, consts, kept=None):
    """Accumulate d(loss)/d(centres, amp, width) of the fast-path atoms into ``grads``.

    ``kept``: the factors `cells_forward` kept, else they are recomputed.
    """
    cp = plan.cells
    gblk = _grid_to_padded(grad, plan, _workspace(grad.dtype, grad.device))

    def run(group):
        ws = _workspace(grad.dtype, grad.device)
        out = []
        for n, klass, batch in group:
            t = _tensors(batch, plan, grad.device)
            idx = t["idx"]
            a_b, w_b = amp[idx], width[idx]
            if kept:
                gz, gy, gx, aux = kept[n]
            else:
                gz, gy, gx, aux = _factors(centres[idx], a_b, w_b, batch, klass.nbw * cp.cell,
                                           plan, consts)
            b, wz, m = gz.shape
            wy, wx = gy.shape[1], gx.shape[2]
            g = ws.get("g", (b, wz * wy, wx))
            torch.index_select(gblk, 0, _window_index(batch, klass.nbw, plan, ws, grad.device),
                               out=g.view(-1))
            prod = ws.get("prod", (b, wz, wy, m))
            torch.mul(gz[:, :, None, :], gy[:, None, :, :], out=prod)
            d_gx = torch.bmm(prod.view(b, wz * wy, m).transpose(1, 2), g)     # (B, M, Wx)
            h = ws.get("h", (b, wz, wy, m))
            torch.bmm(g, gx.transpose(1, 2), out=h.view(b, wz * wy, m))
            d_gz = torch.mul(h, gy[:, None, :, :], out=prod).sum(2)            # (B, Wz, M)
            d_gy = torch.mul(h, gz[:, :, None, :], out=prod).sum(1)            # (B, Wy, M)
            out.append((idx, _factor_grads(d_gz, d_gy, d_gx, aux, t, a_b, w_b)))
        return out

    # per-batch gradients are added in the same order whatever ran them
    for part in _map(run, _groups(cp), grad.device):
        for idx, parts in part:
            for acc, p in zip(grads, parts):
                acc.index_add_(0, idx, p)
