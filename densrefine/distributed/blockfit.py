"""Partitioned refinement (``fit --partition``): blocks refined in parallel on Dask, merged.

Each pass cuts the current model into blocks (`densrefine.distributed.partition`); every block
is refined by `densrefine.refine.fit` on a worker as a model of its own — the block's
atoms moving, its halo fixed (nonbonded, link and map terms see the neighbours) —
against its own box of the map (the block plus the map term's margin and resampling
pad). A worker receives only the block, its halo and its box, so its memory follows the
block, not the model. The refined block atoms are merged back.

Atoms within the halo distance of another block's atoms (`_stale`) were refined against
neighbours that moved at the same time, unlike in a whole-model fit. The next pass uses
the partition shifted by half a block, in which those atoms lie inside blocks: every
block holding such atoms is refined again from the start with the same schedule, its halo
where the last pass left it, and only those atoms take the new positions (every other
atom keeps the position it got away from any boundary). A pass stops early when no atom
is left that has only been refined next to a boundary; where atoms placed by different
passes meet, the residues of any bond beyond 4σ are refined once more (`_mend`). In
``chains`` mode the blocks are
the same in every pass, so a boundary can never lie inside a block: passes after the
first refine every chain again against its neighbours' new positions, at the finest blur
with half the macro cycles (`later_pass_config`).

At the end every block of the last partition checks its bonds and angles in the merged
model (`check_block`, restraints from the monomer library on block + halo): the model's
bond and angle RMSD (each restraint counted once), the largest bond |z| = |d − ideal|/σ
and the bonds beyond 4σ anywhere (also where atoms placed by different passes meet), and
the bonds that cross a block boundary of any pass, with their z.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings

import numpy as np

from ..errors import input_error
from ..grid import sub_box
from ..refine import FitConfig, RefineResult, fit, load_config, scaled_aniso
from ..restraints import build_restraints
from ..scoring import score
from ..types import Grid, Model
from .cluster import ClusterSpec, check_spec, open_client
from .partition import HALO, halo_of, parse_mode, plan_partitions, sub_model
from .worker import JOB_LOCK, peak_rss_mb, worker_name

log = logging.getLogger("densrefine")

SCORE_LIMIT = 200_000
"""Models up to this many atoms get whole-model scores before and after (in the client);
larger ones only per-block numbers, so the client never simulates a huge model map."""
BOUNDARY_SIGMA = 4.0
"""|z| above which a bond across a block boundary is reported as an outlier."""


def later_pass_config(cfg: FitConfig) -> FitConfig:
    """Passes after the first: xyz (and b) at the finest blur, half the macro cycles."""
    stages = [s for s in cfg.stages if s in ("xyz", "b")] or ["xyz"]
    mc = dataclasses.replace(cfg.map, blur_factors=[float(cfg.map.blur_factors[-1])])
    return dataclasses.replace(cfg, stages=stages, cycles=max(1, math.ceil(cfg.cycles / 2)),
                               map=mc)


def _box(emap: Grid, xyz, d: float, cfg: FitConfig) -> Grid:
    """The map around a block: fit's box (margin + 2 Å) plus its resampling pad (2 d)."""
    return sub_box(emap, xyz, cfg.map.margin + 2.0 + 2.0 * d + 2.0)[0]


