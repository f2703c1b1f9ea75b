"""Density models: turn atoms into Gaussian density components.

A density model is any object (here: a module) with

``name``
    Registry key (``"iam"``).
``coefficients(atoms, table) -> (a, b)``
    Per-atom Gaussian coefficients, numpy (N, K) each (amplitude, width Å²).
``components(xyz, b_iso, occ, coeffs, blur) -> (centres, amp, width)``
    Differentiable torch function giving N sites × K Gaussians
    (centres (N, 3) Å, amplitudes (N, K), widths (N, K) Å²) that
    `densrefine.simulate` splats onto a grid.
``gaussian_set(model, table, blur) -> GaussianSet``
    The same components as a numpy `densrefine.types.GaussianSet`, for inspection.

Registered: the independent-atom model (`densrefine.density.iam`, "iam") and the learned
deformation density (`densrefine.density.ml`, "ml": IAM + Δρ from a graph network; an
optional ``postprocess(map, xyz, b, occ, coeffs, frame, blur, cutoff)`` hook adds what is
not a sum of Gaussians, e.g. its Mott–Bethe potential for the electron table), and the
stage-2 s,p,d,f model (`densrefine.density.ml_spdf`, "ml-spdf": e3nn network, Δρ gridded
in ``postprocess``).
"""
from __future__ import annotations

from . import iam, ml, ml_spdf

_REGISTRY = {"iam": iam, "ml": ml, "ml-spdf": ml_spdf}


def available() -> list[str]:
    """Names of the registered density models."""
    return sorted(_REGISTRY)


def get_density_model(name: str):
    """Return the density model registered as ``name``.

    Raises
    ------
    InputError
        When no model has that name (the message lists the known ones).
    """
    from ..errors import input_error

    try:
        return _REGISTRY[str(name).lower()]
    except KeyError:
        raise input_error("--density", f"unknown density model {name!r}",
                          f"use one of: {', '.join(available())}") from None


__all__ = ["available", "get_density_model", "iam", "ml", "ml_spdf"]
