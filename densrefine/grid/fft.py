"""Fourier helpers on a box treated as a P1 cell: the FFT-size rule, |s|² of the terms,
phase tables of a separable DFT, spectrum cropping and Fourier resampling.

A grid of (nz, ny, nx) voxels spanning a cell with edge vectors C = (c_x, c_y, c_z)
(columns, Å) has ``rfftn`` terms at Miller-like integers (h, k, l) along the cell axes;
their |s|² = hᵀ G h with the reciprocal metric G = (CᵀC)⁻¹ (Å⁻²), for any cell
(International Tables Vol. B, 1.1.3).
"""
from __future__ import annotations

import numpy as np

from ..types import Grid, GridFrame, UnitCell

FFT_PRIMES = (2, 3, 5)


def fft_size(n: int) -> int:
    """The FFT-size rule of densrefine: the smallest even m ≥ n whose prime factors are 2, 3, 5.

    Used for every grid densrefine sizes itself (boxes around a model, cell grids of
    structure factors, padded boxes of Fourier-truncated model maps). Even sizes keep the
    Nyquist plane of a real FFT; 2·3·5-smooth sizes are fast in pocketfft and cuFFT.

    Examples
    --------
    >>> fft_size(97), fft_size(7), fft_size(67), fft_size(1)
    (100, 8, 72, 2)
    """
    m = max(2, int(n) + (int(n) % 2))
    while True:
        k = m
        for p in FFT_PRIMES:
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 2


def fft_frame(frame):
    """``frame`` grown at its far faces to `fft_size` voxels per axis, periodic.

    For model maps computed by FFT over the box as a P1 cell: atoms near a face wrap into
    the padding instead of onto the opposite face, and the caller crops the padding off.
    """
    shape = tuple(fft_size(int(n)) for n in frame.shape)
    return GridFrame(shape, frame.origin, frame.steps, periodic=True)


