"""The batch summary: per-job numbers from each job's JSON, and OUTDIR/summary.{csv,json,html}.

`metrics` flattens what a job's command wrote (``fit``: PREFIX_stats.json; ``score`` and
``rfactor``: their --json) into the columns of `COLUMNS`; `write_summary` writes the
three summary files atomically (the HTML page: `densrefine.report.batch.batch_html`).
"""
from __future__ import annotations

import csv
import io
import json
import os

from ..io.atomic import write_text_atomic
from ..report import write_json_atomic
from ..report.batch import batch_html

COMMON = ("name", "task", "status", "error", "time_s", "worker", "attempts", "model", "data",
          "half_map_2", "resolution", "options")
FIT = ("fit_status", "n_atoms", "resolution_used", "cc_mask_before", "cc_mask_after",
       "cc_box_before", "cc_box_after", "r_work_before", "r_work_after", "r_free_before",
       "r_free_after", "fsc_average_work", "fsc_average_free", "bond_rmsd_before",
       "bond_rmsd_after", "angle_rmsd_before", "angle_rmsd_after", "clashscore_before",
       "clashscore_after", "rama_favored_pct_before", "rama_favored_pct_after",
       "rama_outlier_pct_before", "rama_outlier_pct_after", "rotamer_outlier_pct_before",
       "rotamer_outlier_pct_after", "rmsd_moved")
SCORE = ("n_atoms", "resolution_used", "cc_mask", "cc_box", "cc_volume", "cc_peaks",
         "cc_main_chain", "cc_side_chain", "rsr", "d_fsc05")
RFACTOR = ("r_work", "r_free", "k_sol", "b_sol", "d_min", "n_work", "n_free")
COLUMNS = {"fit": COMMON + FIT, "score": COMMON + SCORE, "rfactor": COMMON + RFACTOR}
"""The columns of summary.csv per task (summary.json holds every record field)."""


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _block(block: dict | None, when: str) -> dict:
    if not isinstance(block, dict):
        return {}
    v = block.get("validation") or {}
    return {f"cc_mask_{when}": block.get("cc_mask"), f"cc_box_{when}": block.get("cc_box"),
            f"bond_rmsd_{when}": _get(block, "geometry", "bond_rmsd"),
            f"angle_rmsd_{when}": _get(block, "geometry", "angle_rmsd"),
            f"clashscore_{when}": _get(v, "clashes", "clashscore"),
            f"rama_favored_pct_{when}": _get(v, "ramachandran", "favored_pct"),
            f"rama_outlier_pct_{when}": _get(v, "ramachandran", "outlier_pct"),
            f"rotamer_outlier_pct_{when}": _get(v, "rotamers", "outlier_pct")}


def metrics(task: str, folder: str, outs: dict) -> dict:
    """Summary numbers of a finished job from its JSON output (None where absent).

    Parameters
    ----------
    task : {"fit", "score", "rfactor"}
    folder : str
        The job's folder.
    outs : dict
        Output file names by role (`densrefine.distributed.jobs.outputs_of`).
    """
    path = os.path.join(folder, outs["stats" if task == "fit" else "json"])
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if task == "fit":
        out = {"fit_status": doc.get("status"), "n_atoms": _get(doc, "input", "n_atoms"),
               "resolution_used": _get(doc, "input", "resolution"),
               "rmsd_moved": doc.get("rmsd_moved")}
        out.update(_block(doc.get("before"), "before"))
        out.update(_block(doc.get("after"), "after"))
        for when in ("before", "after"):
            out[f"r_work_{when}"] = _get(doc, "xray", when, "r_work")
            out[f"r_free_{when}"] = _get(doc, "xray", when, "r_free")
        out["fsc_average_work"] = _get(doc, "half_maps", "fsc_average_work")
        out["fsc_average_free"] = _get(doc, "half_maps", "fsc_average_free")
        return out
    if task == "score":
        out = {k: doc.get(k) for k in SCORE if k in doc}
        out["resolution_used"] = doc.get("resolution")
        return out
    return {k: doc.get(k) for k in RFACTOR}


def csv_text(records: list, task: str) -> str:
    """summary.csv: one row per job, the columns of `COLUMNS` (numbers as written)."""
    buf = io.StringIO()
    cols = COLUMNS[task]
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in records:
        w.writerow(["" if r.get(c) is None else _cell(r.get(c)) for c in cols])
    return buf.getvalue()


def _cell(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def write_summary(outdir: str, doc: dict, html: bool = True) -> dict:
    """Write OUTDIR/summary.json, summary.csv (and summary.html) atomically.

    Parameters
    ----------
    outdir : str
    doc : dict
        ``task``, ``jobs`` (records in manifest order) and run facts (cluster, times).
    html : bool
        Also the HTML page (slower: plots).

    Returns
    -------
    dict
        Paths by role.
    """
    paths = {"json": os.path.join(outdir, "summary.json"),
             "csv": os.path.join(outdir, "summary.csv")}
    write_json_atomic(paths["json"], doc)
    write_text_atomic(paths["csv"], csv_text(doc["jobs"], doc["task"]))
    if html:
        paths["html"] = os.path.join(outdir, "summary.html")
        write_text_atomic(paths["html"], batch_html(doc))
    return paths
