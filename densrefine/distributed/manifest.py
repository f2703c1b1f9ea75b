"""The batch manifest: one job per row of a CSV file (or item of a YAML list).

Columns (header names, any order):

``model`` (required)
    The atomic model (.pdb/.cif, optionally .gz).
``data`` (required)
    A map (.mrc/.map/.ccp4) or X-ray reflections (MTZ, mmCIF structure factors); with
    ``half_map_2`` the first half map.
``resolution``
    d in Å (fit and score: ``-d``; rfactor: the high-resolution limit ``-d``); empty:
    the command's default.
``half_map_2``
    The second half map (fit only: ``fit MODEL --half-maps DATA HALF_MAP_2``).
``name``
    The job's output folder under OUTDIR (default: the model's file stem, with the data
    file's stem added where two rows share a model).
``options``
    Extra command-line options of the job's command, as on a shell command line
    (``--stages xyz --cycles 2``); in YAML a string or a list.

Relative paths are read from the manifest's folder. Everything is checked before any
job runs; a problem is one line naming the manifest, the row and the fix
(`densrefine.errors.InputError`).
"""
from __future__ import annotations

import csv
import difflib
import io
import os
import re
import shlex
from dataclasses import dataclass, field

from ..errors import check_readable, input_error
from ..io.mrc import looks_like_map
from ..scoring.api import MAX_RESOLUTION, MIN_RESOLUTION
from . import TASKS

REQUIRED = ("model", "data")
OPTIONAL = ("resolution", "half_map_2", "name", "options")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
RESERVED = {"summary.csv", "summary.json", "summary.html", "batch.log", ".staging"}


@dataclass(frozen=True)
class Job:
    """One row of the manifest, checked.

    Attributes
    ----------
    where : str
        ``"MANIFEST line N"`` (CSV) or ``"MANIFEST item N"`` (YAML), for messages.
    name : str
        Output folder name under OUTDIR.
    model, data : str
        Absolute paths.
    resolution : float or None
        Å.
    half_map_2 : str or None
        Absolute path of the second half map.
    options : tuple of str
        Extra command-line options, split like a shell.
    """

    where: str
    name: str
    model: str
    data: str
    resolution: float | None = None
    half_map_2: str | None = None
    options: tuple = field(default_factory=tuple)

    def inputs(self) -> list:
        """Every input file of the job (model, data, second half map)."""
        return [p for p in (self.model, self.data, self.half_map_2) if p]


def read_manifest(path, task: str = "fit", check_options=None) -> list[Job]:
    """Read and check a batch manifest (CSV, or YAML for .yaml/.yml).

    Parameters
    ----------
    path : str or path-like
        The manifest.
    task : {"fit", "score", "rfactor"}
        The command every job runs (data kinds and half maps are checked against it).
    check_options : callable, optional
        ``check_options(task, job) -> None``, raising `InputError` (a one-line problem and
        fix) for options the command does not take; the CLI passes its own parsers.

    Returns
    -------
    list of Job
        In manifest order, with unique names.

    Raises
    ------
    InputError
        Unreadable manifest, missing or unknown columns, an empty required cell, a
        nonexistent input file, a bad resolution, a data file of the wrong kind for the
        task, options the command refuses, or two rows with one output name.

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> for f in ("a.pdb", "a.mrc"):
    ...     _ = open(os.path.join(d, f), "w").write("x")
    >>> m = os.path.join(d, "jobs.csv")
    >>> _ = open(m, "w").write("model,data,resolution\\na.pdb,a.mrc,3.2\\n")
    >>> [(j.name, j.resolution) for j in read_manifest(m)]
    [('a', 3.2)]
    >>> _ = open(m, "w").write("model,map\\na.pdb,a.mrc\\n")
    >>> read_manifest(m)
    Traceback (most recent call last):
    ...
    densrefine.errors.InputError: ...jobs.csv: unknown column 'map'; ...
    """
    if task not in TASKS:
        raise input_error("--task", f"unknown task {task!r}", f"use one of {', '.join(TASKS)}")
    path = check_readable(path, "a manifest", "give a CSV file with a header row "
                          "(model,data,...) or a YAML list")
    rows = _read_yaml(path) if path.lower().endswith((".yaml", ".yml")) else _read_csv(path)
    if not rows:
        raise input_error(path, "holds no job", "add one row per job under the header "
                          "model,data[,resolution,half_map_2,name,options]")
    base = os.path.dirname(os.path.abspath(path))
    jobs = [_job(where, row, base, task) for where, row in rows]
    jobs = _names(jobs)
    if check_options is not None:
        for job in jobs:
            check_options(task, job)
    return jobs


