"""densrefine scores vs cctbx mmtbx.maps.map_model_cc (phenix.map_model_cc) on real maps.

cctbx runs in the peer venv as a subprocess (../shared/tools/peers/cctbx_map_model_cc.py;
never import cctbx next to gemmi). Every CC must agree within 0.01, and the atom
radius exactly. Two pairs need care on the cctbx side:

* 3J6B_9 has hydrogens, which cctbx's electron table lacks: the peer uses
  ``--scattering-table n_gaussian`` (an X-ray table) and we use our X-ray table.
* 6yyt_rna has charged atoms (``O1-``), also absent from cctbx's electron table: the
  peer reads a copy with the charge columns blanked (our electron table ignores
  charges anyway).
"""
from __future__ import annotations

import concurrent.futures
import gzip
import json
import subprocess
import warnings

import pytest

from tests.conftest import EM_PAIRS, peers_dir, peers_python, require_data

METRICS = ("cc_mask", "cc_box", "cc_volume", "cc_peaks", "cc_main_chain", "cc_side_chain")
TOL = 0.01

pytestmark = [pytest.mark.peer]


def pair_id(pair) -> str:
    return f"{pair[1].split('.')[0]}-{pair[2].split('.')[0]}"


def settings(pair) -> tuple[str, str]:
    """(our table, cctbx scattering table) for a pair."""
    if pair[1].startswith("3J6B"):
        return "xray", "n_gaussian"
    return "electron", "electron"


def _peer_model(pair, tmp_dir) -> str:
    """Model path for cctbx: charge columns blanked for models with charged atoms."""
    path = require_data(pair[0], pair[1])
    if not pair[1].startswith("6yyt"):
        return str(path)
    out = tmp_dir / "6yyt_rna_nocharge.pdb"
    with gzip.open(path, "rt") as f:
        lines = [ln.rstrip("\n") for ln in f]
    out.write_text("\n".join(ln[:78] if ln.startswith(("ATOM", "HETATM")) else ln
                             for ln in lines) + "\n")
    return str(out)


def run_peer(pair, tmp_dir) -> dict:
    cmd = [str(peers_python()), str(peers_dir() / "cctbx_map_model_cc.py"),
           _peer_model(pair, tmp_dir), str(require_data(pair[0], pair[2])), str(pair[3]),
           "--scattering-table", settings(pair)[1]]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def cctbx_results(tmp_path_factory):
    """cctbx results for every EM pair, computed once per session, 2 at a time."""
    tmp = tmp_path_factory.mktemp("cctbx_peer")
    for pair in EM_PAIRS:  # skip early (not in a thread) when data or peers are missing
        require_data(pair[0], pair[1]), require_data(pair[0], pair[2])
    peers_python(), peers_dir()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
        futs = {pair_id(p): ex.submit(run_peer, p, tmp) for p in EM_PAIRS}
        return {k: f.result() for k, f in futs.items()}


def our_scores(pair):
    """densrefine's report for a pair (real model map from densrefine.simulate)."""
    from densrefine import read_map, read_model
    from densrefine.scoring import score

    model = read_model(require_data(pair[0], pair[1]))
    emap = read_map(require_data(pair[0], pair[2]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0.2 % of 6VYB NTD lies outside the segmented box
        return score(model, emap, pair[3], table=settings(pair)[0], device="cpu",
                     per_residue=False, fsc=False)


@pytest.mark.parametrize("pair", EM_PAIRS, ids=[pair_id(p) for p in EM_PAIRS])
def test_scores_agree_with_cctbx(pair, cctbx_results):
    ref = cctbx_results[pair_id(pair)]
    rep = our_scores(pair)
    assert rep.atom_radius == pytest.approx(ref["atom_radius"], abs=1e-6)
    assert rep.n_atoms == ref["n_atoms"]
    for k in METRICS:
        ours, theirs = getattr(rep, k), ref[k]
        if theirs is None:
            assert ours is None, k
            continue
        assert abs(ours - theirs) <= TOL, (k, ours, theirs)


# cctbx side of the exact test: run map_model_cc keeping its model map, dump the arrays
_DUMP = r'''
import json, sys
import numpy as np
from iotbx.data_manager import DataManager
from libtbx.utils import null_out
from mmtbx.maps import map_model_cc
model, emap, d, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
dm = DataManager()
dm.process_model_file(model)
dm.process_real_map_file(emap)
mmm = dm.get_map_model_manager(model_file=model, map_files=emap, ignore_symmetry_conflicts=True)
mmm.set_log(null_out())
p = map_model_cc.master_params().extract().map_model_cc
p.resolution, p.keep_map_calc, p.compute.fsc = d, True, False
t = map_model_cc.map_model_cc(map_data=mmm.map_manager().map_data(),
    pdb_hierarchy=mmm.model().get_hierarchy(),
    crystal_symmetry=mmm.map_manager().crystal_symmetry(), params=p)
t.validate(); t.run(); r = t.get_results()
np.savez(out, map_calc=r.map_calc.as_numpy_array(), res_cc=np.array([x.cc for x in r.cc_per_residue]))
print(json.dumps({k: getattr(r, k) for k in ("cc_mask", "cc_box", "cc_volume", "cc_peaks",
      "atom_radius")} | {"cc_main_chain": r.cc_main_chain.cc, "cc_side_chain": r.cc_side_chain.cc}))
'''


def test_scoring_is_exact_on_cctbx_model_map(tmp_path):
    """Given cctbx's own model map, every score (per-residue CCs included) equals cctbx's:
    only the model-map simulation differs between the two programs."""
    import numpy as np

    from densrefine import read_map, read_model
    from densrefine.scoring import score

    folder, mfile, efile, d = EM_PAIRS[2]  # EMD-21457 segment + 6VYB NTD (ORIGIN)
    model, emap = require_data(folder, mfile), require_data(folder, efile)
    script = tmp_path / "dump.py"
    script.write_text(_DUMP)
    out = tmp_path / "cctbx.npz"
    p = subprocess.run([str(peers_python()), str(script), str(model), str(emap), str(d),
                        str(out)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    ref = json.loads(p.stdout.strip().splitlines()[-1])
    dump = np.load(out)
    mmap = dump["map_calc"].transpose(2, 1, 0)  # cctbx (x, y, z) -> (z, y, x)
    m, g = read_model(model), read_map(emap)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = score(m, g, d, model_map=mmap, periodic=True, fsc=False)
        rep_np = score(m, g, d, model_map=mmap, periodic=False, fsc=False)
    for k in METRICS + ("atom_radius",):
        assert getattr(rep, k) == pytest.approx(ref[k], abs=1e-9), k
    ours = np.array([r["cc"] for r in rep.residues], float)
    assert ours.shape == dump["res_cc"].shape
    defined = np.isfinite(ours)  # cctbx gives 0 where the CC is undefined (flat map), we None
    assert defined.sum() > 150
    assert np.allclose(ours[defined], dump["res_cc"][defined], atol=1e-9)
    assert np.all(dump["res_cc"][~defined] == 0)
    # our default (no wrap-around of atom-radius masks) moves local CCs by < 0.005 here
    for k in ("cc_main_chain", "cc_side_chain"):
        assert abs(getattr(rep_np, k) - ref[k]) < 0.005, k
