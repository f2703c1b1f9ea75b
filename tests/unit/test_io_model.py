"""Unit tests of densrefine.io.model on small synthetic PDB/mmCIF files."""
from __future__ import annotations

import builtins
import gzip
import os
import warnings

import numpy as np
import pytest

import densrefine.io.model as model_io
from densrefine.errors import FormatError, InputError
from densrefine.io import model_summary, read_model, write_model
from densrefine.types import B_PER_U, Model

SYN_PDB = """\
HEADER    TEST STRUCTURE                          01-JAN-00   XXXX
CRYST1   30.000   40.000   50.000  90.00  90.00  90.00 P 21 21 21    4
ATOM      1  N   ALA A  10       1.000   2.000   3.000  1.00 10.00           N
ATOM      2  CA  ALA A  10       2.000   2.500   3.100  1.00 11.00           C
ANISOU    2  CA  ALA A  10     1200   1300   1400    100    -50     20       C
ATOM      3  C   ALA A  10       3.000   3.000   3.200  1.00 12.00           C
ATOM      4  O   ALA A  10       3.500   4.000   3.300  1.00 13.00           O
ATOM      5  H   ALA A  10       0.500   1.500   2.800  1.00 10.00           H
ATOM      6  N   SER A  10A      4.000   2.500   3.000  1.00 14.00           N
ATOM      7  CA ASER A  10A      5.000   3.000   3.100  0.60 15.00           C
ATOM      8  CA BSER A  10A      5.100   3.100   3.000  0.40 16.00           C
ATOM      9  OG ASER A  10A      6.000   3.500   3.200  0.60 17.00           O
ATOM     10  OG BSER A  10A      6.100   3.600   3.300  0.40 18.00           O
TER      11      SER A  10A
ATOM     12  P    DA B   1      10.000  11.000  12.000  1.00 30.00           P
ATOM     13  OP1  DA B   1      10.500  11.500  12.500  1.00 31.00           O1-
HETATM   14 ZN    ZN A 101      -1.000  -2.000  -3.000  1.00 20.00          ZN2+
HETATM   15  O   HOH A 201       7.000   8.000   9.000  1.00 25.00           O
HETATM   16  O   HOH B 301       8.000   9.000  10.000  0.50 26.00           O
END
"""

EM_PDB = """\
CRYST1    1.000    1.000    1.000  90.00  90.00  90.00 P 1           1
ATOM      1  CA  GLY A   1       1.000   2.000   3.000  1.00 10.00           C
END
"""


@pytest.fixture
def syn(tmp_path):
    p = tmp_path / "syn.pdb"
    p.write_text(SYN_PDB)
    return p


