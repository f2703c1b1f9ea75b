"""Run a checked manifest's jobs on a Dask client: skip finished ones, collect, summarise.

`run_jobs` submits one Dask task per job that is not already finished (`jobs.done_record`)
and records each as it completes; a job whose worker died is retried by Dask on another
worker (the scheduler's ``allowed-failures``, 3 by default) and, if it keeps dying, is
recorded as failed. OUTDIR/summary.json and summary.csv are rewritten after every job
(a killed client leaves a summary of what finished); summary.html at the end.
"""
from __future__ import annotations

import logging
import os
import sys
import time

from .. import __version__
from .jobs import done_record, job_key, new_id, staging_area
from .summary import write_summary

log = logging.getLogger("densrefine")

SUMMARY_EVERY_S = 2.0
"""Seconds between rewrites of summary.json/csv while jobs finish."""


def _short(rec: dict) -> str:
    if rec.get("status") == "failed":
        return f"failed: {rec.get('error')}"
    bits = []
    for key, label, fmt in (("cc_mask", "CC_mask", "{:.4f}"), ("r_free", "R-free", "{:.4f}"),
                            ("r_work", "R-work", "{:.4f}")):
        b, a = rec.get(f"{key}_before"), rec.get(f"{key}_after")
        if a is not None:
            bits.append(f"{label} {fmt.format(b) if b is not None else 'n/a'} → "
                        f"{fmt.format(a)}")
        elif rec.get(key) is not None:
            bits.append(f"{label} {fmt.format(rec[key])}")
    t = rec.get("time_s")
    return (f"{rec.get('status')} in {t:.1f} s on {rec.get('worker')}" if t is not None
            else str(rec.get("status"))) + (f" ({', '.join(bits)})" if bits else "")


def _lost(job, task, key, exc) -> dict:
    """Record of a job whose task never returned (its workers kept dying, or Dask failed)."""
    name = type(exc).__name__
    msg = " ".join(str(exc).split())[:300]
    if name == "KilledWorker":
        msg = ("the workers running it died repeatedly (killed, or over the memory limit; "
               "see --memory-limit)")
    return {"name": job.name, "task": task, "status": "failed", "error": f"{name}: {msg}",
            "model": job.model, "data": job.data, "half_map_2": job.half_map_2,
            "resolution": job.resolution, "options": " ".join(job.options), "key": key,
            "version": __version__, "worker": None, "attempts": None, "time_s": None}


def plan_jobs(jobs, outdir: str, task: str, force: bool = False) -> dict:
    """Which jobs must run: ``{"keys", "records" (of the skipped ones), "todo"}``.

    A job is skipped when OUTDIR/NAME/job.json says "done" under the job's key and its
    outputs are all present (`densrefine.distributed.jobs.done_record`), unless ``force``.
    """
    keys = {j.name: job_key(j, task) for j in jobs}
    records: dict = {}
    todo = []
    for j in jobs:
        rec = None if force else done_record(outdir, j, keys[j.name])
        if rec is not None:
            records[j.name] = dict(rec, status="skipped", finished_earlier=rec.get("finished"))
        else:
            todo.append(j)
    return {"keys": keys, "records": records, "todo": todo}


def run_jobs(client, jobs, outdir: str, task: str, execute, *, planned: dict | None = None,
             device: str = "cpu", force: bool = False, doc: dict | None = None,
             bar: bool = False) -> dict:
    """Run ``jobs`` on ``client``; return the summary dict (also written to OUTDIR).

    Parameters
    ----------
    client : distributed.Client or None
        None only when nothing is left to run.
    jobs : list of densrefine.distributed.manifest.Job
        Checked (`densrefine.distributed.manifest.read_manifest`).
    outdir : str
        Output folder (created).
    task : {"fit", "score", "rfactor"}
    execute : callable
        ``execute(spec) -> record``, importable on the workers (the CLI's
        ``densrefine.cli.batch.execute``).
    planned : dict, optional
        `plan_jobs`' answer (computed here when absent).
    device : str
        ``--device`` of every job.
    force : bool
        Rerun finished jobs too.
    doc : dict, optional
        Run facts for the summary (manifest, cluster).
    bar : bool
        A tqdm progress bar on stderr.

    Returns
    -------
    dict
        The summary: run facts and ``jobs`` (one record per job, manifest order).
    """
    t0 = time.perf_counter()
    os.makedirs(outdir, exist_ok=True)
    summary = dict(doc or {}, program="densrefine batch", version=__version__, task=task,
                   outdir=os.path.abspath(outdir), started=time.strftime("%Y-%m-%d %H:%M:%S"))
    planned = planned or plan_jobs(jobs, outdir, task, force)
    keys, records, todo = planned["keys"], dict(planned["records"]), planned["todo"]
    log.info("Jobs: %d to run, %d finished earlier with the same inputs, options and "
             "version (skipped)%s", len(todo), len(jobs) - len(todo),
             "; --force reruns them all" if force else "")
    with staging_area(outdir) as area:
        _collect(client, todo, outdir, task, execute, keys, records, device, area, bar,
                 lambda: _write(outdir, summary, jobs, records, t0, html=False))
    return _write(outdir, summary, jobs, records, t0, html=True)


def _collect(client, todo, outdir, task, execute, keys, records, device, area, bar,
             rewrite) -> None:
    """Submit ``todo`` with the staging area ``area``, put each job's record in
    ``records`` as it ends, call ``rewrite()`` at most every `SUMMARY_EVERY_S`."""
    from distributed import as_completed

    futures = {}
    for j in todo:
        spec = {"task": task, "job": j, "outdir": os.path.abspath(outdir), "key": keys[j.name],
                "device": device, "staging": area}
        fut = client.submit(execute, spec, key=f"densrefine-{task}-{j.name}-{new_id()}",
                            pure=False)
        futures[fut] = j
    if not futures:
        return
    progress = _bar(len(todo)) if bar else None
    last = 0.0
    try:
        for fut in as_completed(futures, loop=client.loop):
            j = futures[fut]
            try:
                rec = fut.result()
            except Exception as exc:  # noqa: BLE001 - the job failed, the batch goes on
                rec = _lost(j, task, keys[j.name], exc)
            records[j.name] = rec
            _say(progress, f"{j.name}: {_short(rec)}", rec.get("status") == "failed")
            if progress is not None:
                progress.update(1)
            if time.perf_counter() - last > SUMMARY_EVERY_S:
                rewrite()
                last = time.perf_counter()
    finally:
        if progress is not None:
            progress.close()


def _write(outdir, summary, jobs, records, t0, html):
    summary["jobs"] = [records.get(j.name) or {"name": j.name, "status": "pending"}
                       for j in jobs]
    summary["wall_s"] = round(time.perf_counter() - t0, 3)
    counts: dict = {}
    for r in summary["jobs"]:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary["counts"] = counts
    paths = write_summary(outdir, summary, html=html)
    if html:
        summary["summary_files"] = paths
        log.info("Jobs: %s in %.1f s", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
                 summary["wall_s"])
        for p in paths.values():
            log.info("Wrote %s", p)
    return summary


def _bar(total):
    from tqdm import tqdm

    return tqdm(total=total, desc="batch", unit="job", file=sys.stderr, leave=True)


def _say(progress, msg, bad: bool):
    level = logging.WARNING if bad else logging.INFO
    if progress is None:
        log.log(level, "%s", msg)
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm(loggers=[log]):
        log.log(level, "%s", msg)
