"""Unit tests of densrefine.io.mrc on maps written by hand with mrcfile."""
from __future__ import annotations

import contextlib
import io as _io
import itertools
import os
import warnings

import mrcfile
import numpy as np
import pytest

from densrefine.errors import DensrefineWarning, FormatError, InputError
from densrefine.io import map_summary, read_map, write_map
from densrefine.types import Grid, UnitCell

NZ, NY, NX = 5, 6, 7


@pytest.fixture
def values(rng):
    return rng.normal(size=(NZ, NY, NX)).astype(np.float32)


def write_raw(path, values_zyx, *, axis_order=(1, 2, 3), start_xyz=(0, 0, 0),
              origin=(0.0, 0.0, 0.0), voxel=(1.0, 1.0, 1.0), full_xyz=None,
              angles=(90.0, 90.0, 90.0)):
    """Write an MRC file by hand: data stored in the file-axis order ``axis_order``."""
    v_xyz = np.asarray(values_zyx).transpose(2, 1, 0)  # v_xyz[x, y, z]
    mapc, mapr, maps = axis_order
    data = np.ascontiguousarray(v_xyz.transpose(maps - 1, mapr - 1, mapc - 1))
    full = np.array(v_xyz.shape if full_xyz is None else full_xyz)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        h = mrc.header
        h.mapc, h.mapr, h.maps = axis_order
        h.mx, h.my, h.mz = (int(x) for x in full)
        h.cella = tuple(float(x) for x in full * np.asarray(voxel))
        h.cellb = tuple(angles)
        h.nxstart, h.nystart, h.nzstart = (int(start_xyz[a - 1]) for a in axis_order)
        h.origin = tuple(origin)
    return path


def _quiet_validate(path) -> bool:
    with contextlib.redirect_stdout(_io.StringIO()):
        return mrcfile.validate(str(path))


@pytest.mark.parametrize("order", list(itertools.permutations((1, 2, 3))))
def test_any_axis_order_reads_identically(tmp_path, values, order):
    start = (3, -2, 11)
    g = read_map(write_raw(tmp_path / "p.mrc", values, axis_order=order, start_xyz=start,
                           voxel=(1.1, 1.2, 1.3), full_xyz=(40, 50, 60)))
    np.testing.assert_array_equal(g.values, values)
    assert g.axis_order == order
    assert g.start.tolist() == list(start)
    assert g.full_shape.tolist() == [40, 50, 60]
    np.testing.assert_allclose(g.voxel_size, [1.1, 1.2, 1.3], rtol=1e-6)
    np.testing.assert_allclose(g.origin, np.array(start) * [1.1, 1.2, 1.3], rtol=1e-6)


@pytest.mark.parametrize("order", [(3, 2, 1), (2, 3, 1)])
def test_permuted_map_agrees_with_gemmi(tmp_path, values, order):
    import gemmi

    path = write_raw(tmp_path / "g.mrc", values, axis_order=order, start_xyz=(2, 1, 3),
                     voxel=(0.9, 1.0, 1.1), full_xyz=(20, 20, 20))
    g = read_map(path)
    m = gemmi.read_ccp4_map(str(path))
    m.setup(float("nan"))
    arr = np.array(m.grid, copy=False)  # [x, y, z] over the whole cell
    sx, sy, sz = g.start
    np.testing.assert_array_equal(arr[sx:sx + NX, sy:sy + NY, sz:sz + NZ].transpose(2, 1, 0),
                                  g.values)
    p = m.grid.get_position(int(sx) + 4, int(sy) + 2, int(sz) + 1)
    np.testing.assert_allclose(g.index_to_xyz([4, 2, 1]), [p.x, p.y, p.z], atol=1e-5)


def test_origin_only(tmp_path, values):
    g = read_map(write_raw(tmp_path / "o.mrc", values, origin=(10.5, -3.25, 7.0)))
    np.testing.assert_allclose(g.origin, [10.5, -3.25, 7.0])
    assert g.start.tolist() == [0, 0, 0]


