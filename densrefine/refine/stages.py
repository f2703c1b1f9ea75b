"""The stages of ``fit``, in order: rigid body, secondary-structure rigid bodies, χ1 scan,
coordinates, B-factors; and the automatic map weight.

Each stage takes the run context (`densrefine.refine.engine.Run`): its tensors (``xyz``,
``b``, ``occ`` of all atoms; ``mv`` the refined ones), the data term ``term`` (the
interface of `densrefine.refine.data`), the geometry ``geom``, the weight ``w``, the
config ``cfg`` and ``record`` for the per-cycle record. Targets are ``w · data + geometry``
minimised by L-BFGS (`densrefine.refine.optim.minimise`).
"""
from __future__ import annotations

import logging
import time

import numpy as np

from ..restraints.chains import paired_chains
from ..restraints.stats import bond_z
from ..scoring.residues import side_chain_beyond_cb
from . import geometry as _geometry
from .config import AUTO_REFERENCE_SIGMA
from .optim import minimise
from .rigid import RigidGroups
from .rotamer import scan_chi1
from .sse import sse_groups

log = logging.getLogger("densrefine")


# ------------------------------------------------------------------------- weight
def weight_init(run):
    """w from the gradient-norm ratio: geometry at the target RMSD vs the data term."""
    import torch

    wc = run.cfg.weights
    if wc.weight is not None:
        run.w = float(wc.weight)
        log.info("Map weight w = %.4g (given)", run.w)
        return
    run.term.prepare(run.numpy_xyz(), run.numpy_b(), run.cfg.map.blur_factors[-1])
    p = run.xyz.clone().requires_grad_(True)
    g = torch.autograd.grad(run.term.target(p, run.b, run.occ), p)[0][run.mv]
    g_map = float(g.norm())
    sig = _median_bond_sigma(run.geom.restraints)
    g_geo = np.sqrt(len(run.mv)) * 2.0 * wc.target_bond_rmsd / sig**2
    k_term = float(getattr(run.term, "weight_scale", 1.0))
    run.w = wc.scale * k_term * g_geo / max(g_map, 1e-12)
    log.info("Map weight w = %.4g (automatic: gradient-norm ratio, geometry at bond RMSD "
             "%.3g Å vs map term at the final blur%s; adjusted between macro cycles)", run.w,
             wc.target_bond_rmsd, "" if k_term == 1.0 else f", × {k_term:g} for the "
             f"{getattr(run.term, 'kind', run.term.name)} data term")
    if wc.likelihood_cap is not None and not getattr(run.term, "likelihood", False):
        # (a data term that is itself a log-likelihood, e.g. X-ray ML, has no map CC)
        with torch.no_grad():
            cc = -float(run.term.target(run.xyz, run.b, run.occ, kind="cc"))
        run.w_cap = likelihood_cap(run, cc)
        if run.w > run.w_cap:
            log.info("Map weight capped at %.4g = %.3g × the Gaussian-likelihood weight "
                     "N_ind/(1 − CC²) (CC %.3f over %.0f Å³ at %.3g Å): the map supports "
                     "less than the bond-RMSD target asks", run.w_cap, wc.likelihood_cap, cc,
                     run.term.mask_volume(), run.term.d)
            run.w = run.w_cap


def likelihood_cap(run, cc: float) -> float:
    """``likelihood_cap`` × N_ind/(1 − CC²): the most the map weight may be (`WeightConfig`).

    2 × `densrefine.refine.geometry.b_data_weight` (the geometry energy is χ², not χ²/2).
    """
    return float(run.cfg.weights.likelihood_cap) * 2.0 * _geometry.b_data_weight(
        run.term.mask_volume(), run.term.d, 1.0 - cc * cc)


def _median_bond_sigma(rs) -> float:
    for name in ("bond_sigma", "bonds_sigma"):
        v = getattr(rs, name, None)
        if v is not None and len(v):
            return float(np.median(v))
    b = getattr(rs, "bonds", None)
    v = getattr(b, "sigma", None)
    return float(np.median(v)) if v is not None and len(v) else 0.02


def _over_target(wc, rec) -> bool:
    bond, angle = rec.get("bond_rmsd") or 0.0, rec.get("angle_rmsd") or 0.0
    return angle > 1.02 * wc.max_angle_rmsd or bond > 1.3 * wc.target_bond_rmsd


