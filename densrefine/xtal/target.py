"""Reciprocal-space X-ray targets for refinement: the σA amplitude likelihood and least squares.

The model amplitude of reflection h, with everything but the atoms held fixed within a
macro cycle (bulk solvent, scales and twin fraction from `densrefine.xtal.FModel`)::

    F(h)      = F_calc(h; xyz, B, occ) + k_mask(s) F_mask(h)
    |F_m(h)|  = |F(h)|, or √((1−α)|F(h)|² + α|F(Th)|²) with a twin law T
    k(h)      = k_overall · k_iso(s) · k_aniso(h)        (F_obs ≈ k(h) |F_m(h)|)

F_calc is `densrefine.xtal.fcalc.fcalc_tensor` (FFT with the space-group symmetry; B through
the Debye–Waller factor of each atom's Gaussians) or, for anisotropic models the `FModel`
sums directly, `fcalc_direct_tensor` with each atom's U scaled by B/B₀ (so refining B scales
the ANISOU as `fit` writes it out). Both are differentiable in xyz, B and occupancy.

``kind="ml"``: the amplitude likelihood of Read (1986, Acta Cryst. A42, 140) with the
measurement error folded into the variance (Pannu & Read 1996, Acta Cryst. A52, 659;
Murshudov, Vagin & Dodson 1997, Acta Cryst. D53, 240; servalcat's and REFMAC's MLF).
In the frame of the isotropic model (F_o' = F_obs / k(h), σ' = σ_F / k(h), the
anisotropy divided out of the observations as servalcat does)::

    acentric  −log P = log Σ + (F_o'² + D²|F_m|²)/Σ − log I₀(2 F_o' D|F_m| / Σ),  Σ = ε S + 2σ'²
    centric   −log P = ½ log Σ + (F_o'² + D²|F_m|²)/(2Σ) − log cosh(F_o' D|F_m| / Σ),  Σ = ε S + σ'²

(constants dropped; ε the epsilon factor). D and S (σ_A-type parameters: D ≈ σ_A √(Σ_N/Σ_P),
S ≈ Σ_N(1 − σ_A²)) are one pair per resolution bin, estimated by maximising the same
likelihood over the **work** reflections (`estimate_ml_params`) whenever the scales are
refitted. ``kind="lsq"``: Σ (F_obs − k|F_m|)² / (2 v_b), v_b the mean squared residual of
bin b at the refit: least squares written as a Gaussian likelihood, so that both kinds are
negative log-likelihoods in the same units. Free reflections enter neither the target
nor the estimation of D, S or v (nor the scales, `densrefine.xtal.scale`).

Twinned data: the likelihood is applied to the twinned model amplitude above (an
approximation: the exact twin likelihood integrates over both domains' true amplitudes,
as servalcat's intensity-based twin target does).
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch

log = logging.getLogger("densrefine")

TARGET_KINDS = ("ml", "lsq")
"""``XrayTarget(kind=...)``: amplitude likelihood or (Gaussian) least squares."""
RATE = 1.1
"""Oversampling of the target's F_calc grid (spacing ≤ d_min / (2·RATE)). Against the
rate-1.5, cutoff-1e-7 F_calc of `densrefine.xtal.fcalc` the normalised RMS difference is
5e-4 (3AY4) and 1.5e-3 (3IO0), R-work and R-free change by ≤ 1e-5 — far below the model
error refinement works on — at a quarter to a third of the time per evaluation and
gradient (3AY4: 0.23 instead of 0.88 s; benchmarks/RESULTS.md)."""
CUTOFF = 1e-4
"""Density level bounding each atom's splat box in the target's F_calc (see `RATE`)."""


def ml_nll(fo, sigf, fc, d, s, eps, centric):
    """Per-reflection −log P(F_obs | |F_model|) of the σA amplitude likelihood (module doc).

    Parameters
    ----------
    fo, sigf : torch.Tensor, shape (n,)
        Observed amplitudes and their σ, in the frame of ``fc`` (anisotropy divided out).
    fc : torch.Tensor, shape (n,)
        Model amplitudes |F_m| (≥ 0).
    d, s : torch.Tensor, shape (n,)
        D and S of each reflection's bin (S > 0, in units of |F|²).
    eps : torch.Tensor, shape (n,)
        Epsilon factors.
    centric : torch.Tensor, shape (n,), bool

    Returns
    -------
    torch.Tensor, shape (n,)
        −log-likelihood without the terms that depend on the data alone.

    Examples
    --------
    >>> t = lambda *v: torch.tensor(v, dtype=torch.float64)
    >>> nll = ml_nll(t(10.0, 10.0), t(0.0, 0.0), t(10.0, 5.0), t(1.0, 1.0), t(20.0, 20.0),
    ...              t(1.0, 1.0), torch.tensor([False, False]))
    >>> bool(nll[0] < nll[1])              # |F_m| = F_obs is the more likely model
    True
    """
    dfc = d * fc
    sig2 = sigf * sigf
    sa = eps * s + 2.0 * sig2
    x = 2.0 * fo * dfc / sa
    acen = torch.log(sa) + (fo * fo + dfc * dfc) / sa - (torch.log(torch.special.i0e(x)) + x)
    sc = eps * s + sig2
    y = fo * dfc / sc
    cen = (0.5 * torch.log(sc) + (fo * fo + dfc * dfc) / (2.0 * sc)
           - (torch.logaddexp(y, -y) - math.log(2.0)))
    return torch.where(centric, cen, acen)


def ml_nll_grad(fo, sigf, fc, d, s, eps, centric):
    """`ml_nll` in numpy with its derivatives w.r.t. log D and log S (per reflection).

    Used to estimate D and S (`estimate_ml_params`): a few thousand to 10⁵ reflections
    and ~40 evaluations, where numpy's single-threaded ufuncs beat torch's thread pool.

    Returns
    -------
    nll, d_logd, d_logs : ndarray (n,)
    """
    from scipy.special import i0e, i1e

    two = np.where(centric, 1.0, 2.0)                  # acentric 2, centric 1
    big = eps * s + two * sigf * sigf                  # Σ
    dfc = d * fc
    q = fo * fo + dfc * dfc
    x = two * fo * dfc / big                           # X (acentric), Y (centric)
    xa = np.abs(x)
    m = np.where(centric, np.tanh(x), i1e(x) / np.maximum(i0e(x), 1e-300))
    log_bessel = np.where(centric, xa + np.log1p(np.exp(-2 * xa)) - math.log(2.0),
                          np.log(np.maximum(i0e(x), 1e-300)) + x)
    # acentric: log Σ + q/Σ − log I0(X); centric: ½ log Σ + q/(2Σ) − log cosh(Y)
    nll = np.where(centric, 0.5 * np.log(big) + q / (2 * big), np.log(big) + q / big) - log_bessel
    c = np.where(centric, 0.5, 1.0)
    d_dfc = c * 2 * dfc / big - m * two * fo / big     # ∂/∂(D F_c)
    d_big = c / big - c * q / big ** 2 + m * x / big   # ∂/∂Σ
    return nll, d_dfc * dfc, d_big * eps * s


def estimate_ml_params(fo, sigf, fc, eps, centric, bins, n_bins: int | None = None,
                       start=None):
    """D and S per bin maximising the likelihood of ``fo`` given ``fc`` (all numpy, float64).

    Pass the work reflections only. Starting values: D from least squares in the bin,
    S from the residual; then L-BFGS-B on (log D, log S) of all bins together (the
    likelihood is a sum of independent bin terms).

    Parameters
    ----------
    fo, sigf, fc, eps : ndarray (n,)
    centric : ndarray (n,), bool
    bins : ndarray (n,), int
        Bin of each reflection (0 … n_bins − 1).
    start : tuple (d, s) of ndarray (n_bins,), optional
        Starting values (the previous estimate, between macro cycles).

    Returns
    -------
    d, s : ndarray (n_bins,)
        Bins without reflections get D = 1 and the mean S of the others.
    """
    import scipy.optimize

    nb = int(n_bins if n_bins is not None else bins.max() + 1)
    cnt = np.bincount(bins, minlength=nb).astype(np.float64)
    num = np.bincount(bins, fo * fc, nb)
    den = np.maximum(np.bincount(bins, fc * fc, nb), 1e-30)
    d0 = np.clip(num / den, 1e-3, None)
    res = np.bincount(bins, (fo - d0[bins] * fc) ** 2 / eps, nb) / np.maximum(cnt, 1)
    s0 = np.maximum(res, 1e-6 * np.maximum(np.bincount(bins, fo * fo, nb) / np.maximum(cnt, 1),
                                           1e-30))
    scale = float(max(len(fo), 1))

    def fg(p):
        f, gd, gs = ml_nll_grad(fo, sigf, fc, np.exp(p[:nb])[bins], np.exp(p[nb:])[bins], eps,
                                centric)
        g = np.concatenate([np.bincount(bins, gd, nb), np.bincount(bins, gs, nb)])
        return f.sum() / scale, g / scale

    if start is not None:
        d0, s0 = (np.maximum(np.asarray(v, np.float64), 1e-12) for v in start)
    p0 = np.concatenate([np.log(d0), np.log(s0)])
    r = scipy.optimize.minimize(fg, p0, jac=True, method="L-BFGS-B",
                                options={"maxiter": 100, "gtol": 1e-6})
    d, s = np.exp(r.x[:nb]), np.exp(r.x[nb:])
    empty = cnt == 0
    if empty.any():
        d[empty], s[empty] = 1.0, float(np.mean(s[~empty])) if (~empty).any() else 1.0
    return d, s


class XrayTarget:
    """The reciprocal-space target of one `FModel` (module docstring), as a torch callable.

    ``target(xyz, b_iso, occ)`` takes the tensors of all the model's atoms (in the order
    of the model the `FModel` was built from) and returns a 0-d tensor; `refit` updates
    the `FModel` (bulk solvent, scales, twin fraction, R) and the likelihood parameters
    for new coordinates and B (between macro cycles).

    Parameters
    ----------
    fmodel : FModel
        Observed data, scales and the model's F_calc method ("fft" or "direct").
    model : Model
        The model ``fmodel`` was built for (its atoms: elements, occupancies, ANISOU).
    kind : {"ml", "lsq"}
    device, dtype
        Of F_calc (the likelihood itself is evaluated in float64).

    Examples
    --------
    >>> from densrefine.xtal.api import make_fmodel                      # doctest: +SKIP
    >>> tgt = XrayTarget(make_fmodel(model, "5e5z.mtz.gz"), model)       # doctest: +SKIP
    >>> f = tgt(xyz, b, occ); f.backward()                               # doctest: +SKIP
    """

    def __init__(self, fmodel, model, kind: str = "ml", device="cpu", dtype=torch.float32):
        from ..density import get_density_model
        from ..errors import input_error
        from .twin import apply_law

        if kind not in TARGET_KINDS:
            raise input_error("xray_target", f"unknown X-ray target {kind!r}",
                              f"use one of {', '.join(TARGET_KINDS)}")
        self.fmodel, self.kind, self.device, self.dtype = fmodel, kind, device, dtype
        self.model = model
        r = fmodel.refl
        self.n = len(fmodel.hkl)
        hkl = fmodel.hkl
        if fmodel.twin_op is not None:
            hkl = np.concatenate([hkl, apply_law(fmodel.twin_op, fmodel.hkl)])
        self.hkl_all = hkl
        at = model.atoms
        self.terms = get_density_model(fmodel.density).terms(at.replace(u_aniso=None), "xray")
        self.method = fmodel.method
        self.plan, self.u0, self.ml, self.n_eval = None, None, {}, 0
        if self.method == "direct":
            u = np.array(at.u_aniso, np.float64) if at.u_aniso is not None else None
            if u is not None:
                ok = np.isfinite(u).all(1) & (u[:, :3] > 0).all(1)
                b0 = np.asarray(at.b_iso, np.float64)
                # U scaled by B/B₀; rows without ANISOU are zeros → isotropic B in F_calc
                self.u0 = torch.as_tensor(np.where(ok[:, None], u, 0.0) /
                                          np.where(ok & (b0 > 0), b0, 1.0)[:, None],
                                          dtype=dtype, device=device)
        ops = r.spacegroup.operations()
        h32 = np.asarray(fmodel.hkl, np.int32)
        self.eps_all = ops.epsilon_factor_array(h32).astype(np.float64)
        self.centric_all = ops.centric_flag_array(h32).astype(bool)
        self.work_idx = np.flatnonzero(fmodel.work)
        self._plan_b = None
        log.info("X-ray target: %s on %d work reflections (%d free left out), F_calc by %s "
                 "with bulk solvent, scales%s fixed within a macro cycle and refitted between "
                 "them", "amplitude likelihood (Read 1986; sigma_F in the variance, Pannu & "
                 "Read 1996), D and S per resolution bin from the work set" if kind == "ml"
                 else "least squares with per-bin variance", len(self.work_idx),
                 self.n - len(self.work_idx), "FFT with symmetry" if self.method == "fft"
                 else "direct summation (anisotropic U scaled by B/B0)",
                 " and twin fraction" if fmodel.twin_op is not None else "")
        self._set_constants()

    # ------------------------------------------------------------------ F_calc
    def _ensure_plan(self, b_iso) -> None:
        from .fcalc import FcalcPlan

        if self.method != "fft":
            return
        b_min = float(np.min(b_iso)) if len(b_iso) else 0.0
        if self.plan is None or b_min < self._plan_b:
            r = self.fmodel.refl
            # blur B_blur = 8π²/1.1·spacing² − B_min (gemmi's Refmac-compatible choice),
            # planned 5 Å² below the smallest B so that B may drop a little in the cycle
            self._plan_b = max(0.0, b_min - 5.0)
            self.plan = FcalcPlan.make(r.cell, r.spacegroup, self.hkl_all, self.fmodel.d_min,
                                       b_min=self._plan_b, rate=RATE)

    def fcalc(self, xyz, b_iso, occ):
        """F_calc (complex tensor, n or 2n with the twin mates) of all atoms."""
        from .fcalc import fcalc_direct_tensor, fcalc_tensor

        if self.method == "direct":
            r = self.fmodel.refl
            u = None if self.u0 is None else self.u0.to(xyz.dtype) * b_iso[:, None]
            return fcalc_direct_tensor(xyz, b_iso, occ, (self.terms.a, self.terms.b), r.cell,
                                       r.spacegroup, self.hkl_all, u_aniso=u)
        if self.plan is None:
            self._ensure_plan(b_iso.detach().cpu().numpy())
        return fcalc_tensor(xyz, b_iso, occ, self.terms, self.plan, cutoff=CUTOFF)

    # ------------------------------------------------------------------ refit
    def refit(self, xyz, b_iso, warm: bool = True) -> None:
        """Refit bulk solvent, scales (and twin fraction) and D/S for new atoms.

        Parameters
        ----------
        xyz : ndarray (N, 3), Å
        b_iso : ndarray (N,), Å²
        warm : bool
            Start the scales from the previous fit and keep F_mask while the atoms moved
            little (`densrefine.xtal.api.FModel.update`); False: a fresh mask and the
            scale fit from its default starting points (what `densrefine rfactor` does).
        """
        at = self.model.atoms
        xyz, b_iso = np.asarray(xyz, np.float64), np.asarray(b_iso, np.float64)
        new = self.model.with_atoms(at.replace(xyz=xyz, b_iso=b_iso,
                                               u_aniso=self._aniso(b_iso)))
        self._ensure_plan(b_iso)
        kw = {"device": self.device, "dtype": self.dtype}
        with torch.no_grad():
            fc = self.fcalc(torch.as_tensor(xyz, **kw), torch.as_tensor(b_iso, **kw),
                            torch.as_tensor(np.asarray(at.occ, np.float64), **kw))
        self.fmodel.update(new, fc=fc.cpu().numpy().astype(np.complex128), warm=warm)
        self._set_constants(warm=True)

    def _aniso(self, b_iso):
        at = self.model.atoms
        if at.u_aniso is None:
            return None
        b0 = np.asarray(at.b_iso, np.float64)
        f = np.where(b0 > 0, b_iso / np.where(b0 > 0, b0, 1.0), 1.0)
        return np.asarray(at.u_aniso, np.float64) * f[:, None]

    def _set_constants(self, warm: bool = False) -> None:
        """Per-reflection constants of the work set from the current `FModel`; ``warm``:
        D and S start from the previous estimate, and the log line goes to DEBUG."""
        fm, sc = self.fmodel, self.fmodel.scales
        w = self.work_idx
        dw = np.exp(-2 * math.pi ** 2 * np.einsum("ni,ij,nj->n", fm.sc[w], sc.u_aniso,
                                                  fm.sc[w]))
        k = sc.k_overall * sc.k_iso[w] * dw
        fmask = sc.k_mask[w] * fm.fm[w]
        twin = fm.twin_f is not None
        alpha = float(sc.twin_fraction) if twin else 0.0
        fmask_t = sc.k_mask[w] * fm.twin_f[1][w] if twin else None
        fo, sigf = fm.fo[w], np.nan_to_num(np.asarray(fm.refl.sigf, np.float64)[w])
        amp = self._amp_np(fm.fc[w] + fmask, None if not twin else fm.twin_f[0][w] + fmask_t,
                           alpha)
        bins = sc.bins[w]
        nb = int(sc.bins.max()) + 1
        eps, cen = self.eps_all[w], self.centric_all[w]
        def t(a, dt=torch.float64):
            return torch.as_tensor(a, dtype=dt, device=self.device)

        if self.kind == "ml":
            prev = (self.ml["D"], self.ml["S"]) if warm and "D" in self.ml else None
            d, s = estimate_ml_params(fo / k, sigf / k, amp, eps, cen, bins, nb, start=prev)
            self.ml = {"D": d, "S": s}
            self.c = {"fo": t(fo / k), "sigf": t(sigf / k), "d": t(d[bins]), "s": t(s[bins]),
                      "eps": t(eps), "centric": t(cen, torch.bool)}
            nll = ml_nll(*(self.c[x] for x in ("fo", "sigf")), t(amp), self.c["d"],
                         self.c["s"], self.c["eps"], self.c["centric"])
            self.value = float(nll.sum())
            (log.debug if warm else log.info)(
                "ML parameters (work set, %d bins): D %.3f-%.3f, sqrt(S) %.3g-%.3g; -LL %.6g",
                nb, d.min(), d.max(), math.sqrt(s.min()), math.sqrt(s.max()), self.value)
        else:
            r2 = (fo - k * amp) ** 2
            v = np.bincount(bins, r2, nb) / np.maximum(np.bincount(bins, minlength=nb), 1)
            v = np.maximum(v, 1e-12 * max(float(np.mean(fo * fo)), 1e-30))
            self.ml = {"variance": v}
            self.c = {"fo": t(fo), "k": t(k), "inv2v": t(0.5 / v[bins])}
            self.value = float((r2 * 0.5 / v[bins]).sum())
        self.c.update(fmask=torch.as_tensor(fmask, dtype=torch.complex128, device=self.device),
                      alpha=alpha, idx=torch.as_tensor(w, device=self.device))
        if twin:
            self.c.update(fmask_t=torch.as_tensor(fmask_t, dtype=torch.complex128,
                                                  device=self.device),
                          idx_t=torch.as_tensor(w + self.n, device=self.device))

    @staticmethod
    def _amp_np(f, f_t, alpha):
        a2 = (1.0 - alpha) * np.abs(f) ** 2
        if f_t is not None:
            a2 = a2 + alpha * np.abs(f_t) ** 2
        return np.sqrt(a2)

    # ------------------------------------------------------------------ target
    def __call__(self, xyz, b_iso, occ):
        """The target (0-d float64 tensor) for all atoms' xyz (N, 3) Å, B (N,) Å², occ (N,)."""
        c = self.c
        self.n_eval += 1
        fc = self.fcalc(xyz, b_iso, occ).to(torch.complex128)
        f = fc.index_select(0, c["idx"]) + c["fmask"]
        a2 = (1.0 - c["alpha"]) * (f.real ** 2 + f.imag ** 2)
        if "idx_t" in c:
            ft = fc.index_select(0, c["idx_t"]) + c["fmask_t"]
            a2 = a2 + c["alpha"] * (ft.real ** 2 + ft.imag ** 2)
        amp = torch.sqrt(a2 + 1e-12)
        if self.kind == "ml":
            return ml_nll(c["fo"], c["sigf"], amp, c["d"], c["s"], c["eps"], c["centric"]).sum()
        return ((c["fo"] - c["k"] * amp) ** 2 * c["inv2v"]).sum()
