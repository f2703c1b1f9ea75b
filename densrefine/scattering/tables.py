"""Gaussian scattering-factor coefficients per atom (X-ray IT92, electron Peng 1996).

Both tables come from gemmi, which ships them unchanged from the International
Tables for Crystallography:

* X-ray (``table="xray"``): IT92, International Tables Vol. C (1992) Table 6.1.1.4,
  ``f(s) = Σ_{k=1..4} a_k exp(-b_k s²) + c`` with s = sin θ/λ (gemmi ``it92.hpp``;
  the same numbers as CCP4 ``atomsf.lib`` and cctbx ``it1992``). The constant c is
  returned as a fifth Gaussian with b = 0, so that in real space it becomes a
  Gaussian of width B_atom (+ blur), exactly as gemmi's ``DensityCalculatorX`` does.
  Charged atoms use the IT92 ion entry when the table has that ion (e.g. Fe2+,
  O1-); otherwise the neutral atom (gemmi's own calculator ignores charges by
  default, see ``gemmi.IT92_set_ignore_charge``).
* Electron (``table="electron"``): Peng, Ren, Dudarev & Whelan (1996), Acta Cryst.
  A52, 257–276, five Gaussians for neutral atoms as printed in International Tables
  Vol. C (2011) Table 4.3.2.2 (gemmi ``c4322.hpp``, used by ``DensityCalculatorE``;
  also CCP4 ``atomsf_electron.lib``). No constant term; charges are ignored.

Both tables stop at Cf (Z = 98). Deuterium uses the hydrogen entry. Elements the
tables lack (gemmi's unknown element "X", Z = 0, or Z > 98) get the oxygen entry,
as gemmi does; `unknown_elements` lets callers warn about them.
"""
from __future__ import annotations

import contextlib
import functools

import numpy as np

TABLES = ("xray", "electron")
"""Names accepted by `coefficients`."""

N_GAUSS = 5
"""Number of Gaussian terms per atom in both tables (X-ray: 4 + constant)."""

_MAX_Z = 98  # Cf, last element in both tables


def _check_table(table: str) -> str:
    if table not in TABLES:
        raise ValueError(f"unknown scattering table {table!r}; use one of {', '.join(TABLES)}")
    return table


@contextlib.contextmanager
def _it92_charges():
    """Temporarily let gemmi's IT92 table look up ions (restores gemmi's global flag)."""
    import gemmi

    old = gemmi.IT92_get_ignore_charge()
    gemmi.IT92_set_ignore_charge(False)
    try:
        yield
    finally:
        gemmi.IT92_set_ignore_charge(old)


def _is_known(symbol: str) -> bool:
    import gemmi

    el = gemmi.Element(symbol)
    return 0 < el.atomic_number <= _MAX_Z or el.name == "D"


@functools.cache
def _coef_one(symbol: str, charge: int, table: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(a, b) tuples of length 5 for one element/charge; unknown elements use O."""
    import gemmi

    el = gemmi.Element(symbol if _is_known(symbol) else "O")
    if el.name == "D":
        el = gemmi.Element("H")
    if table == "electron":
        c = el.c4322.get_coefs()
        return tuple(c[:5]), tuple(c[5:])
    coef = None
    if charge != 0:
        with _it92_charges():
            coef = gemmi.IT92_get_exact(el, int(charge))
    c = (coef or el.it92).get_coefs()
    # a1..a4, b1..b4, c  →  constant term as a Gaussian with b = 0
    return (tuple(c[0:4]) + (c[8],)), (tuple(c[4:8]) + (0.0,))


def has_ion(symbol: str, charge: int) -> bool:
    """True when the IT92 X-ray table has an entry for this ion (False for charge 0)."""
    import gemmi

    if charge == 0 or not _is_known(symbol):
        return False
    with _it92_charges():
        return gemmi.IT92_get_exact(gemmi.Element(symbol), int(charge)) is not None


def unknown_elements(elements) -> np.ndarray:
    """Boolean mask (N,) of element symbols the tables lack (they are treated as O).

    Parameters
    ----------
    elements : array_like of str, shape (N,)
        Element symbols (any case).
    """
    elements = np.asarray(elements, dtype=str)
    uniq, inv = np.unique(elements, return_inverse=True)
    known = np.array([_is_known(s) for s in uniq], dtype=bool)
    return ~known[inv.reshape(-1)]


def coefficients(elements, charges=None, table: str = "electron") -> tuple[np.ndarray, np.ndarray]:
    """Gaussian coefficients (a_k, b_k) of every atom's scattering factor.

    The real-space density of atom j with isotropic B_j (Å²) is then
    ``Σ_k a_jk (4π/(b_jk+B_j))^{3/2} exp(-4π² r² / (b_jk+B_j))``
    (see `densrefine.density.iam`).

    Parameters
    ----------
    elements : array_like of str, shape (N,)
        Element symbols (any case; "D" is hydrogen; unknown symbols use the O entry).
    charges : array_like of int, shape (N,), optional
        Formal charges; used by the X-ray table when it has the ion, ignored by the
        electron table. Default: all neutral.
    table : {"electron", "xray"}
        Electron: Peng et al. (1996) / ITC Vol. C Table 4.3.2.2. X-ray: IT92
        (ITC Vol. C Table 6.1.1.4) with the constant as a fifth term of b = 0.

    Returns
    -------
    a : ndarray, shape (N, 5), float64
        Amplitudes: electrons for X-ray (Σa = f(0) ≈ Z − charge), Å for electron.
    b : ndarray, shape (N, 5), float64
        Gaussian widths in Å² (0 for the X-ray constant term).

    Examples
    --------
    >>> a, b = coefficients(["C", "O"], table="xray")
    >>> a.shape, round(float(a[0].sum()), 2)
    ((2, 5), 6.0)
    """
    _check_table(table)
    elements = np.asarray(elements, dtype=str).reshape(-1)
    charges = np.zeros(len(elements), int) if charges is None else np.asarray(charges, int)
    if table == "electron":
        charges = np.zeros_like(charges)
    syms, el_inv = np.unique(elements, return_inverse=True)
    key = el_inv.reshape(-1).astype(np.int64) * 512 + (charges.reshape(-1) + 256)
    ukey, inv = np.unique(key, return_inverse=True)
    a_u = np.empty((len(ukey), N_GAUSS))
    b_u = np.empty((len(ukey), N_GAUSS))
    for i, kk in enumerate(ukey):
        a_u[i], b_u[i] = _coef_one(str(syms[kk // 512]).upper(), int(kk % 512) - 256, table)
    inv = inv.reshape(-1)
    return a_u[inv], b_u[inv]
