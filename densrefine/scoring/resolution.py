"""Resolution of a cryo-EM map estimated from the map and a model in it (d_model).

d_model (Afonine et al. 2018, Acta Cryst. D74, 814, section 2.3; phenix.mtriage) is the
resolution cut-off d at which the model map best correlates with the experimental map:

    CC(d) = Σ_{|s| < 1/d} Re(F_map F_model*) / sqrt(Σ_all |F_map|² · Σ_{|s| < 1/d} |F_model|²)

with F the Fourier coefficients of the two maps over the box (a P1 cell), F(000) left
out, the experimental map *not* filtered and the model map computed to the Nyquist
limit of the map's sampling and cut sharply at d. Both maps are multiplied by a soft
molecular mask (cctbx's molecular mask, `masks.molecular_mask`, blurred by a Gaussian of
σ = 3 Å) so that noise and neighbouring density far from the model do not enter. The
mask's edge spreads the map's spectrum; with σ = 1 Å a 13-residue peptide in a 4 Å map
read 3.57 Å, with σ = 3 Å 4.03 Å, while the real maps below moved by ≤ 0.09 Å.
All partial sums come from one sort of the coefficients by |s|, so the whole scan costs
two FFTs.

Measured (``tests/regression/test_resolution_real.py``): the four shared cryo-EM maps
give 3.24, 3.77, 2.98 and 3.03 Å for nominal 3.2, 3.2, 3.2 and 2.9 Å (EMD-3488, 21457,
2566, 11007); with σ = 1 Å, simulated 5NI1 maps at 2.5 / 4 / 6 / 8 Å with 30 % noise gave
2.50 / 3.99 / 6.00 / 7.70 Å, and a uniform B of 0 to 100 Å² on 5NI1 moved the EMD-3488
estimate from 3.41 to 3.08 Å, so the model's B-factors matter little.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import input_error
from ..grid import reciprocal_s2
from ..types import Grid
from .masks import molecular_mask

log = logging.getLogger("densrefine")

D_MAX_SCAN = 15.0
"""Coarsest d (Å) the scan considers; coarser maps need an explicit -d."""
CC_RELIABLE = 0.3
"""Below this peak CC the model does not sit in the map well enough to estimate d."""
MASK_SOFTNESS = 3.0
"""σ (Å) of the Gaussian that softens the molecular mask's edge."""


@dataclass(frozen=True)
class ResolutionEstimate:
    """Result of `estimate_resolution`.

    Attributes
    ----------
    d_model : float
        Estimated resolution, Å.
    cc_max : float
        Masked model–map CC at ``d_model``.
    d_nyquist : float
        Finest d the map's sampling holds (2 × largest voxel edge), Å.
    at_limit : bool
        True when the maximum sits at the Nyquist limit (the map may hold finer detail
        than its sampling shows; d_model is then an upper bound).
    method : str
    seconds : float
    """

    d_model: float
    cc_max: float
    d_nyquist: float
    at_limit: bool
    method: str
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def cc_vs_resolution(emap_values, model_values, grid: Grid):
    """Masked-map CC(d) of the sharp-cut model map against the whole map.

    Parameters
    ----------
    emap_values, model_values : ndarray, shape grid.shape
        Experimental and model maps, already masked (same frame).
    grid : Grid

    Returns
    -------
    s : ndarray, shape (M,)
        |s| = 1/d (Å⁻¹) of the coefficients, ascending (F000 excluded).
    cc : ndarray, shape (M,)
        CC of the model map cut at |s| ≤ s[i] with the full map.
    """
    fa = np.fft.rfftn(np.asarray(emap_values, np.float32))
    fb = np.fft.rfftn(np.asarray(model_values, np.float32))
    nx = grid.shape[2]
    w = np.full(fa.shape[2], 2.0)
    w[0] = 1.0
    if nx % 2 == 0:
        w[-1] = 1.0
    w = np.broadcast_to(w, fa.shape).ravel()
    s = np.sqrt(reciprocal_s2(grid.shape, grid.frame.cell_matrix)).ravel()
    order = np.argsort(s, kind="stable")[1:]  # drop F(000)
    fa, fb, w, s = fa.ravel()[order], fb.ravel()[order], w[order], s[order]
    cross = np.cumsum(w * (fa * fb.conj()).real.astype(np.float64))
    pb = np.cumsum(w * (np.abs(fb) ** 2).astype(np.float64))
    pa = float(np.sum(w * (np.abs(fa) ** 2).astype(np.float64)))
    cc = cross / np.sqrt(np.maximum(pa * pb, 1e-300))
    return s, cc


MODEL_MAP_CUTOFF = 1e-3
"""Density level (table units) bounding each atom's box in the model map of the estimate:
a 0.1 %-level truncation moves the CC curve far less than its own noise, and the
simulation runs ~3x faster than at gemmi's 1e-5 (benchmarks/RESULTS.md)."""


