"""Unit tests of densrefine.refine on a synthetic peptide with stand-in restraints."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from densrefine import InputError
from densrefine.build import ideal_peptide, with_cell_box
from densrefine.refine import fit, load_config, parse_selection, select_atoms
from densrefine.refine.rigid import rotation
from densrefine.report import write_json_atomic
from densrefine.simulate import simulate

from .refine_standin import patch_geometry


FAST = {"rigid_iterations": 15, "xyz_iterations": 8, "b_iterations": 8, "cycles": 2,
        "map": {"blur_factors": [2.0, 1.0]}}


def _cfg(**kw):
    return {**FAST, **kw}


@pytest.fixture(scope="module")
def truth():
    m, _ = with_cell_box(ideal_peptide("AKELVSAE"), margin=7.0)
    emap = simulate(m, resolution=3.0, spacing=1.0, margin=7.0, method="fourier", device="cpu")
    return m, emap


def _rmsd(a, b):
    return float(np.sqrt(((a - b) ** 2).sum(1).mean()))


def _moved(model, shift, angle_deg=0.0):
    import torch

    x = model.atoms.xyz
    c = x.mean(0)
    rot = rotation(torch.tensor([[0.0, 0.0, math.radians(angle_deg)]], dtype=torch.float64))
    y = (x - c) @ rot[0].numpy().T + c + np.asarray(shift)
    return model.with_atoms(model.atoms.replace(xyz=y))


def test_rigid_body_recovers_a_rigid_shift(truth, monkeypatch):
    patch_geometry(monkeypatch)
    m, emap = truth
    start = _moved(m, (0.9, -0.6, 0.5), angle_deg=4.0)
    assert _rmsd(start.atoms.xyz, m.atoms.xyz) > 1.0
    res = fit(start, emap, 3.0, config=_cfg(stages="rigid", rigid_iterations=30),
              device="cpu")
    assert _rmsd(res.model.atoms.xyz, m.atoms.xyz) < 0.1
    assert res.stats["after"]["cc_mask"] > res.stats["before"]["cc_mask"]
    assert res.stats["status"] == "finished"


def test_selection_keeps_unselected_atoms_exactly_fixed(truth, monkeypatch):
    patch_geometry(monkeypatch)
    m, emap = truth
    start = _moved(m, (0.4, 0.0, -0.3))
    res = fit(start, emap, 3.0, config=_cfg(), select="A/3-5",
              device="cpu")
    sel = select_atoms(start.atoms, "A/3-5")
    assert 0 < sel.sum() < len(sel)
    np.testing.assert_array_equal(res.model.atoms.xyz[~sel], start.atoms.xyz[~sel])
    np.testing.assert_array_equal(res.model.atoms.b_iso[~sel], start.atoms.b_iso[~sel])
    assert _rmsd(res.model.atoms.xyz[sel], start.atoms.xyz[sel]) > 0.05


def test_stats_json_valid_after_every_cycle(truth, monkeypatch, tmp_path):
    patch_geometry(monkeypatch)
    m, emap = truth
    path = tmp_path / "s_stats.json"
    seen = []

    def cb(stats):
        write_json_atomic(path, stats)
        seen.append(json.loads(path.read_text()))

    fit(_moved(m, (0.3, 0.2, 0.0)), emap, 3.0, config=_cfg(), device="cpu", callback=cb)
    assert len(seen) >= 5  # start, rigid cycles, 2 xyz cycles, b, end
    for s in seen:
        for key in ("program", "version", "versions", "device", "status", "input", "config",
                    "before", "cycles", "after", "timings"):
            assert key in s
        assert s["before"]["cc_mask"] is not None and "bond_rmsd" in s["before"]["geometry"]
    assert [len(s["cycles"]) for s in seen] == sorted(len(s["cycles"]) for s in seen)
    last = seen[-1]
    assert last["status"] == "finished" and last["after"]["cc_mask"] > 0.5
    assert last["rmsd_moved"] > 0.05
    for c in last["cycles"]:
        assert {"stage", "cycle", "blur", "weight", "cc_mask_term", "bond_rmsd"} <= set(c)
    assert {c["stage"] for c in last["cycles"]} == {"rigid", "sse", "chi1", "xyz", "b"}


def test_deterministic_with_seed(truth, monkeypatch):
    patch_geometry(monkeypatch)
    m, emap = truth
    start = _moved(m, (0.3, -0.2, 0.1))
    cfg = {"stages": "xyz", "cycles": 1, "xyz_iterations": 5}
    a = fit(start, emap, 3.0, config=cfg, device="cpu", seed=3).model.atoms.xyz
    b = fit(start, emap, 3.0, config=cfg, device="cpu", seed=3).model.atoms.xyz
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("resolution", [0.0, -3.0, 1000.0, float("nan")])
def test_bad_resolution_is_one_line_input_error(truth, resolution):
    m, emap = truth
    with pytest.raises(InputError) as exc:
        fit(m, emap, resolution, device="cpu")
    assert "\n" not in str(exc.value) and "resolution" in str(exc.value)


def test_missing_resolution_is_estimated_and_recorded(truth, monkeypatch):
    patch_geometry(monkeypatch)
    m, emap = truth
    res = fit(_moved(m, (0.3, 0.0, 0.0)), emap, None, config=_cfg(stages="rigid"),
              device="cpu")
    est = res.stats["input"]["resolution_estimate"]
    assert abs(est["d_model"] - 3.0) < 0.3  # the map was simulated at 3.0 Å
    assert res.stats["input"]["resolution"] == pytest.approx(est["d_model"])


def test_no_overlap_is_one_line_input_error(truth):
    m, emap = truth
    far = _moved(m, (500.0, 500.0, 500.0))
    with pytest.raises(InputError) as exc:
        fit(far, emap, 3.0, device="cpu")
    assert "\n" not in str(exc.value) and "map" in str(exc.value)


def test_nan_stops_and_keeps_last_good_model(truth, monkeypatch):
    patch_geometry(monkeypatch)
    from densrefine.refine.mapterm import MapTerm

    m, emap = truth
    calls = {"n": 0}
    orig = MapTerm.target

    def flaky(self, *a, **k):
        calls["n"] += 1
        out = orig(self, *a, **k)
        return out * float("nan") if calls["n"] > 12 else out

    monkeypatch.setattr(MapTerm, "target", flaky)
    res = fit(_moved(m, (0.3, 0.0, 0.0)), emap, 3.0, config=_cfg(stages="xyz"), device="cpu")
    assert res.stats["status"].startswith("stopped")
    assert np.isfinite(res.model.atoms.xyz).all()


def test_zero_occupancy_and_hydrogen_excluded_from_map_term(truth, monkeypatch):
    patch_geometry(monkeypatch)
    from densrefine.refine.mapterm import MapTerm

    m, emap = truth
    occ = m.atoms.occ.copy()
    occ[:3] = 0.0
    seen = {}
    orig = MapTerm.__init__

    def spy(self, *a, **k):
        orig(self, *a, **k)
        seen["atoms"] = self.atoms

    monkeypatch.setattr(MapTerm, "__init__", spy)
    fit(m.with_atoms(m.atoms.replace(occ=occ)), emap, 3.0,
        config={"stages": "xyz", "cycles": 1, "xyz_iterations": 2}, device="cpu")
    assert not set(range(3)) & set(seen["atoms"].tolist())
    assert len(seen["atoms"]) == len(m) - 3


def test_lsq_target_also_improves_fit(truth, monkeypatch):
    patch_geometry(monkeypatch)
    m, emap = truth
    start = _moved(m, (0.5, -0.3, 0.2), angle_deg=2.0)
    res = fit(start, emap, 3.0, config=_cfg(stages="rigid", map={"target": "lsq", "blur_factors": [2.0, 1.0]}),
              device="cpu")
    assert _rmsd(res.model.atoms.xyz, m.atoms.xyz) < 0.15


def _halves(emap, seed=0, sigma=0.3):
    """Two half maps made here from one map: independent Gaussian noise on each (there are
    no real half maps in ../shared/data)."""
    rng = np.random.default_rng(seed)
    v = np.asarray(emap.values, np.float64)
    s = sigma * float(v.std())
    return tuple(emap.with_values((v + rng.normal(0, s, v.shape)).astype(np.float32))
                 for _ in range(2))


def test_half_maps_refine_on_one_and_validate_on_the_other(truth, monkeypatch):
    patch_geometry(monkeypatch)
    m, emap = truth
    h1, h2 = _halves(emap)
    start = _moved(m, (0.4, -0.3, 0.2), angle_deg=2.0)
    res = fit(start, None, 3.0, half_maps=(h1, h2), config=_cfg(stages="rigid,xyz"),
              device="cpu")
    assert _rmsd(res.model.atoms.xyz, m.atoms.xyz) < 0.3
    hm = res.stats["half_maps"]
    assert hm["work"] == "half1" and hm["free_is_independent"]
    assert len(hm["cc_per_cycle"]) == len(res.cycles)
    first, last = res.cycles[0], res.cycles[-1]
    assert last["cc_free"] > first["cc_free"] - 0.02          # the fit helps the free half
    assert abs(last["cc_work"] - last["cc_free"]) < 0.1        # same noise level on both
    assert 0.5 < hm["fsc_average_free"] <= hm["fsc_average_work"] + 0.05
    assert res.stats["input"]["data"] == "half maps"


def test_half_maps_bad_input(truth, monkeypatch):
    patch_geometry(monkeypatch)
    m, emap = truth
    h1, h2 = _halves(emap)
    with pytest.raises(InputError, match="identical to the other half map"):
        fit(m, None, 3.0, half_maps=(h1, h1), device="cpu")
    with pytest.raises(InputError, match="identical to the full map"):
        fit(m, emap, 3.0, half_maps=(emap, h2), device="cpu")
    small = simulate(m, resolution=3.0, spacing=1.1, margin=7.0, method="fourier", device="cpu")
    with pytest.raises(InputError, match="differs from"):
        fit(m, None, 3.0, half_maps=(h1, small), device="cpu")
    with pytest.raises(InputError, match="full map's grid differs"):
        fit(m, small, 3.0, half_maps=(h1, h2), device="cpu")


def test_selection_syntax():
    assert parse_selection("A/10-40, B ,C/5") == [("A", 10, 40), ("B", None, None),
                                                  ("C", 5, 5)]
    assert parse_selection("A/-3-12") == [("A", -3, 12)]
    for bad in ("A/10-", "A/40-10", "/3", ""):
        with pytest.raises(InputError):
            parse_selection(bad)
    m = ideal_peptide("AKE")
    with pytest.raises(InputError, match="matches no atom"):
        select_atoms(m.atoms, "B")
    assert select_atoms(m.atoms, "A/2").sum() == int((m.atoms.res_seq == 2).sum())


def test_config_yaml_roundtrip_and_errors(tmp_path):
    from densrefine.refine import dump_config

    cfg = load_config({"stages": "xyz,rigid", "weights": {"weight": 20.0}})
    assert cfg.stages == ["rigid", "xyz"] and cfg.weights.weight == 20.0
    p = tmp_path / "c.yaml"
    p.write_text(dump_config(cfg))
    again = load_config(path=str(p))
    assert again.to_dict() == cfg.to_dict()
    for bad in ({"stages": "xyz,foo"}, {"cycles": -1}, {"nope": 1}, {"map": {"target": "x"}},
                {"weights": {"target_bond_rmsd": 0.5}}):
        with pytest.raises(InputError):
            load_config(bad)


def test_rotation_is_orthonormal():
    import torch

    rot = rotation(torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.0, 0.0]], dtype=torch.float64))
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(rot[0] @ rot[0].T, eye) and torch.allclose(rot[1], eye)
    assert abs(float(torch.linalg.det(rot[0])) - 1.0) < 1e-12


def _two_chains():
    import dataclasses

    from densrefine.types import Atoms, Model

    a, b = ideal_peptide("AKELV", chain="A").atoms, ideal_peptide("SAEKL", chain="B").atoms
    b = b.replace(xyz=b.xyz + np.array([16.0, 0.0, 0.0]), res_index=b.res_index + 5)
    kw = {f.name: np.concatenate([getattr(a, f.name), getattr(b, f.name)])
          for f in dataclasses.fields(Atoms) if getattr(a, f.name) is not None}
    m = Model(Atoms(**kw))
    return with_cell_box(m, margin=7.0)[0]


@pytest.mark.parametrize("rigid_chains", [False, True])
def test_rigid_body_per_chain_moves_chains_independently(monkeypatch, rigid_chains):
    """Chain B off its density, chain A in it: the whole-model move (a compromise that moves
    A away) is undone and each chain moves on its own, whatever ``rigid_chains`` says."""
    patch_geometry(monkeypatch)
    m = _two_chains()
    emap = simulate(m, resolution=3.0, spacing=1.0, margin=7.0, method="fourier", device="cpu")
    chain_b = m.atoms.chain == "B"
    x = m.atoms.xyz.copy()
    x[chain_b] += np.array([0.0, 0.8, -0.6])
    start = m.with_atoms(m.atoms.replace(xyz=x))
    res = fit(start, emap, 3.0, config=_cfg(stages="rigid", rigid_iterations=30,
                                            rigid_chains=rigid_chains), device="cpu")
    groups = [c.get("groups") for c in res.cycles]
    assert groups == ["model", "chains"]
    assert res.stats["rigid_model_move"] == "undone"
    change = res.stats["rigid_chain_cc_change"]
    assert change["A"] < -0.002 < change["B"], change
    assert _rmsd(res.model.atoms.xyz, m.atoms.xyz) < 0.1
    assert _rmsd(res.model.atoms.xyz[~chain_b], m.atoms.xyz[~chain_b]) < 0.05


def test_whole_model_move_kept_when_every_chain_agrees(monkeypatch):
    """Both chains off by the same shift: the whole-model move helps each, is kept, and the
    chain level runs only with ``rigid_chains``."""
    patch_geometry(monkeypatch)
    m = _two_chains()
    emap = simulate(m, resolution=3.0, spacing=1.0, margin=7.0, method="fourier", device="cpu")
    start = _moved(m, (0.5, -0.6, 0.4))
    res = fit(start, emap, 3.0, config=_cfg(stages="rigid", rigid_iterations=30,
                                            rigid_chains=False), device="cpu")
    assert [c.get("groups") for c in res.cycles] == ["model"]
    assert res.stats["rigid_model_move"] == "kept"
    assert min(res.stats["rigid_chain_cc_change"].values()) > 0
    assert _rmsd(res.model.atoms.xyz, m.atoms.xyz) < 0.1


def test_map_is_boxed_around_the_selection(truth, monkeypatch):
    patch_geometry(monkeypatch)
    from densrefine.refine.mapterm import MapTerm

    m, emap = truth
    seen = {}
    orig = MapTerm.__init__

    def spy(self, *a, **k):
        orig(self, *a, **k)
        seen["shape"] = self.grid.shape

    monkeypatch.setattr(MapTerm, "__init__", spy)
    fit(m, emap, 3.0, config=_cfg(stages="xyz", cycles=1, xyz_iterations=1), select="A/1",
        device="cpu")
    assert np.prod(seen["shape"]) < 0.6 * emap.values.size


def test_sse_groups_cover_atoms_and_respect_chains():
    from densrefine.refine.sse import sse_groups

    m = _two_chains()
    groups, labels = sse_groups(m)
    allidx = np.concatenate(groups)
    assert len(allidx) == len(m) == len(np.unique(allidx))
    assert set(labels) <= {"H", "E", "C"}
    assert all(len(set(m.atoms.chain[g])) == 1 for g in groups)
    helix, labels = sse_groups(ideal_peptide("AKELVSAEKLAKELVSAE"))
    assert labels == ["H"]
    moving = np.zeros(len(m), bool)
    moving[:10] = True
    assert np.concatenate(sse_groups(m, moving)[0]).tolist() == list(range(10))


def _flip_chi1(m, resname="LEU"):
    from densrefine.perturb import flip_groups
    from densrefine.refine.rotamer import _rotate

    ca, cb, rot = next(g for g in flip_groups(m) if m.atoms.res_name[g[0]] == resname)
    x = m.atoms.xyz.copy()
    axis = (x[cb] - x[ca]) / np.linalg.norm(x[cb] - x[ca])
    x[rot] = _rotate(x[rot], x[cb], axis, 2 * np.pi / 3)
    return m.with_atoms(m.atoms.replace(xyz=x)), rot


def test_chi1_scan_restores_a_flipped_side_chain(truth):
    from densrefine.refine.rotamer import scan_chi1
    from densrefine.simulate import GridFrame

    m, emap = truth
    start, rot = _flip_chi1(m)
    assert _rmsd(start.atoms.xyz[rot], m.atoms.xyz[rot]) > 1.0
    new, changed, scanned = scan_chi1(m, start.atoms.xyz, np.ones(len(m), bool),
                                      emap.values, GridFrame.from_grid(emap))
    assert changed == 1 and scanned >= 4
    assert _rmsd(new, m.atoms.xyz) < 1e-6
    # the unperturbed model is left alone
    same, changed, _ = scan_chi1(m, m.atoms.xyz, np.ones(len(m), bool), emap.values,
                                 GridFrame.from_grid(emap))
    assert changed == 0 and np.array_equal(same, m.atoms.xyz)


def _place_near(target, dist, away, rng):
    """A point ``dist`` Å from ``target`` and ≥ 2.8 Å from every point of ``away``."""
    for _ in range(5000):
        u = rng.normal(size=3)
        q = target + dist * u / np.linalg.norm(u)
        if np.linalg.norm(away - q, axis=1).min() >= 2.8:
            return q
    raise AssertionError("no free direction")


def test_chi1_scan_contact_limit_is_relative_to_the_current_side_chain(truth):
    """The correct rotamer, given a contact 0.2 Å closer than the current wrong side
    chain's closest one (or than 2.6 Å), is refused; once the current one has a contact
    closer still (a displaced neighbour), it is taken."""
    from densrefine.refine.rotamer import CLASH, scan_chi1
    from densrefine.simulate import GridFrame

    m, emap = truth
    start, rot = _flip_chi1(m)
    x0, x_true = start.atoms.xyz.copy(), m.atoms.xyz
    res = np.asarray(m.atoms.res_index)
    own = np.flatnonzero(res == res[rot[0]])
    others = np.flatnonzero(res != res[rot[0]])
    now = min(CLASH, float(np.linalg.norm(x0[rot][:, None] - x0[others][None], axis=2).min()))
    far = others[np.argsort(-np.linalg.norm(x_true[others] - x_true[rot[0]], axis=1))[:2]]
    rng = np.random.default_rng(0)
    frame, ones = GridFrame.from_grid(emap), np.ones(len(m), bool)
    leaf = rot[-1]
    x = x0.copy()
    x[far[0]] = _place_near(x_true[leaf], now - 0.2,
                            np.vstack([x_true[own[own != leaf]], x0[own]]), rng)
    refused, changed, _ = scan_chi1(m, x, ones, emap.values, frame)
    assert changed == 0 and np.array_equal(refused, x)
    x[far[1]] = _place_near(x0[leaf], now - 0.4, np.vstack([x_true[own], x0[own[own != leaf]],
                                                            x[far[0]][None]]), rng)
    taken, changed, _ = scan_chi1(m, x, ones, emap.values, frame)
    assert changed == 1 and _rmsd(taken[rot], x_true[rot]) < 1e-6


@pytest.mark.parametrize("resname", ["LEU", "GLU", "LYS"])
def test_chi2_scan_restores_a_chi2_flip_and_chi1_only_cannot(truth, resname):
    from densrefine.perturb import flip_groups
    from densrefine.refine.rotamer import _rotate, chi2_part, scan_chi1
    from densrefine.simulate import GridFrame

    m, emap = truth
    ca, cb, rot = next(g for g in flip_groups(m) if m.atoms.res_name[g[0]] == resname)
    cg, beyond, angles = chi2_part(m, rot)
    assert set(m.atoms.atom_name[beyond]) >= {"CD"} or resname == "LEU"
    assert cg not in beyond and cb not in beyond
    x = m.atoms.xyz.copy()
    axis = (x[cg] - x[cb]) / np.linalg.norm(x[cg] - x[cb])
    x[beyond] = _rotate(x[beyond], x[cg], axis, 2 * np.pi / 3)
    assert _rmsd(x[beyond], m.atoms.xyz[beyond]) > 1.0
    frame, ones = GridFrame.from_grid(emap), np.ones(len(m), bool)
    only1, _, _ = scan_chi1(m, x, ones, emap.values, frame, chi2=False)
    assert _rmsd(only1[beyond], m.atoms.xyz[beyond]) > 0.5
    new, changed, _ = scan_chi1(m, x, ones, emap.values, frame, chi2=True)
    assert changed == 1 and _rmsd(new, m.atoms.xyz) < 1e-6
    # the unperturbed model is left alone by the χ1 × χ2 scan too
    _, changed, _ = scan_chi1(m, m.atoms.xyz, ones, emap.values, frame, chi2=True)
    assert changed == 0


def test_reference_restraints_reduce_movement(truth, monkeypatch):
    patch_geometry(monkeypatch)
    m, emap = truth
    start = _moved(m, (0.4, -0.3, 0.0))
    moved = {}
    for sigma in (None, 0.05):
        res = fit(start, emap, 3.0, config=_cfg(stages="xyz", reference_sigma=sigma),
                  device="cpu")
        moved[sigma] = _rmsd(res.model.atoms.xyz, start.atoms.xyz)
    assert moved[0.05] < 0.5 * moved[None]
    with pytest.raises(InputError, match="reference"):
        load_config({"reference_sigma": -1.0})
