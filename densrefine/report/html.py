"""The HTML report of ``fit`` (``<prefix>_report.html``) from its stats dict.

One self-contained page (no script, no network: it works offline and from an e-mail
attachment), readable at 1280 px wide:

1. title (the model's file name), inputs and any warnings;
2. validation table: CC_mask, CC_box, CC_volume, CC_peaks, CC main/side chain,
   real-space R, d at FSC = 0.5 (Å), bond RMSD (Å), angle RMSD (°), clashscore, for the
   input model, the refined model, the change and, where the stats carry them, the
   deposited values (``stats["deposited"]``); R-work/R-free for X-ray data, FSC averages
   for half maps;
3. per-residue CC before/after, one panel per chain with residue numbers, a
   helix/strand strip when the residue records carry ``ss``, the worst residues,
   ligands and a water summary;
4. map–model FSC with the 0.5 and 0.143 thresholds;
5. CC and geometry after every optimisation call, at the fixed reference
   ``cc_mask_ref`` when the cycle records carry it (else the map term, labelled as
   such), and the per-cycle table of the log.

The figures are matplotlib SVG (`densrefine.report.plots`). The stats layout is
documented in `densrefine.refine.output`; every field beyond "before" is optional here,
so reports of older stats files still render.
"""
from __future__ import annotations

import html
import math
import os

from . import plots

WATERS = frozenset({"HOH", "WAT", "DOD", "H2O", "TIP", "TIP3", "SOL"})
POLYMER = frozenset(
    "ALA ARG ASN ASP CYS GLN GLU GLY HIS ILE LEU LYS MET PHE PRO SER THR TRP TYR VAL "
    "MSE SEC PYL UNK A C G U I DA DC DG DT DI N DN".split())

# (key, label, unit, decimals, better: +1 higher, -1 lower, 0 neither)
MAP_ROWS = (
    ("cc_mask", "CC_mask", "", 3, 1),
    ("cc_box", "CC_box", "", 3, 1),
    ("cc_volume", "CC_volume", "", 3, 1),
    ("cc_peaks", "CC_peaks", "", 3, 1),
    ("cc_main_chain", "CC main chain", "", 3, 1),
    ("cc_side_chain", "CC side chain", "", 3, 1),
    ("rsr", "real-space R", "", 3, -1),
    ("d_fsc05", "d at FSC = 0.5", "Å", 2, -1),
)
GEOMETRY_ROWS = (
    ("bond_rmsd", "bond RMSD", "Å", 3, -1),
    ("angle_rmsd", "angle RMSD", "°", 2, -1),
    ("clashscore", "overlaps ≥ 0.4 Å without H (Refmac distances)", "per 1000 atoms", 1, -1),
)
VALIDATION_ROWS = (   # (block, key, label, unit, decimals, better)
    ("ramachandran", "favored_pct", "Ramachandran favoured (Top8000)", "%", 2, 1),
    ("ramachandran", "outlier_pct", "Ramachandran outliers", "%", 2, -1),
    ("rotamers", "outlier_pct", "rotamer outliers", "%", 2, -1),
    ("clashes", "clashscore", "clashscore", "clashes per 1000 atoms", 1, -1),
)
"""The clashscore row is MolProbity's definition (H placed, Probe radii: what a PDB header
or a validation report quotes, and what ``stats["deposited"]["clashscore"]`` holds)."""
SS_WORDS = {"H": "helix", "E": "strand", "C": "other"}
XRAY_ROWS = (("r_work", "R-work", "", 4, -1), ("r_free", "R-free", "", 4, -1))

CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;font-size:15px;color:#222;margin:0;
 background:#fff}
