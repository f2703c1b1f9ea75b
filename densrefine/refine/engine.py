"""`fit`: restrained real-space refinement (rigid body → coordinates → B) against a map.

The loop is generic: a data term (`MapTerm`) and a geometry term (`Geometry`) are
summed as ``w · map + geometry`` and minimised by L-BFGS (`optim.minimise`) over the
parameters of each stage. Between macro cycles the blur goes from coarse to fine,
the mask is recomputed and the weight ``w`` is adjusted towards the target bond RMSD.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import input_error
from ..grid import rebox_periodic
from ..simulate.cells import PARTS, release_workspaces, set_workers
from ..types import Model
from . import geometry as _geometry
from .config import FitConfig, load_config
from .mapterm import MapTerm
from .optim import NonFiniteError, minimise
from .rigid import RigidGroups
from .select import select_atoms

log = logging.getLogger("densrefine")

SMALL_MODEL = 50000
"""Models with fewer atoms run on one CPU thread unless ``FitConfig.threads`` is set.

On the project's 2-core VM (idle) two torch threads were slower below this size: 5NI1
(4.6k atoms, full fit) 17–20 s vs 11 s wall, tiled 5NI1 10k atoms (`--stages xyz --cycles
2`) 11.3 vs 8.6 s; at 100k atoms they were faster (85 vs 95 s; 12–14 vs 14–17 s per cycle)."""


@dataclass
class RefineResult:
    """Outcome of `fit`.

    Attributes
    ----------
    model : Model
        Refined model (same atoms and order as the input).
    stats : dict
        Everything ``<prefix>_stats.json`` holds (before/after scores, geometry,
        cycles, timings, device, versions).
    cycles : list of dict
        One record per optimisation call (stage, blur, weight, CC, bond/angle RMSD).
    """

    model: Model
    stats: dict
    cycles: list = field(default_factory=list)


class _State:
    """Mutable refinement state: tensors of all atoms plus the pieces of the target."""

    def __init__(self, model, mterm, geom, moving, cfg, device, dtype):
        import torch

        at = model.atoms
        kw = {"device": device, "dtype": dtype}
        self.xyz = torch.as_tensor(np.array(at.xyz), **kw)
        self.b = torch.as_tensor(np.array(at.b_iso), **kw)
        self.occ = torch.as_tensor(np.array(at.occ), **kw)
        self.mv = torch.as_tensor(np.flatnonzero(moving), device=device)
        self.moving, self.mterm, self.geom, self.cfg = moving, mterm, geom, cfg
        self.w = 1.0
        self.fourier = False
        self.ref = None  # (N, 3) reference positions, and 1/σ² (Å⁻²), when restrained
        self.ref_k = 0.0
        self.monitor = None  # callable(xyz, b) -> dict, see `fit`
        self.rigid_atoms = None  # (N,) bool: the map term's atoms in rigid/SSE passes

    def total(self, xyz, b=None):
        m = self.mterm.target(xyz, self.b if b is None else b, self.occ, self.fourier)
        e, _ = self.geom.term.energy(xyz)
        if self.ref is not None:
            e = e + self.ref_k * ((xyz[self.mv] - self.ref[self.mv]) ** 2).sum()
        return self.w * m + e

    def numpy_xyz(self):
        return self.xyz.detach().cpu().double().numpy()


def _check(model, emap, resolution, device="cpu"):
    """Validated d (Å) and, when ``resolution`` is None, the d_model estimate used."""
    from ..scoring import check_inputs, estimate_resolution
    from ..simulate.api import check_params

    if resolution is None:
        check_inputs(model, emap, 2.0 * float(np.max(emap.voxel_size)))
        est = estimate_resolution(model, emap, device=device)
        log.warning("No resolution given: refining at the estimated d_model = %.3g Å "
                    "(pass -d/--resolution to override)", est.d_model)
        return est.d_model, est
    d = check_params(resolution)
    check_inputs(model, emap, d)
    return d, None


def fit(model: Model, emap, resolution, *, config=None, select=None, device="auto", seed=0,
        monlib=None, ligands=(), unknown="error", callback=None, monitor=None) -> RefineResult:
    """Refine ``model`` into ``emap`` with restraints; see `densrefine.refine`.

    Parameters
    ----------
    model : Model
        Starting model in the map's frame (Å, Å²).
    emap : Grid
        Experimental map.
    resolution : float or None
        d (Å), 0.5–50; None estimates it from the map and the starting model
        (d_model, `densrefine.scoring.estimate_resolution`), recorded in the stats as
        ``input.resolution_estimate``.
    config : FitConfig or dict or None
        Overrides of the defaults (`FitConfig`).
    select : str or ndarray of bool, optional
        Atoms to refine (``"A/10-40"``, see `densrefine.refine.select`); the others stay
        fixed but count in the map and nonbonded terms.
    device : str or torch.device
    seed : int
        Seeds torch; deterministic algorithms are used while `fit` runs.
    monlib, ligands, unknown
        Passed to `densrefine.restraints.build_restraints`.
    callback : callable, optional
        ``callback(stats)`` after each cycle with the stats dict so far.
    monitor : callable, optional
        ``monitor(xyz, b) -> dict`` with all atoms' positions (N, 3) Å and B (N,) Å²
        after each cycle; its items join that cycle's record (e.g. R-work and R-free
        of `densrefine.xtal.refine_monitor`) and are logged.

    Returns
    -------
    RefineResult

    Raises
    ------
    InputError
        Resolution out of range or not estimable, model and map do not overlap, bad selection or
        config, residues missing from the monomer library.
    """
    import torch

    from ..device import resolve_device

    cfg = config if isinstance(config, FitConfig) else load_config(config)
    if resolution is not None and np.isfinite(resolution) and resolution > 0:
        emap = rebox_periodic(model, emap, float(resolution))  # a crystal map, model elsewhere
    dev = resolve_device(device)
    d, estimate = _check(model, emap, resolution, dev)
    torch.manual_seed(int(seed))
    # CPU kernels used here are deterministic already; torch's deterministic mode only
    # swaps in slow fallbacks there (30x in the splat backward), so use it on CUDA only
    # (the call imports torch._dynamo, ~1 s, so it is made only when the mode changes)
    was_det, was_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    det = dev.type == "cuda" or was_det
    if det != was_det:
        torch.use_deterministic_algorithms(det, warn_only=True)
    threads = _threads(cfg, dev, len(model))
    workers = _splat_workers(cfg, dev, threads)
    if threads != was_threads or workers > 1:
        torch.set_num_threads(threads)
        log.info("Using %d CPU thread(s) while refining%s (%d atoms; set threads in the config "
                 "to change)", threads, f", the model map's batches on {workers} worker "
                 "threads" if workers > 1 else "", len(model))
    was_workers = set_workers(workers)
    # BLAS (numpy, scipy's L-BFGS-B) gets the same thread count: idle OpenBLAS threads
    # spin-wait, which cost 5NI1 7 s of CPU (18.8 vs 11.4 s) for no wall-time gain. The
    # limit reaches only libraries loaded before it is set: scipy's OpenBLAS loads with
    # scipy.optimize, hence the import.
    import scipy.optimize  # noqa: F401
    from threadpoolctl import threadpool_limits

    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            return _run(model, emap, d, cfg, select, dev, monlib, ligands, unknown, callback,
                        monitor, estimate)
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
    spin-wait cost up to 20x in CPU time (measured on the 175-atom example), so below
    `SMALL_MODEL` atoms one thread is used unless ``cfg.threads`` says otherwise. Larger
    models use no more threads than cores are idle (1-minute load average, this process
    not counted): on a 2-core machine at load 4, 5NI1 with 2 threads ran > 10x longer
    than with 1.
    """
    import os

    import torch

    if cfg.threads:
        return int(cfg.threads)
    if dev.type == "cpu" and n_atoms < SMALL_MODEL:
        return 1
    n = torch.get_num_threads()
    if dev.type == "cpu" and hasattr(os, "getloadavg"):
        idle = (os.cpu_count() or 1) - os.getloadavg()[0] + 1.0
        n = max(1, min(n, int(idle)))
    return n


