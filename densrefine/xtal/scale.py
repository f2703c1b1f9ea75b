"""Bulk-solvent and overall anisotropic scaling, R factors.

Model (Afonine et al. 2013, Acta Cryst. D69, 625, "Bulk-solvent and overall scaling
revisited"; the flat-solvent model of Fokine & Urzhumtsev 2002, Acta Cryst. D58, 1387)::

    F_model(h) = k_iso(s) · k_aniso(h) · [F_calc(h) + k_mask(s) · F_mask(h)]
    k_aniso(h) = exp(−2π² s_hᵀ U s_h)        (U symmetric, Cartesian Å², constrained by
                                             the point group: U = R U Rᵀ for every
                                             operator; fitted in the basis `u_basis`)
    k_mask(s)  = k_sol · exp(−B_sol s²/4)

Procedure (all on the work reflections only; the free set never enters a fit):

1. Resolution bins of roughly equal counts. In each bin the pair (k_mask, k) that
   minimises Σ(F_obs − k|F_calc + k_mask F_mask|)² is found by a 1-D search over
   k_mask ∈ [0, 1] with k analytic (the binned step of Afonine 2013).
2. k_sol, B_sol from a weighted fit of k_mask(s) to those bin values (low-resolution
   bins, d > 3 Å... where the mask matters), then U, k_overall, k_sol and B_sol together
   by least squares on F (scipy ``least_squares``).
3. A final per-bin isotropic correction k_iso(s) (one analytic scale per bin,
   smoothed) absorbs what the smooth model leaves (as cctbx's ``k_isotropic``).

R = Σ|F_obs − |F_model|| / Σ F_obs over the work (R-work) or test (R-free) set.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("densrefine")


def resolution_bins(s2, n_bins: int | None = None, min_per_bin: int = 100) -> np.ndarray:
    """Bin number (0 = lowest resolution) of each reflection; equal counts in 1/d³.

    ``n_bins`` defaults to clamp(n / 500, 6, 20) but never leaves fewer than
    ``min_per_bin`` reflections per bin (at least one bin).
    """
    n = len(s2)
    if n_bins is None:
        n_bins = int(np.clip(n // 500, 6, 20))
    n_bins = max(1, min(n_bins, n // max(1, min_per_bin)))
    v = np.asarray(s2, np.float64) ** 1.5
    edges = np.quantile(v, np.linspace(0, 1, n_bins + 1))
    return np.clip(np.searchsorted(edges, v, side="right") - 1, 0, n_bins - 1)


def _cart_rotations(cell, spacegroup):
    orth = np.array(cell.orth.mat.tolist())
    frac = np.array(cell.frac.mat.tolist())
    rots = []
    for op in spacegroup.operations().sym_ops:
        r = np.array(op.rot, np.float64) / op.DEN
        rots.append(orth @ r @ frac)
    return np.array(rots)


def _sym_u(p, rots):
    u = np.array([[p[0], p[3], p[4]], [p[3], p[1], p[5]], [p[4], p[5], p[2]]])
    return np.mean([r @ u @ r.T for r in rots], axis=0)


def u_basis(cell, spacegroup, tol: float = 1e-8) -> np.ndarray:
    """Orthonormal basis of the symmetric Cartesian tensors U allowed by the point group.

    U must satisfy U = R U Rᵀ for every Cartesian rotation R = O R_frac O⁻¹ of the space
    group; the allowed tensors are the image of the symmetrising projector
    U ↦ ⟨R U Rᵀ⟩. Its rank is 6 (triclinic), 4 (monoclinic), 3 (orthorhombic), 2
    (tetragonal, trigonal, hexagonal) or 1 (cubic). Fitting the overall anisotropic
    scale in this basis has no free null directions (cctbx ``adp_constraints`` does the
    same): with all six raw components, the directions the symmetry removes have a zero
    Jacobian, drift to ~1e15 during least squares and their rounding noise
    (1e15 × 1e-16) became a spurious U of ~0.1 Å² in hexagonal cells.

    Returns
    -------
    ndarray, shape (r, 3, 3), float64
        r symmetric tensors, orthonormal under the Frobenius product.

    Examples
    --------
    >>> import gemmi
    >>> u_basis(gemmi.UnitCell(50, 50, 80, 90, 90, 120), gemmi.SpaceGroup("P 65")).shape
    (2, 3, 3)
    """
    rots = _cart_rotations(cell, spacegroup)
    proj = np.array([_sym_u(e, rots) for e in np.eye(6)]).reshape(6, 9)
    _, sv, vt = np.linalg.svd(proj)
    rank = int((sv > tol * sv[0]).sum())
    return vt[:rank].reshape(rank, 3, 3)


@dataclass
class ScaleResult:
    """Scales that turn F_calc, F_mask into F_model (see module docstring)."""

    k_overall: float
    k_sol: float
    b_sol: float
    u_aniso: np.ndarray                         # (3, 3) Cartesian Å²
    k_iso: np.ndarray                           # (n,) per-reflection isotropic correction
    k_mask: np.ndarray                          # (n,) k_mask(s) used
    bins: np.ndarray = field(repr=False)        # (n,) bin index
    bin_k_mask: np.ndarray = field(repr=False)  # (n_bins,) binned k_mask of step 1
    twin_fraction: float | None = None          # α of the twin model, None without one

    @property
    def b_cart(self) -> np.ndarray:
        """Overall anisotropic B (8π²U), Å², as the 6 values B11 B22 B33 B12 B13 B23."""
        b = 8 * math.pi ** 2 * self.u_aniso
        return np.array([b[0, 0], b[1, 1], b[2, 2], b[0, 1], b[0, 2], b[1, 2]])


def f_model(fc, fm, sc, s2, res: ScaleResult):
    """Complex F_model for Cartesian reciprocal vectors ``sc`` (n, 3) and |s|² ``s2``.

    The single-domain model (no twin); `f_model_abs` gives the twinned amplitude.
    """
    dw = np.exp(-2 * math.pi ** 2 * np.einsum("ni,ij,nj->n", sc, res.u_aniso, sc))
    return res.k_overall * res.k_iso * dw * (fc + res.k_mask * fm)


def twin_amplitude(f, f_twin, alpha):
    """|F| of a two-domain twin, √((1−α)|F(h)|² + α|F(Th)|²) (complex inputs, any shape).

    ``f_twin`` None or ``alpha`` 0 gives |F(h)|.
    """
    if f_twin is None or not alpha:
        return np.abs(f)
    return np.sqrt((1.0 - alpha) * (f.real ** 2 + f.imag ** 2)
                   + alpha * (f_twin.real ** 2 + f_twin.imag ** 2))


def f_model_abs(fc, fm, sc, s2, res: ScaleResult, twin=None):
    """|F_model| (n,): the scaled single-domain amplitude, or with ``twin = (fc_t, fm_t)``
    (F_calc, F_mask at the twin mates Th) and ``res.twin_fraction`` = α,
    k_total(h)·√((1−α)|F(h)|² + α|F(Th)|²), F = F_calc + k_mask(s) F_mask (|s| is the same
    for h and Th, so k_mask and k_iso are; k_aniso is that of the observed index h)."""
    if twin is None or res.twin_fraction is None:
        return np.abs(f_model(fc, fm, sc, s2, res))
    dw = np.exp(-2 * math.pi ** 2 * np.einsum("ni,ij,nj->n", sc, res.u_aniso, sc))
    amp = twin_amplitude(fc + res.k_mask * fm, twin[0] + res.k_mask * twin[1],
                         res.twin_fraction)
    return res.k_overall * res.k_iso * dw * amp


def _bin_kmask(fo, fc, fm, bins, work, grid=np.linspace(0.0, 1.0, 101), twin=None):
    """Per-bin k_mask ∈ ``grid`` minimising Σ(F_obs − k|F_calc + k_mask F_mask|)², k analytic.

    ``twin = (fc_t, fm_t, alpha)`` uses the twinned amplitude (`twin_amplitude`).
    """
    nb = int(bins.max()) + 1
    b, o, c, m = bins[work], fo[work], fc[work], fm[work]
    ct, mt, alpha = (None, None, 0.0) if twin is None else (twin[0][work], twin[1][work],
                                                             twin[2])
    oo = np.bincount(b, o * o, nb)
    best = np.full(nb, np.inf)
    out = np.zeros(nb)
    for km in grid:
        a = twin_amplitude(c + km * m, None if ct is None else ct + km * mt, alpha)
        num = np.bincount(b, o * a, nb)
        den = np.maximum(np.bincount(b, a * a, nb), 1e-30)
        r = oo - num * num / den                   # residual at the optimal k
        better = r < best
        best[better], out[better] = r[better], km
    return out


class _ScaleProblem:
    """Residuals and Jacobian of the smooth scale model on the work set (see `fit_scales`).

    Parameters p: [ln k_overall, k_sol, B_sol, U coordinates in `u_basis` (r)] and, for a
    twin, α last. Residual (F_obs − k_total·|F|)/⟨F_obs⟩.
    """

    def __init__(self, o, c, m, ss, q, twin):
        self.o, self.c, self.m, self.ss, self.q = o, c, m, ss, q
        self.ct, self.mt = (None, None) if twin is None else twin
        self.nu, self.scale = q.shape[1], np.mean(o)

    def parts(self, p):
        km = p[1] * np.exp(-p[2] * self.ss / 4)
        f = self.c + km * self.m
        ft = None if self.ct is None else self.ct + km * self.mt
        alpha = 0.0 if ft is None else p[-1]
        a = twin_amplitude(f, ft, alpha)
        pre = np.exp(p[0] + self.q @ p[3:3 + self.nu])
        return km, f, ft, alpha, a, pre

    def resid(self, p):
        *_, a, pre = self.parts(p)
        return (self.o - pre * a) / self.scale

    def jac(self, p):
        km, f, ft, alpha, a, pre = self.parts(p)
        mod, inv = pre * a, 1.0 / np.maximum(a, 1e-30)
        re = lambda x, y: x.real * y.real + x.imag * y.imag  # noqa: E731
        da_dkm = (1 - alpha) * re(f, self.m) * inv
        if ft is not None:
            da_dkm = da_dkm + alpha * re(ft, self.mt) * inv
        e = np.exp(-p[2] * self.ss / 4)
        j = np.empty((len(self.o), len(p)))
        j[:, 0] = mod
        j[:, 1] = pre * da_dkm * e
        j[:, 2] = pre * da_dkm * km * (-self.ss / 4)
        j[:, 3:3 + self.nu] = mod[:, None] * self.q
        if ft is not None:
            j[:, -1] = pre * (re(ft, ft) - re(f, f)) * 0.5 * inv
        return -j / self.scale


def _full_bins(bins, s2, work, n):
    """Bin index for all n reflections from bins given for the work set only."""
    if len(bins) == n:
        return bins
    edges = np.array([s2[work][bins == b].max() for b in range(bins.max() + 1)])
    return np.minimum(np.searchsorted(edges, s2, side="left"), len(edges) - 1)


def fit_scales(fo, fc, fm, hkl, cell, spacegroup, work, *, bins=None,
               twin=None, start: ScaleResult | None = None) -> ScaleResult:
    """Fit k_overall, k_sol, B_sol, anisotropic U and k_iso(s) on the work set.

    Parameters
    ----------
    fo : ndarray (n,)
        Observed amplitudes.
    fc, fm : ndarray (n,), complex
        F_calc and F_mask.
    hkl : ndarray (n, 3)
    cell, spacegroup : gemmi objects
    work : ndarray (n,), bool
        Reflections the scales are fitted to.
    bins : ndarray (n,) or (n_work,), int, optional
        Resolution bins (default `resolution_bins` of the work set).
    twin : tuple (fc_t, fm_t, alpha0), optional
        F_calc and F_mask (n,) at the twin mates Th and a starting twin fraction. The
        twin fraction α ∈ [0, 0.5] is then refined by least squares together with the
        scales, with |F_model|² = (1−α)|F(h)|² + α|F(Th)|² (`f_model_abs`).
    start : ScaleResult, optional
        Scales of a nearby model (the previous macro cycle of a refinement): one least-
        squares run from them instead of the binned k_mask search and two starting
        points (on 3AY4 0.3 instead of 1.4 s; the same minimum while the model moves
        little between calls). Its binned k_mask is carried over.
    """
    from scipy.optimize import least_squares

    hkl = np.asarray(hkl, np.float64)
    sc = hkl @ np.array(cell.frac.mat.tolist())
    s2 = (sc * sc).sum(1)
    bins = _full_bins(resolution_bins(s2[work]) if bins is None else bins, s2, work, len(fo))
    bk = _bin_kmask(fo, fc, fm, bins, work, twin=twin) if start is None else start.bin_k_mask
    w = work
    basis = u_basis(cell, spacegroup)                            # (r, 3, 3) dU/dp
    nu = len(basis)
    q = -2 * math.pi ** 2 * np.einsum("ni,pij,nj->np", sc[w], basis, sc[w])   # (n, r)
    prob = _ScaleProblem(fo[w], fc[w], fm[w], s2[w], q,
                         None if twin is None else (twin[0][w], twin[1][w]))
    extra = [] if twin is None else [float(np.clip(twin[2], 0.0, 0.5))]
    lo, hi = [-np.inf, 0.0, 0.0] + [-np.inf] * nu, [np.inf, 1.0, 300.0] + [np.inf] * nu
    bounds = (lo + [0.0] * len(extra), hi + [0.5] * len(extra))
    best = None
    starts = _start_points(bk, bins, s2, work) if start is None else [None]
    for st0 in starts:
        if st0 is None:                  # warm start: the given scales, clipped to the bounds
            p0 = np.array([math.log(start.k_overall), start.k_sol, start.b_sol]
                          + list(np.einsum("pij,ij->p", basis, start.u_aniso)) + extra)
            if twin is not None and start.twin_fraction is not None:
                p0[-1] = start.twin_fraction
            p0 = np.clip(p0, np.array(lo + [0.0] * len(extra)) + 1e-9,
                         np.array(hi + [0.5] * len(extra)) - 1e-9)
        else:
            p0 = np.array([0.0, st0[0], st0[1]] + [0.0] * nu + extra)
            a0 = prob.parts(p0)[4]
            p0[0] = math.log(max((prob.o * a0).sum() / max((a0 * a0).sum(), 1e-30), 1e-30))
        # lsmr: no SVD of the (n, 9) Jacobian per step (0.07 s each for 3IO0 here); same
        # minimum (cost equal to 1e-9 relative on 3IO0)
        res = least_squares(prob.resid, p0, jac=prob.jac, bounds=bounds, x_scale="jac",
                            tr_solver="lsmr")
        if best is None or res.cost < best.cost:
            best = res
    p = best.x
    u = np.einsum("p,pij->ij", p[3:3 + nu], basis)
    km = p[1] * np.exp(-p[2] * s2 / 4)
    base = ScaleResult(float(np.exp(p[0])), float(p[1]), float(p[2]), u, np.ones(len(fo)), km,
                       bins, bk, None if twin is None else float(p[-1]))
    tw = None if twin is None else twin[:2]
    base.k_iso = _bin_kiso(fo, f_model_abs(fc, fm, sc, s2, base, tw), bins, work)
    return base


def _start_points(bk, bins, s2, work):
    """Starting (k_sol, B_sol): cctbx's defaults (0.35, 46 Å²) and a fit of
    k_sol·exp(−B_sol s²/4) to the binned k_mask of bins with d > 3 Å (Afonine 2013, step 2).

    The least-squares problem has local minima (k_mask and the overall scale trade off):
    from cctbx's defaults alone, data made with k_sol 0.42, B_sol 60 Å² end at 0.39, 50 Å²
    with R 0.014 (unit test). `fit_scales` refines from both and keeps the lower cost.
    """
    starts = [(0.35, 46.0)]
    nb = len(bk)
    sb = np.array([s2[work & (bins == b)].mean() if np.any(work & (bins == b)) else np.inf
                   for b in range(nb)])
    ok = (bk > 0.01) & (sb < 1 / 9.0)
    if ok.sum() >= 2:
        slope, icpt = np.polyfit(sb[ok], np.log(bk[ok]), 1)
        ks, bs = float(np.exp(icpt)), float(-4 * slope)
        if 0 < ks <= 1 and 0 <= bs <= 300:
            starts.append((ks, bs))
    return starts


def _bin_kiso(fo, fm_abs, bins, work):
    nb = bins.max() + 1
    k = np.ones(nb)
    for b in range(nb):
        sel = work & (bins == b)
        if sel.sum() >= 2:
            k[b] = (fo[sel] * fm_abs[sel]).sum() / max((fm_abs[sel] ** 2).sum(), 1e-30)
    return k[bins]


def r_factor(fo, fmodel_abs, sel, rescale: bool = True) -> float | None:
    """Σ|F_obs − k₁|F_model|| / Σ F_obs over ``sel``; None when ``sel`` is empty.

    ``rescale``: k₁ = Σ F_obs|F_model| / Σ|F_model|² over ``sel`` itself, as
    mmtbx.f_model does for R-work and R-free (``scale_k1_w``/``scale_k1_t``); k₁ ≈ 1
    after scaling on the work set, but not for a small free set (5E5Z: 18 reflections).
    """
    if sel is None or not np.any(sel):
        return None
    fo, fm = fo[sel], fmodel_abs[sel]
    k1 = (fo * fm).sum() / max((fm * fm).sum(), 1e-30) if rescale else 1.0
    return float(np.abs(fo - k1 * fm).sum() / fo.sum())
