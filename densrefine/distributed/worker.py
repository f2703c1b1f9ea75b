"""What runs inside a Dask worker process: one densrefine job at a time, and its facts.

`JOB_LOCK` is held by every job a worker runs (a batch job, `densrefine.distributed.jobs`;
a block of a partitioned fit or its geometry check, `densrefine.distributed.blockfit`):
densrefine's logging, the torch thread count and the model map's workspaces are
process-wide, so two jobs on threads of one worker would mix their logs and settings.
`worker_name` and `peak_rss_mb` are what a job's record says about where it ran.
"""
from __future__ import annotations

import os
import resource
import socket
import threading

JOB_LOCK = threading.Lock()
"""Held while a job runs in this process (one job at a time per worker process)."""


def worker_name() -> str:
    """``host:pid`` of this process, with the Dask worker's name when there is one."""
    base = f"{socket.gethostname()}:{os.getpid()}"
    try:
        from distributed import get_worker

        w = get_worker()
        return f"{w.name}@{base}" if w.name is not None else base
    except (ImportError, ValueError):
        return base


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB; Linux ru_maxrss is in kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
