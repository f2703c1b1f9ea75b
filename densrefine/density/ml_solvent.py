"""Learned deformation density in a continuum solvent ("ml-solvent", issue 21).

The stage-1 network's Δρ (`densrefine.density.ml`, the same weights); under the electron
table its potential is the bare Coulomb (Mott–Bethe) potential of Δρ plus the reaction field
of a dielectric continuum (ε 78.36 outside a cavity of 1.2 × modified Bondi spheres; Bondi
1964, J. Phys. Chem. 68, 441), from a Poisson solve on the map grid
(`densrefine.simulate.solvent`), instead of "ml"'s Yukawa screening. The X-ray table is
"ml"'s. Model card: docs/ml_density.md, "Solvent response".
"""
from __future__ import annotations

from . import ml
from .terms import DensityTerms

name = "ml-solvent"


def terms(atoms, table: str = "electron") -> DensityTerms:
    """"ml"'s terms with the Poisson reaction field (`densrefine.density.ml.terms`)."""
    return ml.terms(atoms, table, response="poisson")
