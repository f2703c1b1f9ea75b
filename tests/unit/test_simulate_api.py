"""`densrefine.simulate.simulate` and the `densrefine simulate` command on synthetic data."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import densrefine as dr
from densrefine import DensrefineWarning, Grid, InputError, Model
from densrefine.cli import main as cli_main
from densrefine.simulate import box_around, default_blur, refmac_blur, simulate, simulate_tensor
from densrefine.grid import GridFrame
from tests.unit.test_scattering import make_atoms

XYZ = np.array([[10.0, 11.0, 12.0], [11.4, 11.2, 12.3], [12.1, 12.4, 12.0],
                [13.5, 12.3, 11.6], [10.2, 9.7, 13.1]])


@pytest.fixture
def model():
    return Model(make_atoms(["N", "C", "C", "O", "S"], xyz=XYZ, b=25.0))


@pytest.fixture
def like():
    return Grid.box((30, 28, 26), 0.9, origin=(0.0, 0.5, 1.0))


def test_like_frame_and_values(model, like):
    sim = simulate(model, like, resolution=3.0, device="cpu")
    assert sim.shape == like.shape and sim.values.dtype == np.float32
    np.testing.assert_array_equal(sim.origin, like.origin)
    np.testing.assert_array_equal(sim.voxel_size, like.voxel_size)
    t = simulate(model, like, resolution=3.0, device="cpu", return_tensor=True)
    assert isinstance(t, torch.Tensor) and t.shape == like.shape
    from densrefine.density import iam
    ref = simulate_tensor(torch.tensor(XYZ), torch.full((5,), 25.0, dtype=torch.float64),
                          torch.ones(5, dtype=torch.float64),
                          iam.coefficients(model.atoms, "electron"), GridFrame.from_grid(like),
                          blur=default_blur(3.0))
    np.testing.assert_allclose(sim.values, ref.numpy(), rtol=1e-4, atol=1e-6)


def test_box_around_model(model):
    sim = simulate(model, resolution=3.0, device="cpu")             # spacing d/3, margin 5 Å
    np.testing.assert_allclose(sim.voxel_size, 1.0)
    assert all(n % 2 == 0 for n in sim.shape)
    centre = sim.origin + 0.5 * (np.array(sim.shape_xyz) - 1) * sim.voxel_size
    np.testing.assert_allclose(centre, 0.5 * (XYZ.min(0) + XYZ.max(0)), atol=1e-9)
    assert np.all(sim.extent >= XYZ.max(0) - XYZ.min(0) + 10.0)
    boxed = simulate(model, resolution=3.0, box=(16, 18, 20), spacing=0.8, device="cpu")
    assert boxed.shape_xyz == (16, 18, 20)
    g = box_around(XYZ, 0.5, margin=2.0)
    assert g.covers_cell and np.all(g.extent >= XYZ.max(0) - XYZ.min(0) + 4.0)


def test_logs_method_and_parameters(model, like, densrefine_log):
    caplog = densrefine_log
    simulate(model, like, resolution=3.0, device="cpu")
    assert "method=blur" in caplog.text and "B=36.00" in caplog.text and "Peng" in caplog.text
    caplog.clear()
    simulate(model, like, resolution=3.0, method="fourier", table="xray", device="cpu")
    blur = refmac_blur(25.0, 0.9)
    assert "method=fourier" in caplog.text and f"B={blur:.2f}" in caplog.text
    assert "IT92" in caplog.text and "terms with d > 3 Å kept" in caplog.text


def test_fourier_method_is_band_limited(model, like):
    sim = simulate(model, like, resolution=4.0, method="fourier", device="cpu")
    spec = np.abs(np.fft.rfftn(sim.values.astype(np.float64)))
    nz, ny, nx = sim.shape
    s2 = ((np.fft.fftfreq(nz) / 0.9)[:, None, None] ** 2
          + (np.fft.fftfreq(ny) / 0.9)[None, :, None] ** 2
          + (np.arange(nx // 2 + 1) / (nx * 0.9))[None, None, :] ** 2)
    assert spec[s2 >= 1 / 16].max() < 1e-5 * spec.max()
    assert sim.values.min() < 0                                     # truncation ripples


@pytest.mark.parametrize("kw", [{"resolution": 0}, {"resolution": -2}, {"resolution": 0.3},
                                {"resolution": 60}, {"resolution": float("nan")},
                                {"resolution": "high"}, {"resolution": 3, "blur": -1},
                                {"resolution": 3, "table": "neutron"},
                                {"resolution": 3, "method": "sharpen"},
                                {"resolution": 3, "cutoff": 0}, {"resolution": 3, "density": "ml?"}])
def test_bad_parameters(model, like, kw):
    with pytest.raises(InputError):
        simulate(model, like, device="cpu", **kw)


def test_model_outside_box_mentions_origin(model):
    far = Grid.box((20, 20, 20), 1.0, origin=(200.0, 200.0, 200.0))
    with pytest.raises(InputError, match="ORIGIN vs NxSTART") as exc:
        simulate(model, far, resolution=3.0, device="cpu")
    assert "map origin [200.0, 200.0, 200.0]" in str(exc.value) and "model centre" in str(exc.value)
    half = Grid.box((20, 20, 20), 1.0, origin=(11.0, 0.0, 0.0))
    with pytest.warns(DensrefineWarning, match="outside the map box"):
        simulate(model, half, resolution=3.0, device="cpu")


def test_unknown_element_warns(like):
    m = Model(make_atoms(["C", "XX"], xyz=XYZ[:2]))
    with pytest.warns(DensrefineWarning, match="treated as O"):
        simulate(m, like, resolution=3.0, device="cpu")


# ---------------------------------------------------------------- CLI


@pytest.fixture
def files(tmp_path, model, like):
    import gemmi  # a hard dependency: never a skip
    st = gemmi.Structure()
    gm = gemmi.Model("1")
    ch = gemmi.Chain("A")
    res = gemmi.Residue()
    res.name, res.seqid = "ALA", gemmi.SeqId(1, " ")
    for i, (el, pos) in enumerate(zip(["N", "C", "C", "O", "S"], XYZ)):
        at = gemmi.Atom()
        at.name, at.element, at.pos, at.b_iso, at.occ = f"A{i}", gemmi.Element(el), \
            gemmi.Position(*pos), 25.0, 1.0
        res.add_atom(at)
    ch.add_residue(res)
    gm.add_chain(ch)
    st.add_model(gm)
    pdb = tmp_path / "m.pdb"
    st.write_pdb(str(pdb))
    mrc = tmp_path / "like.mrc"
    dr.write_map(like.with_values(np.random.default_rng(0).random(like.shape)), mrc)
    far = tmp_path / "far.mrc"
    far_grid = Grid.box((20, 20, 20), 1.0, origin=(300.0, 0.0, 0.0))
    dr.write_map(far_grid.with_values(np.random.default_rng(1).random(far_grid.shape)), far)
    return pdb, mrc, far


def test_cli_writes_map_and_log(files, tmp_path):
    pdb, mrc, _ = files
    out = tmp_path / "sim.mrc"
    assert cli_main(["simulate", str(pdb), "--like", str(mrc), "-d", "3", "-o", str(out),
                     "--device", "cpu", "-q"]) == 0
    sim = dr.read_map(out)
    assert sim.shape == dr.read_map(mrc).shape and sim.values.max() > 0
    log = (tmp_path / "sim.log").read_text()
    assert "method=blur" in log and "Wrote" in log and "Device: cpu" in log
    out2 = tmp_path / "box.map"
    assert cli_main(["simulate", str(pdb), "--spacing", "0.7", "--box", "24", "26", "28",
                     "-d", "2.5", "--method", "fourier", "--table", "xray", "-o", str(out2),
                     "-q"]) == 0
    assert dr.read_map(out2).shape_xyz == (24, 26, 28)
    assert os.path.exists(tmp_path / "box.log")


@pytest.mark.parametrize("extra, needle", [
    (["-d", "0", "--spacing", "1"], "resolution"),
    (["-d", "100", "--spacing", "1"], "resolution"),
    (["-d", "3", "--spacing", "1", "--blur", "-5"], "blur"),
    (["-d", "3"], "--like"),
    (["-d", "3", "--like", "LIKE", "--box", "10", "10", "10"], "--like"),
    (["-d", "3", "--like", "FAR"], "NxSTART"),
    (["-d", "3", "--like", "LIKE", "-o", "LIKE"], "overwrite"),
])
def test_cli_bad_input_one_line(files, tmp_path, capsys, extra, needle):
    pdb, mrc, far = files
    args = [str(mrc) if a == "LIKE" else str(far) if a == "FAR" else a for a in extra]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "x.mrc")]
    rc = cli_main(["simulate", str(pdb), *args, "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("densrefine simulate: error:") and needle in err
    assert len(err.splitlines()) == 1
