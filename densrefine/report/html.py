"""The HTML report of ``fit`` (``<prefix>_report.html``) from its stats dict.

Self-contained (no scripts, no network): a scores table, per-residue CC, the map–model
FSC and the map term per cycle. The stats layout is documented in
`densrefine.refine.output`.
"""
from __future__ import annotations

import html

import numpy as np


def _svg_lines(series, width=520, height=200, xlabel="", ylabel="") -> str:
    """Inline SVG line plot; ``series`` is a list of (label, colour, xs, ys)."""
    pts = [(x, y) for _, _, xs, ys in series for x, y in zip(xs, ys)
           if x is not None and y is not None and np.isfinite(y)]
    if not pts:
        return "<p>(no data)</p>"
    xs, ys = np.array(pts, float).T
    x0, x1 = xs.min(), xs.max() if xs.max() > xs.min() else xs.min() + 1
    y0, y1 = ys.min(), ys.max() if ys.max() > ys.min() else ys.min() + 1
    pad = 40

    def sx(x):
        return pad + (x - x0) / (x1 - x0) * (width - 2 * pad)

    def sy(y):
        return height - pad + (y - y0) / (y1 - y0) * (2 * pad - height)

    out = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
           f'<rect x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{height - 2 * pad}" '
           'fill="none" stroke="#999"/>',
           f'<text x="{width / 2}" y="{height - 5}" font-size="11" text-anchor="middle">'
           f'{html.escape(xlabel)}</text>',
           f'<text x="5" y="{pad - 8}" font-size="11">{html.escape(ylabel)} '
           f'[{y0:.3g}, {y1:.3g}]</text>']
    for i, (label, colour, sxs, sys_) in enumerate(series):
        p = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(sxs, sys_)
                     if x is not None and y is not None and np.isfinite(y))
        out.append(f'<polyline points="{p}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        out.append(f'<text x="{width - pad - 120}" y="{pad + 14 + 14 * i}" font-size="11" '
                   f'fill="{colour}">{html.escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def report_html(stats: dict) -> str:
    """A small self-contained HTML report: scores, per-residue CC, FSC, target per cycle."""
    b, a = stats["before"], stats.get("after") or stats["before"]
    rows = "".join(
        f"<tr><td>{k}</td><td>{_fmt(b.get(k))}</td><td>{_fmt(a.get(k))}</td></tr>"
        for k in ("cc_mask", "cc_box", "cc_volume", "cc_peaks", "rsr", "d_fsc05"))
    for k in ("bond_rmsd", "angle_rmsd", "clash_count", "clashscore"):
        if k in b["geometry"] or k in a["geometry"]:
            rows += (f"<tr><td>{k}</td><td>{_fmt(b['geometry'].get(k))}</td>"
                     f"<td>{_fmt(a['geometry'].get(k))}</td></tr>")
    res = [(i, r.get("cc"), s.get("cc")) for i, (r, s) in enumerate(zip(b["residues"],
                                                                        a["residues"]))]
    per_res = _svg_lines([("before", "#c33", [r[0] for r in res], [r[1] for r in res]),
                          ("after", "#36c", [r[0] for r in res], [r[2] for r in res])],
                         xlabel="residue (model order)", ylabel="CC")
    fsc = _svg_lines([(n, c, [1.0 / max(p["d"], 1e-6) for p in blk["fsc"]],
                       [p["fsc"] for p in blk["fsc"]])
                      for n, c, blk in (("before", "#c33", b), ("after", "#36c", a))],
                     xlabel="1/d (Å⁻¹)", ylabel="FSC")
    cyc = stats.get("cycles", [])
    tgt = _svg_lines([("CC (map term)", "#393", list(range(len(cyc))),
                       [c.get("cc_mask_term") for c in cyc])], xlabel="cycle", ylabel="CC")
    title = f"densrefine fit: {html.escape(str(stats['input'].get('model')))}"
    unk = stats["input"].get("unknown_residues") or []
    warn = (f"<p style='color:#a00'>Warning: residue(s) {html.escape(', '.join(unk))} have no "
            "restraint dictionary and were restrained to their input geometry</p>" if unk else "")
    est = stats["input"].get("resolution_estimate")
    if est:
        warn += (f"<p>Resolution not given: estimated d_model = {est['d_model']:.3g} Å "
                 f"(masked model-map CC {est['cc_max']:.3f})</p>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body style='font-family:sans-serif'><h2>{title}</h2>"
            f"<p>map {html.escape(str(stats['input'].get('map')))}, d = "
            f"{stats['input']['resolution']:g} Å, status: {html.escape(stats['status'])}</p>{warn}"
            f"<table border='1' cellpadding='3'><tr><th>score</th><th>before</th>"
            f"<th>after</th></tr>{rows}</table><h3>Per-residue CC</h3>{per_res}"
            f"<h3>Map–model FSC</h3>{fsc}<h3>Map term per cycle</h3>{tgt}</body></html>\n")


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape(str(v))