main{max-width:1180px;margin:0 auto;padding:12px 20px 40px}
h1{font-size:24px;margin:8px 0 2px}h2{font-size:19px;margin:28px 0 6px;
 border-bottom:1px solid #ccc;padding-bottom:3px}
.sub{color:#555;margin:0 0 10px}
table{border-collapse:collapse;margin:6px 0 10px}
th,td{padding:3px 10px;border-bottom:1px solid #e2e2e2;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums;font-family:"DejaVu Sans Mono",
 monospace}
th{background:#f4f4f4}.good{color:#17663a}.bad{color:#a61b1b}
.warn{background:#fff4e0;border-left:4px solid #e69500;padding:6px 10px;margin:6px 0}
.note{color:#555;font-size:13.5px;margin:2px 0 8px}
svg.plot{width:100%;height:auto;display:block}
nav a{margin-right:14px}details{margin:8px 0}code{font-size:13px}
"""


def report_html(stats: dict) -> str:
    """The report page for a ``fit`` stats dict (see the module docstring).

    Parameters
    ----------
    stats : dict
        What ``fit`` returns as ``RefineResult.stats`` (or reads back from
        ``<prefix>_stats.json``); needs "input" and "before"; "after" may be None while
        a run is going (the "before" values are shown in both columns then).

    Returns
    -------
    str
        A complete HTML document (UTF-8).

    Examples
    --------
    >>> s = {"input": {"model": "/data/m.pdb", "map": "/data/x.mrc", "resolution": 3.0},
    ...      "status": "finished", "before": {"cc_mask": 0.7, "residues": [], "fsc": [],
    ...      "geometry": {"bond_rmsd": 0.02}}, "after": None, "cycles": []}
    >>> page = report_html(s)
    >>> "<title>densrefine fit: m.pdb</title>" in page and "0.700" in page
    True
    """
    inp = stats.get("input") or {}
    before = stats["before"]
    after = stats.get("after") or before
    name = os.path.basename(str(inp.get("model") or "model"))
    d = inp.get("resolution")
    parts = [_header(stats, name), _warnings(stats),
             "<h2 id='scores'>Validation</h2>", _validation(stats, before, after),
             "<h2 id='residues'>Per-residue CC</h2>", _residues(before, after, d),
             "<h2 id='fsc'>Map–model FSC</h2>", _fsc(stats, before, after, d),
             "<h2 id='cycles'>CC and geometry per optimisation call</h2>",
             _cycles(stats.get("cycles") or [], d), _run_details(stats)]
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>densrefine fit: {_e(name)}</title><style>{CSS}</style></head>"
            f"<body><main>{''.join(parts)}</main></body></html>\n")


def _e(v) -> str:
    return html.escape(str(v))


def _num(v, decimals: int) -> str:
    """A value with fixed decimals; n/a for None or non-finite numbers."""
    if v is None or isinstance(v, bool):
        return "n/a"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return _e(v)
    if not math.isfinite(f):
        return "n/a"
    return f"{f:.{decimals}f}" if decimals else f"{round(f):d}"


def _signed(v, decimals: int) -> str:
    """A change with its sign; no sign (and no "-0.00") when it rounds to zero."""
    text = _num(v, decimals)
    if text == "n/a" or float(text) == 0:
        return text.lstrip("-")
    return ("+" if float(text) > 0 else "") + text


def _header(stats, name) -> str:
    inp = stats.get("input") or {}
    d = inp.get("resolution")
    mapname = os.path.basename(str(inp.get("map") or "?"))
    sel = inp.get("selection")
    moving = inp.get("n_moving")
    bits = [f"into <b>{_e(mapname)}</b>" + (f" at d = {float(d):g} Å" if d else ""),
            f"status: {_e(stats.get('status', '?'))}"]
    if inp.get("n_atoms") is not None:
        bits.append(f"{inp['n_atoms']} atoms" + (
            f", {moving} refined" + (f" (selection {_e(sel)})" if sel else "")
            if moving is not None else ""))
    t = (stats.get("timings") or {}).get("total_s")
    if t:
        bits.append(f"{t:.1f} s")
    nav = " ".join(f"<a href='#{k}'>{v}</a>" for k, v in (
        ("scores", "validation"), ("residues", "per residue"), ("fsc", "FSC"),
        ("cycles", "per cycle"), ("run", "run details")))
    return (f"<h1>densrefine fit: {_e(name)}</h1><p class='sub'>{' · '.join(bits)}</p>"
            f"<nav>{nav}</nav>")


def _warnings(stats) -> str:
    inp = stats.get("input") or {}
    out = []
    if stats.get("status") not in (None, "finished"):
        out.append(f"Run status: {_e(stats['status'])}; the numbers below may be partial.")
    unk = inp.get("unknown_residues") or []
    if unk:
        out.append(f"Residue(s) {_e(', '.join(unk))} have no restraint dictionary and were "
                   "restrained to their input geometry.")
    est = inp.get("resolution_estimate")
    if est:
        out.append(f"Resolution not given: estimated d_model = {est['d_model']:.3g} Å "
                   f"(masked model–map CC {est['cc_max']:.3f}).")
    for w in stats.get("warnings") or []:
        out.append(_e(w.get("message", w) if isinstance(w, dict) else w))
    for w in (stats.get("xray") or {}).get("overfitting_warnings") or []:
        out.append(_e(w))
    return "".join(f"<div class='warn'>{w}</div>" for w in out)


def _row(label, unit, b, a, dep, decimals, better, show_dep) -> str:
    cells = [f"<td>{_e(label)}</td><td>{_e(unit)}</td>",
             f"<td class='n'>{_num(b, decimals)}</td><td class='n'>{_num(a, decimals)}</td>"]
    try:
        delta = float(a) - float(b)
    except (TypeError, ValueError):
        delta = math.nan
    cls = ""
    if math.isfinite(delta) and better and abs(delta) >= 0.5 * 10 ** -max(decimals, 0):
        cls = " good" if delta * better > 0 else " bad"
    cells.append(f"<td class='n{cls}'>{_signed(delta, decimals)}</td>")
    if show_dep:
        cells.append(f"<td class='n'>{_num(dep, decimals) if dep is not None else ''}</td>")
    return "<tr>" + "".join(cells) + "</tr>"


def _validation(stats, before, after) -> str:
    dep = stats.get("deposited") or {}
    show_dep = bool({k for k in dep if k != "source"})
    gb, ga = before.get("geometry") or {}, after.get("geometry") or {}
    rows = [_row(lab, unit, before.get(k), after.get(k), dep.get(k), dec, better, show_dep)
            for k, lab, unit, dec, better in MAP_ROWS if k in before or k in after]
    rows += [_row(lab, unit, gb.get(k), ga.get(k), dep.get(k), dec, better, show_dep)
             for k, lab, unit, dec, better in GEOMETRY_ROWS if k in gb or k in ga]
    vb, va = before.get("validation") or {}, after.get("validation") or {}
    for blk, k, lab, unit, dec, better in VALIDATION_ROWS:
        b, a = (vb.get(blk) or {}).get(k), (va.get(blk) or {}).get(k)
        if b is not None or a is not None:
            dkey = "clashscore" if blk == "clashes" else f"{blk}_{k}"
            rows.append(_row(lab, unit, b, a, dep.get(dkey), dec, better, show_dep))
    xray = stats.get("xray") or {}
    if xray:
        xb, xa = xray.get("before") or {}, xray.get("after") or {}
        rows += [_row(lab, unit, xb.get(k), xa.get(k), dep.get(k), dec, better, show_dep)
                 for k, lab, unit, dec, better in XRAY_ROWS]
    half = stats.get("half_maps") or {}
    for k, lab in (("fsc_average_work", "FSC average, work half map"),
                   ("fsc_average_free", "FSC average, free half map")):
        if half.get(k) is not None:
            rows.append(_row(lab, "", None, half[k], None, 3, 0, show_dep))
    src = dep.get("source", "deposited") if show_dep else ""
    head = ("<tr><th>score</th><th>unit</th><th>input model</th><th>refined</th>"
            "<th>change</th>" + (f"<th>{_e(src)}</th>" if show_dep else "") + "</tr>")
    moved = stats.get("rmsd_moved")
    note = (f"<p class='note'>Model-map scores at d = {float(stats['input']['resolution']):g}"
            " Å as phenix.map_model_cc defines them (Afonine et al. 2018). Change: "
            "<span class='good'>green</span> better, <span class='bad'>red</span> worse."
            + (f" Atoms moved by {moved:.3f} Å RMSD." if moved is not None else "") + "</p>")
    return f"<table>{head}{''.join(rows)}</table>{note}"


def _chains(before, after):
    """Residues split by kind; polymer residues grouped by chain in model order."""
    after_by = {(r.get("chain"), r.get("res_seq"), r.get("icode") or ""): r
                for r in after.get("residues") or []}
    chains, ligands, waters = {}, [], []
    for r in before.get("residues") or []:
        key = (r.get("chain"), r.get("res_seq"), r.get("icode") or "")
        a = after_by.get(key, r)
        name = str(r.get("res_name", "")).upper()
        rec = (r, a)
        if name in WATERS:
            waters.append(rec)
        elif name in POLYMER or r.get("cc_main") is not None:
            chains.setdefault(r.get("chain"), []).append(rec)
        else:
            ligands.append(rec)
    return chains, ligands, waters


def _res_label(r) -> str:
    return f"{r.get('res_name', '')} {r.get('res_seq', '')}{r.get('icode') or ''}"


def _residues(before, after, d) -> str:
    chains, ligands, waters = _chains(before, after)
    if not chains:
        return "<p>(no polymer residues)</p>"
    data = []
    for ch, recs in chains.items():
        x = [plots.residue_x(int(r["res_seq"]), r.get("icode") or "") for r, _ in recs]
        entry = {"chain": ch, "x": x, "before": [r.get("cc") for r, _ in recs],
                 "after": [a.get("cc") for _, a in recs],
                 "first": _res_label(recs[0][0]).split()[-1],
                 "last": _res_label(recs[-1][0]).split()[-1]}
        if any(a.get("ss") or r.get("ss") for r, a in recs):
            entry["ss"] = [str(a.get("ss") or r.get("ss") or "C") for r, a in recs]
        data.append(entry)
    ss_note = ("helix/strand strip: Cα-trace assignment of the refined model"
               if any("ss" in c for c in data) else
               "secondary structure is not in these stats (no per-residue <code>ss</code>"
               " field), so no helix/strand strip is drawn")
    out = [plots.per_residue(data, d),
           f"<p class='note'>One panel per chain; x = residue number (lines break at gaps "
           f"in the numbering); {ss_note}. Waters and ligands are listed below, not "
           "plotted.</p>", _worst(chains)]
    if ligands:
        rows = "".join(f"<tr><td>{_e(r['chain'])}</td><td>{_e(_res_label(r))}</td>"
                       f"<td class='n'>{_num(r.get('cc'), 3)}</td>"
                       f"<td class='n'>{_num(a.get('cc'), 3)}</td></tr>" for r, a in ligands)
        out.append("<h3>Ligands</h3><table><tr><th>chain</th><th>residue</th>"
                   f"<th>CC input</th><th>CC refined</th></tr>{rows}</table>")
    if waters:
        ccs = sorted(float(a["cc"]) for _, a in waters if a.get("cc") is not None)
        med = ccs[len(ccs) // 2] if ccs else None
        out.append(f"<p class='note'>{len(waters)} waters (not plotted): median CC after "
                   f"refinement {_num(med, 3)}.</p>")
    return "".join(out)


def _worst(chains, n: int = 10) -> str:
    recs = [(r, a) for rs in chains.values() for r, a in rs if a.get("cc") is not None]
    recs.sort(key=lambda ra: float(ra[1]["cc"]))
    has_ss = any(a.get("ss") or r.get("ss") for r, a in recs)
    rows = []
    for r, a in recs[:n]:
        delta = (float(a["cc"]) - float(r["cc"])) if r.get("cc") is not None else None
        ss = SS_WORDS.get(str(a.get("ss") or r.get("ss")), "")
        rows.append(f"<tr><td>{_e(r['chain'])}</td><td>{_e(_res_label(r))}</td>"
                    + (f"<td>{ss}</td>" if has_ss else "")
                    + f"<td class='n'>{_num(r.get('cc'), 3)}</td>"
                    f"<td class='n'>{_num(a['cc'], 3)}</td>"
                    f"<td class='n'>{_signed(delta, 3)}</td></tr>")
    return (f"<h3>Lowest CC after refinement ({min(n, len(recs))} residues, waters "
            "excluded)</h3><table><tr><th>chain</th><th>residue</th>"
            + ("<th>secondary structure</th>" if has_ss else "")
            + f"<th>CC input</th><th>CC refined</th><th>change</th></tr>{''.join(rows)}</table>")


def _fsc(stats, before, after, d) -> str:
    curves = [("input model", before.get("fsc") or [])]
    if stats.get("after"):
        curves.append(("refined", after.get("fsc") or []))
    d05 = {"input model": before.get("d_fsc05"), "refined": after.get("d_fsc05")}
    half = stats.get("half_maps") or {}
    if half.get("fsc_free"):
        curves.append(("refined vs free half map", half["fsc_free"]))
        d05["refined vs free half map"] = half.get("d_fsc05_free")
    if not any(c for _, c in curves):
        return "<p>(no FSC in these stats)</p>"
    return (plots.fsc(curves, d, d05) +
            "<p class='note'>Dots: where each curve crosses 0.5 (d at FSC = 0.5 in the "
            "table). Unmasked FSC between the map and the Fourier-truncated model map.</p>")


def _cycles(cycles, d) -> str:
    if not cycles:
        return "<p>(no optimisation calls recorded)</p>"
    svg, note = plots.per_cycle(cycles, d)
    has_ref = any(c.get("cc_mask_ref") is not None for c in cycles)
    extra = [k for k in ("r_work", "r_free", "cc_work", "cc_free")
             if any(c.get(k) is not None for c in cycles)]
    head = ("<tr><th>#</th><th>stage</th><th>blur (Å²)</th><th>weight</th>"
            + ("<th>CC_mask ref</th>" if has_ref else "") + "<th>map term CC</th>"
            + "".join(f"<th>{k}</th>" for k in extra)
            + "<th>bond RMSD (Å)</th><th>angle RMSD (°)</th><th>time (s)</th></tr>")
    rows = []
    for i, c in enumerate(cycles, 1):
        w = c.get("weight")
        cells = [str(i), _e(c.get("stage", "")), _num(c.get("blur"), 1),
                 f"{float(w):.3g}" if w is not None else "n/a"]
        if has_ref:
            cells.append(_num(c.get("cc_mask_ref"), 4))
        cells.append(_num(c.get("cc_mask_term"), 4))
        cells += [_num(c.get(k), 4) for k in extra]
        cells += [_num(c.get("bond_rmsd"), 4), _num(c.get("angle_rmsd"), 3),
                  _num(c.get("time_s"), 2)]
        rows.append("<tr>" + "".join(
            f"<td{'' if j == 1 else ' class=n'}>{v}</td>" for j, v in enumerate(cells))
            + "</tr>")
    return (f"{svg}<p class='note'>{note}</p><details><summary>Per-call table (as in the "
            f"log)</summary><table>{head}{''.join(rows)}</table></details>")


def _run_details(stats) -> str:
    inp = stats.get("input") or {}
    rows = [("model", inp.get("model")), ("map / data", inp.get("map")),
            ("resolution", f"{float(inp['resolution']):g} Å" if inp.get("resolution")
             else None),
            ("selection", inp.get("selection")), ("program", " ".join(
                str(x) for x in (stats.get("program"), stats.get("version")) if x)),
            ("device", stats.get("device")), ("versions", stats.get("versions"))]
    for k, v in sorted((stats.get("outputs") or {}).items()):
        rows.append((f"output: {k}", v))
    body = "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(v)}</code></td></tr>"
                   for k, v in rows if v not in (None, ""))
    return f"<h2 id='run'>Run details</h2><table>{body}</table>"
