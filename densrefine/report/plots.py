"""The figures of the ``fit`` report, drawn with matplotlib and returned as inline SVG.

Each function takes plain data from the stats dict (`densrefine.refine.output`) and
returns an ``<svg>`` string with real ``<text>`` elements (``svg.fonttype: none``), so
tick labels and axis labels stay text in the page (searchable, and testable in a
browser). Figures are 11 in wide at 10 pt text: they fill a 1280 px window without
scaling the text below about 12 px. Legends sit outside the axes, never over a curve.

matplotlib is imported inside the functions (the package must import without it for
``densrefine info`` and the plugins) and only through its object API (`Figure`): no
pyplot state, no backend switch, and rcParams are changed only inside a context.
"""
from __future__ import annotations

import io
import math
import re

import numpy as np

WIDTH_IN = 11.0
BEFORE, AFTER, REF = "#8c8c8c", "#1f5fbf", "#c0392b"
SS_COLOURS = {"H": "#d62728", "E": "#e6b800"}
SS_NAMES = {"H": "helix", "E": "strand"}
_RC = {"svg.fonttype": "none", "svg.hashsalt": "densrefine", "font.size": 10,
       "axes.titlesize": 10, "axes.labelsize": 10, "legend.fontsize": 9,
       "xtick.labelsize": 9, "ytick.labelsize": 9, "font.family": "DejaVu Sans"}


def _svg(fig, name: str) -> str:
    """The figure as an inline ``<svg>`` that scales to its container's width.

    Every id in it gets the prefix ``name-``: several SVGs share one HTML document,
    whose ids must be unique (matplotlib numbers ``axes_1``, ``legend_1`` … per figure).
    """
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r'id="([^"]+)"', rf'id="{name}-\1"', text)
    text = re.sub(r'(href="#|url\(#)', rf'\1{name}-', text)
    # fixed pt size -> responsive: keep the viewBox, let CSS set the width
    text = re.sub(r'<svg([^>]*?) width="[\d.]+pt" height="[\d.]+pt"',
                  rf'<svg\1 class="plot" id="{name}" preserveAspectRatio="xMinYMin meet"', text,
                  count=1)
    return text


def _figure(height_in: float, nrows: int = 1, ncols: int = 1, **kw):
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(WIDTH_IN, height_in), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _finite(v) -> float:
    return float(v) if v is not None and math.isfinite(float(v)) else math.nan


def residue_x(res_seq: int, icode: str) -> float:
    """Plot position of a residue: its number, insertion codes just after it (52, 52A …)."""
    return res_seq + (0.0 if not icode else 0.1 * (1 + (ord(icode.upper()[0]) - 65) % 9))


def _gap_broken(xs, ys):
    """Insert NaN where residue numbers jump by more than one, so lines break at gaps."""
    ox, oy = [], []
    for i, (x, y) in enumerate(zip(xs, ys)):
        if i and x - xs[i - 1] > 1.5:
            ox.append(math.nan)
            oy.append(math.nan)
        ox.append(x)
        oy.append(y)
    return ox, oy


def _integer_ticks(axis):
    """Residue numbers and call numbers: integer major ticks, minor ticks between."""
    from matplotlib.ticker import AutoMinorLocator, MaxNLocator

    axis.set_major_locator(MaxNLocator(nbins=12, integer=True, steps=[1, 2, 5, 10]))
    axis.set_minor_locator(AutoMinorLocator())


def _ss_strip(ax, xs, ss):
    """Helix / strand bands on a thin axis under a per-residue panel."""
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    for spine in ("top", "right", "left"):
        ax.spines[spine].set_visible(False)
    i = 0
    while i < len(ss):
        j = i
        while j + 1 < len(ss) and ss[j + 1] == ss[i] and xs[j + 1] - xs[j] <= 1.5:
            j += 1
        if ss[i] in SS_COLOURS:
            ax.axvspan(xs[i] - 0.5, xs[j] + 0.5, 0.15, 0.85, color=SS_COLOURS[ss[i]], lw=0)
        i = j + 1