def reciprocal_s2(shape, cell_matrix, like=None):
    """|s|² (Å⁻²) of every ``rfftn`` term of a (nz, ny, nx) grid sampling a P1 cell.

    Parameters
    ----------
    shape : tuple of 3 ints
        (nz, ny, nx).
    cell_matrix : ndarray, shape (3, 3)
        Columns: the cell edges (Å) along the grid's x, y, z axes
        (`densrefine.types.GridFrame.cell_matrix`).
    like : torch.Tensor, optional
        Return a tensor with its device and (real) dtype; default a float64 numpy array.

    Returns
    -------
    ndarray or torch.Tensor, shape (nz, ny, nx // 2 + 1)

    Examples
    --------
    >>> s2 = reciprocal_s2((4, 4, 4), np.diag([8.0, 8.0, 8.0]))
    >>> s2.shape, float(s2[0, 0, 1]), float(s2[1, 1, 1])   # (1/8)², 3·(1/8)²
    ((4, 4, 3), 0.015625, 0.046875)
    """
    nz, ny, nx = (int(n) for n in shape)
    g = np.linalg.inv(np.asarray(cell_matrix, np.float64).T @ np.asarray(cell_matrix, np.float64))
    if like is None:
        h = np.fft.rfftfreq(nx) * nx
        k = np.fft.fftfreq(ny) * ny
        l = np.fft.fftfreq(nz) * nz
        z, y, x = np.meshgrid(l, k, h, indexing="ij", sparse=True)
    else:
        import torch

        dev = like.device
        dt = like.dtype if like.dtype in (torch.float32, torch.float64) else torch.float32
        hx = torch.arange(nx // 2 + 1, device=dev, dtype=dt)
        hy = torch.fft.fftfreq(ny, d=1.0 / ny, device=dev, dtype=dt)
        hz = torch.fft.fftfreq(nz, d=1.0 / nz, device=dev, dtype=dt)
        g = torch.as_tensor(g, device=dev, dtype=dt)
        z, y, x = hz[:, None, None], hy[None, :, None], hx[None, None, :]
    return (g[0, 0] * x * x + g[1, 1] * y * y + g[2, 2] * z * z
            + 2 * (g[0, 1] * x * y + g[0, 2] * x * z + g[1, 2] * y * z))


def dft_phases(k, n: int, x=None) -> np.ndarray:
    """e^{−2πi k·x/n} (the ``rfftn`` sign) for integer frequencies ``k`` and grid indices ``x``.

    Parameters
    ----------
    k : array_like of int, shape (m,)
        Frequencies along one axis of an n-point periodic grid.
    n : int
        Points along that axis.
    x : array_like of int, optional
        Grid indices (any integers: they wrap); default 0 … n−1.

    Returns
    -------
    ndarray, shape (m, len(x)), complex128
        k·x is reduced modulo n in integers first, so the phase stays exact for any index.
        Rows of a separable DFT of a box of a periodic grid (one axis at a time).

    Examples
    --------
    >>> bool(np.allclose(dft_phases([1], 4), [[1, -1j, -1, 1j]]))
    True
    >>> bool(np.allclose(dft_phases([3], 4, [-1, 5]), dft_phases([3], 4, [3, 1])))
    True
    """
    x = np.arange(int(n), dtype=np.int64) if x is None else np.asarray(x, np.int64)
    kx = np.mod(np.outer(np.asarray(k, np.int64), x), int(n)).astype(np.float64)
    return np.exp(-2j * np.pi * kx / int(n))


def crop_spectrum(f, shape_zyx):
    """``rfftn`` terms ``f`` of an (nz, ny, nx) grid → those of an (mz, my, mx) grid, m ≤ n.

    Keeps every term with |index| < m/2 along each axis (the new Nyquist terms of even
    m are zero); works on numpy arrays and torch tensors. Scale the inverse transform
    by (mz my mx)/(nz ny nx) to keep values.

    Examples
    --------
    >>> f = np.fft.rfftn(np.random.default_rng(0).normal(size=(8, 8, 8)))
    >>> crop_spectrum(f, (4, 4, 4)).shape
    (4, 4, 3)
    """
    is_torch = not isinstance(f, np.ndarray)
    if is_torch:
        import torch
    out = f
    for ax in (0, 1):
        n, m = f.shape[ax], int(shape_zyx[ax])
        k = (m - 1) // 2
        idx = np.r_[0:k + 1, [0] * (1 - m % 2), n - k:n].astype(np.int64)
        if is_torch:
            out = torch.index_select(out, ax, torch.as_tensor(idx, device=f.device))
        else:
            out = np.take(out, idx, axis=ax)
        if m % 2 == 0:                                    # zero the new Nyquist plane
            sl = [slice(None)] * 3
            sl[ax] = slice(k + 1, k + 2)
            out[tuple(sl)] = 0
    mx = int(shape_zyx[2])
    kx = (mx - 1) // 2
    out = out[:, :, :kx + 1]
    if mx % 2 == 0:
        pad = out[:, :, :1] * 0
        out = (torch.cat if is_torch else np.concatenate)([out, pad], 2)
    return out


def fourier_resample(grid, spacing: float, taper: float):
    """``grid`` on a coarser grid of spacing ≤ ``spacing`` Å, by cropping its spectrum.

    The box is treated as periodic: the outer ``taper`` Å of every face first fall
    to the box mean along a raised cosine so the wrap-around step does not ring, and
    callers crop that rim away afterwards. Keeps every Fourier term below the new
    Nyquist frequency (`crop_spectrum`); voxel [0, 0, 0] keeps its position.
    Orthogonal grids only.

    Parameters
    ----------
    grid : densrefine.Grid
    spacing : float
        Largest voxel size (Å) of the result.
    taper : float
        Width (Å) of the raised-cosine rim.

    Returns
    -------
    Grid
        A P1 grid whose cell is the (same) box, sampled at n_i · v_i / m_i Å with
        m_i = ⌈n_i v_i / spacing⌉ points along axis i.
    """
    import scipy.fft

    v = np.array(grid.voxel_size, float)
    n = np.array(grid.shape_xyz)
    m = np.minimum(n, np.ceil(n * v / spacing - 1e-9).astype(int))
    x = np.array(grid.values, np.float64)
    mean = float(x.mean())
    for ax, (nn, vv) in enumerate(zip(n[::-1], v[::-1]) if taper > 0 else ()):  # z, y, x
        t = np.clip(np.minimum(np.arange(nn), nn - 1 - np.arange(nn)) * vv / taper, 0, 1)
        shape = [1, 1, 1]
        shape[ax] = nn
        x = mean + (x - mean) * (0.5 - 0.5 * np.cos(np.pi * t)).reshape(shape)
    mzyx = tuple(int(k) for k in m[::-1])
    vals = scipy.fft.irfftn(crop_spectrum(scipy.fft.rfftn(x), mzyx), s=mzyx)
    vals *= float(np.prod(m)) / float(np.prod(n))
    box = n * v
    return Grid(vals.astype(np.float32), box / m, grid.origin,
                UnitCell(*box, 90.0, 90.0, 90.0), "P 1", m, np.zeros(3, int), path=grid.path)
