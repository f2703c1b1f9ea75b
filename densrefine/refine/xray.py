"""X-ray data under ``fit``: a reciprocal-space data term on |F_obs| (default) or the
real-space term on a σA-weighted 2mFo−DFc map, with R-work / R-free after every cycle.

`read_xray` reads the reflections (`densrefine.xtal.prepare`), computes R before
(`densrefine.xtal.FModel`: bulk solvent, anisotropic scaling, twin model) and the 2mFo−DFc
map on a P1 box around the model (the map ``fit`` scores before and after; the file's map
coefficients FWT/PHWT or 2FOFCWT/PH2FOFCWT when present and ``source`` allows, else
computed with σA; `densrefine.xtal.maps.map_from_data`).

`XrayTerm` is the data term (`densrefine.refine.data`). With ``target`` "ml" (the default,
"auto") or "lsq" its target is `densrefine.xtal.target.XrayTarget`: the σA amplitude
likelihood (or least squares) of the work reflections through the differentiable F_calc,
with bulk solvent, scales and twin fraction held fixed within a macro cycle and refitted
between cycles (`XrayTerm.prepare`, `XrayTerm.cycle_stats`); it is a negative
log-likelihood (``likelihood = True``), which the B stage uses as it is
(`densrefine.refine.stages.b_stage`). The χ1 scan reads a 2mFo−DFc map recomputed from
the current model. With ``target`` "real-space" the target is the map term on the
2mFo−DFc map (model building against a map). Each cycle adds R-work/R-free of the current
model, with a warning when R-free rises while R-work falls
(`densrefine.xtal.RefineMonitor`); `XrayTerm.finish` gives the stats JSON's "xray" block.
"""
from __future__ import annotations

import logging

import numpy as np

from ..xtal.api import FModel, RefineMonitor, prepare
from ..xtal.maps import map_from_data
from .mapterm import WrappedMapTerm

log = logging.getLogger("densrefine")

WEIGHT_SCALE = 0.25
"""Multiplies the automatic weight's gradient-norm ratio (`densrefine.refine.stages.
weight_init`) for the reciprocal-space targets. The ratio is taken at the start, where the
likelihood's gradient is that of a poor model; with 1.0 the first macro cycles ran at
angle RMSD 2.2–2.4° against the 1.5° limit and needed extra "polish" cycles at a lower
weight, which also gave a lower R-free (3AY4 and 3IO0 from 0.5 and 1.0 Å starts,
benchmarks/RESULTS.md)."""

XRAY_TARGETS = ("auto", "ml", "lsq", "real-space")
"""``xray_target``: "ml" (amplitude likelihood, what "auto" means), "lsq" (least squares on
|F_obs|) or "real-space" (the map term on a 2mFo−DFc map)."""


def resolve_target(target: str) -> str:
    """``target`` checked, with "auto" resolved ("ml")."""
    from ..errors import input_error

    if target not in XRAY_TARGETS:
        raise input_error("xray_target", f"unknown X-ray target {target!r}",
                          f"use one of {', '.join(XRAY_TARGETS)}")
    return "ml" if target == "auto" else target


def read_xray(model, data, resolution=None, *, labin=None, source: str = "auto",
              twin: str = "auto", target: str = "auto") -> dict:
    """Reflections → R before, the 2mFo−DFc box map and the resolution (see the module).

    Parameters
    ----------
    model : Model
    data : str
        MTZ or mmCIF structure factors.
    resolution : float, optional
        High-resolution limit (Å) to use; default the data's.
    labin : str, optional
        Columns (e.g. "FP,SIGFP,FREE").
    source : {"auto", "file", "compute"}
        Where the 2mFo−DFc map comes from.
    twin : str
        Twin model (`densrefine.xtal.FModel`): "auto" (when the data indicate a twin),
        "off", "on" or a twin law; R before, per cycle and after use it, and so does the
        reciprocal-space target.
    target : {"auto", "ml", "lsq", "real-space"}
        The data term `XrayTerm` builds (`XRAY_TARGETS`).

    Returns
    -------
    dict
        ``fmodel`` (`FModel`), ``before`` (R report dict), ``map`` (Grid), ``map_source``
        (str), ``d`` (Å), ``target`` (resolved), ``data`` (the path).
    """
    target = resolve_target(target)
    refl = prepare(model, data, labin=labin, d_min=resolution)
    if refl.free is None:
        log.warning("%s: no usable free set (%s): only R-work is reported", data,
                    refl.info.get("free_problem"))
    fmodel = FModel(model, refl, twin=twin, fcalc_opts=None if target == "real-space"
                    else fcalc_options())
    before = fmodel.report().to_dict()
    emap, minfo = map_from_data(model, data, kind="2fofc", source=source, labin=labin,
                                d_min=resolution, fmodel=fmodel)
    d = float(resolution or minfo["d_min"])
    how = (f"in real space against the {minfo['source']} map" if target == "real-space"
           else f"in reciprocal space ({target} target on |F_obs|)")
    log.info("X-ray data: refining %s at %.2f Å; R-work %.4f, R-free %s before", how, d,
             before["r_work"], "n/a" if before["r_free"] is None else f"{before['r_free']:.4f}")
    return {"fmodel": fmodel, "before": before, "map": emap, "map_source": minfo["source"],
            "d": d, "target": target, "data": data, "labin": labin}


def fcalc_options() -> dict:
    """F_calc settings of the reciprocal-space target (`densrefine.xtal.target.RATE`,
    ``CUTOFF``, float32), for the `FModel` of R before: before and after (`XrayTerm.
    finish`, through the target's F_calc) then come from the same F_calc, and the
    rate-1.5 float64 F_calc of ``rfactor`` (2-3 s for 3IO0 or 3AY4) is not computed
    only to be replaced at the first refit."""
    import torch

    from ..xtal.target import CUTOFF, RATE

    return {"rate": RATE, "cutoff": CUTOFF, "dtype": torch.float32}


