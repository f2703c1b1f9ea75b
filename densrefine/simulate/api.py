"""Public entry points: `simulate` (Model → Grid) and `simulate_tensor` (tensors → tensor)."""
from __future__ import annotations

import logging
import warnings

import numpy as np

from ..density import get_density_model
from ..density.terms import DensityTerms, GaussianExtra
from ..device import describe_device, resolve_device
from ..errors import DensrefineWarning, input_error
from ..grid import box_around, inside
from ..types import GridFrame
from .fourier import default_blur, fourier_filter, fourier_truncate, n_terms_kept, refmac_blur
from .kernel import splat
from .params import MAX_RESOLUTION, METHODS, MIN_RESOLUTION, TABLE_NAMES, check_params
from .plan import cutoff_radius

__all__ = ["MAX_RESOLUTION", "METHODS", "MIN_RESOLUTION", "TABLE_NAMES", "atom_radii",
           "check_params", "grid_extra", "simulate", "simulate_tensor"]

log = logging.getLogger("densrefine")



def simulate_tensor(xyz, b_iso, occ, terms, frame, *, blur: float = 0.0, cutoff: float = 1e-5,
                    method: str = "blur", d_min: float | None = None, radius=None):
    """Differentiable model map as a tensor on ``frame``.

    Parameters
    ----------
    xyz : torch.Tensor, shape (N, 3)
        Atom positions (Å); dtype and device of the result follow it.
    b_iso, occ : torch.Tensor, shape (N,)
        Isotropic B (Å²) and occupancies.
    terms : DensityTerms or tuple (a, b) of arrays, shape (N, K) each
        What the density model gives (`densrefine.density.get_density_model(name).terms`),
        or bare scattering-factor Gaussians (`densrefine.density.iam.coefficients`).
    frame : GridFrame
        Output grid (``grid.frame`` or `GridFrame.box`).
    blur : float
        Extra B (Å²) added to every atom before splatting.
    cutoff : float
        Density level defining each atom's box (gemmi's ``cutoff``).
    method : {"blur", "fourier"}
        "blur": return the blurred real-space map. "fourier": then remove ``blur``
        again and cut at ``d_min`` by FFT over the box as a P1 cell.
    d_min : float, optional
        Resolution (Å) for the Fourier method.
    radius : ndarray, shape (N,), optional
        Each atom's cutoff radius (Å) if already known (`atom_radii` of the same
        widths and ``cutoff``); callers that evaluate the same atoms and B many times
        pass it to skip the computation.

    Returns
    -------
    torch.Tensor, shape (nz, ny, nx)
        Differentiable w.r.t. ``xyz``, ``b_iso`` and ``occ``.

    Examples
    --------
    >>> import torch
    >>> from densrefine.density import iam
    >>> fr = GridFrame.box((20, 20, 20), 0.5, origin=(-5.0, -5.0, -5.0), periodic=True)
    >>> xyz = torch.zeros(1, 3, requires_grad=True)
    >>> m = simulate_tensor(xyz, torch.tensor([20.0]), torch.ones(1),
    ...                     iam.coefficients_from(["C"], "xray"), fr, blur=10.0)
    >>> round(float(m.detach().sum() * 0.125), 2)   # ≈ 6 electrons
    6.0
    """
    import torch

    terms = DensityTerms.of(terms)
    centres, amp, width = terms.components(xyz, b_iso, occ, blur)
    if radius is None:
        radius = atom_radii(terms.a, width, cutoff)
    if method == "fourier":
        frame = frame.as_periodic()
    out = splat(centres, amp, width, frame, radius=radius, cutoff=cutoff)
    if terms.extra is not None:   # e.g. the ML density's Δρ potential under the electron table
        out = out + grid_extra(terms.extra, xyz, b_iso, occ, frame, blur, cutoff).to(out.dtype)
    if method == "fourier":
        if d_min is None:
            raise ValueError("simulate_tensor: method='fourier' needs d_min")
        out = fourier_truncate(out, frame, d_min, unblur=blur)
    elif method != "blur":
        raise ValueError(f"simulate_tensor: unknown method {method!r}; use 'blur' or 'fourier'")
    return out if out.dtype == xyz.dtype else out.to(torch.promote_types(out.dtype, xyz.dtype))


