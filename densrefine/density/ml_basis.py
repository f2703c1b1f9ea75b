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