def _adjust_weight(run, rec):
    """Scale w by √(target/actual bond RMSD) (or angle limit), within [1/2, 2] per cycle."""
    wc = run.cfg.weights
    bond, angle = rec.get("bond_rmsd"), rec.get("angle_rmsd")
    if not bond:
        return
    k = wc.target_bond_rmsd / bond
    if angle and angle > wc.max_angle_rmsd:
        k = min(k, wc.max_angle_rmsd / angle)
    k = float(np.clip(np.sqrt(k), 0.5, 2.0))  # damped: RMSDs respond ~linearly to w
    run.w *= k
    if run.w_cap is not None:
        run.w = min(run.w, run.w_cap)
    log.debug("weight ×%.3g → %.4g (bond %.4f Å, angle %.3f°)", k, run.w, bond, angle or 0)


# ------------------------------------------------------------------------- rigid bodies
def rigid_map_atoms(at, in_map):
    """Atoms of the data term in the rigid and SSE passes before the xyz stage: all but
    amino-acid side chains beyond Cβ (``FitConfig.rigid_side_chains``); None when that
    leaves none or all."""
    keep = ~side_chain_beyond_cb(at)
    n, total = int((keep & in_map).sum()), int(in_map.sum())
    if n == 0 or n == total:
        return None
    log.info("Rigid-body and SSE map term: %d of %d atoms (amino-acid side chains beyond Cβ "
             "left out, their rotamers may be wrong; rigid_side_chains: true keeps them)",
             n, total)
    return keep


def rigid_stage(run):
    """Whole model, then (multi-chain models) one rigid group per chain or base-paired
    strand set.

    A whole-model move is kept only when it fits every chain at least as well as before
    (`_chains_agree`): when one chain sits off its density and the others in it, the
    whole-model optimum is a compromise that moves the placed chains away. Then the
    whole-model move is undone and each chain moves on its own. The chain level runs
    also when ``rigid_chains`` is set.
    """
    cfg = run.cfg
    model_level = [np.flatnonzero(run.moving)]
    chains = np.asarray(run.model.atoms.chain).astype(str)
    ids = set(chains[run.moving].tolist())
    bodies = [[c for c in g if c in ids] for g in paired_chains(run.model.atoms)]
    bodies = [g for g in bodies if g]
    chain_level = [np.flatnonzero(run.moving & np.isin(chains, g)) for g in bodies]
    factors = list(dict.fromkeys(cfg.rigid_blur_factors))
    if len(bodies) > 1:
        joined = [" + ".join(g) for g in bodies if len(g) > 1]
        if joined:
            log.info("Base-paired strands move as one rigid body: %s", ", ".join(joined))
    log.info("Rigid body: model (1 group)%s; axis-angle + translation per group, L-BFGS %d "
             "iterations at blur factors %s",
             "" if len(bodies) < 2 else f" then chains ({len(bodies)} groups"
             + (")" if cfg.rigid_chains else ", when they disagree with the model move)"),
             cfg.rigid_iterations, factors)
    before = run.xyz.detach().clone()
    for f in factors:
        _rigid_pass(run, model_level, f, cfg.rigid_iterations, "rigid", "model")
    if len(bodies) < 2:
        return
    agree = _chains_agree(run, chain_level, bodies, before, factors[-1])
    if not agree:
        run.xyz = before
    if cfg.rigid_chains or not agree:
        for f in factors:
            _rigid_pass(run, chain_level, f, cfg.rigid_iterations, "rigid", "chains")


CHAIN_CC_TOLERANCE = 0.002
"""Drop of a chain's CC (at the last rigid blur) that rejects a whole-model rigid move
(`rigid_stage`)."""


