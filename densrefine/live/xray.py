"""A warm X-ray model: F_calc, F_mask and scales kept, updated exactly when atoms move.

Start: `densrefine.xtal.api.make_fmodel` (what ``densrefine rfactor`` computes: FFT
F_calc, gemmi's cctbx mask, scales, twin decision). Then, for every move of k atoms:

* ΔF_calc: the moved atoms' densities before (subtracted) and after (added) are
  splatted onto small boxes of the same unit-cell grid with the same blur and cutoff
  (`densrefine.live.splat`), and the boxes' structure factors with the space-group
  symmetry come from a pruned DFT (`densrefine.live.symdft`). F_calc + ΔF_calc equals
  the full FFT of the new model up to rounding.
* ΔF_mask: the mask is redone inside the box that can change (`densrefine.live.mask`,
  identical to gemmi's mask point for point) and its change transformed the same way.
* Scales (k_sol, B_sol, anisotropic U, k_iso per bin) stay as fitted until the model
  has changed enough (`RESCALE_CHANGE`) or `XrayLive.rescale` is called; R-work and
  R-free are then those of the new F_calc and F_mask with the stored scales (the k₁ of
  each set is refitted, as `r_factor` always does).

A lower B than the smallest B at the start changes the FFT's blur: such an update
recomputes F_calc from scratch. Small models with ANISOU, for which ``rfactor`` sums F_calc
directly (`densrefine.xtal.fcalc.choose_method`), are updated by direct summation of the
moved atoms (anisotropic U kept; a new B replaces an atom's ANISOU).
"""
from __future__ import annotations

import logging
import time

import numpy as np

from ..density import get_density_model
from ..errors import input_error
from ..grid import periodic_box
from ..io.model import to_gemmi
from ..xtal.api import make_fmodel
from ..xtal.bulk import gather_p1, solvent_mask
from ..xtal.fcalc import FcalcPlan, fcalc_direct_tensor, fcalc_tensor
from ..xtal.maps import sigmaa
from ..xtal.scale import f_model, fit_scales, twin_amplitude
from ..xtal.twin import apply_law
from .mask import LocalMask, mask_radii
from .splat import local_density
from .symdft import BoxTransform, SymmetryIndex

log = logging.getLogger("densrefine")

FLUSH_EVERY = 200
"""Pending layout changes are gathered into F_calc and F_mask after this many updates."""
RESCALE_CHANGE = 0.05
"""Refit the scales when ‖F_calc − F_calc at the last fit‖ / ‖F_calc‖ exceeds this."""

