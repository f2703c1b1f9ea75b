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


def _s2(shape, cell_matrix, device, dtype):
    """|s|² (Å⁻²) of every rfftn term of a (nz, ny, nx) grid sampling a P1 cell."""
    nz, ny, nx = shape
    hx = torch.arange(nx // 2 + 1, device=device, dtype=dtype)          # rfft axis
    hy = torch.fft.fftfreq(ny, d=1.0 / ny, device=device, dtype=dtype)  # integers
    hz = torch.fft.fftfreq(nz, d=1.0 / nz, device=device, dtype=dtype)
    g = torch.as_tensor(np.linalg.inv(cell_matrix.T @ cell_matrix), device=device, dtype=dtype)
    # indices (z, y, x) → Miller-like integers along the cell axes (x, y, z)
    z, y, x = hz[:, None, None], hy[None, :, None], hx[None, None, :]
    return (g[0, 0] * x * x + g[1, 1] * y * y + g[2, 2] * z * z
            + 2 * (g[0, 1] * x * y + g[0, 2] * x * z + g[1, 2] * y * z))


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
    real = values.dtype if values.dtype in (torch.float32, torch.float64) else torch.float32
    s2 = _s2(shape, cell, values.device, real)
    keep = s2 < 1.0 / float(d_min) ** 2
    factor = torch.where(keep, torch.exp(float(unblur) * s2 / 4.0), torch.zeros_like(s2))
    f = torch.fft.rfftn(values, dim=(0, 1, 2))
    return torch.fft.irfftn(f * factor, s=shape, dim=(0, 1, 2))


def n_terms_kept(shape, frame, d_min: float) -> int:
    """Number of rfftn terms a `fourier_truncate` at ``d_min`` keeps (for logging)."""
    cell = frame.cell_matrix if hasattr(frame, "cell_matrix") else np.diag(
        np.broadcast_to(np.asarray(frame, np.float64), (3,)) * np.array(tuple(shape)[::-1]))
    return int((_s2(tuple(shape), cell, "cpu", torch.float64) < 1.0 / d_min**2).sum())