def _chains_agree(run, groups, names, before, factor) -> bool:
    """True when the whole-model rigid move from ``before`` to ``run.xyz`` lowers no chain's
    CC (map term restricted to the chain's atoms, mask around them) by more than
    `CHAIN_CC_TOLERANCE`; True also when the data term cannot be restricted."""
    import torch

    after = run.xyz.detach()
    drops = []
    try:
        for g, name in zip(groups, names):
            sub = np.zeros(len(run.moving), bool)
            sub[g] = True
            if run.rigid_atoms is not None:
                sub &= run.rigid_atoms
            if not run.term.restrict(sub):
                return True
            cc = []
            for x in (before, after):
                run.term.prepare(x.cpu().double().numpy(), run.numpy_b(), factor)
                with torch.no_grad():
                    cc.append(-float(run.term.target(x, run.b, run.occ, run.fourier,
                                                     kind="cc")))
            drops.append((cc[0] - cc[1], " + ".join(name)))
    finally:
        run.term.restrict(None)
    worst = max(drops)
    run.stats["rigid_chain_cc_change"] = {n: round(-d, 5) for d, n in drops}
    log.info("Rigid body: whole-model move changes chain CC by %s",
             ", ".join(f"{n} {-d:+.4f}" for d, n in drops))
    if worst[0] > CHAIN_CC_TOLERANCE:
        log.info("Rigid body: the whole-model move lowers the CC of %s by %.4f (> %.3g); "
                 "undone, each chain moves on its own", worst[1], worst[0], CHAIN_CC_TOLERANCE)
        run.stats["rigid_model_move"] = "undone"
        return False
    run.stats["rigid_model_move"] = "kept"
    return True


def _rigid_pass(run, groups, factor, iterations, stage, name):
    """One L-BFGS rigid-body pass over ``groups`` at blur ``factor``; record it."""
    t0 = time.perf_counter()
    limited = run.rigid_atoms is not None and run.term.restrict(run.rigid_atoms)
    try:                         # the record's CC is that of the map term minimised
        run.term.prepare(run.numpy_xyz(), run.numpy_b(), factor)
        rg = RigidGroups(run.xyz, groups)
        try:
            val = minimise(rg.params, lambda: run.total(rg.apply()), iterations)
        finally:
            run.xyz = rg.apply().detach()
        p = rg.params.detach()
        run.record(stage, val, t0, groups=name, shift=float(p[:, 3:].norm(dim=1).max()),
                   rotation_deg=float(rg.angles_deg().max()))
    finally:
        if limited:
            run.term.restrict(None)


def _resolved(run, stage: str) -> np.ndarray:
    """Atoms (bool (N,)) around which the map resolves what ``stage`` moves: local resolution
    better than `low_resolution`; the others are logged and left where they are."""
    ok = run.d_atom < run.cfg.low_resolution
    n_out = int((run.moving & ~ok).sum())
    if n_out:
        log.info("%s: %d of %d refined atoms left out, where the map supports %.3g Å or worse "
                 "(low_resolution; side chains are not resolved there)", stage, n_out,
                 int(run.moving.sum()), run.cfg.low_resolution)
    return ok


def sse_stage(run):
    cfg = run.cfg
    groups, labels = sse_groups(run.model, run.moving)
    keep = [k for k, g in enumerate(groups) if np.median(run.d_atom[g]) < cfg.low_resolution]
    if len(keep) < len(groups):
        log.info("Secondary-structure rigid body: %d of %d groups left out, where the map "
                 "supports %.3g Å or worse (low_resolution; small elements are not resolved "
                 "there)", len(groups) - len(keep), len(groups), cfg.low_resolution)
    groups, labels = [groups[k] for k in keep], [labels[k] for k in keep]
    if not groups:
        log.info("Secondary-structure rigid body: no groups among the refined atoms; skipped")
        return
    factors = list(dict.fromkeys(cfg.sse_blur_factors))
    log.info("Secondary-structure rigid body: %d groups (%d helices, %d strands, %d loop "
             "segments; Cα-trace assignment), geometry restraints on, L-BFGS %d iterations "
             "at blur factors %s", len(groups), labels.count("H"), labels.count("E"),
             labels.count("C"), cfg.sse_iterations, factors)
    for f in factors:
        _rigid_pass(run, groups, f, cfg.sse_iterations, "sse", "sse")


