"""``densrefine info`` on synthetic and real files, through densrefine.cli.main."""
from __future__ import annotations

import json

import numpy as np
import pytest

from densrefine.cli import main
from densrefine.io import write_map
from densrefine.types import Grid
from tests.conftest import require_data


def test_info_real_map(capsys):
    path = require_data("emd-11007_6yyt-rna", "emd_11007_rna_box.map")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "113  48  54" in out  # grid x y z
    assert "0.8340  0.8340  0.8340 Å" in out
    assert "7.506  75.894  86.736 Å" in out  # origin from NSTART 9, 91, 104
    assert "3  2  1" in out and "along z, y, x" in out
    assert "9  91  104" in out and "240  240  240" in out


def test_info_real_model(capsys):
    path = require_data("5a3h", "5a3h.pdb.gz")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    for fact in ("2765", "650", "waters           348", "BGC ×1, G2F ×1", "P 21 21 21",
                 "4.28 – 67.23 Å²", "36 atoms (A, B)"):
        assert fact in out, fact


def test_info_json(capsys, tmp_path, rng):
    values = rng.normal(size=(4, 5, 6)).astype(np.float32)
    path = write_map(Grid.box((4, 5, 6), 1.5, (3.0, 4.5, 6.0)).with_values(values),
                     tmp_path / "m.mrc")
    assert main(["info", path, "--json", "-q"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "map" and info["shape_xyz"] == [6, 5, 4]
    np.testing.assert_allclose(info["origin"], [3.0, 4.5, 6.0])
    assert info["start"] == [2, 3, 4]  # origin on the grid → written as NSTART
    assert info["max"] == pytest.approx(float(values.max()))


def test_info_map_without_map_suffix(capsys, tmp_path, rng):
    grid = Grid.box((3, 3, 3), 1.0, (0, 0, 0)).with_values(rng.normal(size=(3, 3, 3)))
    path = write_map(grid, tmp_path / "m.mrc")
    odd = tmp_path / "density.bin"
    odd.write_bytes(open(path, "rb").read())
    assert main(["info", str(odd), "-q"]) == 0
    assert "grid (x y z)" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["nope.mrc", "nope.pdb"])
def test_info_missing_file(capsys, tmp_path, name):
    assert main(["info", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "error" in err and name in err and "not found" in err


def test_ctrl_c_while_the_cli_imports_is_one_line(monkeypatch, capsys):
    """The console script's entry (`densrefine.launch`) answers a Ctrl-C that arrives while
    the CLI modules are still importing with one line and exit code 130, not a traceback."""
    import sys
    import types

    from densrefine import launch

    class Importing(types.ModuleType):
        def __getattr__(self, name):
            raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "densrefine.cli", Importing("densrefine.cli"))
    assert launch.main() == 130
    assert capsys.readouterr().err == "densrefine: interrupted\n"


def test_import_densrefine_loads_no_numpy():
    """`import densrefine` stays light (the Ctrl-C window of the console script); the data
    types still resolve on first use."""
    import subprocess
    import sys

    code = ("import sys, densrefine; a = 'numpy' in sys.modules; "
            "print(a, densrefine.Model.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "densrefine.types"]
