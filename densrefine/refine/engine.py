"""`fit`: restrained refinement (rigid body → coordinates → B) against a map, two half maps
or X-ray data.

The loop is generic: a data term (the interface of `densrefine.refine.data`: `MapTerm`,
`HalfMapTerm`, `XrayTerm`) and a geometry term (`Geometry`) are summed as
``w · data + geometry`` and minimised by L-BFGS (`optim.minimise`) over the parameters of
each stage (`densrefine.refine.stages`). Between macro cycles the blur goes from coarse to
fine, the mask is recomputed and the weight ``w`` is adjusted towards the target bond
RMSD. `Run` is the state of one refinement; `process_settings` sets and restores the
process-wide thread, BLAS, determinism and seed settings in one place.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from ..density import get_density_model
from ..device import cpu_budget, resolve_device
from ..restraints.stats import bond_angle_rmsd
from ..simulate.cells import PARTS, release_workspaces, set_workers
from ..types import Model
from . import geometry as _geometry
from . import output
from .config import FitConfig, load_config
from .data import DataSpec, make_term, read_data
from .optim import NonFiniteError
from .select import select_atoms
from .stages import STAGE_FUNCTIONS, rigid_map_atoms, weight_init

log = logging.getLogger("densrefine")

SMALL_MODEL = 50000
"""Models with fewer atoms run on one CPU thread unless ``FitConfig.threads`` is set (two
torch threads were slower below this size on a 2-core machine; benchmarks/RESULTS.md)."""


@dataclass
class RefineResult:
    """Outcome of `fit`.

    Attributes
    ----------
    model : Model
        Refined model (same atoms and order as the input).
    stats : dict
        Everything ``<prefix>_stats.json`` holds (before/after scores, geometry,
        cycles, timings, device, versions; "xray" or "half_maps" blocks for those data).
    cycles : list of dict
        One record per optimisation call (stage, blur, weight, CC, bond/angle RMSD;
        R-work/R-free for X-ray data, CC_work/CC_free for half maps).
    """

    model: Model
    stats: dict
    cycles: list = field(default_factory=list)


def reference_torsion_energy(xyz, idx, start, sigma, limit):
    """Σ (l/σ)² (1 − exp(−(Δ/l)²)) over torsions ``idx`` (k, 4), Δ = their change from
    ``start`` (degrees, wrapped to ±180°): harmonic (Δ/σ)² near the start, flat beyond l
    (the top-out of phenix's reference-model restraints, Headd et al. 2012)."""
    from ..restraints.energy import dihedrals_deg, torsion_deviation

    dev = torsion_deviation(dihedrals_deg(xyz, idx), start, 1.0)
    return ((limit / sigma) ** 2 * (1.0 - (-(dev / limit) ** 2).exp())).sum()


class Run:
    """The state of one refinement, handed to every stage (`densrefine.refine.stages`).

    Tensors of all N atoms (``xyz`` Å, ``b`` Å², ``occ``), the refined ones (``moving``
    bool (N,), ``mv`` their indices), the data term ``term``, the geometry ``geom``, the
    map weight ``w``, the optional reference-model restraint (``ref``, ``ref_k`` Å⁻²), the
    stats dict with its per-cycle records, and the hooks ``callback(stats)`` and
    ``monitor(xyz, b) -> dict``.
    """

    def __init__(self, model, term, geom, moving, cfg, device, dtype, stats, callback=None,
                 monitor=None, d_atom=None):
        import torch

        at = model.atoms
        kw = {"device": device, "dtype": dtype}
        self.model, self.term, self.geom, self.cfg = model, term, geom, cfg
        self.xyz = torch.as_tensor(np.array(at.xyz), **kw)
        self.b = torch.as_tensor(np.array(at.b_iso), **kw)
        self.occ = torch.as_tensor(np.array(at.occ), **kw)
        self.moving = moving
        self.mv = torch.as_tensor(np.flatnonzero(moving), device=device)
        self.w = 1.0
        self.w_cap = None  # the likelihood cap of the automatic weight (stages.weight_init)
        self.final_capped = False  # the cap lowered for the finest-blur cycles (stages)
        self.fourier = False
        self.ref = None    # (N, 3) reference positions, and 1/σ² per atom (N,) Å⁻²
        self.ref_k = None
        self.ref_tors = None  # (idx (k, 4), start angle (k,) deg, σ deg, limit deg)
        self.nonbonded_final = None  # nonbonded multiplier at the finest blur (engine)
        self.reference_kind = "position"  # what reference restraints hold (engine resolves)
        # resolution the map supports around each atom (Å; `DataSpec.d_atom`)
        self.d_atom = np.full(len(at), float(term.d)) if d_atom is None else d_atom
        self.rigid_atoms = None  # (N,) bool: the data term's atoms in rigid/SSE passes
        self.joint_b = False     # xyz cycles refine B too (likelihood data terms, stages.py)
        self._b_pairs = None     # B-similarity restraint pairs, built once (stages._b_prior)
        self.stats, self.cycles = stats, stats["cycles"]
        self.callback, self.monitor = callback, monitor

    def total(self, xyz, b=None):
        """w · data term + geometry (+ reference restraints) at ``xyz`` (and ``b``)."""
        m = self.term.target(xyz, self.b if b is None else b, self.occ, self.fourier)
        e, _ = self.geom.term.energy(xyz)
        if self.ref is not None:
            e = e + (self.ref_k[self.mv, None] * (xyz[self.mv] - self.ref[self.mv]) ** 2).sum()
        if self.ref_tors is not None:
            e = e + reference_torsion_energy(xyz, *self.ref_tors)
        return self.w * m + e

    def numpy_xyz(self):
        return self.xyz.detach().cpu().double().numpy()

    def numpy_b(self):
        return self.b.detach().cpu().double().numpy()

    def notify(self):
        if self.callback is not None:
            self.callback(self.stats)

    def record(self, stage, target, t0, **extra) -> dict:
        """Append the record of one optimisation call, log its table row, notify.

        ``cc_mask_term`` is the CC of the map term being minimised (its blur changes with
        the stage); ``cc_mask_ref`` is the CC of the Fourier-truncated model map with the
        unblurred map at d over the current mask, the same reference for every call."""
        import torch

        data = self.term.cycle_stats(self.xyz, self.b, self.occ, self.fourier)
        g = bond_angle_rmsd(self.numpy_xyz(), self.geom.restraints, self.moving)
        cc = data.pop("cc_mask_term", None)
        with torch.no_grad():   # one fixed reference for every call: the map at d
            ref = -float(self.term.target(self.xyz, self.b, self.occ, True, kind="cc"))
        rec = {"stage": stage, "cycle": len(self.cycles), "blur": data.pop("blur", None),
               "weight": self.w, "target": target, "cc_mask_term": cc, "cc_mask_ref": ref,
               "bond_rmsd": g.get("bond_rmsd"), "angle_rmsd": g.get("angle_rmsd"),
               "time_s": time.perf_counter() - t0, **extra, **data}
        if self.monitor is not None:
            rec.update(self.monitor(self.numpy_xyz(), self.numpy_b()))
        self.cycles.append(rec)
        if len(self.cycles) == 1:
            log.info("  %-6s %5s %8s %10s %10s %8s %8s %9s %9s %7s", "stage", "cycle", "blur",
                     "weight", "target", "CC term", "CC at d", "bond Å", "angle °", "time s")
        log.info("  %-6s %5d %8.1f %10.4g %10.5g %8s %8.4f %9.4f %9.3f %7.2f", stage,
                 rec["cycle"], rec["blur"], self.w, target, "n/a" if cc is None else f"{cc:.4f}",
                 ref, rec["bond_rmsd"] or 0, rec["angle_rmsd"] or 0, rec["time_s"])
        self.notify()
        return rec


def fit(model: Model, data=None, resolution=None, *, config=None, select=None, device="auto",
        seed=0, monlib=None, ligands=(), unknown="error", callback=None, monitor=None,
        half_maps=None, half_map_work="half1", labin=None, xray_map="auto",
        twin="auto", xray_target="auto") -> RefineResult:
    """Refine ``model`` against a map, two half maps or X-ray data, with restraints.

    Parameters
    ----------
    model : Model
        Starting model in the data's frame (Å, Å²).
    data : Grid or str or path-like or None
        A map (`Grid`, or an MRC/CCP4 file), or X-ray reflections (MTZ or mmCIF
        structure factors: refined against |F_obs| with the amplitude likelihood, or in
        real space against a σA-weighted 2mFo−DFc map, see ``xray_target``; R-work/R-free
        every cycle, `densrefine.refine.xray`), or the full map beside
        ``half_maps`` (checked against them), or None with ``half_maps``.
    resolution : float or None
        d (Å), 0.5–50. None: for maps the d_model estimate from the map and the starting
        model (`densrefine.scoring.estimate_resolution`, recorded in the stats as
        ``input.resolution_estimate``); for X-ray data the data's high-resolution limit.
    config : FitConfig or dict or None
        Overrides of the defaults (`FitConfig`).
    select : str or ndarray of bool, optional
        Atoms to refine (``"A/10-40"``, see `densrefine.refine.select`); the others stay
        fixed but count in the map and nonbonded terms.
    device : str or torch.device
    seed : int
        Seeds torch; deterministic algorithms are used on CUDA while `fit` runs.
    monlib, ligands, unknown
        Passed to `densrefine.restraints.build_restraints`.
    callback : callable, optional
        ``callback(stats)`` after each cycle with the stats dict so far.
    monitor : callable, optional
        ``monitor(xyz, b) -> dict`` with all atoms' positions (N, 3) Å and B (N,) Å²
        after each cycle; its items join that cycle's record.
    half_maps : pair of (str or Grid), optional
        Independent half maps (`densrefine.refine.data.HalfMapTerm`): refine against
        ``half_map_work`` ("half1" or "average") and cross-validate with half map 2.
    labin : str, optional
        X-ray data: columns (e.g. "FP,SIGFP,FREE").
    xray_map : {"auto", "file", "compute"}
        X-ray data: the 2mFo−DFc map from the file's coefficients, computed with σA, or
        the file's when present.
    twin : str
        X-ray data: twin model of the R factors and the target ("auto", "off", "on" or a
        law such as "-h,k,-l"; `densrefine.xtal.FModel`).
    xray_target : {"auto", "ml", "lsq", "real-space"}
        X-ray data: the data term. "ml" (= "auto"): σA amplitude likelihood of the work
        reflections through F_calc with bulk solvent and scales
        (`densrefine.xtal.target`); "lsq": least squares on |F_obs|; "real-space": the
        map term on the 2mFo−DFc map.

    Returns
    -------
    RefineResult

    Raises
    ------
    InputError
        Resolution out of range or not estimable, model and map do not overlap, bad
        selection or config, residues missing from the monomer library, unreadable or
        mismatched data files.

    Examples
    --------
    >>> import densrefine as dr                                          # doctest: +SKIP
    >>> res = dr.fit(dr.read_model("m.pdb"), "emd_1234.map", 3.2)       # doctest: +SKIP
    >>> res = dr.fit(dr.read_model("m.pdb"), "data.mtz")                 # doctest: +SKIP
    >>> res.stats["xray"]["after"]["r_free"]                             # doctest: +SKIP
    """
    import dataclasses

    cfg = config if isinstance(config, FitConfig) else load_config(config)
    dev = resolve_device(device)
    spec = read_data(model, data, resolution, half_maps=half_maps, half_map_work=half_map_work,
                     labin=labin, xray_map=xray_map, twin=twin, xray_target=xray_target,
                     device=dev, check=cfg.resolution_check)
    if spec.table is not None and spec.table != cfg.map.table:
        log.info("%s data: the model map uses the %s scattering table", spec.kind, spec.table)
        cfg = dataclasses.replace(cfg, map=dataclasses.replace(cfg.map, table=spec.table))
    with process_settings(cfg, dev, len(model), seed):
        return _run(model, spec, cfg, select, dev, callback, monitor,
                    dict(monlib=monlib, ligands=ligands, unknown=unknown))


@contextlib.contextmanager
def process_settings(cfg, dev, n_atoms: int, seed: int = 0):
    """Set, and restore afterwards, the process-wide settings of a refinement.

    The torch seed; deterministic algorithms on CUDA (the CPU kernels used here are
    deterministic already, and torch's deterministic mode only swaps in slow fallbacks
    there; the call imports torch._dynamo, so it is made only when the mode changes); the
    torch and BLAS thread counts (`_threads`; BLAS — numpy and scipy's L-BFGS-B — gets the
    same count, as idle OpenBLAS threads spin-wait; the limit reaches only libraries
    already loaded, hence the scipy.optimize import); the model map's splat workers
    (`_splat_workers`) and their kept buffers.
    """
    import scipy.optimize  # noqa: F401
    import torch
    from threadpoolctl import threadpool_limits

    torch.manual_seed(int(seed))
    was_det, was_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    det = dev.type == "cuda" or was_det
    if det != was_det:
        torch.use_deterministic_algorithms(det, warn_only=True)
    threads = _threads(cfg, dev, n_atoms)
    workers = _splat_workers(cfg, dev, threads)
    if threads != was_threads or workers > 1:
        torch.set_num_threads(threads)
        log.info("Using %d CPU thread(s) while refining%s (%d atoms; set threads in the config "
                 "to change)", threads, f", the model map's batches on {workers} worker "
                 "threads" if workers > 1 else "", n_atoms)
    was_workers = set_workers(workers)
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            yield
    finally:
        if det != was_det:
            torch.use_deterministic_algorithms(was_det)
        if threads != was_threads:
            torch.set_num_threads(was_threads)
        set_workers(was_workers)
        release_workspaces()             # the model map's kept buffers (tens of MB)


def _threads(cfg, dev, n_atoms) -> int:
    """CPU threads while `fit` runs (restored afterwards).

    Small models gain nothing from threads, and on a busy machine OpenMP threads that
    spin-wait cost up to 20x in CPU time, so below `SMALL_MODEL` atoms one thread is used
    unless ``cfg.threads`` says otherwise. Larger models use no more threads than cores
    are idle (1-minute load average, this process not counted).
    """
    import os

    import torch

    if cfg.threads:
        return int(cfg.threads)
    if dev.type == "cpu" and n_atoms < SMALL_MODEL:
        return 1
    n = torch.get_num_threads()
    if dev.type == "cpu":             # a batch worker's share ($DENSREFINE_CPUS)
        n = min(n, cpu_budget())
    if dev.type == "cpu" and hasattr(os, "getloadavg"):
        idle = (os.cpu_count() or 1) - os.getloadavg()[0] + 1.0
        n = max(1, min(n, int(idle)))
    return n


def _splat_workers(cfg, dev, threads) -> int:
    """Threads that run the model map's batch groups (`densrefine.simulate.cells`).

    Only when torch runs one intra-op thread on a CPU by our choice (small models, no
    ``threads`` in the config): the batch groups' matmuls and scatters, which release
    the GIL, then overlap on a second core. Unlike OpenMP threads these block instead
    of spin-waiting, so the load average is not consulted.
    """
    if cfg.threads or dev.type != "cpu" or threads != 1:
        return 1
    return max(1, min(PARTS, cpu_budget()))


def _run(model, spec: DataSpec, cfg, select, dev, callback, monitor, restraints: dict):
    import torch

    t0 = time.perf_counter()
    at = model.atoms
    moving = select_atoms(at, select)
    in_map = ~np.asarray(at.is_hydrogen) & (np.asarray(at.occ) > 0)
    _log_oddities(at, moving, in_map)
    dtype = torch.float32
    geom = _geometry.build_geometry(model, **restraints, device=dev, dtype=dtype, fixed=~moving,
                                    ss=cfg.ss_restraints, resolution=spec.d,
                                    ss_sigma=cfg.ss_sigma, rama=cfg.rama_restraints,
                                    rama_weight=cfg.rama_weight, riding=_riding(cfg, spec))
    if hasattr(geom.term, "weights"):
        geom.term.weights["nonbonded"] = float(cfg.weights.nonbonded)
    terms = get_density_model(cfg.map.density).terms(at, cfg.map.table)
    term = make_term(spec, model, terms, moving, in_map, cfg.map, dev, dtype)
    stats = output.start_stats(model, spec.grid, spec.d, cfg, select, moving, dev, geom)
    stats["input"]["data"] = spec.kind
    if spec.estimate is not None:
        stats["input"]["resolution_estimate"] = spec.estimate.to_dict()
    if spec.d_stated is not None:
        stats["input"]["resolution_stated"] = spec.d_stated
    stats["timings"]["setup_s"] = time.perf_counter() - t0
    run = Run(model, term, geom, moving, cfg, dev, dtype, stats, callback, monitor,
              spec.d_atom(len(at)))
    run.nonbonded_final = _nonbonded_final(cfg, spec)
    run.reference_kind = _reference_kind(cfg, spec)
    if spec.local is not None:
        stats["input"]["local_resolution"] = spec.local.summary()
    if (not cfg.rigid_side_chains and "xyz" in cfg.stages
            and ("rigid" in cfg.stages or "sse" in cfg.stages)):
        run.rigid_atoms = rigid_map_atoms(at, in_map)
    run.notify()
    try:
        weight_init(run)
        for stage in cfg.stages:
            STAGE_FUNCTIONS[stage](run)
        stats["status"] = "finished"
    except NonFiniteError as exc:
        stats["status"] = f"stopped: {exc}; the last model with a finite target is kept"
        log.warning("Refinement stopped: %s; keeping the last good model", exc)
    xyz, b = np.array(at.xyz, np.float64), np.array(at.b_iso, np.float64)
    xyz[moving] = run.numpy_xyz()[moving]  # fixed atoms keep their exact input values
    b[moving] = run.numpy_b()[moving]
    new = model.with_atoms(at.replace(xyz=xyz, b_iso=b, u_aniso=scaled_aniso(at, b)))
    output.finish_stats(stats, model, new, spec.grid, spec.d, dev, geom,
                        time.perf_counter() - t0)
    stats.update(term.finish(new))
    run.notify()
    return RefineResult(new, stats, run.cycles)


def _riding(cfg, spec) -> bool:
    """``riding_hydrogens``, "auto" resolved: on against maps, off against X-ray data."""
    r = cfg.riding_hydrogens
    return spec.kind != "xray" if r == "auto" else bool(r)


NONBONDED_FINAL_MAPS = 4.0
"""``weights.nonbonded_final: auto`` against maps (benchmarks/RESULTS.md, riding hydrogens
and the nonbonded weight)."""


def _nonbonded_final(cfg, spec):
    """``weights.nonbonded_final``, "auto" resolved: 4 against maps, None against X-ray."""
    v = cfg.weights.nonbonded_final
    if v == "auto":
        return None if spec.kind == "xray" else NONBONDED_FINAL_MAPS
    return None if v is None else float(v)


def _reference_kind(cfg, spec) -> str:
    """``reference_kind``, "auto" resolved: torsions with ``reference_sigma: auto`` against
    maps; positions against X-ray data or with a σ given (``--reference-restraints S``)."""
    if cfg.reference_kind != "auto":
        return cfg.reference_kind
    return "torsion" if spec.kind != "xray" and cfg.reference_sigma == "auto" else "position"


def scaled_aniso(at, b_new):
    """ANISOU scaled by B_new/B_old, so refined isotropic B and the written U agree.

    Parameters
    ----------
    at : Atoms
        The atoms before refinement (their ``b_iso`` and ``u_aniso``).
    b_new : ndarray (N,) float
        Refined isotropic B (Å²).

    Returns
    -------
    ndarray (N, 6) or None
        ``at.u_aniso`` scaled per atom (its dtype kept); None when the atoms have none.
    """
    u = at.u_aniso
    if u is None:
        return None
    b_old = np.asarray(at.b_iso, np.float64)
    f = np.where(b_old > 0, np.asarray(b_new) / np.where(b_old > 0, b_old, 1.0), 1.0)
    return (np.asarray(u, np.float64) * f[:, None]).astype(np.asarray(u).dtype)


def _log_oddities(at, moving, in_map):
    n_h = int(np.sum(at.is_hydrogen))
    n_zero = int(np.sum(np.asarray(at.occ) <= 0))
    n_alt = int(np.sum(np.asarray(at.altloc).astype(str) != ""))
    log.info("Refining %d of %d atoms (%d fixed); %d hydrogens ride on their parents through "
             "the restraints and are left out of the map term", int(moving.sum()), len(at),
             int((~moving).sum()), n_h)
    if n_zero:
        log.info("%d atoms with zero occupancy: kept in the geometry, left out of the map term",
                 n_zero)
    if n_alt:
        log.info("%d atoms with alternative conformations: refined, each at its own occupancy",
                 n_alt)
