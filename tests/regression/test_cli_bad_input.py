"""Every input a user can get wrong: one-line error naming the file, exit code 2,
no traceback, no output file left behind. Runs the real CLI in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT

EX = ROOT / "example_maps"
MODEL = EX / "helix_start.pdb"
MAP = EX / "helix_3A.mrc"


def run_cli(*args, cwd=None):
    env = dict(os.environ)
    p = subprocess.run([sys.executable, "-m", "densrefine", *map(str, args)],
                       capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    return p


def assert_clean_error(p, *must_contain):
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    err = p.stderr.strip().splitlines()
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr
    last = err[-1]
    assert last.startswith("densrefine "), last
    for s in must_contain:
        assert s.lower() in last.lower(), (s, last)


@pytest.fixture
def tmp(tmp_path):
    return tmp_path


def test_missing_model(tmp):
    p = run_cli("score", tmp / "nope.pdb", MAP, "-d", "3")
    assert_clean_error(p, "nope.pdb")


def test_missing_map(tmp):
    p = run_cli("score", MODEL, tmp / "nope.mrc", "-d", "3")
    assert_clean_error(p, "nope.mrc")


def test_corrupt_map(tmp):
    bad = tmp / "garbage.mrc"
    bad.write_bytes(os.urandom(5000))
    p = run_cli("score", MODEL, bad, "-d", "3")
    assert_clean_error(p, "garbage.mrc")


def test_truncated_map(tmp):
    cut = tmp / "cut.mrc"
    cut.write_bytes(MAP.read_bytes()[:-4000])
    p = run_cli("score", MODEL, cut, "-d", "3")
    assert_clean_error(p, "cut.mrc")


def test_map_given_as_model(tmp):
    p = run_cli("score", MAP, MAP, "-d", "3")
    assert_clean_error(p, "helix_3A.mrc")


def test_nan_map(tmp):
    import mrcfile

    bad = tmp / "nan.mrc"
    with mrcfile.open(MAP) as m:
        data = m.data.copy()
        vs = m.voxel_size
    data[3, 4, 5] = np.nan
    with mrcfile.new(bad) as m:
        m.set_data(data)
        m.voxel_size = vs
    p = run_cli("score", MODEL, bad, "-d", "3")
    assert_clean_error(p, "nan.mrc", "nan")


def test_empty_model(tmp):
    empty = tmp / "empty.pdb"
    empty.write_text("REMARK nothing here\nEND\n")
    p = run_cli("score", empty, MAP, "-d", "3")
    assert_clean_error(p, "empty.pdb")


def test_model_outside_box_mentions_origin(tmp):
    far = tmp / "far.pdb"
    lines = []
    for line in MODEL.read_text().splitlines():
        if line.startswith(("ATOM", "HETATM")):
            x = float(line[30:38]) + 500.0
            line = f"{line[:30]}{x:8.3f}{line[38:]}"
        lines.append(line)
    far.write_text("\n".join(lines) + "\n")
    p = run_cli("score", far, MAP, "-d", "3")
    assert_clean_error(p, "far.pdb", "origin")


@pytest.mark.parametrize("d", ["0", "-2", "1000"])
def test_absurd_resolution(tmp, d):
    p = run_cli("score", MODEL, MAP, "-d", d)
    assert_clean_error(p, "resolution")


def test_unknown_element_warns(tmp):
    odd = tmp / "odd.pdb"
    lines = []
    for line in MODEL.read_text().splitlines():
        if line.startswith("ATOM") and line[12:16].strip() == "CA" and " 5 " in line[22:27]:
            line = line[:76] + " Q" + line[78:]
        lines.append(line)
    odd.write_text("\n".join(lines) + "\n")
    out = tmp / "odd_sim.mrc"
    p = run_cli("simulate", odd, "--like", MAP, "-d", "3", "-o", out)
    assert p.returncode == 0, p.stderr
    assert "element" in p.stderr.lower()
    assert out.exists()


def test_simulate_never_overwrites_input(tmp):
    copy = tmp / "map.mrc"
    copy.write_bytes(MAP.read_bytes())
    before = copy.read_bytes()
    p = run_cli("simulate", MODEL, "--like", copy, "-d", "3", "-o", copy)
    assert_clean_error(p, "map.mrc")
    assert copy.read_bytes() == before


def test_failed_simulate_leaves_no_output(tmp):
    out = tmp / "sim.mrc"
    p = run_cli("simulate", MODEL, "--like", tmp / "missing.mrc", "-d", "3", "-o", out)
    assert_clean_error(p, "missing.mrc")
    assert not out.exists()
    assert not [f for f in os.listdir(tmp) if f.endswith(".tmp.mrc")]


def test_bad_device(tmp):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    p = run_cli("score", MODEL, MAP, "-d", "3", "--device", "cuda")
    assert_clean_error(p, "cuda")
