"""`densrefine fit` command line on a tiny synthetic case (stand-in restraints)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import densrefine as dr
from densrefine.build import ideal_peptide, with_cell_box
from densrefine.cli import main
from densrefine.simulate import simulate

from .refine_standin import patch_geometry


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fitcli")
    m, _ = with_cell_box(ideal_peptide("AKEL"), margin=6.0)
    emap = simulate(m, resolution=3.0, spacing=1.0, margin=6.0, method="fourier", device="cpu")
    dr.write_map(emap, d / "m.mrc")
    moved = m.with_atoms(m.atoms.replace(xyz=m.atoms.xyz + np.array([0.4, -0.3, 0.2])))
    dr.write_model(moved, d / "start.cif")
    return d


def test_cli_writes_outputs_in_input_format(files, monkeypatch):
    patch_geometry(monkeypatch)
    cfg = files / "c.yaml"
    cfg.write_text("cycles: 1\nxyz_iterations: 5\nb_iterations: 5\nrigid_iterations: 10\n"
                   "map:\n  blur_factors: [1.0]\n")
    rc = main(["fit", str(files / "start.cif"), str(files / "m.mrc"), "-d", "3", "-o",
               str(files / "out"), "--config", str(cfg), "--stages", "rigid,xyz", "-q"])
    assert rc == 0
    assert (files / "out.cif").exists() and not (files / "out.pdb").exists()
    stats = json.loads((files / "out_stats.json").read_text())
    assert stats["config"]["cycles"] == 1 and stats["config"]["stages"] == ["rigid", "xyz"]
    assert stats["after"]["cc_mask"] > stats["before"]["cc_mask"]
    assert "outputs" in stats and (files / "out_report.html").exists()


@pytest.mark.parametrize("extra, needle", [
    (["-d", "0"], "resolution"), (["-d", "3", "--select", "Z/1-3"], "Z"),
    (["-d", "3", "--stages", "xyz,foo"], "stages")])
def test_cli_bad_input_is_one_line_exit_2(files, capsys, extra, needle, monkeypatch):
    patch_geometry(monkeypatch)
    rc = main(["fit", str(files / "start.cif"), str(files / "m.mrc"), "-o",
               str(files / "bad"), "-q", *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err


def test_cli_without_resolution_estimates_it(files, monkeypatch):
    patch_geometry(monkeypatch)
    rc = main(["fit", str(files / "start.cif"), str(files / "m.mrc"), "-o",
               str(files / "est"), "--stages", "rigid", "-q"])
    assert rc == 0
    stats = json.loads((files / "est_stats.json").read_text())
    est = stats["input"]["resolution_estimate"]
    assert stats["input"]["resolution"] == est["d_model"] and 2.0 < est["d_model"] < 5.0


def test_cli_refuses_to_overwrite_input(files, capsys):
    rc = main(["fit", str(files / "start.cif"), str(files / "m.mrc"), "-d", "3", "-o",
               str(files / "start"), "-q"])
    assert rc == 2 and "start.cif" in capsys.readouterr().err


def test_cli_no_overlap(files, capsys, monkeypatch):
    patch_geometry(monkeypatch)
    m = dr.read_model(files / "start.cif")
    far = m.with_atoms(m.atoms.replace(xyz=m.atoms.xyz + 400.0))
    dr.write_model(far, files / "far.cif")
    rc = main(["fit", str(files / "far.cif"), str(files / "m.mrc"), "-d", "3", "-o",
               str(files / "far_out"), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "map" in err


def test_cli_reference_restraints_and_sse_stage(files, monkeypatch):
    patch_geometry(monkeypatch)
    rc = main(["fit", str(files / "start.cif"), str(files / "m.mrc"), "-d", "3", "-o",
               str(files / "ref"), "--stages", "sse,xyz", "--cycles", "1",
               "--reference-restraints", "0.2", "-q"])
    assert rc == 0
    stats = json.loads((files / "ref_stats.json").read_text())
    assert stats["config"]["reference_sigma"] == 0.2
    assert [c["stage"] for c in stats["cycles"]] == ["sse", "xyz"]


def test_unknown_residue_fallback_is_reported_in_stats_and_html(files):
    """Real library restraints; LYS renamed to a code the library lacks, --unknown-residues self."""
    m, _ = with_cell_box(ideal_peptide("AKEL"), margin=6.0)  # no gemmi handle: names as given
    names = np.where(m.atoms.res_name == "LYS", "XYZ", m.atoms.res_name)
    dr.write_model(m.with_atoms(m.atoms.replace(res_name=names)), files / "unk.cif")
    # a real process: pytest's warning capture would keep the warning from the log file
    p = subprocess.run([sys.executable, "-m", "densrefine", "fit", str(files / "unk.cif"),
                        str(files / "m.mrc"), "-d", "3", "-o", str(files / "unk_fit"),
                        "--stages", "rigid", "--unknown-residues", "self", "-q"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    stats = json.loads((files / "unk_fit_stats.json").read_text())
    assert stats["input"]["unknown_residues"] == ["XYZ"]
    assert "XYZ have no restraint dictionary" in (files / "unk_fit_report.html").read_text()
    assert "input geometry" in (files / "unk_fit.log").read_text()


def test_cli_half_maps(files, monkeypatch, capsys):
    """--half-maps: independent-noise halves made here from the simulated map; refine on
    half 1, CC_free per cycle, FSC_work/FSC_free in the stats; mismatched halves refused."""
    patch_geometry(monkeypatch)
    emap = dr.read_map(files / "m.mrc")
    rng = np.random.default_rng(3)
    v = np.asarray(emap.values, np.float64)
    for k in (1, 2):
        dr.write_map(emap.with_values(v + rng.normal(0, 0.3 * v.std(), v.shape)),
                     files / f"h{k}.mrc")
    rc = main(["fit", str(files / "start.cif"), "--half-maps", str(files / "h1.mrc"),
               str(files / "h2.mrc"), "-d", "3", "-o", str(files / "hm"), "--stages", "rigid,xyz",
               "--cycles", "1", "-q"])
    assert rc == 0
    st = json.loads((files / "hm_stats.json").read_text())
    assert st["input"]["data"] == "half maps" and "cc_free" in st["cycles"][-1]
    assert st["half_maps"]["fsc_average_free"] > 0.5
    dr.write_map(dr.simulate(dr.read_model(files / "start.cif"), resolution=3.0, spacing=1.2),
                 files / "other.mrc")
    rc = main(["fit", str(files / "start.cif"), "--half-maps", str(files / "h1.mrc"),
               str(files / "other.mrc"), "-d", "3", "-o", str(files / "bad"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "other.mrc" in err[-1] and "half map" in err[-1]