def _read_csv(path) -> list:
    with open(path, newline="", encoding="utf-8-sig") as f:
        text = f.read()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return []
    try:
        dialect = csv.Sniffer().sniff(lines[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    header = None
    rows = []
    for rec in reader:
        if not rec or all(not c.strip() for c in rec) or rec[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [c.strip().lower() for c in rec]
            _check_columns(path, header)
            continue
        where = f"{path} line {reader.line_num}"
        if len(rec) > len(header):
            raise input_error(where, f"{len(rec)} cells under a header of {len(header)} "
                              "columns", "quote cells that contain the delimiter, e.g. "
                              "\"--stages xyz,b\"")
        rows.append((where, {k: (v.strip() if v is not None else "")
                             for k, v in zip(header, rec)}))
    if header is None:
        return []
    return rows


def _read_yaml(path) -> list:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        msg = " ".join(str(exc).split())[:160]
        raise input_error(path, f"is not valid YAML ({msg})", "give a list of mappings "
                          "with the keys model, data[, resolution, half_map_2, name, "
                          "options]") from None
    if isinstance(doc, dict) and isinstance(doc.get("jobs"), list):
        doc = doc["jobs"]
    if not isinstance(doc, list):
        raise input_error(path, "is not a YAML list of jobs", "write one '- model: ...' "
                          "item per job (or a mapping with a 'jobs' list)")
    rows = []
    for i, item in enumerate(doc, 1):
        where = f"{path} item {i}"
        if not isinstance(item, dict):
            raise input_error(where, "is not a mapping", "write each job as 'model: ...', "
                              "'data: ...' keys")
        keys = [str(k).strip().lower() for k in item]
        _check_columns(where, keys, yaml_item=True)
        row = {}
        for k, v in item.items():
            k = str(k).strip().lower()
            if k == "options" and isinstance(v, (list, tuple)):
                v = " ".join(shlex.quote(str(x)) for x in v)
            row[k] = "" if v is None else str(v).strip()
        rows.append((where, row))
    return rows


def _check_columns(where, header, yaml_item: bool = False) -> None:
    known = REQUIRED + OPTIONAL
    for col in header:
        if col not in known:
            close = difflib.get_close_matches(col, known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise input_error(where, f"unknown column '{col}'", f"{hint}the columns are "
                              f"{', '.join(known)} (model and data required)")
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise input_error(where, f"column '{dup[0]}' appears twice", "keep one")
    for col in REQUIRED:
        if col not in header:
            what = "key" if yaml_item else "column"
            raise input_error(where, f"missing {what} '{col}' (found: "
                              f"{', '.join(header) or 'none'})", "name the model file in "
                              "'model' and the map or reflection file in 'data'")


def _path(where, base, value, column) -> str:
    p = os.path.expanduser(value)
    p = p if os.path.isabs(p) else os.path.join(base, p)
    if not os.path.exists(p):
        raise input_error(where, f"{column} file {value} does not exist (looked for {p})",
                          "fix the path; relative paths are read from the manifest's folder")
    try:
        check_readable(p, f"a {column} file", f"give a readable {column} file")
    except Exception as exc:  # noqa: BLE001 - re-raised with the row named
        raise input_error(where, f"{column}: {exc}", "fix the row") from None
    return os.path.abspath(p)


def _abs_if_file(base, tok: str) -> str:
    """An option value naming an existing file (relative to the manifest) made absolute."""
    flag, eq, val = tok.partition("=") if tok.startswith("--") else ("", "", tok)
    if not val or val.startswith("-") or os.path.isabs(val):
        return tok
    p = os.path.join(base, os.path.expanduser(val))
    if not os.path.exists(p):
        return tok
    return f"{flag}={os.path.abspath(p)}" if eq else os.path.abspath(p)


def _job(where, row, base, task) -> Job:
    for col in REQUIRED:
        if not row.get(col):
            raise input_error(where, f"the '{col}' cell is empty", f"give the {col} file")
    model = _path(where, base, row["model"], "model")
    data = _path(where, base, row["data"], "data")
    half2 = _path(where, base, row["half_map_2"], "half_map_2") if row.get("half_map_2") \
        else None
    d = None
    if row.get("resolution"):
        try:
            d = float(row["resolution"])
        except ValueError:
            d = float("nan")
        if not (MIN_RESOLUTION <= d <= MAX_RESOLUTION):
            raise input_error(where, f"resolution {row['resolution']!r} is not a number "
                              f"within {MIN_RESOLUTION}–{MAX_RESOLUTION} Å",
                              "give d in Å, e.g. 3.2, or leave the cell empty")
    is_map = looks_like_map(data)
    if task == "score" and not is_map:
        raise input_error(where, f"data {row['data']} is not a map, and score needs one",
                          "give a .mrc/.map/.ccp4 map (or use --task rfactor for X-ray data)")
    if task == "rfactor" and is_map:
        raise input_error(where, f"data {row['data']} is a map, and rfactor needs "
                          "reflections", "give an MTZ or mmCIF structure-factor file (or use "
                          "--task score for maps)")
    if half2 is not None and (task != "fit" or not is_map):
        raise input_error(where, "half_map_2 is given, but only fit takes half maps and "
                          "then 'data' must be half map 1", "clear the half_map_2 cell or "
                          "run --task fit with the first half map in 'data'")
    try:
        options = tuple(_abs_if_file(base, t) for t in
                        shlex.split(row.get("options") or "", comments=False))
    except ValueError as exc:
        raise input_error(where, f"options {row.get('options')!r} cannot be split ({exc})",
                          "close the quotes") from None
    name = row.get("name") or ""
    if name and (not NAME_RE.match(name) or name in RESERVED):
        raise input_error(where, f"name {name!r} is not a usable folder name",
                          "use letters, digits and . _ + - (not starting with a dot; not "
                          f"{', '.join(sorted(RESERVED))})")
    return Job(where, name, model, data, d, half2, options)


def _stem(path) -> str:
    base = os.path.basename(path)
    low = base.lower()
    if low.endswith(".gz"):
        base = base[:-3]
    stem = os.path.splitext(base)[0]
    stem = re.sub(r"[^A-Za-z0-9._+-]", "_", stem).lstrip(".") or "job"
    return stem[:60]


def _names(jobs: list[Job]) -> list[Job]:
    """Default names (model stem; + data stem where models repeat); refuse duplicates."""
    import dataclasses

    stems = [_stem(j.model) for j in jobs]
    out = []
    for j, s in zip(jobs, stems):
        if not j.name:
            name = s if stems.count(s) == 1 else f"{s}_{_stem(j.data)}"
            j = dataclasses.replace(j, name=name)
        out.append(j)
    seen: dict = {}
    for j in out:
        key = j.name.lower()          # case-insensitive file systems
        if key in seen:
            first = seen[key]
            raise input_error(j.where, f"its output name {j.name!r} is also that of "
                              f"{first.where} (both would write OUTDIR/{j.name})",
                              "give each row its own value in the 'name' column")
        seen[key] = j
    return out
