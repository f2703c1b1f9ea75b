"""Partitioned refinement: blocks, halos, shifted passes, sub-models, the boundary check,
and one small end-to-end run on an in-process Dask cluster (threads)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from densrefine.build import ideal_peptide, with_cell_box
from densrefine.distributed.blockfit import _geometry, fit_partitioned, later_pass_config
from densrefine.distributed.partition import (
    axis_counts,
    chain_partition,
    halo_of,
    parse_mode,
    plan_partitions,
    sub_model,
)
from densrefine.errors import InputError
from densrefine.refine import load_config
from densrefine.types import Atoms, Model


def tiled(n_x=3, n_y=2, seq="AKLEAKLEAKLEAK", step=11.0) -> Model:
    """Helices on an n_x × n_y lattice, one chain each (A, B, ...)."""
    base = ideal_peptide(seq).atoms
    parts, nres = [], int(base.res_index.max()) + 1
    k = 0
    for i in range(n_x):
        for j in range(n_y):
            parts.append(base.replace(xyz=base.xyz + np.array([i * step, j * step, 0.0]),
                                      chain=np.full(len(base), chr(65 + k)),
                                      res_index=base.res_index + k * nres))
            k += 1
    fields = {f.name: np.concatenate([getattr(p, f.name) for p in parts])
              for f in dataclasses.fields(Atoms) if f.name != "u_aniso"}
    return Model(atoms=Atoms(**fields), space_group="P 1")


def test_parse_mode():
    assert parse_mode("AUTO") == "auto" and parse_mode("chains") == "chains"
    assert parse_mode("8") == 8
    for bad in ("1", "many", "0"):
        with pytest.raises(InputError, match="--partition"):
            parse_mode(bad)


def test_axis_counts_follow_the_extent():
    assert tuple(axis_counts([100, 10, 10], 4)) == (4, 1, 1)
    c = axis_counts([50, 50, 50], 8)
    assert tuple(c) == (2, 2, 2)


@pytest.mark.parametrize("mode", ["chains", 2, 4, "auto"])
def test_every_atom_in_one_block_of_whole_residues(mode):
    m = tiled()
    for part in plan_partitions(m, mode, passes=2, block_atoms=400):
        allidx = np.concatenate(part.blocks)
        assert np.array_equal(np.sort(allidx), np.arange(len(m)))
        label = part.block_of(len(m))
        for r in np.unique(m.atoms.res_index):              # residues are never cut
            assert len(np.unique(label[m.atoms.res_index == r])) == 1


def test_shifted_pass_puts_old_boundaries_inside_blocks():
    """Every peptide link cut by pass 1 lies inside one block of pass 2 (and vice versa
    for most), so no boundary stays unrefined."""
    m = ideal_peptide("AKLE" * 12, phi_psi=(-120.0, 130.0))   # one long strand: cut
    xyz = m.atoms.xyz - m.atoms.xyz.mean(0)
    _, _, vt = np.linalg.svd(xyz, full_matrices=False)          # its long axis along x
    m = m.with_atoms(m.atoms.replace(xyz=xyz @ vt.T))
    p1, p2 = plan_partitions(m, 4, passes=2)
    assert p1.label == "grid 4×1×1" and len(p1.blocks) == 4
    at = m.atoms
    c = np.flatnonzero(at.atom_name == "C")[:-1]
    n = np.flatnonzero(at.atom_name == "N")[1:]
    cut1 = p1.block_of(len(m))[c] != p1.block_of(len(m))[n]
    cut2 = p2.block_of(len(m))[c] != p2.block_of(len(m))[n]
    assert cut1.sum() >= 2 and not (cut1 & cut2).any()


def test_whole_chains_in_the_first_pass_of_many_small_chains():
    m = tiled(4, 3)                                     # 12 chains
    p1, p2 = plan_partitions(m, 2, passes=2)
    lab1 = p1.block_of(len(m))
    for ch in np.unique(m.atoms.chain):
        assert len(np.unique(lab1[m.atoms.chain == ch])) == 1
    assert "whole chains" in p1.label and "shifted" in p2.label


def test_chains_mode_needs_two_chains():
    with pytest.raises(InputError, match="one chain"):
        plan_partitions(ideal_peptide("AKLE"), "chains")


def test_halo_is_whole_residues_within_the_radius():
    m = tiled(2, 1)
    block = chain_partition(m.atoms).blocks[0]
    h = halo_of(m.atoms, block, 6.0)
    xyz = m.atoms.xyz
    assert not np.isin(h, block).any()
    d = np.linalg.norm(xyz[:, None] - xyz[block][None], axis=2).min(1)
    near = np.flatnonzero(d <= 6.0)
    assert np.isin(near[~np.isin(near, block)], h).all()
    ri = m.atoms.res_index
    assert np.isin(np.flatnonzero(np.isin(ri, ri[h])), np.concatenate([h, block])).all()


def test_sub_model_renumbers_residues():
    m = tiled(2, 1)
    idx = np.flatnonzero(m.atoms.chain == "B")
    s = sub_model(m, idx)
    assert len(s) == len(idx) and s.atoms.res_index.min() == 0
    assert s.atoms.res_index.max() == len(np.unique(m.atoms.res_index[idx])) - 1
    assert np.array_equal(s.atoms.xyz, m.atoms.xyz[idx])


def test_later_passes_use_the_finest_blur_and_fewer_cycles():
    cfg = later_pass_config(load_config({"cycles": 4, "stages": ["rigid", "xyz", "b"]}))
    assert cfg.stages == ["xyz", "b"] and cfg.cycles == 2 and cfg.map.blur_factors == [1.0]


def test_geometry_counts_each_restraint_once_and_finds_boundary_bonds():
    from densrefine.distributed.partition import Partition

    parts = [Partition("p", (np.array([0, 1]), np.array([2, 3])))]
    # both blocks report the bond 1-2 across their boundary (once each); 0-1 and 2-3 inside
    chk = [{"bonds": np.array([[0, 1], [1, 2]]), "bond_dev": np.array([0.01, 0.1]),
            "bond_sigma": np.array([0.02, 0.02]), "angles": np.array([[0, 1, 2]]),
            "angle_dev": np.array([2.0]), "labels": {1: "A/1/C", 2: "A/2/N"}},
           {"bonds": np.array([[2, 1], [2, 3]]), "bond_dev": np.array([0.1, -0.01]),
            "bond_sigma": np.array([0.02, 0.02]), "angles": np.array([[2, 1, 0]]),
            "angle_dev": np.array([2.0]), "labels": {}}]
    geom, bound = _geometry(chk, parts, 4)
    assert geom["n_bonds"] == 3 and geom["n_angles"] == 1
    assert geom["bond_rmsd"] == pytest.approx(np.sqrt((0.01**2 * 2 + 0.1**2) / 3))
    assert bound["bonds_across"] == 1 and bound["n_beyond"] == 1
    assert bound["max_abs_z"] == pytest.approx(5.0)
    assert bound["worst"][0]["atoms"] == ["A/1/C", "A/2/N"]


def test_partitioned_fit_end_to_end_in_process():
    """Two chains, chains mode, 2 passes on a threads-only Dask cluster: the model map
    gets better, nothing is lost, the boundary check ran on real restraints."""
    from distributed import Client

    from densrefine.perturb import perturb
    from densrefine.simulate import simulate

    truth, _ = with_cell_box(tiled(2, 1, seq="AKLEAKLE", step=10.0), margin=6.0)
    emap = simulate(truth, resolution=3.0, spacing=1.0, margin=6.0, method="fourier",
                    device="cpu")
    start = perturb(truth, rms=0.4, seed=1, rotamer_flips=0.0)
    cfg = {"stages": ["xyz"], "cycles": 1, "xyz_iterations": 15, "resolution_check": False}
    with Client(processes=False, n_workers=1, threads_per_worker=1,
                dashboard_address=None) as client:
        res = fit_partitioned(start, emap, 3.0, client=client, partition="chains", passes=2,
                              config=cfg)
    s = res.stats
    assert s["status"] == "finished" and len(res.model) == len(start)
    assert s["after"]["cc_mask"] > s["before"]["cc_mask"]
    assert [len(p["blocks"]) for p in s["partition"]["passes"]] == [2, 2]
    assert s["after"]["geometry"]["n_bonds"] > 0
    assert s["partition"]["boundary"]["bonds_across"] == 0       # chains: no link between
    assert s["partition"]["peak_rss_mb_per_worker"] > 0
    rmsd = lambda a, b: np.sqrt(((a.atoms.xyz - b.atoms.xyz) ** 2).sum(1).mean())
    assert rmsd(res.model, truth) < rmsd(start, truth)


def test_cycle_geometry_counts_only_restraints_with_a_moving_atom():
    """A block's weight control sees the bonds it can change, not its fixed halo's."""
    from types import SimpleNamespace

    from densrefine.restraints.stats import bond_angle_rmsd

    xyz = np.array([[0, 0, 0], [1.6, 0, 0], [3.6, 0, 0], [5.6, 0, 0]], float)
    rs = SimpleNamespace(bonds=np.array([[0, 1], [1, 2], [2, 3]]),
                         bond_ideal=np.array([1.5, 1.5, 1.5]),
                         angles=np.array([[0, 1, 2], [1, 2, 3]]),
                         angle_ideal=np.array([180.0, 170.0]))
    moving = np.array([True, False, False, False])
    every = bond_angle_rmsd(xyz, rs)
    assert every["bond_rmsd"] == pytest.approx(np.sqrt((0.01 + 0.25 + 0.25) / 3))
    assert every["angle_rmsd"] == pytest.approx(np.sqrt(100 / 2))
    part = bond_angle_rmsd(xyz, rs, moving)     # bonds 1-2, 2-3 and angle 1-2-3: all fixed
    assert part["bond_rmsd"] == pytest.approx(0.1)
    assert part["angle_rmsd"] == pytest.approx(0.0, abs=1e-6)
    assert bond_angle_rmsd(xyz, rs, np.ones(4, bool)) == every


def test_later_passes_refine_only_atoms_next_to_the_last_boundaries():
    """Pass 2 refines the atoms that moved next to another block's moving atoms in pass 1
    (their halo); an atom far from every boundary keeps its pass-1 position."""
    from densrefine.distributed.blockfit import _stale

    moving = np.ones(6, bool)
    tasks = [{"index": np.array([0, 1, 2, 3]), "select": np.array([True, True, True, False])},
             {"index": np.array([2, 3, 4, 5]), "select": np.array([False, True, True, True])}]
    assert _stale(tasks, moving).tolist() == [False, False, True, True, False, False]
    moving[3] = False                               # a halo atom that did not move: not stale
    assert _stale(tasks, moving).tolist() == [False, False, True, False, False, False]


def test_grid_pass_two_redoes_only_atoms_next_to_pass_one_boundaries():
    """Grid mode: pass 2 gives new positions to exactly the atoms pass 1 refined next to
    a boundary; the merged model fits the map better than the start, with no bond beyond
    4σ anywhere (the seams between the passes' atoms included)."""
    from distributed import Client

    from densrefine.perturb import perturb
    from densrefine.simulate import simulate

    truth, _ = with_cell_box(tiled(2, 1, seq="AKLEAKLEAKLE", step=9.0), margin=6.0)
    emap = simulate(truth, resolution=3.0, spacing=1.0, margin=6.0, method="fourier",
                    device="cpu")
    start = perturb(truth, rms=0.4, seed=2, rotamer_flips=0.0)
    # the tiled ideal helices clash with each other (clashscore 417 with H placed): riding
    # hydrogens and the stronger final nonbonded term (map defaults) would pull this
    # synthetic model off its own map (CC_mask 0.959 → 0.89), so the test, which is about
    # the passes, keeps the plain nonbonded term the synthetic truth was built under
    cfg = {"stages": ["xyz"], "cycles": 1, "xyz_iterations": 15, "resolution_check": False,
           "riding_hydrogens": False, "weights": {"nonbonded_final": None}}
    with Client(processes=False, n_workers=1, threads_per_worker=1,
                dashboard_address=None) as client:
        res = fit_partitioned(start, emap, 3.0, client=client, partition=2, passes=2,
                              config=cfg)
    s = res.stats
    one, two = s["partition"]["passes"]
    assert one["updated_atoms"] == len(start)
    assert 0 < one["near_boundary_atoms"] < len(start)
    assert two["updated_atoms"] == one["near_boundary_atoms"]
    assert s["after"]["cc_mask"] > s["before"]["cc_mask"]
    # where pass-2 atoms meet pass-1 atoms bonds reached 5.7σ here before `_mend`
    assert s["after"]["geometry"]["n_bonds_beyond"] == 0