def _same_sites(a, b, xyz_atol=1e-3):
    """Everything but numbering noise must match between two Atoms."""
    np.testing.assert_allclose(a.xyz, b.xyz, atol=xyz_atol)
    np.testing.assert_allclose(a.b_iso, b.b_iso, atol=0.006)
    np.testing.assert_allclose(a.occ, b.occ, atol=0.006)
    for f in ("element", "atomic_number", "charge", "chain", "res_name", "res_seq", "icode",
              "atom_name", "altloc", "het", "res_index"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


def test_read_fields(syn):
    m = read_model(syn)
    a = m.atoms
    assert len(m) == 15 and m.path == str(syn)
    assert m.cell.parameters == (30.0, 40.0, 50.0, 90.0, 90.0, 90.0)
    assert m.space_group == "P 21 21 21"
    assert a.chain.tolist() == ["A"] * 10 + ["B"] * 2 + ["A", "A", "B"]  # file order kept
    assert a.icode.tolist()[4:6] == [" ", "A"]
    assert a.altloc.tolist()[5:10] == ["", "A", "B", "A", "B"]
    assert a.element.tolist()[12] == "ZN" and a.atomic_number[12] == 30
    assert a.charge[11] == -1 and a.charge[12] == 2
    assert a.het.tolist() == [False] * 12 + [True] * 3
    assert a.res_index.tolist() == [0] * 5 + [1] * 5 + [2, 2, 3, 4, 5]
    assert a.res_seq[5] == 10 and a.res_seq[12] == 101
    assert a.is_hydrogen.sum() == 1
    np.testing.assert_allclose(a.occ[6:8], [0.6, 0.4], atol=1e-6)
    np.testing.assert_allclose(a.xyz[1], [2.0, 2.5, 3.1])
    # ANISOU in 1e-4 Å²; isotropic atoms are NaN rows; b_iso stays the file's B
    assert a.u_aniso.shape == (15, 6)
    np.testing.assert_allclose(a.u_aniso[1], [0.12, 0.13, 0.14, 0.01, -0.005, 0.002], atol=1e-6)
    assert np.isnan(a.u_aniso[0]).all() and np.isnan(a.u_aniso[2:]).all()
    assert a.b_iso[1] == pytest.approx(11.0)


def test_summary(syn):
    s = model_summary(read_model(syn))
    assert s["chains"] == ["A", "B"] and s["residues"] == 6 and s["atoms"] == 15
    assert s["hydrogens"] == 1 and s["waters"] == 2 and s["ligands"] == {"ZN": 1}
    assert s["altloc_atoms"] == 4 and s["altlocs"] == ["A", "B"]
    assert s["partial_occupancy"] == 5 and s["anisotropic"] == 1
    assert (s["b_min"], s["b_max"]) == (10.0, 31.0)
    assert s["space_group"] == "P 21 21 21"


def test_no_aniso_gives_none_and_dummy_cell_is_none(tmp_path):
    p = tmp_path / "em.pdb"
    p.write_text(EM_PDB)
    m = read_model(p)
    assert m.atoms.u_aniso is None
    assert m.cell is None and m.space_group == "P 1"


def test_aniso_only_b_is_b_eq(tmp_path):
    anisou = "ANISOU    1  CA  GLY A   1      100    200    300      0      0      0       C"
    text = EM_PDB.replace("10.00           C", " 0.00           C").replace("END", anisou + "\nEND")
    p = tmp_path / "an.pdb"
    p.write_text(text)
    a = read_model(p).atoms
    assert a.b_iso[0] == pytest.approx(B_PER_U * 0.02, rel=1e-5)  # 8π² (0.01+0.02+0.03)/3


@pytest.mark.parametrize("out", ["o.pdb", "o.cif", "o.cif.gz", "o.pdb.gz", "o.mmcif"])
def test_round_trip(syn, tmp_path, out):
    m = read_model(syn)
    path = write_model(m, tmp_path / out)
    if out.endswith(".gz"):
        with gzip.open(path, "rt") as f:
            assert "SER" in f.read()
    m2 = read_model(path)
    _same_sites(m.atoms, m2.atoms)
    np.testing.assert_allclose(m2.atoms.u_aniso[1], m.atoms.u_aniso[1], atol=1e-4)
    assert m2.cell == m.cell and m2.space_group == m.space_group
    assert model_summary(m2)["ligands"] == {"ZN": 1} and model_summary(m2)["waters"] == 2


def test_written_file_carries_new_values(syn, tmp_path):
    m = read_model(syn)
    a = m.atoms
    new = a.replace(xyz=a.xyz + [1.5, -2.25, 0.125], b_iso=a.b_iso + 5, occ=a.occ * 0.5)
    for out in ("n.pdb", "n.cif"):
        m2 = read_model(write_model(m.with_atoms(new), tmp_path / out))
        np.testing.assert_allclose(m2.atoms.xyz, new.xyz, atol=1e-3)
        np.testing.assert_allclose(m2.atoms.b_iso, new.b_iso, atol=0.006)
        np.testing.assert_allclose(m2.atoms.occ, new.occ, atol=0.006)
    assert m.handle[0][0][0][0].pos.x == 1.0  # the original handle was not modified


def test_header_survives(syn, tmp_path):
    text = open(write_model(read_model(syn), tmp_path / "h.pdb")).read()
    assert text.startswith("HEADER    TEST STRUCTURE")
    assert "CRYST1   30.000   40.000   50.000" in text


def test_write_without_handle(syn, tmp_path):
    m = read_model(syn)
    bare = Model(atoms=m.atoms, cell=m.cell, space_group=m.space_group)
    for out in ("b.pdb", "b.cif"):
        m2 = read_model(write_model(bare, tmp_path / out))
        _same_sites(m.atoms, m2.atoms)
        assert m2.cell == m.cell


def test_first_model_only(tmp_path):
    body = EM_PDB.splitlines()[1]
    p = tmp_path / "nmr.pdb"
    p.write_text(f"MODEL        1\n{body}\nENDMDL\nMODEL        2\n"
                 f"{body.replace('1.000   2.000', '9.000   9.000')}\nENDMDL\nEND\n")
    m = read_model(p)
    assert len(m) == 1 and m.atoms.xyz[0, 0] == 1.0
    text = open(write_model(m, tmp_path / "one.pdb")).read()
    assert "MODEL" not in text or text.count("MODEL ") == 1
    assert "9.000" not in text


# --------------------------------------------------------------------------- errors

def test_missing_file(tmp_path):
    p = tmp_path / "nope.pdb"
    with pytest.raises(InputError, match=str(p)):
        read_model(p)


def test_directory(tmp_path):
    with pytest.raises(InputError, match="directory"):
        read_model(tmp_path)


def test_map_given_as_model(tmp_path):
    import mrcfile

    p = tmp_path / "m.mrc"
    with mrcfile.new(p) as mrc:
        mrc.set_data(np.zeros((4, 4, 4), np.float32))
    for name in ("m.mrc", "m.pdb"):  # wrong suffix and a misleading one
        q = tmp_path / name
        if name != "m.mrc":
            q.write_bytes(p.read_bytes())
        with pytest.raises(FormatError, match=str(q)):
            read_model(q)


def test_empty_model(tmp_path):
    p = tmp_path / "empty.pdb"
    p.write_text("HEADER    NOTHING\nREMARK   1 no atoms here\nEND\n")
    with pytest.raises(InputError, match="no atoms"):
        read_model(p)


def test_corrupt_cif(tmp_path):
    p = tmp_path / "bad.cif"
    p.write_text("data_x\nloop_\n_atom_site.id\n_atom_site.Cartn_x\n1\n")
    with pytest.raises(InputError, match=str(p)):
        read_model(p)


def test_error_is_one_line(tmp_path):
    p = tmp_path / "bad.cif"
    p.write_text("data_x\n_cell.length_a 'unterminated\n")
    with pytest.raises(InputError) as exc:
        read_model(p)
    assert "\n" not in str(exc.value)


def test_refuse_overwrite_and_bad_suffix(syn, tmp_path):
    m = read_model(syn)
    with pytest.raises(InputError, match="overwrite"):
        write_model(m, syn)
    other = tmp_path / "other.cif"
    other.write_text("x")
    with pytest.raises(InputError, match="overwrite"):
        write_model(m, other, inputs=[other])
    with pytest.raises(InputError, match="suffix"):
        write_model(m, tmp_path / "out.xyz")
    assert syn.read_text() == SYN_PDB


def test_long_chain_name_needs_cif(syn, tmp_path):
    m = read_model(syn)
    bare = Model(atoms=m.atoms.replace(chain=["AAA"] * len(m)))
    with pytest.raises(InputError, match="mmCIF"):
        write_model(bare, tmp_path / "x.pdb")
    assert read_model(write_model(bare, tmp_path / "x.cif")).atoms.chain[0] == "AAA"


def test_no_partial_file_on_failure(syn, tmp_path, monkeypatch):
    m = read_model(syn)

    class FailingGzip:
        @staticmethod
        def open(path, mode="rb", encoding=None):
            with builtins.open(path, "w") as f:
                f.write("half a fi")
            raise OSError("disk full")

    monkeypatch.setattr(model_io, "gzip", FailingGzip)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(OSError, match="disk full"):
        write_model(m, tmp_path / "out.cif.gz")
    assert sorted(os.listdir(tmp_path)) == before


def test_handle_mismatch_warns_and_writes_arrays(syn, tmp_path):
    m = read_model(syn)
    sub = Model(atoms=m.atoms.select(np.arange(5)), handle=m.handle)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m2 = read_model(write_model(sub, tmp_path / "s.cif"))
    assert any("writing from the arrays" in str(x.message) for x in w)
    assert len(m2) == 5
