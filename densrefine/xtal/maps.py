"""Maps from reflection data: σA-weighted 2mFo−DFc / mFo−DFc, and a P1 box for ``fit``.

σA (Read 1986, Acta Cryst. A42, 140; Srinivasan 1966) is estimated per resolution bin by
maximising the likelihood of the normalised observed amplitudes E_o given the
normalised model amplitudes E_c (acentric and centric distributions), with
Σ = ⟨F²/ε⟩ per bin (ε: the epsilon factor, gemmi ``GroupOps.epsilon_factor_array``),
from the work reflections only; free reflections get their expectation D·|F_model| in
2mFo−DFc and 0 in mFo−DFc, so no free F_obs enters a map (as phenix and servalcat do).
Then, with X = 2σA E_o E_c / (1 − σA²):

* figure of merit m = I₁(X)/I₀(X) (acentric), tanh(X/2) (centric);
* D = σA √(Σ_o/Σ_c), so that D·F_model is on the scale of F_obs;
* 2mFo−DFc (centric: mFo) and mFo−DFc with the phases of F_model (the scaled model
  with bulk solvent, `densrefine.xtal.api.FModel`). Reflections missing from the data
  are not filled in. σA and the bin scales come from the work set; free reflections enter
  as D·F_model (2mFo−DFc) and 0 (mFo−DFc), so R-free stays free of the refinement map.

Maps over the unit cell come from gemmi (``Mtz.transform_f_phi_to_map``, which applies
the space-group symmetry); `densrefine.grid.box_map` interpolates them (tricubic) onto
an orthogonal P1 box around the model with the Cartesian frame of the model, the form `fit` takes.
"""
from __future__ import annotations

import logging
import math

import numpy as np

from ..errors import InputError
from ..grid import box_map
from ..io.reflections import read_map_coefficients
from .api import FModel, prepare

log = logging.getLogger("densrefine")


def _loglik(sa, eo, ec, centric):
    from scipy.special import i0e

    v = 1.0 - sa * sa
    x = 2.0 * sa * eo * ec / v
    acen = np.log(2 * eo / v + 1e-300) - (eo * eo + sa * sa * ec * ec) / v + np.log(i0e(x)) + x
    lc = np.logaddexp(x / 2, -x / 2) - math.log(2.0)          # log cosh(X/2)
    cen = 0.5 * np.log(2 / (math.pi * v)) - (eo * eo + sa * sa * ec * ec) / (2 * v) + lc
    return np.where(centric, cen, acen).sum()


