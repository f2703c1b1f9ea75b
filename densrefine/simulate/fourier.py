"""Resolution by Fourier truncation (phenix/cctbx-style model maps) and blur rules.

``fourier_truncate`` treats the grid as one P1 unit cell (as cctbx
``map_model_cc`` and gemmi do for a map box), takes its FFT, multiplies by
exp(+blur s²/4) to undo the numerical blur used when splatting, zeroes every term
with d ≤ d_min (keeps s < 1/d_min strictly, as cctbx keeps d_spacings > d_min) and
transforms back. Everything is torch, hence differentiable.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..grid import reciprocal_s2

REFMAC_RATE = 1.1
"""gemmi/Refmac rule: blur = 8π²/1.1 · spacing² − B_min (``set_refmac_compatible_blur``)."""


def default_blur(d_min: float) -> float:
    """Gaussian blur B (Å²) giving a map "at resolution d" in real space: B = 4 d².

    4 d² = 8π² (0.2251 d)², i.e. a Gaussian of σ = d / (π √2) ≈ 0.225 d, the default
    of ChimeraX ``molmap`` (sigmaFactor 1/(π√2)) and TEMPy.

    Examples
    --------
    >>> default_blur(3.0)
    36.0
    """
    return 4.0 * float(d_min) ** 2


def refmac_blur(b_min: float, spacing: float) -> float:
    """gemmi's ``set_refmac_compatible_blur``: 8π²/1.1 · spacing² − B_min, at least 0.

    Parameters
    ----------
    b_min : float
        Smallest atomic B in the model (Å²).
    spacing : float
        Grid spacing (Å); the coarsest axis of the grid being filled (gemmi uses
        d_min / 3 when d_min is set, the finest grid spacing otherwise).

    Examples
    --------
    >>> round(refmac_blur(20.0, 1.0), 2)
    51.78
    """
    return max(0.0, 8.0 * math.pi**2 / REFMAC_RATE * float(spacing) ** 2 - float(b_min))


def fourier_truncate(values, frame, d_min: float, unblur: float = 0.0):
    """Band-limit a map at ``d_min`` and undo a Gaussian blur, treating the box as a P1 cell.

    Parameters
    ----------
    values : torch.Tensor, shape (nz, ny, nx)
        Map on a grid that samples a whole (P1) cell.
    frame : GridFrame or array_like of 3 floats
        The grid's frame, or the voxel size (vx, vy, vz) in Å of an orthogonal grid.
    d_min : float
        Resolution (Å): terms with d ≤ d_min (s ≥ 1/d_min) are zeroed.
    unblur : float
        B (Å²) to remove: kept terms are multiplied by exp(+unblur s²/4).

    Returns
    -------
    torch.Tensor, shape (nz, ny, nx)
        Same dtype and device; differentiable w.r.t. ``values``.

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(16, 16, 16, dtype=torch.float64); x[8, 8, 8] = 1.0
    >>> y = fourier_truncate(x, (1.0, 1.0, 1.0), d_min=4.0)
    >>> round(float(y.sum()), 6), bool(y.max() < 1)
    (1.0, True)
    """
    shape = tuple(values.shape)
    if hasattr(frame, "cell_matrix"):
        cell = frame.cell_matrix
    else:
        cell = np.diag(np.broadcast_to(np.asarray(frame, np.float64), (3,)) * np.array(shape[::-1]))
    s2 = reciprocal_s2(shape, cell, like=values)
    keep = s2 < 1.0 / float(d_min) ** 2
    factor = torch.where(keep, torch.exp(float(unblur) * s2 / 4.0), torch.zeros_like(s2))
    f = torch.fft.rfftn(values, dim=(0, 1, 2))
    return torch.fft.irfftn(f * factor, s=shape, dim=(0, 1, 2))


def fourier_filter(values, frame, kernel):
    """Multiply the Fourier terms of a map by ``kernel(|s|²)``, the box taken as a P1 cell.

    Parameters
    ----------
    values : torch.Tensor, shape (nz, ny, nx)
    frame : GridFrame
        The grid's frame (its ``cell_matrix`` is the P1 cell).
    kernel : callable
        |s|² (Å⁻², tensor) → multiplier (tensor of the same shape), e.g.
        `densrefine.density.terms.ScreenedCoulomb.kernel`.

    Returns
    -------
    torch.Tensor, shape (nz, ny, nx)
        Differentiable w.r.t. ``values`` (a linear map).

    Examples
    --------
    >>> import torch
    >>> from densrefine.grid import GridFrame
    >>> x = torch.rand(8, 8, 8, dtype=torch.float64)
    >>> y = fourier_filter(x, GridFrame.box((8, 8, 8), 1.0), lambda s2: 0 * s2 + 2.0)
    >>> bool(torch.allclose(y, 2 * x))
    True
    """
    shape = tuple(values.shape)
    s2 = reciprocal_s2(shape, frame.cell_matrix, like=values)
    return torch.fft.irfftn(torch.fft.rfftn(values, dim=(0, 1, 2)) * kernel(s2), s=shape,
                            dim=(0, 1, 2))


def n_terms_kept(shape, frame, d_min: float) -> int:
    """Number of rfftn terms a `fourier_truncate` at ``d_min`` keeps (for logging)."""
    cell = frame.cell_matrix if hasattr(frame, "cell_matrix") else np.diag(
        np.broadcast_to(np.asarray(frame, np.float64), (3,)) * np.array(tuple(shape)[::-1]))
    return int((reciprocal_s2(tuple(shape), cell) < 1.0 / d_min**2).sum())
