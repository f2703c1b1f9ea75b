"""Reaction field of a continuum solvent on a map grid: a Poisson solve with a dielectric
boundary from the atoms (issue 21).

The solute (nuclei + electrons, charge density ρ in e/Å³, positive = positive charge)
sits in a cavity of dielectric 1 inside water (ε_s = 78.36). The potential obeys
∇·(ε∇φ) = −4πρ (Gaussian units, φ in e/Å); with φ = φ_vac + φ_rf and ∇²φ_vac = −4πρ,

    −∇·(ε ∇φ_rf) = ∇·((ε − 1) ∇φ_vac),

the finite-difference Poisson equation of DelPhi and APBS (Warwicker & Watson 1982,
J. Mol. Biol. 157, 671; Baker et al. 2001, PNAS 98, 10037), here on the (periodic) map
box. φ_vac comes from an FFT with the finite-difference Laplacian's own symbol, so that ε ≡ 1
gives φ_rf ≡ 0 exactly; the equation is solved by conjugate gradients (Hestenes & Stiefel
1952) preconditioned with ε^{-1/2} L⁻¹ ε^{-1/2}, L the constant-coefficient Laplacian
inverted by FFT. Only the k = 0 term is dropped (a net charge gets a neutralising
background).

Cavity: the union of atomic spheres (radii from `densrefine.density.cavity`), with a smooth boundary (a product of error-function steps of width ``width``, cf. the
Gaussian dielectric of Grant, Pickup & Nicholls 2001, J. Comput. Chem. 22, 608):

    ε(r) = 1 + (ε_s − 1) Π_j ½ erfc((R_j − |r − r_j|)/w).

This is the same continuum as the PCM the training and validation fragments were computed
in (Tomasi, Mennucci & Cammi 2005, Chem. Rev. 105, 2999): the PCM's surface charges are this
equation's polarisation charge on a sharp boundary.
"""
from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger("densrefine")

EPS_WATER = 78.3553
"""Static dielectric constant of water at 298 K (as PySCF's ``eps`` for water)."""


def dielectric(xyz, radii, frame, eps: float = EPS_WATER, width: float = 0.3):
    """ε on the grid of an orthogonal ``frame`` (tensor (nz, ny, nx), dtype/device of xyz).

    Parameters
    ----------
    xyz : torch.Tensor, shape (N, 3)
        Atom positions (Å).
    radii : array_like, shape (N,)
        Cavity radii (Å), `cavity_radii`.
    frame : densrefine.types.GridFrame
    eps : float
        Solvent dielectric constant.
    width : float
        Width w (Å) of the error-function step at each sphere.

    Examples
    --------
    >>> import torch
    >>> from densrefine.types import GridFrame
    >>> fr = GridFrame.box((20, 20, 20), 0.5, origin=(-5.0, -5.0, -5.0))
    >>> e = dielectric(torch.zeros(1, 3, dtype=torch.float64), [2.0], fr)
    >>> round(float(e[10, 10, 10]), 3), round(float(e[0, 0, 0]), 1)   # centre, corner
    (1.0, 78.4)
    """
    import torch

    h = torch.as_tensor(frame.voxel_size, dtype=xyz.dtype, device=xyz.device)
    org = torch.as_tensor(np.array(frame.origin, float), dtype=xyz.dtype, device=xyz.device)
    n = torch.as_tensor(frame.shape_xyz, device=xyz.device)
    r = torch.as_tensor(np.asarray(radii, float), dtype=xyz.dtype, device=xyz.device)
    reach = float(r.max()) + 3.0 * width
    m = [math.ceil(reach / float(v)) for v in frame.voxel_size]
    off = torch.stack(torch.meshgrid(*(torch.arange(-k, k + 1, device=xyz.device) for k in m),
                                     indexing="ij"), -1).reshape(-1, 3)       # (P, 3) x,y,z
    logs = torch.zeros(int(np.prod(frame.shape)), dtype=xyz.dtype, device=xyz.device)
    for s in range(0, len(xyz), 512):
        c = xyz[s:s + 512].detach()
        base = torch.round((c - org) / h).long()
        idx = base[:, None, :] + off[None]                                     # (B, P, 3)
        d = ((org + idx * h) - c[:, None]).norm(dim=-1)
        val = torch.log(0.5 * torch.erfc((r[s:s + 512, None] - d) / width)).clamp(min=-60.0)
        if frame.periodic:
            idx = idx % n
        ok = ((idx >= 0) & (idx < n)).all(-1)
        flat = (idx[..., 2] * n[1] + idx[..., 1]) * n[0] + idx[..., 0]
        logs.index_add_(0, flat[ok], val[ok])
    return (1.0 + (eps - 1.0) * torch.exp(logs)).reshape(frame.shape)


