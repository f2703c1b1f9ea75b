"""Shared test helpers: real-data location, peer venv location, seeds.

Real data lives in ../shared/data (relative to the repository root) or in
$DENSREFINE_DATA. Tests that need it skip with a reason when it is absent, but fail
when CI is set truthy (``1``, ``yes``, ``true``, ``on``; any case): CI must have it.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def env_truthy(name: str) -> bool:
    """True when environment variable ``name`` is 1, yes, true or on (any case, trimmed).

    The one place that reads CI-style switches; ``IN_CI`` is ``env_truthy("CI")``.
    """
    return os.environ.get(name, "").strip().lower() in ("1", "yes", "true", "on", "y")


IN_CI = env_truthy("CI")


def data_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("DENSREFINE_DATA", ROOT.parent / "shared" / "data"))


def require_data(*parts) -> pathlib.Path:
    """Path to a file under the shared data dir; skip (or fail in CI) when absent."""
    p = data_dir().joinpath(*parts)
    if not p.exists():
        msg = f"real data {p} not found (set DENSREFINE_DATA or provide ../shared/data)"
        if IN_CI:
            pytest.fail(msg + " — CI requires it")
        pytest.skip(msg)
    return p


def peers_python() -> pathlib.Path:
    """Interpreter of the peer venv made by ../shared/tools/peers/setup.sh; skip when absent."""
    venv = pathlib.Path(os.environ.get("PEERS_VENV", "/tmp/peers/venv"))
    py = venv / "bin" / "python"
    if not py.exists():
        msg = (f"peer venv {venv} not found: run ../shared/tools/peers/setup.sh "
               "(or set PEERS_VENV)")
        if IN_CI:
            pytest.fail(msg + " — CI requires it (.ci/run sets it up)")
        pytest.skip(msg)
    return py


def peers_dir() -> pathlib.Path:
    d = ROOT.parent / "shared" / "tools" / "peers"
    if not d.exists():
        msg = f"peer scripts {d} not found"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return d


# cryo-EM pairs in the shared data: (folder, model, map, resolution Å)
EM_PAIRS = [
    ("emd-3488_5ni1", "5ni1_updated.cif.gz", "emd_3488.mrc", 3.2),
    ("emd-3488_5ni1", "5me2.pdb.gz", "emd_3488.mrc", 3.2),
    ("emd-21457_6vyb-ntd", "6vyb_Ndom.pdb.gz", "emd_21457_seg.mrc", 3.2),
    ("emd-21457_6vyb-ntd", "6vyb_Ndom.pdb.gz", "emd_21457_seg_nstart.mrc", 3.2),
    ("emd-21457_6vyb-ntd", "6vyb_Ndom_shifted.pdb.gz", "emd_21457_seg_orig0.mrc", 3.2),
    ("emd-2566_3j6b-chain9", "3J6B_9.pdb.gz", "2566_3J6B_9.mrc", 3.2),
    ("emd-11007_6yyt-rna", "6yyt_rna.pdb.gz", "emd_11007_rna_box.map", 2.9),
]

ALL_MODELS = [
    ("emd-3488_5ni1", "5ni1_updated.cif.gz"), ("emd-3488_5ni1", "5me2.pdb.gz"),
    ("emd-21457_6vyb-ntd", "6vyb_Ndom.pdb.gz"), ("emd-21457_6vyb-ntd", "6vyb_Ndom_shifted.pdb.gz"),
    ("emd-2566_3j6b-chain9", "3J6B_9.pdb.gz"), ("emd-11007_6yyt-rna", "6yyt_rna.pdb.gz"),
    ("5a3h", "5a3h.pdb.gz"), ("3io0", "3io0_before.pdb.gz"), ("5e5z", "5e5z.pdb.gz"),
]


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def densrefine_log(caplog):
    """caplog that also works after a CLI run set propagate=False on the densrefine logger."""
    import logging

    logger = logging.getLogger("densrefine")
    old = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(old)


@pytest.fixture(autouse=True)
def _densrefine_logger_restored():
    """An in-process CLI run (`densrefine.cli.main`) sets propagate=False and its own
    handlers on the densrefine logger; restore it after every test so caplog works later."""
    import logging

    logger = logging.getLogger("densrefine")
    state = (logger.propagate, logger.level, list(logger.handlers))
    yield
    logger.propagate, logger.level = state[0], state[1]
    logger.handlers = state[2]
