"""R-work / R-free of a model against reflection data: `FModel` and `rfactor`.

`FModel` ties together the pieces of this package for one model and one data set:
F_calc (`densrefine.xtal.fcalc`), F_mask (`densrefine.xtal.bulk`), the scales
(`densrefine.xtal.scale`) and R factors overall and per resolution shell. It can be
updated with new coordinates (refinement: "move atoms, see R change"); the mask and
scales are refitted on every update, as mmtbx does after each macro cycle.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from .bulk import fmask
from .fcalc import fcalc
from .scale import fit_scales, f_model, r_factor, resolution_bins

log = logging.getLogger("densrefine")


@dataclass
class RfactorReport:
    """Result of `rfactor` (JSON-ready through `to_dict`).

    r_work, r_free : float or None (None when there is no usable free set)
    k_sol (e/Å³ scale of the mask), b_sol (Å²), b_aniso (B11 B22 B33 B12 B13 B23, Å²),
    k_overall, n_work, n_free, d_min, d_max (Å), shells (list of dicts per resolution
    shell: d_max, d_min, n_work, n_free, r_work, r_free, k_mask), reflections
    (what was read: columns, conventions, rejections), free_problem, fcalc_method,
    solvent_fraction, timings (s).
    """

    r_work: float
    r_free: float | None
    k_sol: float
    b_sol: float
    b_aniso: list
    k_overall: float
    n_work: int
    n_free: int
    d_min: float
    d_max: float
    shells: list = field(default_factory=list)
    reflections: dict = field(default_factory=dict)
    free_problem: str | None = None
    fcalc_method: str = "fft"
    solvent_fraction: float = 0.0
    timings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


class FModel:
    """Observed data + model → scaled F_model, R factors, shells (see module doc).

    Parameters
    ----------
    model : densrefine.Model
    refl : densrefine.io.reflections.Reflections
    """

    def __init__(self, model, refl, density: str = "iam"):
        self.refl, self.density = refl, density
        self.hkl = np.asarray(refl.hkl, np.int64)
        self.fo = np.asarray(refl.f, np.float64)
        self.free = None if refl.free is None else np.asarray(refl.free, bool)
        self.work = np.ones(len(self.fo), bool) if self.free is None else ~self.free
        frac = np.array(refl.cell.frac.mat.tolist())
        self.sc = self.hkl @ frac                       # Cartesian reciprocal vectors, Å⁻¹
        self.s2 = (self.sc ** 2).sum(1)
        self.d_min = float(refl.d.min())
        self.bins = resolution_bins(self.s2[self.work])
        self.timings = {}
        self.update(model)

    def update(self, model) -> None:
        """Recompute F_calc, F_mask and all scales for ``model``'s coordinates."""
        from .fcalc import choose_method

        r = self.refl
        t0 = time.perf_counter()
        self.method = choose_method(model.atoms, len(r.spacegroup.operations()), len(self.hkl))
        self.fc = fcalc(model, self.hkl, r.cell, r.spacegroup, self.d_min, method=self.method,
                        density=self.density)
        t1 = time.perf_counter()
        from ..io.model import to_gemmi

        self.fm, self.solvent_fraction = fmask(to_gemmi(model), r.cell, r.spacegroup, self.hkl,
                                               self.d_min)
        t2 = time.perf_counter()
        self.scales = fit_scales(self.fo, self.fc, self.fm, self.hkl, r.cell, r.spacegroup,
                                 self.work, bins=self.bins)
        t3 = time.perf_counter()
        self.fmodel = f_model(self.fc, self.fm, self.sc, self.s2, self.scales)
        self.timings = {"fcalc_s": t1 - t0, "mask_s": t2 - t1, "scale_s": t3 - t2}
        log.info("Scaling: k_sol %.3f, B_sol %.1f Å², B_aniso %s Å²; R-work %.4f, R-free %s",
                 self.scales.k_sol, self.scales.b_sol,
                 " ".join(f"{b:.2f}" for b in self.scales.b_cart), self.r_work,
                 "n/a" if self.r_free is None else f"{self.r_free:.4f}")

    @property
    def r_work(self) -> float:
        return r_factor(self.fo, np.abs(self.fmodel), self.work)

    @property
    def r_free(self) -> float | None:
        return r_factor(self.fo, np.abs(self.fmodel), self.free)

    def shells(self) -> list[dict]:
        """R factors per resolution shell (the scaling bins), low to high resolution."""
        out = []
        d = 1.0 / np.sqrt(self.s2)
        fa = np.abs(self.fmodel)
        for b in range(int(self.scales.bins.max()) + 1):
            sel = self.scales.bins == b
            w = sel & self.work
            f = None if self.free is None else sel & self.free
            out.append({"d_max": float(d[sel].max()), "d_min": float(d[sel].min()),
                        "n_work": int(w.sum()), "n_free": 0 if f is None else int(f.sum()),
                        "r_work": r_factor(self.fo, fa, w),
                        "r_free": None if f is None or not f.any() else r_factor(self.fo, fa, f),
                        "k_mask": float(self.scales.k_mask[sel].mean())})
        return out

    def report(self) -> RfactorReport:
        r = self.refl
        info = dict(r.info)
        return RfactorReport(
            r_work=self.r_work, r_free=self.r_free, k_sol=self.scales.k_sol,
            b_sol=self.scales.b_sol, b_aniso=[float(x) for x in self.scales.b_cart],
            k_overall=self.scales.k_overall, n_work=int(self.work.sum()),
            n_free=0 if self.free is None else int(self.free.sum()),
            d_min=self.d_min, d_max=float(r.d.max()), shells=self.shells(), reflections=info,
            free_problem=info.get("free_problem"), fcalc_method=self.method,
            solvent_fraction=self.solvent_fraction, timings=dict(self.timings))


