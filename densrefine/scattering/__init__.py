"""Scattering-factor tables for the independent-atom model (IAM).

Two tables, both taken from gemmi (which carries them verbatim from the
International Tables for Crystallography):

``"xray"``
    IT92: International Tables for Crystallography Vol. C (1992), Table 6.1.1.4,
    four Gaussians plus a constant (Cromer–Mann form, Waasmaier–Kirfel style
    coefficients as distributed in CCP4 ``atomsf.lib``); density in e/Å³.
``"electron"``
    Peng, Ren, Dudarev & Whelan (1996), Acta Cryst. A52, 257–276, five-Gaussian
    fits of the elastic electron scattering factors of neutral atoms, as printed in
    International Tables Vol. C (2011), Table 4.3.2.2 (gemmi ``C4322``; the table
    gemmi's ``DensityCalculatorE`` uses); density in the table's own units (Å⁻²).

See `densrefine.scattering.tables.coefficients`.
"""
from .tables import TABLES, coefficients, unknown_elements

__all__ = ["TABLES", "coefficients", "unknown_elements"]
