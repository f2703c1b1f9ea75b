"""The stats dict of ``fit`` (``<prefix>_stats.json``) and the small HTML report.

Stats layout (a stable contract; keys only get added)::

    program, version, versions, device, status ("running" | "finished" | "stopped: ...")
    input: model, map, resolution, selection, n_atoms, n_moving, unknown_residues
        (names restrained to their input geometry), resolution_estimate (when -d is absent)
    config: the resolved FitConfig
    before / after: every `densrefine.scoring.score` field (cc_mask, cc_box, cc_volume,
        cc_peaks, rsr, fsc, d_fsc05, residues, ...) + "geometry" (bond_rmsd, angle_rmsd,
        outliers, clashes: whatever `densrefine.restraints.geometry_stats` gives)
    cycles: one record per optimisation call (stage, cycle, blur, weight, target,
        cc_mask_term, bond_rmsd, angle_rmsd, time_s)
    timings: setup_s, total_s;  rmsd_moved: RMSD (Å) between start and final positions
"""
from __future__ import annotations

import html
import logging

import numpy as np

log = logging.getLogger("densrefine")


def _score_block(model, emap, d, dev, geom, table="electron", density="iam"):
    from ..scoring import score

    rep = score(model, emap, d, device=dev, table=table, density=density).to_dict()
    rep["geometry"] = geom.stats(np.asarray(model.atoms.xyz, np.float64))
    return rep


def start_stats(model, emap, d, cfg, select, moving, dev, geom) -> dict:
    """Stats dict with the "before" block, before any refinement."""
    from .. import __version__
    from ..cli._common import versions_str
    from ..device import describe_device

    before = _score_block(model, emap, d, dev, geom, cfg.map.table, cfg.map.density)
    g = before["geometry"]
    log.info("Before: CC_mask %.4f, CC_box %.4f, bond RMSD %.4f Å, angle RMSD %.3f°",
             before["cc_mask"], before["cc_box"], g.get("bond_rmsd", float("nan")),
             g.get("angle_rmsd", float("nan")))
    return {"program": "densrefine fit", "version": __version__, "versions": versions_str(),
            "device": describe_device(dev), "status": "running",
            "input": {"model": model.path, "map": emap.path, "resolution": d,
                      "selection": select if isinstance(select, str) else None,
                      "n_atoms": len(model), "n_moving": int(moving.sum()),
                      "unknown_residues": list(getattr(geom.restraints,
                                                       "unknown_residues", ()) or ())},
            "config": cfg.to_dict(), "before": before, "cycles": [], "after": None,
            "timings": {}}


def finish_stats(stats, start, new, emap, d, dev, geom, elapsed) -> None:
    """Fill "after", the timings and the start→final RMSD ("rmsd_moved", Å)."""
    mc = (stats.get("config") or {}).get("map", {})
    after = _score_block(new, emap, d, dev, geom, mc.get("table", "electron"),
                         mc.get("density", "iam"))
    stats["after"] = after
    stats["timings"]["total_s"] = elapsed
    dx = new.atoms.xyz - start.atoms.xyz
    stats["rmsd_moved"] = float(np.sqrt((dx ** 2).sum(1).mean()))
    g = after["geometry"]
    log.info("After:  CC_mask %.4f, CC_box %.4f, bond RMSD %.4f Å, angle RMSD %.3f° "
             "(%.1f s)", after["cc_mask"], after["cc_box"], g.get("bond_rmsd", float("nan")),
             g.get("angle_rmsd", float("nan")), elapsed)


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
