"""One batch job: its key, its folder, and running it where a Dask worker runs it.

A job's outputs live in ``OUTDIR/NAME/``. The job runs in a fresh staging folder
``OUTDIR/.staging/RUN/NAME.XXXX/`` (RUN: the batch run's own area, `staging_area`) and
the finished folder replaces ``OUTDIR/NAME`` by two
renames (`publish`), so ``OUTDIR/NAME`` always holds one complete run: the previous one
or the new one, never a mix and never a half-written file. ``OUTDIR/NAME/job.json`` is
the job's record (status, the one-line error of a failed job, time, worker, attempts and
the summary numbers); it is written last, inside the staging folder.

The job key is a SHA-256 over the task, the densrefine version, the contents of every
input file (model, data, second half map, files named in the options), the resolution
and the options. A job whose record says "done" under the same key and whose outputs are
all present is skipped on a rerun (`done_record`).

`run_job` is what a worker executes: it takes the command's entry point
(``densrefine.cli.main``) as an argument, so this package needs no import of the CLI.
One job runs at a time in a worker process (the CLI's logging is process-wide;
`densrefine.distributed.worker.JOB_LOCK`).

Two batch runs may share one OUTDIR: each stages in its own ``OUTDIR/.staging/RUN/``,
which it holds an exclusive lock on (``RUN.lock``, `fcntl.flock`) while it runs. At its
end a run removes its own area and those of runs that died (their lock free), never the
area of a run still going.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
import uuid

from .. import __version__
from ..report import write_json_atomic
from .summary import metrics
from .worker import JOB_LOCK, worker_name

log = logging.getLogger("densrefine")

RECORD = "job.json"
STAGING = ".staging"
_DIGESTS: dict = {}


def file_digest(path) -> str:
    """SHA-256 of a file's bytes (cached per path, size and modification time)."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def job_key(job, task: str) -> str:
    """Hex SHA-256 identifying what a job computes (see the module docstring)."""
    files = {"model": file_digest(job.model), "data": file_digest(job.data)}
    if job.half_map_2:
        files["half_map_2"] = file_digest(job.half_map_2)
    opts = []
    for tok in job.options:
        val = tok.split("=", 1)[1] if tok.startswith("--") and "=" in tok else tok
        opts.append([tok, file_digest(val) if os.path.isfile(val) else None])
    doc = {"task": task, "version": __version__, "files": files,
           "resolution": job.resolution, "options": opts}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def outputs_of(task: str, job) -> dict:
    """File names (inside the job folder) of each output of the job's command, by role."""
    n = job.name
    if task == "fit":
        low = job.model.lower().removesuffix(".gz")
        ext = ".cif" if low.endswith((".cif", ".mmcif")) else ".pdb"
        return {"model": n + ext, "stats": n + "_stats.json", "log": n + ".log",
                "config": n + "_config.yaml", "report": n + "_report.html"}
    return {"json": f"{n}_{task}.json", "log": f"{n}_{task}.log"}


def argv_for(task: str, job, folder: str, device: str = "cpu") -> list:
    """The command line (without the program name) that runs ``job`` into ``folder``."""
    out = outputs_of(task, job)
    argv = [task, job.model]
    if task == "fit":
        if job.half_map_2:
            argv += ["--half-maps", job.data, job.half_map_2]
        else:
            argv += [job.data]
        argv += ["-o", os.path.join(folder, job.name)]
    else:
        argv += [job.data, "--json", os.path.join(folder, out["json"])]
    if job.resolution is not None:
        argv += ["-d", repr(float(job.resolution))]
    return argv + ["--device", device, "-q", *job.options]


def done_record(outdir, job, key: str) -> dict | None:
    """The record of a finished run of ``job`` with ``key`` whose outputs are all there."""
    folder = os.path.join(outdir, job.name)
    try:
        with open(os.path.join(folder, RECORD), encoding="utf-8") as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    if rec.get("status") != "done" or rec.get("key") != key:
        return None
    for fname in (rec.get("outputs") or {}).values():
        p = os.path.join(folder, fname)
        if not os.path.isfile(p) or os.path.getsize(p) == 0:
            return None
    return rec


