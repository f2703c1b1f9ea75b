"""Atom-centred Gaussian bases for the deformation density Δρ = ρ_DFT − ρ_IAM (issue 6).

Stage 1 (``s`` basis) — per atom K even-tempered s Gaussians normalised to unit integral,

    g_k(r) = (α_k/π)^{3/2} exp(−α_k r²),   ∫ g_k = 1,   α in Å⁻²,

so a coefficient is a number of electrons and Σ_k c_k over all atoms is ∫Δρ = −Q
(Q the total formal charge). In densrefine's splat convention g_k is amplitude 1 and width
w_k = 4π²/α_k Å² (blur B: w_k + B). Exponents (even-tempered, Ruedenberg et al. 1973,
J. Chem. Phys. 59, 2832; the same idea as the learnable even-tempered basis of Fu et al.
2024, "A Recipe for Charge Density Prediction"):

* heavy atoms, K = 8: α = 40 … 0.25 Å⁻² (ratio ≈ 2.07; σ = 1/√(2α) = 0.11 … 1.4 Å): the
  tightest resolves core/valence reshaping (C 1s–2s), the middle ones bond and lone-pair
  shells (0.4–0.8 Å), the most diffuse carries the screened excess charge of an ion,
* hydrogens, K = 4: α = 12 … 0.3 Å⁻² (ratio ≈ 3.4; σ = 0.2 … 1.3 Å): an H has one electron
  and little core; its Δρ is a shift of charge into the X–H bond.

Stage 2 (``rich`` basis) — even-tempered Cartesian Gaussians
φ(r) = x^i y^j z^k exp(−α r²) (x, y, z in Å relative to the atom, density in e/Å³ per unit
coefficient) with shells (l, α), l = i + j + k; the components of a shell come in PySCF's
Cartesian order (l = 1: x, y, z; l = 2: xx, xy, xz, yy, yz, zz; l = 3: xxx, xxy, xxz, xyy,
xyz, xzz, yyy, yyz, yzz, zzz). Heavy atoms: s 8 (stage-1 exponents) + p 4 + d 3 + f 1
= 48 functions; H: s 4 + p 2 + d 1 = 16. Cartesian d and f contain r²·s and r²·p parts;
they are kept (the metric stays positive definite; the fit is a reference, not a model).
"""
from __future__ import annotations

import numpy as np


def even_tempered(alpha_max: float, alpha_min: float, n: int) -> np.ndarray:
    """n exponents from alpha_max down to alpha_min in geometric progression (Å⁻²)."""
    if n == 1:
        return np.array([float(alpha_max)])
    return alpha_max * (alpha_min / alpha_max) ** (np.arange(n) / (n - 1))


S_HEAVY = even_tempered(40.0, 0.25, 8)
"""Stage-1 s exponents of non-hydrogen atoms (Å⁻²), shape (8,)."""
S_H = even_tempered(12.0, 0.3, 4)
"""Stage-1 s exponents of hydrogen (Å⁻²), shape (4,)."""
K_S = 8
"""Width of the stored c_s arrays: hydrogens use the first 4 columns, the rest are 0."""

RICH_HEAVY = ((0, S_HEAVY), (1, even_tempered(8.0, 0.4, 4)), (2, even_tempered(4.0, 0.5, 3)),
              (3, np.array([1.5])))
RICH_H = ((0, S_H), (1, even_tempered(4.0, 0.6, 2)), (2, np.array([1.5])))


def s_exponents(element: str) -> np.ndarray:
    """Stage-1 exponents (Å⁻²) of one element: `S_H` for H/D, else `S_HEAVY`."""
    return S_H if element in ("H", "D") else S_HEAVY


def s_exponent_table(elements) -> tuple[np.ndarray, np.ndarray]:
    """Padded stage-1 exponents and a validity mask.

    Returns
    -------
    alpha : ndarray, shape (N, 8), float64
        Exponents in Å⁻² (padding: 1.0).
    mask : ndarray, shape (N, 8), bool
        True where the function exists (H: first 4).
    """
    n = len(elements)
    alpha = np.ones((n, K_S))
    mask = np.zeros((n, K_S), bool)
    for i, e in enumerate(elements):
        a = s_exponents(str(e))
        alpha[i, :len(a)] = a
        mask[i, :len(a)] = True
    return alpha, mask


def s_widths(elements) -> tuple[np.ndarray, np.ndarray]:
    """Stage-1 functions in the splat convention: widths w = 4π²/α (Å²) and mask, (N, 8)."""
    alpha, mask = s_exponent_table(elements)
    return 4 * np.pi ** 2 / alpha, mask


def cart_powers(l: int) -> list[tuple[int, int, int]]:
    """Cartesian exponent triples (i, j, k) with i + j + k = l in PySCF order."""
    return [(l - a, a - b, b) for a in range(l + 1) for b in range(a + 1)]