def _splat_workers(cfg, dev, threads) -> int:
    """Threads that run the model map's batch groups (`densrefine.simulate.cells`).

    Only when torch runs one intra-op thread on a CPU by our choice (small models, no
    ``threads`` in the config): the batch groups' matmuls and scatters, which release
    the GIL, then overlap on a second core. Unlike OpenMP threads these block instead
    of spin-waiting, so the load average is not consulted: 5NI1 beside two busy
    processes on the 2-core VM took 6.9 / 7.2 s with two workers, 9.6 / 9.7 s with one.
    """
    import os

    if cfg.threads or dev.type != "cpu" or threads != 1:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(PARTS, cpus or 1))


def _run(model, emap, d, cfg, select, dev, monlib, ligands, unknown, callback, monitor=None,
         estimate=None):
    import torch

    from ..density import get_density_model
    from . import output

    t0 = time.perf_counter()
    at = model.atoms
    moving = select_atoms(at, select)
    in_map = ~np.asarray(at.is_hydrogen) & (np.asarray(at.occ) > 0)
    _log_oddities(at, moving, in_map)
    dtype = torch.float32
    geom = _geometry.build_geometry(model, monlib=monlib, ligands=ligands, unknown=unknown,
                                    device=dev, dtype=dtype, fixed=~moving,
                                    ss=cfg.ss_restraints, resolution=d, ss_sigma=cfg.ss_sigma,
                                    rama=cfg.rama_restraints, rama_weight=cfg.rama_weight)
    mterm = MapTerm(emap, d, np.asarray(at.xyz), in_map, moving,
                    get_density_model(cfg.map.density).terms(at, cfg.map.table),
                    cfg.map, dev, dtype)
    st = _State(model, mterm, geom, moving, cfg, dev, dtype)
    st.monitor = monitor
    if (not cfg.rigid_side_chains and "xyz" in cfg.stages
            and ("rigid" in cfg.stages or "sse" in cfg.stages)):
        st.rigid_atoms = _rigid_map_atoms(at, in_map)
    stats = output.start_stats(model, emap, d, cfg, select, moving, dev, geom)
    if estimate is not None:
        stats["input"]["resolution_estimate"] = estimate.to_dict()
    stats["timings"]["setup_s"] = time.perf_counter() - t0
    _notify(callback, stats)
    cycles = stats["cycles"]
    try:
        _weight_init(st, cfg)
        if "rigid" in cfg.stages:
            _rigid_stage(st, cfg, model, cycles, stats, callback)
        if "sse" in cfg.stages:
            _sse_stage(st, cfg, model, cycles, stats, callback)
        if "chi1" in cfg.stages:
            _chi1_stage(st, model, cycles, stats, callback)
        if "xyz" in cfg.stages:
            _xyz_stage(st, cfg, cycles, stats, callback)
        if "b" in cfg.stages:
            _b_stage(st, cfg, cycles, stats, callback)
        stats["status"] = "finished"
    except NonFiniteError as exc:
        stats["status"] = f"stopped: {exc}; the last model with a finite target is kept"
        log.warning("Refinement stopped: %s; keeping the last good model", exc)
    xyz, b = np.array(at.xyz, np.float64), np.array(at.b_iso, np.float64)
    xyz[moving] = st.numpy_xyz()[moving]  # fixed atoms keep their exact input values
    b[moving] = st.b.detach().cpu().double().numpy()[moving]
    new = model.with_atoms(at.replace(xyz=xyz, b_iso=b, u_aniso=_scaled_aniso(at, b)))
    output.finish_stats(stats, model, new, emap, d, dev, geom, time.perf_counter() - t0)
    _notify(callback, stats)
    return RefineResult(new, stats, cycles)


