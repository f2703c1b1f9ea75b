"""The HTML report from a synthetic stats dict: what a structural biologist reads.

Fast (no fit, no browser): the page text and the SVG ``<text>`` elements of the
matplotlib figures. The rendered page is checked in headless Chromium by
``tests/regression/test_report_browser.py``.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET


from densrefine.report import report_html
from densrefine.report.plots import residue_x

SVG = "{http://www.w3.org/2000/svg}"



def _residues(shift: float) -> list[dict]:
    """Chain A 1-12, chain B 101-110 with a gap after 105, a ligand and two waters."""
    out = []
    for seq in range(1, 13):
        out.append({"chain": "A", "res_seq": seq, "icode": "", "res_name": "ALA",
                    "cc": 0.6 + 0.01 * seq + shift, "cc_main": 0.7, "n_atoms": 5})
    for seq in (101, 102, 103, 104, 105, 108, 109, 110):
        out.append({"chain": "B", "res_seq": seq, "icode": "", "res_name": "LEU",
                    "cc": 0.5 + shift, "cc_main": 0.6, "n_atoms": 8})
    out.append({"chain": "B", "res_seq": 201, "icode": "", "res_name": "HEM", "cc": 0.81,
                "cc_main": None, "n_atoms": 43})
    out += [{"chain": "W", "res_seq": k, "icode": "", "res_name": "HOH", "cc": 0.1,
             "cc_main": None, "n_atoms": 1} for k in (1, 2)]
    return out


def _block(shift, clashscore):
    return {"cc_mask": 0.70 + shift, "cc_box": 0.5, "cc_volume": 0.7, "cc_peaks": 0.6,
            "rsr": 0.35 - shift, "d_fsc05": 4.5 - 5 * shift, "cc_main_chain": 0.7,
            "cc_side_chain": 0.6,
            "fsc": [{"d": 40.0 / k, "fsc": max(0.0, 1.0 - 0.08 * k) + shift}
                    for k in range(1, 15)],
            "residues": _residues(shift),
            "geometry": {"bond_rmsd": 0.12 - shift / 2, "angle_rmsd": 7.4 - 20 * shift,
                         "clashscore": 2 * clashscore, "clashes": 21},
            "validation": {"ramachandran": {"favored_pct": 90.0 + 50 * shift, "outlier_pct": 1.5},
                           "rotamers": {"outlier_pct": 3.0}, "clashes": {"clashscore": clashscore}}}


def _stats(ref: bool = True) -> dict:
    cycles = [{"stage": st, "cycle": i, "blur": 36.0, "weight": 7.4e4, "target": -1.0,
               "cc_mask_term": 0.65 + 0.02 * i, "bond_rmsd": 0.1 / (i + 1),
               "angle_rmsd": 7.0 / (i + 1), "time_s": 0.2}
              for i, st in enumerate(["rigid", "xyz", "xyz", "b"])]
    if ref:
        for i, c in enumerate(cycles):
            c["cc_mask_ref"] = 0.70 + 0.05 * i
    return {"program": "densrefine fit", "version": "0.1.0", "status": "finished",
            "input": {"model": "/very/long/absolute/path/to/model_5xyz.cif.gz",
                      "map": "/data/emd_1234.map", "resolution": 3.2, "n_atoms": 200,
                      "n_moving": 200, "unknown_residues": ["LIG"]},
            "before": _block(0.0, 120.0), "after": _block(0.1, 11.428571),
            "cycles": cycles, "timings": {"total_s": 3.4}, "rmsd_moved": 0.5,
            "deposited": {"source": "deposited (PDB header)", "clashscore": 9.87}}


def _svg(page: str, name: str) -> str:
    m = re.search(rf'<svg[^>]*id="{name}".*?</svg>', page, re.S)
    assert m, f"no <svg id={name}> in the page"
    return m.group(0)


def _texts(svg: str, group: str) -> list[str]:
    """Text of the <text> elements inside the SVG groups whose id contains ``group``."""
    root = ET.fromstring(svg)
    out = []
    for g in root.iter(f"{SVG}g"):
        if group in g.get("id", ""):
            out += [t.text or "" for t in g.iter(f"{SVG}text")]
    return out


def test_report_title_is_the_file_name_and_table_has_units():
    page = report_html(_stats())
    assert "<title>densrefine fit: model_5xyz.cif.gz</title>" in page
    assert "<h1>densrefine fit: model_5xyz.cif.gz</h1>" in page
    assert "/very/long" not in page.split("id='run'")[0]       # full path only in details
    rows = dict(re.findall(r"<tr><td>([^<]+)</td><td>([^<]*)</td>", page))
    assert rows["bond RMSD"] == "Å" and rows["angle RMSD"] == "°"
    assert rows["d at FSC = 0.5"] == "Å" and rows["clashscore"] == "clashes per 1000 atoms"
    clash = re.search(r"<td>clashscore</td>.*?</tr>", page).group(0)
    cells = re.findall(r"<td class='n[^']*'>([^<]*)</td>", clash)
    assert cells == ["120.0", "11.4", "-108.6", "9.9"]             # input, refined, change, deposited
    cc = re.findall(r"<td class='n[^']*'>([^<]*)</td>",
                    re.search(r"<td>CC_mask</td>.*?</tr>", page).group(0))
    assert cc[:3] == ["0.700", "0.800", "+0.100"]
    assert "deposited (PDB header)" in page and "120.0000" not in page
    assert "LIG have no restraint dictionary" in page


def test_report_per_residue_panels_have_residue_numbers_and_chain_boundaries():
    page = report_html(_stats())
    svg = _svg(page, "residue-cc")
    titles = re.findall(r"<text[^>]*>(chain [AB]: residues [^<]*)</text>", svg)
    assert titles == ["chain A: residues 1–12 (12 residues)",
                      "chain B: residues 101–110 (8 residues)"]
    ticks = [t for t in _texts(svg, "xtick_") if t.strip()]
    assert {"2", "4", "10"} <= set(ticks) and {"102", "104", "108"} <= set(ticks)
    assert all(re.fullmatch(r"-?\d+", t) for t in ticks)          # residue numbers: integers
    yt = set(_texts(svg, "ytick_"))
    assert {"0.6", "0.8", "1.0"} <= yt
    assert "residue number" in svg and ">CC<" in svg
    # the water and the ligand are tabulated, not plotted; the worst residue is found
    assert "HEM 201" in page and "2 waters (not plotted)" in page
    worst = re.search(r"Lowest CC after refinement.*?</table>", page, re.S).group(0)
    first = re.search(r"<tr><td>(\w)</td><td>([^<]+)</td>", worst).groups()
    assert first == ("B", "LEU 101") and "ALA 12" not in worst and "HOH" not in worst


def test_report_secondary_structure_strip_when_residues_carry_ss():
    stats = _stats()
    assert "no helix/strand strip" in report_html(stats)
    for blk in ("before", "after"):
        for r in stats[blk]["residues"]:
            r["ss"] = "H" if r["chain"] == "A" and 3 <= r["res_seq"] <= 9 else "C"
    page = report_html(stats)
    svg = _svg(page, "residue-cc")
    assert ">helix<" in svg and ">strand<" in svg                 # strip legend
    assert "#d62728" in svg                                        # a helix band was drawn
    assert "<th>secondary structure</th>" in page and "<td>helix</td>" not in page.split(
        "Lowest CC")[0]


def test_report_fsc_has_threshold_lines_and_d_axis():
    svg = _svg(report_html(_stats()), "fsc")
    assert "FSC = 0.5" in svg and "FSC = 0.143" in svg
    assert "spatial frequency 1/d (Å⁻¹)" in svg and ">d (Å)<" in svg
    ticks = [float(t) for t in _texts(svg, "xtick_") if t.strip()]
    assert {10.0, 5.0, 4.0, 3.0} <= set(ticks)                    # d (Å) on the top axis
    assert 0.0 in ticks and max(t for t in ticks if t < 1) >= 0.3  # 1/d (Å⁻¹) below
    assert "d = 3.2 Å" in svg


def test_report_per_cycle_uses_fixed_reference_when_present():
    page = report_html(_stats(ref=True))
    svg = _svg(page, "cycles")
    assert "CC_mask at d = 3.2 Å (fixed reference)" in svg
    assert "map term at the stage&#x27;s blur" in svg or "map term at the stage's blur" in svg
    assert "<th>CC_mask ref</th>" in page
    page = report_html(_stats(ref=False))
    svg = _svg(page, "cycles")
    assert "map term (blur varies)" in svg and "fixed reference" not in svg
    assert {"rigid", "xyz", "b"} <= set(re.findall(r"<text[^>]*>([a-z0-9]+)</text>", svg))
    assert {"bond RMSD (Å)", "angle RMSD (°)", "optimisation call"} <= set(
        re.findall(r"<text[^>]*>([^<]+)</text>", svg))


def test_report_svg_ids_are_unique_in_the_page():
    page = report_html(_stats())
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) > 50 and len(ids) == len(set(ids))


def test_report_renders_while_running_and_with_missing_fields():
    s = _stats()
    s["after"], s["status"], s["cycles"] = None, "running", []
    del s["deposited"]
    page = report_html(s)
    assert "Run status: running" in page and "no optimisation calls recorded" in page
    assert "deposited" not in page


def test_residue_x_orders_insertion_codes_after_their_number():
    assert residue_x(52, "") < residue_x(52, "A") < residue_x(52, "B") < residue_x(53, "")
