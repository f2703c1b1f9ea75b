"""Reports: machine-readable stats JSON (atomic writes) and, later, HTML/plots.

`write_json_atomic` is the one way densrefine writes a stats file: numpy values are
converted, NaN becomes null, and readers never see a half-written file.
"""
from .stats import to_jsonable, write_json_atomic

__all__ = ["to_jsonable", "write_json_atomic"]
