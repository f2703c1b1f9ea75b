"""The Coot GUI layer (plugins/coot/densrefine_coot_gui.py) against a recording fake of Coot.

No GUI Coot can be installed here (no Debian package; the PyPI coot-headless-api has a
different API), so the few ``coot``/``coot_gui``/``coot_gui_api``/``coot_utils``
functions the plugin calls are faked: strict fakes that fail on any name not in the
documented list (docs/plugins_coot.md). densrefine itself is real (system Python CLI
on the bundled synthetic example). The engine-level round trip with real Coot code is
tests/plugins/test_coot_roundtrip.py.
"""
from __future__ import annotations

import ast
import importlib
import os
import re
import shutil
import subprocess
import sys
import time
import types

import pytest

from tests.conftest import ROOT

EXAMPLE = ROOT / "example_maps"
GUI_FILE = ROOT / "plugins" / "coot" / "densrefine_coot_gui.py"
DOC = ROOT / "docs" / "plugins_coot.md"


class Fake(types.ModuleType):
    """Module that records calls; only names given in ``impl`` exist."""

    def __init__(self, name, impl, log):
        super().__init__(name)
        for key, fn in impl.items():
            setattr(self, key, self._rec(name, key, fn, log))

    @staticmethod
    def _rec(mod, key, fn, log):
        def call(*args):
            log.append((f"{mod}.{key}", args))
            return fn(*args)
        return call


class Host:
    """State of the fake Coot session: molecule 0 (model), 1 (map), active residue A/10."""

    def __init__(self, model_src, tmp):
        self.log, self.model_src, self.tmp = [], model_src, tmp
        self.entries = []  # pending generic_single_entry callbacks
        self.map_name = "d/e/f.mtz FWT PHWT"  # no CCP4 file: the plugin exports the map
        self.menu = []
        coot = {
            "active_residue_py": lambda: [0, "A", 10, "", " CA ", ""],
            "imol_refinement_map": lambda: 1,
            "is_valid_model_molecule": lambda i: int(i == 0),
            "is_valid_map_molecule": lambda i: int(i == 1),
            "molecule_name": lambda i: self.map_name,
            "write_pdb_file": lambda i, p: shutil.copyfile(self.model_src, p) and 0,
            "export_map": lambda i, p: shutil.copyfile(EXAMPLE / "helix_3A.mrc", p) and 1,
            "clear_and_update_model_molecule_from_file": lambda i, p: i,
            "add_status_bar_text": lambda s: None,
            "info_dialog": lambda s: None,
            "handle_read_ccp4_map": lambda p, is_diff: 2,
            "close_molecule": lambda i: None,
        }
        gui = {
            "coot_menubar_menu": lambda label: ("menu", label),
            "add_simple_action_to_menu": lambda m, label, name, cb: self.menu.append(
                (m, label, name, cb)),
            "generic_single_entry": lambda label, default, button, cb: self.entries.append(
                (label, default, cb)),
            "interesting_things_gui": lambda title, things: None,
        }
        self.mods = {"coot": Fake("coot", coot, self.log),
                     "coot_gui": Fake("coot_gui", gui, self.log),
                     "coot_gui_api": Fake("coot_gui_api", {"main_menumodel": lambda: object()},
                                          self.log),
                     "coot_utils": Fake("coot_utils", {
                         "residue_spec_to_atom_for_centre": lambda *a: [" CA ", ""]}, self.log)}

    def calls(self, name):
        return [args for n, args in self.log if n == name]

    def click(self, label):
        cb = next(cb for _m, lab, _n, cb in self.menu if lab == label)
        cb(None, None)  # Gio.SimpleAction "activate" passes (action, parameter)


def drive(ms, tick):
    """Stand-in for GLib.timeout_add: call tick until it returns False."""
    while tick():
        time.sleep(ms / 5000)


@pytest.fixture
def host(monkeypatch, tmp_path):
    h = Host(EXAMPLE / "helix_start.pdb", tmp_path)
    for name, mod in h.mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    for sub in ("exchange", "coot"):
        monkeypatch.syspath_prepend(str(ROOT / "plugins" / sub))
    monkeypatch.setenv("DENSREFINE_EXE", f"{sys.executable} -m densrefine")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    gui = importlib.import_module("densrefine_coot_gui")
    gui = importlib.reload(gui)
    gui.SETTINGS.update(resolution=None, stages="xyz", cycles=1)
    gui.SCHEDULE = drive
    h.gui = gui
    assert gui.install() == ("menu", "densrefine")
    return h


