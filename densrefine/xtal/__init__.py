"""Crystallography: structure factors, bulk solvent, scaling, R factors, maps from data.

``fcalc`` (FFT with symmetry, differentiable), ``bulk`` (flat solvent mask, F_mask),
``scale`` (k_sol/B_sol, anisotropic and binned scales, R), ``api`` (`FModel`,
`rfactor`), ``maps`` (2mFo−DFc / mFo−DFc with σA weights, P1 box for ``fit``).
"""
from __future__ import annotations

from .api import FModel, RfactorReport, rfactor

__all__ = ["FModel", "RfactorReport", "rfactor"]
