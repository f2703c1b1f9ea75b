"""Where batch jobs and partition blocks run: a Dask cluster, embedded or given.

* default: an embedded `dask.distributed.LocalCluster` of worker processes sized to this
  machine: ``threads`` CPU threads per job (default 1) and as many workers as that leaves
  cores (the CPU affinity mask); each worker runs one task at a time.
* ``scheduler="tcp://host:8786"``: an existing cluster (``dask scheduler`` +
  ``dask worker``); it must answer within `CONNECT_TIMEOUT` seconds.
* ``cluster="slurm" | "pbs" | "sge"``: a batch system through dask-jobqueue (the optional
  extra ``densrefine[jobqueue]``), with the keyword arguments of its ``SLURMCluster`` /
  ``PBSCluster`` / ``SGECluster`` from a YAML file (``cores``, ``memory``, ``queue``,
  ``account``, ``walltime``, ``job_extra_directives`` …) plus ``jobs`` (how many batch
  jobs to start, default 1); without a file, dask-jobqueue's own configuration is used.

Every worker gets the same thread limits (`ThreadLimits`): torch and BLAS threads, and
``$DENSREFINE_CPUS`` (`densrefine.device.cpu_budget`), so that parallel jobs do not
oversubscribe the cores; embedded workers also get OMP/MKL/OpenBLAS thread counts in
their environment before they start.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

from distributed.diagnostics.plugin import WorkerPlugin

from ..device import cpu_budget
from ..errors import check_readable, input_error

log = logging.getLogger("densrefine")

CONNECT_TIMEOUT = 10
"""Seconds an existing scheduler (``--scheduler``) has to answer."""
JOBQUEUE = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster"}


@dataclass(frozen=True)
class ClusterSpec:
    """Where to run (see the module docstring).

    Attributes
    ----------
    scheduler : str or None
        Address of an existing Dask scheduler.
    cluster : {"local", "slurm", "pbs", "sge"}
    config : str or None
        YAML file of the dask-jobqueue cluster's keyword arguments.
    workers : int or None
        Embedded cluster: worker processes (default: cores // threads).
    threads : int or None
        CPU threads per job (torch, BLAS; default 1).
    memory_limit : str or None
        Embedded cluster: memory per worker ("4GB"; default: the machine's memory
        divided among the workers), as Dask's ``memory_limit``.
    """

    scheduler: str | None = None
    cluster: str = "local"
    config: str | None = None
    workers: int | None = None
    threads: int | None = None
    memory_limit: str | None = None

    def local_sizes(self) -> tuple[int, int]:
        """(workers, threads per job) of the embedded cluster on this machine."""
        threads = int(self.threads or 1)
        workers = int(self.workers or max(1, cpu_budget() // threads))
        return workers, threads


def check_spec(spec: ClusterSpec) -> dict:
    """Check the cluster options before any work; return the jobqueue keyword arguments.

    Raises
    ------
    InputError
        --scheduler together with --cluster, a bad worker or thread count, an unknown
        batch system, dask-jobqueue missing, or an unreadable cluster config.
    """
    if spec.scheduler and spec.cluster != "local":
        raise input_error("--scheduler", f"given together with --cluster {spec.cluster}",
                          "give one of them: an existing scheduler, or a batch system")
    for name, v in (("--workers", spec.workers), ("--threads", spec.threads)):
        if v is not None and (not isinstance(v, int) or v < 1):
            raise input_error(name, f"{v!r} is not a positive integer", f"e.g. {name} 2")
    if spec.cluster == "local":
        if spec.config:
            raise input_error("--cluster-config", "given without --cluster",
                              "add --cluster slurm|pbs|sge, or leave the config out")
        return {}
    if spec.cluster not in JOBQUEUE:
        raise input_error("--cluster", f"unknown batch system {spec.cluster!r}",
                          f"use one of {', '.join(JOBQUEUE)}")
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        raise input_error("--cluster", f"{spec.cluster} needs the package dask-jobqueue, "
                          "which is not installed", "pip install 'densrefine[jobqueue]' "
                          "(or pip install dask-jobqueue)") from None
    if not spec.config:
        return {}
    import yaml

    check_readable(spec.config, "a YAML file", "give the keyword arguments of "
                   f"dask_jobqueue.{JOBQUEUE[spec.cluster]} as a YAML mapping")
    try:
        with open(spec.config, encoding="utf-8") as f:
            kw = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        raise input_error(spec.config, f"is not valid YAML ({' '.join(str(exc).split())[:120]})",
                          "fix the file") from None
    if not isinstance(kw, dict):
        raise input_error(spec.config, "is not a YAML mapping", "write key: value lines, e.g. "
                          "'cores: 8', 'memory: 16GB', 'jobs: 4'")
    jobs = kw.get("jobs", 1)
    if not isinstance(jobs, int) or jobs < 1:
        raise input_error(spec.config, f"jobs: {jobs!r} is not a positive integer",
                          "give how many batch jobs to start, e.g. 'jobs: 4'")
    return kw


class ThreadLimits(WorkerPlugin):
    """Dask worker plugin: CPU threads of the jobs a worker runs (torch, BLAS, splat)."""

    name = "densrefine-thread-limits"

    def __init__(self, threads: int):
        self.threads = int(threads)

    def setup(self, worker=None):
        os.environ["DENSREFINE_CPUS"] = str(self.threads)
        try:
            import torch
            from threadpoolctl import threadpool_limits

            torch.set_num_threads(self.threads)
            threadpool_limits(limits=self.threads)
        except ImportError:      # pragma: no cover - torch is a dependency
            pass

    def teardown(self, worker=None):
        pass


@contextlib.contextmanager
def open_client(spec: ClusterSpec, jobqueue_kwargs: dict | None = None):
    """A connected ``distributed.Client`` and a description of the cluster.

    Yields
    ------
    (Client, dict)
        The client and ``{"kind", "description", "workers", "threads", "dashboard",
        "scheduler"}`` for the log and the summary.

    Raises
    ------
    InputError
        The scheduler does not answer (``--scheduler``).
    """
    from distributed import Client

    threads = int(spec.threads or 1)
    cluster = None
    if spec.scheduler:
        try:
            client = Client(spec.scheduler, timeout=f"{CONNECT_TIMEOUT}s",
                            set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            msg = " ".join(str(exc).split())[:160]
            raise input_error("--scheduler", f"no Dask scheduler answered at {spec.scheduler} "
                              f"within {CONNECT_TIMEOUT} s ({msg})", "start one (dask "
                              "scheduler; dask worker ADDRESS) or leave --scheduler out to "
                              "use the embedded cluster") from None
        kind = "scheduler"
    elif spec.cluster != "local":
        import dask_jobqueue

        kw = dict(jobqueue_kwargs or {})
        jobs = kw.pop("jobs", 1)
        cluster = getattr(dask_jobqueue, JOBQUEUE[spec.cluster])(**kw)
        cluster.scale(jobs=jobs)
        client = Client(cluster, set_as_default=False)
        kind = spec.cluster
    else:
        from distributed import LocalCluster

        workers, threads = spec.local_sizes()
        env = {k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                         "OPENBLAS_NUM_THREADS", "DENSREFINE_CPUS")}
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0", env=env,
                               memory_limit=spec.memory_limit or "auto")
        client = Client(cluster, set_as_default=False)
        kind = "local"
    try:
        client.register_plugin(ThreadLimits(threads))
        info = describe(client, kind, threads)
        log.info("Dask cluster: %s", info["description"])
        log.info("Dask dashboard: %s", info["dashboard"] or "none (install bokeh for one)")
        yield client, info
    finally:
        # an idle worker that imported torch takes a few seconds to exit, and the nanny
        # kills it after 4 s with a warning that would look like a failure
        nanny = logging.getLogger("distributed.nanny")
        level = nanny.level
        nanny.setLevel(logging.ERROR)
        try:
            client.close()
            if cluster is not None:
                cluster.close()
        finally:
            nanny.setLevel(level)


def describe(client, kind: str, threads: int) -> dict:
    """What the client is connected to (for the log and the summary)."""
    try:
        ws = client.scheduler_info(n_workers=-1).get("workers", {})
    except TypeError:                       # distributed < 2025: every worker by default
        ws = client.scheduler_info().get("workers", {})
    n = len(ws)
    slots = sum(int(w.get("nthreads", 1)) for w in ws.values())
    mem = [w.get("memory_limit") for w in ws.values() if w.get("memory_limit")]
    what = {"local": "embedded LocalCluster", "scheduler": "existing scheduler"}.get(
        kind, f"{kind} via dask-jobqueue")
    desc = (f"{what} at {client.scheduler.address}: {n} worker(s), {slots} task slot(s), "
            f"{threads} CPU thread(s) per job")
    if mem:
        desc += f", memory limit {min(mem) / 2**30:.1f} GiB per worker"
    try:
        dash = client.dashboard_link
    except (KeyError, AttributeError):
        dash = None
    return {"kind": kind, "description": desc, "workers": n, "task_slots": slots,
            "threads": threads, "scheduler": client.scheduler.address, "dashboard": dash}