def test_nstart_and_origin_agree(tmp_path, values):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DensrefineWarning)
        g = read_map(write_raw(tmp_path / "a.mrc", values, start_xyz=(4, 5, 6),
                               voxel=(1.5, 1.5, 1.5), origin=(6.0, 7.5, 9.0)))
    np.testing.assert_allclose(g.origin, [6.0, 7.5, 9.0])


def test_nstart_and_origin_disagree_nstart_wins(tmp_path, values):
    path = write_raw(tmp_path / "d.mrc", values, start_xyz=(4, 5, 6), voxel=(1.5, 1.5, 1.5),
                     origin=(100.0, 0.0, 0.0))
    with pytest.warns(DensrefineWarning, match="ORIGIN ignored"):
        g = read_map(path)
    np.testing.assert_allclose(g.origin, [6.0, 7.5, 9.0])


def test_uninitialised_origin_ignored(tmp_path, values):
    path = write_raw(tmp_path / "u.mrc", values, origin=(np.nan, 0.0, 0.0))
    with pytest.warns(DensrefineWarning, match="uninitialised"):
        g = read_map(path)
    np.testing.assert_array_equal(g.origin, [0, 0, 0])


def test_non_cubic_voxel(tmp_path, values):
    g = read_map(write_raw(tmp_path / "nc.mrc", values, voxel=(0.8, 1.0, 1.25)))
    np.testing.assert_allclose(g.voxel_size, [0.8, 1.0, 1.25], rtol=1e-6)
    np.testing.assert_allclose(g.extent, [NX * 0.8, NY * 1.0, NZ * 1.25], rtol=1e-6)
    np.testing.assert_allclose(g.index_to_xyz([1, 1, 1]), [0.8, 1.0, 1.25], rtol=1e-6)


def test_non_orthogonal_cell_matches_gemmi(tmp_path, values):
    import gemmi

    path = write_raw(tmp_path / "mono.ccp4", values, start_xyz=(1, 2, 3), voxel=(1.0, 1.1, 1.2),
                     full_xyz=(16, 16, 16), angles=(90.0, 101.22, 90.0))
    g = read_map(path)
    assert not g.is_orthogonal and g.cell.beta == pytest.approx(101.22)
    m = gemmi.read_ccp4_map(str(path))
    m.setup(float("nan"))
    p = m.grid.get_position(1 + 2, 2 + 3, 3 + 4)
    np.testing.assert_allclose(g.index_to_xyz([2, 3, 4]), [p.x, p.y, p.z], atol=1e-4)


def test_zero_sampling_falls_back_to_grid(tmp_path, values):
    path = write_raw(tmp_path / "z.mrc", values)
    with mrcfile.open(path, "r+") as mrc:
        mrc.header.mx = 0
    with pytest.warns(DensrefineWarning, match="MX, MY, MZ"):
        g = read_map(path)
    assert g.full_shape.tolist() == [NX, NY, NZ]


def test_gzip_map(tmp_path, values):
    grid = Grid.box((NZ, NY, NX), 1.1, (1.1, 2.2, 3.3)).with_values(values)
    g = read_map(write_map(grid, tmp_path / "w.mrc.gz"))
    np.testing.assert_array_equal(g.values, values)
    np.testing.assert_allclose(g.origin, [1.1, 2.2, 3.3], atol=1e-5)


# --------------------------------------------------------------------------- writing

def _assert_same_frame(a, b):
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_allclose(a.origin, b.origin, atol=1e-4)
    np.testing.assert_allclose(a.voxel_size, b.voxel_size, rtol=1e-6)
    np.testing.assert_allclose(a.cell.parameters, b.cell.parameters, rtol=1e-6)
    assert a.start.tolist() == b.start.tolist()
    assert a.full_shape.tolist() == b.full_shape.tolist()


