"""Fit the Ramachandran densities of `densrefine.restraints.rama` (makes ``rama_params.json``).

usage: python3 -m densrefine.restraints.rama_fit [--data DIR] [--exclude 5ni1,...]
                                                 [--out FILE] [--seed 0]

Training data: φ/ψ (`rama.find_residues`) of the deposited models in the shared data
folder (../shared/data, README there): 5E5Z (X-ray 1.66 Å), 5A3H (X-ray 1.82 Å), 3IO0
(X-ray 3.0 Å), 5NI1 (cryo-EM 3.2 Å), 6VYB N-terminal domain (cryo-EM 3.2 Å) and 3J6B
chain 9 (cryo-EM 3.2 Å). Filters: the five backbone atoms have occupancy 1 and no
altloc, and their mean B is ≤ 1.5 × the model's median (B scales differ between X-ray
and cryo-EM models, so the cut is relative; it drops the poorly ordered loops).
cis-Pro is not fitted. Every residue weighs the same.

Model per class: mixture of K sine-model bivariate von Mises components (Singh, Hnizdo
& Demchuk 2002, Biometrika 89, 719), fitted by EM as in Mardia, Taylor & Subramaniam
(2007, Biometrics 63, 505): E-step responsibilities; M-step w_k = mean responsibility
and (μ, ν, κ1, κ2, λ) by L-BFGS on the responsibility-weighted log-likelihood (a
generalized EM step), with log C_k by the periodic trapezoid rule on a 96² grid
(error ~exp(−2π²σ²/h²) < 1e-12 for κ ≤ 150, h = 3.75°). Constraints: 3 ≤ κ ≤ 150
(σ ≈ 33° … 4.7°: no near-uniform component that would make everything "favored",
and a cluster of a few points cannot collapse), λ² < 0.9² κ1κ2 (unimodal components,
Singh et al.). During EM a uniform background component (weight ≤ 2 %, fitted) absorbs
sparse outliers of the training models, so that they do not get a component of their
own; it is dropped from the stored density (weights renormalised). K per class by BIC
over a small range, k-means++ starts on (cos φ, sin φ, cos ψ, sin ψ), two restarts.
Then on a 1° grid: p_max, and the density levels that enclose 98 % ("favored") and
99.95 % ("allowed") of the mass.

Result (seed 0, all six models; 1,283 residues kept of 1,465): general K = 7, Gly 4,
Pro 2, pre-Pro 3; a run takes ~2 min on one CPU core.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib

import numpy as np

from ..io.model import read_model
from .rama import CLASSES, PARAMS_FILE, find_residues, log_density_np

MODELS = {   # name: (path under the data folder, method and resolution)
    "5e5z": ("5e5z/5e5z.pdb.gz", "X-ray 1.66 Å"),
    "5a3h": ("5a3h/5a3h.pdb.gz", "X-ray 1.82 Å"),
    "3io0": ("3io0/3io0_before.pdb.gz", "X-ray 3.0 Å"),
    "5ni1": ("emd-3488_5ni1/5ni1_updated.cif.gz", "cryo-EM 3.2 Å"),
    "6vyb": ("emd-21457_6vyb-ntd/6vyb_Ndom.pdb.gz", "cryo-EM 3.2 Å"),
    "3j6b": ("emd-2566_3j6b-chain9/3J6B_9.pdb.gz", "cryo-EM 3.2 Å"),
}
K_RANGE = {"general": range(5, 10), "gly": range(3, 7), "pro": range(1, 4),
           "prepro": range(2, 5)}
K_MIN, K_MAX = 3.0, 150.0
BG_MAX = 0.02
LAM_MAX = 0.9
B_REL = 1.5
GRID = 96


def training_angles(data_dir, exclude=()) -> tuple[dict, dict]:
    """{class: (n, 2) φ, ψ radians} and {model: counts} from the shared models."""

    per = {c: [] for c in CLASSES}
    counts = {}
    for name, (rel, _) in MODELS.items():
        if name in exclude:
            continue
        m = read_model(os.path.join(data_dir, rel))
        rs = find_residues(m)
        at = m.atoms
        b = np.asarray(at.b_iso)[rs.idx].mean(1)
        ok = (np.asarray(at.occ)[rs.idx] >= 1.0).all(1) & \
            (np.asarray(at.altloc).astype(str)[rs.idx] == "").all(1) & (b <= B_REL * np.median(b))
        pp = np.radians(rs.phi_psi(at.xyz)[ok])
        for k, c in enumerate(CLASSES):
            per[c].append(pp[rs.cls[ok] == k])
        counts[name] = {"residues": len(rs), "kept": int(ok.sum())}
    return {c: np.concatenate(v) for c, v in per.items()}, counts


# ----------------------------------------------------------------------------- EM

def _unpack(raw):
    """Unconstrained (K, 5) → μ, ν, κ1, κ2, λ (torch)."""
    import torch

    k1 = K_MIN + (K_MAX - K_MIN) * torch.sigmoid(raw[:, 2])
    k2 = K_MIN + (K_MAX - K_MIN) * torch.sigmoid(raw[:, 3])
    lam = LAM_MAX * torch.tanh(raw[:, 4]) * torch.sqrt(k1 * k2)
    return raw[:, 0], raw[:, 1], k1, k2, lam


def _log_kernel(phi, psi, mu, nu, k1, k2, lam):
    """(n, K) unnormalised log f of the sine model."""
    import torch

    a, b = phi[:, None] - mu, psi[:, None] - nu
    return k1 * torch.cos(a) + k2 * torch.cos(b) + lam * torch.sin(a) * torch.sin(b)


def _grid(n=GRID):
    import torch

    g = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n) - math.pi
    phi, psi = torch.meshgrid(g, g, indexing="ij")
    return phi.reshape(-1), psi.reshape(-1), (2 * math.pi / n) ** 2


def _log_norm(mu, nu, k1, k2, lam, grid):
    """(K,) log C_k = log ∫∫ exp(kernel) by the periodic trapezoid rule."""
    import torch

    gphi, gpsi, da = grid
    return torch.logsumexp(_log_kernel(gphi, gpsi, mu, nu, k1, k2, lam), 0) + math.log(da)


def _m_step(raw, phi, psi, resp, grid, iters=10):
    import torch

    raw = raw.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([raw], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        par = _unpack(raw)
        ll = (resp * (_log_kernel(phi, psi, *par) - _log_norm(*par, grid))).sum()
        (-ll).backward()
        return -ll

    opt.step(closure)
    return raw.detach()


def _loglik(raw, logw, phi, psi, grid):
    import torch

    par = _unpack(raw)
    lf = _log_kernel(phi, psi, *par) - _log_norm(*par, grid) + logw
    return torch.logsumexp(lf, 1), lf


def _init(x, k, rng):
    """k-means++ centres on the 4-d circle embedding → raw parameters and responsibilities."""
    import torch

    emb = np.concatenate([np.cos(x), np.sin(x)], 1)
    cen = [emb[rng.integers(len(x))]]
    for _ in range(1, k):
        d = np.min([((emb - c) ** 2).sum(1) for c in cen], 0)
        cen.append(emb[rng.choice(len(x), p=d / d.sum())])
    cen = np.array(cen)
    for _ in range(20):
        lab = np.argmin(((emb[:, None] - cen[None]) ** 2).sum(-1), 1)
        cen = np.array([emb[lab == j].mean(0) if np.any(lab == j) else cen[j] for j in range(k)])
    mu, nu = np.arctan2(cen[:, 2], cen[:, 0]), np.arctan2(cen[:, 3], cen[:, 1])
    raw = torch.zeros((k, 5), dtype=torch.float64)
    raw[:, 0], raw[:, 1] = torch.as_tensor(mu), torch.as_tensor(nu)
    raw[:, 2:4] = -2.0                                    # κ ≈ 18 (σ ≈ 14°)
    resp = torch.zeros((len(x), k), dtype=torch.float64)
    resp[torch.arange(len(x)), torch.as_tensor(lab)] = 1.0
    return raw, resp


def fit_mixture(x, k, seed=0, restarts=2, iters=40, tol=1e-5):
    """EM fit of a K-component sine-model mixture to angles ``x`` (n, 2) rad.

    Returns
    -------
    dict
        "w", "mu", "nu", "k1", "k2", "lam", "log_norm" (K,) lists and "loglik" (total).
    """
    import torch

    phi, psi = (torch.as_tensor(x[:, j], dtype=torch.float64) for j in (0, 1))
    grid = _grid()
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(restarts):
        raw, resp = _init(x, k, rng)
        resp, w0, prev = resp * (1 - BG_MAX), BG_MAX, -np.inf
        for _ in range(iters):
            logw = torch.log(resp.mean(0).clamp_min(1e-12))
            raw = _m_step(raw, phi, psi, resp, grid)
            ll, lf = _loglik(raw, logw, phi, psi, grid)
            # uniform background component (weight w0 ≤ BG_MAX) absorbs sparse outliers
            lbg = torch.full_like(ll, math.log(w0 / (4 * math.pi**2)))
            ll = torch.logaddexp(ll, lbg)
            resp = torch.exp(lf - ll[:, None])
            w0 = min(BG_MAX, max(float(torch.exp(lbg - ll).mean()), 1e-6))
            cur = float(ll.sum())
            if cur - prev < tol * len(x):
                break
            prev = cur
        if best is None or cur > best[0]:
            best = (cur, raw, resp.mean(0) / resp.mean(0).sum())
    cur, raw, w = best
    mu, nu, k1, k2, lam = _unpack(raw)
    lc = _log_norm(mu, nu, k1, k2, lam, grid)
    wrap = lambda t: (torch.remainder(t + math.pi, 2 * math.pi) - math.pi)  # noqa: E731
    return {"w": w.tolist(), "mu": wrap(mu).tolist(), "nu": wrap(nu).tolist(),
            "k1": k1.tolist(), "k2": k2.tolist(), "lam": lam.tolist(), "log_norm": lc.tolist(),
            "loglik": cur}


def levels(comp, n=360) -> dict:
    """log p_max and the density levels holding 98 % / 99.95 % of the mass (1° grid)."""

    g = (np.arange(n) + 0.5) * (2 * math.pi / n) - math.pi
    phi, psi = np.meshgrid(g, g, indexing="ij")
    arr = {k: np.asarray(v) for k, v in comp.items() if isinstance(v, list)}
    lp = np.sort(log_density_np(phi.ravel(), psi.ravel(), arr))[::-1]
    mass = np.cumsum(np.exp(lp)) * (2 * math.pi / n) ** 2
    at = lambda f: float(lp[min(np.searchsorted(mass, f * mass[-1]), len(lp) - 1)])  # noqa: E731
    return {"log_p_max": float(lp[0]), "log_p_favored": at(0.98), "log_p_allowed": at(0.9995),
            "grid_mass": float(mass[-1])}


def fit_class(x, krange, seed=0) -> dict:
    """Best-BIC mixture of ``x`` (n, 2) rad over K in ``krange``, with its levels."""
    best = None
    for k in krange:
        if 6 * k >= len(x):
            break
        f = fit_mixture(x, k, seed=seed)
        bic = -2 * f["loglik"] + 6 * k * math.log(len(x))
        if best is None or bic < best[0]:
            best = (bic, k, f)
    bic, k, f = best
    return {**f, **levels(f), "K": k, "bic": bic, "n_train": len(x)}


def main(argv=None):
    here = pathlib.Path(__file__).resolve()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get(
        "DENSREFINE_DATA", str(here.parents[2].parent / "shared" / "data")))
    ap.add_argument("--exclude", default="", help="comma-separated model names to leave out")
    ap.add_argument("--out", default=str(here.parent / PARAMS_FILE))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    exclude = [s for s in a.exclude.split(",") if s]
    x, counts = training_angles(a.data, exclude)
    classes = {c: fit_class(x[c], K_RANGE[c], a.seed) for c in CLASSES}
    meta = {"made_by": "python3 -m densrefine.restraints.rama_fit " + " ".join(argv or []),
            "date": datetime.date.today().isoformat(),
            "model": "mixture of sine-model bivariate von Mises (Singh et al. 2002), EM "
                     "(Mardia, Taylor & Subramaniam 2007); angles in radians, density per rad²",
            "training": {n: {**counts[n], "source": MODELS[n][1]} for n in counts},
            "filters": f"occ 1, no altloc, mean backbone B <= {B_REL} x model median; "
                       "cis-Pro left out", "kappa_range": [K_MIN, K_MAX], "seed": a.seed}
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "classes": classes}, f, indent=1)
    for c in CLASSES:
        p = classes[c]
        print(f"{c}: n {p['n_train']} K {p['K']} loglik/n {p['loglik'] / p['n_train']:.3f} "
              f"favored level {math.exp(p['log_p_favored'] - p['log_p_max']):.3g} p_max, "
              f"allowed {math.exp(p['log_p_allowed'] - p['log_p_max']):.3g} p_max")
    print("wrote", a.out)


if __name__ == "__main__":
    main()
