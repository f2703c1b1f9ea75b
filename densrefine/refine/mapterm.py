"""The map data term of ``fit``: −CC (or normalised least squares) over an atom mask.

A `MapTerm` owns a sub-box of the experimental map around the refined atoms (plus a
margin), the scattering coefficients of the atoms that contribute to the map term,
and the current blur level and mask. The optimiser only calls `MapTerm.target`;
`MapTerm.prepare` is called between macro cycles (servalcat ``LL_SPA`` pattern:
``update_fc`` / ``calc_target`` behind a generic loop).

Which atoms count: hydrogens are excluded from the map term (at cryo-EM resolutions
their density is not resolved and they move with their parents through the
geometry restraints), and so are zero-occupancy atoms; both stay in the geometry.
"""
from __future__ import annotations

import logging

import numpy as np

from ..errors import input_error
from ..scoring.masks import atom_radius, sites_mask
from ..simulate import GridFrame, default_blur, simulate_tensor
from ..simulate.fourier import _s2, refmac_blur
from ..types import Grid

log = logging.getLogger("densrefine")


def sub_box(emap: Grid, xyz, margin: float) -> tuple[Grid, tuple]:
    """Cut ``emap`` to the bounding box of ``xyz`` plus ``margin`` Å (clipped to the map).

    Returns
    -------
    sub : Grid
        The sub-map (same cell/sampling, shifted origin and start).
    slices : tuple of slice
        (z, y, x) slices of ``emap.values`` that make ``sub``.
    """
    fr = GridFrame.from_grid(emap)
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    lo, hi = xyz.min(0) - margin, xyz.max(0) + margin
    box = lo + corners * (hi - lo)
    idx = fr.xyz_to_index(box)
    n = fr.shape_xyz
    i0 = np.clip(np.floor(idx.min(0)).astype(int), 0, n)
    i1 = np.clip(np.ceil(idx.max(0)).astype(int) + 1, 0, n)
    if np.any(i1 - i0 < 2):
        raise input_error(emap.path, "the model does not overlap the map box",
                          "check that model and map belong together (densrefine info MAP)")
    sl = tuple(slice(int(a), int(b)) for a, b in zip(i0[::-1], i1[::-1]))
    origin = emap.origin + fr.steps @ i0
    sub = Grid(np.ascontiguousarray(emap.values[sl]), emap.voxel_size, origin, emap.cell,
               emap.space_group, emap.full_shape, np.asarray(emap.start) + i0,
               path=emap.path)
    return sub, sl


