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

from ._lazy import lazy_attributes
from .errors import DensrefineError, DensrefineWarning, DeviceError, FormatError, InputError

__version__ = "0.1.0"

__all__ = [
    "Atoms", "GaussianSet", "Grid", "Model", "UnitCell",
    "DensrefineError", "DensrefineWarning", "DeviceError", "FormatError", "InputError",
    "read_model", "write_model", "read_map", "write_map", "simulate", "score", "fit",
    "batch", "Session",
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
    """Refine a model against a map, half maps or X-ray data; see `densrefine.refine.fit`.

    With ``partition="auto" | "chains" | N`` the model is refined in blocks in parallel on
    Dask (`densrefine.distributed.blockfit.fit_partitioned`: ``passes``, ``halo``,
    ``cluster`` or ``client``; a cryo-EM map and ``resolution`` are needed).
    """
    if kwargs.get("partition") is not None:
        from .distributed.blockfit import NOT_PARTITIONED, fit_partitioned, refuse_fit_options

        refuse_fit_options(kwargs)        # an InputError, not fit_partitioned's TypeError
        kwargs = {k: v for k, v in kwargs.items() if k not in NOT_PARTITIONED}
        return fit_partitioned(model, data, resolution, **kwargs)
    kwargs.pop("partition", None)
    from .refine import fit as _f

    return _f(model, data, resolution, **kwargs)


def batch(manifest, outdir, task="fit", **kwargs):
    """Run every row of a batch manifest on Dask, resumably; the summary dict.

    The work of ``densrefine batch`` (`densrefine.cli.batch.run`; docs/batch.md):
    ``scheduler``, ``cluster``, ``cluster_config``, ``workers``, ``threads``,
    ``memory_limit``, ``device``, ``force``. Outputs go to OUTDIR/NAME/ per job and
    OUTDIR/summary.csv, .json, .html.
    """
    from .cli.batch import run as _f

    return _f(manifest, outdir, task, **kwargs)


_TYPES = ("Atoms", "GaussianSet", "Grid", "Model", "UnitCell")


# PEP 562: the data types load numpy, and the live session numpy and torch, so on first use only
__getattr__ = lazy_attributes(__name__, {**dict.fromkeys(_TYPES, ".types"),
                                         "Session": ".live.session"})[0]
