"""The fit report as a browser shows it: the example fit rendered in headless Chromium.

Chromium is Debian's package (``apt-get install -y chromium``); the test skips with a
reason when it is absent and fails when CI=true. A copy of the report gets a small
measuring script appended (the report itself has none); Chromium lays the page out at
1280 px, the script writes what it measured into the DOM, and ``--dump-dom`` returns
it. The checks: no horizontal scrolling at 1280 px; axis labels, tick labels with
numbers, residue numbers and one panel per chain are rendered (non-empty boxes); tick
text at least 9 CSS px; legends outside every plot area; a screenshot that is not blank.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess

import numpy as np
import pytest

from densrefine.cli import main
from densrefine.report import report_html
from tests.conftest import IN_CI, ROOT

EX = ROOT / "example_maps"
WIDTH = 1280

MEASURE = """
<script>
(function () {
  const box = el => el.getBoundingClientRect();
  const overlap = (a, b) => Math.max(0, Math.min(a.right, b.right) - Math.max(a.left, b.left))
      * Math.max(0, Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top));
  const visible = el => { const r = box(el); return r.width > 0 && r.height > 0; };
  const out = {title: document.title, viewport: window.innerWidth,
               scroll_width: document.documentElement.scrollWidth, plots: {}};
  for (const svg of document.querySelectorAll('svg.plot')) {
    const texts = sel => [...svg.querySelectorAll(sel)].filter(visible)
        .map(t => t.textContent.trim()).filter(t => t);
    const areas = [...svg.querySelectorAll('g[id*="axes_"] > g[id*="patch_"]:first-child')]
        .map(box);
    const legends = [...svg.querySelectorAll('g[id*="legend_"]')].map(box);
    let worst = 0;
    for (const l of legends) for (const a of areas) worst = Math.max(worst, overlap(l, a));
    const tick = svg.querySelector('g[id*="xtick_"] text');
    out.plots[svg.id] = {
      width: box(svg).width, n_axes: areas.length, n_legends: legends.length,
      legend_overlap_px2: worst,
      xticks: texts('g[id*="xtick_"] text'), yticks: texts('g[id*="ytick_"] text'),
      texts: texts('text'),
      tick_px: tick ? parseFloat(getComputedStyle(tick).fontSize) * box(svg).width
                      / svg.viewBox.baseVal.width : 0};
  }
  const pre = document.createElement('pre');
  pre.id = 'measured';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


def chromium() -> str:
    """Path of Debian's Chromium ($DENSREFINE_CHROMIUM overrides); skip/fail when absent."""
    exe = os.environ.get("DENSREFINE_CHROMIUM") or shutil.which("chromium") \
        or shutil.which("chromium-browser")
    if not exe:
        msg = ("Chromium not found: apt-get install -y chromium (Debian's package) or set "
               "DENSREFINE_CHROMIUM")
        if IN_CI:
            pytest.fail(msg + " — CI=true requires it")
        pytest.skip(msg)
    return exe


def run_chromium(page, tmp, *args) -> subprocess.CompletedProcess:
    """Headless Chromium on a local file, no network, a fresh profile, 1280 px wide."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}",
           f"--window-size={WIDTH},1600", *args, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def measure(report_path, tmp) -> dict:
    """Lay the report out in Chromium and return what the measuring script found."""
    probe = tmp / (report_path.stem + "_probe.html")
    probe.write_text(report_path.read_text(encoding="utf-8").replace(
        "</body>", MEASURE + "</body>"), encoding="utf-8")
    proc = run_chromium(probe, tmp, "--virtual-time-budget=5000", "--dump-dom")
    m = re.search(r'<pre id="measured">(.*?)</pre>', proc.stdout, re.S)
    assert proc.returncode == 0 and m, f"Chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
    import html

    return json.loads(html.unescape(m.group(1)))


def with_secondary_structure(stats: dict, model_path) -> dict:
    """Add the per-residue ``ss`` field the report draws ("H"/"E"/"C" from the Cα trace of
    the refined model, `densrefine.restraints.chains`), as fit is asked to write it."""
    from densrefine.io import read_model
    from densrefine.restraints.chains import secondary_structure, trace, trace_fragments

    at = read_model(model_path).atoms
    pos, kind = trace(at)
    chain = np.empty(len(pos), object)
    chain[at.res_index] = at.chain
    ss = np.full(len(pos), "C")
    for frag in trace_fragments(pos, kind, chain):
        if kind[frag[0]] == 1:
            ss[frag] = secondary_structure(pos[frag])
    by_key = {(c, int(n), i.strip()): ss[k] for k, c, n, i in
              zip(at.res_index, at.chain, at.res_seq, at.icode)}
    for blk in ("before", "after"):
        for r in stats[blk]["residues"]:
            r["ss"] = str(by_key[(r["chain"], r["res_seq"], r["icode"] or "")])
    return stats


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The bundled example fit through the real CLI, and a two-chain variant of its stats."""
    tmp = tmp_path_factory.mktemp("report")
    out = tmp / "helix_fit"
    assert main(["fit", str(EX / "helix_start.pdb"), str(EX / "helix_3A.mrc"), "-d", "3.0",
                 "-o", str(out), "--device", "cpu", "-q"]) == 0
    stats = json.loads((tmp / "helix_fit_stats.json").read_text())
    # chain boundaries: residues 12-22 relabelled as chain B (same numbers, same CCs)
    two = with_secondary_structure(json.loads(json.dumps(stats)), tmp / "helix_fit.pdb")
    for blk in ("before", "after"):
        for r in two[blk]["residues"]:
            if r["res_seq"] >= 12:
                r["chain"] = "B"
    (tmp / "two_chains_report.html").write_text(report_html(two), encoding="utf-8")
    return tmp


def test_report_in_chromium_shows_numbers_labels_and_fits_1280px(example):
    m = measure(example / "helix_fit_report.html", example)
    assert m["title"] == "densrefine fit: helix_start.pdb"
    assert m["viewport"] == WIDTH and m["scroll_width"] <= WIDTH
    assert set(m["plots"]) == {"residue-cc", "fsc", "cycles"}
    for name, p in m["plots"].items():
        assert 900 <= p["width"] <= WIDTH, name
        assert p["tick_px"] >= 9.0, (name, p["tick_px"])         # readable tick labels
        assert p["n_legends"] >= 1 and p["legend_overlap_px2"] == 0, name
        numbers = [t for t in p["xticks"] + p["yticks"] if re.fullmatch(r"-?\d+(\.\d+)?", t)]
        assert len(numbers) >= 8, (name, p["xticks"], p["yticks"])
    res = m["plots"]["residue-cc"]
    residue_numbers = {int(t) for t in res["xticks"] if t.isdigit()}
    assert {2, 10, 20} <= residue_numbers and max(residue_numbers) <= 22
    assert {"0.6", "0.8", "1.0"} <= set(res["yticks"])
    assert "chain A: residues 1–22 (22 residues)" in res["texts"]
    assert "residue number  (CC of the model map at 3 Å, per residue)" in res["texts"]
    fsc = m["plots"]["fsc"]
    assert {"FSC = 0.5", "FSC = 0.143", "d (Å)", "spatial frequency 1/d (Å⁻¹)",
            "FSC (map vs model)", "d = 3 Å"} <= set(fsc["texts"])
    assert {"3", "4", "5", "10"} <= set(fsc["xticks"])              # d in Å on top
    cyc = m["plots"]["cycles"]
    assert {"optimisation call", "bond RMSD (Å)", "angle RMSD (°)", "rigid", "xyz",
            "b"} <= set(cyc["texts"])
    assert {"1", "2", "8"} <= set(cyc["xticks"])


def test_report_in_chromium_two_chains_and_secondary_structure(example):
    m = measure(example / "two_chains_report.html", example)
    res = m["plots"]["residue-cc"]
    assert "chain A: residues 1–11 (11 residues)" in res["texts"]
    assert "chain B: residues 12–22 (11 residues)" in res["texts"]
    assert res["n_axes"] == 4                                      # 2 × (SS strip + CC panel)
    assert {"helix", "strand", "input model", "refined"} <= set(res["texts"])
    nums = {int(t) for t in res["xticks"] if t.isdigit()}
    assert {2, 10} <= nums and {12, 20} <= nums
    assert res["legend_overlap_px2"] == 0 and m["scroll_width"] <= WIDTH


def test_report_screenshot_is_not_blank(example):
    shot = example / "report.png"
    proc = run_chromium(example / "helix_fit_report.html", example,
                        f"--screenshot={shot}")
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    data = shot.read_bytes()
    width, height = struct.unpack(">II", data[16:24])              # PNG IHDR
    assert (width, height) == (WIDTH, 1600)
    assert len(data) > 60_000       # text, tables and three figures; a blank page is ~5 kB
