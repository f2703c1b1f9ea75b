"""Scores of a predicted deformation density on one data-set fragment (numpy + scipy only).

Reference density: ρ_ref = ρ_IAM + Δρ_rich, the stage-2 fit stored with the fragment
(``c_rich``; its residual vs the exact DFT density is ``resid_rich`` in the data set,
≈ 2 % of ‖Δρ‖ in the Coulomb norm at B = 16–36 Å²). A prediction is Δρ_pred from stage-1
coefficients ``c_s`` (N, 8) (`densrefine.density.ml_basis`); the IAM is Δρ_pred = 0.

``density_nmae``
    NMAE = ∫|ρ_IAM + Δρ_pred − ρ_ref| / ∫ρ_ref = ∫|Δρ_pred − Δρ_rich| / N_electrons, on an
    atom-centred Becke grid (Becke 1988, J. Chem. Phys. 88, 2547; Lebedev angular rule
    from scipy, Treutler–Ahlrichs M4-like radial map), the NMAE of Fu et al. 2024.
``potential_r``
    Scaled R of the blurred Coulomb potential of nuclei + electrons at map resolution d
    (B = 4d² Å²): V = FFT⁻¹[ρ̂_charge(k) e^{−B k²/4} / (π k²)] (e/Å; ×14.39964 for V), with
    ρ̂ from the analytic Fourier transforms of the Gaussian (× Cartesian polynomial) terms
    (nuclei as point charges), on a periodic box with ``pad`` Å of vacuum (k = 0 dropped).
    The IAM potential is the same FFT of nuclei + IAM electrons (X-ray IT92 table; not the
    Mott–Bethe electron table). Over the fragment's bounding box + ``margin`` Å:
    R = Σ|V_ref − (k V_model + c)| / Σ|V_ref| with k, c least squares (V's k = 0 term dropped).
"""
from __future__ import annotations

import numpy as np
from numpy.polynomial.hermite import hermval

from ..density import ml_basis
from ..scattering import tables

_Z = {"H": 1, "C": 6, "N": 7, "O": 8, "P": 15, "S": 16, "Na": 11, "Mg": 12, "Cl": 17, "K": 19}


def atomic_number(el: str) -> int:
    """Z of an element symbol (gemmi)."""
    if el in _Z:
        return _Z[el]
    import gemmi

    return gemmi.Element(el).atomic_number


def becke_grid(xyz, n_rad=40, order=23, r_scale=1.0):
    """Atom-centred integration grid with Becke fuzzy-cell weights.

    Parameters
    ----------
    xyz : ndarray, shape (N, 3)
        Atom positions (Å).
    n_rad : int
        Radial points per atom (r = ξ/ln2 · (1+x)^0.6 · ln(2/(1−x)), Gauss–Chebyshev x).
    order : int
        Lebedev order of the angular rule (23: 194 points).

    Returns
    -------
    points : ndarray, shape (P, 3)
    weights : ndarray, shape (P,)
        ∫f ≈ Σ w f(points) (Å³).
    """
    from scipy.integrate import lebedev_rule

    ang, wang = lebedev_rule(order)
    i = np.arange(1, n_rad + 1)
    x = np.cos(i * np.pi / (n_rad + 1))
    wx = np.pi / (n_rad + 1) * np.sin(i * np.pi / (n_rad + 1)) ** 2 / np.sqrt(1 - x ** 2)
    r = r_scale / np.log(2) * (1 + x) ** 0.6 * np.log(2 / (1 - x))
    drdx = r_scale / np.log(2) * (0.6 * (1 + x) ** -0.4 * np.log(2 / (1 - x))
                                  + (1 + x) ** 0.6 / (1 - x))
    wr = wx * drdx * r ** 2
    pts, wts = [], []
    for a in range(len(xyz)):
        p = xyz[a] + (r[:, None, None] * ang.T[None]).reshape(-1, 3)
        w = (wr[:, None] * wang[None]).reshape(-1)
        pts.append(p)
        wts.append(w * _becke_weight(p, xyz, a))
    return np.concatenate(pts), np.concatenate(wts)