def per_residue(chains: list[dict], resolution: float | None = None) -> str:
    """Per-residue CC before and after, one panel per chain, residue numbers on x.

    Parameters
    ----------
    chains : list of dict
        One dict per chain: ``chain`` (str), ``x`` (residue positions, `residue_x`),
        ``before`` and ``after`` (CC per residue, None where not computed) and
        optionally ``ss`` ("H", "E" or "C" per residue; a helix/strand strip is drawn).
    resolution : float, optional
        Map resolution (Å), only for the y label.

    Returns
    -------
    str
        An ``<svg>`` element.
    """
    has_ss = any(c.get("ss") for c in chains)
    per = 1.55 + (0.25 if has_ss else 0.0)
    ratios = []
    for _ in chains:
        ratios += [0.14, 1.0] if has_ss else [1.0]
    fig, axes = _figure(0.5 + per * len(chains), nrows=len(ratios), ncols=1,
                        gridspec_kw={"height_ratios": ratios})
    axes = axes[:, 0]
    ylo = min([_finite(v) for c in chains for v in c["before"] + c["after"]
               if not math.isnan(_finite(v))] or [0.0])
    ylo = max(-1.0, math.floor(ylo * 10) / 10) if ylo < 0 else \
        math.floor(min(ylo, 0.5) * 10) / 10
    step = 2 if has_ss else 1
    for k, c in enumerate(chains):
        ax = axes[k * step + step - 1]
        x = list(c["x"])
        for key, colour, label, lw in (("before", BEFORE, "input model", 1.0),
                                       ("after", AFTER, "refined", 1.4)):
            xs, ys = _gap_broken(x, [_finite(v) for v in c[key]])
            ax.plot(xs, ys, color=colour, lw=lw, label=label, marker="." if len(x) < 60
                    else None, ms=3)
        ax.set_ylim(ylo, 1.0)
        ax.set_xlim(min(x) - 0.5, max(x) + 0.5)
        ax.grid(True, axis="y", lw=0.4, color="#dddddd")
        ax.set_ylabel("CC")
        _integer_ticks(ax.xaxis)
        title = (f"chain {c['chain']}: residues {c.get('first', '')}–{c.get('last', '')} "
                 f"({len(x)} residues)")
        if k == 0:
            ax.legend(loc="lower left", bbox_to_anchor=(1.005, 0.0), frameon=False)
        if not has_ss:
            ax.set_title(title, loc="left")
            continue
        sax = axes[k * step]
        sax.sharex(ax)
        _ss_strip(sax, x, c.get("ss") or ["C"] * len(x))
        sax.tick_params(which="both", labelbottom=False, bottom=False)
        sax.spines["bottom"].set_visible(False)
        sax.set_title(title, loc="left")
        if k == 0:
            from matplotlib.patches import Patch

            sax.legend(handles=[Patch(color=SS_COLOURS[s], label=SS_NAMES[s])
                                for s in ("H", "E")], loc="center left",
                       bbox_to_anchor=(1.005, 0.5), frameon=False, ncols=2)
    axes[-1].set_xlabel(
        "residue number" + (f"  (CC of the model map at {resolution:g} Å, per residue)"
                            if resolution else ""))
    return _svg(fig, "residue-cc")


