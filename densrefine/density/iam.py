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
from ..types import GaussianSet

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


def components(xyz, b_iso, occ, coeffs, blur=0.0):
    """Gaussian components of the IAM, differentiable in xyz, B and occupancy.

    Parameters
    ----------
    xyz : torch.Tensor, shape (N, 3)
        Positions in Å (floating dtype; the outputs follow its dtype and device).
    b_iso : torch.Tensor, shape (N,)
        Isotropic B in Å².
    occ : torch.Tensor, shape (N,)
        Occupancies.
    coeffs : tuple (a, b) of array_like or torch.Tensor, each shape (N, K)
        Table coefficients (`coefficients`); amplitudes and widths in Å².
    blur : float or torch.Tensor
        Extra B (Å²) added to every Gaussian.

    Returns
    -------
    centres : torch.Tensor, shape (N, 3)
        Gaussian centres in Å (the atom positions).
    amp : torch.Tensor, shape (N, K)
        Integrated amplitude of each Gaussian, occ_j a_jk.
    width : torch.Tensor, shape (N, K)
        w_jk = b_jk + B_j + blur in Å².

    Examples
    --------
    >>> import torch
    >>> xyz = torch.zeros(1, 3); b = torch.tensor([20.0]); occ = torch.ones(1)
    >>> c, amp, w = components(xyz, b, occ, coefficients_from(["C"], "xray"), blur=0.0)
    >>> amp.shape, round(float(amp.sum()), 2), round(float(w[0, -1]), 1)
    (torch.Size([1, 5]), 6.0, 20.0)
    """
    import torch

    a, b = (torch.as_tensor(c, dtype=xyz.dtype, device=xyz.device) for c in coeffs)
    amp = occ[:, None] * a
    width = b + b_iso[:, None] + blur
    return xyz, amp, width


def coefficients_from(elements, table: str = "electron", charges=None):
    """Shortcut: table coefficients for a list of element symbols (no warnings)."""
    return tables.coefficients(elements, charges, table)


def gaussian_set(model, table: str = "electron", blur: float = 0.0) -> GaussianSet:
    """The model's IAM Gaussians as a flat numpy `GaussianSet` (M = N·K components).

    Parameters
    ----------
    model : densrefine.Model
        Atoms to convert.
    table : {"electron", "xray"}
        Scattering table.
    blur : float
        Extra B in Å² added to every Gaussian.

    Returns
    -------
    GaussianSet
        ``centres`` (M, 3) Å, ``amplitudes`` (M,), ``widths`` (M,) Å², ``atom`` (M,)
        index of the owning atom (components of one atom are consecutive).
    """
    at = model.atoms
    a, b = coefficients(at, table)
    k = a.shape[1]
    amp = np.asarray(at.occ)[:, None] * a
    width = b + np.asarray(at.b_iso)[:, None] + float(blur)
    return GaussianSet(centres=np.repeat(np.asarray(at.xyz), k, axis=0),
                       amplitudes=amp.reshape(-1), widths=width.reshape(-1),
                       atom=np.repeat(np.arange(len(at)), k))