def _becke_weight(p, xyz, a):
    """Becke's fuzzy-cell weight of atom a at points p (three smoothing iterations)."""
    n = len(xyz)
    if n == 1:
        return np.ones(len(p))
    d = np.linalg.norm(p[:, None] - xyz[None], axis=-1)  # (P, N)
    R = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1) + np.eye(n)
    mu = (d[:, :, None] - d[:, None, :]) / R[None]  # (P, N, N)
    for _ in range(3):
        mu = 1.5 * mu - 0.5 * mu ** 3
    s = 0.5 * (1 - mu)
    s[:, np.arange(n), np.arange(n)] = 1.0
    cell = s.prod(axis=2)
    return cell[:, a] / cell.sum(1)


def s_density(xyz, c_s, elements, points):
    """Δρ of stage-1 coefficients at points (e/Å³); c_s (N, 8), points (P, 3) Å."""
    alpha, mask = ml_basis.s_exponent_table(elements)
    c = np.where(mask, c_s, 0.0) * (alpha / np.pi) ** 1.5
    r2 = ((points[:, None] - xyz[None]) ** 2).sum(-1)  # (P, N)
    return np.einsum("pnk,nk->p", np.exp(-alpha[None] * r2[..., None]), c)


def rich_density(xyz, frag, points):
    """Δρ of the stored stage-2 fit at points (e/Å³)."""
    out = np.zeros(len(points))
    at, a, pw, c = frag["rich_atom"], frag["rich_alpha"], frag["rich_powers"], frag["c_rich"]
    for i in np.unique(at):
        sel = at == i
        d = points - xyz[i]
        r2 = (d ** 2).sum(1)
        pows = [np.stack([d[:, k] ** m for m in range(4)]) for k in range(3)]  # (4, P) each
        p = pw[sel]
        mono = pows[0][p[:, 0]] * pows[1][p[:, 1]] * pows[2][p[:, 2]]  # (m, P)
        out += np.einsum("mp,m->p", mono * np.exp(-a[sel, None] * r2[None]), c[sel])
    return out


def cart_terms(elements, c_sph):
    """Stage-2 coefficients (N, 42) as Cartesian terms (atom, α, powers, coef), a prediction
    type accepted wherever a c_s array is (`density_nmae`, `blurred_potentials`)."""
    return ml_basis.sph_to_cartesian([str(e) for e in elements], np.asarray(c_sph, float))


def _pred_density(xyz, frag, c, pts):
    if isinstance(c, tuple):  # Cartesian terms (`cart_terms`)
        at, al, pw, co = c
        return rich_density(xyz, {"rich_atom": at, "rich_alpha": al, "rich_powers": pw,
                                  "c_rich": co}, pts)
    return s_density(xyz, c, frag["elements"], pts)


def density_nmae(frag, c_s=None, grid=None):
    """NMAE of ρ_IAM + Δρ_pred against ρ_IAM + Δρ_rich (``c_s=None``: the IAM itself).

    ``c_s``: stage-1 coefficients (N, 8) or stage-2 Cartesian terms (`cart_terms`).
    """
    xyz = np.asarray(frag["xyz"], float)
    pts, w = grid if grid is not None else becke_grid(xyz)
    ref = rich_density(xyz, frag, pts)
    pred = 0.0 if c_s is None else _pred_density(xyz, frag, c_s, pts)
    n_el = sum(atomic_number(str(e)) for e in frag["elements"]) - int(frag["charge"])
    return float(np.sum(w * np.abs(pred - ref)) / n_el)