class MapTerm:
    """−CC_mask (or LSQ) between the experimental sub-map and a simulated model map.

    Parameters
    ----------
    emap : Grid
        Experimental map (model frame, Å).
    resolution : float
        d (Å).
    xyz : ndarray, shape (N, 3)
        Starting positions of all atoms (Å).
    in_map : ndarray, shape (N,), bool
        Atoms that contribute to the map term (no H, occupancy > 0).
    moving : ndarray, shape (N,), bool
        Atoms being refined; the box is cut around them.
    coeffs : tuple (a, b) of ndarray, shape (N, K)
        Scattering Gaussians (`densrefine.density.iam.coefficients`).
    cfg : MapConfig
    device, dtype : torch device and dtype
    """

    def __init__(self, emap, resolution, xyz, in_map, moving, coeffs, cfg, device, dtype):
        import torch

        self.d, self.cfg, self.device, self.dtype = float(resolution), cfg, device, dtype
        core = xyz[moving & in_map] if (moving & in_map).any() else xyz[moving]
        self.grid, _ = sub_box(emap, core, cfg.margin + 2.0)
        if self.grid.values.size < np.asarray(emap.values).size:
            log.info("Map term: map cut to %d×%d×%d voxels around the refined atoms (+%.1f Å "
                     "margin) out of %d×%d×%d", *self.grid.shape_xyz, cfg.margin + 2.0,
                     *emap.shape_xyz)
        self.frame = GridFrame.from_grid(self.grid, periodic=False)
        fr = self.frame.xyz_to_index(xyz)
        pad = 8.0 / float(self.frame.voxel_size.min())
        near = np.all((fr > -pad) & (fr < self.frame.shape_xyz - 1 + pad), axis=1)
        self.atoms = np.flatnonzero(in_map & near)  # indices into the model
        if len(self.atoms) == 0:
            raise input_error(emap.path, "no atom with occupancy > 0 lies inside the map",
                              "check that model and map belong together")
        kw = {"device": device, "dtype": dtype}
        self.coeffs = tuple(torch.as_tensor(np.asarray(c)[self.atoms], **kw) for c in coeffs)
        self.exp0 = torch.as_tensor(np.array(self.grid.values), **kw)
        self.exp0 = self.exp0 - self.exp0.mean()
        self.exp, self.mask, self.blur = self.exp0, None, default_blur(self.d)
        self.cur_frame, self.stride = self.frame, 1
        log.info("Map term: target %s over an atom-radius mask, %d of %d atoms (no H, occ > 0)",
                 "-CC" if cfg.target == "cc" else "normalised least squares with fitted scale",
                 len(self.atoms), len(xyz))

    def prepare(self, xyz, b_iso, factor: float) -> None:
        """Set blur B = 4 d² · ``factor`` (Å²), blur the experimental map by B − 4 d², new mask."""
        import torch

        base = default_blur(self.d)
        self.blur = base * float(factor)
        extra = self.blur - base
        if extra > 0:
            cell = self.frame.steps * self.frame.shape_xyz[None, :]
            s2 = _s2(self.exp0.shape, cell, self.device, self.dtype)
            f = torch.fft.rfftn(self.exp0) * torch.exp(-extra * s2 / 4.0)
            self.exp = torch.fft.irfftn(f, s=self.exp0.shape)
        else:
            self.exp = self.exp0
        sel = self.atoms
        r = self.cfg.mask_radius or atom_radius(self.d, float(np.mean(b_iso[sel])))
        r = max(r, float(np.sqrt((self.blur + float(np.mean(b_iso[sel]))) / (8 * np.pi**2)) * 2.5))
        mask = sites_mask(xyz[sel], self.grid, r)
        # a blurred map is band-limited near d·√factor: sample it every `stride` voxels
        # while 3 samples per d·√factor remain (8x fewer voxels at factor 4)
        k = self.stride = max(1, int(self.d * np.sqrt(factor) / (3.0 * self.frame.voxel_size.max())))
        self.cur_frame = GridFrame(tuple(-(-n // k) for n in self.frame.shape), self.frame.origin,
                                   self.frame.steps * k, periodic=False)
        self.exp = self.exp[::k, ::k, ::k].contiguous()
        self.mask_full = torch.as_tensor(mask, device=self.device)
        self.mask = self.mask_full[::k, ::k, ::k].contiguous()
        self.radius = r
        log.debug("map term: blur B=%.1f Å² (exp. map +%.1f Å²), mask radius %.2f Å, %d voxels, "
                  "stride %d", self.blur, extra, r, int(self.mask.sum()), k)

    def model_map(self, xyz, b_iso, occ, fourier: bool = False):
        """Model map on the sub-box from full-model tensors (N, 3), (N,), (N,)."""
        sel = self.atoms
        if fourier:
            nb = refmac_blur(float(b_iso[sel].detach().min()), float(self.frame.voxel_size.max()))
            return simulate_tensor(xyz[sel], b_iso[sel], occ[sel], self.coeffs, self.frame,
                                   blur=nb, method="fourier", d_min=self.d)
        return simulate_tensor(xyz[sel], b_iso[sel], occ[sel], self.coeffs, self.cur_frame,
                               blur=self.blur, method="blur")

    def target(self, xyz, b_iso, occ, fourier: bool = False, kind: str | None = None):
        """Map target (0-d tensor): −CC over the mask, or Σ(e − k m)²/Σe² (k fitted).

        ``kind`` ("cc" or "lsq") overrides ``cfg.target`` for this call.
        """
        m = self.model_map(xyz, b_iso, occ, fourier)
        e = self.exp0 if fourier else self.exp
        w = (self.mask_full if fourier else self.mask).to(m.dtype)
        if (kind or self.cfg.target) == "lsq":
            k = (w * e * m).sum() / ((w * m * m).sum() + 1e-30)
            return ((w * (e - k * m) ** 2).sum() / (w * e * e).sum()) - 1.0
        from ..scoring.cc import cc_torch

        return -cc_torch(e, m, w)
