"""The HTML page of ``densrefine batch`` (OUTDIR/summary.html) from its summary dict.

One self-contained page: the run (task, cluster, times), a table of every job that sorts
on a click on its header (a few lines of inline script; no network), a link to each
job's own report, and plots: the main score before → after per job (CC_mask for maps,
R-free for X-ray data; the score itself for ``score``; R-work/R-free for ``rfactor``)
and the wall time per job coloured by worker. The figures are matplotlib SVG through
`densrefine.report.plots`.
"""
from __future__ import annotations

import html
import math
import os

import numpy as np

from . import plots
from .html import CSS

BATCH_CSS = CSS + """
div.wide{overflow-x:auto}td.err{min-width:22em;max-width:40em;font-size:13px;color:#a61b1b}
th{vertical-align:bottom}
"""

SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function(th, col) {
 th.style.cursor = 'pointer'; th.title = 'sort';
 th.addEventListener('click', function() {
  var table = th.closest('table'), body = table.tBodies[0];
  var rows = Array.from(body.rows), asc = th.dataset.dir !== 'asc';
  table.querySelectorAll('th').forEach(function(h) { delete h.dataset.dir; });
  th.dataset.dir = asc ? 'asc' : 'desc';
  rows.sort(function(a, b) {
   var x = a.cells[col].dataset.v ?? a.cells[col].textContent;
   var y = b.cells[col].dataset.v ?? b.cells[col].textContent;
   var nx = parseFloat(x), ny = parseFloat(y);
   var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : (isNaN(nx) - isNaN(ny)) || x.localeCompare(y);
   return asc ? c : -c;
  });
  rows.forEach(function(r) { body.appendChild(r); });
 });
});
"""

# (column, label, decimals) per task; "status", "name" and "error" are always shown
TABLE = {
    "fit": (("cc_mask_before", "CC_mask before", 3), ("cc_mask_after", "CC_mask after", 3),
            ("r_work_after", "R-work after", 4), ("r_free_before", "R-free before", 4),
            ("r_free_after", "R-free after", 4), ("bond_rmsd_after", "bond RMSD Å", 4),
            ("angle_rmsd_after", "angle RMSD °", 2), ("clashscore_after", "clashscore", 1),
            ("rama_outlier_pct_after", "Rama outliers %", 2),
            ("rotamer_outlier_pct_after", "rotamer outliers %", 2)),
    "score": (("cc_mask", "CC_mask", 3), ("cc_box", "CC_box", 3), ("cc_volume", "CC_volume", 3),
              ("cc_peaks", "CC_peaks", 3), ("rsr", "real-space R", 3),
              ("d_fsc05", "d(FSC=0.5) Å", 2)),
    "rfactor": (("r_work", "R-work", 4), ("r_free", "R-free", 4), ("k_sol", "k_sol", 3),
                ("b_sol", "B_sol Å²", 1), ("d_min", "d_min Å", 2)),
}
TAIL = (("time_s", "time s", 1), ("attempts", "attempts", 0), ("worker", "worker", None))


def _e(v) -> str:
    return html.escape(str(v))


def _num(v, decimals):
    if v is None or isinstance(v, bool):
        return "", ""
    if decimals is None:
        return _e(v), _e(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return _e(v), _e(v)
    if not math.isfinite(f):
        return "", ""
    return (f"{f:.{decimals}f}" if decimals else f"{round(f):d}"), repr(f)


def _report_link(rec, outdir_rel=".") -> str:
    outs = rec.get("outputs") or {}
    target = outs.get("report") or outs.get("json") or outs.get("log")
    if not target or rec.get("status") == "failed" and not outs:
        return _e(rec.get("name", "?"))
    href = f"{outdir_rel}/{rec['name']}/{target}"
    return f"<a href='{_e(href)}'>{_e(rec.get('name', '?'))}</a>"


def _table(jobs, task) -> str:
    cols = TABLE[task] + TAIL
    head = "<tr><th>job</th><th>status</th>" + "".join(
        f"<th>{_e(label)}</th>" for _, label, _ in cols) + "<th>error</th></tr>"
    rows = []
    for r in jobs:
        st = r.get("status", "?")
        cls = "bad" if st == "failed" else "good" if st in ("done", "skipped") else ""
        cells = [f"<td data-v='{_e(r.get('name', ''))}'>{_report_link(r)}</td>",
                 f"<td class='{cls}'>{_e(st)}</td>"]
        for key, _, dec in cols:
            text, val = _num(r.get(key), dec)
            cells.append(f"<td class='n' data-v='{val}'>{text}</td>")
        cells.append(f"<td class='err'>{_e(r.get('error') or '')}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<div class='wide'><table class='sortable'><thead>{head}</thead><tbody>"
            f"{''.join(rows)}</tbody></table></div><p class='note'>Click a column header to sort; the job name links to "
            "its own report.</p>")


def _pairs(jobs, before, after):
    names, b, a = [], [], []
    for r in jobs:
        if r.get(after) is not None:
            names.append(r["name"])
            b.append(plots._finite(r.get(before)) if before else math.nan)
            a.append(plots._finite(r.get(after)))
    return names, b, a


def _score_plot(jobs, task):
    """Main score per job (before → after for fit)."""
    if task == "fit":
        series = [("cc_mask_before", "cc_mask_after", "CC_mask"),
                  ("r_free_before", "r_free_after", "R-free")]
    elif task == "score":
        series = [(None, "cc_mask", "CC_mask"), (None, "cc_box", "CC_box")]
    else:
        series = [(None, "r_work", "R-work"), (None, "r_free", "R-free")]
    series = [s for s in series if any(r.get(s[1]) is not None for r in jobs)]
    if not series:
        return ""
    n = max(len(_pairs(jobs, *s[:2])[0]) for s in series)
    fig, axes = plots._figure(max(2.4, 0.9 + 0.22 * n), ncols=len(series))
    for ax, (bk, ak, label) in zip(axes[0], series):
        names, b, a = _pairs(jobs, bk, ak)
        y = np.arange(len(names))[::-1]
        if bk:
            for yi, bi, ai in zip(y, b, a):
                ax.plot([bi, ai], [yi, yi], "-", color="#bbbbbb", lw=1.2)
            ax.plot(b, y, "o", color=plots.BEFORE, ms=5, label="before")
            ax.plot(a, y, "o", color=plots.AFTER, ms=5, label="after")
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25 if n < 6 else -0.08),
                      frameon=False, ncols=2)
        else:
            ax.plot(a, y, "o", color=plots.AFTER, ms=5)
        ax.set_yticks(y, names)
        ax.set_xlabel(label)
        ax.grid(True, axis="x", lw=0.4, color="#dddddd")
    return plots._svg(fig, "batch-scores")


def _time_plot(jobs):
    timed = [r for r in jobs if r.get("time_s") is not None]
    if not timed:
        return ""
    workers = sorted({str(r.get("worker")) for r in timed if r.get("status") != "skipped"})
    colours = ["#1f5fbf", "#e69500", "#2ca02c", "#c0392b", "#6a3d9a", "#8c564b"]
    fig, axes = plots._figure(max(2.2, 0.9 + 0.22 * len(timed)))
    ax = axes[0][0]
    y = np.arange(len(timed))[::-1]
    groups = [(w, colours[i % len(colours)], w if len(w) < 40 else w[:37] + "…")
              for i, w in enumerate(workers)] + [(None, "#cccccc", "earlier run (skipped)")]
    for w, colour, label in groups:
        sel = [i for i, r in enumerate(timed) if (r.get("status") == "skipped" and w is None)
               or (r.get("status") != "skipped" and str(r.get("worker")) == w)]
        if sel:
            ax.barh(y[sel], [timed[i]["time_s"] for i in sel], color=colour, label=label)
    ax.set_yticks(y, [r["name"] for r in timed])
    ax.set_xlabel("wall time per job (s)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="worker")
    ax.grid(True, axis="x", lw=0.4, color="#dddddd")
    return plots._svg(fig, "batch-times")


def batch_html(doc: dict) -> str:
    """The summary page of a batch run.

    Parameters
    ----------
    doc : dict
        What ``densrefine batch`` writes as summary.json: ``task``, ``jobs`` (one record
        per job: name, status, error, time_s, worker, attempts and the numbers of
        `densrefine.distributed.summary.COLUMNS`), and the run's ``manifest``, ``cluster``,
        ``started``, ``wall_s``.

    Returns
    -------
    str
        A complete HTML document.

    Examples
    --------
    >>> page = batch_html({"task": "score", "manifest": "m.csv", "jobs": [
    ...     {"name": "a", "status": "done", "cc_mask": 0.71, "time_s": 3.0, "worker": "w1"},
    ...     {"name": "b", "status": "failed", "error": "b.pdb: file not found"}]})
    >>> "0.710" in page and "file not found" in page and "sortable" in page
    True
    """
    task = doc.get("task", "fit")
    jobs = doc.get("jobs") or []
    counts = {}
    for r in jobs:
        counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
    cl = doc.get("cluster") or {}
    bits = [f"task <b>{_e(task)}</b>", f"{len(jobs)} jobs: " + ", ".join(
        f"{n} {_e(s)}" for s, n in sorted(counts.items()))]
    if cl:
        bits.append(_e(cl.get("description", "")))
    if doc.get("wall_s") is not None:
        bits.append(f"{doc['wall_s']:.1f} s wall")
    if doc.get("started"):
        bits.append(f"started {_e(doc['started'])}")
    name = os.path.basename(str(doc.get("manifest") or "batch"))
    parts = [f"<h1>densrefine batch: {_e(name)}</h1><p class='sub'>{' · '.join(bits)}</p>",
             "<h2>Jobs</h2>", _table(jobs, task)]
    sp = _score_plot(jobs, task)
    if sp:
        parts += ["<h2>Scores</h2>", sp]
    tp = _time_plot(jobs)
    if tp:
        note = ("<p class='note'>Wall time of each job on its worker; grey: the time of "
                "the earlier run that finished a skipped job.</p>")
        parts += ["<h2>Time per job</h2>", tp, note]
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>densrefine batch: {_e(name)}</title><style>{BATCH_CSS}</style></head>"
            f"<body><main>{''.join(parts)}</main><script>{SCRIPT}</script></body></html>\n")
