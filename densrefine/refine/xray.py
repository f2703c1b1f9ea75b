"""X-ray data under ``fit``: a data term that refines in real space against a σA-weighted
2mFo−DFc map and reports R-work / R-free after every cycle.

`read_xray` reads the reflections (`densrefine.xtal.prepare`), computes R before
(`densrefine.xtal.FModel`: bulk solvent and anisotropic scaling) and the 2mFo−DFc map on
a P1 box around the model (the file's map coefficients FWT/PHWT or 2FOFCWT/PH2FOFCWT when
present and ``source`` allows, else computed with σA; `densrefine.xtal.maps.map_from_data`).
`XrayTerm` is the data term (`densrefine.refine.data`): the target is the real-space map
term on that map; each cycle adds R-work/R-free of the current model, with a warning when
R-free rises while R-work falls (`densrefine.xtal.RefineMonitor`); `XrayTerm.finish` gives
the stats JSON's "xray" block (before/after R, map source).
"""
from __future__ import annotations

import logging

from ..xtal.api import FModel, RefineMonitor, prepare
from ..xtal.maps import map_from_data
from .mapterm import WrappedMapTerm

log = logging.getLogger("densrefine")


def read_xray(model, data, resolution=None, *, labin=None, source: str = "auto",
              twin: str = "auto") -> dict:
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
        R-factor twin model (`densrefine.xtal.FModel`): "auto" (when the data indicate a
        twin), "off", "on" or a twin law; R before, per cycle and after use it.

    Returns
    -------
    dict
        ``fmodel`` (`FModel`), ``before`` (R report dict), ``map`` (Grid), ``map_source``
        (str), ``d`` (Å).
    """
    refl = prepare(model, data, labin=labin, d_min=resolution)
    if refl.free is None:
        log.warning("%s: no usable free set (%s): only R-work is reported", data,
                    refl.info.get("free_problem"))
    fmodel = FModel(model, refl, twin=twin)
    before = fmodel.report().to_dict()
    emap, minfo = map_from_data(model, data, kind="2fofc", source=source, labin=labin,
                                d_min=resolution, fmodel=fmodel)
    d = float(resolution or minfo["d_min"])
    log.info("X-ray data: refining in real space against the %s map at %.2f Å; R-work %.4f, "
             "R-free %s before", minfo["source"], d, before["r_work"],
             "n/a" if before["r_free"] is None else f"{before['r_free']:.4f}")
    return {"fmodel": fmodel, "before": before, "map": emap, "map_source": minfo["source"],
            "d": d}


class XrayTerm(WrappedMapTerm):
    """The map term on the 2mFo−DFc map, with R-work/R-free per cycle (module docstring).

    Parameters
    ----------
    map_term : MapTerm
        Real-space term on ``xray["map"]``.
    xray : dict
        `read_xray`'s result.
    model : Model
        The starting model (atoms in the order the coordinates come in).
    """

    name = "xray"

    def __init__(self, map_term, xray: dict, model):
        super().__init__(map_term)
        self.xray = xray
        self.monitor = RefineMonitor(xray["fmodel"], model)

    def cycle_stats(self, xyz, b_iso, occ, fourier: bool = False) -> dict:
        out = self.map.cycle_stats(xyz, b_iso, occ, fourier)
        out.update(self.monitor(xyz.detach().cpu().double().numpy(),
                                b_iso.detach().cpu().double().numpy()))
        return out

    def finish(self, model) -> dict:
        """The "xray" stats block: R before and after (bulk solvent and scales refitted)."""
        fm = self.xray["fmodel"]
        fm.update(model)
        after = fm.report().to_dict()
        b = self.xray["before"]
        log.info("X-ray: R-work %.4f -> %.4f, R-free %s -> %s", b["r_work"], after["r_work"],
                 "n/a" if b["r_free"] is None else f"{b['r_free']:.4f}",
                 "n/a" if after["r_free"] is None else f"{after['r_free']:.4f}")
        return {"xray": {"map": self.xray["map_source"], "resolution": self.xray["d"],
                         "before": b, "after": after,
                         "overfitting_warnings": list(self.monitor.warnings)}}
