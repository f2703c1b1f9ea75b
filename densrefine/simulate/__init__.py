"""Differentiable, chunked simulation of model maps on a grid.

Pipeline: a density model (`densrefine.density`) turns atoms into Gaussian
components (N sites × K Gaussians); `splat` sums them on a grid (fast separable
kernel for orthogonal grids, explicit-box kernel for any cell; both chunked, with
a recomputing analytic backward); the resolution comes either from a Gaussian blur
(real space) or from Fourier truncation (`fourier_truncate`).

Public functions:

`simulate`
    Model (+ a map to copy the frame from) → `densrefine.Grid`.
`simulate_tensor`
    Tensors (xyz, B, occ) + `densrefine.density.DensityTerms` → differentiable map tensor,
    for refinement and scoring (`grid_extra`: the terms' grid-space part alone).
`splat`
    Gaussian components → map tensor (the kernel).
`fourier_truncate`, `default_blur`, `refmac_blur`
    Resolution helpers. `GridFrame` (from `densrefine.grid`) describes a grid without
    values; `box_around` (also from there) makes a box around a model.
"""
from .._lazy import lazy_attributes

# Imported on first use (PEP 562), so that `densrefine.simulate.params` and the plans
# load without torch: the CLI refuses bad parameters before paying for that import.
_LAZY = {"GridFrame": "..types", "box_around": "..grid", "grid_extra": ".api",
         "simulate": ".api", "simulate_tensor": ".api", "default_blur": ".fourier",
         "fourier_truncate": ".fourier", "refmac_blur": ".fourier", "splat": ".kernel"}

__all__ = ["GridFrame", "box_around", "grid_extra", "default_blur", "fourier_truncate", "refmac_blur",
           "simulate", "simulate_tensor", "splat"]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


class _CallableModule(__import__("types").ModuleType):
    """Keep ``densrefine.simulate(...)`` callable after this subpackage is imported.

    Importing ``densrefine.simulate`` rebinds the package attribute ``simulate`` from the
    public function to this module; calling the module forwards to `simulate`.
    """

    def __call__(self, *args, **kwargs):
        return __getattr__("simulate")(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
