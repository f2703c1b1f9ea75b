"""Parameters of `densrefine.simulate.simulate`: names, ranges and their check.

Torch-free, so that the CLI refuses bad parameters before importing torch.
"""
from __future__ import annotations

import numpy as np

from ..errors import input_error

METHODS = ("blur", "fourier")
TABLE_NAMES = {"electron": "electron, Peng et al. 1996 (ITC Vol. C Table 4.3.2.2)",
               "xray": "X-ray, IT92 (ITC Vol. C Table 6.1.1.4)"}
MIN_RESOLUTION, MAX_RESOLUTION = 0.5, 50.0


def check_params(resolution, table="electron", method="blur", blur=None, cutoff=1e-5) -> float:
    """Validate `simulate` parameters; return the resolution as float.

    Raises
    ------
    InputError
        One line naming the parameter, the problem and the fix.
    """
    try:
        d = float(resolution)
    except (TypeError, ValueError):
        raise input_error("resolution", f"{resolution!r} is not a number",
                          "give the resolution in Å, e.g. -d 3.2") from None
    if not np.isfinite(d) or d <= 0:
        raise input_error("resolution", f"{resolution} Å must be a positive number",
                          "give the map resolution in Å, e.g. -d 3.2")
    if not MIN_RESOLUTION <= d <= MAX_RESOLUTION:
        raise input_error("resolution",
                          f"{d:g} Å is outside {MIN_RESOLUTION}–{MAX_RESOLUTION} Å",
                          "check the value (it is d in Å, not 1/d or a sigma)")
    if table not in TABLE_NAMES:
        raise input_error("table", f"unknown scattering table {table!r}", "use electron or xray")
    if method not in METHODS:
        raise input_error("method", f"unknown method {method!r}", "use blur or fourier")
    if blur is not None and (not np.isfinite(float(blur)) or float(blur) < 0):
        raise input_error("blur", f"B = {blur} Å² is negative", "give a blur B ≥ 0 in Å²")
    if not (np.isfinite(float(cutoff)) and float(cutoff) > 0):
        raise input_error("cutoff", f"{cutoff} must be a positive density level",
                          "use e.g. 1e-5 (gemmi's default)")
    return d
