"""Size checks made before large allocations, so a bad option is refused with the
size it would need instead of exhausting memory (or waiting on swap)."""
from __future__ import annotations

import os

import numpy as np

from ..errors import input_error

GIB = 1024 ** 3


def available_memory() -> int:
    """Bytes of memory available to a new allocation (``MemAvailable``; else all RAM)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_grid_size(shape, what: str, fix: str, *, bytes_per_voxel: int = 4,
                    copies: float = 3.0, available: int | None = None) -> int:
    """Refuse a grid whose work arrays would not fit in memory; return its voxel count.

    Parameters
    ----------
    shape : sequence of int
        Grid size (any axis order).
    what : str
        The option or file that asked for it, named in the message (e.g. "--box").
    fix : str
        What to do instead.
    bytes_per_voxel : int
        4 for float32.
    copies : float
        Arrays of that size the computation holds at once (map, FFT, mask, ...).
    available : int, optional
        Bytes available (default: `available_memory`).

    Raises
    ------
    InputError
        Non-positive sizes, or ``copies × voxels × bytes_per_voxel`` above the memory
        available; the message gives the size needed.

    Examples
    --------
    >>> check_grid_size((10, 10, 10), "--box", "smaller", available=10**6)
    1000
    >>> check_grid_size((4000, 4000, 4000), "--box", "give a smaller box")
    Traceback (most recent call last):
    ...
    densrefine.errors.InputError: --box: a 4000×4000×4000 grid needs 238 GiB for the map alone ...
    """
    n = np.asarray(shape, dtype=np.int64).reshape(-1)
    dims = "×".join(str(int(v)) for v in n)
    if (n <= 0).any():
        raise input_error(what, f"grid {dims} has a zero or negative size", fix)
    voxels = int(np.prod(n.astype(object)))
    one = voxels * bytes_per_voxel
    need = int(one * copies)
    have = available_memory() if available is None else int(available)
    if need > have:
        raise input_error(what, f"a {dims} grid needs {one / GIB:.3g} GiB for the map alone "
                          f"(about {need / GIB:.3g} GiB while computing), more than the "
                          f"{have / GIB:.3g} GiB of memory available", fix)
    return voxels
