"""Map–model Fourier shell correlation over the whole (unmasked) box.

``FSC(shell) = Re Σ F1·F2* / sqrt(Σ|F1|² · Σ|F2|²)`` over the Fourier coefficients of
the two maps (the box as a P1 cell) whose |s| = 1/d falls in the shell
(van Heel & Schatz 2005, J. Struct. Biol. 151, 250; map–model FSC as in Afonine et al.
2018, Acta Cryst. D74, 814). No mask is applied (a soft mask would raise the values;
the report says "unmasked"). F(0,0,0) is left out. Shells have a constant width w in s
equal to the coarsest reciprocal-grid step, 1/(shortest box edge); shell i (i >= 1) is
centred on s = i·w and spans [(i − ½)w, (i + ½)w) (shell 1 from s = 0), up to the
Nyquist limit of the coarsest axis, 1/(2·largest voxel). Each coefficient of the
full (Hermitian) spectrum counts once: the half spectrum from ``rfftn`` is weighted 2
except its l = 0 and l = n/2 planes.
"""
from __future__ import annotations

import numpy as np

from ..grid import box_cell, reciprocal_s2
from ..types import Grid


def fsc_curve(map1, map2, grid: Grid) -> list[dict]:
    """FSC between two maps on the box of ``grid``.

    Parameters
    ----------
    map1, map2 : ndarray, shape grid.shape (nz, ny, nx)
        The two maps (e.g. experimental and model map).
    grid : Grid
        Frame of the maps (voxel size, cell).

    Returns
    -------
    list of dict
        One per non-empty shell, low to high resolution: ``d`` (Å, 1/s at the shell
        centre), ``d_min``/``d_max`` (Å, shell edges; ``d_max`` None for the first
        shell), ``fsc`` (NaN when a map has no power in the shell, e.g. beyond a model
        map's resolution cut-off) and ``n`` (Fourier coefficients in the full shell).
    """
    # single-precision FFTs (half the memory of large boxes); shell sums in float64
    f1 = np.fft.rfftn(np.asarray(map1, np.float32))
    f2 = np.fft.rfftn(np.asarray(map2, np.float32))
    s = np.sqrt(reciprocal_s2(grid.shape, grid.frame.cell_matrix))
    nx = grid.shape[2]
    w = np.full(f1.shape[2], 2.0)
    w[0] = 1.0
    if nx % 2 == 0:
        w[-1] = 1.0
    w = np.broadcast_to(w, f1.shape)
    cell = box_cell(grid)
    edges = np.array([cell.a, cell.b, cell.c])
    width = 1.0 / edges.min()
    s_nyq = 0.5 / (edges / np.array(grid.shape_xyz)).max()
    n_shells = int(np.floor(s_nyq / width + 1e-3))  # tolerate header rounding of the cell
    # shell i is centred on i·width; coefficients on a shell edge (e.g. s/w = 2.5 for a
    # 5:6 box) go up, with a 1e-4 margin so header rounding of the cell (1e-7) cannot
    # move them between shells; shell 1 starts at s = 0
    shell = np.maximum(np.floor(s / width + 0.5 + 1e-4), 1).astype(np.int64).ravel()
    use = (shell <= n_shells) & (s.ravel() > 0)
    sh, ww = shell[use], w.ravel()[use]
    a, b = f1.ravel()[use], f2.ravel()[use]
    a, b = a.astype(np.complex128), b.astype(np.complex128)
    num = np.bincount(sh, ww * (a * b.conj()).real, minlength=n_shells + 1)
    p1 = np.bincount(sh, ww * np.abs(a) ** 2, minlength=n_shells + 1)
    p2 = np.bincount(sh, ww * np.abs(b) ** 2, minlength=n_shells + 1)
    cnt = np.bincount(sh, ww, minlength=n_shells + 1)
    tiny = 1e-12 * max(p1.max(initial=0.0), 1e-300), 1e-12 * max(p2.max(initial=0.0), 1e-300)
    out = []
    for i in range(1, n_shells + 1):
        if cnt[i] == 0:
            continue
        ok = p1[i] > tiny[0] and p2[i] > tiny[1]
        fsc = num[i] / np.sqrt(p1[i] * p2[i]) if ok else float("nan")
        out.append({"d": float(1.0 / (i * width)),
                    "d_max": float(1.0 / ((i - 0.5) * width)) if i > 1 else None,
                    "d_min": float(1.0 / ((i + 0.5) * width)), "fsc": float(fsc),
                    "n": int(round(cnt[i]))})
    return out


def d_at_fsc(curve: list[dict], threshold: float = 0.5) -> float | None:
    """Resolution (Å) where the FSC first drops below ``threshold``.

    Walks the shells from low to high resolution; at the first shell whose FSC is
    below the threshold, interpolates linearly in s = 1/d between it and the previous
    shell (shell centres) and returns 1/s. Leading shells with undefined FSC are
    skipped. Returns None when the curve never drops below the threshold before it
    ends (or before a shell with undefined FSC, e.g. beyond a model map's d_min), and
    the first valid shell's d when that shell is already below.
    """
    prev = None
    for sh in curve:
        f = sh["fsc"]
        if f is None or not np.isfinite(f):
            if prev is None:
                continue
            return None
        if f < threshold:
            if prev is None:
                return float(sh["d"])
            s0, s1 = 1.0 / prev["d"], 1.0 / sh["d"]
            t = (prev["fsc"] - threshold) / (prev["fsc"] - f)
            return float(1.0 / (s0 + t * (s1 - s0)))
        prev = sh
    return None