def _scaled_aniso(at, b_new):
    """ANISOU scaled by B_new/B_old, so refined isotropic B and the written U agree."""
    u = at.u_aniso
    if u is None:
        return None
    b_old = np.asarray(at.b_iso, np.float64)
    f = np.where(b_old > 0, np.asarray(b_new) / np.where(b_old > 0, b_old, 1.0), 1.0)
    return (np.asarray(u, np.float64) * f[:, None]).astype(np.asarray(u).dtype)


def _notify(callback, stats):
    if callback is not None:
        callback(stats)


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


def _weight_init(st, cfg):
    """w from the gradient-norm ratio: geometry at the target RMSD vs the map term."""
    import torch

    wc = cfg.weights
    if wc.weight is not None:
        st.w = float(wc.weight)
        log.info("Map weight w = %.4g (given)", st.w)
        return
    st.mterm.prepare(st.numpy_xyz(), st.b.cpu().numpy(), cfg.map.blur_factors[-1])
    p = st.xyz.clone().requires_grad_(True)
    g = torch.autograd.grad(st.mterm.target(p, st.b, st.occ), p)[0][st.mv]
    g_map = float(g.norm())
    sig = _median_bond_sigma(st.geom.restraints)
    g_geo = np.sqrt(len(st.mv)) * 2.0 * wc.target_bond_rmsd / sig**2
    st.w = wc.scale * g_geo / max(g_map, 1e-12)
    log.info("Map weight w = %.4g (automatic: gradient-norm ratio, geometry at bond RMSD "
             "%.3g Å vs map term at the final blur; adjusted between macro cycles)", st.w,
             wc.target_bond_rmsd)


