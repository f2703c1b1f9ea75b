"""Correlation coefficients and real-space R between an experimental map and a model map.

Definitions follow Afonine et al. (2018), Acta Cryst. D74, 814–840, as implemented in
cctbx ``mmtbx.maps.correlation.five_cc`` (the reference behind phenix.map_model_cc):

* CC_box: Pearson CC over every voxel of the box.
* CC_mask: Pearson CC over the voxels of the molecular mask (`masks.molecular_mask`,
  bulk-solvent style: van der Waals radii + 1.1 Å probe, 0.9 Å shrink). This is the
  paper's and cctbx's definition; "voxels within an atom radius of the model" (the
  ARCHITECTURE's wording) is what the per-chain / per-residue CCs use
  (`densrefine.scoring.residues`).
* CC_volume: Pearson CC over the N highest-valued voxels of the model map, N = number of
  molecular-mask voxels.
* CC_peaks: Pearson CC over the union of the N highest voxels of each map.

For the "N highest" selections cctbx keeps every voxel ``>= sorted_desc[N]`` (the
(N+1)-th highest value), ties included; `top_selection` does the same, so a map with a
flat (e.g. zeroed) region can select many more than N voxels.

All numpy functions accumulate in float64. `cc_torch` is the differentiable variant
used as a refinement target (−CC).
"""
from __future__ import annotations

import numpy as np


def pearson(a, b) -> float:
    """Pearson correlation coefficient of two equally shaped arrays (float64 sums).

    Returns NaN when either array is constant.

    Examples
    --------
    >>> pearson([1.0, 2.0, 3.0], [2.0, 4.0, 6.5]) > 0.99
    True
    """
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if a.size < 2:
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def cc_box(emap, mmap) -> float:
    """CC over the whole box. ``emap``, ``mmap``: arrays of the same shape (nz, ny, nx)."""
    return pearson(emap, mmap)


def cc_mask(emap, mmap, mask) -> float:
    """CC over the voxels where the boolean ``mask`` (same shape as the maps) is True."""
    mask = np.asarray(mask, bool)
    return pearson(np.asarray(emap)[mask], np.asarray(mmap)[mask])


def top_selection(values, n: int) -> np.ndarray:
    """Boolean mask of the voxels with ``values >= sorted_desc[n]`` (cctbx's rule).

    Parameters
    ----------
    values : ndarray
        Map values (any shape).
    n : int
        Number of highest voxels wanted; ties at the threshold are all kept. With
        ``n >= values.size`` every voxel is selected.
    """
    flat = np.asarray(values).ravel()
    if n >= flat.size:
        return np.ones(np.shape(values), bool)
    return np.asarray(values) >= _nth_largest(flat, int(n))


def _nth_largest(flat: np.ndarray, n: int):
    """``np.sort(flat)[::-1][n]`` (0-based), exactly, without sorting all of ``flat``.

    ``np.partition`` is slow on maps with large flat (e.g. zeroed) regions. Instead, a
    deterministic scattered sample (multiplicative hashing of the index) gives a lower
    bound expected to keep ~1.25 (n + 1) values, and only those are sorted. Whenever
    the bound keeps too few (or the sample holds NaN) the whole array is sorted, so the
    result never depends on the sample, only the time does.
    """
    size = flat.size
    m = min(size, 16384)
    sample = np.sort(flat[np.arange(m, dtype=np.int64) * 2654435761 % size])  # prime step
    rank = int(1.25 * (n + 1) * m / size) + 64  # sampling s.d. ~ sqrt(rank), margin >> that
    if rank < m:
        cand = flat[~(flat < sample[m - 1 - rank])]  # NaN kept, as np.sort keeps it last
        if cand.size > n:
            return np.sort(cand)[cand.size - 1 - n]
    return np.sort(flat)[size - 1 - n]


def cc_volume(emap, mmap, n: int) -> float:
    """CC over the ``n`` highest voxels of the model map ``mmap`` (ties included)."""
    sel = top_selection(mmap, n)
    return pearson(np.asarray(emap)[sel], np.asarray(mmap)[sel])


def cc_peaks(emap, mmap, n: int) -> float:
    """CC over the union of the ``n`` highest voxels of each map (ties included)."""
    sel = top_selection(emap, n) | top_selection(mmap, n)
    return pearson(np.asarray(emap)[sel], np.asarray(mmap)[sel])


def rsr(emap, mmap, mask) -> float:
    """Real-space R factor over a mask (Jones et al. 1991, Acta Cryst. A47, 110–119).

    Exactly: inside the mask each map has its mean (over the mask) subtracted,
    ``o = ρo − <ρo>``, ``c = ρc − <ρc>``; the model map is put on the map's scale with
    the least-squares factor ``k = Σ o·c / Σ c²``; then
    ``RSR = Σ |o − k·c| / Σ |o + k·c|``. RSR is 0 for a perfect (or linearly
    rescaled/offset) match and about 1 for uncorrelated maps. NaN for an empty mask or
    a flat model map.
    """
    mask = np.asarray(mask, bool)
    o = np.asarray(emap, np.float64)[mask]
    c = np.asarray(mmap, np.float64)[mask]
    if o.size == 0:
        return float("nan")
    o = o - o.mean()
    c = c - c.mean()
    cc2 = (c * c).sum()
    if cc2 <= 0:
        return float("nan")
    k = (o * c).sum() / cc2
    den = np.abs(o + k * c).sum()
    return float(np.abs(o - k * c).sum() / den) if den > 0 else float("nan")


def cc_torch(a, b, mask=None, eps: float = 1e-12):
    """Differentiable Pearson CC of two tensors over a mask (refinement target −CC).

    Parameters
    ----------
    a, b : torch.Tensor, same shape (e.g. (nz, ny, nx))
        Experimental and model map; gradients flow through both.
    mask : torch.Tensor or ndarray, optional
        Boolean mask (voxels used) or non-negative float weights of the same shape;
        None uses every voxel. Moved to ``a``'s device; float weights take ``a``'s dtype.
    eps : float
        Added to the denominator to keep the gradient finite for flat maps.

    Returns
    -------
    torch.Tensor
        0-d tensor, dtype and device of ``a``.

    Examples
    --------
    >>> import torch
    >>> x = torch.linspace(0, 1, 10, dtype=torch.float64, requires_grad=True)
    >>> cc = cc_torch(x, 2 * x + 1)
    >>> round(cc.item(), 6)
    1.0
    >>> cc.backward()
    """
    import torch

    if mask is None:
        w = torch.ones_like(a)
    else:
        w = torch.as_tensor(mask, device=a.device)
        w = w.to(a.dtype)
    wsum = w.sum()
    ma = (w * a).sum() / wsum
    mb = (w * b).sum() / wsum
    da = a - ma
    db = b - mb
    num = (w * da * db).sum()
    den = torch.sqrt((w * da * da).sum() * (w * db * db).sum() + eps)
    return num / den
