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


WATER_NAMES = frozenset({"HOH", "WAT", "H2O", "DOD", "D2O", "SOL", "TIP", "TIP3"})


def is_water_or_ion(res_name: str, n_atoms: int | None = None) -> bool:
    """True for waters (HOH, WAT, DOD, ...) and single-atom ions (NA, CL, ZN, MG, ...).

    Parameters
    ----------
    res_name : str
        Residue name.
    n_atoms : int, optional
        Atoms of the residue; a residue that is not a water is an ion when it is not
        an amino acid or nucleotide and has one atom (or, without ``n_atoms``, when
        gemmi tabulates it with one heavy atom).

    Examples
    --------
    >>> is_water_or_ion("HOH"), is_water_or_ion("ZN", 1), is_water_or_ion("GLY", 1)
    (True, True, False)
    """
    import gemmi

    name = str(res_name).strip().upper()
    if name in WATER_NAMES:
        return True
    info = gemmi.find_tabulated_residue(name)
    if info is not None and (info.is_water() or info.is_amino_acid()
                             or info.is_nucleic_acid()):
        return bool(info.is_water())
    if n_atoms is not None:
        return int(n_atoms) == 1
    return info is not None and info.weight > 0 and info.hydrogen_count == 0 \
        and len(name) <= 2


def worst_residues(residues, n: int = 10, *, with_waters: bool = False):
    """The ``n`` residues with the lowest CC, waters and single-atom ions left out.

    Parameters
    ----------
    residues : list of dict
        Per-residue records (``res_name``, ``cc``, ``n_atoms``, ...) as in
        `densrefine.scoring.ScoreReport.residues`.
    n : int
        How many to return.
    with_waters : bool
        Keep waters and ions in the ranking.

    Returns
    -------
    worst : list of dict
        Lowest CC first.
    n_scored : int
        Residues with a CC that were ranked.
    n_left_out : int
        Waters and ions with a CC that were left out.

    Examples
    --------
    >>> rs = [{"res_name": "HOH", "cc": 0.1, "n_atoms": 1},
    ...       {"res_name": "ALA", "cc": 0.5, "n_atoms": 5}]
    >>> [r["res_name"] for r in worst_residues(rs)[0]], worst_residues(rs)[2]
    (['ALA'], 1)
    """
    scored = [r for r in residues if r.get("cc") is not None and r["cc"] == r["cc"]]
    keep = scored if with_waters else [
        r for r in scored if not is_water_or_ion(r["res_name"], r.get("n_atoms"))]
    worst = sorted(keep, key=lambda r: r["cc"])[:n]
    return worst, len(keep), len(scored) - len(keep)
