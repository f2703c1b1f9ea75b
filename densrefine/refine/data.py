"""The data terms of ``fit``: one interface for a map, two half maps and X-ray data.

The refinement loop (`densrefine.refine.engine`) knows a data term only through this
interface (servalcat's ``LL_SPA`` / ``LL_Xtal`` behind one ``run_cycles``):

``prepare(xyz, b_iso, factor)``
    Between macro cycles: blur 4d²·``factor``, new mask (numpy (N, 3) Å, (N,) Å²).
``target(xyz, b_iso, occ, fourier=False, kind=None)``
    0-d torch tensor to minimise (the optimiser's only call); ``fourier``: the
    Fourier-truncated model map (B stage); ``kind``: "cc" or "lsq" for this call.
``restrict(subset)``
    Limit the term to some atoms (bool (N,); None: all); False when it cannot.
``cycle_stats(xyz, b_iso, occ, fourier=False) -> dict``
    Items of the per-cycle record (at least ``blur`` and ``cc_mask_term``).
``rotamer_view() -> (values, frame, mask)``, ``mask_volume() -> float``
    The map box for the χ1 scan and the mask volume (Å³) for the B-factor likelihood.
``finish(model) -> dict``
    Extra blocks of the stats JSON for the refined model ("xray", "half_maps").
Attributes ``name``, ``d`` (Å), ``blur`` (Å²), ``grid_full`` (the map the model is
scored against before and after) and ``table`` (scattering table). Optional:
``likelihood`` (True: the target is a negative log-likelihood in absolute units, as the
X-ray ML target; the automatic weight then has no map-CC cap, the coordinate cycles
refine B as well and the B stage minimises the target plus the B prior directly,
`densrefine.refine.stages`) and ``weight_scale`` (a factor on the automatic weight's
gradient-norm ratio, default 1).

`read_data` reads and checks what ``fit`` was given (a `Grid`, a map file, X-ray
reflections, or two half maps) into a `DataSpec`; `make_term` builds the term once the
atoms to refine are known. Implementations: `densrefine.refine.mapterm.MapTerm` (one
map), `HalfMapTerm` (work and free half maps) and `densrefine.refine.xray.XrayTerm`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError, input_error
from ..grid import rebox_periodic
from ..io.mrc import looks_like_map, read_map
from ..scoring import check_inputs, estimate_resolution, fsc_curve, local_resolution
from ..scoring.fsc import d_at_fsc
from ..simulate import simulate
from ..simulate.api import check_params
from ..types import Grid
from .mapterm import MapTerm, WrappedMapTerm
from .xray import XrayTerm, read_xray

log = logging.getLogger("densrefine")

HALF_MAP_WORK = ("half1", "average")


@dataclass
class DataSpec:
    """What ``fit`` refines against, read and checked (see `read_data`).

    Attributes
    ----------
    kind : {"map", "half maps", "xray"}
    grid : Grid
        The map scored against before and after (the map; the work half map or the
        average of the halves; the 2mFo−DFc box for X-ray data).
    d : float
        Resolution (Å).
    table : str or None
        Scattering table the data impose ("xray" for X-ray data), else None.
    half2 : Grid or None
        The free half map.
    xray : dict
        X-ray set-up (`densrefine.refine.xray.read_xray`).
    estimate : object or None
        `densrefine.scoring.ResolutionEstimate` when the resolution was estimated or checked.
    d_stated : float or None
        The resolution the caller gave (Å), when ``d`` differs from it or was checked.
    local : LocalResolution or None
        `densrefine.scoring.local_resolution` of the starting model (maps, with ``check``).
    """

    kind: str
    grid: Grid
    d: float
    table: str | None = None
    half2: Grid | None = None
    xray: dict = field(default_factory=dict)
    estimate: Any = None
    work: str = "half1"
    d_stated: float | None = None
    local: Any = None

    def d_atom(self, n: int) -> np.ndarray:
        """Per-atom resolution (N,) Å: the local estimate where it is at least `LOCAL_RATIO`
        × ``d``, else ``d`` (also everywhere when there is none: X-ray data, no check).

        Only clearly poorer regions count: the estimate comes from the starting model, and
        where that model is wrong the local correlation reads a little coarser than the map
        is (5NI1 perturbed by 1–1.5 Å in EMD-3488: local estimates of 1.12–1.5 d at a few
        per cent of the atoms); a flexible domain reads 1.8–2 d and more.
        """
        if self.local is None:
            return np.full(n, self.d)
        d_at = np.asarray(self.local.d_atom, np.float64)
        d_at = np.where(np.isfinite(d_at), d_at, self.d)
        return np.where(d_at >= LOCAL_RATIO * self.d, d_at, self.d)


SUPPORTED_RATIO = 1.1
"""The refinement resolution becomes the 25th percentile of the local resolution when that
is more than this factor worse than the stated one (`read_data`, ``check``)."""
LOCAL_RATIO = 1.5
"""Atoms whose local resolution is at least this multiple of the global d get their own
(`DataSpec.d_atom`)."""
SUPPORTED_PERCENTILE = 25
"""Percentile of the atoms' local resolution that sets the global one: the better-resolved
part of the map decides the sampling and masks; the rest is handled per atom."""


def _resolution(model, emap, resolution, device, check: bool = False):
    """Validated d (Å), the d_model estimate used (if any) and the local resolution.

    No ``resolution``: refine at d_model. With ``check``, the resolution the map supports
    around each atom is estimated (`densrefine.scoring.local_resolution`); the global d
    becomes its `SUPPORTED_PERCENTILE` th percentile when that is more than
    `SUPPORTED_RATIO` worse than the stated one. An estimate that cannot be made is logged
    and ignored.
    """
    est = None
    if resolution is None:
        check_inputs(model, emap, 2.0 * float(np.max(emap.voxel_size)))
        est = estimate_resolution(model, emap, device=device)
        log.warning("No resolution given: refining at the estimated d_model = %.3g Å "
                    "(pass -d/--resolution to override)", est.d_model)
        d = est.d_model
    else:
        d = check_params(resolution)
        check_inputs(model, emap, d)
    if not check:
        return d, est, None
    try:
        local = local_resolution(model, emap, d, device=device)
    except InputError as exc:
        log.info("Local resolution skipped: %s", exc)
        return d, est, None
    ok = np.isfinite(local.d_atom)
    d_p = float(np.percentile(local.d_atom[ok], SUPPORTED_PERCENTILE)) if ok.any() else d
    if resolution is not None and d_p > SUPPORTED_RATIO * d:
        log.warning("The map supports %.3g Å or worse around %d %% of the atoms, worse than "
                    "the stated %.3g Å (a noisy, flexible or over-sharpened map): refining at "
                    "%.3g Å, and per atom at its local resolution (resolution_check: false "
                    "keeps %.3g Å everywhere)", d_p, 100 - SUPPORTED_PERCENTILE, d, d_p, d)
        d = d_p
    return d, est, local


def _read_map(path):
    return path if isinstance(path, Grid) else read_map(os.fspath(path))


def _same_frame(a: Grid, b: Grid) -> bool:
    return (a.shape == b.shape and np.allclose(a.voxel_size, b.voxel_size, atol=1e-4)
            and np.allclose(a.origin, b.origin, atol=1e-3)
            and np.allclose(a.cell.parameters, b.cell.parameters, atol=1e-3))


def read_half_maps(model, half_maps, full=None):
    """Two half maps (paths or Grids) → (work source grid pieces), checked against each other.

    Raises
    ------
    InputError
        Different grids, frames or sizes between the halves (or from ``full``), or a half
        map identical to the other or to the full map.
    """
    if len(half_maps) != 2:
        raise input_error("--half-maps", f"{len(half_maps)} files given", "give two half maps")
    h1, h2 = (_read_map(h) for h in half_maps)
    names = [getattr(h, "path", None) or f"half map {i + 1}" for i, h in enumerate((h1, h2))]
    if not _same_frame(h1, h2):
        raise input_error(names[1], f"its grid ({h2.shape_xyz} voxels of "
                          f"{np.round(h2.voxel_size, 4).tolist()} Å at origin "
                          f"{np.round(h2.origin, 3).tolist()}) differs from {names[0]} "
                          f"({h1.shape_xyz}, {np.round(h1.voxel_size, 4).tolist()} Å, "
                          f"{np.round(h1.origin, 3).tolist()})",
                          "give the two half maps of one reconstruction, on one grid")
    if np.array_equal(h1.values, h2.values):
        raise input_error(names[1], "it is identical to the other half map",
                          "give the two independent half maps of the reconstruction")
    if full is not None:
        if not _same_frame(h1, full):
            raise input_error(full.path or "map", "the full map's grid differs from the half "
                              "maps'", "give the full map of the same reconstruction")
        for name, h in zip(names, (h1, h2)):
            if np.array_equal(h.values, full.values):
                raise input_error(name, "it is identical to the full map",
                                  "give the half maps, not the full map, with --half-maps")
    return h1, h2


def read_data(model, data, resolution, *, half_maps=None, half_map_work="half1", labin=None,
              xray_map="auto", twin="auto", xray_target="auto", device="cpu",
              check: bool = False) -> DataSpec:
    """Read and check what ``fit`` refines against.

    Parameters
    ----------
    model : Model
    data : Grid or path or None
        A map (`Grid`, or an MRC/CCP4 file), or X-ray reflections (MTZ, mmCIF structure
        factors); None with ``half_maps``.
    resolution : float or None
        d (Å); None: estimated from the map (d_model) or the data's high-resolution limit.
    half_maps : pair of (path or Grid), optional
        Independent half maps: refine against ``half_map_work`` ("half1", or the
        "average" of both) and cross-validate with half map 2.
    labin, xray_map, twin, xray_target
        X-ray data: columns, where the 2mFo−DFc map comes from ("auto", "file", "compute";
        `densrefine.xtal.maps.map_from_data`), the twin model and the data term
        ("auto"/"ml", "lsq" or "real-space"; `read_xray`).
    device : torch.device
        For the resolution estimate.
    check : bool
        Maps: compare a given resolution with what the map supports (`_resolution`).

    Raises
    ------
    InputError
        Unreadable or mismatched inputs (one line naming the file and a fix).
    """
    if half_maps is not None:
        if half_map_work not in HALF_MAP_WORK:
            raise input_error("half_map_work", f"unknown choice {half_map_work!r}",
                              f"use one of {', '.join(HALF_MAP_WORK)}")
        full = None if data is None else _read_map(data)
        h1, h2 = read_half_maps(model, half_maps, full)
        work = h1 if half_map_work == "half1" else h1.with_values(
            0.5 * (np.asarray(h1.values, np.float64) + np.asarray(h2.values, np.float64)))
        d, est, local = _resolution(model, work, resolution, device, check)
        log.info("Half maps: refining against %s, cross-validating with %s",
                 "half map 1" if half_map_work == "half1" else "their average",
                 h2.path or "half map 2")
        return DataSpec("half maps", work, d, half2=h2, estimate=est, work=half_map_work,
                        local=local, d_stated=None if resolution is None else float(resolution))
    if data is None:
        raise input_error("data", "no map or reflection data given", "give a map, X-ray "
                          "data or two half maps")
    if not isinstance(data, Grid) and not looks_like_map(data):
        xr = read_xray(model, os.fspath(data), resolution, labin=labin, source=xray_map,
                       twin=twin, target=xray_target)
        return DataSpec("xray", xr["map"], xr["d"], table="xray", xray=xr)
    emap = _read_map(data)
    if resolution is not None and np.isfinite(resolution) and resolution > 0:
        emap = rebox_periodic(model, emap, float(resolution))  # a crystal map, model elsewhere
    d, est, local = _resolution(model, emap, resolution, device, check)
    return DataSpec("map", emap, d, estimate=est, d_stated=None if resolution is None
                    else float(resolution), local=local)


def make_term(spec: DataSpec, model, terms, moving, in_map, map_cfg, device, dtype):
    """The data term of ``spec`` for the atoms ``moving`` (refined) and ``in_map`` (seen)."""
    xyz = np.asarray(model.atoms.xyz)
    args = (xyz, in_map, moving, terms, map_cfg, device, dtype)
    local = spec.d_atom(len(xyz)) if spec.local is not None else None
    if spec.kind == "map":
        return MapTerm(spec.grid, spec.d, *args, d_atom=local)
    if spec.kind == "half maps":
        return HalfMapTerm(MapTerm(spec.grid, spec.d, *args, d_atom=local),
                           MapTerm(spec.half2, spec.d, *args, d_atom=local), spec.work)
    return XrayTerm(MapTerm(spec.grid, spec.d, *args), spec.xray, model, device, dtype,
                    remap=lambda grid: MapTerm(grid, spec.d, *args))


class HalfMapTerm(WrappedMapTerm):
    """Refine against one half map (or the average) and cross-validate with the other.

    The target is the work map's (`MapTerm`); each cycle records the CC of the model map
    with the work map (``cc_mask_term``, ``cc_work``) and with the free half map
    (``cc_free``), both over the same mask and blur; `finish` adds the model-map FSC
    against each half (FSC_work, FSC_free; Brown et al. 2015, Acta Cryst. D71, 136;
    servalcat reports the same pair). A free CC that falls while the work CC rises is
    overfitting.

    Parameters
    ----------
    work, free : MapTerm
        Terms on the work map and on the free half map (same grid).
    which : {"half1", "average"}
        What the work map is (for the stats). With "average" the free half is part of the
        work map, so the free numbers are not independent (said in the stats).
    """

    name = "half maps"

    def __init__(self, work: MapTerm, free: MapTerm, which: str = "half1"):
        super().__init__(work)
        self.free, self.which = free, which
        self.history: list = []

    def prepare(self, xyz, b_iso, factor: float) -> None:
        self.map.prepare(xyz, b_iso, factor)
        self.free.prepare(xyz, b_iso, factor)

    def restrict(self, subset=None) -> bool:
        ok = self.map.restrict(subset)
        if ok:
            self.free.restrict(subset)
        return ok

    def cycle_stats(self, xyz, b_iso, occ, fourier: bool = False) -> dict:
        import torch

        out = self.map.cycle_stats(xyz, b_iso, occ, fourier)
        with torch.no_grad():
            cc_free = -float(self.free.target(xyz, b_iso, occ, fourier, kind="cc"))
        out.update(cc_work=out["cc_mask_term"], cc_free=cc_free)
        self.history.append((out["cc_work"], cc_free))
        return out

    def finish(self, model) -> dict:
        """FSC of the refined model's map against the work map and the free half map."""
        mmap = simulate(model, self.grid_full, resolution=self.d, method="fourier",
                        table=self.table).values
        fw = fsc_curve(self.grid_full.values, mmap, self.grid_full)
        ff = fsc_curve(self.free.grid_full.values, mmap, self.free.grid_full)

        def fsc_avg(curve):   # servalcat's FSCaverage: shells to 1/d weighted by their terms
            pts = [(p["n"], p["fsc"]) for p in curve if p["d"] >= self.d and np.isfinite(p["fsc"])]
            n = sum(k for k, _ in pts)
            return float(sum(k * f for k, f in pts) / n) if n else None

        out = {"work": self.which, "free_is_independent": self.which == "half1",
               "free_map": self.free.grid_full.path, "fsc_work": fw, "fsc_free": ff,
               "fsc_average_work": fsc_avg(fw), "fsc_average_free": fsc_avg(ff),
               "d_fsc05_work": d_at_fsc(fw), "d_fsc05_free": d_at_fsc(ff),
               "cc_per_cycle": [{"cc_work": w, "cc_free": f} for w, f in self.history]}
        log.info("Half maps: FSC_work %.4f, FSC_free %.4f (average to %.3g Å)%s",
                 out["fsc_average_work"], out["fsc_average_free"], self.d,
                 "" if self.which == "half1" else "; the free half is part of the work map")
        return {"half_maps": out}
