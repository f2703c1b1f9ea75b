"""Provenance facts for logs and stats: program and dependency versions (servalcat
``versions_str``)."""
from __future__ import annotations

import platform

from .. import __version__


def versions_str() -> str:
    """Versions of densrefine and its main dependencies, one line."""

    parts = [f"densrefine {__version__}", f"Python {platform.python_version()}"]
    for mod in ("torch", "gemmi", "numpy", "scipy", "mrcfile"):
        try:
            m = __import__(mod)
            parts.append(f"{mod} {getattr(m, '__version__', '?')}")
        except Exception:  # noqa: BLE001
            parts.append(f"{mod} missing")
    try:
        import torch

        cuda = torch.version.cuda if torch.cuda.is_available() else None
        parts.append(f"CUDA {cuda}" if cuda else "CUDA not available")
    except Exception:  # noqa: BLE001
        pass
    return ", ".join(parts)