# ------------------------------------------------------------------------- rotamers
def chi1_stage(run):
    import torch

    resolved = _resolved(run, "χ1 rotamer scan")
    if not (run.moving & resolved).any():
        return
    t0 = time.perf_counter()
    run.term.prepare(run.numpy_xyz(), run.numpy_b(), 1.0)
    chi2 = bool(run.cfg.rotamer_chi2)
    values, frame, mask = run.term.rotamer_view()
    new, changed, scanned = scan_chi1(run.model, run.numpy_xyz(), run.moving & resolved, values,
                                      frame, mask, chi2=chi2, margin=run.cfg.rotamer_margin)
    log.info("%s rotamer scan: staggered %s by the mean map value at side-chain atoms "
             "(no heavy-atom contact < 2.6 Å); %d of %d side chains changed",
             "χ1/χ2" if chi2 else "χ1", "χ1 × χ2" if chi2 else "χ1", changed, scanned)
    run.xyz = torch.as_tensor(new, device=run.xyz.device, dtype=run.xyz.dtype)
    with torch.no_grad():
        val = float(run.total(run.xyz))
    run.record("chi1", val, t0, changed=changed, scanned=scanned)


# ------------------------------------------------------------------------- coordinates
def xyz_stage(run):
    cfg = run.cfg
    _reference_restraints(run)
    log.info("Coordinates: all-atom L-BFGS (strong Wolfe), %d iterations × %d macro cycles, "
             "blur 4d²·%s", cfg.xyz_iterations, cfg.cycles, cfg.map.blur_factors)
    rec = None
    run.joint_b = _joint_b(run)
    if run.joint_b and cfg.cycles:
        # B alone first: a start with one flat B (a reset, or a molecular-replacement
        # model) is mostly wrong in B, which the joint cycles correct only slowly
        t0 = time.perf_counter()
        run.term.prepare(run.numpy_xyz(), run.numpy_b(), 1.0)
        val = b_likelihood(run, max(4, cfg.b_iterations // 2))
        run.record("b", val, t0, b_mean=float(run.b[run.mv].mean()), before_xyz=True)
    for i in range(cfg.cycles):
        t0 = time.perf_counter()
        factor = _blur_factor(cfg.map.blur_factors, i, cfg.cycles)
        if factor == cfg.map.blur_factors[-1]:
            _final_cap(run)
            _final_nonbonded(run)
        val = _xyz_cycle(run, factor)
        rec = run.record("xyz", val, t0)
        if cfg.weights.weight is None:
            _adjust_weight(run, rec)
    if cfg.weights.weight is None and cfg.cycles:
        rec = _polish(run, rec) or rec
    if cfg.max_bond_z is not None and cfg.cycles:
        _bond_guard(run)


def _reference_restraints(run):
    """Restrain refined atoms to their positions at the start of the coordinate stage.

    A given ``reference_sigma`` applies to every refined atom; "auto" applies
    `AUTO_REFERENCE_SIGMA` to the atoms around which the map supports `low_resolution` or
    worse (their local resolution), and none elsewhere.
    """
    import torch

    cfg = run.cfg
    if cfg.reference_sigma is None:
        return
    auto = cfg.reference_sigma == "auto"
    sigma = AUTO_REFERENCE_SIGMA if auto else float(cfg.reference_sigma)
    held = run.moving & (run.d_atom >= cfg.low_resolution) if auto else run.moving
    if not held.any():
        return
    if run.reference_kind == "torsion":
        _reference_torsions(run, held, auto)
        return
    run.ref = run.xyz.detach().clone()
    run.ref_k = torch.as_tensor(np.where(held, 1.0 / sigma ** 2, 0.0), device=run.xyz.device,
                                dtype=run.xyz.dtype)
    log.info("Reference-model restraints%s: %d of %d refined atoms%s to their positions at "
             "the start of the coordinate stage, σ = %.3g Å", " (auto)" if auto else "",
             int(held.sum()), int(run.moving.sum()),
             f", where the map supports {cfg.low_resolution:.3g} Å or worse," if auto else "",
             sigma)


def _reference_torsions(run, held, auto) -> None:
    """Reference restraints on the start model's torsions (``reference_kind: torsion``)."""
    import torch

    from ..restraints import rama as _rama
    from ..restraints.energy import dihedrals_deg

    cfg = run.cfg
    rs = run.geom.restraints
    quads = [np.asarray(rs.torsions, np.int64).reshape(-1, 4)]
    rr = _rama.find_residues(run.model, run.moving)
    if len(rr.idx):
        quads += [rr.idx[:, 0:4], rr.idx[:, 1:5]]
    q = np.unique(np.concatenate(quads), axis=0)
    q = q[held[q].any(1)]
    if not len(q):
        return
    idx = torch.as_tensor(q, device=run.xyz.device)
    with torch.no_grad():
        start = dihedrals_deg(run.xyz.detach(), idx)
    run.ref_tors = (idx, start, float(cfg.reference_torsion_sigma),
                    float(cfg.reference_torsion_limit))
    log.info("Reference-model restraints%s on torsions: %d torsions (library + φ/ψ) with an "
             "atom among %d of %d refined atoms%s, held to the start of the coordinate stage, "
             "σ = %.3g°, top-out at %.3g°", " (auto)" if auto else "", len(q), int(held.sum()),
             int(run.moving.sum()),
             f" where the map supports {cfg.low_resolution:.3g} Å or worse" if auto else "",
             cfg.reference_torsion_sigma, cfg.reference_torsion_limit)


def _joint_b(run) -> bool:
    """With a data term that is a log-likelihood (X-ray ML) and a B stage to come, the
    coordinate cycles refine xyz and B together (servalcat and REFMAC refine both every
    cycle; a start with one flat B would otherwise fit its coordinates to wrong B, and one
    evaluation gives both gradients)."""
    cfg = run.cfg
    joint = bool(getattr(run.term, "likelihood", False) and "b" in cfg.stages)
    if joint:
        log.info("Coordinates and B together in each macro cycle (likelihood data term): "
                 "w · (−log L + ½Σ(ΔB/σ)² / b_weight_scale) + geometry")
    return joint


def _final_nonbonded(run) -> None:
    """Set the nonbonded multiplier to ``weights.nonbonded_final`` (resolved in
    ``run.nonbonded_final``) for the finest-blur cycles (once)."""
    k = run.nonbonded_final
    weights = getattr(run.geom.term, "weights", None)
    if k is None or weights is None or weights.get("nonbonded") == k:
        return
    weights["nonbonded"] = k
    log.info("Nonbonded term × %.3g for the finest-blur cycles (weights.nonbonded_final)", k)


def _final_cap(run) -> None:
    """Lower the weight cap to ``likelihood_cap_final`` for the finest-blur cycles (once)."""
    wc = run.cfg.weights
    if (run.w_cap is None or wc.weight is not None or wc.likelihood_cap_final is None
            or run.final_capped):
        return
    run.final_capped = True
    cap = run.w_cap * float(wc.likelihood_cap_final) / float(wc.likelihood_cap)
    if cap < run.w_cap:
        run.w_cap = cap
        if run.w > cap:
            log.info("Map weight capped at %.4g = %.3g × the Gaussian-likelihood weight for "
                     "the finest-blur cycles (likelihood_cap_final)", cap,
                     wc.likelihood_cap_final)
            run.w = cap


def _xyz_cycle(run, blur_factor, iterations: int | None = None) -> float:
    """One L-BFGS call (``iterations``, default ``xyz_iterations``) on the refined atoms'
    coordinates at blur 4d²·``blur_factor`` (and their B with ``run.joint_b``,
    `_xyz_b_cycle`)."""
    run.term.prepare(run.numpy_xyz(), run.numpy_b(), blur_factor)
    n_it = run.cfg.xyz_iterations if iterations is None else int(iterations)
    if getattr(run, "joint_b", False):
        return _xyz_b_cycle(run, n_it)
    p = run.xyz[run.mv].clone().requires_grad_(True)
    try:
        return minimise(p, lambda: run.total(run.xyz.index_copy(0, run.mv, p)), n_it)
    finally:
        run.xyz = run.xyz.index_copy(0, run.mv, p.detach())


def _b_prior(run):
    """(pairs, σ) tensors of the B-similarity restraint (`geometry.b_restraint_pairs`)."""
    import torch

    if getattr(run, "_b_pairs", None) is None:
        pairs, sig = _geometry.b_restraint_pairs(run.geom, run.cfg.b_sigma)
        run._b_pairs = (torch.as_tensor(pairs, device=run.b.device),
                        torch.as_tensor(sig, device=run.b.device, dtype=run.b.dtype))
    return run._b_pairs


def _b_logit(run):
    """B of the refined atoms as u with B = lo + (hi − lo)·sigmoid(u), kept ≥ 0.5 Å²
    inside the bounds so that atoms at a bound can move."""
    import torch

    lo, hi = run.cfg.b_range
    edge = min(0.5, 0.25 * (hi - lo))
    b0 = run.b[run.mv].clamp(lo + edge, hi - edge)
    return torch.logit((b0 - lo) / (hi - lo))


def _xyz_b_cycle(run, iterations: int) -> float:
    """One L-BFGS call on the refined atoms' xyz and B together: w · (data + ½Σ(ΔB/σ)² /
    b_weight_scale) + geometry, so that the B part is the B stage's posterior
    (`b_likelihood`) scaled by w."""
    import torch

    lo, hi = run.cfg.b_range
    pairs, sig = _b_prior(run)
    m = len(run.mv)
    p = torch.cat([run.xyz[run.mv].reshape(-1), _b_logit(run)]).detach().requires_grad_(True)
    kb = 0.5 / float(run.cfg.b_weight_scale)

    def parts():
        xyz = run.xyz.index_copy(0, run.mv, p[:3 * m].view(m, 3))
        b = run.b.index_copy(0, run.mv, lo + (hi - lo) * torch.sigmoid(p[3 * m:]))
        return xyz, b

    def target():
        xyz, b = parts()
        return run.total(xyz, b) + run.w * kb * _geometry.b_similarity(b, pairs, sig)

    try:
        return minimise(p, target, iterations)
    finally:
        xyz, b = parts()
        run.xyz, run.b = xyz.detach(), b.detach()


def _polish(run, rec):
    """Extra finest-blur cycles while the last cycle's geometry misses its targets.

    The per-cycle weight adjustment acts after a cycle, so the last macro cycle's
    geometry is never corrected. Each polish cycle first lowers w by (limit / actual)²
    of the worse of angle and bond (clipped to [0.3, 0.9]). With a likelihood data term
    (X-ray) a polish cycle runs half the iterations: the model is refined already and
    only gives up a little fit for geometry (on 3AY4 and 3IO0 the full polish cycles
    changed R-free by < 0.001 and cost 10-20 % of the run, RESULTS.md).
    """
    wc = run.cfg.weights
    n_it = run.cfg.xyz_iterations
    if getattr(run.term, "likelihood", False):
        n_it = max(4, n_it // 2)
    for _ in range(int(wc.polish_cycles)):
        if not _over_target(wc, rec):
            return rec
        bond, angle = rec.get("bond_rmsd") or 0.0, rec.get("angle_rmsd") or 0.0
        k = min(wc.max_angle_rmsd / max(angle, 1e-9), 1.3 * wc.target_bond_rmsd / max(bond, 1e-9))
        k = float(np.clip(k * k, 0.3, 0.9))
        run.w *= k
        log.info("Geometry above target (bond %.4f Å, angle %.2f° vs %.3g Å, %.3g°): map "
                 "weight ×%.2f → %.4g, one more cycle at the finest blur", bond, angle,
                 wc.target_bond_rmsd, wc.max_angle_rmsd, k, run.w)
        t0 = time.perf_counter()
        val = _xyz_cycle(run, run.cfg.map.blur_factors[-1], n_it)
        rec = run.record("xyz", val, t0, polish=True)
    return rec


def _refined_bond_z(run) -> np.ndarray:
    """|z| of the bonds with a refined atom (fixed-fixed bonds are not ours to fix)."""
    rs = run.geom.restraints
    z = bond_z(run.numpy_xyz(), rs)
    return np.where(run.moving[np.asarray(rs.bonds)].any(1), z, 0.0) if len(z) else z


def _bond_guard(run):
    """Finest-blur cycles with the map weight halved while a refined bond is > max_bond_z σ
    off its ideal (`FitConfig.max_bond_z`): the output should carry no such bond."""
    cfg, rs = run.cfg, run.geom.restraints
    for k in range(cfg.guard_cycles + 1):
        z = _refined_bond_z(run)
        bad = np.flatnonzero(z > cfg.max_bond_z)
        if not len(bad):
            return
        worst = bad[np.argsort(-z[bad])][:5]
        names = "; ".join(f"{rs.labels[rs.bonds[i][0]]}–{rs.labels[rs.bonds[i][1]]} "
                          f"{z[i]:.1f}σ" for i in worst)
        if k == cfg.guard_cycles:
            log.warning("%d bond(s) still beyond %.3gσ after %d guard cycles: %s", len(bad),
                        cfg.max_bond_z, k, names)
            run.stats.setdefault("warnings", []).append(
                f"{len(bad)} bond(s) beyond {cfg.max_bond_z:g} sigma: {names}")
            return
        run.w *= 0.5
        log.info("%d bond(s) beyond %.3gσ (%s): map weight ×0.5 → %.4g, one more cycle at "
                 "the finest blur", len(bad), cfg.max_bond_z, names, run.w)
        t0 = time.perf_counter()
        val = _xyz_cycle(run, cfg.map.blur_factors[-1])
        run.record("xyz", val, t0, guard=True)


def _blur_factor(factors, i, n) -> float:
    """Schedule entry of macro cycle i of n: in order, the last cycle always the finest."""
    return float(factors[-1] if i == n - 1 else factors[min(i, len(factors) - 1)])


# ------------------------------------------------------------------------- B-factors
def b_stage(run):
    """Per-atom B by the negative log posterior: map likelihood + B-similarity prior.

    Target ``w (1 − CC²) + ½ Σ (ΔB/σ)²``: w from `geometry.b_data_weight` (Gaussian
    likelihood, noise variance from the current fit) × ``cfg.b_weight_scale``; pairs and
    σ from `geometry.b_restraint_pairs` (bonded σ = ``cfg.b_sigma``, 1-3 pairs 1.5 σ).
    The iterations run in 2 rounds, w re-estimated from the fit after the first (as
    servalcat re-estimates its noise between cycles). B = lo + (hi − lo)·sigmoid(u), the
    start kept ≥ 0.5 Å² inside the bounds so atoms at a bound can move. With
    ``cfg.b_overall`` the data term sees B + g, one offset g (Å²) for the map's overall
    sharpening, and the mean refined B is held at its start (½ N (ΔB̄ / 1 Å²)²).
    """
    import torch

    cfg, term = run.cfg, run.term
    lo, hi = cfg.b_range
    pairs_np, sig_np = _geometry.b_restraint_pairs(run.geom, cfg.b_sigma)
    pairs = torch.as_tensor(pairs_np, device=run.b.device)
    sig = torch.as_tensor(sig_np, device=run.b.device, dtype=run.b.dtype)
    t0 = time.perf_counter()
    run.fourier = True
    term.prepare(run.numpy_xyz(), run.numpy_b(), 1.0)
    if getattr(term, "likelihood", False):
        return _b_stage_likelihood(run, t0)
    kind, rounds, overall = cfg.map.b_target, 2, bool(cfg.b_overall)
    vol = term.mask_volume()
    edge = min(0.5, 0.25 * (hi - lo))
    b0 = run.b[run.mv].clamp(lo + edge, hi - edge)
    mean0 = float(b0.mean())
    u = torch.cat([torch.logit((b0 - lo) / (hi - lo)), b0.new_zeros(1)]).requires_grad_(True)

    def full_b():
        return run.b.index_copy(0, run.mv, lo + (hi - lo) * torch.sigmoid(u[:-1]))

    def offset():  # g (Å²), 10× for the L-BFGS scaling
        return 10.0 * u[-1]

    def resid(b):  # 1 − CC² (cc), or 1 − CC_uncentred² (lsq, whose target is −CC_u²)
        m = term.target(run.xyz, b + offset() if overall else b, run.occ, True, kind=kind)
        return 1.0 - m * m if kind == "cc" else 1.0 + m

    def target():
        b = full_b()
        f = wb * resid(b) + 0.5 * _geometry.b_similarity(b, pairs, sig)
        if not overall:
            return f
        return f + 0.5 * len(b0) * (b[run.mv].mean() - mean0) ** 2

    val, wb = 0.0, 0.0
    for k in range(rounds):
        with torch.no_grad():
            r0 = float(resid(full_b()))
        wb = _geometry.b_data_weight(vol, term.d, r0) * float(cfg.b_weight_scale)
        n_it = cfg.b_iterations // rounds + (cfg.b_iterations % rounds if k == 0 else 0)
        say = log.info if k == 0 else log.debug   # one info line per stage
        say("B-factors (round %d/%d): per atom, %.0f–%.0f Å²; −log posterior = Gaussian "
            "likelihood w·(1 − CC²) of the Fourier-truncated model map (d > %.3g Å, %s, mask "
            "%.0f Å³, CC = %.4f, w = %.4g%s) + ½Σ(ΔB/σ)² over %d bonded / 1-3 pairs (σ = %.3g "
            "/ %.3g Å²); L-BFGS %d iterations (w re-estimated after round 1)", k + 1, rounds,
            lo, hi, term.d, kind, vol, np.sqrt(max(1.0 - r0, 0.0)), wb,
            f", overall map B offset {float(offset().detach()):.1f} Å²" if overall else "",
            len(pairs), cfg.b_sigma, _geometry.B_SIGMA_13 * cfg.b_sigma, n_it)
        try:
            val = minimise(u, target, n_it)
        finally:
            run.b = full_b().detach()
    extra = {"b_overall_offset": float(offset().detach())} if overall else {}
    run.record("b", val, t0, b_mean=float(run.b[run.mv].mean()), b_weight=wb, **extra)


def b_likelihood(run, iterations: int, rounds: int = 1) -> float:
    """Per-atom B against a data term that is a negative log-likelihood
    (``term.likelihood``, the X-ray ML target): minimise ``b_weight_scale`` · (−log L)
    + ½ Σ (ΔB/σ)² (bonded / 1-3 pairs, `geometry.b_restraint_pairs`) by L-BFGS over
    B = lo + (hi − lo)·sigmoid(u), in ``rounds`` with the term refitted (scales, D, S)
    between them. Updates ``run.b``; returns the final target."""
    import torch

    cfg, term = run.cfg, run.term
    lo, hi = cfg.b_range
    pairs, sig = _b_prior(run)
    wb = float(cfg.b_weight_scale)
    val = 0.0
    for k in range(rounds):
        if k:
            term.prepare(run.numpy_xyz(), run.numpy_b(), 1.0)
        u = _b_logit(run).detach().requires_grad_(True)

        def full_b(u=u):
            return run.b.index_copy(0, run.mv, lo + (hi - lo) * torch.sigmoid(u))

        def target(full_b=full_b):
            b = full_b()
            return (wb * term.target(run.xyz, b, run.occ, True)
                    + 0.5 * _geometry.b_similarity(b, pairs, sig))

        n_it = iterations // rounds + (iterations % rounds if k == 0 else 0)
        try:
            val = minimise(u, target, n_it)
        finally:
            run.b = full_b().detach()
    return val


def _b_stage_likelihood(run, t0):
    cfg = run.cfg
    if cfg.b_overall:
        log.info("b_overall ignored: the data term's scales carry the overall B")
    log.info("B-factors: per atom, %.0f–%.0f Å²; −log posterior = %.3g × the data term's "
             "−log-likelihood (%s) + ½Σ(ΔB/σ)² over bonded / 1-3 pairs (σ = %.3g / %.3g Å²); "
             "L-BFGS %s", *cfg.b_range, cfg.b_weight_scale,
             getattr(run.term, "kind", run.term.name), cfg.b_sigma,
             _geometry.B_SIGMA_13 * cfg.b_sigma,
             f"{max(4, cfg.b_iterations // 2)} iterations (B refined with xyz before)"
             if getattr(run, "joint_b", False) else
             f"{cfg.b_iterations} iterations in 2 rounds, the data term refitted between them")
    if getattr(run, "joint_b", False):
        # B was refined with xyz in every macro cycle (`_xyz_b_cycle`): what is left is
        # a final adjustment, one round of half the iterations (the second round and
        # the other half changed R-free by < 0.0005 on 3AY4 and 3IO0, RESULTS.md)
        val = b_likelihood(run, max(4, cfg.b_iterations // 2), 1)
    else:
        val = b_likelihood(run, cfg.b_iterations, 2)
    run.record("b", val, t0, b_mean=float(run.b[run.mv].mean()),
               b_weight=float(cfg.b_weight_scale))


STAGE_FUNCTIONS = {"rigid": rigid_stage, "sse": sse_stage, "chi1": chi1_stage,
                   "xyz": xyz_stage, "b": b_stage}
"""Stage name (`densrefine.refine.config.STAGES`) → function of the run context."""