def _div_grad(phi, kappa, h):
    """−∇·(κ ∇φ) with face values (κ_i + κ_{i+1})/2, periodic, on (nz, ny, nx)."""
    import torch

    out = torch.zeros_like(phi)
    for ax, hd in zip((2, 1, 0), h):                     # tensor axis of x, y, z
        kf = 0.5 * (kappa + torch.roll(kappa, -1, ax))
        flux = kf * (torch.roll(phi, -1, ax) - phi) / (hd * hd)
        out -= flux - torch.roll(flux, 1, ax)
    return out


def _laplace_symbol(shape, h, like):
    """Eigenvalues of −∇² (7-point finite differences, periodic) for rfftn terms."""
    import torch

    nz, ny, nx = shape
    lam = 0
    for n, hd, full, view in ((nx, h[0], False, (1, 1, -1)), (ny, h[1], True, (1, -1, 1)),
                              (nz, h[2], True, (-1, 1, 1))):
        k = torch.fft.fftfreq(n, device=like.device, dtype=like.dtype) if full else \
            torch.fft.rfftfreq(n, device=like.device, dtype=like.dtype)
        lam = lam + ((2 - 2 * torch.cos(2 * math.pi * k)) / (hd * hd)).reshape(view)
    return lam


def reaction_field(rho, eps, frame, tol: float = 1e-4, maxiter: int = 400, x0=None):
    """Reaction-field potential φ_rf (e/Å) of charge density ``rho`` in the dielectric ``eps``.

    Parameters
    ----------
    rho : torch.Tensor, shape (nz, ny, nx)
        Charge density (e/Å³, positive = positive charge) on an orthogonal frame.
    eps : torch.Tensor, shape (nz, ny, nx)
        Dielectric constant on the same grid (`dielectric`).
    frame : densrefine.types.GridFrame
        The grid (taken as periodic).
    tol : float
        Relative residual ‖r‖/‖b‖ at which conjugate gradients stop.
    maxiter : int
        Most iterations.
    x0 : torch.Tensor, optional
        Starting guess (e.g. the field before the atoms moved); zero by default.

    Returns
    -------
    phi_rf : torch.Tensor, shape (nz, ny, nx)
        Not differentiable (computed without autograd; a fixed field for refinement).
    info : dict
        ``iterations``, ``residual``.

    Examples
    --------
    Born: an ion in a spherical cavity (radius 3 Å) feels a uniform reaction field inside
    it, and in the solvent the total potential is flat (the ion is screened), while the
    vacuum potential still drops.

    >>> import torch
    >>> from densrefine.types import GridFrame
    >>> fr = GridFrame.box((40, 40, 40), 0.5, origin=(-10.0, -10.0, -10.0), periodic=True)
    >>> eps = dielectric(torch.zeros(1, 3, dtype=torch.float64), [3.0], fr, width=0.2)
    >>> rho = torch.zeros(fr.shape, dtype=torch.float64)
    >>> rho[20, 20, 20] = 1.0 / 0.125                      # one e in the centre voxel
    >>> phi, info = reaction_field(rho, eps, fr)
    >>> round(float(phi[20, 20, 20] - phi[20, 20, 23]), 3)   # centre vs 1.5 Å: uniform
    0.0
    >>> vac = reaction_field(rho, torch.ones_like(eps), fr)[0]  # ε ≡ 1: no field at all
    >>> float(vac.abs().max())
    0.0
    """
    import torch

    with torch.no_grad():
        h = [float(v) for v in frame.voxel_size]
        shape = tuple(rho.shape)
        lam = _laplace_symbol(shape, h, rho)
        inv = torch.where(lam > 0, 1.0 / torch.where(lam > 0, lam, 1.0), 0.0)
        phi_vac = torch.fft.irfftn(torch.fft.rfftn(4 * math.pi * rho) * inv, s=shape)
        b = -_div_grad(phi_vac, eps - 1.0, h)
        isq = eps.rsqrt()

        def precond(r):
            return isq * torch.fft.irfftn(torch.fft.rfftn(isq * r) * inv, s=shape)

        x = torch.zeros_like(rho) if x0 is None else x0.to(rho).clone()
        r = b.clone() if x0 is None else b - _div_grad(x, eps, h)
        z = precond(r)
        p = z.clone()
        rz = (r * z).sum()
        bn = float(b.norm()) or 1.0
        it, res = 0, float(r.norm()) / bn
        while res > tol and it < maxiter:
            ap = _div_grad(p, eps, h)
            alpha = rz / (p * ap).sum()
            x += alpha * p
            r -= alpha * ap
            it += 1
            res = float(r.norm()) / bn
            z = precond(r)
            rz_new = (r * z).sum()
            p = z + (rz_new / rz) * p
            rz = rz_new
    return x, {"iterations": it, "residual": res}
