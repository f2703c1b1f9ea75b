"""The ChimeraX bundle's metadata (plugins/chimerax/pyproject.toml).

The PyPI ChimeraX wheel cannot build or install bundles (no toolshed metadata, no
``devel`` command), so the metadata is validated two other ways: statically here with
tomllib and the bundle's own sources, and by ChimeraX's own bundle-builder code, which
turns the file into the wheel's classifiers (``chimerax_driver.py metadata``).
"""
from __future__ import annotations

import ast
import importlib.util
import sys
import types

import pytest
import tomllib

from tests.conftest import ROOT
from tests.plugins.chimerax_driver import run_driver
from tests.plugins.conftest import chimerax_python

BUNDLE = ROOT / "plugins" / "chimerax"


@pytest.fixture(scope="module")
def toml():
    return tomllib.loads((BUNDLE / "pyproject.toml").read_text())


def load_cmd():
    """The bundle's cmd module, imported without its ChimeraX-only __init__."""
    name = "_cx_densrefine_static"
    if name not in sys.modules:
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(BUNDLE / "src")]
        sys.modules[name] = pkg
    spec = importlib.util.spec_from_file_location(f"{name}.cmd", BUNDLE / "src" / "cmd.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_chimerax_pyproject_current_bundle_format(toml):
    build = toml["build-system"]
    assert build["build-backend"] == "chimerax.bundle_builder.cx_pep517"
    assert "ChimeraX-BundleBuilder" in build["requires"]
    proj = toml["project"]
    assert proj["name"].startswith("ChimeraX-")
    # bundle builder rules: classifiers dynamic and only under [tool.chimerax]
    assert "classifiers" in proj["dynamic"] and "classifiers" not in proj
    assert any(d.startswith("ChimeraX-Core") for d in proj["dependencies"])
    cx = toml["tool"]["chimerax"]
    assert isinstance(cx["min-session-version"], int)
    assert cx["min-session-version"] <= cx["max-session-version"]
    assert cx["categories"] and all(isinstance(c, str) for c in cx["categories"])
    assert all(" :: " in c for c in cx["classifiers"])
    assert cx["module-name-override"].isidentifier()
    assert (BUNDLE / "src" / "__init__.py").exists()
    for name, attrs in cx["command"].items():
        assert attrs.get("category") and attrs.get("description"), name


def test_chimerax_declared_commands_are_the_registered_ones(toml):
    declared = set(toml["tool"]["chimerax"]["command"])
    cmd = load_cmd()
    assert declared == set(cmd.COMMANDS) == set(cmd.FUNCTIONS)
    assert {"densrefine fit", "densrefine score"} <= declared
    # __init__.py: a BundleAPI subclass (api_version 1) overriding register_command
    tree = ast.parse((BUNDLE / "src" / "__init__.py").read_text())
    cls = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert any(ast.unparse(b) == "BundleAPI" for c in cls for b in c.bases)
    body = {getattr(n, "name", None) or ast.unparse(n) for c in cls for n in c.body}
    assert "register_command" in body and "api_version = 1" in body
    assert any(isinstance(n, ast.Assign) and n.targets[0].id == "bundle_api" for n in tree.body
               if isinstance(n, ast.Assign))


def test_chimerax_bundle_builder_reads_metadata(tmp_path):
    """ChimeraX's own bundle builder (in the wheel) makes the expected classifiers."""
    out = run_driver(chimerax_python(), "metadata", {}, tmp_path / "cxhome")
    assert out["module_name"] == "chimerax.densrefine"
    assert out["package_dir"] == {"chimerax.densrefine": "src"}
    assert sorted(out["declared_commands"]) == sorted(out["plugin_commands"])
    assert all(out["registered"].values())  # bundle_api.register_command registered each
    bundle = [c for c in out["classifiers"] if c.startswith("ChimeraX :: Bundle ::")]
    assert len(bundle) == 1 and "Volume Data" in bundle[0] and ":: 1,1 ::" in bundle[0]
