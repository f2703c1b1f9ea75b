"""The ChimeraX bundle as a user installs it: ``devel install /path/to/plugins/chimerax``.

Runs in the PyPI ChimeraX wheel (ChimeraX-Core 1.7.1, the only ChimeraX installable
here) through ``chimerax_driver.py``: the real ``devel install`` from another folder
(ChimeraX's bundle builder, pip into the per-user site, the toolshed), then the commands
as the toolshed registers them from the installed wheel. What the wheel lacks and an app
has is supplied by the driver (`use_app_user_site`: the app's user site, the
ChimeraX-Core/Atomic/Map distributions, the ``wheel`` package). Also: the pyproject.toml
form builds with the same metadata, and a ChimeraX older than the minimum is refused
with a message naming it.
"""
from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import types
import xml.etree.ElementTree as ET

import pytest
import tomllib

from tests.conftest import IN_CI, ROOT
from tests.plugins.chimerax_driver import run_driver
from tests.plugins.conftest import chimerax_python

BUNDLE = ROOT / "plugins" / "chimerax"
MIN_CORE = "1.7"          # the oldest ChimeraX-Core the install is tested on (1.7.1)
WHEEL_PIN = "wheel==0.43.0"


@pytest.fixture(scope="module")
def toml():
    return tomllib.loads((BUNDLE / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def xml():
    return ET.parse(BUNDLE / "bundle_info.xml").getroot()


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory):
    """A folder with the ``wheel`` package for ChimeraX's bundle builder (the app ships
    it, the PyPI wheel's venv does not); None when the venv has it already."""
    py = chimerax_python()
    if subprocess.run([str(py), "-c", "import wheel"], capture_output=True).returncode == 0:
        return None
    d = tmp_path_factory.mktemp("wheel_pkg")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--target", str(d), WHEEL_PIN], capture_output=True, text=True)
    if proc.returncode != 0:
        msg = (f"could not get {WHEEL_PIN} for ChimeraX's bundle builder (add it to the "
               f"ChimeraX venv in setup_clients.sh): {proc.stderr[-500:]}")
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return str(d)


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


def _chimerax_classifiers(wheel) -> list[str]:
    """The wheel's ChimeraX classifiers as the toolshed reads them: the TOML builder
    writes "Volume Data, Structure Analysis", the XML one "Volume Data,Structure
    Analysis"; the toolshed strips around the commas (toolshed/installed.py)."""
    return sorted(",".join(p.strip() for p in c.split(","))
                  for c in wheel["classifiers"] if c.startswith("ChimeraX ::"))


def test_chimerax_metadata_files_agree_with_the_sources(toml, xml):
    # pyproject.toml: top-level [chimerax], the only table ChimeraX 1.7 reads
    assert "chimerax" in toml and "chimerax" not in toml.get("tool", {})
    assert toml["build-system"]["build-backend"] == "chimerax.bundle_builder.cx_pep517"
    proj, cx = toml["project"], toml["chimerax"]
    assert "classifiers" in proj["dynamic"] and "classifiers" not in proj
    assert xml.get("name") == proj["name"] and xml.get("version") == proj["version"]
    assert xml.get("package") == "chimerax." + cx["module-name-override"]
    assert [c.get("name") for c in xml.iter("Category")] == cx["categories"]
    deps = {f"{d.get('name')} {d.get('version')}" for d in xml.iter("Dependency")}
    assert deps == set(proj["dependencies"]) and f"ChimeraX-Core >={MIN_CORE}" in deps
    xml_cmds = {c.text.split(" :: ")[2] for c in xml.iter("ChimeraXClassifier")}
    cmd = load_cmd()
    assert xml_cmds == set(cx["command"]) == set(cmd.COMMANDS) == set(cmd.FUNCTIONS)
    # __init__.py: a BundleAPI subclass (api_version 1) overriding register_command
    tree = ast.parse((BUNDLE / "src" / "__init__.py").read_text())
    cls = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert any(ast.unparse(b) == "BundleAPI" for c in cls for b in c.bases)
    body = {getattr(n, "name", None) or ast.unparse(n) for c in cls for n in c.body}
    assert "register_command" in body and "api_version = 1" in body


def test_chimerax_devel_install_from_another_folder_then_commands_work(tmp_path, wheel_dir):
    """The README's one command, as typed in ChimeraX, on the real ChimeraX code."""
    out = run_driver(chimerax_python(), "install", {"wheel_dir": wheel_dir},
                     tmp_path / "cxhome")
    assert out["error"] is None and out["log_errors"] == [], out["log_tail"]
    assert not out["cwd_is_bundle"]
    whl = out["wheel"]
    assert whl["name"] == "ChimeraX-Densrefine" and whl["version"] == "0.1.0"
    assert f"ChimeraX-Core >={MIN_CORE}" in whl["requires"]
    assert {f"chimerax/densrefine/{m}.py" for m in
            ("__init__", "cmd", "host", "job", "matching", "report")} <= set(whl["files"])
    inst = out["installed"]
    assert inst == {"version": "0.1.0", "package": "chimerax.densrefine",
                    "commands": ["densrefine fit", "densrefine live", "densrefine score",
                                 "densrefine set", "densrefine stop"]}
    # the installed copy runs, not the source tree, and every command got registered
    assert str(tmp_path / "cxhome") in out["module_file"]
    assert out["set"]["timeout"] == 42.0
    assert all(out["registered"].values()), out["registered"]


def test_chimerax_pyproject_form_builds_the_same_wheel_metadata(tmp_path, wheel_dir):
    """``devel build .`` of pyproject.toml alone (ChimeraX's TOML builder) = the XML build."""
    toml_out = run_driver(chimerax_python(), "build_toml", {"wheel_dir": wheel_dir},
                          tmp_path / "cxhome")
    xml_out = run_driver(chimerax_python(), "install", {"wheel_dir": wheel_dir},
                         tmp_path / "cxhome2")
    a, b = toml_out["wheel"], xml_out["wheel"]
    assert a and b and toml_out["log_errors"] == []
    assert (a["name"], a["version"], a["requires"]) == (b["name"], b["version"], b["requires"])
    cx = _chimerax_classifiers(a)
    assert cx == _chimerax_classifiers(b)
    assert len([c for c in cx if c.startswith("ChimeraX :: Command ::")]) == 5  # fit, score, stop, set, live
    bundle = [c for c in cx if c.startswith("ChimeraX :: Bundle ::")]
    assert len(bundle) == 1 and ":: 1,1 :: chimerax.densrefine ::" in bundle[0]
    assert a["files"] == b["files"]


def test_chimerax_older_than_minimum_is_refused_naming_the_release(tmp_path, wheel_dir):
    """A ChimeraX whose core is older than the minimum: the install fails, saying why."""
    os.environ.setdefault("PIP_RETRIES", "0")       # no toolshed to reach: fail at once
    out = run_driver(chimerax_python(), "install",
                     {"wheel_dir": wheel_dir, "core_version": "1.6.1"}, tmp_path / "cxhome")
    assert out["installed"] is None
    # ChimeraX's devel command logs pip's refusal (with its traceback) in the log
    text = (out["error"] or "") + out["log_tail"]
    assert f"No matching distribution found for ChimeraX-Core>={MIN_CORE}" in text, text