def _ft_1d(k, x0, alpha, n):
    """FT (e^{−2πikx}) of (x−x0)^n exp(−α (x−x0)²): (M, nk) complex."""
    a = np.pi ** 2 / alpha[:, None]
    t = np.sqrt(a) * k[None]
    out = np.zeros(t.shape, complex)
    for m in np.unique(n):
        sel = n == m
        coef = np.zeros(m + 1)
        coef[m] = 1.0
        h = hermval(t[sel], coef)
        out[sel] = (1j / (2 * np.pi)) ** m * (-np.sqrt(a[sel])) ** m * h
    out *= np.sqrt(np.pi / alpha[:, None]) * np.exp(-a * k[None] ** 2)
    return out * np.exp(-2j * np.pi * k[None] * x0[:, None])


def _charge_terms(frag, what, c_s=None):
    """(centres (M,3), α (M,), powers (M,3), amplitude (M,)) of a charge density (e)."""
    xyz = np.asarray(frag["xyz"], float)
    el = [str(e) for e in frag["elements"]]
    if what == "iam":  # nuclei (+Z, near-delta) and IAM electrons (−)
        a, b = tables.coefficients(el, None, "xray")
        b = np.where(b > 0, b, 1e-3)
        al = 4 * np.pi ** 2 / b
        amp = -a * (al / np.pi) ** 1.5
        zn = np.array([atomic_number(e) for e in el], float)
        anuc = np.full(len(el), 1e6)
        al = np.concatenate([al.reshape(-1), anuc])
        amp = np.concatenate([amp.reshape(-1), zn * (anuc / np.pi) ** 1.5])
        cen = np.concatenate([np.repeat(xyz, b.shape[1], 0), xyz])
        return cen, al, np.zeros((len(al), 3), int), amp
    if what == "rich":
        at = frag["rich_atom"]
        return xyz[at], frag["rich_alpha"], frag["rich_powers"].astype(int), -frag["c_rich"]
    if isinstance(c_s, tuple):  # stage-2 Cartesian terms (`cart_terms`)
        at, al, pw, co = c_s
        return xyz[at], np.asarray(al, float), np.asarray(pw, int).reshape(-1, 3), -np.asarray(co)
    alpha, mask = ml_basis.s_exponent_table(el)
    amp = -(np.where(mask, c_s, 0.0) * (alpha / np.pi) ** 1.5)
    return (np.repeat(xyz, alpha.shape[1], 0), alpha.reshape(-1),
            np.zeros((alpha.size, 3), int), amp.reshape(-1))


def _rho_hat(terms, axes, chunk=256):
    cen, al, pw, amp = terms
    out = 0
    for s in range(0, len(al), chunk):
        sl = slice(s, s + chunk)
        f = [_ft_1d(axes[d], cen[sl, d], al[sl], pw[sl, d]) for d in range(3)]
        fxy = (f[0] * amp[sl, None])[:, :, None] * f[1][:, None, :]
        out = out + np.tensordot(fxy, f[2], axes=(0, 0))
    return out


def blurred_potentials(frag, blur, c_s_list=(), spacing=0.45, pad=10.0):
    """Blurred potentials (e/Å) of reference, IAM and each c_s on one periodic grid.

    Returns
    -------
    origin : ndarray, shape (3,)
    spacing : float
    V : dict
        ``"ref"``, ``"iam"`` and ``"pred0"``, ``"pred1"``, … arrays of shape (n, n, n).
    """
    xyz = np.asarray(frag["xyz"], float)
    lo = xyz.min(0) - pad
    n = int(np.ceil(((xyz.max(0) - xyz.min(0)).max() + 2 * pad) / spacing / 2) * 2)
    k1 = np.fft.fftfreq(n, spacing)
    kk = k1[:, None, None] ** 2 + k1[None, :, None] ** 2 + k1[None, None, :] ** 2
    kern = np.exp(-blur * kk / 4) / (np.pi * np.where(kk > 0, kk, 1.0))
    kern[0, 0, 0] = 0.0
    axes = [k1 * 1.0] * 3
    shift = [lo[d] for d in range(3)]

    def pot(terms):
        cen = terms[0] - np.array(shift)
        rho = _rho_hat((cen,) + terms[1:], axes)
        return np.real(np.fft.ifftn(rho * kern)) / spacing ** 3

    iam = pot(_charge_terms(frag, "iam"))
    V = {"iam": iam, "ref": iam + pot(_charge_terms(frag, "rich"))}
    for i, c in enumerate(c_s_list):
        V[f"pred{i}"] = iam + pot(_charge_terms(frag, "s", c))
    return lo, spacing, V