def grid_extra(extra, xyz, b_iso, occ, frame, blur: float, cutoff: float):
    """The grid part of `DensityTerms` (``terms.extra``) on ``frame``, as a tensor.

    A `GaussianExtra` is splatted (occupancy × c, widths w + B + ``blur``); a `FieldExtra`
    evaluates itself. With a ``filter`` the density is made on the frame taken as a P1
    box and filtered in Fourier space (`fourier_filter`), e.g. Δρ → its screened
    Mott–Bethe potential.

    Parameters
    ----------
    extra : GaussianExtra or FieldExtra
    xyz, b_iso, occ : torch.Tensor, shapes (N, 3), (N,), (N,)
        The atoms of the terms' rows (Å, Å², occupancy).
    frame : GridFrame
    blur, cutoff : float
        As in `simulate_tensor`.

    Returns
    -------
    torch.Tensor, shape frame.shape
        Differentiable w.r.t. ``xyz``, ``b_iso`` and ``occ``.
    """
    import torch

    per = frame.as_periodic() if extra.filter is not None else frame
    if isinstance(extra, GaussianExtra):
        c, w = (torch.as_tensor(v, dtype=xyz.dtype, device=xyz.device) for v in (extra.c, extra.w))
        width = w + b_iso[:, None] + blur
        radius = cutoff_radius(extra.c, width.detach().cpu().double().numpy(), cutoff)
        rho = splat(xyz, occ[:, None] * c, width, per, radius=radius, cutoff=cutoff)
    else:
        rho = extra.evaluate(xyz, b_iso, occ, per, blur, cutoff)
    if extra.filter is None:
        return rho
    return fourier_filter(rho, per, extra.filter.kernel)


def atom_radii(a, width, cutoff: float) -> np.ndarray:
    """Cutoff radius (Å) of each atom from its table amplitudes ``a`` and widths (N, K)."""
    a_tab = a.detach().cpu().numpy() if hasattr(a, "detach") else a
    return cutoff_radius(np.asarray(a_tab, np.float64), width.detach().cpu().double().numpy(),
                         cutoff)


def _check_overlap(xyz, like, frame):
    """InputError when no atom is inside ``like``'s box; a warning when many are outside."""
    inside_box = inside(xyz, frame)
    if len(xyz) and not inside_box.any():
        centre = np.round(xyz.mean(0), 1).tolist()
        raise input_error(like.path or "like", "no atom of the model lies inside the map box "
                          f"(map origin {np.round(frame.origin, 2).tolist()} Å, extent "
                          f"{np.round(like.extent, 1).tolist()} Å; model centre {centre} Å)",
                          "check the map's origin convention (MRC ORIGIN vs NxSTART) and "
                          "that model and map belong together")
    frac_out = 1.0 - inside_box.mean() if len(xyz) else 0.0
    if frac_out > 0.1:
        warnings.warn(f"{100 * frac_out:.0f}% of the atoms lie outside the map box; their "
                      "density is dropped (or wrapped for a periodic cell)", DensrefineWarning,
                      stacklevel=3)


