"""Live mode (densrefine/live): incremental updates equal full recomputations.

X-ray on 5E5Z (47 atoms, P 1 21 1: fast, non-orthogonal cell, a 2-fold screw), cryo-EM on
the bundled synthetic helix map. Each test moves atoms through the session and compares
with what `make_fmodel`, `solvent_mask`, `score` and gemmi compute from scratch on the
moved model.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import ROOT, require_data

EXAMPLE = ROOT / "example_maps"


@pytest.fixture(scope="module")
def torch1():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def xray_paths():
    return (require_data("5e5z", "5e5z.pdb.gz"), require_data("5e5z", "5e5z.mtz.gz"))


def _moves(session, rng, n, sigma):
    at = session.model.atoms
    for _ in range(n):
        r = at.res_index[rng.integers(len(at))]
        sel = np.flatnonzero(at.res_index == r)
        yield sel, session.xyz[sel] + rng.normal(0.0, sigma, (len(sel), 3))


def test_local_mask_equals_gemmi_after_moves(xray_paths, torch1):
    import densrefine as dr
    from densrefine.io.model import to_gemmi
    from densrefine.live.mask import LocalMask, mask_radii
    from densrefine.xtal.bulk import solvent_mask

    model = dr.read_model(xray_paths[0])
    st = to_gemmi(model)
    import gemmi
    sg = gemmi.SpaceGroup(st.spacegroup_hm)
    at = model.atoms
    frac_m = np.array(st.cell.frac.mat.tolist())
    rad = np.where(at.is_hydrogen | (at.occ <= 0), -1.0, mask_radii(at.element))
    ref = solvent_mask(st, st.cell, sg, 1.66)
    lm = LocalMask(np.array(st.cell.orth.mat.tolist()), ref.shape, sg, at.xyz @ frac_m.T, rad)
    assert np.array_equal(lm.mask, ref)                 # the numpy rebuild of gemmi's mask
    rng = np.random.default_rng(3)
    xyz = at.xyz.copy()
    changed = 0
    for _ in range(8):
        sel = np.flatnonzero(at.res_index == at.res_index[rng.integers(len(at))])
        new = xyz[sel] + rng.normal(0, 1.0, (len(sel), 3))
        _, _, n = lm.update(xyz[sel] @ frac_m.T, new @ frac_m.T, rad[sel], rad[sel])
        changed += n
        xyz[sel] = new
    ref = solvent_mask(to_gemmi(model.with_atoms(at.replace(xyz=xyz))), st.cell, sg, 1.66)
    assert changed > 100
    assert np.array_equal(lm.mask, ref)


@pytest.mark.parametrize("aniso", [False, True], ids=["fft", "direct-anisou"])
def test_xray_updates_equal_full_recomputation(xray_paths, torch1, aniso):
    """FFT path (ANISOU dropped) and direct path (5E5Z's ANISOU: rfactor sums directly)."""
    import densrefine as dr
    from densrefine.live.xray import XrayLive
    from densrefine.xtal.api import make_fmodel
    from densrefine.xtal.scale import f_model_abs, r_factor

    model = dr.read_model(xray_paths[0])
    if not aniso:
        model = model.with_atoms(model.atoms.replace(u_aniso=None))
    s = XrayLive(model, xray_paths[1], twin="off")
    assert s.direct == aniso
    r0 = s.fmodel.r_work
    rng = np.random.default_rng(0)
    for sel, new in _moves(s, rng, 6, 0.25):
        out = s.update(sel, new)
    assert out["r_work"] != pytest.approx(r0, abs=1e-4)
    s.flush()
    fc = s._full_fc()
    assert np.linalg.norm(s.fc_all - fc) / np.linalg.norm(fc) < 1e-6
    fresh = make_fmodel(s.current_model(), xray_paths[1], twin="off")
    assert np.linalg.norm(s.fm_all - fresh.fm) / np.linalg.norm(fresh.fm) < 1e-5
    # the same scales on fresh F_calc / F_mask: the incremental state is exact
    fa = f_model_abs(fresh.fc, fresh.fm, s.fmodel.sc, s.fmodel.s2, s.fmodel.scales)
    assert s.fmodel.r_work == pytest.approx(r_factor(fresh.fo, fa, fresh.work), abs=1e-7)
    assert s.fmodel.r_free == pytest.approx(r_factor(fresh.fo, fa, fresh.free), abs=1e-7)
    s.rescale()                                          # then equal to a fresh FModel
    assert s.fmodel.r_work == pytest.approx(fresh.r_work, abs=1e-5)
    assert s.fmodel.r_free == pytest.approx(fresh.r_free, abs=1e-5)


def test_xray_bad_updates_change_nothing(xray_paths, torch1):
    import densrefine as dr
    from densrefine.errors import InputError
    from densrefine.live import Session

    s = Session(dr.read_model(xray_paths[0]), xray_paths[1])
    before = s.scores()
    for bad in ({"atoms": [47], "xyz": [[0, 0, 0]]}, {"atoms": [-1], "xyz": [[0, 0, 0]]},
                {"atoms": [0], "xyz": [[np.nan, 0, 0]]}, {"atoms": [0, 1], "xyz": [[0, 0, 0]]},
                {"atoms": [0], "b_iso": [-5.0]}, {"atoms": [0], "occ": [1.5]},
                {"atoms": [0, 0], "xyz": [[0, 0, 0], [1, 1, 1]]}, {"atoms": []},
                {"atoms": [0.5]}, {"atoms": "x"}):
        with pytest.raises(InputError):
            s.update(bad.get("atoms"), bad.get("xyz"), bad.get("b_iso"), bad.get("occ"))
    assert s.scores() == before
    with pytest.raises(InputError):
        s.maps(center=[0, 0, 0], size=500)


def test_xray_map_box_equals_gemmi_cell_map(xray_paths, torch1):
    import densrefine as dr
    from densrefine.live.xray import XrayLive
    from densrefine.xtal.maps import cell_map, map_coefficients

    s = XrayLive(dr.read_model(xray_paths[0]), xray_paths[1])
    c = s.xyz[10]
    out = s.maps(c - 6, c + 6)
    two = map_coefficients(s.fmodel, "2fofc")
    assert np.allclose(s.map_coefficients()[0], two, rtol=1e-9, atol=1e-9)
    g = np.array(cell_map(s.fmodel.hkl, two, s.cell, s.sg, sample_rate=3.0), copy=False)
    assert tuple(g.shape) == tuple(out["grid"])        # gemmi picks the same cell grid
    ix = [np.mod(np.arange(out["start"][i], out["start"][i] + out["shape"][2 - i]), g.shape[i])
          for i in range(3)]
    ref = g[np.ix_(*ix)].transpose(2, 1, 0)
    assert np.abs(ref - out["maps"]["2fofc"]).max() < 1e-4 * ref.std()
    assert out["rms"]["2fofc"] == pytest.approx(float(g.std()), rel=1e-3)


def test_em_updates_match_score(torch1):
    import densrefine as dr
    from densrefine.live.em import EmLive

    model = dr.read_model(EXAMPLE / "helix_start.pdb")
    emap = dr.read_map(EXAMPLE / "helix_3A.mrc")
    s = EmLive(model, emap, 3.0)
    assert s.cc_mask() == pytest.approx(dr.score(model, emap, 3.0, fsc=False).cc_mask,
                                        abs=1e-6)
    rng = np.random.default_rng(1)
    for sel, new in _moves(s, rng, 5, 0.4):
        out = s.update(sel, new)
    rep = dr.score(s.current_model(), emap, 3.0, fsc=False)
    assert out["cc_mask"] == pytest.approx(rep.cc_mask, abs=1e-6)
    by_res = {(r["chain"], r["res_seq"]): r["cc"] for r in rep.residues}
    for r in out["residues"]:
        assert r["cc"] == pytest.approx(by_res[(r["chain"], r["res_seq"])], abs=1e-5)
    sim = dr.simulate(s.current_model(), like=emap, resolution=3.0, method="fourier")
    assert np.abs(sim.values - s.m).max() < 1e-5 * np.abs(sim.values).max()
    box = s.maps(s.xyz[0] - 5, s.xyz[0] + 5)
    assert box["maps"]["model"].shape == tuple(box["shape"])


def test_symmetry_layout_counts_each_image_once(xray_paths):
    """map_layout weights: Σ_k |C(k)|-weights equal the number of reflections in the
    sphere (each distinct k once, Friedel mates through the factor 2)."""
    import gemmi

    from densrefine.live.symdft import SymmetryIndex

    hkl = np.array([[1, 0, 0], [0, 1, 0], [1, 2, 3], [0, 2, 0]])
    sym = SymmetryIndex(gemmi.SpaceGroup("P 1 21 1"), hkl)
    w = sym.map_weight_sum()
    # acentric (1,2,3): 2 images × 2 (Friedel) / 1; centric (h0l) and (0k0): 2 images
    assert w.tolist() == [2.0, 2.0, 4.0, 2.0]


@pytest.mark.slow
def test_ten_thousand_random_updates_leave_r_exact(xray_paths, torch1):
    """10,000 random updates (1-5 atoms, B changes) of 5E5Z with no refit in between.

    The increments are summed in complex64: on this 47-atom model each update is a third
    of F_calc, and after 10,000 of them F_calc carries ~1e-5 of rounding (R ~1e-6 to
    1e-5). The refit the server runs in idle time (`rescale_async`) recomputes F_calc and
    F_mask exactly for the snapshot and keeps the edits made since: after it, F_calc is
    a fresh computation and R equals `rfactor`'s."""
    import time

    import densrefine as dr
    from densrefine.live.xray import XrayLive
    from densrefine.xtal.api import make_fmodel
    from densrefine.xtal.scale import f_model_abs, r_factor

    model = dr.read_model(xray_paths[0])
    model = model.with_atoms(model.atoms.replace(u_aniso=None))      # the FFT path
    s = XrayLive(model, xray_paths[1], twin="off")
    s.rescale_change = float("inf")     # F_model itself accumulates all 10,000 changes too
    rng = np.random.default_rng(7)
    home = s.xyz.copy()
    for i in range(10000):
        k = int(rng.integers(1, 6))
        sel = rng.choice(len(home), k, replace=False)
        s.update(sel, home[sel] + rng.normal(0, 0.3, (k, 3)),
                 b_iso=None if i % 3 else s.b_iso[sel] + rng.uniform(0, 2, k))
    s.flush()
    fresh = make_fmodel(s.current_model(), xray_paths[1], twin="off")
    rel = lambda a, b: np.linalg.norm(a - b) / np.linalg.norm(b)
    assert rel(s.fc_all, fresh.fc) < 3e-5                  # measured 9.2e-6
    assert rel(s.fm_all, fresh.fm) < 1e-5                  # measured 2.3e-6
    fa = f_model_abs(fresh.fc, fresh.fm, s.fmodel.sc, s.fmodel.s2, s.fmodel.scales)
    assert s.fmodel.r_work == pytest.approx(r_factor(fresh.fo, fa, fresh.work), abs=1e-5)
    assert s.fmodel.r_free == pytest.approx(r_factor(fresh.fo, fa, fresh.free), abs=3e-5)
    s.rescale_async()                                       # what the server does when idle
    t0 = time.monotonic()
    while not s.poll_rescale():
        assert time.monotonic() - t0 < 120
        time.sleep(0.05)
    assert rel(s.fc_all, s._full_fc()) < 1e-12             # exact again (the same FFT grid)
    assert rel(s.fc_all, fresh.fc) < 3e-6                  # rfactor's grid blurs less: B rose
    assert rel(s.fm_all, fresh.fm) < 1e-12
    assert s.fmodel.r_work == pytest.approx(fresh.r_work, abs=1e-5)
    assert s.fmodel.r_free == pytest.approx(fresh.r_free, abs=1e-5)


def test_session_refine_selection_moves_only_it_and_improves_cc(torch1):
    import densrefine as dr

    s = dr.Session(str(EXAMPLE / "helix_start.pdb"), str(EXAMPLE / "helix_3A.mrc"), 3.0)
    before = s.core.xyz.copy()
    cc0 = s.scores()["cc_mask"]
    out = s.refine("A/5-7", cycles=2)
    moved = np.flatnonzero(np.abs(s.core.xyz - before).max(1) > 0)
    assert set(moved) <= set(out["atoms"]) and len(moved) > 0
    assert out["cc_mask"] > cc0 + 0.005
    rep = dr.score(s.current_model(), dr.read_map(EXAMPLE / "helix_3A.mrc"), 3.0, fsc=False)
    assert out["cc_mask"] == pytest.approx(rep.cc_mask, abs=1e-6)


def test_background_rescale_equals_synchronous(xray_paths, torch1):
    import time

    import densrefine as dr
    from densrefine.live.xray import XrayLive

    model = dr.read_model(xray_paths[0])
    s = XrayLive(model, xray_paths[1], twin="off")
    sel = np.flatnonzero(model.atoms.res_index == model.atoms.res_index[5])
    s.update(sel, s.xyz[sel] + 0.3)
    s.rescale_async()
    t0 = time.monotonic()
    while not s.poll_rescale():
        assert time.monotonic() - t0 < 60
        time.sleep(0.05)
    r_bg = (s.fmodel.r_work, s.fmodel.r_free)
    s.rescale()
    assert r_bg == pytest.approx((s.fmodel.r_work, s.fmodel.r_free), abs=1e-9)
