"""The cluster options shared by ``densrefine batch`` and ``densrefine fit --partition``.

Where the work runs (`densrefine.distributed.cluster.ClusterSpec`): an embedded Dask
LocalCluster sized to this machine, an existing scheduler, or a batch system through
dask-jobqueue. Both commands add them with `add_cluster_args` and read them back with
`cluster_spec`, so the flags, their help and their checks are the same in both.
"""
from __future__ import annotations

CLUSTER_FLAGS = ("--scheduler", "--cluster", "--cluster-config", "--workers", "--threads",
                 "--memory-limit")
"""The flags `add_cluster_args` adds (a batch job may not carry them)."""


def add_cluster_args(group, sizes=None) -> None:
    """Add `CLUSTER_FLAGS` to the argparse ``group``; ``--workers`` and ``--threads`` to
    ``sizes`` instead when given (batch shows them among the flags most users need)."""
    sizes = group if sizes is None else sizes
    sizes.add_argument("--workers", type=int, metavar="N",
                       help="embedded cluster: worker processes (default: cores / threads)")
    sizes.add_argument("--threads", type=int, metavar="T",
                       help="CPU threads per job, or per block of a partitioned fit "
                            "(torch and BLAS; default: 1)")
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help="address of an existing Dask scheduler, e.g. tcp://head:8786 "
                            "(default: an embedded LocalCluster)")
    group.add_argument("--cluster", choices=["local", "slurm", "pbs", "sge"],
                       default="local",
                       help="batch system through dask-jobqueue (pip install "
                            "'densrefine[jobqueue]'); default: %(default)s (embedded)")
    group.add_argument("--cluster-config", metavar="FILE.yaml",
                       help="keyword arguments of dask-jobqueue's cluster class (cores, "
                            "memory, queue, account, walltime, ...) and jobs: N")
    group.add_argument("--memory-limit", metavar="SIZE",
                       help="embedded cluster: memory per worker, e.g. 4GB (default: the "
                            "machine's memory shared among the workers)")


def cluster_spec(args):
    """The `densrefine.distributed.cluster.ClusterSpec` of parsed ``args``."""
    from ..distributed.cluster import ClusterSpec

    return ClusterSpec(scheduler=args.scheduler, cluster=args.cluster or "local",
                       config=args.cluster_config, workers=args.workers,
                       threads=args.threads, memory_limit=args.memory_limit)