def abandoned(staging: str, name: str) -> list:
    """Staging folders in the run's area ``staging`` of earlier attempts at job ``name``
    (a killed worker)."""
    try:
        return sorted(os.path.join(staging, e) for e in os.listdir(staging)
                      if e.startswith(name + "."))
    except OSError:
        return []


def publish(staging: str, final: str) -> None:
    """Replace the folder ``final`` by ``staging`` (two renames; the old one is removed)."""
    trash = None
    if os.path.lexists(final):
        trash = f"{staging}.old"
        os.rename(final, trash)
    os.rename(staging, final)
    if trash:
        shutil.rmtree(trash, ignore_errors=True)


def _try_lock(path: str):
    """An open file holding an exclusive lock on ``path``, or None when another process
    holds it (or it cannot be opened)."""
    try:
        import fcntl
    except ImportError:                       # no flock (Windows): every area counts as live
        return None
    try:
        f = open(path, "a+b")                 # noqa: SIM115 - closed by the caller
    except OSError:
        return None
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def clean_staging(outdir) -> int:
    """Remove the staging areas of dead runs in OUTDIR/.staging; returns how many.

    An area whose ``RUN.lock`` another process holds belongs to a live run and is kept;
    a folder without a lock file is left over from a dead run (a run makes its lock file
    before its area). ``OUTDIR/.staging`` itself goes when it is empty.
    """
    d = os.path.join(outdir, STAGING)
    try:
        entries = sorted(os.listdir(d))
    except OSError:
        return 0
    n = 0
    for e in entries:
        area = os.path.join(d, e)
        if e.endswith(".lock") or not os.path.isdir(area):
            continue
        held = None
        if os.path.exists(area + ".lock"):
            held = _try_lock(area + ".lock")
            if held is None:
                continue                      # a live run's area
        shutil.rmtree(area, ignore_errors=True)
        n += 1
        _drop_lock(area + ".lock", held)
    for e in entries:                         # lock files whose area is gone
        if e.endswith(".lock") and not os.path.isdir(os.path.join(d, e[:-5])):
            held = _try_lock(os.path.join(d, e))
            if held is not None:
                _drop_lock(os.path.join(d, e), held)
    with contextlib.suppress(OSError):
        os.rmdir(d)
    return n


def _drop_lock(path, held) -> None:
    if held is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(path)
    held.close()


@contextlib.contextmanager
def staging_area(outdir):
    """This run's staging area ``OUTDIR/.staging/RUN`` (RUN a fresh id), locked while the
    ``with`` block runs; afterwards it is removed, with the areas of dead runs.

    Yields
    ------
    str
        The area's path; jobs make their folders in it (``spec["staging"]``).
    """
    d = os.path.join(outdir, STAGING)
    os.makedirs(d, exist_ok=True)
    area = os.path.join(d, new_id())
    lock = _try_lock(area + ".lock")          # before the area: see clean_staging
    try:
        os.makedirs(area)
        yield area
    finally:
        shutil.rmtree(area, ignore_errors=True)
        _drop_lock(area + ".lock", lock)
        n = clean_staging(outdir)
        if n:
            log.info("Removed the staging folders of %d earlier run(s) that did not finish",
                     n)


def run_job(spec: dict, main) -> dict:
    """Run one job in a staging folder, publish it, return its record (never raises).

    Parameters
    ----------
    spec : dict
        ``task``, ``job`` (a `densrefine.distributed.manifest.Job`), ``outdir``, ``key``,
        ``device`` and ``staging`` (the run's area, `staging_area`; default
        ``OUTDIR/.staging``).
    main : callable
        ``main(argv) -> int``: the CLI entry point (``densrefine.cli.main``).
    """
    with JOB_LOCK:                   # one job at a time per process: logging is global
        return _run_job(spec, main)


