"""Independent-atom model (IAM): spherical atoms as sums of Gaussians.

Atom j (position r_j Å, isotropic B_j Å², occupancy occ_j) with table coefficients
(a_jk, b_jk) contributes, at resolution blur B_extra (Å²),

    ρ_j(r) = occ_j Σ_k a_jk (4π/w_jk)^{3/2} exp(-4π² |r − r_j|² / w_jk),
    w_jk = b_jk + B_j + B_extra,

the Fourier transform of f_j(s) exp(-(B_j + B_extra) s²/4), s = 1/d (Å⁻¹). The
integral of ρ_j is occ_j Σ_k a_jk (electrons for X-ray). Tables:
`densrefine.scattering.tables` (IT92 X-ray with the constant as a b = 0 term;
Peng et al. 1996 electron). Hydrogens are included like any other atom.

Anisotropic displacement (ANISOU) is not modelled yet: B_iso (B_eq when the file
gives ANISOU) is used and the fact is logged.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np

from ..errors import DensrefineWarning
from ..scattering import tables
from .terms import DensityTerms

log = logging.getLogger("densrefine")

name = "iam"


def _labels(atoms, mask, limit=5) -> str:
    idx = np.flatnonzero(mask)
    out = [f"{atoms.chain[i]}/{atoms.res_name[i]}{atoms.res_seq[i]}/{atoms.atom_name[i]}"
           f" ({atoms.element[i] or '?'})" for i in idx[:limit]]
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return ", ".join(out) + more


def coefficients(atoms, table: str = "electron") -> tuple[np.ndarray, np.ndarray]:
    """Scattering-factor Gaussians of every atom, with warnings for oddities.

    Parameters
    ----------
    atoms : densrefine.Atoms
        N atoms (uses ``element``, ``charge``, ``u_aniso`` and the name fields).
    table : {"electron", "xray"}
        See `densrefine.scattering.tables.coefficients`.

    Returns
    -------
    a, b : ndarray, shape (N, 5), float64
        Amplitudes and widths (Å²).

    Warns
    -----
    DensrefineWarning
        When some elements are not in the table; they are treated as O (as gemmi does).
    """
    unknown = tables.unknown_elements(atoms.element)
    if unknown.any():
        warnings.warn(f"{int(unknown.sum())} atom(s) with an element the {table} table lacks "
                      f"are treated as O: {_labels(atoms, unknown)}", DensrefineWarning,
                      stacklevel=2)
    charged = np.asarray(atoms.charge) != 0
    if table == "xray" and charged.any():
        ci = np.flatnonzero(charged)
        ions = {(e, int(c)) for e, c in zip(atoms.element[ci], atoms.charge[ci])}
        has = {k: tables.has_ion(*k) for k in ions}
        n_ion = sum(has[(e, int(c))] for e, c in zip(atoms.element[ci], atoms.charge[ci]))
        log.info("X-ray table: %d charged atom(s) use IT92 ion entries, %d (no entry) use the "
                 "neutral atom", n_ion, len(ci) - n_ion)
    elif charged.any():
        log.info("Electron table is for neutral atoms: charges of %d atom(s) ignored",
                 int(charged.sum()))
    if atoms.u_aniso is not None:
        n_aniso = int(np.isfinite(atoms.u_aniso).all(axis=1).sum())
        if n_aniso:
            log.info("ANISOU of %d atom(s) treated isotropically (B_eq from B_iso)", n_aniso)
    return tables.coefficients(atoms.element, atoms.charge, table)


def terms(atoms, table: str = "electron") -> DensityTerms:
    """The IAM's `DensityTerms` of ``atoms``: the table Gaussians, no grid part.

    Examples
    --------
    >>> from densrefine.build import ideal_peptide
    >>> t = terms(ideal_peptide("AG").atoms, "xray")
    >>> t.name, t.a.shape[1], t.extra is None
    ('iam', 5, True)
    """
    a, b = coefficients(atoms, table)
    return DensityTerms(a, b, table, name=name)


def coefficients_from(elements, table: str = "electron", charges=None):
    """Shortcut: table coefficients for a list of element symbols (no warnings)."""
    return tables.coefficients(elements, charges, table)