def estimate_resolution(model, emap: Grid, *, table: str = "electron", device="cpu",
                        d_max: float = D_MAX_SCAN) -> ResolutionEstimate:
    """Estimate a map's resolution as d_model (see module docstring).

    Parameters
    ----------
    model : densrefine.Model
        Model placed in the map (Å, Å²); its B-factors are used as they are.
    emap : Grid
        Experimental map.
    table : {"electron", "xray"}
        Scattering table of the model map.
    device : str or torch.device
        Device of the model-map simulation.
    d_max : float
        Coarsest d considered, Å.

    Returns
    -------
    ResolutionEstimate

    Raises
    ------
    InputError
        The model does not correlate with the map (peak CC < `CC_RELIABLE`), so no
        estimate can be trusted; the message asks for -d.
    """
    from scipy import ndimage

    from ..simulate import simulate

    t0 = time.perf_counter()
    voxel = np.asarray(emap.voxel_size, float)
    d_nyq = 2.0 * float(voxel.max())
    sim = simulate(model, like=emap, resolution=d_nyq * 1.0001, table=table,
                   method="fourier", device=device, cutoff=MODEL_MAP_CUTOFF)
    mmap = np.asarray(getattr(sim, "values", sim), np.float32)
    mask = molecular_mask(model.atoms.xyz, model.atoms.element, emap)
    if not mask.any():
        raise input_error(model.path, "no map voxel lies in the model's molecular mask",
                          "check that the model sits inside the map, or give -d")
    soft = ndimage.gaussian_filter(mask.astype(np.float32), MASK_SOFTNESS / voxel[::-1])
    ev = np.asarray(emap.values, np.float32)
    a = (ev - ev[mask].mean()) * soft
    b = (mmap - mmap[mask].mean()) * soft
    s, cc = cc_vs_resolution(a, b, emap)
    scan = (s >= 1.0 / d_max) & (s <= 1.0 / d_nyq)
    if not scan.any():
        raise input_error(emap.path, f"the map box is too small to estimate a resolution "
                          f"between {d_nyq:.3g} and {d_max:.3g} Å", "give -d/--resolution")
    i = int(np.flatnonzero(scan)[np.argmax(cc[scan])])
    d, c = float(1.0 / s[i]), float(cc[i])
    if not c >= CC_RELIABLE:
        raise input_error(model.path, f"cannot estimate the map resolution: the model "
                          f"correlates poorly with the map {emap.path or ''} (best masked "
                          f"CC {c:.2f} at {d:.3g} Å)",
                          "give the resolution with -d/--resolution, or fit the model into "
                          "the map first")
    at_limit = bool(d < d_nyq * 1.02)
    est = ResolutionEstimate(d, c, d_nyq, at_limit, "d_model (Afonine et al. 2018): "
                             "maximum of the masked model-map CC over the model map's "
                             "resolution cut-off", time.perf_counter() - t0)
    log.info("Resolution estimate: d_model = %.3g Å (masked model-map CC %.3f; scanned "
             "%.3g-%.3g Å, %s table%s) in %.2f s", d, c, d_nyq, d_max, table,
             "; at the map's Nyquist limit, finer detail may be lost to the sampling"
             if at_limit else "", est.seconds)
    return est


LOCAL_WINDOW = 5.0
"""σ (Å) of the Gaussian window of the local model–map correlation (`local_resolution`)."""
LOCAL_STEPS = (1.0, 1.12, 1.25, 1.4, 1.6, 1.8, 2.0, 2.3, 2.6, 3.0)
"""Resolutions tried by `local_resolution`, as multiples of the stated d."""


@dataclass(frozen=True)
class LocalResolution:
    """Result of `local_resolution`.

    Attributes
    ----------
    d_atom : ndarray, shape (N,)
        Local resolution (Å) at each atom, ≥ the stated d (NaN outside the map).
    levels : ndarray, shape (L,)
        Resolutions tried (Å).
    cc : ndarray, shape (L, N)
        Local model–map CC at each level and atom.
    window : float
        Å, σ of the Gaussian window.
    seconds : float
    """

    d_atom: np.ndarray
    levels: np.ndarray
    cc: np.ndarray
    window: float
    seconds: float

    def summary(self) -> dict:
        """Percentiles (10, 25, 50, 75, 90) of ``d_atom`` (Å) and the window, JSON-ready."""
        ok = np.isfinite(self.d_atom)
        q = np.percentile(self.d_atom[ok], [10, 25, 50, 75, 90]) if ok.any() else [None] * 5
        return {"percentiles_10_25_50_75_90": [None if v is None else round(float(v), 2)
                                               for v in q],
                "levels": [round(float(v), 2) for v in self.levels], "window": self.window,
                "seconds": round(self.seconds, 2)}