def _run_job(spec, main) -> dict:
    task, job, outdir = spec["task"], spec["job"], spec["outdir"]
    area = spec.get("staging") or os.path.join(outdir, STAGING)
    rec = {"name": job.name, "task": task, "status": "failed", "error": None,
           "model": job.model, "data": job.data, "half_map_2": job.half_map_2,
           "resolution": job.resolution, "options": " ".join(job.options),
           "key": spec["key"], "version": __version__, "worker": worker_name(),
           "attempts": len(abandoned(area, job.name)) + 1,
           "started": time.strftime("%Y-%m-%d %H:%M:%S"), "time_s": None}
    t0 = time.perf_counter()
    staging = None
    try:
        os.makedirs(area, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=job.name + ".", dir=area)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)     # mkdtemp makes 0700 folders
        outs = outputs_of(task, job)
        argv = argv_for(task, job, staging, spec.get("device", "cpu"))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = int(main(argv) or 0)
        rec["time_s"] = round(time.perf_counter() - t0, 3)
        if rc == 0:
            missing = [f for f in outs.values() if not os.path.isfile(os.path.join(staging, f))]
            if missing:
                raise RuntimeError(f"{task} finished but did not write {', '.join(missing)}")
            _relocate_outputs(staging, os.path.join(outdir, job.name), outs)
            rec.update(metrics(task, staging, outs))
            rec.update(status="done", outputs=outs)
        else:
            rec["error"] = _error_line(err.getvalue(), staging, outs, rc)
            rec["outputs"] = {k: v for k, v in outs.items()
                              if os.path.isfile(os.path.join(staging, v))}
    except Exception as exc:  # noqa: BLE001 - a failing job is recorded, never raised
        rec["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
        rec["time_s"] = round(time.perf_counter() - t0, 3)
    rec["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    if staging is not None:
        try:
            write_json_atomic(os.path.join(staging, RECORD), rec)
            for old in abandoned(area, job.name):
                if old != staging and not old.endswith(".old"):
                    shutil.rmtree(old, ignore_errors=True)
            publish(staging, os.path.join(outdir, job.name))
        except OSError as exc:
            rec.update(status="failed", error=f"cannot publish the job folder: {exc}")
    return rec


def _relocate_outputs(staging, final, outs) -> None:
    """The stats JSON names its outputs by absolute path: point them at the final folder."""
    stats = outs.get("stats")
    if not stats:
        return
    p = os.path.join(staging, stats)
    with open(p, encoding="utf-8") as f:
        doc = json.load(f)
    if isinstance(doc.get("outputs"), dict):
        doc["outputs"] = {k: os.path.join(os.path.abspath(final), os.path.basename(v))
                          for k, v in doc["outputs"].items()}
        write_json_atomic(p, doc)


def _error_line(stderr: str, staging, outs, rc) -> str:
    """The command's one-line error (exit 2), or the exception line of its traceback (exit
    1: in the job's log, or in the file the command names when it failed before logging)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errs = [ln for ln in lines if ": error: " in ln]
    if errs:
        return errs[-1].split(": error: ", 1)[1][:500]
    logs = [os.path.join(staging, outs.get("log", ""))]
    logs += [ln.split("unexpected error, see ", 1)[1] for ln in lines
             if "unexpected error, see " in ln]
    for logp in reversed(logs):
        if not os.path.isfile(logp):
            continue
        with open(logp, encoding="utf-8", errors="replace") as f:
            tb = [ln.rstrip() for ln in f if ln.strip()]
        exc = [ln for ln in tb if not ln.startswith((" ", "\t", "Traceback"))
               and ("Error" in ln.split(":")[0] or "Exception" in ln.split(":")[0])]
        if exc:
            return f"unexpected error: {exc[-1]}"[:500]
    return (lines[-1] if lines else f"exit code {rc}")[:500]


def new_id() -> str:
    """A short unique id (Dask task keys)."""
    return uuid.uuid4().hex[:10]
