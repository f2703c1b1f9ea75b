#!/usr/bin/env python3
"""Regenerate the bundled example: an ideal α-helix, its 3 Å map with noise, a perturbed start.

    python example_maps/make_example.py [OUTDIR]        (default: this folder)

Writes
  helix_true.pdb   22-residue α-helix (SAEELLKKVAEFLKKASEELLK) from ideal geometry
                   (densrefine.build, Engh & Huber values), B from 25 to 45 Å² along the chain
  helix_start.pdb  the same model with smooth errors: a rigid shift/rotation plus a
                   low-frequency displacement field, 0.8 Å RMS in total (seeded)
  helix_3A.mrc     the true model's electron-potential map (Peng 1996 table), Fourier-truncated
                   at 3.0 Å like phenix model maps, on a 1.0 Å grid whose voxel [0,0,0] lies at a
                   non-zero origin (written as NSTART, the EMDB convention), plus band-limited
                   Gaussian noise (signal/noise RMS 2 inside the molecule), in arbitrary units
                   (mean 0, RMS 1) as deposited EM maps are

Everything is deterministic (seed 2026). Total size is about 150 kB.
"""
from __future__ import annotations

import os
import sys

import numpy as np

import densrefine as dr
from densrefine.build import ideal_peptide, with_cell_box

SEQUENCE = "SAEELLKKVAEFLKKASEELLK"
RESOLUTION = 3.0
SPACING = 1.0
ORIGIN_SHIFT = np.array([24.0, 31.0, 17.0])  # Å, puts the box away from 0 (on the 1 Å grid)
SEED = 2026


def smooth_perturbation(xyz, rng, rms=0.8, wavelength=18.0, n_modes=6):
    """Rigid rotation+shift plus a sum of random plane-wave displacement modes, scaled to `rms` Å."""
    centre = xyz.mean(0)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(3.0)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    disp = (xyz - centre) @ rot.T + centre - xyz + rng.normal(size=3) * 0.4
    for _ in range(n_modes):
        q = rng.normal(size=3)
        q *= 2 * np.pi / wavelength / np.linalg.norm(q)
        amp = rng.normal(size=3)
        disp += np.sin(xyz @ q + rng.uniform(0, 2 * np.pi))[:, None] * amp
    disp *= rms / np.sqrt((disp**2).sum(1).mean())
    return xyz + disp


def band_limited_noise(shape, voxel, d_min, rng):
    """White Gaussian noise low-pass filtered at d_min (the band the map carries)."""
    noise = rng.normal(size=shape)
    f = np.fft.rfftn(noise)
    fz, fy = (np.fft.fftfreq(n, voxel) for n in shape[:2])
    fx = np.fft.rfftfreq(shape[2], voxel)
    s2 = fz[:, None, None] ** 2 + fy[None, :, None] ** 2 + fx[None, None, :] ** 2
    f[s2 >= 1.0 / d_min**2] = 0.0
    out = np.fft.irfftn(f, s=shape, axes=(0, 1, 2))
    return out / out.std()


def main(outdir: str) -> None:
    rng = np.random.default_rng(SEED)
    n_res = len(SEQUENCE)
    model = ideal_peptide(SEQUENCE, b_iso=np.linspace(25.0, 45.0, n_res))
    model, edges = with_cell_box(model, margin=8.0)
    shape_xyz = np.ceil(edges / SPACING).astype(int)
    model = model.with_atoms(model.atoms.replace(xyz=model.atoms.xyz + ORIGIN_SHIFT))
    grid = dr.Grid.box(tuple(shape_xyz[::-1]), SPACING, ORIGIN_SHIFT)
    grid = dr.Grid(values=grid.values, voxel_size=grid.voxel_size, origin=grid.origin,
                   cell=grid.cell, full_shape=grid.full_shape,
                   start=np.round(ORIGIN_SHIFT / SPACING).astype(int))
    sim = dr.simulate(model, like=grid, resolution=RESOLUTION, method="fourier",
                      table="electron").values.astype(np.float64)
    inside = sim > 0.1 * sim.max()
    noise = band_limited_noise(sim.shape, SPACING, RESOLUTION, rng)
    noisy = sim + noise * (sim[inside].std() / 2.0)
    noisy = (noisy - noisy.mean()) / noisy.std()
    start = model.atoms.replace(xyz=np.round(smooth_perturbation(model.atoms.xyz, rng), 3))
    os.makedirs(outdir, exist_ok=True)
    dr.write_model(model, os.path.join(outdir, "helix_true.pdb"))
    dr.write_model(model.with_atoms(start), os.path.join(outdir, "helix_start.pdb"))
    dr.write_map(grid.with_values(noisy.astype(np.float32)), os.path.join(outdir, "helix_3A.mrc"))
    rmsd = np.sqrt(((start.xyz - model.atoms.xyz) ** 2).sum(1).mean())
    print(f"wrote {outdir}: {len(model)} atoms, map {grid.shape} (z,y,x) at "
          f"{SPACING} Å, origin {ORIGIN_SHIFT.tolist()} Å, start RMSD {rmsd:.2f} Å")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
