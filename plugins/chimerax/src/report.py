"""Read densrefine's stats JSON and turn it into log HTML and per-residue values.

Host-neutral. The stats layout is densrefine's contract (``densrefine/refine/output.py``):
``before``/``after`` blocks with ``cc_mask``, ``cc_box``, ``rsr``, ``residues`` (chain,
res_seq, icode, res_name, cc) and ``geometry`` (bond_rmsd Å, angle_rmsd degrees);
``densrefine score --json`` writes one such block at the top level.
"""
from __future__ import annotations

import html
import json

# (key, label, where): where "" = the block itself, "geometry" = its geometry dict
ROWS = [("cc_mask", "CC<sub>mask</sub>", ""), ("cc_box", "CC<sub>box</sub>", ""),
        ("cc_main_chain", "CC main chain", ""), ("cc_side_chain", "CC side chain", ""),
        ("rsr", "real-space R", ""), ("bond_rmsd", "bond RMSD (Å)", "geometry"),
        ("angle_rmsd", "angle RMSD (°)", "geometry")]


def read_stats(path) -> dict:
    """The stats dict of ``densrefine fit`` / ``densrefine score --json``."""
    with open(path) as fh:
        return json.load(fh)


def value(block, key, where=""):
    """A score from a block, or None when absent."""
    if not block:
        return None
    src = block.get(where) if where else block
    return (src or {}).get(key)


def residue_cc(block) -> dict:
    """Per-residue CC from a score block.

    Returns
    -------
    dict
        ``(chain, res_seq, icode) -> cc`` (float, or None where densrefine could not
        compute it, e.g. a residue outside the map box).
    """
    out = {}
    for r in (block or {}).get("residues") or []:
        out[(str(r["chain"]), int(r["res_seq"]), str(r.get("icode") or "").strip())] = r.get("cc")
    return out


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))


def scores_html(title, before, after=None, notes=()) -> str:
    """Small HTML table of scores, before/after (fit) or one column (score).

    Parameters
    ----------
    title : str
        Caption, plain text.
    before : dict
        Score block (``before`` of fit, or the whole score JSON).
    after : dict or None
        ``after`` block of fit; None for a one-column table.
    notes : iterable of str
        Plain-text lines put under the table.
    """
    head = ("<th>score</th><th>before</th><th>after</th>" if after
            else "<th>score</th><th>value</th>")
    rows = []
    for key, label, where in ROWS:
        b, a = value(before, key, where), value(after, key, where)
        if b is None and a is None:
            continue
        cells = f"<td>{_fmt(b)}</td>" + (f"<td>{_fmt(a)}</td>" if after else "")
        rows.append(f"<tr><td>{label}</td>{cells}</tr>")
    extra = "".join(f"<br>{html.escape(n)}" for n in notes)
    return (f"<div class='densrefine'><b>{html.escape(title)}</b>"
            "<table border='1' cellpadding='3' style='border-collapse:collapse'>"
            f"<tr>{head}</tr>{''.join(rows)}</table>{extra}</div>")


def worst_residues(cc_by_residue, n=5) -> list:
    """The ``n`` residues with the lowest CC as ``[(key, cc), ...]`` (None values skipped)."""
    vals = [(k, v) for k, v in cc_by_residue.items() if v is not None]
    return sorted(vals, key=lambda kv: kv[1])[:n]