def scaled_r(v_ref, v_model):
    """R = Σ|v_ref − (k v_model + c)| / Σ|v_ref| with least-squares scale k and offset c.

    v_ref keeps the gauge of `blurred_potentials` (k = 0 term dropped: zero mean over the
    periodic box), so Σ|v_ref| over the region around the fragment is well defined.
    """
    A = np.stack([v_model.ravel(), np.ones(v_model.size)], 1)
    (k, c), *_ = np.linalg.lstsq(A, v_ref.ravel(), rcond=None)
    return float(np.abs(v_ref - k * v_model - c).sum() / np.abs(v_ref).sum())


def potential_r(frag, d_min, c_s_list=(), margin=3.0, pad=10.0):
    """Scaled R at resolution d_min (B = 4 d²) for the IAM and for each prediction.

    Returns
    -------
    dict
        ``"iam"``: R, ``"pred0"``…: R, ``"peak_iam"``: (V_ref − mean)/(V_IAM − mean) at the
        formally charged atoms (mean over the region), NaN when none.
    """
    xyz = np.asarray(frag["xyz"], float)
    spacing = 0.45 if d_min < 2.5 else 0.6
    lo, h, V = blurred_potentials(frag, 4 * d_min ** 2, c_s_list, spacing, pad)
    n = V["ref"].shape[0]
    i0 = np.clip(np.floor((xyz.min(0) - margin - lo) / h).astype(int), 0, n - 1)
    i1 = np.clip(np.ceil((xyz.max(0) + margin - lo) / h).astype(int) + 1, 1, n)
    region = tuple(slice(a, b) for a, b in zip(i0, i1))
    ref = V["ref"][region]
    out = {k: scaled_r(ref, v[region]) for k, v in V.items() if k != "ref"}
    q = np.flatnonzero(np.asarray(frag["formal_charge"]) != 0)
    if len(q):
        idx = np.clip(np.round((xyz[q] - lo) / h).astype(int), 0, n - 1)
        at = tuple(idx.T)
        out["peak_iam"] = float(np.mean((V["ref"][at] - ref.mean())
                                        / (V["iam"][at] - V["iam"][region].mean())))
    else:
        out["peak_iam"] = float("nan")
    return out


def exact_delta_density(raw_npz, points):
    """Exact Δρ = ρ_DFT − ρ_IAM (e/Å³) at points from a raw single point (needs PySCF).

    ``raw_npz`` is a ``ml_data/raw/<id>.npz`` file (kept locally, not committed). Near the
    nuclei (< 0.3 Å) this is dominated by the core mismatch between def2-SVP and the IT92
    table (incl. its constant term as a near-delta), which the stored fits deliberately
    ignore (`densrefine.ml.fitting.B_FIT`).
    """
    from .fitting import BOHR, IAM_DELTA_B
    from .qm import build_mol

    z = np.load(raw_npz, allow_pickle=False)
    el, xyz = [str(e) for e in z["elements"]], np.asarray(z["xyz"], float)
    mol = build_mol(el, xyz, int(z["charges"].sum()))
    ao = mol.eval_gto("GTOval", np.asarray(points) / BOHR)
    rho = np.einsum("pi,ij,pj->p", ao, z["dm"], ao) / BOHR ** 3
    a, b = tables.coefficients(el, None, "xray")
    b = np.where(b > 0, b, IAM_DELTA_B)
    r2 = ((np.asarray(points)[:, None] - xyz[None]) ** 2).sum(-1)
    iam = np.einsum("pnk,nk->p", (4 * np.pi / b[None]) ** 1.5
                    * np.exp(-4 * np.pi ** 2 * r2[..., None] / b[None]), a)
    return rho - iam
