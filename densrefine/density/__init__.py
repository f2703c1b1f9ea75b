"""Density models: turn atoms into what `densrefine.simulate` splats.

A density model is a module with

``name``
    Registry key (``"iam"``).
``terms(atoms, table) -> DensityTerms``
    Per-atom scattering-factor Gaussians (``a``, ``b``: (N, K), amplitude and width Å²,
    occupancy and B not included) plus an optional grid-space part (`GaussianExtra`:
    Gaussians splatted apart, e.g. under a Fourier filter; `FieldExtra`: a density the
    model evaluates on the grid itself), all typed in `densrefine.density.terms`.
    `densrefine.simulate.simulate_tensor` consumes them; nothing here calls simulate.

Registered: the independent-atom model (`densrefine.density.iam`, "iam"), the learned
deformation density (`densrefine.density.ml`, "ml": IAM + Δρ from a graph network; under
the electron table its Δρ enters as a `GaussianExtra` through the screened Mott–Bethe
filter), and the stage-2 s,p,d,f model (`densrefine.density.ml_spdf`, "ml-spdf": e3nn
network, Δρ a `FieldExtra`).
"""
from __future__ import annotations

from ..errors import input_error
from . import iam, ml, ml_spdf
from .terms import (DensityTerms, FieldExtra, GaussianExtra, GridExtra,  # noqa: F401
                    ScreenedCoulomb)

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

    try:
        return _REGISTRY[str(name).lower()]
    except KeyError:
        raise input_error("--density", f"unknown density model {name!r}",
                          f"use one of: {', '.join(available())}") from None


__all__ = ["DensityTerms", "FieldExtra", "GaussianExtra", "GridExtra", "ScreenedCoulomb",
           "available", "get_density_model", "iam", "ml", "ml_spdf"]
