"""Crystallography: structure factors, bulk solvent, scaling, R factors, maps from data.

``fcalc`` (FFT with symmetry, differentiable), ``bulk`` (flat solvent mask, F_mask),
``scale`` (k_sol/B_sol, anisotropic and binned scales, twin fraction, R), ``twin`` (twin
laws, L-test, H-test), ``api`` (`FModel`, `make_fmodel`, `rfactor`), ``maps``
(2mFo−DFc / mFo−DFc with σA weights, P1 box for ``fit``), ``peaks`` (difference-map
peaks next to the model, cell maps written as CCP4).
"""
from __future__ import annotations

from .api import FModel, RfactorReport, make_fmodel, rfactor
from .peaks import cell_maps, difference_peaks

__all__ = ["FModel", "RfactorReport", "cell_maps", "difference_peaks", "make_fmodel",
           "rfactor"]
