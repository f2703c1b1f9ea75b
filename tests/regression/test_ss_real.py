"""Secondary-structure H-bond restraints on real models (`densrefine.restraints.ss`).

* 5NI1 (haemoglobin, all-helical): DSSP-like detection finds the helices that the
  mmCIF ``struct_conf`` annotates, and its H-bonds are a subset of the annotation's.
* 5A3H (Cel5A, a (β/α)8 barrel): detection finds the β-sheet ladders; the header path
  restrains sheet H-bonds between annotated strands.
* Low resolution (slow, `low_res_case`): 5NI1 chain A perturbed by 1.5 Å RMS of smooth
  waves (`densrefine.perturb`) in a noisy 6 Å map simulated from the deposited chain; `fit` with SS restraints keeps
  more of the deposited helical O(i)…N(i+4) H-bonds (< 3.5 Å) at no worse RMSD to the
  deposited model than without (numbers in benchmarks/RESULTS.md).
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import require_data


def _read(*parts):
    import densrefine as dr

    return dr.read_model(require_data(*parts))


def test_5ni1_helices_detected_match_struct_conf():
    from densrefine.restraints import ss

    m = _read("emd-3488_5ni1", "5ni1_updated.cif.gz")
    det, hdr = ss.detect_hbonds(m), ss.header_hbonds(m)
    assert hdr is not None and hdr.source == "header"
    assert det.n_strands == 0 and hdr.n_strands == 0  # haemoglobin has no sheets
    # 4 chains × 7–8 α-helices; the header also lists short 3₁₀ helices (38 records)
    assert 26 <= det.n_helices <= 38 and abs(det.n_helices - hdr.n_helices) <= 6
    assert len(det) > 250 and (det.kind == "H").all()
    a, b = set(map(tuple, det.pairs.tolist())), set(map(tuple, hdr.pairs.tolist()))
    assert len(a & b) >= 0.95 * len(a), (len(a & b), len(a), len(b))
    d = ss.hbond_distances(m.atoms.xyz, det.pairs)
    assert 2.9 < d.mean() < 3.2 and d.max() <= ss.HB_CUT
    assert ss.find_hbonds(m).source == "header"


def test_5a3h_sheets_detected():
    from densrefine.restraints import ss

    m = _read("5a3h", "5a3h.pdb.gz")
    det = ss.detect_hbonds(m)
    assert det.n_strands >= 8 and det.n_helices >= 8  # (β/α)8 barrel
    assert np.sum(det.kind == "E") >= 20
    hdr = ss.header_hbonds(m)
    assert hdr is not None and np.sum(hdr.kind == "E") >= 10
    sheet_det = set(map(tuple, det.pairs[det.kind == "E"].tolist()))
    assert set(map(tuple, hdr.pairs[hdr.kind == "E"].tolist())) <= sheet_det


def low_res_case(d=6.0, noise=0.7, rms=1.5, seed=0, rigid_sse=True, modes=("off", "on"),
                 workdir="."):
    """Fit 5NI1 chain A, perturbed, into a noisy simulated map with and without SS restraints.

    Map: `densrefine.simulate` (fourier) of the deposited chain A at ``d`` Å on the
    EMD-3488 grid plus Gaussian noise of ``noise`` × the std of the map above 10 % of its
    maximum. Start: `densrefine.perturb` (``rms`` Å, ``seed``, ``rigid_sse``). Fits with
    default settings, ``ss_restraints`` = each of ``modes``.

    Returns
    -------
    dict
        "start" and one entry per mode: rmsd (Å, heavy atoms, to the deposited chain),
        hb (fraction of the deposited α-helix O(i)…N(i+4) H-bonds shorter than 3.5 Å in
        the deposited model that stay < 3.5 Å), bond (Å) / angle (°) RMSD, cc_mask, ss
        (the stats' "ss_hbonds" block), time_s.
    """
    import pathlib
    import time
    import warnings

    import gemmi

    import densrefine as dr
    from densrefine.perturb import perturb
    from densrefine.restraints import ss

    st = gemmi.read_structure(str(require_data("emd-3488_5ni1", "5ni1_updated.cif.gz")))
    for name in [ch.name for ch in st[0]][::-1]:
        if name != "A":
            st[0].remove_chain(name)
    st.setup_entities()
    path = pathlib.Path(workdir) / "5ni1_A.cif"
    st.make_mmcif_document().write_file(str(path))
    truth = dr.read_model(path)
    emap = dr.read_map(require_data("emd-3488_5ni1", "emd_3488.mrc"))
    sim = dr.simulate(truth, like=emap, resolution=d, method="fourier").values
    rng = np.random.default_rng(0)
    noisy = sim + rng.normal(size=sim.shape) * noise * sim[sim > 0.1 * sim.max()].std()
    emap = emap.with_values(noisy.astype(np.float32))
    ref = ss.detect_hbonds(truth)
    helix = ref.pairs[(ref.kind == "H") & (ss.hbond_distances(truth.atoms.xyz, ref.pairs)
                                           < ss.HB_OK)]
    heavy = ~truth.atoms.is_hydrogen

    def measure(x):
        return {"rmsd": float(np.sqrt((((x - truth.atoms.xyz)[heavy]) ** 2).sum(1).mean())),
                "hb": float(np.mean(ss.hbond_distances(x, helix) < ss.HB_OK))}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # perturb: fewer side-chain flips fit the budget
        start = perturb(truth, rms=rms, seed=seed, rigid_sse=rigid_sse)
    out = {"start": measure(start.atoms.xyz), "n_helix_hbonds": len(helix)}
    for mode in modes:
        t0 = time.perf_counter()
        res = dr.fit(start, emap, d, config={"ss_restraints": mode}, seed=0, device="cpu")
        g = res.stats["after"]["geometry"]
        out[mode] = {**measure(res.model.atoms.xyz), "bond": g["bond_rmsd"],
                     "angle": g["angle_rmsd"], "cc_mask": res.stats["after"]["cc_mask"],
                     "ss": g.get("ss_hbonds"), "time_s": time.perf_counter() - t0}
    return out


@pytest.mark.slow
def test_low_resolution_fit_keeps_helix_hbonds(tmp_path):
    out = low_res_case(6.0, noise=1.0, rms=1.5, seed=0, rigid_sse=False, workdir=tmp_path)
    on, off = out["on"], out["off"]
    assert off["ss"] is None and on["ss"]["source"] == "header" and on["ss"]["hbonds"] > 50
    assert on["hb"] > off["hb"], out
    assert on["rmsd"] <= off["rmsd"] + 0.01, out
    assert on["bond"] < 0.02 and on["angle"] < 2.5, out
