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
