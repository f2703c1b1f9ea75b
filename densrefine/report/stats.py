"""Machine-readable statistics files (JSON), written atomically.

Readers (tests, GUIs, the ChimeraX/Coot plugins) may poll these files while a job
runs, so every write goes to a temporary file in the same folder that is then
renamed over the target (servalcat ``write_stats_json_safe`` pattern).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np

from ..io.atomic import atomic_path


def to_jsonable(obj):
    """Convert ``obj`` recursively into plain JSON types.

    numpy scalars and arrays become Python numbers and lists, dataclasses and objects
    with ``to_dict()`` become dicts, tuples/sets become lists, paths become strings,
    and non-finite floats (NaN, ±inf) become None (JSON null).
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, np.bool_):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.ndarray):
        return [to_jsonable(x) for x in obj.tolist()]
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(x) for x in obj]
    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item"):  # 0-d tensors and the like
        return to_jsonable(obj.item())
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_json_atomic(path, obj, *, indent: int | None = 1) -> str:
    """Write ``obj`` as JSON to ``path`` atomically; return the path.

    Parameters
    ----------
    path : str or os.PathLike
        Target file; its folder must exist.
    obj : object
        Anything `to_jsonable` accepts (dicts, lists, numpy values, a `ScoreReport`).
    indent : int or None
        JSON indentation (None: one line).

    Examples
    --------
    >>> import os, tempfile, json, numpy as np
    >>> p = os.path.join(tempfile.mkdtemp(), "s.json")
    >>> _ = write_json_atomic(p, {"cc": np.float32(0.5), "r": float("nan")})
    >>> json.load(open(p))
    {'cc': 0.5, 'r': None}
    """
    data = to_jsonable(obj)
    path = os.fspath(path)
    text = json.dumps(data, indent=indent, allow_nan=False)  # indent=None: C encoder, ~10x faster
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.write("\n")
    return path
