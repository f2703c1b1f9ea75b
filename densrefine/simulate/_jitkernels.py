"""numba kernels of `densrefine.simulate.jit` (imported only when the compiled path runs).

Kept in a module of their own at top level so numba can cache them on disk (closures
are not cached) and so that importing `densrefine.simulate` does not import numba.
"""
import math

import numba
import numpy as np

FOUR_PI = 4.0 * math.pi
FOUR_PI2 = 4.0 * math.pi**2

CH = 8
"""SIMD chunk (float32 lanes of an AVX2 register): x runs are padded to whole chunks."""

jit = numba.njit(nogil=True, cache=True, fastmath=True, error_model="numpy")

@jit
def factors(e, d, c, beta, anchor, half, voxel, origin, norm, tiny):
    """1-D factors of one atom along each axis: e[ax, k, i], distances d[ax, i] (Å).

    e[ax, k, i] = exp(−β_k d_i²) with d_i = (i − half − f)·voxel; e[2] (z) also carries
    the amplitude ``norm[k]``; only i ≤ 2·half[ax] is filled. Four exponentials per axis
    and component instead of one per voxel: outwards from the centre, successive
    factors differ by q_i = exp(−β v² (2|i − f| + 1)), and q_{i+1} = q_i · exp(−2β v²)
    (all in float64, so the few products add no error visible in float32).
    Factors below ``tiny`` become 0: in float32 their products with two other factors
    and the amplitude can be subnormal numbers, which x86 CPUs handle ~100× slower
    (the sharp Gaussians of method="fourier" had the forward pass 1.7× slower).
    """
    kk = beta.shape[0]
    for ax in range(3):
        v = voxel[ax]
        h = half[ax]
        f = (c[ax] - origin[ax]) / v - anchor[ax]               # in [-0.5, 0.5] voxels
        for i in range(2 * h + 1):
            d[ax, i] = ((i - h) - f) * v
        for k in range(kk):
            bv = beta[k] * v * v
            s = norm[k] if ax == 2 else 1.0
            step = math.exp(-2.0 * bv)
            e0 = math.exp(-bv * f * f)
            e[ax, k, h] = e0 * s if e0 >= tiny else 0.0
            val = e0
            q = math.exp(-bv * (1.0 - 2.0 * f))               # centre → centre + 1
            for i in range(h + 1, 2 * h + 1):
                val *= q
                q *= step
                e[ax, k, i] = val * s if val >= tiny else 0.0
            val = e0
            q = math.exp(-bv * (1.0 + 2.0 * f))               # centre → centre − 1
            for i in range(h - 1, -1, -1):
                val *= q
                q *= step
                e[ax, k, i] = val * s if val >= tiny else 0.0


@jit
def axis_index(idx, a0, n, periodic):
    """Grid index of each box position along one axis (−1: outside, clipped grid)."""
    for i in range(idx.shape[0]):
        g = a0 + i
        if periodic:
            g %= n
        elif g < 0 or g >= n:
            g = -1
        idx[i] = g

@jit
def plane_sum(dst, tab, c, kk, npl):
    """dst[f] = Σ_k c[k] tab[k, f] for f < npl.

    One pass with up to five components in registers (the tables' common sizes: 2
    for `fit`'s compressed Gaussians, 5 for the IAM tables); more components add
    further passes of five. Written out per count: a loop of ``dst[f] += c tab[k, f]``
    per component was not vectorised.
    """
    for k0 in range(0, kk, 5):
        n = min(5, kk - k0)
        add = k0 > 0
        c0 = c[k0]
        t0 = tab[k0]
        if n == 1:
            if add:
                for f in range(npl):
                    dst[f] += c0 * t0[f]
            else:
                for f in range(npl):
                    dst[f] = c0 * t0[f]
            continue
        c1 = c[k0 + 1]
        t1 = tab[k0 + 1]
        if n == 2:
            if add:
                for f in range(npl):
                    dst[f] += c0 * t0[f] + c1 * t1[f]
            else:
                for f in range(npl):
                    dst[f] = c0 * t0[f] + c1 * t1[f]
            continue
        c2 = c[k0 + 2]
        t2 = tab[k0 + 2]
        if n == 3:
            if add:
                for f in range(npl):
                    dst[f] += c0 * t0[f] + c1 * t1[f] + c2 * t2[f]
            else:
                for f in range(npl):
                    dst[f] = c0 * t0[f] + c1 * t1[f] + c2 * t2[f]
            continue
        c3 = c[k0 + 3]
        t3 = tab[k0 + 3]
        if n == 4:
            if add:
                for f in range(npl):
                    dst[f] += c0 * t0[f] + c1 * t1[f] + c2 * t2[f] + c3 * t3[f]
            else:
                for f in range(npl):
                    dst[f] = c0 * t0[f] + c1 * t1[f] + c2 * t2[f] + c3 * t3[f]
            continue
        c4 = c[k0 + 4]
        t4 = tab[k0 + 4]
        if add:
            for f in range(npl):
                dst[f] += c0 * t0[f] + c1 * t1[f] + c2 * t2[f] + c3 * t3[f] + c4 * t4[f]
        else:
            for f in range(npl):
                dst[f] = c0 * t0[f] + c1 * t1[f] + c2 * t2[f] + c3 * t3[f] + c4 * t4[f]


