"""Stats JSON writing and the `densrefine score` command (in-process, synthetic files).

The model map is monkeypatched to a Gaussian map so the CLI test does not depend on
`densrefine.simulate`.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from densrefine import cli
from densrefine.report import to_jsonable, write_json_atomic
from densrefine.scoring import api
from tests.unit.test_scoring import empty_grid, gaussian_map, toy_model

REQUIRED = ("cc_mask", "cc_box", "cc_volume", "cc_peaks", "rsr", "fsc", "d_fsc05", "residues")


def test_to_jsonable_converts_numpy_and_nan():
    obj = {"a": np.float32(0.25), "b": np.arange(3), "c": float("nan"), "d": (np.int16(2),),
           "e": np.bool_(True), "f": [float("inf")]}
    assert to_jsonable(obj) == {"a": 0.25, "b": [0, 1, 2], "c": None, "d": [2], "e": True,
                                "f": [None]}
    with pytest.raises(TypeError):
        to_jsonable({"x": object()})


def test_write_json_atomic_replaces_and_never_leaves_partial_files(tmp_path):
    p = tmp_path / "stats.json"
    write_json_atomic(p, {"cc": np.float64(0.5)})
    assert json.loads(p.read_text()) == {"cc": 0.5}
    with pytest.raises(TypeError):
        write_json_atomic(p, {"cc": object()})  # fails before anything is renamed
    assert json.loads(p.read_text()) == {"cc": 0.5}
    assert sorted(os.listdir(tmp_path)) == ["stats.json"]


def test_score_report_to_json_has_required_keys(tmp_path):
    model, grid = toy_model(), empty_grid()
    mmap = gaussian_map(model, grid)
    rep = api.score(model, grid.with_values(mmap), 3.0, model_map=mmap)
    p = write_json_atomic(tmp_path / "s.json", rep)
    data = json.loads(open(p).read())
    for k in REQUIRED:
        assert k in data, k
    assert data["fsc"] and {"d", "fsc", "n"} <= set(data["fsc"][0])
    assert {"chain", "res_seq", "icode", "res_name", "cc", "cc_main", "cc_side",
            "n_atoms"} <= set(data["residues"][0])


@pytest.fixture
def files(tmp_path, monkeypatch):
    import gemmi

    model, grid = toy_model(), empty_grid()
    mmap = gaussian_map(model, grid)
    st = gemmi.Structure()
    gm = gemmi.Model(1)
    ch = gemmi.Chain("A")
    for r in range(8):
        res = gemmi.Residue()
        res.name, res.seqid = "LEU", gemmi.SeqId(r + 1, " ")
        for i in np.flatnonzero(model.atoms.res_index == r):
            a = gemmi.Atom()
            a.name, a.element = str(model.atoms.atom_name[i]), gemmi.Element(
                str(model.atoms.element[i]))
            a.pos, a.b_iso, a.occ = gemmi.Position(*model.atoms.xyz[i]), 30.0, 1.0
            res.add_atom(a)
        ch.add_residue(res)
    gm.add_chain(ch)
    st.add_model(gm)
    st.setup_entities()
    pdb = tmp_path / "toy.pdb"
    st.write_pdb(str(pdb))
    import mrcfile

    mrc = tmp_path / "toy.mrc"
    noisy = mmap + 0.2 * mmap.std() * np.random.default_rng(1).normal(size=mmap.shape)
    with mrcfile.new(mrc) as m:
        m.set_data(noisy.astype(np.float32))
        m.voxel_size = float(grid.voxel_size[0])
        m.header.origin.x, m.header.origin.y, m.header.origin.z = grid.origin
    monkeypatch.setattr(api, "_model_map", lambda *a, **k: mmap)
    return pdb, mrc


def test_cli_score_prints_and_writes_json_and_log(files, tmp_path, capsys):
    pdb, mrc = files
    out = tmp_path / "res" / "toy_score.json"
    out.parent.mkdir()
    rc = cli.main(["score", str(pdb), str(mrc), "-d", "3.0", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "CC_mask" in text and "worst" in text and "RSR" in text
    data = json.loads(out.read_text())
    for k in REQUIRED:
        assert k in data, k
    assert 0.8 < data["cc_mask"] < 1.0 and len(data["residues"]) == 8
    log = (tmp_path / "res" / "toy_score.log").read_text()
    assert "Molecular mask" in log and "Wrote" in log
    assert [f for f in os.listdir(out.parent) if ".tmp" in f] == []


def test_cli_score_no_residues_and_bad_resolution(files, tmp_path, capsys):
    pdb, mrc = files
    out = tmp_path / "s.json"
    assert cli.main(["score", str(pdb), str(mrc), "-d", "3", "--no-residues",
                     "--json", str(out)]) == 0
    assert json.loads(out.read_text())["residues"] == []
    capsys.readouterr()
    assert cli.main(["score", str(pdb), str(mrc), "-d", "0"]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("densrefine score: error:") and "resolution" in last
    assert "Traceback" not in err
