"""`densrefine fit` on the bundled example (22-residue helix, noisy 3 Å map).

Runs the real CLI in a temp dir with the real restraints (CCP4 monomer library) and
asserts scientific thresholds from the stats JSON (servalcat ``tests/test_refine.py``
pattern): CC_mask rises, the RMSD to the true model falls from 0.80 Å to < 0.45 Å,
geometry ends near the targets.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import densrefine as dr
from densrefine.cli import main
from tests.conftest import ROOT

EX = ROOT / "example_maps"


def _rmsd(a, b):
    return float(np.sqrt(((a.atoms.xyz - b.atoms.xyz) ** 2).sum(1).mean()))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    import densrefine.restraints  # noqa: F401 - our own package: a broken import must fail
    out = tmp_path_factory.mktemp("fit") / "helix_fit"
    rc = main(["fit", str(EX / "helix_start.pdb"), str(EX / "helix_3A.mrc"), "-d", "3.0",
               "-o", str(out), "--device", "cpu", "-q"])
    assert rc == 0
    return out


def test_fit_example_improves_map_fit_and_coordinates(fitted):
    stats = json.loads(fitted.with_name("helix_fit_stats.json").read_text())
    assert stats["status"] == "finished"
    assert stats["after"]["cc_mask"] > stats["before"]["cc_mask"] + 0.1
    start = dr.read_model(EX / "helix_start.pdb")
    true = dr.read_model(EX / "helix_true.pdb")
    # independent reference: the true model the map was made from (example_maps/README:
    # CC_mask 0.910); the fit gets within 0.05 of it
    emap = dr.read_map(EX / "helix_3A.mrc")
    cc_true = dr.score(true, emap, 3.0, per_residue=False, fsc=False).cc_mask
    assert cc_true == pytest.approx(0.910, abs=0.002)
    assert stats["after"]["cc_mask"] > cc_true - 0.05, (stats["after"]["cc_mask"], cc_true)
    new = dr.read_model(fitted.with_name("helix_fit.pdb"))
    assert abs(_rmsd(start, true) - 0.80) < 0.01
    assert _rmsd(new, true) < 0.45
    g = stats["after"]["geometry"]
    assert g["bond_rmsd"] < 0.02 and g["angle_rmsd"] < 2.5
    assert all(2.0 <= b <= 300.0 for b in new.atoms.b_iso)


def test_fit_example_writes_every_output(fitted):
    for suffix in (".pdb", "_stats.json", ".log", "_config.yaml", "_report.html"):
        assert fitted.with_name("helix_fit" + suffix).stat().st_size > 0
    log = fitted.with_name("helix_fit.log").read_text()
    assert "# command:" in log and "stage  cycle" in log
    html = fitted.with_name("helix_fit_report.html").read_text()
    assert html.count("<svg") == 3
    cfg = dr.refine.load_config(path=str(fitted.with_name("helix_fit_config.yaml")))
    assert cfg.stages == ["rigid", "sse", "chi1", "xyz", "b"]


def test_fit_example_with_hydrogens(tmp_path):
    """Riding H: in the geometry, out of the map term; the parent atoms still fit."""
    import gemmi  # a hard dependency: never a skip

    from densrefine.restraints import find_monlib

    st = gemmi.read_structure(str(EX / "helix_start.pdb"))
    st.setup_entities()
    lib = gemmi.read_monomer_lib(find_monlib(), st[0].get_all_residue_names())
    gemmi.prepare_topology(st, lib, h_change=gemmi.HydrogenChange.ReAdd, reorder=False,
                           ignore_unknown_links=True)
    st.write_pdb(str(tmp_path / "start_h.pdb"))
    model = dr.read_model(tmp_path / "start_h.pdb")
    heavy = ~model.atoms.is_hydrogen
    assert heavy.sum() == 175 and (~heavy).sum() > 100
    res = dr.fit(model, dr.read_map(EX / "helix_3A.mrc"), 3.0, device="cpu",
                 config={"stages": "xyz", "cycles": 3, "xyz_iterations": 15})
    true = dr.read_model(EX / "helix_true.pdb")
    d = res.model.atoms.xyz[heavy] - true.atoms.xyz
    assert float(np.sqrt((d ** 2).sum(1).mean())) < 0.5
    g = res.stats["after"]["geometry"]
    assert g["bond_rmsd"] < 0.02 and g["angle_rmsd"] < 2.5