@jit
def forward(out, centres, amp, width, anchor, half, voxel, origin, order, zlo, zhi,
            periodic, hmax, tiny):
    """Add the density of atoms ``order`` to ``out`` on z planes [zlo, zhi).

    Per atom: the (y, x) tables t_k = ey_k ⊗ ex_k (x runs padded with zeros to whole
    `CH` chunks), then each z plane as Σ_k ez_k t_k, one long vectorised loop over the
    flat plane, added row by row into ``out``.
    """
    nz, ny, nx = out.shape
    kk = amp.shape[1]
    wmax = 2 * hmax + 1
    wpad = -(-wmax // CH) * CH
    e = np.zeros((3, kk, wpad), out.dtype)
    d = np.zeros((3, wpad), np.float64)
    beta = np.empty(kk, np.float64)
    norm = np.empty(kk, np.float64)
    iz_ = np.empty(wmax, np.int64)
    iy_ = np.empty(wmax, np.int64)
    ix_ = np.empty(wmax, np.int64)
    tab = np.empty((kk, wmax * wpad), out.dtype)
    plane = np.empty(wmax * wpad, out.dtype)
    cz = np.empty(kk, out.dtype)
    for j in order:
        hx, hy, hz = half[j, 0], half[j, 1], half[j, 2]
        wz = 2 * hz + 1
        axis_index(iz_[:wz], anchor[j, 2] - hz, nz, periodic)
        hit = False
        for i in range(wz):
            if zlo <= iz_[i] < zhi:
                hit = True
                break
        if not hit:
            continue
        for k in range(kk):
            w = width[j, k]
            beta[k] = FOUR_PI2 / w
            norm[k] = amp[j, k] * (FOUR_PI / w) ** 1.5
        wx, wy = 2 * hx + 1, 2 * hy + 1
        wp = -(-wx // CH) * CH
        e[0, :, wx:wp] = 0.0
        factors(e, d, centres[j], beta, anchor[j], half[j], voxel, origin, norm, tiny)
        axis_index(iy_[:wy], anchor[j, 1] - hy, ny, periodic)
        axis_index(ix_[:wx], anchor[j, 0] - hx, nx, periodic)
        # padded x run inside the grid row: the common case, added without an index
        x0 = ix_[0]
        inner = x0 >= 0 and ix_[wx - 1] == x0 + wx - 1 and x0 + wp <= nx
        npl = wy * wp
        for k in range(kk):
            for b in range(wy):
                t = tab[k, b * wp:(b + 1) * wp]
                ey = e[1, k, b]
                for i in range(wp):
                    t[i] = ey * e[0, k, i]
        for a in range(wz):
            z = iz_[a]
            if z < zlo or z >= zhi:
                continue
            for k in range(kk):
                cz[k] = e[2, k, a]
            plane_sum(plane, tab, cz, kk, npl)
            for b in range(wy):
                y = iy_[b]
                if y < 0:
                    continue
                p = plane[b * wp:(b + 1) * wp]
                if inner:            # padding lanes add zeros to this thread's own row
                    o = out[z, y, x0:x0 + wp]
                    for i in range(wp):
                        o[i] += p[i]
                else:
                    for i in range(wx):
                        x = ix_[i]
                        if x >= 0:
                            out[z, y, x] += p[i]


@jit
def backward(g_c, g_a, g_w, grad, centres, amp, width, anchor, half, voxel, origin,
             order, periodic, hmax, tiny):
    """Gradients of Σ grad·ρ w.r.t. centres, amplitudes and widths of atoms ``order``.

    Per atom and z plane, the output gradient g on the cube's (y, x) plane is dotted
    with four tables per component, e_k (1, dx, dy, dx² + dy²) with e_k = ey_k ⊗ ex_k
    (long vectorised loops); weighting those by ez_k (1, dz, dz²) over the planes gives
    Σ g e_k (1, dx, dy, dz, r²) exactly.
    """
    nz, ny, nx = grad.shape
    kk = amp.shape[1]
    wmax = 2 * hmax + 1
    wpad = -(-wmax // CH) * CH
    e = np.zeros((3, kk, wpad), np.float64)
    d = np.zeros((3, wpad), np.float64)
    beta = np.empty(kk, np.float64)
    ones = np.ones(kk, np.float64)
    iz_ = np.empty(wmax, np.int64)
    iy_ = np.empty(wmax, np.int64)
    ix_ = np.empty(wmax, np.int64)
    tab = np.empty((4, kk, wmax * wpad), grad.dtype)
    gp = np.zeros(wmax * wpad, grad.dtype)
    s = np.zeros((5, kk), np.float64)
    for j in order:
        hx, hy, hz = half[j, 0], half[j, 1], half[j, 2]
        wx, wy, wz = 2 * hx + 1, 2 * hy + 1, 2 * hz + 1
        wp = -(-wx // CH) * CH
        npl = wy * wp
        for k in range(kk):
            beta[k] = FOUR_PI2 / width[j, k]
        e[0, :, wx:wp] = 0.0
        d[0, wx:wp] = 0.0
        factors(e, d, centres[j], beta, anchor[j], half[j], voxel, origin, ones, tiny)
        axis_index(iz_[:wz], anchor[j, 2] - hz, nz, periodic)
        axis_index(iy_[:wy], anchor[j, 1] - hy, ny, periodic)
        axis_index(ix_[:wx], anchor[j, 0] - hx, nx, periodic)
        x0 = ix_[0]
        inner = x0 >= 0 and ix_[wx - 1] == x0 + wx - 1 and x0 + wp <= nx
        for k in range(kk):
            for b in range(wy):
                ey, dy = e[1, k, b], d[1, b]
                for i in range(wp):
                    v = ey * e[0, k, i]
                    f = b * wp + i
                    tab[0, k, f] = v
                    tab[1, k, f] = v * d[0, i]
                    tab[2, k, f] = v * dy
                    tab[3, k, f] = v * (d[0, i] * d[0, i] + dy * dy)
        s[:, :] = 0.0
        for a in range(wz):
            z = iz_[a]
            if z < 0:
                continue
            for b in range(wy):
                y = iy_[b]
                p = gp[b * wp:(b + 1) * wp]
                if y < 0:
                    p[:] = 0.0
                elif inner:              # padding lanes meet zeros in the tables
                    g = grad[z, y, x0:x0 + wp]
                    for i in range(wp):
                        p[i] = g[i]
                else:
                    for i in range(wp):
                        x = ix_[i] if i < wx else -1
                        p[i] = grad[z, y, x] if x >= 0 else 0.0
            da = d[2, a]
            for k in range(kk):
                t0 = gp[0] * np.float32(0.0)           # the grid's dtype
                t1 = t0
                t2 = t0
                t3 = t0
                for f in range(npl):
                    g = gp[f]
                    t0 += g * tab[0, k, f]
                    t1 += g * tab[1, k, f]
                    t2 += g * tab[2, k, f]
                    t3 += g * tab[3, k, f]
                ez = e[2, k, a]
                s[0, k] += ez * t0                          # Σ g e
                s[1, k] += ez * t1                          # Σ g e dx
                s[2, k] += ez * t2                          # Σ g e dy
                s[3, k] += ez * da * t0                     # Σ g e dz
                s[4, k] += ez * (t3 + da * da * t0)         # Σ g e r²
        # chain rule: ρ = Σ_k n_k e_k, n = a (4π/w)^{3/2}, β = 4π²/w, e = exp(−β d²),
        # d = voxel − centre: ∂e/∂c = 2β d e, ∂e/∂β = −d² e
        c0 = 0.0
        c1 = 0.0
        c2 = 0.0
        for k in range(kk):
            w = width[j, k]
            scale = (FOUR_PI / w) ** 1.5
            n = amp[j, k] * scale
            c0 += 2.0 * beta[k] * n * s[1, k]
            c1 += 2.0 * beta[k] * n * s[2, k]
            c2 += 2.0 * beta[k] * n * s[3, k]
            g_a[j, k] = s[0, k] * scale
            g_w[j, k] = n * s[4, k] * beta[k] / w - 1.5 * s[0, k] * n / w
        g_c[j, 0] = c0
        g_c[j, 1] = c1
        g_c[j, 2] = c2
