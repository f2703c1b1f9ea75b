"""The grid layer: frames, boxes and Fourier helpers shared by simulate, scoring, xtal and
refine.

A map's voxel (k, j, i) sits at ``origin + steps @ (i, j, k)`` (Å); `GridFrame` (defined
with `Grid` in `densrefine.types`, re-exported here) holds shape, origin, step vectors and
periodicity, and its ``xyz_to_index`` is the one position → index transform.

`inside`, `sub_box`, `periodic_box`, `take_periodic`, `box_around`, `box_cell`, `box_map`,
`rebox_periodic`
    Which sites lie in a box, cutting a sub-box, the voxels of a periodic grid covering a
    Cartesian box and their values (wrapped), a new box around a model, the box as a P1
    cell, a crystal map interpolated onto a box, a periodic map moved to the model.
`fft_size`, `fft_frame`, `reciprocal_s2`, `dft_phases`, `crop_spectrum`, `fourier_resample`
    The FFT-size rule, a frame padded to it, |s|² of rfftn terms, the phase table of a
    separable DFT of a periodic box, spectrum cropping and Fourier resampling of a box
    treated as a P1 cell.
"""
from ..types import Grid, GridFrame
from .box import (
    bounding_corners,
    box_around,
    box_cell,
    box_map,
    inside,
    periodic_box,
    rebox_periodic,
    sub_box,
    take_periodic,
)
from .fft import crop_spectrum, dft_phases, fft_frame, fft_size, fourier_resample, reciprocal_s2

__all__ = ["Grid", "GridFrame", "bounding_corners", "box_around", "box_cell", "box_map",
           "crop_spectrum", "dft_phases", "fft_frame", "fft_size", "fourier_resample", "inside",
           "periodic_box", "rebox_periodic", "reciprocal_s2", "sub_box", "take_periodic"]
