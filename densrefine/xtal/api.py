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
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import DensrefineWarning, input_error
from ..io.model import to_gemmi
from ..io.reflections import Reflections, check_model_compatible, read_reflections
from .bulk import fmask
from .fcalc import choose_method, fcalc
from .scale import f_model, f_model_abs, fit_scales, r_factor, resolution_bins
from .twin import ALPHA_MIN, analyse_twinning, apply_law, law_name, twin_laws

MASK_REUSE_RMS = 0.1
"""Å. `FModel.update` with ``warm=True`` (between macro cycles of a refinement) keeps the
bulk-solvent F_mask while the atoms have moved less than this RMS distance (and none
more than `MASK_REUSE_MAX`) from where they were when the mask was made. The flat
mask's probe is 1.1 Å and it is shrunk by 0.9 Å, and it enters the reflections below
~6 Å; remaking it costs 0.4 s (3AY4) to 1.2 s (3IO0's 173 Å cubic cell, 24 operators)
of CPU. A mask kept from the perturbed start for the whole refinement raised the final
R-free by 0.001-0.002 (benchmarks/RESULTS.md, issue 17)."""

MASK_REUSE_MAX = 1.0
"""Å: the largest single-atom move under which `MASK_REUSE_RMS` applies."""

TWIN_MODES = ("auto", "off", "on")
"""``twin``: "auto" (model the twin when the data indicate it, `densrefine.xtal.twin`),
"off", "on" (the best candidate law even when not indicated), or a law such as "-h,k,-l"."""

log = logging.getLogger("densrefine")