def test_menu_registered(host):
    labels = [lab for _m, lab, _n, _cb in host.menu]
    assert labels == ["Refine active model against map...",
                      "Refine residue range / selection...", "Score model",
                      "Set map resolution...", "Cancel running job", "Live mode on/off"]
    assert {m for m, *_ in host.menu} == {("menu", "densrefine")}
    assert len({n for _m, _l, n, _cb in host.menu}) == 6  # distinct Gio action names


def test_refine_range_exports_runs_reads_back(host):
    host.click("Refine residue range / selection...")
    label, default, cb = host.entries.pop()
    assert default == "A/5-15"  # active residue A/10 +/- 5
    assert cb("A/8-14") == 1
    label, default, cb = host.entries.pop()  # resolution asked once
    assert "resolution" in label.lower()
    assert cb("3.0") == 1
    assert len(host.calls("coot.write_pdb_file")) == 1 and len(host.calls("coot.export_map")) == 1
    (imol, path), = host.calls("coot.clear_and_update_model_molecule_from_file")
    assert imol == 0 and path.endswith("fit.pdb")
    (title, things), = host.calls("coot_gui.interesting_things_gui")
    assert "A/8-14" in title and len(things) == 7
    assert all(t[1:3] == [0, "A"] and t[5] == " CA " for t in things)
    ccs = [float(re.search(r"CC (\S+)", t[0]).group(1)) for t in things]
    assert ccs == sorted(ccs) and {t[3] for t in things} == set(range(8, 15))
    assert not host.calls("coot.info_dialog")  # no error
    assert any("CC_mask" in a[0] for a in host.calls("coot.add_status_bar_text"))
    # second run reuses the resolution: no dialog
    host.click("Refine active model against map...")
    assert not host.entries and len(host.calls("coot.clear_and_update_model_molecule_from_file")) == 2


def test_map_file_used_as_is(host):
    host.map_name = str(EXAMPLE / "helix_3A.mrc")
    host.gui.SETTINGS["resolution"] = 3.0
    host.click("Refine active model against map...")
    assert not host.calls("coot.export_map") and host.calls("coot.write_pdb_file")
    assert len(host.calls("coot.clear_and_update_model_molecule_from_file")) == 1
    assert not host.calls("coot.info_dialog")


def test_score_shows_worst_residues_without_changing_model(host):
    host.gui.SETTINGS["resolution"] = 3.0
    host.click("Score model")
    (title, things), = host.calls("coot_gui.interesting_things_gui")
    assert len(things) == 22 and things[0][0].startswith("A ")
    assert not host.calls("coot.clear_and_update_model_molecule_from_file")


def test_status_bar_says_what_is_running(host):
    """Scoring says scoring (not "0 cycles done"); a fit names its calls as they finish;
    both say where they run (no live session here: a new process, and why)."""
    host.gui.SETTINGS["resolution"] = 3.0
    host.click("Score model")
    texts = [a[0] for a in host.calls("coot.add_status_bar_text")]
    running = [t for t in texts if "CC_mask" not in t]
    assert running and set(running) == {
        "densrefine score started in a new densrefine process (no live session is running)",
        "densrefine: scoring the model against the map…"}
    assert not any("cycles done" in t for t in texts)
    host.log.clear()
    host.click("Refine active model against map...")
    texts = [a[0] for a in host.calls("coot.add_status_bar_text")]
    calls = [t for t in texts if t.startswith("densrefine: call ")]
    assert texts[0] == ("densrefine fit started (all atoms) in a new densrefine process (no "
                        "live session is running)")
    assert "densrefine fit: reading the inputs and scoring the start model…" in texts
    assert calls and all("(xyz)" in t and "bond RMSD" in t for t in calls), texts
    assert texts[-1].startswith("densrefine: CC_mask")            # the summary at the end


def _one_line_error_shown(host, start):
    (msg,), = host.calls("coot.info_dialog")
    assert msg.startswith(start) and "\n" not in msg and "Traceback" not in msg
    assert (msg,) in host.calls("coot.add_status_bar_text")
    assert not host.calls("coot.clear_and_update_model_molecule_from_file")  # untouched
    assert not host.calls("coot_gui.interesting_things_gui")
    return msg


