"""Ramachandran density (`densrefine.restraints.rama`) on deposited models.

* Our classifier puts most residues of well-refined models in "favored" (the models are
  also its training data, so this checks the fit and the plumbing, not generalisation).
* Peer check (cctbx's MolProbity ramalyze, Top8000 contours, run in its own process by
  benchmarks/peer_ramalyze.py): per-residue favored / not-favored labels agree for most
  residues, and outliers agree on being rare.
"""
from __future__ import annotations

import json
import pathlib
import subprocess

import numpy as np
import pytest

from tests.conftest import peers_python, require_data

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = [("5a3h", "5a3h.pdb.gz"), ("emd-3488_5ni1", "5ni1_updated.cif.gz"),
          ("3io0", "3io0_before.pdb.gz")]


def _ours(path):
    import densrefine as dr
    from densrefine.restraints import rama

    m = dr.read_model(path)
    rs = rama.find_residues(m)
    return rs, rama.classify(rs.phi_psi(m.atoms.xyz), rs.cls), rs.summary(m.atoms.xyz)


@pytest.mark.parametrize("folder,name", MODELS)
def test_deposited_models_mostly_favored(folder, name):
    rs, lab, s = _ours(require_data(folder, name))
    assert s["n"] > 200 and s["favored"] + s["allowed"] + s["outlier"] == s["n"]
    assert s["favored_pct"] >= 90.0, s
    assert s["outlier_pct"] <= 2.0, s
    # mean energy per residue: 0 at the class mode, ~7 in the β basin (the α peak is sharper)
    assert s["energy"] / s["n"] < 10.0, s


@pytest.mark.peer
@pytest.mark.parametrize("folder,name", MODELS[:2])
def test_agrees_with_ramalyze(folder, name):
    path = require_data(folder, name)
    r = subprocess.run([str(peers_python()), str(ROOT / "benchmarks" / "peer_ramalyze.py"),
                        str(path), "--residues"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    peer = json.loads(r.stdout.strip().splitlines()[-1])
    rs, lab, s = _ours(path)
    ref = {(c, int(n), i): ev for c, n, i, _, _, _, _, ev in peer["residues"]}
    pairs = [(lab[k], ref[key[:3]]) for k, key in enumerate(rs.keys) if key[:3] in ref]
    assert len(pairs) >= 0.95 * len(rs)
    agree = np.mean([(a == "favored") == (b == "Favored") for a, b in pairs])
    assert agree >= 0.9, agree
    assert abs(s["favored_pct"] - peer["favored_pct"]) < 6.0, (s, peer)
    assert s["outlier"] <= peer["outlier"] + 3


@pytest.mark.slow
def test_low_resolution_fit_keeps_backbone_favored(tmp_path):
    """5NI1 chain A, 1 Å perturbation, noisy simulated 6 Å map: rama on vs off (seed 0)."""
    import warnings

    import gemmi

    import densrefine as dr
    from densrefine.perturb import perturb
    from densrefine.restraints import rama
    from densrefine.simulate import simulate

    st = gemmi.read_structure(str(require_data("emd-3488_5ni1", "5ni1_updated.cif.gz")))
    for name in [ch.name for ch in st[0]][::-1]:
        if name != "A":
            st[0].remove_chain(name)
    st.setup_entities()
    st.make_mmcif_document().write_file(str(tmp_path / "a.cif"))
    truth = dr.read_model(tmp_path / "a.cif")
    emap = dr.read_map(require_data("emd-3488_5ni1", "emd_3488.mrc"))
    sim = simulate(truth, like=emap, resolution=6.0, method="fourier").values
    noisy = sim + np.random.default_rng(0).normal(size=sim.shape) * sim[sim > 0.1 * sim.max()].std()
    emap = emap.with_values(noisy.astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = perturb(truth, rms=1.0, seed=0)
    heavy = ~np.asarray(truth.atoms.is_hydrogen)
    out = {}
    plain = {"riding_hydrogens": False,
             "weights": {"likelihood_cap": None, "likelihood_cap_final": None,
                         "nonbonded_final": None}}
    for mode in ("off", "on", "defaults"):
        # Reference-model restraints (on by default at 6 Å) hold the start's backbone
        # torsions, the likelihood caps of the map weight pull less, and the riding
        # hydrogens with the stronger final nonbonded term (map defaults since 2026-12-08)
        # keep backbones out of clashes: all mask the Ramachandran term, so it is compared
        # under the uncapped map pull with all of them off. "defaults": Ramachandran
        # restraints off, everything else as shipped.
        cfg = ({"rama_restraints": "off"} if mode == "defaults" else
               {**plain, "rama_restraints": mode, "reference_sigma": None})
        res = dr.fit(start, emap, 6.0, config=cfg, seed=0, device="cpu")
        x = res.model.atoms.xyz
        rs = rama.find_residues(res.model)
        out[mode] = {"rmsd": float(np.sqrt((((x - truth.atoms.xyz)[heavy]) ** 2).sum(1).mean())),
                     "fav": rs.summary(x)["favored_pct"],
                     "angle": res.stats["after"]["geometry"]["angle_rmsd"],
                     "block": res.stats["after"]["geometry"].get("rama")}
    on, off, shipped = out["on"], out["off"], out["defaults"]
    assert off["block"] is None and on["block"]["n"] > 130, out
    assert on["fav"] > off["fav"] + 10.0, out          # measured 99.3 vs 87.8 %
    assert on["rmsd"] <= off["rmsd"] + 0.01, out       # measured 0.791 vs 0.814 Å
    assert on["angle"] < 2.0, out
    # without Ramachandran restraints, the shipped nonbonded term and reference restraints
    # alone keep the backbone favoured (torsion reference restraints, riding H, × 4)
    assert shipped["fav"] > off["fav"] + 5.0, out       # measured 98.6 vs 87.8 %
    assert shipped["rmsd"] <= off["rmsd"] + 0.01, out   # measured 0.814 vs 0.814 Å
