"""`Session`: one model and its data, loaded once, answering edits (the public live API)."""
from __future__ import annotations

import logging
import os
import time

import numpy as np

from ..errors import input_error
from ..io import read_model, write_model
from ..refine import fit
from ..refine.select import select_atoms
from ..xtal.maps import map_from_data
from .em import EmLive
from .xray import XrayLive

log = logging.getLogger("densrefine")

MAP_SUFFIXES = (".mrc", ".map", ".ccp4", ".mrc.gz", ".map.gz", ".ccp4.gz")
MAX_BOX_A = 60.0
"""Largest edge (Å) of a `Session.maps` box."""

class Session:
    """A warm session: X-ray (R-work/R-free, 2mFo−DFc/mFo−DFc) or cryo-EM (CC, model map).

    Parameters
    ----------
    model : densrefine.Model or str
        The model (or its file).
    data : str or densrefine.Grid or Reflections
        A map (cryo-EM: ``.mrc``/``.map``/``.ccp4`` or a `Grid`) or reflections (MTZ,
        mmCIF structure factors).
    resolution : float, optional
        Map resolution d (Å), required for maps; for reflections a high-resolution cut.
    labin, twin
        Reflections: columns and twin mode (as ``densrefine rfactor``).
    table : {"electron", "xray"}
        Maps: scattering table of the model map (as ``densrefine score``).

    Examples
    --------
    >>> import densrefine as dr                                        # doctest: +SKIP
    >>> s = dr.Session("3ay4.pdb.gz", "3ay4.mtz.gz")                   # doctest: +SKIP
    >>> s.update([10, 11], [[1.0, 2.0, 3.0], [2.0, 2.0, 3.0]])["r_work"]  # doctest: +SKIP
    0.2154
    """

    def __init__(self, model, data, resolution=None, *, labin=None, twin: str = "auto",
                 table: str = "electron"):

        t0 = time.perf_counter()
        self.model0 = read_model(model) if isinstance(model, (str, os.PathLike)) else model
        if is_map(data):
            if resolution is None:
                raise input_error("resolution", "a cryo-EM session needs the map's resolution",
                                  "give -d D (Å)")
            self.kind = "em"
            self.core = EmLive(self.model0, data, float(resolution), table=table)
        else:
            self.kind = "xray"
            self.core = XrayLive(self.model0, data, labin=labin, d_min=resolution, twin=twin)
        self.data = data
        self.start_s = time.perf_counter() - t0

    # ------------------------------------------------------------------ queries
    @property
    def n_atoms(self) -> int:
        return len(self.core.xyz)

    def scores(self) -> dict:
        """Current numbers: R-work/R-free and scale state (X-ray) or CC_mask (cryo-EM)."""
        out = self.core.scores()
        out["kind"] = self.kind
        out["version"] = self.core.version
        return out

    def update(self, atoms, xyz=None, b_iso=None, occ=None) -> dict:
        """Move atoms (indices in the model's file order) and return the new numbers.

        Parameters
        ----------
        atoms : array_like of int, shape (k,)
        xyz : array_like, shape (k, 3), optional
            New positions, Å.
        b_iso, occ : array_like, shape (k,), optional
            New B (Å²) and occupancies.

        Returns
        -------
        dict
            X-ray: ``r_work``, ``r_free``, ``d_r_work``, ``d_r_free``; cryo-EM:
            ``cc_mask``, ``d_cc_mask``, ``residues`` (CC of each touched residue); both:
            ``boxes`` (changed regions, Cartesian ``lo``/``hi`` Å), ``timings`` (s),
            ``version`` (the session's state counter: it also advances when an idle
            refit of the scales changes the numbers, see ``scores``).
            The request is validated in full before anything changes: an `InputError`
            leaves the session as it was.
        """
        out = self.core.update(atoms, xyz, b_iso, occ)
        out["version"] = self.core.version
        return out

    def maps(self, center=None, size: float = 20.0, lo=None, hi=None) -> dict:
        """Maps over a box: X-ray ``2fofc``/``fofc``; cryo-EM ``model``/``difference``.

        Parameters
        ----------
        center : sequence of 3 floats, optional
            Box centre, Å (with ``size``, the edge in Å), or give ``lo`` and ``hi``.
        size : float
            Box edge, Å (≤ `MAX_BOX_A`).
        lo, hi : sequence of 3 floats, optional
            Box corners, Å.

        Returns
        -------
        dict
            ``origin`` (Å), ``steps`` (3×3, Å per index step, columns x y z), ``shape``
            (nz, ny, nx), ``maps`` (name → float32 array (nz, ny, nx)), plus the grid
            information of each kind.
        """
        lo, hi = box_corners(center, size, lo, hi)
        return self.core.maps(lo, hi)

    def refine(self, selection: str, cycles: int = 2, stages: str = "xyz") -> dict:
        """A quick real-space refinement of ``selection`` ("A/10-12"); the result is applied.

        Runs `densrefine.refine.fit` (stages ``stages``, ``cycles`` cycles) on the current
        model against the map (cryo-EM) or the current 2mFo−DFc map (X-ray), moving only
        the selected atoms, then updates the session with their new positions.

        Returns
        -------
        dict
            ``atoms`` (indices), ``xyz`` (new positions, Å), and the update's numbers.
        """

        model = self.core.current_model()
        sel = np.flatnonzero(select_atoms(model.atoms, selection))
        if not len(sel):
            raise input_error("selection", f"{selection!r} selects no atom",
                              "give CHAIN/FIRST-LAST of the loaded model")
        if self.kind == "em":
            data, d = self.core.grid, self.core.d
        else:
            data, _ = map_from_data(model, None, source="compute", fmodel=self.core.fmodel)
            d = self.core.fmodel.d_min
        t0 = time.perf_counter()
        res = fit(model, data, d, select=selection, device="cpu",
                  config={"stages": stages, "cycles": int(cycles)})
        t1 = time.perf_counter()
        new = np.asarray(res.model.atoms.xyz, np.float64)[sel]
        out = self.update(sel, new)
        out.update(atoms=sel.tolist(), xyz=new.tolist(), fit_s=t1 - t0)
        return out

    def current_model(self):
        """The model with the session's coordinates, B and occupancies."""
        return self.core.current_model()

    def write_model(self, path) -> str:
        """Write the current model (PDB or mmCIF by suffix); returns the path."""

        write_model(self.current_model(), path)
        return os.fspath(path)

    def rescale(self) -> dict:
        """X-ray: refit the scales now (also done automatically when the model has changed
        enough); cryo-EM: nothing to do."""
        if self.kind == "xray":
            self.core.rescale()
        return self.scores()