def _median_bond_sigma(rs) -> float:
    for name in ("bond_sigma", "bonds_sigma"):
        v = getattr(rs, name, None)
        if v is not None and len(v):
            return float(np.median(v))
    b = getattr(rs, "bonds", None)
    v = getattr(b, "sigma", None)
    return float(np.median(v)) if v is not None and len(v) else 0.02


def _record(st, cycles, stats, callback, stage, cycle, target, t0, **extra):
    import torch

    with torch.no_grad():
        cc = -float(st.mterm.target(st.xyz, st.b, st.occ, st.fourier, kind="cc"))
    from ..restraints.stats import bond_angle_rmsd

    g = bond_angle_rmsd(st.numpy_xyz(), st.geom.restraints)
    rec = {"stage": stage, "cycle": cycle, "blur": st.mterm.blur, "weight": st.w,
           "target": target, "cc_mask_term": cc, "bond_rmsd": g.get("bond_rmsd"),
           "angle_rmsd": g.get("angle_rmsd"), "time_s": time.perf_counter() - t0, **extra}
    if st.monitor is not None:
        rec.update(st.monitor(st.numpy_xyz(), st.b.detach().cpu().double().numpy()))
    cycles.append(rec)
    if len(cycles) == 1:
        log.info("  %-6s %5s %8s %10s %10s %8s %9s %9s %7s", "stage", "cycle", "blur", "weight",
                 "target", "CC", "bond Å", "angle °", "time s")
    log.info("  %-6s %5d %8.1f %10.4g %10.5g %8s %9.4f %9.3f %7.2f", stage, cycle, rec["blur"],
             st.w, target, "n/a" if cc is None else f"{cc:.4f}", rec["bond_rmsd"] or 0,
             rec["angle_rmsd"] or 0, rec["time_s"])
    _notify(callback, stats)
    return rec


def _rigid_map_atoms(at, in_map):
    """Atoms of the map term in the rigid and SSE passes before the xyz stage: all but
    amino-acid side chains beyond Cβ (``FitConfig.rigid_side_chains``); None when that
    leaves none or all."""
    from ..scoring.residues import side_chain_beyond_cb

    keep = ~side_chain_beyond_cb(at)
    n, total = int((keep & in_map).sum()), int(in_map.sum())
    if n == 0 or n == total:
        return None
    log.info("Rigid-body and SSE map term: %d of %d atoms (amino-acid side chains beyond Cβ "
             "left out, their rotamers may be wrong; rigid_side_chains: true keeps them)",
             n, total)
    return keep