class _Capture(logging.Handler):
    """The densrefine log of one block on a worker: kept, not printed."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list = []

    def emit(self, record):
        self.lines.append(f"{record.levelname.lower()}: {record.getMessage()}")


def _captured(fn, *args, **kw):
    """Run ``fn`` with the densrefine log and warnings collected; (result, log lines)."""
    lg = logging.getLogger("densrefine")
    cap = _Capture()
    old = (lg.propagate, lg.level, list(lg.handlers))
    lg.handlers, lg.propagate = [cap], False
    lg.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            out = fn(*args, **kw)
        cap.lines += [f"warning: {w.message}" for w in seen]
        return out, cap.lines
    finally:
        lg.propagate, lg.handlers = old[0], old[2]
        lg.setLevel(old[1])


def refine_block(task: dict) -> dict:
    """On a worker: refine one block (``task``: model, grid, d, select, config, fit kw)."""
    with JOB_LOCK:
        t0 = time.perf_counter()
        sel = task["select"]
        res, lines = _captured(fit, task["model"], task["grid"], task["d"],
                               config=task["config"], select=sel, **task["fit_kw"])
        st = res.stats
        geo_b = (st.get("before") or {}).get("geometry") or {}
        geo_a = (st.get("after") or {}).get("geometry") or {}
        return {"xyz": np.asarray(res.model.atoms.xyz)[sel],
                "b": np.asarray(res.model.atoms.b_iso)[sel],
                "summary": {"status": st.get("status"),
                            "cc_mask_before": (st.get("before") or {}).get("cc_mask"),
                            "cc_mask_after": (st.get("after") or {}).get("cc_mask"),
                            "bond_rmsd_before": geo_b.get("bond_rmsd"),
                            "angle_rmsd_before": geo_b.get("angle_rmsd"),
                            "n_bonds": geo_b.get("n_bonds"),
                            "bond_rmsd_after": geo_a.get("bond_rmsd"),
                            "angle_rmsd_after": geo_a.get("angle_rmsd"),
                            "weight": (st.get("cycles") or [{}])[-1].get("weight"),
                            "n_calls": len(st.get("cycles") or [])},
                "warnings": [ln[9:] for ln in lines if ln.startswith("warning: ")],
                "time_s": time.perf_counter() - t0, "worker": worker_name(),
                "peak_rss_mb": peak_rss_mb()}


def _angles_deg(xyz, tri):
    a, b, c = xyz[tri[:, 0]], xyz[tri[:, 1]], xyz[tri[:, 2]]
    u, v = a - b, c - b
    cos = (u * v).sum(1) / np.maximum(np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1),
                                      1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def check_block(task: dict) -> dict:
    """On a worker: bonds and angles touching the block, in global atom indices."""
    with JOB_LOCK:
        t0 = time.perf_counter()
        m, idx, sel = task["model"], task["index"], task["select"]
        rs, _ = _captured(build_restraints, m, **task["restraint_kw"])
        xyz = np.asarray(m.atoms.xyz, np.float64)
        bonds = np.asarray(rs.bonds, np.int64).reshape(-1, 2)
        keep = sel[bonds].any(1)
        bonds = bonds[keep]
        d = np.linalg.norm(xyz[bonds[:, 0]] - xyz[bonds[:, 1]], axis=1)
        ang = np.asarray(rs.angles, np.int64).reshape(-1, 3)
        akeep = sel[ang].any(1)
        ang = ang[akeep]
        cuts = task["cuts"]                    # (passes, n_sub): block of each atom
        across = np.unique(bonds[(cuts[:, bonds[:, 0]] != cuts[:, bonds[:, 1]]).any(0)])
        return {"bonds": idx[bonds], "bond_dev": d - np.asarray(rs.bond_ideal)[keep],
                "bond_sigma": np.asarray(rs.bond_sigma)[keep],
                "angles": idx[ang],
                "angle_dev": _angles_deg(xyz, ang) - np.asarray(rs.angle_ideal)[akeep],
                "labels": {int(idx[k]): str(rs.labels[k]) for k in across},
                "time_s": time.perf_counter() - t0, "worker": worker_name(),
                "peak_rss_mb": peak_rss_mb()}


def _submit_all(client, fn, tasks, name, what: str = "block"):
    """Submit ``tasks``, wait for all; results in order (a failure raises).

    Logs one line as each task finishes (progress of a long pass)."""
    from distributed import as_completed

    with warnings.catch_warnings():           # each task carries its block and map box
        warnings.filterwarnings("ignore", message=".*Large object.*")
        warnings.filterwarnings("ignore", message=".*large graph.*")
        futs = [client.submit(fn, t, key=f"densrefine-{name}-{k}-{time.time_ns()}",
                              pure=False) for k, t in enumerate(tasks)]
    index = {f.key: k for k, f in enumerate(futs)}
    t0 = time.perf_counter()
    for done, fut in enumerate(as_completed(futs, loop=client.loop), 1):
        if fut.status == "finished":
            log.info("  %s %d finished (%d/%d, %.0f s)", what, index[fut.key] + 1, done,
                     len(futs), time.perf_counter() - t0)
    return client.gather(futs)


def _block_task(model, emap, block, d, cfg, halo, fit_kw, start=None):
    """One block's task; with ``start`` ((N, 3), (N,)) its moving atoms begin there (the
    halo stays where ``model`` has it)."""
    h = halo_of(model.atoms, block, halo)
    idx = np.sort(np.concatenate([block, h]))
    sel = np.isin(idx, block)
    sub = sub_model(model, idx)
    if start is not None:
        x, bb = np.array(sub.atoms.xyz, np.float64), np.array(sub.atoms.b_iso, np.float64)
        x[sel], bb[sel] = start[0][idx[sel]], start[1][idx[sel]]
        sub = sub.with_atoms(sub.atoms.replace(xyz=x, b_iso=bb))
    return {"model": sub, "grid": _box(emap, np.asarray(model.atoms.xyz)[block], d, cfg),
            "d": d, "select": sel, "index": idx, "config": cfg, "fit_kw": fit_kw,
            "n_halo": len(h)}


def _geometry(checks, parts, n_atoms) -> tuple[dict, dict]:
    """Whole-model bond/angle RMSD (each once) and the block-boundary bonds of all passes."""
    bonds = np.concatenate([c["bonds"] for c in checks])
    dev = np.concatenate([c["bond_dev"] for c in checks])
    sig = np.concatenate([c["bond_sigma"] for c in checks])
    key = np.sort(bonds, 1)
    _, first = np.unique(key, axis=0, return_index=True)
    bonds, dev, sig = key[first], dev[first], sig[first]
    ang = np.concatenate([c["angles"] for c in checks])
    adev = np.concatenate([c["angle_dev"] for c in checks])
    akey = np.column_stack([np.minimum(ang[:, 0], ang[:, 2]), ang[:, 1],
                            np.maximum(ang[:, 0], ang[:, 2])])
    _, afirst = np.unique(akey, axis=0, return_index=True)
    adev = adev[afirst]
    zall = np.abs(dev / sig)
    geom = {"bond_rmsd": float(np.sqrt(np.mean(dev ** 2))) if len(dev) else None,
            "max_bond_z": float(zall.max()) if len(zall) else None,
            "n_bonds_beyond": int((zall > BOUNDARY_SIGMA).sum()),
            "angle_rmsd": float(np.sqrt(np.mean(adev ** 2))) if len(adev) else None,
            "n_bonds": len(dev), "n_angles": len(adev),
            "source": "monomer-library restraints on each last-pass block + halo, merged "
                      "model, each restraint counted once"}
    labels = {}
    for c in checks:
        labels.update(c["labels"])
    z = dev / sig
    across = np.zeros(len(bonds), bool)
    per_pass = []
    for p in parts:
        lab = p.block_of(n_atoms)
        cut = lab[bonds[:, 0]] != lab[bonds[:, 1]]
        across |= cut
        per_pass.append({"partition": p.label, "bonds_across": int(cut.sum()),
                         "max_abs_z": float(np.abs(z[cut]).max()) if cut.any() else None})
    za = np.abs(z[across])
    order = np.argsort(-za)[:10]
    worst = [{"atoms": [labels.get(int(i), str(i)) for i in bonds[across][k]],
              "deviation": round(float(dev[across][k]), 4), "z": round(float(z[across][k]), 2)}
             for k in order]
    bound = {"bonds_across": int(across.sum()),
             "max_abs_z": float(za.max()) if len(za) else None,
             "n_beyond": int((za > BOUNDARY_SIGMA).sum()), "sigma": BOUNDARY_SIGMA,
             "rmsz": float(np.sqrt(np.mean(za ** 2))) if len(za) else None,
             "per_pass": per_pass, "worst": worst}
    return geom, bound


NOT_PARTITIONED = {"select": None, "half_maps": None, "half_map_work": "half1",
                   "labin": None, "xray_map": "auto", "twin": "auto",
                   "xray_target": "auto", "monitor": None}
"""Options of `densrefine.refine.fit` that partitioned refinement does not take, with
their defaults (a default value passed explicitly is accepted)."""


def refuse_fit_options(options: dict) -> None:
    """Refuse options of a whole-model fit given with ``partition`` (`dr.fit`).

    Raises
    ------
    InputError
        Naming the option (``select``, half maps, X-ray options, ``monitor``) and the fix.
    """
    for key, default in NOT_PARTITIONED.items():
        if key in options and options[key] != default:
            raise input_error(f"{key}=", "cannot be combined with partition= (partitioned "
                              "refinement refines every atom against one cryo-EM map)",
                              f"leave {key} out, or refine without partition=")


def check_inputs(model: Model, emap, resolution) -> Grid:
    """The map of a partitioned fit, read and checked against the model and d.

    Raises
    ------
    InputError
        No resolution, X-ray data instead of a map, a resolution out of range, or a
        model outside the map.
    """
    from ..io.mrc import looks_like_map, read_map
    from ..scoring import check_inputs as check_overlap
    from ..scoring.api import check_resolution

    if resolution is None:
        raise input_error("-d/--resolution", "partitioned refinement needs the map's "
                          "resolution", "give -d, e.g. -d 3.2")
    check_resolution(resolution)
    if not isinstance(emap, Grid):
        if not looks_like_map(emap):
            raise input_error(emap, "--partition refines against a cryo-EM map, not X-ray "
                              "data", "refine X-ray models without --partition")
        emap = read_map(emap)
    check_overlap(model, emap, float(resolution))
    return emap


def _score(model, emap, d, cfg, when: str, limit: int) -> dict:
    if len(model) > limit:
        log.info("Scores %s: skipped for %d atoms (> %d; per-block numbers in the stats)",
                 when, len(model), limit)
        return {}
    rep = score(model, emap, d, table=cfg.map.table, device="cpu",
                per_residue=len(model) <= 50_000, density=cfg.map.density).to_dict()
    log.info("%s: CC_mask %.4f, CC_box %.4f (whole model)", when.capitalize(),
             rep["cc_mask"], rep["cc_box"])
    return rep


def fit_partitioned(model: Model, emap, resolution: float, *, client=None, cluster=None,
                    partition="auto", passes: int = 2, halo: float = HALO, config=None,
                    device: str = "cpu", seed: int = 0, monlib=None, ligands=(),
                    unknown: str = "error", callback=None,
                    score_limit: int = SCORE_LIMIT) -> RefineResult:
    """Refine ``model`` in blocks on Dask (see the module docstring).

    Parameters
    ----------
    model : Model
    emap : Grid or path
        The map (cryo-EM); blocks get boxes of it.
    resolution : float
        d (Å); required (no whole-model estimate).
    client : distributed.Client, optional
        Where blocks run; None: a cluster is opened from ``cluster``.
    cluster : ClusterSpec or dict, optional
        `densrefine.distributed.cluster.ClusterSpec` or its fields (default: the embedded
        LocalCluster).
    partition : {"auto", "chains"} or int
        See `densrefine.distributed.partition`.
    passes : int
        Passes over the model (alternating partitions).
    halo : float
        Å around each block whose residues stay fixed in it.
    config : FitConfig or dict, optional
    device, seed, monlib, ligands, unknown
        As `densrefine.refine.fit`, for every block.
    callback : callable, optional
        ``callback(stats)`` after every block.
    score_limit : int
        Whole-model scores only up to this many atoms (`SCORE_LIMIT`).

    Returns
    -------
    RefineResult
        The merged model; stats with "before"/"after" (whole-model scores when small
        enough; "after" geometry from the block checks) and a "partition" block.
    """
    cfg = config if isinstance(config, FitConfig) else load_config(config)
    emap = check_inputs(model, emap, resolution)
    parts = plan_partitions(model, partition, passes)
    if client is None:
        spec = cluster if isinstance(cluster, ClusterSpec) else ClusterSpec(**(cluster or {}))
        with open_client(spec, check_spec(spec)) as (cl, _):
            return fit_partitioned(model, emap, resolution, client=cl, partition=partition,
                                   passes=passes, halo=halo, config=cfg, device=device,
                                   seed=seed, monlib=monlib, ligands=ligands,
                                   unknown=unknown, callback=callback,
                                   score_limit=score_limit)
    d = float(resolution)
    t_start = time.perf_counter()
    at = model.atoms
    n = len(at)
    stats = {"program": "densrefine fit --partition", "status": "running",
             "input": {"model": model.path, "map": emap.path, "resolution": d, "n_atoms": n,
                       "n_moving": n, "selection": None},
             "config": cfg.to_dict(), "cycles": [], "timings": {},
             "partition": {"mode": str(partition), "halo": halo, "passes": []}}
    stats["before"] = _score(model, emap, d, cfg, "before", score_limit)
    xyz, b = np.array(at.xyz, np.float64), np.array(at.b_iso, np.float64)
    fit_kw = {"device": str(device), "seed": seed, "monlib": monlib, "ligands": tuple(ligands),
              "unknown": unknown}
    before_geo = []
    x0, b0 = xyz.copy(), b.copy()
    stale = None                   # atoms whose value so far came from next to a boundary
    redo = parse_mode(partition) != "chains"   # chains: the same blocks in every pass
    for p, part in enumerate(parts):
        cur = model.with_atoms(at.replace(xyz=xyz, b_iso=b))
        blocks = list(part.blocks) if p == 0 or not redo else [
            blk for blk in part.blocks if stale[blk].any()]
        if not blocks:
            log.info("Pass %d/%d (%s): every atom was refined away from the block "
                     "boundaries; done", p + 1, len(parts), part.label)
            break
        # later passes: the block again from the start with the full schedule, its halo
        # where the last pass left it; only its stale atoms take the new positions
        cfg_p = cfg if p == 0 or redo else later_pass_config(cfg)
        tasks = [_block_task(cur, emap, blk, d, cfg_p, halo, fit_kw,
                             (x0, b0) if p > 0 and redo else None) for blk in blocks]
        sizes = [len(bk) for bk in blocks]
        log.info("Pass %d/%d (%s): %d blocks of %d–%d atoms%s, halo %.0f Å (%d–%d fixed atoms)",
                 p + 1, len(parts), part.label, len(sizes), min(sizes), max(sizes),
                 "" if p == 0 or not redo else f" refined again from the start for the "
                 f"{int(stale.sum())} atoms next to the last pass's boundaries", halo,
                 min(t["n_halo"] for t in tasks), max(t["n_halo"] for t in tasks))
        t0 = time.perf_counter()
        results = _submit_all(client, refine_block, [{k: v for k, v in t.items()
                                                      if k not in ("index", "n_halo")}
                                                     for t in tasks], f"block{p}")
        rows = []
        for k, (blk, t, r) in enumerate(zip(blocks, tasks, results)):
            take = stale[blk] if p > 0 and redo else np.ones(len(blk), bool)
            xyz[blk[take]], b[blk[take]] = r["xyz"][take], r["b"][take]
            s = r["summary"]
            rows.append({"block": k, "n_atoms": len(blk), "n_halo": t["n_halo"],
                         "box": list(t["grid"].shape_xyz), **s, "time_s": r["time_s"],
                         "worker": r["worker"], "peak_rss_mb": r["peak_rss_mb"],
                         "warnings": r["warnings"][:5]})
            if p == 0:
                before_geo.append(s)
            log.info("  block %d: %d atoms + %d halo, box %s, CC_mask %.4f → %.4f, bond RMSD "
                     "%.4f Å, %.1f s on %s (peak %.0f MB)", k + 1, len(blk), t["n_halo"],
                     "×".join(map(str, t["grid"].shape_xyz)), s["cc_mask_before"] or 0,
                     s["cc_mask_after"] or 0, s["bond_rmsd_after"] or 0, r["time_s"],
                     r["worker"], r["peak_rss_mb"])
        near = _stale(tasks, np.isin(np.arange(n), np.concatenate(blocks)))
        stats["partition"]["passes"].append({
            "partition": part.label, "blocks": rows,
            "updated_atoms": int(stale.sum()) if p > 0 and redo else n,
            "near_boundary_atoms": int(near.sum()), "wall_s": time.perf_counter() - t0})
        stale = near if p == 0 else stale & near
        if callback is not None:
            callback(stats)
    new = model.with_atoms(at.replace(xyz=xyz, b_iso=b, u_aniso=scaled_aniso(at, b)))
    rkw = {"monlib": monlib, "ligands": tuple(ligands), "unknown": unknown}
    checks = _check_all(client, new, parts, halo, rkw)
    if redo and len(parts) > 1:
        mended = _mend(client, new, emap, parts[-1], checks, d, cfg, halo, fit_kw, stats)
        if mended is not None:
            new = mended
            xyz, b = np.array(new.atoms.xyz, np.float64), np.array(new.atoms.b_iso, np.float64)
            checks = _check_all(client, new, parts, halo, rkw)
    geom, bound = _geometry(checks, parts, n)
    log.info("Geometry of the merged model: bond RMSD %.4f Å, angle RMSD %.3f° (%d bonds, "
             "%d angles); largest bond |z| %.2f, %d bond(s) beyond %.0fσ",
             geom["bond_rmsd"] or 0, geom["angle_rmsd"] or 0, geom["n_bonds"],
             geom["n_angles"], geom["max_bond_z"] or 0, geom["n_bonds_beyond"],
             BOUNDARY_SIGMA)
    log.info("Block boundaries: %d bonds across them (all passes), max |z| %s, %d beyond "
             "%.0fσ", bound["bonds_across"], "n/a" if bound["max_abs_z"] is None
             else f"{bound['max_abs_z']:.2f}", bound["n_beyond"], BOUNDARY_SIGMA)
    if stats["before"]:
        stats["before"]["geometry"] = _combined(before_geo)
    stats["after"] = _score(new, emap, d, cfg, "after", score_limit)
    stats["after"]["geometry"] = geom
    stats["partition"]["boundary"] = bound
    peaks = [r["peak_rss_mb"] for ps in stats["partition"]["passes"] for r in ps["blocks"]]
    peaks += [c["peak_rss_mb"] for c in checks]
    stats["partition"]["peak_rss_mb_per_worker"] = max(peaks)
    stats["partition"]["workers"] = sorted({r["worker"] for ps in stats["partition"]["passes"]
                                            for r in ps["blocks"]})
    dx = xyz - np.asarray(at.xyz)
    stats["rmsd_moved"] = float(np.sqrt((dx ** 2).sum(1).mean()))
    stats["timings"]["total_s"] = time.perf_counter() - t_start
    stats["status"] = "finished"
    if callback is not None:
        callback(stats)
    return RefineResult(new, stats, [])


def _check_all(client, model, parts, halo, restraint_kw) -> list:
    """`check_block` on every block of the last partition (bonds and angles of all atoms)."""
    labels = np.array([pt.block_of(len(model)) for pt in parts])
    return _submit_all(client, check_block, [
        {"model": sub_model(model, t), "index": t, "select": np.isin(t, blk),
         "cuts": labels[:, t], "restraint_kw": restraint_kw}
        for blk in parts[-1].blocks
        for t in [np.sort(np.concatenate([blk, halo_of(model.atoms, blk, halo)]))]], "check",
        "geometry check of block")


def _mend(client, model, emap, part, checks, d, cfg, halo, fit_kw, stats):
    """Where atoms placed by different passes meet, a bond may end up strained: refine the
    residues of every bond beyond `BOUNDARY_SIGMA` once more (the rest fixed, finest blur,
    half the cycles); the mended model, or None when there is nothing to mend."""
    bonds = np.concatenate([c["bonds"] for c in checks])
    z = np.abs(np.concatenate([c["bond_dev"] for c in checks])
               / np.concatenate([c["bond_sigma"] for c in checks]))
    bad = bonds[z > BOUNDARY_SIGMA]
    if not len(bad):
        return None
    ri = np.asarray(model.atoms.res_index)
    fix = np.isin(ri, np.unique(ri[bad.ravel()]))
    blocks = [blk[fix[blk]] for blk in part.blocks]
    blocks = [blk for blk in blocks if len(blk)]
    log.info("%d bond(s) beyond %.0fσ where the passes' atoms meet: their %d atoms refined "
             "once more", len(np.unique(np.sort(bad, 1), axis=0)), BOUNDARY_SIGMA,
             int(fix.sum()))
    tasks = [_block_task(model, emap, blk, d, later_pass_config(cfg), halo, fit_kw)
             for blk in blocks]
    results = _submit_all(client, refine_block, [{k: v for k, v in t.items()
                                                  if k not in ("index", "n_halo")}
                                                 for t in tasks], "mend")
    at = model.atoms
    xyz, b = np.array(at.xyz, np.float64), np.array(at.b_iso, np.float64)
    for blk, r in zip(blocks, results):
        xyz[blk], b[blk] = r["xyz"], r["b"]
    stats["partition"]["mended_atoms"] = int(fix.sum())
    return model.with_atoms(at.replace(xyz=xyz, b_iso=b, u_aniso=scaled_aniso(at, b)))


def _stale(tasks, moving) -> np.ndarray:
    """(N,) bool: atoms that moved in the last pass within the halo of another block's
    moving atoms (they were refined against neighbours that moved at the same time)."""
    out = np.zeros_like(moving)
    for t in tasks:
        h = t["index"][~t["select"]]
        out[h[moving[h]]] = True
    return out


def _combined(rows) -> dict:
    """Bond/angle RMSD of the start over pass-1 blocks (bonds into the halo counted in
    every block that has them): an approximation, said in "source"."""
    nb = np.array([r.get("n_bonds") or 0 for r in rows], float)
    out = {"source": "pass-1 blocks + halo at the start, combined (halo bonds counted in "
                     "each block)"}
    for key in ("bond_rmsd_before", "angle_rmsd_before"):
        v = np.array([r.get(key) if r.get(key) is not None else np.nan for r in rows], float)
        ok = np.isfinite(v) & (nb > 0)
        out[key.removesuffix("_before")] = float(np.sqrt(np.sum(nb[ok] * v[ok] ** 2)
                                                         / nb[ok].sum())) if ok.any() else None
    return out