def is_map(data) -> bool:
    """Whether ``data`` is a map (a `Grid` or a map file name) rather than reflections."""
    if hasattr(data, "values") and hasattr(data, "voxel_size"):
        return True
    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data).lower().endswith(MAP_SUFFIXES)
    return False


def box_corners(center, size, lo, hi):
    """(lo, hi) of a box from a centre and edge or from corners; InputError when bad."""
    try:
        if lo is not None and hi is not None:
            lo, hi = np.asarray(lo, float).reshape(3), np.asarray(hi, float).reshape(3)
        elif center is not None:
            c = np.asarray(center, float).reshape(3)
            h = float(size) / 2.0
            lo, hi = c - h, c + h
        else:
            raise ValueError
    except (TypeError, ValueError):
        raise input_error("box", "give center (3 numbers) and size, or lo and hi (3 numbers "
                          "each)", "e.g. {\"center\": [1, 2, 3], \"size\": 20}") from None
    ext = hi - lo
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(ext > 0)
            and np.all(np.abs(lo) < 1e5)):
        raise input_error("box", "corners must be finite with hi > lo", "check the numbers")
    if ext.max() > MAX_BOX_A:
        raise input_error("box", f"edge {ext.max():.1f} Å exceeds {MAX_BOX_A:g} Å",
                          "ask for a smaller box (or several)")
    return lo, hi
