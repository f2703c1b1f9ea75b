"""Run fit (or score, rfactor) for every row of a manifest on a Dask cluster, resumably.

MANIFEST is a CSV file with a header (or a YAML list of mappings) naming one job per
row: model, data (a map or X-ray reflections) and optionally resolution, half_map_2 (fit
against half maps: data is half map 1), name (the job's folder under OUTDIR; default the
model's file stem) and options (extra options of the command, as on its command line).
Relative paths are read from the manifest's folder. Every row is checked (columns,
files, options, names) before anything runs.

Each job runs the command as `densrefine TASK` would, into OUTDIR/NAME/ (written in a
staging folder and renamed into place when the job ends, so the folder always holds one
complete run); OUTDIR/NAME/job.json is its record. A job whose inputs, options and
densrefine version are unchanged and whose outputs are complete is skipped on a rerun;
a failing job is recorded with its one-line error and the others go on; a job whose
worker dies is retried on another worker.

Runs on an embedded Dask LocalCluster sized to this machine (one CPU thread per job,
as many workers as cores; --workers/--threads change it), on an existing cluster
(--scheduler tcp://host:8786), or on a batch system (--cluster slurm|pbs|sge with
dask-jobqueue, keyword arguments of its cluster class in --cluster-config FILE.yaml).

Outputs: OUTDIR/NAME/ per job, OUTDIR/summary.csv and summary.json (per job: status,
error, time, worker, attempts, before/after CC_mask, R-work/R-free, geometry and
validation), OUTDIR/summary.html (sortable table, plots) and OUTDIR/batch.log.
Exit code 0 when every job finished, 3 when some failed (see summary.csv), 2 for bad
input (nothing runs).

examples:
  densrefine batch jobs.csv -o runs                     # fit every row, embedded cluster
  densrefine batch jobs.csv -o scores --task score
  densrefine batch jobs.yaml -o runs --scheduler tcp://head:8786
  densrefine batch jobs.csv -o runs --cluster slurm --cluster-config slurm.yaml

jobs.csv:
  model,data,resolution,name,options
  5ni1.cif.gz,emd_3488.mrc,3.2,5ni1,--stages xyz --cycles 2
  3io0.pdb.gz,3io0-sf.mtz,,3io0,
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

from ..errors import InputError, input_error
from ._cluster import CLUSTER_FLAGS, add_cluster_args

log = logging.getLogger("densrefine")

FORBIDDEN = {"-o": "remove it: the job's output prefix is OUTDIR/NAME/NAME",
             "--output-prefix": "remove it: the job's output prefix is OUTDIR/NAME/NAME",
             "--json": "remove it: the job's JSON is OUTDIR/NAME/NAME_TASK.json",
             "--map-out": "remove it: batch jobs write inside their own folder only",
             "--half-maps": "give the second half map in the half_map_2 column",
             "-d": "give the resolution in the resolution column",
             "--resolution": "give the resolution in the resolution column",
             "--d-min": "give the resolution in the resolution column",
             "--device": "remove it and give --device to densrefine batch (all jobs)",
             "-h": "help is not a job option", "--help": "help is not a job option",
             **{f: "a batch job runs on one worker; refine a huge model with densrefine "
                   "fit --partition, not in a batch" for f in
                ("--partition", "--partition-passes", "--halo", *CLUSTER_FLAGS)}}
"""Options a job may not carry, each with the fix shown."""


def add_args(p) -> None:
    from ..distributed import TASKS

    p.add_argument("manifest", help="CSV (header: model,data[,resolution,half_map_2,name,"
                   "options]) or YAML list of jobs")
    g = p.add_argument_group("the flags most users need")
    g.add_argument("-o", "--output-dir", required=True, metavar="OUTDIR",
                   help="folder of the job folders and the summary")
    g.add_argument("--task", choices=TASKS, default="fit",
                   help="command every job runs (default: %(default)s)")
    g.add_argument("--force", action="store_true",
                   help="rerun jobs that an earlier run finished with the same inputs")
    add_cluster_args(p.add_argument_group("cluster"), sizes=g)


class _Refuse(argparse.ArgumentParser):
    """A command's parser that raises instead of exiting (checking a job's options)."""

    def error(self, message):
        raise InputError(" ".join(str(message).split()))


def check_options(task: str, job) -> None:
    """Refuse options the job's command does not take, or that batch sets itself.

    Raises
    ------
    InputError
        Naming the manifest row, the option and the fix.
    """
    from ..distributed.jobs import argv_for
    from . import _common, _load

    for tok in job.options:
        flag = tok.split("=", 1)[0] if tok.startswith("--") else tok[:2]
        if flag in FORBIDDEN and tok.startswith("-"):
            raise input_error(job.where, f"option {tok} is set by batch", FORBIDDEN[flag])
    mod = _load(task)
    parser = _Refuse(prog=f"densrefine {task}", allow_abbrev=False, add_help=False)
    mod.add_args(parser)
    _common.add_common_args(parser)
    argv = argv_for(task, job, os.path.join(os.sep, "batch-check"), "cpu")
    try:
        parser.parse_args(argv[1:])
    except InputError as exc:
        raise input_error(job.where, f"options {' '.join(job.options)!r} for densrefine "
                          f"{task}: {exc}", f"see densrefine {task} --help") from None


def execute(spec: dict) -> dict:
    """Run one job on a Dask worker (`densrefine.distributed.jobs.run_job` with this CLI)."""
    from ..distributed.jobs import run_job
    from . import main

    return run_job(spec, main)


def plan(manifest: str, outdir: str, jobs: list) -> dict:
    """Check OUTDIR against every input before anything runs; the summary files by role.

    Raises
    ------
    InputError
        OUTDIR is a file or not writable, a summary file would overwrite an input, or
        an input lies inside a job folder (which a run replaces).
    """
    from . import _common

    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise input_error(outdir, "-o names a file, not a folder", "give a folder for the "
                          "job folders and the summary (it is created)")
    inputs = [manifest] + [p for j in jobs for p in j.inputs()]
    out = {"log": os.path.join(outdir, "batch.log"),
           "summary_json": os.path.join(outdir, "summary.json"),
           "summary_csv": os.path.join(outdir, "summary.csv"),
           "summary_html": os.path.join(outdir, "summary.html")}
    out = _common.plan_outputs(out, inputs)
    from ..distributed.jobs import RECORD, STAGING

    real = [os.path.realpath(p) for p in inputs]
    for j in jobs:
        for folder in (os.path.join(outdir, j.name), os.path.join(outdir, STAGING)):
            top = os.path.realpath(folder)
            for p, r in zip(inputs, real):
                if r == top or r.startswith(top + os.sep):
                    raise input_error(j.where, f"input {p} lies inside {folder}, which the "
                                      "batch replaces", "move the input out of OUTDIR or "
                                      "choose another -o/--output-dir")
        folder = os.path.join(outdir, j.name)
        if os.path.lexists(folder) and not os.path.isfile(os.path.join(folder, RECORD)):
            raise input_error(j.where, f"{folder} exists and is not a batch job folder "
                              f"(no {RECORD}); a run would replace it", "move it away, or "
                              "give the row another 'name' or choose another -o/--output-dir")
    return out


def run(manifest, outdir, task: str = "fit", *, scheduler=None, cluster: str = "local",
        cluster_config=None, workers=None, threads=None, memory_limit=None, device="cpu",
        force: bool = False, bar: bool = False, on_ready=None) -> dict:
    """Check a manifest, start or connect to a Dask cluster, run every job; the summary.

    The work of ``densrefine batch`` (and ``dr.batch``); see this module's docstring.

    Parameters
    ----------
    manifest : str or path-like
        CSV or YAML manifest.
    outdir : str or path-like
        Output folder.
    task : {"fit", "score", "rfactor"}
    scheduler, cluster, cluster_config, workers, threads, memory_limit
        Where to run (`densrefine.distributed.cluster.ClusterSpec`).
    device : str
        ``--device`` of every job.
    force : bool
        Rerun finished jobs too.
    bar : bool
        A progress bar on stderr.
    on_ready : callable, optional
        Called after every check passed and the cluster answered, before any job runs
        (the CLI opens its log file here).

    Returns
    -------
    dict
        The summary (what OUTDIR/summary.json holds): ``jobs`` (one record per job:
        name, status, error, time_s, worker, attempts, before/after numbers), ``counts``,
        ``cluster``, ``wall_s``.

    Raises
    ------
    InputError
        Any problem with the manifest, its files, options or names, OUTDIR, or the
        cluster options (an unreachable scheduler included), before any job runs.
    """
    from ..device import resolve_device
    from ..distributed.cluster import ClusterSpec, check_spec, open_client
    from ..distributed.manifest import read_manifest
    from ..distributed.run import plan_jobs, run_jobs

    manifest, outdir = os.fspath(manifest), os.fspath(outdir)
    jobs = read_manifest(manifest, task, check_options=check_options)
    plan(manifest, outdir, jobs)
    spec = ClusterSpec(scheduler=scheduler, cluster=cluster or "local", config=cluster_config,
                       workers=workers, threads=threads, memory_limit=memory_limit)
    kw = check_spec(spec)
    device = str(resolve_device(device)) if device != "auto" else "auto"
    planned = plan_jobs(jobs, outdir, task, force)
    doc = {"manifest": os.path.abspath(manifest)}
    with contextlib.ExitStack() as stack:
        client = None
        if planned["todo"] or spec.scheduler or spec.cluster != "local":
            client, doc["cluster"] = stack.enter_context(open_client(spec, kw))
        if on_ready is not None:
            on_ready()
        log.info("Manifest %s: %d %s job(s) into %s", manifest, len(jobs), task, outdir)
        return run_jobs(client, jobs, outdir, task, execute, planned=planned, device=device,
                        force=force, doc=doc, bar=bar)


def main(args) -> int:
    from . import _common

    summary = run(args.manifest, args.output_dir, args.task, scheduler=args.scheduler,
                  cluster=args.cluster, cluster_config=args.cluster_config,
                  workers=args.workers, threads=args.threads,
                  memory_limit=args.memory_limit, device=args.device, force=args.force,
                  bar=_wants_bar(args),
                  on_ready=lambda: _common.commit(os.path.join(args.output_dir, "batch.log")))
    return 3 if summary.get("counts", {}).get("failed") else 0


def _wants_bar(args) -> bool:
    return bool(getattr(sys.stderr, "isatty", None) and sys.stderr.isatty()) and not args.quiet