class RefineMonitor:
    """``fit``'s per-cycle hook: R-work/R-free of the current coordinates and B.

    Warns (log and `DensrefineWarning`) when R-free rises while R-work falls between
    consecutive cycles by more than ``tol`` — the signature of overfitting.
    """

    def __init__(self, fmodel: FModel, model, tol: float = 0.002):
        self.fmodel, self.model, self.tol = fmodel, model, tol
        self.history = [(fmodel.r_work, fmodel.r_free)]
        self.warnings = []

    def __call__(self, xyz, b) -> dict:
        import warnings

        from ..errors import DensrefineWarning

        at = self.model.atoms
        new = self.model.with_atoms(at.replace(xyz=np.asarray(xyz, np.float64),
                                               b_iso=np.asarray(b, np.float64)))
        self.fmodel.update(new)
        rw, rf = self.fmodel.r_work, self.fmodel.r_free
        pw, pf = self.history[-1]
        self.history.append((rw, rf))
        out = {"r_work": rw, "r_free": rf}
        if rf is not None and pf is not None and rf - pf > self.tol and pw - rw > self.tol:
            msg = (f"R-free rose {pf:.4f} -> {rf:.4f} while R-work fell {pw:.4f} -> {rw:.4f}: "
                   "overfitting? consider a lower --weight or tighter restraints")
            self.warnings.append(msg)
            log.warning(msg)
            warnings.warn(msg, DensrefineWarning, stacklevel=2)
            out["overfitting_warning"] = msg
        return out


def prepare(model, data, *, labin=None, d_min=None, d_max=None, free_flag=None):
    """Read ``data`` (path or `Reflections`) and check it against the model's cell/space group.

    InputError naming both values when the cell or space group disagree.
    """
    from ..io.reflections import Reflections, check_model_compatible, read_reflections

    refl = data if isinstance(data, Reflections) else read_reflections(
        data, labin=labin, d_min=d_min, d_max=d_max, free_flag=free_flag)
    st = model.handle
    check_model_compatible(refl, st.cell if st is not None else model.cell,
                           st.spacegroup_hm if st is not None else model.space_group,
                           model.path)
    return refl


def rfactor(model, data, *, labin=None, d_min=None, d_max=None, free_flag=None,
            density: str = "iam") -> RfactorReport:
    """R-work and R-free of ``model`` against reflection ``data`` (path or `Reflections`).

    The model's cell and space group must agree with the data's (InputError naming
    both otherwise). See `FModel` and `densrefine.xtal.scale` for the method.
    """
    t0 = time.perf_counter()
    refl = prepare(model, data, labin=labin, d_min=d_min, d_max=d_max, free_flag=free_flag)
    t1 = time.perf_counter()
    fmod = FModel(model, refl, density=density)
    rep = fmod.report()
    rep.timings["read_s"] = t1 - t0
    rep.timings["total_s"] = time.perf_counter() - t0
    return rep
