"""A warm cryo-EM model: model map, molecular mask and CCs, updated exactly when atoms move.

The model map is `densrefine.scoring.score`'s: the atoms splatted with gemmi's
refmac-compatible blur on the map's box taken as a P1 cell, Fourier-truncated at d
with the blur removed (`densrefine.simulate.fourier.fourier_truncate`). Truncation
makes every voxel depend on every atom, but the map is linear in the splat, so moving
k atoms changes it by the truncated transform of their density change alone:

    Δm = F⁻¹[ filter · D ],   D(k) = pruned DFT of the moved atoms' boxes (k inside d),

one inverse FFT of the box per update. The molecular mask is redone locally
(`densrefine.live.mask`, gemmi's cctbx mask point for point) and CC_mask, the
per-residue CCs of the touched residues and the difference map follow from the
updated arrays.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import torch

from ..density import get_density_model
from ..errors import input_error
from ..grid import box_cell, periodic_box, rebox_periodic, reciprocal_s2, take_periodic
from ..io import read_map
from ..scoring.api import check_inputs, check_resolution
from ..scoring.cc import pearson
from ..scoring.masks import atom_radius, molecular_mask, site_voxels
from ..simulate.api import simulate_tensor
from ..simulate.fourier import refmac_blur
from ..types import GridFrame
from .mask import LocalMask, mask_radii
from .splat import local_density
from .symdft import phase_columns
from .xray import check_update

log = logging.getLogger("densrefine")


class EmLive:
    """Model map, mask and CCs of a model in a cryo-EM map, updated in place.

    Parameters
    ----------
    model : densrefine.Model
    emap : densrefine.Grid or str
        The experimental map (or its file).
    resolution : float
        d, Å (as ``densrefine score -d``).
    table : {"electron", "xray"}
        Scattering table of the model map.
    """

    def __init__(self, model, emap, resolution: float, *, table: str = "electron"):
        t0 = time.perf_counter()
        if not hasattr(emap, "values"):
            emap = read_map(emap)
        check_resolution(resolution)
        self.d = float(resolution)
        emap = rebox_periodic(model, emap, self.d)
        check_inputs(model, emap, self.d)
        self.model, self.grid, self.table = model, emap, table
        at = model.atoms
        self.xyz = np.array(at.xyz, np.float64)
        self.b_iso = np.array(at.b_iso, np.float64)
        self.occ = np.array(at.occ, np.float64)
        self.frame = GridFrame.from_grid(emap).as_periodic()
        self.b_min = float(self.b_iso.min())
        self.blur = refmac_blur(self.b_min, float(self.frame.voxel_size.max()))
        self.terms = get_density_model("iam").terms(at, table)
        self.cutoff = 1e-5
        self._filter_setup()
        t = lambda a: torch.as_tensor(a, dtype=torch.float64)
        rho = simulate_tensor(t(self.xyz), t(self.b_iso), t(self.occ), self.terms, self.frame,
                              blur=self.blur, cutoff=self.cutoff, method="blur")
        self.m = torch.fft.irfftn(torch.fft.rfftn(rho) * self.filt, s=self.frame.shape).numpy()
        self.e = np.asarray(emap.values, np.float64)
        cellm = self.frame.cell_matrix
        self.inv_cell = np.linalg.inv(cellm)
        mol = molecular_mask(self.xyz, at.element, emap)
        self.radii = mask_radii(at.element)
        self.mask = LocalMask(cellm, self.frame.shape, None, self._frac(self.xyz), self.radii,
                              mask=(~mol).astype(np.float32))
        self.radius = atom_radius(self.d, float(self.b_iso.mean()))
        self._mask_index()
        self.res_of_atom = np.unique(at.res_index, return_inverse=True)[1].ravel()
        self.version = 0
        self.timings = {"start_s": time.perf_counter() - t0}
        log.info("Live cryo-EM session: %d atoms, map %s, d %.2f Å, blur B %.1f Å², CC_mask "
                 "%.4f", len(self.xyz), "x".join(map(str, self.frame.shape[::-1])), self.d,
                 self.blur, self.cc_mask())

    # ------------------------------------------------------------------ set-up
    def _filter_setup(self):
        nz, ny = self.frame.shape[:2]
        s2 = torch.as_tensor(reciprocal_s2(tuple(self.frame.shape), self.frame.cell_matrix),
                             dtype=torch.float64)
        keep = s2 < 1.0 / self.d ** 2
        self.filt = torch.where(keep, torch.exp(self.blur * s2 / 4.0), torch.zeros_like(s2))
        self.filt32 = self.filt.to(torch.float32)
        # the kept k (x ≥ 0 half) for the pruned forward DFT of a box
        idx = torch.nonzero(keep)
        kz = idx[:, 0].numpy()
        ky = idx[:, 1].numpy()
        kz = np.where(kz > nz // 2, kz - nz, kz)
        ky = np.where(ky > ny // 2, ky - ny, ky)
        self.kmax = np.array([int(idx[:, 2].max()), int(np.abs(ky).max()),
                              int(np.abs(kz).max())])
        self._tab = {}

    def _table(self, axis, lo, size):
        k = (np.arange(0, self.kmax[0] + 1) if axis == 0
             else np.arange(-self.kmax[axis], self.kmax[axis] + 1))
        return phase_columns(self._tab, axis, k, self.frame.shape[2 - axis], lo, size)

    def _frac(self, xyz):
        return (np.asarray(xyz, np.float64) - self.frame.origin) @ self.inv_cell.T

    def _mask_index(self):
        self.mask_idx = np.flatnonzero(self.mask.mask.reshape(-1) < 0.5)
        ev = self.e.reshape(-1)[self.mask_idx]
        self.e_sum, self.e_sq = float(ev.sum()), float((ev * ev).sum())

    # ------------------------------------------------------------------ maps
    def _delta_map(self, boxes):
        """Δm (nz, ny, nx) from density-change boxes: pruned DFT, filter, inverse FFT."""
        nz, ny, nx = self.frame.shape
        km = self.kmax
        # complex64: Δm carries ~1e-7 of its own size in rounding, the stored map is float64
        spec = torch.zeros((nz, ny, nx // 2 + 1), dtype=torch.complex64)
        for vals, lo in boxes:
            bz, by, bx = vals.shape
            v = torch.from_numpy(vals.astype(np.float32))
            ex = self._table(0, int(lo[0]), bx).T                    # (bx, n_kx)
            ey = self._table(1, int(lo[1]), by)                      # (n_ky, by)
            ez = self._table(2, int(lo[2]), bz)                      # (n_kz, bz)
            a = torch.complex(v @ ex.real, v @ ex.imag)              # (bz, by, n_kx)
            a = torch.matmul(ey, a)                                  # (bz, n_ky, n_kx)
            d = (ez @ a.reshape(bz, -1)).reshape(len(ez), len(ey), -1)
            iz = torch.from_numpy(np.mod(np.arange(-km[2], km[2] + 1), nz))
            iy = torch.from_numpy(np.mod(np.arange(-km[1], km[1] + 1), ny))
            spec[iz[:, None], iy[None, :], :km[0] + 1] += d
        return torch.fft.irfftn(spec * self.filt32, s=self.frame.shape).numpy()

    # ------------------------------------------------------------------ public
    def update(self, idx, xyz=None, b_iso=None, occ=None) -> dict:
        """Move atoms; return CC_mask, the touched residues' CCs and timings (see `XrayLive`)."""
        idx, xyz, b, occ = check_update(len(self.xyz), idx, xyz, b_iso, occ, self.xyz,
                                        self.b_iso, self.occ)
        if float(b.min()) < self.b_min:
            raise input_error("b_iso", f"B {float(b.min()):.2f} Å² is below the session's "
                              f"smallest B {self.b_min:.2f} Å² (it sets the map's blur)",
                              "restart the session with this model")
        t0 = time.perf_counter()
        cc0 = self.cc_mask()
        old = (self.xyz[idx].copy(), self.b_iso[idx].copy(), self.occ[idx].copy())
        self.xyz[idx], self.b_iso[idx], self.occ[idx] = xyz, b, occ
        terms = self.terms.select(np.concatenate([idx, idx]))
        boxes = local_density(self.frame, np.concatenate([old[0], xyz]),
                              np.concatenate([old[1], b]), np.concatenate([-old[2], occ]),
                              terms, blur=self.blur, cutoff=self.cutoff)
        t1 = time.perf_counter()
        self.m += self._delta_map(boxes)
        t2 = time.perf_counter()
        _, _, nch = self.mask.update(self._frac(old[0]), self._frac(xyz), self.radii[idx],
                                       self.radii[idx])
        if nch:
            self._mask_index()
        cc = self.cc_mask()
        res = np.unique(self.res_of_atom[idx])
        t3 = time.perf_counter()
        self.version += 1
        both = np.concatenate([old[0], xyz])
        return {"cc_mask": cc, "d_cc_mask": cc - cc0, "residues": self.residue_cc(res),
                "mask_points": int(nch),
                "boxes": [{"lo": (both.min(0) - 3.0).tolist(), "hi": (both.max(0) + 3.0).tolist()}],
                "timings": {"splat_s": t1 - t0, "map_s": t2 - t1, "cc_s": t3 - t2,
                            "total_s": t3 - t0}}

    def cc_mask(self) -> float:
        """Pearson CC of map and model map over the molecular mask (`scoring.cc.cc_mask`)."""

        idx = self.mask_idx
        return pearson(self.e.reshape(-1)[idx], self.m.reshape(-1)[idx])

    def residue_cc(self, residues) -> list:
        """CC over the voxels within the atom radius of each residue (`scoring.residues`)."""

        at = self.model.atoms
        out = []
        e, m = self.e.reshape(-1), self.m.reshape(-1)
        for r in np.atleast_1d(residues):
            sel = np.flatnonzero(self.res_of_atom == r)
            _, vox = site_voxels(self.xyz[sel], self.grid, self.radius)
            vox = np.unique(vox)
            cc = pearson(e[vox], m[vox]) if len(vox) >= 2 else float("nan")
            i = sel[0]
            out.append({"chain": str(at.chain[i]), "res_seq": int(at.res_seq[i]),
                        "icode": str(at.icode[i]).strip(), "res_name": str(at.res_name[i]),
                        "cc": None if not np.isfinite(cc) else float(cc)})
        return out

    def maps(self, lo, hi) -> dict:
        """Model map and difference (map − k·model map, k the LSQ scale over the mask) on
        the voxels between Cartesian corners ``lo`` and ``hi`` (Å)."""
        f = self.frame
        a, size = periodic_box(f, lo, hi)
        mm, ee = take_periodic(self.m, a, size), take_periodic(self.e, a, size)
        idx = self.mask_idx
        ev, mv = self.e.reshape(-1)[idx], self.m.reshape(-1)[idx]
        mc = mv - mv.mean()
        k = float(((ev - ev.mean()) * mc).sum() / max((mc * mc).sum(), 1e-30))
        diff = (ee - ev.mean()) - k * (mm - mv.mean())
        return {"origin": f.index_to_xyz(a).tolist(), "steps": f.steps.tolist(),
                "shape": [int(s) for s in size[::-1]], "start": a.tolist(),
                "grid": [int(x) for x in f.shape_xyz], "map_origin": f.origin.tolist(),
                "cell": [float(x) for x in box_cell(self.grid).parameters],
                "maps": {"model": mm.astype(np.float32), "difference": diff.astype(np.float32)},
                "scale": k}

    def current_model(self):
        """The model with the current coordinates, B and occupancies."""
        at = self.model.atoms.replace(xyz=self.xyz.copy(), b_iso=self.b_iso.copy(),
                                      occ=self.occ.copy())
        return self.model.with_atoms(at)

    def scores(self) -> dict:
        return {"cc_mask": self.cc_mask(), "n_mask_voxels": len(self.mask_idx),
                "d_min": self.d, "atom_radius": self.radius}