class XrayLive:
    """F_calc, F_mask, scales and R of a model against reflections, updated in place.

    Parameters
    ----------
    model : densrefine.Model
    data : str or Reflections
    labin, d_min, free_flag, twin
        As in `densrefine.xtal.rfactor` (``twin`` "auto" by default, like the CLI).

    Attributes
    ----------
    fmodel : densrefine.xtal.FModel
        Kept current: ``fc``, ``fm``, ``fmodel``, ``fmodel_abs`` follow every update.
    xyz, b_iso, occ : ndarray
        Current atom parameters (Å, Å², occupancy).
    rescale_change : float
        `update` refits the scales itself when the change since the last fit exceeds this
        (default `RESCALE_CHANGE`; the server sets ∞ and refits in the background).
    """

    def __init__(self, model, data, *, labin=None, d_min=None, free_flag=None,
                 twin: str = "auto"):

        t0 = time.perf_counter()
        self.model = model
        fm = make_fmodel(model, data, labin=labin, d_min=d_min, free_flag=free_flag,
                         density="iam", twin=twin)
        self.fmodel = fm
        r = fm.refl
        self.cell, self.sg = r.cell, r.spacegroup
        at = model.atoms
        self.xyz = np.array(at.xyz, np.float64)
        self.b_iso = np.array(at.b_iso, np.float64)
        self.occ = np.array(at.occ, np.float64)
        self.is_h = np.asarray(at.is_hydrogen, bool)
        self.terms = get_density_model("iam").terms(at.replace(u_aniso=None), "xray")
        hkl = fm.hkl
        if fm.twin_op is not None:
            hkl = np.concatenate([fm.hkl, apply_law(fm.twin_op, fm.hkl)])
        self.hkl_all, self.n = hkl, len(fm.hkl)
        self.b_min = float(self.b_iso.min()) if len(self.b_iso) else 0.0
        self.plan = FcalcPlan.make(self.cell, self.sg, hkl, fm.d_min, b_min=self.b_min)
        self.frac = np.array(self.cell.frac.mat.tolist(), np.float64)
        self.orth = np.array(self.cell.orth.mat.tolist(), np.float64)
        # small models with ANISOU: rfactor sums directly (anisotropic, exact); so do the
        # updates, atom by atom
        self.direct = fm.method == "direct"
        self.u_aniso = None if at.u_aniso is None else np.array(at.u_aniso, np.float64)
        self.fc_all = None
        self.sym = SymmetryIndex(self.sg, hkl)
        self.tc = BoxTransform(self.plan.frame.shape, self.sym)
        mask0 = solvent_mask(to_gemmi(model), self.cell, self.sg, fm.d_min)
        self.mask = LocalMask(self.orth, mask0.shape, self.sg, self._frac(self.xyz),
                              self._mask_radius(self.occ), mask=mask0)
        self.tm = BoxTransform(mask0.shape, self.sym)
        self.scale_c = self.plan.volume / float(np.prod(self.plan.frame.shape))
        self.scale_m = float(self.cell.volume) / float(mask0.size)
        self.unblur_layout = torch_c64(np.exp(self.plan.blur * self.sym.layout_s2(self.frac)
                                              / 4.0) * self.scale_c)
        self.pend_c = self.pend_m = None
        self.rescale_change = RESCALE_CHANGE
        self._syncs = 0                         # full F_calc recomputations (`recompute`)
        self._init_f()
        self._mark()
        self.version = 0
        self.timings = {"start_s": time.perf_counter() - t0}
        log.info("Live X-ray session: %d atoms, %d reflections (%d symmetry operators), "
                 "F_calc grid %s, mask grid %s; R-work %.4f, R-free %s", len(self.xyz),
                 self.n, self.sym.n_ops, "x".join(map(str, self.plan.frame.shape[::-1])),
                 "x".join(map(str, mask0.shape[::-1])), fm.r_work,
                 "n/a" if fm.r_free is None else f"{fm.r_free:.4f}")

    # ------------------------------------------------------------------ helpers
    def _init_f(self):
        fm = self.fmodel
        if self.fc_all is None:
            fc = fm.fc if fm.twin_f is None else np.concatenate([fm.fc, fm.twin_f[0]])
            if len(fc) != len(self.hkl_all):       # twin tested but not kept: F at Th too
                fc = self._full_fc()
            self.fc_all = np.array(fc, np.complex128)
        fmask = fm.fm if fm.twin_f is None else np.concatenate([fm.fm, fm.twin_f[1]])
        if len(fmask) != len(self.hkl_all):
            fmask = self._full_fm(self.mask.mask)
        self.fm_all = np.array(fmask, np.complex128)
        self._refresh()

    def _full_fc(self, state=None, plan=None):
        """F_calc (n_all,) from scratch: of the current atoms, or of ``state`` (xyz, b,
        occ, u_aniso) with ``plan`` (a snapshot, for the background resync)."""
        import torch

        xyz, b, occ, u = state if state is not None else (self.xyz, self.b_iso, self.occ,
                                                          self.u_aniso)
        t = lambda a: torch.as_tensor(a, dtype=torch.float64)
        if self.direct:
            return fcalc_direct_tensor(t(xyz), t(b), t(occ), (self.terms.a, self.terms.b),
                                       self.cell, self.sg, self.hkl_all,
                                       u_aniso=None if u is None else t(u)
                                       ).numpy().astype(np.complex128)
        return fcalc_tensor(t(xyz), t(b), t(occ), self.terms, plan or self.plan
                            ).detach().numpy().astype(np.complex128)

    def _full_fm(self, mask):
        """F_mask (n_all,) of a whole mask array (one FFT), as at the start."""
        import torch

        ft = torch.fft.rfftn(torch.from_numpy(mask)).numpy()
        return gather_p1(ft, self.hkl_all, mask.shape).astype(np.complex128) * self.scale_m

    def _frac(self, xyz):
        return np.asarray(xyz, np.float64) @ self.frac.T

    def _mask_radius(self, occ):
        r = mask_radii(self.model.atoms.element)
        return np.where(self.is_h | (np.asarray(occ) <= 0), -1.0, r)

    def _refresh(self):
        """F_model from F_calc, F_mask and the stored scales (after a fit or a flush)."""

        fm, n = self.fmodel, self.n
        self.flush()
        fm.fc, fm.fm = self.fc_all[:n], self.fm_all[:n]
        if fm.twin_f is not None:
            fm.twin_f = (self.fc_all[n:], self.fm_all[n:])
        sc = fm.scales
        km = np.concatenate([sc.k_mask] * (len(self.hkl_all) // n))
        self.mix = self.fc_all + km * self.fm_all               # F_calc + k_mask F_mask
        self.k_total = f_model(np.ones(n), np.zeros(n), fm.sc, fm.s2, sc).real
        ks = self.sym.layout_s2(self.frac)
        self.kmask_layout = torch_c64(sc.k_sol * np.exp(-sc.b_sol * ks / 4.0))
        self._fmodel_from_mix()

    def _fmodel_from_mix(self):
        fm, n = self.fmodel, self.n
        fm.fmodel = self.k_total * self.mix[:n]
        if fm.twin_f is None:
            fm.fmodel_abs = np.abs(fm.fmodel)
        else:
            fm.fmodel_abs = self.k_total * twin_amplitude(self.mix[:n], self.mix[n:],
                                                          fm.scales.twin_fraction)

    def flush(self):
        """Apply the pending layout changes to F_calc and F_mask (two gathers)."""
        if self.pend_c is not None:
            self.fc_all += self.sym.gather(self.pend_c)
        if self.pend_m is not None:
            self.fm_all += self.sym.gather(self.pend_m)
        self.pend_c = self.pend_m = None
        self.n_pending = 0

    # ------------------------------------------------------------------ public
    def check_atoms(self, idx, xyz=None, b_iso=None, occ=None):
        """Validated (idx, xyz, b, occ) arrays of an update; InputError otherwise."""
        return check_update(len(self.xyz), idx, xyz, b_iso, occ, self.xyz, self.b_iso,
                            self.occ)

    def update(self, idx, xyz=None, b_iso=None, occ=None) -> dict:
        """Move atoms ``idx`` to ``xyz`` (and new B / occupancy); return R and timings.

        Parameters
        ----------
        idx : array_like of int, shape (k,)
            Atom indices (file order of the model).
        xyz : array_like, shape (k, 3), optional
            New positions, Å (default: unchanged).
        b_iso, occ : array_like, shape (k,), optional
            New B (Å²) and occupancies (default: unchanged).

        Returns
        -------
        dict
            ``r_work``, ``r_free``, ``d_r_work``, ``d_r_free`` (change), ``rescaled``
            (whether the scales were refitted), ``mask_points`` (changed mask points in
            the box), ``boxes`` (list of changed regions: Cartesian ``lo``, ``hi`` Å),
            ``timings`` (s).
        """
        idx, xyz, b, occ = self.check_atoms(idx, xyz, b_iso, occ)
        t0 = time.perf_counter()
        rw0, rf0 = self.fmodel.r_work, self.fmodel.r_free
        old = (self.xyz[idx].copy(), self.b_iso[idx].copy(), self.occ[idx].copy())
        full = not self.direct and len(b) and float(b.min()) < self.b_min
        self.xyz[idx], self.b_iso[idx], self.occ[idx] = xyz, b, occ
        t1 = time.perf_counter()
        if full:
            log.info("Live: B %.2f below the starting minimum %.2f: F_calc recomputed",
                     float(b.min()), self.b_min)
            self._replan()
            dc = None
        elif self.direct:
            dc = self._delta_direct(idx, old, (xyz, b, occ))
        else:
            dc = self._delta_fc(idx, old, (xyz, b, occ))
        t2 = time.perf_counter()
        dm, lo, nch = self.mask.update(self._frac(old[0]), self._frac(xyz),
                                       self._mask_radius_of(idx, old[2]),
                                       self._mask_radius_of(idx, occ))
        dm = None if dm is None else self.tm.dft(dm, lo) * self.scale_m
        t3 = time.perf_counter()
        self._apply(dc, dm)
        rescaled = self._maybe_rescale()
        t4 = time.perf_counter()
        self.version += 1
        rw, rf = self.fmodel.r_work, self.fmodel.r_free
        both = np.concatenate([old[0], xyz])
        return {"r_work": rw, "r_free": rf, "d_r_work": rw - rw0,
                "d_r_free": None if rf is None or rf0 is None else rf - rf0,
                "rescaled": rescaled, "mask_points": int(nch),
                "boxes": [{"lo": (both.min(0) - 3.0).tolist(), "hi": (both.max(0) + 3.0).tolist()}],
                "timings": {"fcalc_s": t2 - t1, "mask_s": t3 - t2, "r_s": t4 - t3,
                            "total_s": t4 - t0}}

    def _mask_radius_of(self, idx, occ):
        r = mask_radii(self.model.atoms.element[idx])
        return np.where(self.is_h[idx] | (np.asarray(occ) <= 0), -1.0, r)

    def _delta_fc(self, idx, old, new):
        """ΔF_calc (n_all,) of atoms ``idx`` going from ``old`` to ``new`` (xyz, b, occ)."""
        terms = self.terms.select(np.concatenate([idx, idx]))
        xyz = np.concatenate([old[0], new[0]])
        f = self._frac(xyz)
        f = f - np.floor(f)                                   # as fcalc_tensor: wrap into the cell
        b = np.concatenate([old[1], new[1]])
        occ = np.concatenate([-old[2], new[2]])
        keep = occ != 0
        if not keep.any():
            return None
        frame = self.plan.frame
        boxes = local_density(frame, f[keep] @ self.orth.T, b[keep], occ[keep],
                              terms.select(np.flatnonzero(keep)), blur=self.plan.blur,
                              cutoff=1e-7)
        dsum = None
        for vals, lo in boxes:
            dd = self.tc.dft(vals, lo)
            dsum = dd if dsum is None else dsum + dd
        return dsum * self.unblur_layout

    def _delta_direct(self, idx, old, new):
        """ΔF_calc (n_all,) by direct summation (models whose F_calc is summed directly)."""
        import torch

        u = None
        if self.u_aniso is not None:
            u_old = self.u_aniso[idx].copy()
            changed_b = new[1] != old[1]
            self.u_aniso[idx[changed_b]] = np.nan           # a new B replaces the ANISOU
            u = torch.as_tensor(np.concatenate([u_old, self.u_aniso[idx]]))
        t = lambda a: torch.as_tensor(np.asarray(a, np.float64))
        terms = self.terms.select(np.concatenate([idx, idx]))
        f = fcalc_direct_tensor(t(np.concatenate([old[0], new[0]])),
                                t(np.concatenate([old[1], new[1]])),
                                t(np.concatenate([-old[2], new[2]])), (terms.a, terms.b),
                                self.cell, self.sg, self.hkl_all, u_aniso=u)
        return f.numpy().astype(np.complex128)

    def _apply(self, dc, dm):
        """Add layout changes of F_calc (``dc``) and F_mask (``dm``): one gather for R now,
        the separate F_calc / F_mask later (`flush`). A numpy ``dc`` (direct summation)
        is per reflection already."""

        if dc is None and dm is None:
            return
        if isinstance(dc, np.ndarray):
            self.fc_all += dc
            self.mix += dc
            dc = None
            if dm is None:
                self._fmodel_from_mix()
                return
        mixd = dc if dm is None else (dm * self.kmask_layout if dc is None
                                      else dc + dm * self.kmask_layout)
        self.mix += self.sym.gather(mixd)
        # pending layout sums (complex64, flushed every `FLUSH_EVERY` updates so that their
        # rounding stays ~1e-7 of the moved atoms' own structure factors)
        for name, d in (("pend_c", dc), ("pend_m", dm)):
            if d is not None:
                cur = getattr(self, name)
                if cur is None:
                    setattr(self, name, d.clone())
                else:
                    cur.add_(d)
        self.n_pending += 1
        if self.n_pending >= FLUSH_EVERY:
            self.flush()
        self._fmodel_from_mix()

    def _mark(self):
        self.rx = np.array(self.mix, copy=True)          # F_calc + k_mask F_mask at the fit
        self.norm2 = float((self.mix.real ** 2 + self.mix.imag ** 2).sum())

    def _replan(self):
        self.b_min = float(self.b_iso.min())
        self.plan = FcalcPlan.make(self.cell, self.sg, self.hkl_all, self.fmodel.d_min,
                                   b_min=self.b_min)
        self.scale_c = self.plan.volume / float(np.prod(self.plan.frame.shape))
        self.unblur_layout = torch_c64(np.exp(self.plan.blur * self.sym.layout_s2(self.frac)
                                              / 4.0) * self.scale_c)
        self.flush()
        self.fc_all = self._full_fc()
        self._syncs += 1                    # a background resync under way is stale now
        self._refresh()

    def change(self) -> float:
        """‖F_model − F_model at the last scale fit‖ / ‖F_model‖ (unscaled, all reflections)."""
        d = self.mix - self.rx
        return float(np.sqrt((d.real ** 2 + d.imag ** 2).sum() / max(self.norm2, 1e-30)))

    def _maybe_rescale(self) -> bool:
        if self.change() <= self.rescale_change:
            return False
        self.rescale()
        return True

    def rescale(self) -> None:
        """F_calc and F_mask recomputed from scratch (clearing the complex64 rounding of
        the incremental sums) and all scales refitted: a full `FModel.update`."""
        t = getattr(self, "_thread", None)
        if t is not None:                       # a background fit would be stale: drop it
            t.join()
            self._thread = None
        fm, n = self.fmodel, self.n
        self.flush()
        self.fm_all = self._full_fm(self.mask.mask)
        self.recompute()
        r = fm.refl
        fm.scales = fit_scales(fm.fo, fm.fc, fm.fm, fm.hkl, r.cell, r.spacegroup, fm.work,
                               bins=fm.bins, twin=None if fm.twin_f is None else
                               (self.fc_all[n:], self.fm_all[n:], fm.scales.twin_fraction))
        self._refresh()
        self._mark()
        log.info("Live: scales refitted (k_sol %.3f, B_sol %.1f); R-work %.4f", fm.scales.k_sol,
                 fm.scales.b_sol, fm.r_work)

    def rescale_async(self) -> None:
        """Refit the scales in a background thread; the result is applied by
        `poll_rescale` (the server calls it between requests), so edits keep being
        answered meanwhile.

        The thread first recomputes F_calc and F_mask from scratch for the atoms as they
        are now (the snapshot): the incremental changes are summed in complex64, whose
        rounding (~1e-7 of each change) would otherwise add up over many edits.
        `poll_rescale` replaces the snapshot's incremental F by the exact one and keeps
        the changes made since."""
        import threading

        if getattr(self, "_thread", None) is not None:
            return
        fm, n = self.fmodel, self.n
        self.flush()
        fc, fmask, mix = self.fc_all.copy(), self.fm_all.copy(), self.mix.copy()
        state = (self.xyz.copy(), self.b_iso.copy(), self.occ.copy(),
                 None if self.u_aniso is None else self.u_aniso.copy())
        mask, plan = self.mask.mask.copy(), self.plan
        r = fm.refl
        twin_fraction = fm.scales.twin_fraction
        box = {}

        def work():
            fc_x, fm_x = self._full_fc(state, plan), self._full_fm(mask)
            twin = None if fm.twin_f is None else (fc_x[n:], fm_x[n:], twin_fraction)
            box["scales"] = fit_scales(fm.fo, fc_x[:n], fm_x[:n], fm.hkl, r.cell,
                                       r.spacegroup, fm.work, bins=fm.bins, twin=twin)
            box["exact"] = (fc_x - fc, fm_x - fmask)
        self._thread = threading.Thread(target=work, daemon=True)
        self._thread_box, self._thread_mix, self._thread_syncs = box, mix, self._syncs
        self._thread.start()

    def poll_rescale(self) -> bool:
        """Apply scales and the exact F_calc, F_mask from a finished `rescale_async`;
        True when applied."""
        t = getattr(self, "_thread", None)
        if t is None or t.is_alive():
            return False
        self._thread = None
        if "scales" not in self._thread_box:
            return False
        self.fmodel.scales = self._thread_box["scales"]
        self.flush()
        if self._thread_syncs == self._syncs:      # else F_calc was recomputed meanwhile
            dc, dm = self._thread_box["exact"]
            self.fc_all += dc
            self.fm_all += dm
        self._refresh()
        # the fit saw F at the snapshot: the change since then still counts
        self.rx = self._thread_mix
        self.norm2 = float((self.rx.real ** 2 + self.rx.imag ** 2).sum())
        self.version += 1
        log.info("Live: scales refitted in the background (k_sol %.3f, B_sol %.1f); R-work "
                 "%.4f", self.fmodel.scales.k_sol, self.fmodel.scales.b_sol,
                 self.fmodel.r_work)
        return True

    def recompute(self) -> None:
        """F_calc from scratch (the mask itself is exact; `rescale` redoes F_mask too)."""
        self.flush()
        self.fc_all = self._full_fc()
        self._syncs += 1                    # a background resync under way is stale now
        self._refresh()

    def map_coefficients(self):
        """σA-weighted 2mFo−DFc and mFo−DFc coefficients (n,) of the current model.

        As `densrefine.xtal.maps.map_coefficients`, except that the per-bin σA (the one
        maximum-likelihood fit per bin) is re-estimated only with the scales
        (`rescale`); between fits the bin scales Σ_c, E_c, m and D follow the current
        |F_model| with that σA. Cached per update.
        """
        if getattr(self, "_coef_version", None) == self.version:
            return self._coefs
        from scipy.special import i0e, i1e

        fm = self.fmodel
        if getattr(self, "_sa_scales", None) is not fm.scales:
            h32 = np.asarray(fm.hkl, np.int32)
            ops = self.sg.operations()
            self._eps = ops.epsilon_factor_array(h32).astype(np.float64)
            self._centric = ops.centric_flag_array(h32).astype(bool)
            self._sa = sigmaa(fm.fo, fm.fmodel_abs, fm.hkl, self.sg, fm.scales.bins,
                              work=np.asarray(fm.work, bool))[0]
            self._sa_scales = fm.scales
        bins, work, eps, sa = fm.scales.bins, np.asarray(fm.work, bool), self._eps, self._sa
        fa, fo = fm.fmodel_abs, fm.fo
        nb = int(bins.max()) + 1
        fit = work.copy()
        cnt = np.bincount(bins[fit], minlength=nb)
        fit |= (cnt[bins] == 0)                     # a bin without work reflections: all
        cnt = np.maximum(np.bincount(bins[fit], minlength=nb), 1)
        so = np.bincount(bins[fit], (fo ** 2 / eps)[fit], nb) / cnt
        sc = np.bincount(bins[fit], (fa ** 2 / eps)[fit], nb) / cnt
        eo = fo / np.sqrt(eps * so[bins])
        ec = fa / np.sqrt(eps * sc[bins])
        d = sa * np.sqrt(so[bins] / sc[bins])
        x = 2 * sa * eo * ec / (1 - sa * sa)
        m = np.where(self._centric, np.tanh(x / 2), i1e(x) / np.maximum(i0e(x), 1e-300))
        phase = fm.fmodel / np.maximum(np.abs(fm.fmodel), 1e-30)
        two = np.where(self._centric, m * fo, 2 * m * fo - d * fa)
        two = np.where(work, two, d * fa)
        one = np.where(work, m * fo - d * fa, 0.0)
        self._coefs = (two * phase, one * phase)
        self._coef_version = self.version
        return self._coefs

    def maps(self, lo, hi) -> dict:
        """2mFo−DFc and mFo−DFc on the F_calc cell grid (spacing ≈ d/3) over a box.

        Parameters
        ----------
        lo, hi : sequence of 3 floats
            Cartesian corners of the box, Å; the grid box covers them.

        Returns
        -------
        dict
            ``origin`` (Å, voxel [0, 0, 0]), ``steps`` (3×3, columns: the Å vectors of one
            step along x, y, z), ``shape`` (nz, ny, nx), ``maps`` {"2fofc", "fofc"}
            float32 arrays (e/Å³, absolute scale of F_obs), ``start`` (grid index of the
            first voxel), ``grid`` (nx, ny, nz of the cell grid), ``rms`` of each map over
            the cell (Parseval).
        """
        import torch

        if self.fmodel.twin_f is not None and not hasattr(self, "_sym_map"):
            self._sym_map = SymmetryIndex(self.sg, self.fmodel.hkl)
            self._tc_map = BoxTransform(self.plan.frame.shape, self._sym_map)
        sym = getattr(self, "_sym_map", self.sym)
        tc = getattr(self, "_tc_map", self.tc)
        frame = self.plan.frame
        a, size = periodic_box(frame, lo, hi)
        c2, c1 = self.map_coefficients()
        lay = torch.stack([torch.from_numpy(sym.map_layout(c)).to(torch.complex64)
                           for c in (c2, c1)])
        vol = float(self.cell.volume)
        vals = tc.inverse_box_many(lay, a, size).real / vol
        rms = [float(np.sqrt(np.sum(np.abs(c) ** 2 * sym.map_weight_sum()) / vol ** 2))
               for c in (c2, c1)]
        return {"origin": frame.index_to_xyz(a).tolist(), "steps": frame.steps.tolist(),
                "shape": [int(x) for x in size[::-1]], "start": a.tolist(),
                "grid": [int(x) for x in frame.shape_xyz],
                "cell": [float(x) for x in self.cell.parameters],
                "maps": {"2fofc": vals[0].numpy().astype(np.float32),
                         "fofc": vals[1].numpy().astype(np.float32)},
                "rms": {"2fofc": rms[0], "fofc": rms[1]}}

    def current_model(self):
        """The model with the current coordinates, B and occupancies."""
        at = self.model.atoms.replace(xyz=self.xyz.copy(), b_iso=self.b_iso.copy(),
                                      occ=self.occ.copy(), u_aniso=None if self.u_aniso is None
                                      else self.u_aniso.copy())
        return self.model.with_atoms(at)

    def scores(self) -> dict:
        fm = self.fmodel
        return {"r_work": fm.r_work, "r_free": fm.r_free, "n_work": int(fm.work.sum()),
                "n_free": 0 if fm.free is None else int(fm.free.sum()), "d_min": fm.d_min,
                "k_sol": fm.scales.k_sol, "b_sol": fm.scales.b_sol,
                "change_since_scale_fit": self.change()}


def torch_c64(a):
    """A complex64 tensor of a real or complex array."""
    import torch

    return torch.as_tensor(np.asarray(a)).to(torch.complex64)


def check_update(n_atoms, idx, xyz, b_iso, occ, cur_xyz, cur_b, cur_occ, max_atoms=None):
    """Validate an update and fill unchanged fields; InputError on bad values.

    Returns
    -------
    idx : ndarray (k,), int64
    xyz : ndarray (k, 3)
    b, occ : ndarray (k,)
    """
    try:
        idx = np.asarray(idx, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise input_error("atoms", "atom indices must be integers", "give a list of ints") from None
    if not np.all(np.isfinite(idx)) or np.any(idx != np.round(idx)):
        raise input_error("atoms", "atom indices must be integers", "give a list of ints")
    idx = idx.astype(np.int64)
    if not len(idx):
        raise input_error("atoms", "no atoms given", "give at least one atom index")
    if idx.min() < 0 or idx.max() >= n_atoms:
        raise input_error("atoms", f"atom index {int(idx.min() if idx.min() < 0 else idx.max())} "
                          f"is out of range 0..{n_atoms - 1}", "use indices of the loaded model")
    if len(np.unique(idx)) != len(idx):
        raise input_error("atoms", "an atom index appears twice", "give each atom once")
    if max_atoms is not None and len(idx) > max_atoms:
        raise input_error("atoms", f"{len(idx)} atoms in one update (limit {max_atoms})",
                          "split the update")
    k = len(idx)

    def arr(v, cur, shape, name, lo, hi):
        if v is None:
            return cur[idx].copy()
        try:
            a = np.asarray(v, np.float64).reshape(shape)
        except (TypeError, ValueError):
            raise input_error(name, f"expected {k} values of shape {shape}",
                              "give one value per atom") from None
        if not np.all(np.isfinite(a)) or np.any(a < lo) or np.any(a > hi):
            raise input_error(name, f"values must be finite and within [{lo}, {hi}]",
                              "check the numbers sent")
        return a

    xyz = arr(xyz, cur_xyz, (k, 3), "xyz", -1e4, 1e4)
    b = arr(b_iso, cur_b, (k,), "b_iso", 0.0, 1000.0)
    occ = arr(occ, cur_occ, (k,), "occ", 0.0, 1.0)
    return idx, xyz, b, occ