def local_resolution(model, emap: Grid, d: float, *, window: float = LOCAL_WINDOW,
                     steps=LOCAL_STEPS, table: str = "electron",
                     device="cpu") -> LocalResolution:
    """Resolution the map supports around each atom: a local d_model.

    For each trial resolution d_k (``steps`` × ``d``), the model map sharply cut at d_k
    (one model map to the Nyquist limit, cut in Fourier space) is correlated with the map
    over a Gaussian window of σ ``window`` Å around every voxel (local means, variances
    and covariance by Gaussian smoothing, in Fourier space on a grid cropped to the finest
    level); each atom takes the d_k whose local CC at its position is highest — the local analogue of d_model (Afonine et al. 2018, Acta Cryst.
    D74, 814): detail the map does not hold lowers the CC. A flexible domain, a segment
    blurred by motion or a partial occupancy then reads coarser than the stated d.

    Parameters
    ----------
    model : densrefine.Model
        Model placed in the map.
    emap : Grid
    d : float
        Stated resolution (Å); the estimate is never finer.
    window : float
        σ of the correlation window (Å).
    steps : sequence of float
        Trial resolutions as multiples of ``d`` (those finer than the map's Nyquist
        limit are dropped).
    table, device
        Model map (`densrefine.simulate.simulate`).

    Returns
    -------
    LocalResolution

    Examples
    --------
    >>> from densrefine.build import ideal_peptide, with_cell_box   # doctest: +SKIP
    >>> lr = local_resolution(model, emap, 3.2)                      # doctest: +SKIP
    >>> lr.d_atom.shape == (len(model),)                             # doctest: +SKIP
    True
    """
    import torch
    from scipy import ndimage

    from ..grid import crop_spectrum, sub_box
    from ..simulate import simulate

    t0 = time.perf_counter()
    xyz = np.asarray(model.atoms.xyz, np.float64)
    box, _ = sub_box(emap, xyz, 3.0 * window + 2.0)
    voxel = np.asarray(box.voxel_size, float)
    d_nyq = 2.0 * float(voxel.max())
    levels = np.array([d * k for k in steps if d * k >= d_nyq * 1.0001])
    if not len(levels):
        levels = np.array([d_nyq * 1.0001])
    mmap = simulate(model, like=box, resolution=d_nyq * 1.0001, table=table,
                    method="fourier", device=device, cutoff=MODEL_MAP_CUTOFF).values
    # everything at or beyond the finest level fits a grid of levels[0]/2.2 spacing: crop
    # both spectra there (orthogonal boxes), then all the windowed moments by FFT on it
    n = np.array(box.shape[::-1])
    small = np.minimum(n, np.ceil(n * voxel / (levels[0] / 2.2)).astype(int)) \
        if box.is_orthogonal else n
    shape = tuple(int(v) for v in small[::-1])
    fe = torch.fft.rfftn(torch.tensor(np.asarray(box.values, np.float32)))   # a copy: read-only
    fm = torch.fft.rfftn(torch.tensor(np.asarray(mmap, np.float32)))
    if shape != tuple(box.shape):
        fe, fm = crop_spectrum(fe, shape), crop_spectrum(fm, shape)
    cell = box.frame.cell_matrix
    s2 = torch.as_tensor(reciprocal_s2(shape, cell), dtype=torch.float32)
    window_ft = torch.exp(-2.0 * np.pi ** 2 * window ** 2 * s2)   # Gaussian of σ = window

    def real(f):
        return torch.fft.irfftn(f, s=shape)

    def smooth(x):
        return real(torch.fft.rfftn(x) * window_ft)

    e = real(fe)
    ge = real(fe * window_ft)
    vee = smooth(e * e) - ge * ge
    idx = (box.xyz_to_index(xyz) * (small / n))[:, ::-1].T
    cc = np.empty((len(levels), len(xyz)))
    for k, dk in enumerate(levels):
        fk = fm * (s2 < 1.0 / dk ** 2)
        mk, gm = real(fk), real(fk * window_ft)
        c = (smooth(e * mk) - ge * gm) / torch.sqrt(torch.clamp(vee * (smooth(mk * mk) - gm * gm),
                                                                min=1e-30))
        cc[k] = ndimage.map_coordinates(c.numpy(), idx, order=1, mode="nearest")
    d_atom = np.maximum(levels[np.argmax(cc, axis=0)], d)
    outside = np.any((idx < 0) | (idx > np.array(shape)[:, None] - 1), axis=0)
    d_atom[outside] = np.nan
    res = LocalResolution(d_atom, levels, cc, float(window), time.perf_counter() - t0)
    q = res.summary()["percentiles_10_25_50_75_90"]
    log.info("Local resolution (local d_model: model-map CC in a %.3g Å Gaussian window over "
             "%d levels %.3g-%.3g Å, on a %d×%d×%d grid): atoms at %s Å (10/25/50/75/90 %%) "
             "in %.2f s", window, len(levels), levels[0], levels[-1], *small,
             " / ".join(f"{v:.2f}" for v in q if v is not None), res.seconds)
    return res