def test_write_read_round_trip_on_grid(tmp_path, values):
    grid = Grid(values=values, voxel_size=[1.2, 1.3, 1.4], origin=np.array([3, 4, 5]) *
                [1.2, 1.3, 1.4], cell=UnitCell(24.0, 26.0, 28.0), full_shape=[20, 20, 20],
                start=[3, 4, 5])
    path = write_map(grid, tmp_path / "r.mrc")
    assert _quiet_validate(path)
    back = read_map(path)
    _assert_same_frame(grid, back)
    with mrcfile.open(path) as mrc:  # EMDB convention: NSTART, ORIGIN 0
        h = mrc.header
        assert (int(h.nxstart), int(h.nystart), int(h.nzstart)) == (3, 4, 5)
        assert tuple(float(x) for x in h.origin.tolist()) == (0.0, 0.0, 0.0)
        assert (int(h.mapc), int(h.mapr), int(h.maps), int(h.mode)) == (1, 2, 3, 2)
        assert float(h.dmax) == pytest.approx(float(values.max()))
        assert float(h.rms) == pytest.approx(float(values.std()), rel=1e-5)


def test_written_map_frame_in_gemmi(tmp_path, values):
    import gemmi

    grid = Grid(values=values, voxel_size=[1.0, 1.1, 1.2], origin=np.array([3, 4, 5]) *
                [1.0, 1.1, 1.2], cell=UnitCell(16.0, 17.6, 19.2), full_shape=[16, 16, 16],
                start=[3, 4, 5])
    path = write_map(grid, tmp_path / "gm.map")
    m = gemmi.read_ccp4_map(str(path))
    m.setup(float("nan"))
    arr = np.array(m.grid, copy=False)
    np.testing.assert_array_equal(arr[3:3 + NX, 4:4 + NY, 5:5 + NZ].transpose(2, 1, 0), values)
    p = m.grid.get_position(3, 4, 5)  # our voxel [0, 0, 0]
    np.testing.assert_allclose([p.x, p.y, p.z], grid.origin, atol=1e-5)


def test_write_read_round_trip_off_grid(tmp_path, values):
    grid = Grid.box((NZ, NY, NX), (0.9, 1.0, 1.1), (0.33, -4.1, 10.05)).with_values(values)
    path = write_map(grid, tmp_path / "off.mrc")
    assert _quiet_validate(path)
    back = read_map(path)
    _assert_same_frame(grid, back)
    with mrcfile.open(path) as mrc:
        np.testing.assert_allclose(mrc.header.origin.tolist(), [0.33, -4.1, 10.05], rtol=1e-6)


def test_space_group_number_written(tmp_path, values):
    grid = Grid(values=values, voxel_size=[1, 1, 1], origin=[0, 0, 0],
                cell=UnitCell(NX, NY, NZ), space_group="P 21 21 21")
    path = write_map(grid, tmp_path / "sg.ccp4")
    with mrcfile.open(path) as mrc:
        assert int(mrc.header.ispg) == 19
    assert read_map(path).space_group == "P 21 21 21"


def test_summary(values):
    grid = Grid.box((NZ, NY, NX), 2.0, (1, 2, 3)).with_values(values)
    s = map_summary(grid)
    assert s["shape_xyz"] == [NX, NY, NZ] and s["voxel_size"] == [2.0, 2.0, 2.0]
    assert s["extent"] == [2.0 * NX, 2.0 * NY, 2.0 * NZ] and s["origin"] == [1, 2, 3]
    assert s["mean"] == pytest.approx(float(values.mean()), rel=1e-5)


# --------------------------------------------------------------------------- errors

