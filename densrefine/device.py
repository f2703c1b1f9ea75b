"""Compute-device selection (``--device auto|cpu|cuda[:i]``)."""
from __future__ import annotations

import logging

from .errors import DeviceError

log = logging.getLogger("densrefine")


def resolve_device(spec: str | None = "auto"):
    """Turn a device string into a `torch.device`, checking that it exists.

    Parameters
    ----------
    spec : str or torch.device or None
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:i"``.

    Returns
    -------
    torch.device

    Raises
    ------
    DeviceError
        When CUDA is requested but not available, or the string is not a device.
    """
    import torch

    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {spec}: CUDA is not available on this machine; "
                              "use --device cpu or --device auto")
        try:
            dev = torch.device(spec)
        except RuntimeError as exc:
            raise DeviceError(f"--device {spec}: {exc}; use cuda or cuda:N") from None
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {spec}: only {torch.cuda.device_count()} CUDA "
                              "device(s) present; use a smaller index")
        return dev
    raise DeviceError(f"--device {spec}: unknown device; use auto, cpu, cuda or cuda:N")


def describe_device(device) -> str:
    """One-line human description of a torch device (name, memory, threads)."""
    import torch

    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"{device} ({p.name}, {p.total_memory / 2**30:.1f} GiB)"
    return f"cpu ({torch.get_num_threads()} threads)"


def cpu_budget() -> int:
    """CPU cores this process may use: its affinity mask, capped by ``$DENSREFINE_CPUS``.

    Dask workers of ``densrefine batch`` and of partitioned ``fit`` get
    ``DENSREFINE_CPUS`` (their share of the machine), so that jobs running side by side
    do not each start threads for every core.

    Examples
    --------
    >>> cpu_budget() >= 1
    True
    """
    import os

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = n or 1
    cap = os.environ.get("DENSREFINE_CPUS", "").strip()
    if cap.isdigit() and int(cap) > 0:
        n = min(n, int(cap))
    return n
