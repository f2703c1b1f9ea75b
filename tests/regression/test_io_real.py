"""Model and map I/O on the real data in ../shared/data (see its README)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from densrefine.io import model_summary, read_map, read_model, write_map, write_model
from tests.conftest import ALL_MODELS, require_data

_COUNTS = ("atoms", "residues", "hydrogens", "waters", "ligands", "chains", "altloc_atoms",
           "anisotropic")


def _same_sites(a, b):
    np.testing.assert_allclose(a.xyz, b.xyz, atol=5e-4 + 1e-9)  # PDB keeps 3 decimals
    np.testing.assert_allclose(a.b_iso, b.b_iso, atol=5e-3 + 1e-6)
    np.testing.assert_allclose(a.occ, b.occ, atol=5e-3 + 1e-6)
    for f in ("element", "atomic_number", "charge", "chain", "res_name", "res_seq", "icode",
              "atom_name", "altloc", "het", "res_index"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert (a.u_aniso is None) == (b.u_aniso is None)
    if a.u_aniso is not None:
        np.testing.assert_allclose(a.u_aniso, b.u_aniso, atol=1e-4)


def _outputs(name):
    """PDB→PDB and PDB→CIF for PDB inputs, CIF→CIF and CIF→PDB for mmCIF inputs."""
    return ["out.pdb", "out.cif"] if ".pdb" in name else ["out.cif", "out.pdb.gz"]


@pytest.mark.parametrize("folder,name", ALL_MODELS)
def test_model_round_trip(tmp_path, folder, name):
    m = read_model(require_data(folder, name))
    summary = model_summary(m)
    for out in _outputs(name):
        m2 = read_model(write_model(m, tmp_path / out))
        _same_sites(m.atoms, m2.atoms)
        assert m2.cell == m.cell and m2.space_group == m.space_group
        s2 = model_summary(m2)
        assert {k: s2[k] for k in _COUNTS} == {k: summary[k] for k in _COUNTS}, out


@pytest.mark.parametrize("folder,name", ALL_MODELS)
def test_written_model_carries_new_xyz(tmp_path, folder, name, rng):
    m = read_model(require_data(folder, name))
    new_xyz = m.atoms.xyz + rng.normal(scale=0.3, size=m.atoms.xyz.shape)
    moved = m.with_atoms(m.atoms.replace(xyz=new_xyz))
    for out in ("moved.cif", "moved.pdb"):
        back = read_model(write_model(moved, tmp_path / out, inputs=[m.path]))
        np.testing.assert_allclose(back.atoms.xyz, new_xyz, atol=5e-4 + 1e-9)
        np.testing.assert_array_equal(back.atoms.atom_name, m.atoms.atom_name)


def test_known_counts():
    s = model_summary(read_model(require_data("5a3h", "5a3h.pdb.gz")))
    assert (s["atoms"], s["waters"], s["ligands"]) == (2765, 348, {"BGC": 1, "G2F": 1})
    assert s["altlocs"] == ["A", "B"] and s["space_group"] == "P 21 21 21"
    s = model_summary(read_model(require_data("emd-2566_3j6b-chain9", "3J6B_9.pdb.gz")))
    assert (s["atoms"], s["hydrogens"], s["cell"]) == (2865, 1437, None)
    s = model_summary(read_model(require_data("5e5z", "5e5z.pdb.gz")))
    assert s["anisotropic"] == 46 and s["cell"][4] == pytest.approx(101.22)


# --------------------------------------------------------------------------- maps

def _mean_at_atoms(grid, xyz):
    """Trilinear interpolation of grid values at Cartesian positions (N, 3)."""
    ijk = grid.xyz_to_index(xyz)  # (i, j, k) = (x, y, z)
    return float(map_coordinates(grid.values.astype(np.float64), ijk[:, ::-1].T, order=1,
                                 mode="nearest").mean())


def test_emd21457_three_conventions_agree():
    d = "emd-21457_6vyb-ntd"
    g_org = read_map(require_data(d, "emd_21457_seg.mrc"))
    g_nst = read_map(require_data(d, "emd_21457_seg_nstart.mrc"))
    g_0 = read_map(require_data(d, "emd_21457_seg_orig0.mrc"))
    np.testing.assert_array_equal(g_org.values, g_nst.values)
    np.testing.assert_array_equal(g_org.values, g_0.values)
    np.testing.assert_allclose(g_org.origin, [162.75, 231.0, 204.75], atol=1e-3)
    np.testing.assert_allclose(g_nst.origin, g_org.origin, atol=1e-4)
    np.testing.assert_array_equal(g_0.origin, [0, 0, 0])
    ijk = np.array([[0, 0, 0], [10, 20, 30], [47, 39, 46]])
    np.testing.assert_allclose(g_org.index_to_xyz(ijk), g_nst.index_to_xyz(ijk), atol=1e-4)
    # the shifted model is the model moved by exactly the origin difference
    model = read_model(require_data(d, "6vyb_Ndom.pdb.gz")).atoms.xyz
    shifted = read_model(require_data(d, "6vyb_Ndom_shifted.pdb.gz")).atoms.xyz
    np.testing.assert_allclose(model - shifted, np.broadcast_to(g_org.origin - g_0.origin,
                                                                model.shape), atol=2e-3)
    # same voxel for each model/map pair, same density at the atoms
    np.testing.assert_allclose(g_org.xyz_to_index(model), g_0.xyz_to_index(shifted), atol=2e-3)
    v = [_mean_at_atoms(g, x) for g, x in ((g_org, model), (g_nst, model), (g_0, shifted))]
    assert v[0] == pytest.approx(v[1], rel=1e-4) and v[0] == pytest.approx(v[2], rel=1e-4)
    assert v[0] > g_org.values.mean() + g_org.values.std()  # atoms sit in density


def test_emd11007_axis_order_matches_gemmi():
    import gemmi

    path = require_data("emd-11007_6yyt-rna", "emd_11007_rna_box.map")
    g = read_map(path)
    assert g.axis_order == (3, 2, 1)
    assert g.shape_xyz == (113, 48, 54) and g.start.tolist() == [9, 91, 104]
    np.testing.assert_allclose(g.voxel_size, [0.834] * 3, rtol=1e-6)
    m = gemmi.read_ccp4_map(str(path))
    m.setup(float("nan"))
    arr = np.array(m.grid, copy=False)  # [x, y, z], whole 240³ cell
    sx, sy, sz = g.start
    nx, ny, nz = g.shape_xyz
    np.testing.assert_array_equal(arr[sx:sx + nx, sy:sy + ny, sz:sz + nz].transpose(2, 1, 0),
                                  g.values)
    for ijk in ([0, 0, 0], [112, 47, 53], [50, 10, 20]):
        p = m.grid.get_position(*(int(a) for a in np.add(ijk, g.start)))
        np.testing.assert_allclose(g.index_to_xyz(ijk), [p.x, p.y, p.z], atol=1e-4)
    xyz = read_model(require_data("emd-11007_6yyt-rna", "6yyt_rna.pdb.gz")).atoms.xyz
    ours = _mean_at_atoms(g, xyz)
    theirs = float(np.mean(m.grid.interpolate_position_array(xyz)))
    assert ours == pytest.approx(7.77, abs=0.01)  # README: gemmi trilinear 7.77
    assert ours == pytest.approx(theirs, rel=1e-4)


@pytest.mark.parametrize("folder,name", [
    ("emd-3488_5ni1", "emd_3488.mrc"), ("emd-21457_6vyb-ntd", "emd_21457_seg.mrc"),
    ("emd-2566_3j6b-chain9", "2566_3J6B_9.mrc"), ("emd-11007_6yyt-rna", "emd_11007_rna_box.map"),
])
def test_real_map_write_round_trip(tmp_path, folder, name):
    import gemmi

    g = read_map(require_data(folder, name))
    back = read_map(write_map(g, tmp_path / "copy.mrc"))
    np.testing.assert_array_equal(back.values, g.values)
    np.testing.assert_allclose(back.origin, g.origin, atol=1e-4)
    np.testing.assert_allclose(back.voxel_size, g.voxel_size, rtol=1e-6)
    assert back.axis_order == (1, 2, 3)
    # origins of these maps lie on their grids, so gemmi (NSTART only) agrees too
    m = gemmi.read_ccp4_map(str(tmp_path / "copy.mrc"))
    m.setup(float("nan"))
    p = m.grid.get_position(*(int(s) for s in back.start))
    frac = (np.array([p.x, p.y, p.z]) - g.origin) / np.array(g.cell.parameters[:3])
    np.testing.assert_allclose(frac - np.round(frac), 0, atol=1e-5)  # same point modulo the cell
