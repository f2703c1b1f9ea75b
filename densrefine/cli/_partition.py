"""``densrefine fit --partition``: the options and the run (`densrefine.distributed.blockfit`).

Kept out of ``fit.py`` so that the command's usual path stays as it is; ``fit`` calls
`add_args` and, when ``--partition`` is given, `main`.
"""
from __future__ import annotations

import logging
import os
import resource

from ._cluster import add_cluster_args, cluster_spec

log = logging.getLogger("densrefine")


def add_args(p) -> None:
    """The flags of partitioned refinement (an argument group of ``fit``)."""
    g = p.add_argument_group(
        "partitioned refinement (models too big for one machine; on Dask, see docs/batch.md)")
    g.add_argument("--partition", metavar="auto|chains|N",
                   help="refine in spatially compact blocks in parallel, each with a halo of "
                        "fixed neighbours and its own map box; chains: one block per chain; "
                        "N: about N blocks; auto: blocks of ~30k atoms (needs -d; cryo-EM "
                        "maps only)")
    g.add_argument("--partition-passes", type=int, default=2, metavar="P",
                   help="passes, alternating between the partition and the one shifted by "
                        "half a block (default: %(default)s)")
    g.add_argument("--halo", type=float, metavar="Å",
                   help="residues within this distance of a block are its fixed halo "
                        "(default: 8)")
    add_cluster_args(g)


def main(args) -> int:
    """Validate, open the cluster, refine in blocks, write fit's usual outputs."""
    from ..device import resolve_device
    from ..distributed.blockfit import check_inputs, fit_partitioned
    from ..distributed.cluster import check_spec, open_client
    from ..distributed.partition import HALO, parse_mode, plan_partitions
    from ..errors import input_error
    from ..io import read_model, write_model
    from ..io.atomic import write_text_atomic
    from ..refine import dump_config
    from ..report import write_json_atomic
    from ..report.html import report_html
    from . import _common
    from .fit import _check_ligands, _inputs, _load_config, _warnings, outputs

    for flag, bad in (("--half-maps", args.half_maps), ("--select", args.select),
                      ("--labin", args.labin)):
        if bad:
            raise input_error(flag, "cannot be combined with --partition",
                              "refine the whole model (no --partition) for this")
    if args.map is None:
        raise input_error("--partition", "needs a map", "give MODEL MAP -d D")
    _common.check_order(args.model, args.map, "map", "densrefine fit MODEL MAP -o PREFIX")
    mode = parse_mode(args.partition)
    halo = HALO if args.halo is None else float(args.halo)
    if not halo > 0:
        raise input_error("--halo", f"{halo} is not a positive distance", "e.g. --halo 8")
    out = _common.plan_outputs(outputs(args), _inputs(args))
    cfg = _load_config(args)
    model = read_model(args.model)
    _check_ligands(args.ligand, model)
    emap = check_inputs(model, args.map, args.resolution)
    plan_partitions(model, mode, args.partition_passes)     # refusals before any work
    dev = resolve_device(args.device)
    spec = cluster_spec(args)
    kw = check_spec(spec)
    with open_client(spec, kw) as (client, info):
        _common.commit(out["log"])
        _common.log_device(dev)
        write_text_atomic(out["config"], dump_config(cfg))

        def progress(stats):
            write_json_atomic(out["stats"], stats, indent=None)

        res = fit_partitioned(model, emap, args.resolution, client=client, partition=mode,
                              passes=args.partition_passes, halo=halo, config=cfg,
                              device=str(dev), seed=args.seed, monlib=args.monlib,
                              ligands=tuple(args.ligand), unknown=args.unknown_residues,
                              callback=progress)
    res.stats["partition"]["cluster"] = info
    res.stats["partition"]["client_peak_rss_mb"] = (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    write_model(res.model, out["model"], inputs=_inputs(args))
    res.stats["outputs"] = {k: os.path.abspath(v) for k, v in out.items()}
    res.stats["warnings"] = _warnings()
    write_json_atomic(out["stats"], res.stats)
    write_text_atomic(out["report"], report_html(_for_report(res.stats)))
    for key in ("stats", "config", "report", "log"):
        log.info("Wrote %s", out[key])
    return 0


def _for_report(stats: dict) -> dict:
    """The stats with the fields the fit report needs present (huge models have no
    whole-model scores)."""
    s = dict(stats)
    for when in ("before", "after"):
        blk = dict(s.get(when) or {})
        blk.setdefault("residues", [])
        blk.setdefault("fsc", [])
        s[when] = blk
    return s
