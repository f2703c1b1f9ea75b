"""Reports: machine-readable stats JSON (atomic writes), the HTML report and provenance.

`write_json_atomic` is the one way densrefine writes a stats file: numpy values are
converted, NaN becomes null, and readers never see a half-written file.
"""
from .html import report_html
from .provenance import versions_str
from .stats import to_jsonable, write_json_atomic

__all__ = ["report_html", "to_jsonable", "versions_str", "write_json_atomic"]
