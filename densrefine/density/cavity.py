"""Solvent cavity radii for the continuum-solvent response of the learned density (issue 21).

Atomic spheres of radius ``scale`` × modified Bondi radius (Bondi 1964, J. Phys. Chem. 68,
441; H 1.1 Å, Rowland & Taylor 1996, J. Phys. Chem. 100, 7384; other elements as PySCF's
``radii.VDW``), scale 1.2 as in the C-PCM of PySCF and Q-Chem.
"""
from __future__ import annotations

import numpy as np

RADII = {"H": 1.10, "C": 1.70, "N": 1.55, "O": 1.52, "F": 1.47, "P": 1.80, "S": 1.80,
         "CL": 1.75, "BR": 1.85, "I": 1.98, "SE": 1.90, "NA": 2.27, "MG": 1.73, "K": 2.75,
         "CA": 2.31, "ZN": 1.39, "CU": 1.40, "NI": 1.63, "FE": 2.00, "MN": 2.00, "CO": 2.00}
"""Modified Bondi van der Waals radii (Å); other elements 2.0 Å."""


def cavity_radii(elements, scale: float = 1.2, implicit_h=None, united: float = 0.0):
    """Cavity sphere radii (N,) Å: ``scale`` × vdW radius (+ ``united`` Å for a heavy atom
    that carries implicit hydrogens, whose spheres are absent in a model without H)."""
    el = [str(e).strip().upper() for e in elements]
    r = np.array([RADII.get(e, 2.0) for e in el]) * scale
    if implicit_h is not None:
        r = r + united * (np.asarray(implicit_h) > 0)
    return r