def rich_shells(element: str):
    """Stage-2 shells of one element: tuple of (l, exponents Å⁻²)."""
    return RICH_H if element in ("H", "D") else RICH_HEAVY


def rich_functions(elements) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat list of stage-2 functions of a fragment, in storage order.

    Returns
    -------
    atom : ndarray, shape (M,), int
        Owning atom.
    alpha : ndarray, shape (M,), float64
        Exponent (Å⁻²).
    powers : ndarray, shape (M, 3), int
        Cartesian powers (i, j, k).
    """
    atom, alpha, powers = [], [], []
    for n, e in enumerate(elements):
        for l, exps in rich_shells(str(e)):
            for a in exps:
                for p in cart_powers(l):
                    atom.append(n)
                    alpha.append(a)
                    powers.append(p)
    return np.array(atom), np.array(alpha, float), np.array(powers, int).reshape(-1, 3)


def coulomb_ss(alpha, beta, r):
    """Coulomb interaction of two unit-integral s Gaussians, (g_α|g_β) in e²/Å.

    (g_α|g_β) = erf(√p R)/R with p = αβ/(α+β); → 2√(p/π) at R = 0 (Boys function F0).

    Parameters
    ----------
    alpha, beta : array_like
        Exponents (Å⁻²), broadcastable with r.
    r : array_like
        Centre distance (Å).

    Examples
    --------
    >>> round(float(coulomb_ss(1.0, 1.0, 0.0)), 6)  # 2*sqrt(0.5/pi)
    0.797885
    """
    from scipy.special import erf

    p = np.asarray(alpha, float) * beta / (np.asarray(alpha, float) + beta)
    r = np.asarray(r, float)
    safe = np.where(r > 1e-8, r, 1.0)
    return np.where(r > 1e-8, erf(np.sqrt(p) * safe) / safe, 2 * np.sqrt(p / np.pi))


# ----------------------------------------------------------------------------- stage 2 "sph"
# Pure real-solid-harmonic Gaussians for the equivariant (e3nn) model. One function per
# (atom, shell (l, α), m):
#
#     φ_{αlm}(r) = N_l(α) S_lm(r) exp(−α r²),   S_lm(r) = r^l Y_lm(r̂)   (x, y, z in Å),
#
# with Y_lm the real spherical harmonics in Racah ("norm") normalisation, Σ_m Y_lm² = 1 on the
# unit sphere, i.e. √(4π/(2l+1)) × the orthonormal ones (Racah 1942, Phys. Rev. 62, 438;
# Helgaker, Jørgensen & Olsen 2000, "Molecular Electronic-Structure Theory", §6.4), in the
# component order and sign convention of e3nn 0.5+ (`e3nn.o3.spherical_harmonics(l, r,
# normalize=False, normalization="norm")`; l = 1 is (x, y, z); Geiger & Smidt 2022,
# arXiv:2207.09453). N_l makes a coefficient the function's own multipole moment,
# ∫ S_lm φ_{αlm} d³r = 1:
#
#     N_l(α) = (2l + 1) α^{l+3/2} / (2π Γ(l + 3/2)),
#
# so l = 0 is the unit-integral s Gaussian of stage 1 (c in e), l = 1 a dipole (e·Å), l = 2,
# 3 quadrupole / octupole components (e·Å², e·Å³). Only s functions carry charge. Blurring by
# an isotropic normalised Gaussian of width B (splat convention) keeps the function's form and
# moment and only changes α → α' = 4π²/(4π²/α + B) (Hobson's theorem: S_lm(r) e^{−αr²} =
# (−2α)^{−l} S_lm(∇) e^{−αr²}, and S_lm(∇) commutes with the convolution), see `sph_blur`.
#
# Per-atom layout = e3nn irreps SPH_IRREPS "8x0e+4x1o+3x2e+1x3o" (42 columns: the 8 s, then the
# 4 p shells × 3, the 3 d shells × 5, the f shell × 7); hydrogen uses the subset
# 4x0e + 2x1o + 1x2e (15 functions) in the first columns of each block (mask).
SPH_HEAVY = RICH_HEAVY
"""Stage-2 shells of non-hydrogen atoms: (l, exponents Å⁻²), s 8 + p 4 + d 3 + f 1."""
SPH_H = RICH_H
"""Stage-2 shells of hydrogen: s 4 + p 2 + d 1."""
SPH_IRREPS = "8x0e+4x1o+3x2e+1x3o"
SPH_MUL = (8, 4, 3, 1)
"""Shells per l in the per-atom layout (l = 0 … 3)."""
K_SPH = sum(m * (2 * l + 1) for l, m in enumerate(SPH_MUL))
"""Width of the per-atom stage-2 coefficient arrays: 42."""


def sph_norm(l, alpha):
    """N_l(α) (Å^{−(l+3)}): ∫ S_lm · N_l S_lm e^{−αr²} d³r = 1 (see the section comment)."""
    from scipy.special import gamma

    alpha = np.asarray(alpha, float)
    return (2 * l + 1) * alpha ** (l + 1.5) / (2 * np.pi * gamma(l + 1.5))


def sph_blur(alpha, blur):
    """Exponent (Å⁻²) of a stage-2 function after an isotropic blur of width B Å² (any l)."""
    return 4 * np.pi ** 2 / (4 * np.pi ** 2 / np.asarray(alpha, float) + blur)


def sph_columns():
    """Per-atom column layout: l (42,), shell index within its l (42,), m index (42,)."""
    ls, shell, m = [], [], []
    for l, mul in enumerate(SPH_MUL):
        for s in range(mul):
            ls += [l] * (2 * l + 1)
            shell += [s] * (2 * l + 1)
            m += list(range(2 * l + 1))
    return np.array(ls), np.array(shell), np.array(m)


def sph_shells(element: str):
    """Stage-2 shells of one element: tuple of (l, exponents Å⁻²)."""
    return SPH_H if element in ("H", "D") else SPH_HEAVY


def sph_table(elements) -> tuple[np.ndarray, np.ndarray]:
    """Exponents (N, 42) Å⁻² (padding 1.0) and mask (N, 42) of the stage-2 basis."""
    ls, shell, _ = sph_columns()
    alpha = np.ones((len(elements), K_SPH))
    mask = np.zeros((len(elements), K_SPH), bool)
    for i, e in enumerate(elements):
        for l, exps in sph_shells(str(e).strip().capitalize()):
            for s, a in enumerate(exps):
                sel = (ls == l) & (shell == s)
                alpha[i, sel] = a
                mask[i, sel] = True
    return alpha, mask


_MONO = {}


def solid_harmonic_monomials(l: int) -> np.ndarray:
    """C (2l+1, n_mono): S_lm(x, y, z) = Σ_k C[m, k] x^i y^j z^k over `cart_powers(l)`.

    Obtained once from e3nn's polynomials (exact to rounding: the monomials are a basis).
    """
    l = int(l)
    if l not in _MONO:
        import torch
        from e3nn import o3

        rng = np.random.default_rng(1)
        p = rng.normal(size=(64, 3))
        y = o3.spherical_harmonics(l, torch.from_numpy(p), normalize=False,
                                   normalization="norm").numpy()
        mono = np.stack([np.prod(p ** np.array(k), 1) for k in cart_powers(l)], 1)
        _MONO[l] = np.linalg.lstsq(mono, y, rcond=None)[0].T
    return _MONO[l]


def solid_harmonics(l: int, d: np.ndarray) -> np.ndarray:
    """S_lm(d) (P, 2l+1) for displacements d (P, 3) Å (numpy, e3nn order/normalisation)."""
    mono = np.stack([np.prod(d ** np.array(k), 1) for k in cart_powers(l)], 1)
    return mono @ solid_harmonic_monomials(l).T


def sph_density(xyz, c_sph, elements, points, blur: float = 0.0) -> np.ndarray:
    """Δρ (P,) e/Å³ of stage-2 coefficients c_sph (N, 42) at points (P, 3), optionally blurred."""
    alpha, mask = sph_table(elements)
    ls, _, m = sph_columns()
    out = np.zeros(len(points))
    for i in range(len(xyz)):
        d = points - xyz[i]
        r2 = (d * d).sum(1)
        sh = [solid_harmonics(l, d) for l in range(4)]
        for k in np.flatnonzero(mask[i] & (c_sph[i] != 0)):
            a = sph_blur(alpha[i, k], blur)
            out += c_sph[i, k] * sph_norm(ls[k], a) * sh[ls[k]][:, m[k]] * np.exp(-a * r2)
    return out


def sph_to_cartesian(elements, c_sph):
    """Stage-2 coefficients as Cartesian terms c · x^i y^j z^k exp(−α r²) (rich convention).

    Returns
    -------
    atom (M,) int, alpha (M,) Å⁻², powers (M, 3) int, coef (M,) e/Å^{3+l}
    """
    alpha, mask = sph_table(elements)
    ls, _, m = sph_columns()
    atom, al, pw, co = [], [], [], []
    for i in range(len(elements)):
        for k in np.flatnonzero(mask[i] & (c_sph[i] != 0)):
            l = ls[k]
            row = solid_harmonic_monomials(l)[m[k]] * sph_norm(l, alpha[i, k]) * c_sph[i, k]
            for p, v in zip(cart_powers(l), row):
                if abs(v) > 0:
                    atom.append(i)
                    al.append(alpha[i, k])
                    pw.append(p)
                    co.append(v)
    return (np.array(atom, int), np.array(al, float), np.array(pw, int).reshape(-1, 3),
            np.array(co, float))