def test_missing_and_directory(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_map(tmp_path / "nope.mrc")
    with pytest.raises(InputError, match="directory"):
        read_map(tmp_path)


def test_pdb_given_as_map(tmp_path):
    p = tmp_path / "model.mrc"
    p.write_text("ATOM      1  CA  GLY A   1       1.000   2.000   3.000  1.00 10.00\n" * 20)
    with pytest.raises(FormatError, match=str(p)):
        read_map(p)
    short = tmp_path / "short.pdb"
    short.write_text("END\n")
    with pytest.raises(FormatError, match=str(short)):
        read_map(short)


def test_truncated(tmp_path, values):
    path = write_raw(tmp_path / "t.mrc", values)
    data = path.read_bytes()
    cut = tmp_path / "cut.mrc"
    cut.write_bytes(data[:-100])
    with pytest.raises(FormatError, match="shorter") as exc:
        read_map(cut)
    assert str(cut) in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values(tmp_path, values, bad):
    v = values.copy()
    v[1, 2, 3] = bad
    v[0, 0, 0] = bad
    path = write_raw(tmp_path / "n.mrc", v)
    with pytest.raises(FormatError, match="2 (NaN|Inf)"):
        read_map(path)


def _patch_word(path, word, value, dtype="<i4"):
    raw = bytearray(path.read_bytes())
    raw[4 * word:4 * word + 4] = np.array([value], dtype).tobytes()
    path.write_bytes(bytes(raw))


def test_unsupported_mode(tmp_path, values):
    path = write_raw(tmp_path / "mode.mrc", values)
    _patch_word(path, 3, 5)
    with pytest.raises(FormatError, match="mode 5"):
        read_map(path)


def test_zero_dimension(tmp_path, values):
    path = write_raw(tmp_path / "zd.mrc", values)
    _patch_word(path, 0, 0)
    with pytest.raises(FormatError, match="dimension"):
        read_map(path)


def test_zero_cell_edge(tmp_path, values):
    path = write_raw(tmp_path / "zc.mrc", values)
    _patch_word(path, 11, 0.0, "<f4")  # cell b
    with pytest.raises(FormatError, match="cell"):
        read_map(path)


def test_constant_map_warns(tmp_path):
    path = write_raw(tmp_path / "c.mrc", np.full((NZ, NY, NX), 3.0, np.float32))
    with pytest.warns(DensrefineWarning, match="every map value"):
        read_map(path)


def test_integer_mode_converted(tmp_path, values):
    path = tmp_path / "i.mrc"
    ints = (values * 100).astype(np.int16)
    write_raw(path, ints)
    g = read_map(path)
    assert g.values.dtype == np.float32
    np.testing.assert_array_equal(g.values, ints.astype(np.float32))


def test_write_refuses_to_overwrite_inputs(tmp_path, values):
    path = write_raw(tmp_path / "in.mrc", values)
    g = read_map(path)
    before = path.read_bytes()
    with pytest.raises(InputError, match="overwrite"):
        write_map(g, path)
    other = tmp_path / "model.mrc"
    other.write_bytes(b"x")
    with pytest.raises(InputError, match="overwrite"):
        write_map(g.with_values(g.values), other, inputs=[other])
    with pytest.raises(InputError, match="suffix"):
        write_map(g, tmp_path / "out.pdb")
    assert path.read_bytes() == before


def test_no_partial_file_on_failure(tmp_path, values, monkeypatch):
    grid = Grid.box((NZ, NY, NX), 1.0, (0, 0, 0)).with_values(values)
    real_new = mrcfile.new

    def failing_new(name, *args, **kwargs):
        mrc = real_new(name, *args, **kwargs)
        mrc.set_data(np.zeros((2, 2, 2), np.float32))
        mrc.close()
        raise OSError("disk full")

    monkeypatch.setattr(mrcfile, "new", failing_new)
    with pytest.raises(OSError, match="disk full"):
        write_map(grid, tmp_path / "out.mrc")
    assert os.listdir(tmp_path) == []


def test_huge_header_dims_are_truncation_not_allocation(tmp_path, values):
    path = write_raw(tmp_path / "huge.mrc", values)
    _patch_word(path, 0, 2**30)
    _patch_word(path, 1, 2**30)
    with pytest.raises(FormatError, match="shorter"):
        read_map(path)


def test_truncated_gzip_map(tmp_path, values):
    import gzip

    raw = write_raw(tmp_path / "t.mrc", values).read_bytes()
    cut = tmp_path / "cut.mrc.gz"
    cut.write_bytes(gzip.compress(raw[:-200]))
    with pytest.raises(FormatError, match="shorter"):
        read_map(cut)