def sigmaa(fo, fc_abs, hkl, spacegroup, bins, work=None):
    """Per-reflection σA, m, D (see module docstring) from bins of reflections.

    ``work`` (bool, n): Σ_o, Σ_c and σA of each bin are estimated from these reflections
    only (the work set: the free F_obs must not shape the maps refinement reads) and
    applied to all.

    Parameters
    ----------
    fo, fc_abs : ndarray (n,)
        Observed and model amplitudes (any relative scale).
    hkl : ndarray (n, 3)
    spacegroup : gemmi.SpaceGroup
    bins : ndarray (n,), int
        Resolution bin of each reflection.
    work : ndarray (n,), bool, optional
        Reflections σA and the bin scales are estimated from (the work set: free
        reflections must not shape the model's map); default all.

    Returns
    -------
    sa, m, d : ndarray (n,)
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import i0e, i1e

    ops = spacegroup.operations()
    h32 = np.asarray(hkl, np.int32)
    eps = ops.epsilon_factor_array(h32).astype(np.float64)
    centric = ops.centric_flag_array(h32).astype(bool)
    sa = np.zeros(len(fo))
    dd = np.zeros(len(fo))
    eo = np.zeros(len(fo))
    ec = np.zeros(len(fo))
    use = np.ones(len(fo), bool) if work is None else np.asarray(work, bool)
    for b in np.unique(bins):
        sel = bins == b
        fit = sel & use
        if not fit.any():
            fit = sel
        so = np.mean(fo[fit] ** 2 / eps[fit])
        sc = np.mean(fc_abs[fit] ** 2 / eps[fit])
        eo[sel] = fo[sel] / np.sqrt(eps[sel] * so)
        ec[sel] = fc_abs[sel] / np.sqrt(eps[sel] * sc)
        r = minimize_scalar(lambda s: -_loglik(s, eo[fit], ec[fit], centric[fit]),
                            bounds=(0.01, 0.99), method="bounded")
        sa[sel] = r.x
        dd[sel] = r.x * math.sqrt(so / sc)
    x = 2 * sa * eo * ec / (1 - sa * sa)
    m = np.where(centric, np.tanh(x / 2), i1e(x) / np.maximum(i0e(x), 1e-300))
    return sa, m, dd


def map_coefficients(fmodel, kind: str = "2fofc") -> np.ndarray:
    """σA-weighted map coefficients (complex, n) of an `FModel` at its reflections."""
    fmod = fmodel.fmodel
    # |F_model| as R sees it: with a twin model, √((1−α)|F(h)|² + α|F(Th)|²) (the map is
    # not detwinned; the phases are those of the single-domain F_model)
    fa = getattr(fmodel, "fmodel_abs", None)
    fa = np.abs(fmod) if fa is None else fa
    work = np.asarray(fmodel.work, bool)
    sa, m, d = sigmaa(fmodel.fo, fa, fmodel.hkl, fmodel.refl.spacegroup, fmodel.scales.bins,
                      work=work)
    phase = fmod / np.maximum(np.abs(fmod), 1e-30)
    centric = fmodel.refl.spacegroup.operations().centric_flag_array(
        np.asarray(fmodel.hkl, np.int32)).astype(bool)
    # free reflections stay out of the map the model is refined against: their terms are
    # D·F_model (2mFo−DFc) and 0 (mFo−DFc), as if F_obs were the model's expectation
    if kind == "2fofc":
        amp = np.where(centric, m * fmodel.fo, 2 * m * fmodel.fo - d * fa)
        amp = np.where(work, amp, d * fa)
    elif kind == "fofc":
        amp = np.where(work, m * fmodel.fo - d * fa, 0.0)
    else:
        raise ValueError(f"map_coefficients: kind must be '2fofc' or 'fofc', got {kind!r}")
    log.info("Map coefficients: %s, sigmaA per bin (Read 1986), mean sigmaA %.3f, mean m %.3f",
             "2mFo-DFc" if kind == "2fofc" else "mFo-DFc", float(sa.mean()), float(m.mean()))
    return amp * phase


def cell_map(hkl, coefs, cell, spacegroup, *, sample_rate: float = 3.0):
    """gemmi.FloatGrid over the unit cell from complex coefficients at ASU ``hkl``."""
    import gemmi

    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = spacegroup
    mtz.set_cell_for_all(cell)
    mtz.add_dataset("densrefine")
    mtz.add_column("F", "F")
    mtz.add_column("PHI", "P")
    data = np.column_stack([np.asarray(hkl, np.float64), np.abs(coefs),
                            np.degrees(np.angle(coefs))]).astype(np.float32)
    mtz.set_data(data)
    return mtz.transform_f_phi_to_map("F", "PHI", sample_rate=sample_rate)


def map_from_data(model, data, *, kind: str = "2fofc", source: str = "auto", labin=None,
                  d_min=None, fmodel=None):
    """Real-space map (P1 box around ``model``) from reflection data for ``fit``/``score``.

    Parameters
    ----------
    model : densrefine.Model
    data : str
        MTZ or mmCIF reflections.
    kind : {"2fofc", "fofc"}
    source : {"auto", "file", "compute"}
        "file": map coefficients stored in the file (FWT/PHWT, DELFWT/PHDELWT, ...);
        "compute": σA-weighted from F_obs and the model; "auto": the file's when present.
    labin, d_min
        Passed to `densrefine.io.reflections.read_reflections`.
    fmodel : FModel, optional
        Already computed for ``model`` and the data (saves reading and scaling again).

    Returns
    -------
    grid : densrefine.types.Grid
    info : dict
        ``source`` ("file: FWT,PHWT" or "computed 2mFo-DFc, sigmaA"), ``d_min``,
        and ``fmodel`` (the `FModel` when computed or when F_obs is present, else None).
    """

    if source in ("auto", "file"):
        try:
            hkl, coefs, cell, sg = read_map_coefficients(data, kind=kind)
            d = cell.calculate_d_array(np.asarray(hkl, np.int32))
            keep = d >= (d_min or 0)
            grid = box_map(cell_map(hkl[keep], coefs[keep], cell, sg), model.atoms.xyz,
                           float(d[keep].min()))
            info = {"source": f"file ({kind} coefficients)", "d_min": float(d[keep].min()),
                    "fmodel": fmodel}
            return grid, info
        except InputError:
            if source == "file":
                raise
    if fmodel is None:
        fmodel = FModel(model, prepare(model, data, labin=labin, d_min=d_min))
    refl = fmodel.refl
    coefs = map_coefficients(fmodel, kind)
    grid = box_map(cell_map(fmodel.hkl, coefs, refl.cell, refl.spacegroup), model.atoms.xyz,
                   fmodel.d_min)
    return grid, {"source": f"computed {'2mFo-DFc' if kind == '2fofc' else 'mFo-DFc'}, "
                            "sigmaA (Read 1986)", "d_min": fmodel.d_min, "fmodel": fmodel}
