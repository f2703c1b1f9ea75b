"""Structure factors of a small box of a periodic cell grid, with the space-group symmetry.

A live session changes a few atoms at a time. Their density (or the bulk-solvent mask
around them) changes inside a small box of the unit-cell grid, so the change of the
structure factors is the discrete Fourier transform of that box alone:

    ΔF(h) = (V/N) Σ_ops exp(2πi h·t) D(Rᵀh),    D(k) = Σ_{x ∈ box} δρ(x) exp(2πi k·x/n)

with x the absolute grid indices of the box voxels (a box may run past the cell edge:
the exponential is periodic). This is the sum `densrefine.xtal.fcalc.fcalc_tensor`
takes through one FFT of the whole cell, restricted to the voxels that changed, so
adding ΔF to the stored F equals a full recomputation up to rounding (no
interpolation, no direct-summation vs FFT difference).

D is evaluated at every index k the symmetry images Rᵀh of the reflections use by a
pruned, separable DFT: three matrix products (x, then y, then z), the last one only
for the (k_x, k_y) columns that occur. Cost ∝ B_z · n_columns · n_kz for a box of
B_z planes, a few ms for a residue (see benchmarks/live.py).
"""
from __future__ import annotations

import numpy as np

from ..grid import dft_phases
from ..xtal.fcalc import symmetry_images


def phase_columns(cache: dict, key, k, n: int, lo: int, size: int):
    """complex64 columns x = lo … lo+size−1 (wrapped) of the table e^{−2πi k x/n}
    (`densrefine.grid.dft_phases`), cut from a full-period table kept in ``cache[key]``."""
    import torch

    if key not in cache:
        cache[key] = torch.from_numpy(dft_phases(k, n)).to(torch.complex64)
    cols = torch.from_numpy(np.mod(np.arange(lo, lo + size, dtype=np.int64), n))
    return cache[key][:, cols]