def simulate(model, like=None, *, resolution, table: str = "electron", method: str = "blur",
             blur: float | None = None, cutoff: float = 1e-5, density: str = "iam",
             device="auto", box=None, spacing: float | None = None, margin: float = 5.0,
             return_tensor: bool = False):
    """Simulate the map of an atomic model at a given resolution.

    Parameters
    ----------
    model : densrefine.Model
        Atoms (Å, Å², occupancies). Hydrogens are included; ANISOU is used as B_eq.
    like : densrefine.Grid, optional
        Map whose frame (shape, voxel size, origin, cell) the result uses. A grid
        that samples its whole cell is treated as periodic. Default: a P1 box
        around the model (``spacing``, ``margin``, ``box``).
    resolution : float
        d in Å (0.5–50).
    table : {"electron", "xray"}
        Scattering factors: electron (Peng et al. 1996, gemmi ``c4322``; cryo-EM)
        or X-ray (IT92, e/Å³).
    method : {"blur", "fourier"}
        "blur": real-space Gaussian blur, B_extra = ``blur`` or 4 d² (ChimeraX
        molmap σ = 0.225 d); smooth, fast, for refinement. "fourier": phenix-style
        model map: splat with gemmi's refmac-compatible blur (or ``blur``), FFT over
        the box as a P1 cell, undo the blur, zero terms with d ≤ ``resolution``.
    blur : float, optional
        Extra B in Å² (≥ 0); default depends on ``method`` (see above).
    cutoff : float
        Density level (table units, occupancy excluded) that bounds each atom's box.
    density : str
        Density model name (`densrefine.density.get_density_model`).
    device : str or torch.device
        "auto", "cpu", "cuda" or "cuda:N".
    box : sequence of 3 ints, optional
        Without ``like``: grid size (nx, ny, nz) centred on the model.
    spacing : float, optional
        Without ``like``: voxel size in Å (default ``resolution / 3``).
    margin : float
        Without ``like`` and ``box``: Å added around the model.
    return_tensor : bool
        Return the torch tensor (nz, ny, nx) instead of a `Grid`.

    Returns
    -------
    Grid or torch.Tensor
        float32 map; for ``like`` the same frame and metadata as ``like``.

    Raises
    ------
    InputError
        Bad parameters, or no atom inside ``like``'s box (origin convention).

    Examples
    --------
    >>> import densrefine as dr                                   # doctest: +SKIP
    >>> m = dr.read_model("model.cif")                           # doctest: +SKIP
    >>> sim = dr.simulate(m, resolution=3.0, method="fourier")   # doctest: +SKIP
    """
    import torch

    d = check_params(resolution, table, method, blur, cutoff)
    dm = get_density_model(density)
    dev = resolve_device(device)
    at = model.atoms
    xyz = np.asarray(at.xyz, np.float64)
    if like is None:
        spacing = d / 3.0 if spacing is None else float(spacing)
        if not spacing > 0:
            raise input_error("spacing", f"{spacing} Å must be positive", "give e.g. 1.0")
        like = box_around(xyz, spacing, margin, box)
        frame = GridFrame.from_grid(like)
    else:
        frame = GridFrame.from_grid(like)
        _check_overlap(xyz, like, frame)
    if method == "fourier":
        frame = frame.as_periodic()
    if blur is None:
        b_min = float(np.min(at.b_iso)) if len(at) else 0.0
        blur = default_blur(d) if method == "blur" else refmac_blur(b_min, frame.voxel_size.max())
    terms = dm.terms(at, table)
    _log_start(method, table, dm.name, blur, cutoff, dev, len(at), frame, d)
    kw = {"dtype": torch.float32, "device": dev}
    out = simulate_tensor(torch.tensor(xyz, **kw), torch.tensor(at.b_iso, **kw),
                          torch.tensor(at.occ, **kw), terms, frame, blur=float(blur),
                          cutoff=float(cutoff), method=method, d_min=d)
    if method == "fourier" and log.isEnabledFor(logging.INFO):   # the count costs an |s|² grid
        log.info("Fourier truncation: FFT over the %d×%d×%d box as a P1 cell, blur B=%.2f Å² "
                 "removed, %d terms with d > %.3g Å kept", *frame.shape_xyz, blur,
                 n_terms_kept(frame.shape, frame, d), d)
    if return_tensor:
        return out
    return like.with_values(out.detach().cpu().numpy().astype(np.float32))


def _log_start(method, table, density, blur, cutoff, dev, n_atoms, frame, d):
    how = (f"real-space Gaussian blur B={blur:.2f} Å² for resolution {d:g} Å"
           if method == "blur" else
           f"Fourier truncation at {d:g} Å after splatting with numerical blur B={blur:.2f} Å²")
    log.info("Simulating model map: method=%s (%s), table=%s, density=%s, cutoff=%g, "
             "device=%s, %d atoms, grid %d×%d×%d (nx×ny×nz) of %s Å voxels, %s", method, how,
             TABLE_NAMES[table], density, cutoff, describe_device(dev), n_atoms,
             *frame.shape_xyz, "×".join(f"{v:.3f}" for v in frame.voxel_size),
             "periodic" if frame.periodic else "clipped at the box edges")