def _rigid_stage(st, cfg, model, cycles, stats, callback):
    levels = [("model", [np.flatnonzero(st.moving)])]
    chains = np.asarray(model.atoms.chain).astype(str)
    ids = list(dict.fromkeys(chains[st.moving].tolist()))
    if cfg.rigid_chains and len(ids) > 1:
        levels.append(("chains", [np.flatnonzero(st.moving & (chains == c)) for c in ids]))
    factors = list(dict.fromkeys(cfg.rigid_blur_factors))
    log.info("Rigid body: %s; axis-angle + translation per group, L-BFGS %d iterations at "
             "blur factors %s", " then ".join(f"{name} ({len(g)} groups)" for name, g in levels),
             cfg.rigid_iterations, factors)
    for name, groups in levels:
        for f in factors:
            _rigid_pass(st, groups, f, cfg.rigid_iterations, cycles, stats, callback, "rigid",
                        name)


def _rigid_pass(st, groups, factor, iterations, cycles, stats, callback, stage, name):
    """One L-BFGS rigid-body pass over ``groups`` at blur ``factor``; record it."""
    t0 = time.perf_counter()
    limited = st.rigid_atoms is not None and st.mterm.restrict(st.rigid_atoms)
    try:                         # the record's CC is that of the map term minimised
        st.mterm.prepare(st.numpy_xyz(), st.b.cpu().numpy(), factor)
        rg = RigidGroups(st.xyz, groups)
        try:
            val = minimise(rg.params, lambda: st.total(rg.apply()), iterations)
        finally:
            st.xyz = rg.apply().detach()
        p = rg.params.detach()
        _record(st, cycles, stats, callback, stage, len(cycles), val, t0, groups=name,
                shift=float(p[:, 3:].norm(dim=1).max()),
                rotation_deg=float(rg.angles_deg().max()))
    finally:
        if limited:
            st.mterm.restrict(None)


def _sse_stage(st, cfg, model, cycles, stats, callback):
    from .sse import sse_groups

    groups, labels = sse_groups(model, st.moving)
    if not groups:
        log.info("Secondary-structure rigid body: no groups among the refined atoms; skipped")
        return
    factors = list(dict.fromkeys(cfg.sse_blur_factors))
    log.info("Secondary-structure rigid body: %d groups (%d helices, %d strands, %d loop "
             "segments; Cα-trace assignment), geometry restraints on, L-BFGS %d iterations "
             "at blur factors %s", len(groups), labels.count("H"), labels.count("E"),
             labels.count("C"), cfg.sse_iterations, factors)
    for f in factors:
        _rigid_pass(st, groups, f, cfg.sse_iterations, cycles, stats, callback, "sse", "sse")


def _chi1_stage(st, model, cycles, stats, callback):
    import torch

    from .rotamer import scan_chi1

    t0 = time.perf_counter()
    st.mterm.prepare(st.numpy_xyz(), st.b.cpu().numpy(), 1.0)
    chi2 = bool(st.cfg.rotamer_chi2)
    new, changed, scanned = scan_chi1(model, st.numpy_xyz(), st.moving,
                                      st.mterm.exp0.detach().cpu().numpy(), st.mterm.frame,
                                      st.mterm.mask_full.cpu().numpy(), chi2=chi2)
    log.info("%s rotamer scan: staggered %s by the mean map value at side-chain atoms "
             "(no heavy-atom contact < 2.6 Å); %d of %d side chains changed",
             "χ1/χ2" if chi2 else "χ1", "χ1 × χ2" if chi2 else "χ1", changed, scanned)
    st.xyz = torch.as_tensor(new, device=st.xyz.device, dtype=st.xyz.dtype)
    with torch.no_grad():
        val = float(st.total(st.xyz))
    _record(st, cycles, stats, callback, "chi1", len(cycles), val, t0, changed=changed,
            scanned=scanned)


def _xyz_stage(st, cfg, cycles, stats, callback):
    if cfg.reference_sigma:
        st.ref, st.ref_k = st.xyz.detach().clone(), 1.0 / cfg.reference_sigma ** 2
        log.info("Reference-model restraints: every refined atom to its position at the "
                 "start of the coordinate stage, σ = %.3g Å", cfg.reference_sigma)
    log.info("Coordinates: all-atom L-BFGS (strong Wolfe), %d iterations × %d macro cycles, "
             "blur 4d²·%s", cfg.xyz_iterations, cfg.cycles, cfg.map.blur_factors)
    for i in range(cfg.cycles):
        t0 = time.perf_counter()
        val = _xyz_cycle(st, cfg, _blur_factor(cfg.map.blur_factors, i, cfg.cycles))
        rec = _record(st, cycles, stats, callback, "xyz", len(cycles), val, t0)
        if cfg.weights.weight is None:
            _adjust_weight(st, cfg, rec)
    if cfg.weights.weight is None and cfg.cycles:
        _polish(st, cfg, cycles, stats, callback, rec)


