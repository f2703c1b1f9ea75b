"""Live mode: a warm session that answers model edits with R factors, CCs and maps.

``session`` (`Session`: X-ray or cryo-EM, chosen by the data), ``xray`` (F_calc, F_mask and
scales kept and updated exactly when atoms move), ``em`` (model map, molecular mask and
CCs kept likewise), ``symdft`` (structure factors of a small box of a cell grid with the
space-group symmetry), ``mask`` (gemmi's cctbx mask redone inside a box), ``splat`` (the
moved atoms' density on boxes of the full grid), ``protocol`` (the JSON messages),
``server`` (the session in its own process behind a Unix socket or loopback TCP with a
token; see docs/live.md).
"""
from __future__ import annotations

from .._lazy import lazy_attributes

__all__ = ["Session"]

__getattr__, __dir__ = lazy_attributes(__name__, {"Session": ".session"})
