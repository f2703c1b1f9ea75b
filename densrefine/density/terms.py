"""What a density model hands to `densrefine.simulate`: typed, per atom, no callbacks into
simulate.

`DensityTerms`
    K isotropic Gaussians per atom (amplitudes ``a`` and widths ``b`` (Å²) of the
    scattering factor, occupancy and B not included) plus an optional `GridExtra`: the
    part of the density that is not a sum of isotropic Gaussians per atom, or that
    becomes the map only through a Fourier-space filter.
`GaussianExtra`
    More Gaussians per atom, splatted on their own grid and, with a ``filter``, turned
    into a potential in Fourier space (the learned Δρ under the electron table).
`FieldExtra`
    A density the model evaluates itself on a `densrefine.types.GridFrame` (the stage-2
    s,p,d,f network), optionally filtered the same way.
`ScreenedCoulomb`
    The filter −C/(|s|² + κ²): Mott–Bethe with Poisson screening (κ = 0: plain Coulomb).
`ReactionField`
    What a continuum-solvent response needs (cavity radii, the rest of the solute's
    charge); `densrefine.simulate.grid_extra` adds its potential to a `GaussianExtra`'s.

Rows of ``a``, ``b`` and of a `GaussianExtra` are the atoms, in order; `DensityTerms.select`
keeps a subset of them (for a map term over some of the atoms).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..types import GaussianSet


@dataclass(frozen=True, eq=False)
class ScreenedCoulomb:
    """Fourier filter ΔV(s) = −C Δρ(s)/(|s|² + 1/λ²), s = 1/d (Å⁻¹).

    Mott–Bethe: the electron scattering factor of a charge density Δρ (electrons) is
    −C Δf_x(s)/s² with C = 0.0957 Å for s = 1/d (Mott 1930; Bethe 1930; ITC Vol. C
    4.3.1); 1/λ² regularises s → 0 as a screened (Yukawa) potential of length λ (Å).

    Attributes
    ----------
    constant : float
        C (Å).
    screening : float
        λ (Å).
    """

    constant: float
    screening: float

    def kernel(self, s2):
        """Multiplier of each Fourier term, given |s|² (Å⁻², array or tensor); with an
        infinite screening length the s = 0 term (the mean) is set to 0."""
        if not np.isfinite(self.screening):
            return -self.constant / (s2 + (s2 == 0)) * (s2 != 0)
        return -self.constant / (s2 + 1.0 / self.screening ** 2)


@dataclass(frozen=True, eq=False)
class ReactionField:
    """A continuum solvent's response to the solute's charge (`densrefine.simulate.solvent`).

    The solute's charge density is the `GaussianExtra`'s own Δρ (electrons, counted
    negative) plus ``a``, ``b``: per atom the nucleus (+Z) and the IAM electrons (−f, X-ray
    table), in charge units. The potential of the polarised solvent is found by a Poisson
    solve in the dielectric ``eps`` outside a cavity of atomic spheres (``radii``),
    blurred like the map and scaled by ``constant`` (e/Å → the map's units).

    Attributes
    ----------
    radii : ndarray, shape (N,)
        Cavity radii (Å).
    a, b : ndarray, shape (N, K3)
        Charges (e) and widths (Å², splat convention) of the rest of the solute's charge.
    constant : float
        Map units per e/Å (C·π for the electron table's Mott–Bethe scale).
    eps, width : float
        Solvent dielectric constant; width (Å) of the smooth cavity boundary.
    """

    radii: np.ndarray
    a: np.ndarray
    b: np.ndarray
    constant: float
    eps: float = 78.3553
    width: float = 0.3
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def select(self, rows) -> ReactionField:
        return ReactionField(np.asarray(self.radii)[rows], np.asarray(self.a)[rows],
                             np.asarray(self.b)[rows], self.constant, self.eps, self.width)


@dataclass(frozen=True, eq=False)
class GaussianExtra:
    """Extra isotropic Gaussians per atom, applied on the grid (`densrefine.simulate.grid_extra`).

    Each atom j gets Σ_k c_jk (4π/w)^{3/2} exp(−4π²r²/w), w = w_jk + B_j + blur, times
    its occupancy; with a ``filter`` the sum is splatted on the frame as a P1 box,
    Fourier-transformed, multiplied by ``filter.kernel(|s|²)`` and transformed back.

    Attributes
    ----------
    c : ndarray, shape (N, K2)
        Amplitudes (electrons).
    w : ndarray, shape (N, K2)
        Widths (Å², > 0).
    filter : ScreenedCoulomb or None
    solvent : ReactionField or None
        With a filter: add the solvent's reaction field to the potential.
    """

    c: np.ndarray
    w: np.ndarray
    filter: ScreenedCoulomb | None = None
    solvent: ReactionField | None = None

    def select(self, rows) -> "GaussianExtra":
        return GaussianExtra(np.asarray(self.c)[rows], np.asarray(self.w)[rows], self.filter,
                             None if self.solvent is None else self.solvent.select(rows))


@dataclass(frozen=True, eq=False)
class FieldExtra:
    """A density the density model evaluates on a grid itself.

    Attributes
    ----------
    evaluate : callable
        ``evaluate(xyz, b_iso, occ, frame, blur, cutoff) -> tensor (nz, ny, nx)`` with the
        atoms' tensors (rows as in the terms), differentiable in them.
    n_atoms : int
        Rows it was made for (it cannot be cut to a subset of atoms).
    filter : ScreenedCoulomb or None
    """

    evaluate: Callable[..., Any]
    n_atoms: int
    filter: ScreenedCoulomb | None = None

    def select(self, rows) -> "FieldExtra":
        idx = np.arange(self.n_atoms)[rows]
        if len(idx) != self.n_atoms or np.any(idx != np.arange(self.n_atoms)):
            raise ValueError("this density model's grid term depends on every atom's "
                             "neighbours; it cannot be restricted to a subset of the atoms")
        return self


GridExtra = GaussianExtra | FieldExtra


@dataclass(frozen=True, eq=False)
class DensityTerms:
    """Per-atom Gaussians plus an optional grid-space part (see the module docstring).

    Attributes
    ----------
    a, b : ndarray, shape (N, K)
        Amplitudes and widths (Å²) of the scattering-factor Gaussians.
    table : {"electron", "xray"}
    extra : GaussianExtra or FieldExtra or None
    name : str
        Density model that made them (for logs).

    Examples
    --------
    >>> from densrefine.scattering import tables
    >>> t = DensityTerms(*tables.coefficients(["C", "O"], None, "xray"), table="xray")
    >>> len(t), t.select([1]).a.shape
    (2, (1, 5))
    """

    a: np.ndarray
    b: np.ndarray
    table: str = "electron"
    extra: GridExtra | None = None
    name: str = "iam"
    _tensors: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        a, b = np.asarray(self.a, np.float64), np.asarray(self.b, np.float64)
        if a.ndim != 2 or a.shape != b.shape:
            raise ValueError(f"DensityTerms: a {a.shape} and b {b.shape} must be (N, K) each")
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)

    def __len__(self) -> int:
        return int(self.a.shape[0])

    @classmethod
    def of(cls, coeffs, table: str = "electron") -> "DensityTerms":
        """``coeffs`` as terms: a `DensityTerms` as it is, or a table pair (a, b)."""
        if isinstance(coeffs, DensityTerms):
            return coeffs
        a, b = coeffs
        if hasattr(a, "detach"):
            a, b = a.detach().cpu().numpy(), b.detach().cpu().numpy()
        return cls(a, b, table)

    def select(self, rows) -> "DensityTerms":
        """The terms of the atoms ``rows`` (index array or boolean mask), in that order."""
        extra = None if self.extra is None else self.extra.select(rows)
        return DensityTerms(self.a[rows], self.b[rows], self.table, extra, self.name)

    def with_gaussians(self, a, b) -> "DensityTerms":
        """Same extra part, other Gaussians (e.g. compressed ones, one row per atom)."""
        return DensityTerms(a, b, self.table, self.extra, self.name)

    def components(self, xyz, b_iso, occ, blur=0.0):
        """Gaussian components, differentiable in positions, B and occupancy.

        Parameters
        ----------
        xyz : torch.Tensor, shape (N, 3)
            Positions in Å (the outputs follow its dtype and device).
        b_iso, occ : torch.Tensor, shape (N,)
            Isotropic B (Å²) and occupancies.
        blur : float or torch.Tensor
            Extra B (Å²) added to every Gaussian.

        Returns
        -------
        centres : torch.Tensor, shape (N, 3)
            The atom positions (Å).
        amp : torch.Tensor, shape (N, K)
            occ_j · a_jk.
        width : torch.Tensor, shape (N, K)
            b_jk + B_j + blur (Å²).
        """
        a, b = self.tensors(xyz.dtype, xyz.device)
        return xyz, occ[:, None] * a, b + b_iso[:, None] + blur

    def tensors(self, dtype, device):
        """``a`` and ``b`` as tensors of ``dtype`` on ``device`` (made once per dtype/device:
        a refinement evaluates the same terms hundreds of times)."""
        import torch

        key = (dtype, str(device))
        if key not in self._tensors:
            self._tensors[key] = tuple(torch.as_tensor(v, dtype=dtype, device=device)
                                       for v in (self.a, self.b))
        return self._tensors[key]

    def gaussian_set(self, xyz, b_iso, occ, blur: float = 0.0) -> GaussianSet:
        """The Gaussians (not the grid part) as a flat numpy `GaussianSet` (M = N·K).

        Components of one atom are consecutive; widths include B and ``blur``.
        """
        n, k = self.a.shape
        amp = np.asarray(occ, np.float64)[:, None] * self.a
        width = self.b + np.asarray(b_iso, np.float64)[:, None] + float(blur)
        return GaussianSet(centres=np.repeat(np.asarray(xyz, np.float64), k, axis=0),
                           amplitudes=amp.reshape(-1), widths=width.reshape(-1),
                           atom=np.repeat(np.arange(n), k))