def _xyz_cycle(st, cfg, blur_factor) -> float:
    """One L-BFGS call on the refined atoms' coordinates at blur 4d²·``blur_factor``."""
    st.mterm.prepare(st.numpy_xyz(), st.b.cpu().numpy(), blur_factor)
    p = st.xyz[st.mv].clone().requires_grad_(True)
    try:
        return minimise(p, lambda: st.total(st.xyz.index_copy(0, st.mv, p)),
                        cfg.xyz_iterations)
    finally:
        st.xyz = st.xyz.index_copy(0, st.mv, p.detach())


def _over_target(wc, rec) -> bool:
    bond, angle = rec.get("bond_rmsd") or 0.0, rec.get("angle_rmsd") or 0.0
    return angle > 1.02 * wc.max_angle_rmsd or bond > 1.3 * wc.target_bond_rmsd


def _polish(st, cfg, cycles, stats, callback, rec):
    """Extra finest-blur cycles while the last cycle's geometry misses its targets.

    The per-cycle weight adjustment acts after a cycle, so the last macro cycle's
    geometry is never corrected; on 5NI1 (EMD-3488) it ended at angle RMSD 1.69°
    against the 1.5° limit. Each polish cycle first lowers w by (limit / actual)²
    of the worse of angle and bond (clipped to [0.3, 0.9]).
    """
    wc = cfg.weights
    for _ in range(int(wc.polish_cycles)):
        if not _over_target(wc, rec):
            return
        bond, angle = rec.get("bond_rmsd") or 0.0, rec.get("angle_rmsd") or 0.0
        k = min(wc.max_angle_rmsd / max(angle, 1e-9), 1.3 * wc.target_bond_rmsd / max(bond, 1e-9))
        k = float(np.clip(k * k, 0.3, 0.9))
        st.w *= k
        log.info("Geometry above target (bond %.4f Å, angle %.2f° vs %.3g Å, %.3g°): map "
                 "weight ×%.2f → %.4g, one more cycle at the finest blur", bond, angle,
                 wc.target_bond_rmsd, wc.max_angle_rmsd, k, st.w)
        t0 = time.perf_counter()
        val = _xyz_cycle(st, cfg, cfg.map.blur_factors[-1])
        rec = _record(st, cycles, stats, callback, "xyz", len(cycles), val, t0, polish=True)


def _blur_factor(factors, i, n) -> float:
    """Schedule entry of macro cycle i of n: in order, the last cycle always the finest."""
    return float(factors[-1] if i == n - 1 else factors[min(i, len(factors) - 1)])


def _adjust_weight(st, cfg, rec):
    """Scale w by √(target/actual bond RMSD) (or angle limit), within [1/2, 2] per cycle."""
    wc = cfg.weights
    bond, angle = rec.get("bond_rmsd"), rec.get("angle_rmsd")
    if not bond:
        return
    k = wc.target_bond_rmsd / bond
    if angle and angle > wc.max_angle_rmsd:
        k = min(k, wc.max_angle_rmsd / angle)
    k = float(np.clip(np.sqrt(k), 0.5, 2.0))  # damped: RMSDs respond ~linearly to w
    st.w *= k
    log.debug("weight ×%.3g → %.4g (bond %.4f Å, angle %.3f°)", k, st.w, bond, angle or 0)