def test_bad_resolution_one_line_model_untouched(host):
    host.gui.SETTINGS["resolution"] = -1.0
    host.click("Refine active model against map...")
    _one_line_error_shown(host, "densrefine fit: error: resolution")


def test_ligand_without_restraints_one_line(host, tmp_path):
    lig = tmp_path / "lig.pdb"
    atoms = [ln for ln in (EXAMPLE / "helix_start.pdb").read_text().splitlines()
             if ln.startswith("ATOM")]
    atoms += ["HETATM  176  C1  ZZQ B   1      40.000  45.000  35.000  1.00 30.00           C",
              "HETATM  177  C2  ZZQ B   1      41.400  45.000  35.000  1.00 30.00           C",
              "END"]
    lig.write_text("\n".join(atoms) + "\n")
    host.model_src = lig
    host.gui.SETTINGS["resolution"] = 3.0
    host.click("Refine active model against map...")
    msg = _one_line_error_shown(host, "densrefine fit: error:")
    assert "ZZQ" in msg and "--ligand" in msg


def test_bad_selection_text_one_line(host):
    host.gui.SETTINGS["resolution"] = 3.0
    host.click("Refine residue range / selection...")
    _label, _default, cb = host.entries.pop()
    cb("residues ten to forty")
    msg = _one_line_error_shown(host, "densrefine: selection")
    assert not host.calls("coot.write_pdb_file")


def test_no_map_one_line(host):
    host.mods["coot"].imol_refinement_map = lambda: -1
    host.click("Score model")
    _one_line_error_shown(host, "densrefine: no refinement map")


def test_cancel_leaves_model_untouched(host):
    host.gui.SETTINGS["resolution"] = 3.0
    pending = []
    host.gui.SCHEDULE = lambda ms, tick: pending.append(tick)  # GUI loop not running yet
    host.click("Refine active model against map...")
    assert host.gui._JOB["job"] is not None
    host.click("Refine active model against map...")  # refused while running
    assert host.calls("coot.info_dialog")[-1][0].startswith("densrefine: a job is already")
    host.click("Cancel running job")
    drive(100, pending[0])
    assert host.calls("coot.info_dialog")[-1][0].startswith("densrefine: cancelled")
    assert not host.calls("coot.clear_and_update_model_molecule_from_file")
    assert host.gui._JOB["job"] is None


def _documented_names():
    """`module.name` entries of the table in docs/plugins_coot.md."""
    return set(re.findall(r"^\| `(coot(?:_gui|_gui_api|_utils)?\.\w+)`", DOC.read_text(), re.M))


def test_gui_uses_only_documented_coot_names():
    used = set()
    for node in ast.walk(ast.parse(GUI_FILE.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id in ("coot", "coot_gui", "coot_gui_api", "coot_utils"):
            used.add(f"{node.value.id}.{node.attr}")
    sys.path.insert(0, str(ROOT / "plugins" / "exchange"))
    declared = {f"{m}.{n}" for m, names in _coot_names().items() for n in names}
    assert used <= declared, used - declared
    assert declared <= _documented_names(), declared - _documented_names()


def _coot_names():
    tree = ast.parse(GUI_FILE.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "COOT_NAMES":
            return ast.literal_eval(node.value)
    raise AssertionError("COOT_NAMES not found")


def test_installer_loader_adds_menu(host, tmp_path, monkeypatch):
    """install_coot_plugin.py writes a start-up file that, run by Coot, adds the menu."""
    monkeypatch.delenv("DENSREFINE_EXE")
    out = subprocess.run([sys.executable, str(ROOT / "plugins/coot/install_coot_plugin.py"),
                          "--dest", str(tmp_path / "prefs")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    loader = tmp_path / "prefs" / "densrefine_coot_plugin.py"
    host.gui.install()  # a second call adds nothing
    assert len(host.menu) == len(host.gui.LABELS)
    host.menu.clear()
    host.gui._JOB["menu"] = None  # as in a fresh Coot session
    exec(compile(loader.read_text(), str(loader), "exec"), {"__name__": "coot_startup"})
    assert len(host.menu) == len(host.gui.LABELS)
    assert os.environ["DENSREFINE_EXE"].endswith("-m densrefine")