class SymmetryIndex:
    """Where each symmetry image Rᵀh of the reflections sits in a compact k layout.

    Parameters
    ----------
    spacegroup : gemmi.SpaceGroup
    hkl : ndarray, shape (n, 3), int
        Reflections (Miller indices in the x, y, z order of the cell axes).

    Attributes
    ----------
    kmax : ndarray, shape (3,), int
        Largest |k| per axis (k_x ≥ 0 by Friedel symmetry).
    columns : ndarray, shape (n_col,), int64
        Flat (k_y + K_y)·(K_x + 1) + k_x of the (k_x, k_y) pairs used.
    index : ndarray, shape (n_ops, n), int64
        Position of D(±Rᵀh) in D's flat (n_kz, n_col) layout.
    conj : ndarray, shape (n_ops, n), bool
        True where F_P1(Rᵀh) = conj of the stored value (k_x ≥ 0, as in `fcalc_tensor`).
    shift : ndarray, shape (n_ops, n), complex128
        exp(2πi h·t) per operator.
    """

    def __init__(self, spacegroup, hkl):
        hkl = np.asarray(hkl, np.int64).reshape(-1, 3)
        k, phase = symmetry_images(spacegroup, hkl)
        self.conj = k[..., 0] >= 0
        kk = np.where(self.conj[..., None], k, -k)
        self.kmax = np.abs(kk).max(axis=(0, 1)) if kk.size else np.zeros(3, np.int64)
        nx = int(self.kmax[0]) + 1
        flat_xy = (kk[..., 1] + self.kmax[1]) * nx + kk[..., 0]
        self.columns, col = np.unique(flat_xy.ravel(), return_inverse=True)
        col = col.reshape(flat_xy.shape)
        self.index = (kk[..., 2] + self.kmax[2]) * len(self.columns) + col
        self.shift = np.exp(1j * phase)
        self.n_ops, self.n = k.shape[0], k.shape[1]
        self._sign = np.where(self.conj, -1.0, 1.0)
        self._map_weights = None
        self._cache = {}
        self._hkl = hkl
        self._spacegroup = spacegroup

    def map_layout(self, f):
        """Map coefficients F(h) (n,) spread over every symmetry image, on the compact layout.

        Each image k = Rᵀh carries F(k) = F(h)·exp(−2πi h·t), counted once per distinct k
        (weight 1/multiplicity) and twice for acentric h (the Friedel mate −k is not in
        the layout: Re[F(k) e^{−2πi k·x}] counts both). The result C satisfies
        ρ(x) = Re Σ C(k) exp(−2πi k·x) / V (`BoxTransform.inverse_box`).

        Parameters
        ----------
        f : ndarray, shape (n,), complex

        Returns
        -------
        ndarray, shape (n_kz · n_col,), complex128
        """
        if self._map_weights is None:
            self._map_weights = self._weights()
        c = np.asarray(f, np.complex128)[None, :] * np.conj(self.shift)
        c = np.where(self.conj, c, np.conj(c)) * self._map_weights
        size = (2 * int(self.kmax[2]) + 1) * len(self.columns)
        idx = self.index.ravel()
        return (np.bincount(idx, c.real.ravel(), size)
                + 1j * np.bincount(idx, c.imag.ravel(), size))

    def map_weight_sum(self):
        """Σ over the images of each reflection of its weight (2 acentric, 1 centric, ×
        the number of distinct images): Σ_h this·|F(h)|² = Σ_k |F(k)|² over the sphere."""
        if self._map_weights is None:
            self._map_weights = self._weights()
        return self._map_weights.sum(0)

    def _weights(self):
        k, _ = symmetry_images(self._spacegroup, self._hkl)
        span = 2 * np.abs(k).max() + 1
        flat = ((k[..., 2] * span + k[..., 1]) * span + k[..., 0])
        key = np.arange(self.n)[None, :] * span ** 3 + flat
        _, inv, counts = np.unique(key.ravel(), return_inverse=True, return_counts=True)
        mult = counts[inv].reshape(key.shape).astype(np.float64)
        centric = self._spacegroup.operations().centric_flag_array(
            self._hkl.astype(np.int32)).astype(bool)
        return np.where(centric, 1.0, 2.0)[None, :] / mult

    def gather(self, d_flat):
        """F_P1 summed over the operators: Σ_ops shift · F_P1(Rᵀh), shape (n,), complex.

        Parameters
        ----------
        d_flat : torch.Tensor or ndarray, shape (n_kz · n_col,), complex
            D of `BoxTransform.dft` (or a sum of them), flattened.

        Returns
        -------
        ndarray, shape (n,), complex128
        """
        import torch

        d = torch.as_tensor(d_flat)
        t = self._tensors(d.dtype)
        g = d[t["index"]]
        g = torch.complex(g.real, g.imag * t["sign"])          # conj where k_x ≥ 0
        return (g * t["shift"]).sum(0).numpy().astype(np.complex128)

    def _tensors(self, dtype):
        import torch

        key = str(dtype)
        if key not in self._cache:
            real = torch.float64 if dtype == torch.complex128 else torch.float32
            self._cache[key] = {"index": torch.from_numpy(self.index),
                                "sign": torch.from_numpy(self._sign).to(real),
                                "shift": torch.from_numpy(self.shift).to(dtype)}
        return self._cache[key]

    def layout_s2(self, frac):
        """|s|² (Å⁻²) of every entry of the compact layout, shape (n_kz · n_col,).

        Parameters
        ----------
        frac : ndarray, shape (3, 3)
            Fractionalisation matrix (gemmi ``cell.frac.mat``): s = kᵀ·frac.
        """
        nx = int(self.kmax[0]) + 1
        kx = self.columns % nx
        ky = self.columns // nx - self.kmax[1]
        kz = np.arange(-self.kmax[2], self.kmax[2] + 1)
        k = np.empty((len(kz), len(self.columns), 3))
        k[..., 0], k[..., 1], k[..., 2] = kx[None, :], ky[None, :], kz[:, None]
        s = k.reshape(-1, 3) @ np.asarray(frac, np.float64)
        return (s * s).sum(1)