def _b_stage(st, cfg, cycles, stats, callback):
    """Per-atom B by the negative log posterior: map likelihood + B-similarity prior.

    Target ``w (1 − CC²) + ½ Σ (ΔB/σ)²``: w from `geometry.b_data_weight` (Gaussian
    likelihood, noise variance from the current fit) × ``cfg.b_weight_scale``; pairs and
    σ from `geometry.b_restraint_pairs` (bonded σ = ``cfg.b_sigma``, 1-3 pairs 1.5 σ).
    The iterations run in 2 rounds, w re-estimated from the fit after the first (as
    servalcat re-estimates its noise between cycles). B = lo + (hi − lo)·sigmoid(u), the
    start kept ≥ 0.5 Å² inside the bounds so atoms at a bound can move. With
    ``cfg.b_overall`` the map term sees B + g, one offset g (Å²) for the map's overall
    sharpening, and the mean refined B is held at its start (½ N (ΔB̄ / 1 Å²)²).
    """
    import torch

    lo, hi = cfg.b_range
    pairs_np, sig_np = _geometry.b_restraint_pairs(st.geom, cfg.b_sigma)
    pairs = torch.as_tensor(pairs_np, device=st.b.device)
    sig = torch.as_tensor(sig_np, device=st.b.device, dtype=st.b.dtype)
    t0 = time.perf_counter()
    st.fourier = True
    st.mterm.prepare(st.numpy_xyz(), st.b.cpu().numpy(), 1.0)
    kind, rounds, overall = cfg.map.b_target, 2, bool(cfg.b_overall)
    vol = float(st.mterm.mask_full.sum()) * abs(float(np.linalg.det(st.mterm.frame.steps)))
    edge = min(0.5, 0.25 * (hi - lo))
    b0 = st.b[st.mv].clamp(lo + edge, hi - edge)
    mean0 = float(b0.mean())
    u = torch.cat([torch.logit((b0 - lo) / (hi - lo)), b0.new_zeros(1)]).requires_grad_(True)

    def full_b():
        return st.b.index_copy(0, st.mv, lo + (hi - lo) * torch.sigmoid(u[:-1]))

    def offset():  # g (Å²), 10× for the L-BFGS scaling
        return 10.0 * u[-1]

    def resid(b):  # 1 − CC² (cc), or 1 − CC_uncentred² (lsq, whose target is −CC_u²)
        m = st.mterm.target(st.xyz, b + offset() if overall else b, st.occ, True, kind=kind)
        return 1.0 - m * m if kind == "cc" else 1.0 + m

    def target():
        b = full_b()
        f = wb * resid(b) + 0.5 * _geometry.b_similarity(b, pairs, sig)
        if not overall:
            return f
        return f + 0.5 * len(b0) * (b[st.mv].mean() - mean0) ** 2

    val, wb = 0.0, 0.0
    for k in range(rounds):
        with torch.no_grad():
            r0 = float(resid(full_b()))
        wb = _geometry.b_data_weight(vol, st.mterm.d, r0) * float(cfg.b_weight_scale)
        n_it = cfg.b_iterations // rounds + (cfg.b_iterations % rounds if k == 0 else 0)
        say = log.info if k == 0 else log.debug   # one info line per stage
        say("B-factors (round %d/%d): per atom, %.0f–%.0f Å²; −log posterior = Gaussian "
            "likelihood w·(1 − CC²) of the Fourier-truncated model map (d > %.3g Å, %s, mask "
            "%.0f Å³, CC = %.4f, w = %.4g%s) + ½Σ(ΔB/σ)² over %d bonded / 1-3 pairs (σ = %.3g "
            "/ %.3g Å²); L-BFGS %d iterations (w re-estimated after round 1)", k + 1, rounds,
            lo, hi, st.mterm.d, kind, vol, np.sqrt(max(1.0 - r0, 0.0)), wb,
            f", overall map B offset {float(offset().detach()):.1f} Å²" if overall else "",
            len(pairs), cfg.b_sigma, _geometry.B_SIGMA_13 * cfg.b_sigma, n_it)
        try:
            val = minimise(u, target, n_it)
        finally:
            st.b = full_b().detach()
    extra = {"b_overall_offset": float(offset().detach())} if overall else {}
    _record(st, cycles, stats, callback, "b", len(cycles), val, t0,
            b_mean=float(st.b[st.mv].mean()), b_weight=wb, **extra)