def fsc(curves: list[tuple[str, list[dict]]], d_map: float | None = None,
        d_fsc05: dict | None = None) -> str:
    """Map–model FSC against 1/d, with the 0.5 and 0.143 thresholds and d on a top axis.

    Parameters
    ----------
    curves : list of (str, list of dict)
        (label, shells) pairs; each shell has ``d`` (Å, shell centre) and ``fsc``.
    d_map : float, optional
        The resolution the fit used (Å), marked by a vertical line.
    d_fsc05 : dict, optional
        {label: d at FSC = 0.5 (Å)}; marked on the 0.5 line.

    Returns
    -------
    str
        An ``<svg>`` element.
    """
    fig, axes = _figure(3.4)
    ax = axes[0, 0]
    colours = {0: BEFORE, 1: AFTER, 2: REF, 3: "#2ca02c"}
    smax = 0.0
    for i, (label, shells) in enumerate(curves):
        pts = [(1.0 / p["d"], _finite(p.get("fsc"))) for p in shells
               if p.get("d") and not math.isnan(_finite(p.get("fsc")))]
        if not pts:
            continue
        s, f = np.array(pts).T
        smax = max(smax, float(np.nanmax(s)))
        ax.plot(s, f, color=colours.get(i, None), lw=1.4 if i else 1.1, label=label)
        d05 = (d_fsc05 or {}).get(label)
        if d05:
            ax.plot([1.0 / d05], [0.5], "o", color=colours.get(i), ms=4)
    for level, text in ((0.5, "FSC = 0.5"), (0.143, "FSC = 0.143")):
        ax.axhline(level, color="#555555", lw=0.8, ls="--")
        ax.annotate(text, (1.0, level), xycoords=("axes fraction", "data"),
                    xytext=(4, 0), textcoords="offset points", va="center", fontsize=9)
    smax = max(smax, 1.0 / d_map if d_map else 0.0) * 1.04
    if d_map:
        ax.axvline(1.0 / d_map, color="#555555", lw=0.8, ls=":")
        ax.annotate(f"d = {d_map:g} Å", (1.0 / d_map, 1.0),
                    xycoords=("data", "axes fraction"), xytext=(3, -12),
                    textcoords="offset points", fontsize=9)
    ax.set_xlim(0, smax if smax else None)
    ax.set_ylim(min(-0.05, ax.get_ylim()[0]), 1.02)
    ax.set_xlabel("spatial frequency 1/d (Å⁻¹)")
    ax.set_ylabel("FSC (map vs model)")
    ax.grid(True, lw=0.4, color="#dddddd")
    # d on a top axis: the same x range, ticks placed at 1/d (no inverse transform, which
    # is infinite at the origin)
    top = ax.twiny()
    top.set_xlim(ax.get_xlim())
    ticks = [d for d in (50, 20, 10, 8, 6, 5, 4, 3.5, 3, 2.5, 2, 1.5, 1)
             if smax and 0.015 < 1.0 / d <= smax]
    top.set_xticks([1.0 / d for d in ticks], [f"{d:g}" for d in ticks])
    top.set_xlabel("d (Å)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.09, 1.0), frameon=False)
    return _svg(fig, "fsc")


def _stage_bands(ax, stages):
    """Shade runs of the same stage and name them above the axes."""
    i = 0
    while i < len(stages):
        j = i
        while j + 1 < len(stages) and stages[j + 1] == stages[i]:
            j += 1
        if (len({*stages[:i]}) % 2) == 1:
            ax.axvspan(i + 0.5, j + 1.5, color="#f0f0f0", lw=0, zorder=0)
        ax.annotate(stages[i], ((i + j) / 2 + 1, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                    fontsize=8, color="#444444")
        i = j + 1


def per_cycle(cycles: list[dict], resolution: float | None = None) -> tuple[str, str]:
    """CC (and R factors) and geometry after each optimisation call.

    Parameters
    ----------
    cycles : list of dict
        The stats "cycles" records (stage, cc_mask_term, optional cc_mask_ref, bond_rmsd,
        angle_rmsd, optional r_work / r_free / cc_work / cc_free).
    resolution : float, optional
        The map resolution (Å) at which ``cc_mask_ref`` is computed.

    Returns
    -------
    (str, str)
        The ``<svg>`` element and a sentence saying which CC is plotted.
    """
    fig, axes = _figure(3.3, ncols=2)
    ax, gax = axes[0]
    n = np.arange(1, len(cycles) + 1)
    stages = [str(c.get("stage", "")) for c in cycles]

    def col(key):
        return [_finite(c.get(key)) for c in cycles]

    has_ref = any(c.get("cc_mask_ref") is not None for c in cycles)
    at = f" at d = {resolution:g} Å" if resolution else ""
    if has_ref:
        ax.plot(n, col("cc_mask_ref"), "o-", color=AFTER, lw=1.5, ms=4,
                label=f"CC_mask{at} (fixed reference)")
        ax.plot(n, col("cc_mask_term"), "o--", color=BEFORE, lw=0.9, ms=3,
                label="map term at the stage's blur")
        note = (f"CC_mask{at} with one fixed blur after every call (comparable from call to "
                "call); the dashed line is the map term actually minimised, whose blur "
                "changes between stages.")
    else:
        ax.plot(n, col("cc_mask_term"), "o-", color=BEFORE, lw=1.2, ms=4,
                label="map term (blur varies)")
        note = ("Map term per call (blur varies): each stage minimises CC at its own "
                "blur, so values are comparable only within a stage. The input-model and "
                "refined CC_mask at the map's resolution are in the table above.")
    for key, colour, label in (("cc_work", "#2ca02c", "CC work half map"),
                               ("cc_free", REF, "CC free half map"),
                               ("r_work", "#2ca02c", "R-work"), ("r_free", REF, "R-free")):
        if any(c.get(key) is not None for c in cycles):
            ax.plot(n, col(key), "s-", color=colour, lw=1.0, ms=3, label=label)
    has_r = any(c.get("r_work") is not None for c in cycles)
    ax.set_ylabel("CC / R" if has_r else "CC")
    gax.plot(n, col("bond_rmsd"), "o-", color="#6a3d9a", lw=1.2, ms=4, label="bond RMSD (Å)")
    gax.set_ylabel("bond RMSD (Å)")
    tax = gax.twinx()
    tax.plot(n, col("angle_rmsd"), "s--", color="#b15928", lw=1.0, ms=3,
             label="angle RMSD (°)")
    tax.set_ylabel("angle RMSD (°)")
    for a in (ax, gax):
        a.set_xlabel("optimisation call")
        a.set_xlim(0.5, len(cycles) + 0.5)
        a.set_xticks(n if len(n) <= 25 else n[::max(1, len(n) // 20)])
        a.grid(True, axis="y", lw=0.4, color="#dddddd")
        _stage_bands(a, stages)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False, ncols=2)
    h1, l1 = gax.get_legend_handles_labels()
    h2, l2 = tax.get_legend_handles_labels()
    gax.legend(h1 + h2, l1 + l2, loc="upper center", bbox_to_anchor=(0.5, -0.2),
               frameon=False, ncols=2)
    return _svg(fig, "cycles"), note