class BoxTransform:
    """Pruned DFT of boxes of one periodic grid at the k of a `SymmetryIndex`.

    Parameters
    ----------
    shape : tuple (nz, ny, nx)
        The cell grid.
    sym : SymmetryIndex
    """

    def __init__(self, shape, sym: SymmetryIndex):
        self.shape = tuple(int(n) for n in shape)
        self.sym = sym
        km = sym.kmax
        self.kx = np.arange(0, km[0] + 1)
        self.ky = np.arange(-km[1], km[1] + 1)
        self.kz = np.arange(-km[2], km[2] + 1)
        self._full = {}
        self._columns = None

    @staticmethod
    def _table(k, lo, size, n):
        return dft_phases(k, n, np.arange(lo, lo + size, dtype=np.int64))

    def _table64(self, axis, lo, size):
        """complex64 table e^{−2πi k x/n} (n_k, size) from a cached full-period table."""
        k = (self.kx, self.ky, self.kz)[axis]
        return phase_columns(self._full, axis, k, self.shape[2 - axis], lo, size)

    def dft(self, values, lo):
        """D of a box (the ``rfftn`` sign: Σ v(x) exp(−2πi k·x/n)), flat.

        The products run in complex64 (torch; relative rounding ~1e-7 of the box's own
        structure factors, far below what R resolves).

        Parameters
        ----------
        values : ndarray, shape (bz, by, bx)
            Box values (a change of density or mask).
        lo : sequence of 3 ints
            Absolute (x, y, z) grid index of the box's first voxel (any integer).

        Returns
        -------
        torch.Tensor, shape (n_kz · n_col,), complex64
        """
        import torch

        bz, by, bx = values.shape
        ex = self._table64(0, int(lo[0]), bx).T                     # (bx, n_kx)
        ey = self._table64(1, int(lo[1]), by)                       # (n_ky, by)
        ez = self._table64(2, int(lo[2]), bz)                       # (n_kz, bz)
        v = torch.as_tensor(np.asarray(values, np.float32))
        a = torch.complex(v @ ex.real, v @ ex.imag)                  # (bz, by, n_kx)
        a = torch.matmul(ey, a)                                     # (bz, n_ky, n_kx)
        if self._columns is None:
            self._columns = torch.from_numpy(self.sym.columns)
        a = a.reshape(bz, -1)[:, self._columns]                     # (bz, n_col)
        return (ez @ a).reshape(-1)                                 # (n_kz, n_col)

    def inverse_box(self, coef, lo, size):
        """Σ_k C(k) exp(−2πi k·x/n) at the voxels of a box, for C on the compact layout.

        With C from `SymmetryIndex.map_layout` the real part divided by the cell volume
        is the map (crystallographic convention ρ(x) = (1/V) Σ_h F(h) exp(−2πi h·x)).

        Parameters
        ----------
        coef : ndarray, shape (n_kz · n_col,), complex128
        lo : sequence of 3 ints
            Absolute (x, y, z) index of the first voxel.
        size : sequence of 3 ints
            (bx, by, bz).

        Returns
        -------
        ndarray, shape (bz, by, bx), complex128
        """
        nz, ny, nx = self.shape
        bx, by, bz = (int(s) for s in size)
        ez = self._table(self.kz, lo[2], bz, nz)            # (n_kz, bz)
        ey = self._table(self.ky, lo[1], by, ny)
        ex = self._table(self.kx, lo[0], bx, nx)
        c = coef.reshape(len(self.kz), -1)                  # (n_kz, n_col)
        a = ez.T @ c                                        # (bz, n_col)
        full = np.zeros((bz, len(self.ky) * len(self.kx)), np.complex128)
        full[:, self.sym.columns] = a
        full = full.reshape(bz, len(self.ky), len(self.kx))
        a = np.matmul(ey.T[None], full)                     # (bz, by, n_kx)
        return a @ ex                                       # (bz, by, bx)

    def inverse_box_many(self, coefs, lo, size):
        """`inverse_box` for a stack of coefficient layouts at once (torch, complex64).

        Parameters
        ----------
        coefs : torch.Tensor, shape (m, n_kz · n_col), complex64
        lo, size : sequence of 3 ints
            As in `inverse_box`.

        Returns
        -------
        torch.Tensor, shape (m, bz, by, bx), complex64
        """
        import torch

        bx, by, bz = (int(s) for s in size)
        ez = self._table64(2, int(lo[2]), bz)                       # (n_kz, bz)
        ey = self._table64(1, int(lo[1]), by)                       # (n_ky, by)
        ex = self._table64(0, int(lo[0]), bx)                       # (n_kx, bx)
        m = coefs.shape[0]
        c = coefs.reshape(m, len(self.kz), -1)                      # (m, n_kz, n_col)
        a = torch.matmul(ez.T, c)                                   # (m, bz, n_col)
        full = torch.zeros((m, bz, len(self.ky) * len(self.kx)), dtype=a.dtype)
        if self._columns is None:
            self._columns = torch.from_numpy(self.sym.columns)
        full[:, :, self._columns] = a
        full = full.reshape(m, bz, len(self.ky), len(self.kx))
        a = torch.matmul(ey.T, full)                                # (m, bz, by, n_kx)
        return torch.matmul(a, ex)                                  # (m, bz, by, bx)