class XrayTerm(WrappedMapTerm):
    """X-ray data term: reciprocal-space target or the 2mFo−DFc map term (module docstring).

    Parameters
    ----------
    map_term : MapTerm
        Real-space term on ``xray["map"]`` (the target with ``target="real-space"``).
    xray : dict
        `read_xray`'s result.
    model : Model
        The starting model (atoms in the order the coordinates come in).
    device, dtype
        Of the reciprocal-space F_calc.
    remap : callable, optional
        ``remap(grid) -> MapTerm`` on another map (the χ1 scan's map recomputed from the
        current model); None: the χ1 scan reads ``map_term``'s map.
    """

    name = "xray"

    def __init__(self, map_term, xray: dict, model, device="cpu", dtype=None, remap=None):
        import torch

        super().__init__(map_term)
        self.xray, self.model, self.remap = xray, model, remap
        self.kind = xray.get("target", "real-space")
        self.likelihood = self.kind != "real-space"
        self.weight_scale = WEIGHT_SCALE if self.likelihood else 1.0
        self.monitor = RefineMonitor(xray["fmodel"], model)
        self.xt = None
        self._fitted = None
        self._view = None
        if self.likelihood:
            from ..xtal.target import XrayTarget

            self.xt = XrayTarget(xray["fmodel"], model, self.kind, device,
                                 dtype or torch.float32)
            at = model.atoms
            self._fitted = (np.array(at.xyz, np.float64), np.array(at.b_iso, np.float64))

    # ----------------------------------------------------------- data-term interface
    def target(self, xyz, b_iso, occ, fourier: bool = False, kind: str | None = None):
        """Reciprocal: −log-likelihood (or LSQ) of the work reflections; else the map term."""
        if not self.likelihood:
            return self.map.target(xyz, b_iso, occ, fourier, kind)
        return self.xt(xyz, b_iso, occ)

    def _refit(self, xyz, b_iso) -> bool:
        """Refit scales and likelihood parameters unless xyz and B are those of the last fit."""
        xyz, b_iso = np.asarray(xyz, np.float64), np.asarray(b_iso, np.float64)
        f = self._fitted
        if f is not None and np.array_equal(f[0], xyz) and np.array_equal(f[1], b_iso):
            return False
        self.xt.refit(xyz, b_iso)
        self._fitted = (xyz.copy(), b_iso.copy())
        return True

    def prepare(self, xyz, b_iso, factor: float) -> None:
        """Map term: blur and mask. Reciprocal: refit bulk solvent, scales, D and S."""
        if not self.likelihood:
            self.map.prepare(xyz, b_iso, factor)
            return
        self._refit(xyz, b_iso)

    def restrict(self, subset=None) -> bool:
        """Every atom scatters into every reflection: the reciprocal term cannot leave any
        out (False); the map term can."""
        if not self.likelihood:
            return self.map.restrict(subset)
        return subset is None

    def cycle_stats(self, xyz, b_iso, occ, fourier: bool = False) -> dict:
        xyz_np = xyz.detach().cpu().double().numpy()
        b_np = b_iso.detach().cpu().double().numpy()
        if not self.likelihood:
            out = self.map.cycle_stats(xyz, b_iso, occ, fourier)
            out.update(self.monitor(xyz_np, b_np))
            return out
        self._refit(xyz_np, b_np)
        out = {"blur": 0.0, "cc_mask_term": None, "xray_target": self.xt.value,
               "xray_evaluations": self.xt.n_eval}
        out.update(self.monitor.check())
        return out

    def rotamer_view(self):
        """The χ1 scan's map: reciprocal target → 2mFo−DFc of the current model (work-set
        σA; `densrefine.xtal.maps.map_from_data`); real space → the map term's."""
        if not self.likelihood or self.remap is None:
            return self.map.rotamer_view()
        xyz, b = self._fitted
        at = self.model.atoms
        cur = self.model.with_atoms(at.replace(xyz=xyz, b_iso=b, u_aniso=self.xt._aniso(b)))
        grid, info = map_from_data(cur, self.xray["data"], kind="2fofc", source="compute",
                                   labin=self.xray.get("labin"), fmodel=self.xray["fmodel"])
        log.info("χ1 scan map: %s from the current model", info["source"])
        self._view = self.remap(grid)
        self._view.prepare(xyz, b, 1.0)
        return self._view.rotamer_view()

    def finish(self, model) -> dict:
        """The "xray" stats block: R before and after (bulk solvent and scales refitted)."""
        fm = self.xray["fmodel"]
        if self.likelihood:     # fresh mask and scales: what `densrefine rfactor` reports
            self.xt.refit(model.atoms.xyz, model.atoms.b_iso, warm=False)
        else:
            fm.update(model)
        after = fm.report().to_dict()
        b = self.xray["before"]
        log.info("X-ray: R-work %.4f -> %.4f, R-free %s -> %s", b["r_work"], after["r_work"],
                 "n/a" if b["r_free"] is None else f"{b['r_free']:.4f}",
                 "n/a" if after["r_free"] is None else f"{after['r_free']:.4f}")
        out = {"target": self.kind, "map": self.xray["map_source"],
               "resolution": self.xray["d"], "before": b, "after": after,
               "overfitting_warnings": list(self.monitor.warnings)}
        if self.likelihood:
            out["target_value"] = self.xt.value
            out["ml_params"] = {k: np.asarray(v).tolist() for k, v in self.xt.ml.items()}
        return {"xray": out}
