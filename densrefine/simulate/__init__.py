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
    Tensors (xyz, B, occ) → differentiable map tensor, for refinement and scoring.
`splat`
    Gaussian components → map tensor (the kernel).
`fourier_truncate`, `default_blur`, `refmac_blur`
    Resolution helpers. `GridFrame` describes a grid without values.
"""
from .api import box_around, simulate, simulate_tensor
from .fourier import default_blur, fourier_truncate, refmac_blur
from .frame import GridFrame
from .kernel import splat

__all__ = ["GridFrame", "box_around", "default_blur", "fourier_truncate", "refmac_blur",
           "simulate", "simulate_tensor", "splat"]


class _CallableModule(__import__("types").ModuleType):
    """Keep ``densrefine.simulate(...)`` callable after this subpackage is imported.

    Importing ``densrefine.simulate`` rebinds the package attribute ``simulate`` from the
    public function to this module; calling the module forwards to `simulate`.
    """

    def __call__(self, *args, **kwargs):
        return simulate(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
