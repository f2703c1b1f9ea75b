"""Start-up: commands and refusals that need no torch do not import it; the log's first
line reports the heavy imports' time."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

MODEL = ROOT / "example_maps" / "helix_start.pdb"
MAP = ROOT / "example_maps" / "helix_3A.mrc"

PROBE = """
import json, sys
from densrefine.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "loaded": [m for m in ("torch", "numba") if m in sys.modules]}))
"""


def run(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True,
                       text=True, cwd=cwd, env=env, check=False)
    line = [x for x in p.stdout.splitlines() if x.startswith("{")]
    assert line, p.stdout + p.stderr
    return json.loads(line[-1]), p.stderr


@pytest.mark.parametrize("args, rc", [
    (["info", MODEL], 0),
    (["info", MAP], 0),
    (["score", MODEL, MAP, "-d", "100"], 2),
    (["score", MODEL, "missing.mrc", "-d", "3"], 2),
    (["simulate", MODEL, "-d", "100", "--spacing", "1", "-o", "x.mrc"], 2),
    (["simulate", MODEL, "-d", "3", "-o", "x.mrc"], 2),
    (["simulate", MODEL, "-d", "3", "--like", "missing.mrc", "-o", "x.mrc"], 2),
    (["fit", MODEL, MAP, "-d", "100", "-o", "out"], 2),
    (["fit", MODEL, MAP, "-d", "3", "--config", "missing.yaml", "-o", "out"], 2),
    (["rfactor", MODEL, "missing.mtz"], 2),
    (["validate", "missing.cif"], 2),
])
def test_refusals_and_info_import_no_torch(args, rc, tmp_path):
    res, err = run(args, tmp_path)
    assert res["rc"] == rc, err
    assert res["loaded"] == [], f"{args[0]} imported {res['loaded']}: {err}"
    if rc == 2:
        assert len(err.strip().splitlines()) == 1            # one-line refusal
    assert not any(p.suffix in (".mrc", ".log") for p in tmp_path.iterdir())


def test_log_first_line_reports_import_time(tmp_path):
    """A command that imports torch names its import time on the log's first line."""
    res, err = run(["simulate", MODEL, "-d", "3", "--like", MAP, "-o", "sim.mrc"], tmp_path)
    assert res["rc"] == 0, err
    assert "torch" in res["loaded"]
    first = (tmp_path / "sim.log").read_text().splitlines()[0]
    assert "; import time: torch " in first
    seconds = float(first.split("import time: torch ")[1].split(" s")[0])
    assert 0.0 < seconds < 120.0