@dataclass
class RfactorReport:
    """Result of `rfactor` (JSON-ready through `to_dict`).

    r_work, r_free : float or None (None when there is no usable free set)
    k_sol (e/Å³ scale of the mask), b_sol (Å²), b_aniso (B11 B22 B33 B12 B13 B23, Å²),
    k_overall, n_work, n_free, d_min, d_max (Å), shells (list of dicts per resolution
    shell: d_max, d_min, n_work, n_free, r_work, r_free, k_mask), reflections
    (what was read: columns, conventions, rejections), free_problem, fcalc_method,
    solvent_fraction, timings (s), twin (dict: ``mode``, ``analysis`` (laws, L-test,
    H-tests, see `densrefine.xtal.twin.TwinAnalysis`), ``applied``, ``law``,
    ``fraction`` (refined α), ``untwinned`` (R-work/R-free without the twin model),
    ``reason``; None with ``twin="off"``), peaks (mFo−DFc peaks,
    `densrefine.xtal.peaks.difference_peaks`, when asked for).
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
    twin: dict | None = None
    peaks: dict | None = None

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


class FModel:
    """Observed data + model → scaled F_model, R factors, shells (see module doc).

    Parameters
    ----------
    model : densrefine.Model
    refl : densrefine.io.reflections.Reflections
    density : str
        Density model of F_calc ("iam" or "ml").
    twin : str
        One of `TWIN_MODES` or a twin law ("-h,k,-l"); default "off" (``rfactor``
        defaults to "auto"). With a twin law, |F_model|² = (1−α)|F(h)|² + α|F(Th)|² and
        α is refined with the scales; ``fmodel`` stays the single-domain complex F_model
        (its phases serve the maps), ``fmodel_abs`` is what R compares with F_obs.
    fcalc_opts : dict, optional
        ``rate``, ``cutoff`` and ``dtype`` of the FFT F_calc that `update` computes itself
        (`densrefine.xtal.fcalc.fcalc`; default rate 1.5, cutoff 1e-7, float64).
        Refinement passes those of its target (`densrefine.xtal.target`), so that R
        before and after come from the same F_calc.
    """

    def __init__(self, model, refl, density: str = "iam", twin: str = "off",
                 fcalc_opts: dict | None = None):
        self.refl, self.density = refl, density
        self.fcalc_opts = dict(fcalc_opts or {})
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
        self.twin_mode, self.twin_op, self.twin_analysis = twin, None, None
        self.twin_info = None
        if twin != "off":
            self._choose_twin(twin)
        self.update(model)

    def _choose_twin(self, twin: str) -> None:

        self.twin_analysis, op = analyse_twinning(self.refl)
        if twin == "auto":
            self.twin_op = op
            return
        ops = twin_laws(self.refl.cell, self.refl.spacegroup)
        if twin == "on":
            if not ops:
                raise input_error(self.refl.path, f"--twin on: no twin law for "
                                  f"{self.refl.spacegroup.hm} in this cell",
                                  "use --twin auto or off")
            alphas = [h["alpha"] or 0.0 for h in self.twin_analysis.h_tests]
            self.twin_op = ops[int(np.argmax(alphas))]
            return
        want = twin.replace(" ", "").lower()
        match = [op for op in ops if law_name(op) == want]
        if not match:
            raise input_error(self.refl.path, f"twin law {twin!r} is not a twin law of this "
                              f"lattice (candidates: {', '.join(map(law_name, ops)) or 'none'})",
                              "give one of the candidates, or --twin auto")
        self.twin_op = match[0]

    def _alpha0(self) -> float:

        name = law_name(self.twin_op)
        for h in (self.twin_analysis.h_tests if self.twin_analysis else []):
            if h["law"] == name and h["alpha"] is not None:
                return max(h["alpha"], 0.05)
        return 0.25

    def update(self, model, fc=None, warm: bool = False) -> None:
        """Recompute F_calc, F_mask and all scales for ``model``'s coordinates.

        ``fc``: F_calc (complex, n; 2n with a twin law: the twin mates Th after h)
        computed by the caller for ``model`` (`densrefine.xtal.target.XrayTarget` has it
        already), used instead of computing it again. ``warm``: the scales are refined from
        the previous call's (`fit_scales` ``start``; refinement between macro cycles) and
        F_mask is reused while the atoms have moved less than `MASK_REUSE_RMS` (RMS; none
        more than `MASK_REUSE_MAX`) from where they were when the mask was last computed;
        the log lines go to DEBUG.
        """

        r = self.refl
        n = len(self.hkl)
        hkl = self.hkl
        if self.twin_op is not None:
            hkl = np.concatenate([self.hkl, apply_law(self.twin_op, self.hkl)])
        t0 = time.perf_counter()
        self.method = choose_method(model.atoms, len(r.spacegroup.operations()), len(hkl))
        if fc is None:
            fc = fcalc(model, hkl, r.cell, r.spacegroup, self.d_min, method=self.method,
                       density=self.density, **self.fcalc_opts)
        elif len(fc) != len(hkl):
            raise ValueError(f"FModel.update: {len(fc)} F_calc given for {len(hkl)} reflections")
        t1 = time.perf_counter()
        say = log.debug if warm else log.info
        xyz = np.asarray(model.atoms.xyz, np.float64)
        cached = getattr(self, "_mask_for", None)
        keep = False
        if warm and cached is not None and cached[0].shape == xyz.shape and len(xyz):
            dist = np.sqrt(((cached[0] - xyz) ** 2).sum(1))
            rms, top = float(np.sqrt(np.mean(dist ** 2))), float(dist.max())
            keep = rms < MASK_REUSE_RMS and top < MASK_REUSE_MAX
            log.debug("Bulk solvent: atoms moved %.3f Å RMS, %.3f Å at most since the mask "
                      "was made: mask %s", rms, top, "kept" if keep else "remade")
        if keep:
            fm = cached[1]
        else:
            fm, self.solvent_fraction = fmask(to_gemmi(model), r.cell, r.spacegroup, hkl,
                                              self.d_min, quiet=warm)
            self._mask_for = (xyz.copy(), fm)
        t2 = time.perf_counter()
        prev = getattr(self, "_prev_scales", {}) if warm else {}
        self.fc, self.fm = fc[:n], fm[:n]
        self.scales = fit_scales(self.fo, self.fc, self.fm, self.hkl, r.cell, r.spacegroup,
                                 self.work, bins=self.bins, start=prev.get("plain"))
        self._prev_scales = {"plain": self.scales}
        self.twin_f = None
        untwinned = {"r_work": self._r(self.work), "r_free": self._r(self.free)}
        if self.twin_op is not None:
            twin = (fc[n:], fm[n:], self._alpha0())
            sc_t = fit_scales(self.fo, self.fc, self.fm, self.hkl, r.cell, r.spacegroup,
                              self.work, bins=self.bins, twin=twin, start=prev.get("twin"))
            self._prev_scales["twin"] = sc_t
            keep = self.twin_mode != "auto" or sc_t.twin_fraction >= ALPHA_MIN
            say("Twin model %s (|F|^2 = (1-a)|F(h)|^2 + a|F(Th)|^2, a refined with the "
                "scales by least squares): twin fraction %.3f%s", law_name(self.twin_op),
                sc_t.twin_fraction, "" if keep else f" < {ALPHA_MIN}: not applied")
            if keep:
                self.scales, self.twin_f = sc_t, twin[:2]
        t3 = time.perf_counter()
        self.fmodel = f_model(self.fc, self.fm, self.sc, self.s2, self.scales)
        self.fmodel_abs = f_model_abs(self.fc, self.fm, self.sc, self.s2, self.scales,
                                      self.twin_f)
        self.timings = {"fcalc_s": t1 - t0, "mask_s": t2 - t1, "scale_s": t3 - t2}
        self.twin_info = self._twin_info(untwinned)
        say("Scaling: k_sol %.3f, B_sol %.1f Å², B_aniso %s Å²%s; R-work %.4f, R-free %s",
                 self.scales.k_sol, self.scales.b_sol,
                 " ".join(f"{b:.2f}" for b in self.scales.b_cart),
                 "" if self.twin_f is None else
                 f", twin {law_name(self.twin_op)} fraction {self.scales.twin_fraction:.3f}",
                 self.r_work, "n/a" if self.r_free is None else f"{self.r_free:.4f}")

    def _r(self, sel):
        return r_factor(self.fo, np.abs(f_model(self.fc, self.fm, self.sc, self.s2,
                                                self.scales)), sel)

    def _twin_info(self, untwinned) -> dict | None:

        if self.twin_mode == "off":
            return None
        a = self.twin_analysis
        applied = self.twin_f is not None
        if applied:
            reason = (f"twin law {law_name(self.twin_op)} applied, refined twin fraction "
                      f"{self.scales.twin_fraction:.3f}")
        elif self.twin_op is not None:
            reason = f"twin law {law_name(self.twin_op)} tested, twin fraction too small"
        else:
            reason = a.reason if a is not None else "not tested"
        return {"mode": self.twin_mode, "analysis": None if a is None else a.to_dict(),
                "applied": applied, "law": law_name(self.twin_op) if applied else None,
                "fraction": self.scales.twin_fraction if applied else None,
                "untwinned": untwinned, "reason": reason}

    @property
    def r_work(self) -> float:
        return r_factor(self.fo, self.fmodel_abs, self.work)

    @property
    def r_free(self) -> float | None:
        return r_factor(self.fo, self.fmodel_abs, self.free)

    def shells(self) -> list[dict]:
        """R factors per resolution shell (the scaling bins), low to high resolution."""
        out = []
        d = 1.0 / np.sqrt(self.s2)
        fa = self.fmodel_abs
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
            solvent_fraction=self.solvent_fraction, timings=dict(self.timings),
            twin=self.twin_info)


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
        """Update the `FModel` for coordinates ``xyz`` (N, 3) Å and B (N,) Å², then `check`."""
        at = self.model.atoms
        new = self.model.with_atoms(at.replace(xyz=np.asarray(xyz, np.float64),
                                               b_iso=np.asarray(b, np.float64)))
        self.fmodel.update(new)
        return self.check()

    def check(self) -> dict:
        """R-work/R-free of the `FModel` as it is now (updated by the caller), with the
        overfitting warning against the previous call."""
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

    refl = data if isinstance(data, Reflections) else read_reflections(
        data, labin=labin, d_min=d_min, d_max=d_max, free_flag=free_flag)
    st = model.handle
    check_model_compatible(refl, st.cell if st is not None else model.cell,
                           st.spacegroup_hm if st is not None else model.space_group,
                           model.path)
    return refl


def make_fmodel(model, data, *, labin=None, d_min=None, d_max=None, free_flag=None,
                density: str = "iam", twin: str = "auto") -> FModel:
    """Read ``data`` (path or `Reflections`), check it against ``model`` and build the
    scaled `FModel` (what `rfactor` reports; maps and peaks start from it).

    Parameters are those of `rfactor`; ``fmodel.timings["read_s"]`` is the reading time.
    """

    if twin not in TWIN_MODES and not (isinstance(twin, str) and "h" in twin):
        raise input_error("twin", f"{twin!r} is not a twin mode",
                          f"use one of {', '.join(TWIN_MODES)} or a law such as -h,k,-l")
    t0 = time.perf_counter()
    refl = prepare(model, data, labin=labin, d_min=d_min, d_max=d_max, free_flag=free_flag)
    t1 = time.perf_counter()
    fmod = FModel(model, refl, density=density, twin=twin)
    fmod.timings["read_s"] = t1 - t0
    return fmod


def rfactor(model, data, *, labin=None, d_min=None, d_max=None, free_flag=None,
            density: str = "iam", twin: str = "auto") -> RfactorReport:
    """R-work and R-free of ``model`` against reflection ``data`` (path or `Reflections`).

    The model's cell and space group must agree with the data's (InputError naming
    both otherwise). See `FModel` and `densrefine.xtal.scale` for the method.
    ``twin``: "auto" (default: model a twin when the L-/H-tests indicate one and the
    refined fraction is ≥ 0.05, `densrefine.xtal.twin`), "off", "on" or a law
    ("-h,k,-l"); the report's ``twin`` dict says what was found and done.

    Examples
    --------
    >>> import densrefine as dr                                  # doctest: +SKIP
    >>> rep = dr.rfactor(dr.read_model("1l2h.cif.gz"), "1l2h.mtz.gz")   # doctest: +SKIP
    >>> rep.twin["law"], round(rep.twin["fraction"], 2)         # doctest: +SKIP
    ('-h,k,-l', 0.37)
    """
    t0 = time.perf_counter()
    fmod = make_fmodel(model, data, labin=labin, d_min=d_min, d_max=d_max,
                       free_flag=free_flag, density=density, twin=twin)
    rep = fmod.report()
    rep.timings["total_s"] = time.perf_counter() - t0
    return rep
