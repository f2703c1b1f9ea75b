"""densrefine: fit atomic models into cryo-EM maps and crystallographic data.

Public API (numpydoc on each function states shapes and units)::

    import densrefine as dr
    model = dr.read_model("model.cif")          # Model (Å, Å²)
    emap = dr.read_map("map.mrc")               # Grid, origin in Å
    sim = dr.simulate(model, like=emap, resolution=3.2)
    report = dr.score(model, emap, resolution=3.2)
    print(report.cc_mask)

Submodules are imported lazily so ``import densrefine`` stays cheap (no numpy or torch until
a computation needs it; the console script relies on that to answer Ctrl-C in one line).
"""
from __future__ import annotations

from .errors import DensrefineError, DensrefineWarning, DeviceError, FormatError, InputError

__version__ = "0.1.0"

__all__ = [
    "Atoms", "GaussianSet", "Grid", "Model", "UnitCell",
    "DensrefineError", "DensrefineWarning", "DeviceError", "FormatError", "InputError",
    "read_model", "write_model", "read_map", "write_map", "simulate", "score", "fit",
    "Session",
]


def read_model(path, **kwargs):
    """Read a PDB or mmCIF model (optionally gzipped); see `densrefine.io.model.read_model`."""
    from .io.model import read_model as _f

    return _f(path, **kwargs)


def write_model(model, path, **kwargs):
    """Write a model atomically; see `densrefine.io.model.write_model`."""
    from .io.model import write_model as _f

    return _f(model, path, **kwargs)


def read_map(path, **kwargs):
    """Read an MRC/CCP4 map into a `Grid`; see `densrefine.io.mrc.read_map`."""
    from .io.mrc import read_map as _f

    return _f(path, **kwargs)


def write_map(grid, path, **kwargs):
    """Write a `Grid` as MRC atomically; see `densrefine.io.mrc.write_map`."""
    from .io.mrc import write_map as _f

    return _f(grid, path, **kwargs)


def simulate(model, like=None, **kwargs):
    """Simulate a model map; see `densrefine.simulate.simulate`."""
    from .simulate import simulate as _f

    return _f(model, like, **kwargs)


def score(model, emap, resolution, **kwargs):
    """Score a model against a map; see `densrefine.scoring.score`."""
    from .scoring import score as _f

    return _f(model, emap, resolution, **kwargs)


def fit(model, data=None, resolution=None, **kwargs):
    """Refine a model against a map, half maps or X-ray data; see `densrefine.refine.fit`."""
    from .refine import fit as _f

    return _f(model, data, resolution, **kwargs)


_TYPES = ("Atoms", "GaussianSet", "Grid", "Model", "UnitCell")


def __getattr__(name):  # PEP 562: the data types load numpy, so on first use only
    if name in _TYPES:
        from . import types

        return getattr(types, name)
    if name == "Session":  # lazy: the live session pulls in numpy and torch
        from .live.session import Session

        return Session
    raise AttributeError(f"module 'densrefine' has no attribute {name!r}")
