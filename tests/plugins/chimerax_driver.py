"""Drive the densrefine ChimeraX bundle inside a real (no-GUI) ChimeraX session.

Run with ChimeraX's Python (the PyPI wheel venv of ``../shared/tools/clients``)::

    HOME=/tmp/clients/cxhome /tmp/clients/cx/bin/python chimerax_driver.py MODE --json-args '{...}'

MODE is ``fit`` (perturb a residue range, refine it, compare with ChimeraX's own
``measure mapvalues`` and ``fitmap``), ``score`` (per-residue CC, map frame check),
``errors`` (bad input, cancel, timeout: one-line errors and an untouched model),
``install`` (the documented ``devel install PATH``, then the commands from the installed
bundle) or ``build_toml`` (``devel build .`` of the pyproject.toml form).
The last stdout line is ``DRIVER_JSON {...}`` with the numbers; pytest asserts on them.
The densrefine executable comes from the ``DENSREFINE_EXE`` environment variable.
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "plugins" / "chimerax"


def build_session():
    """A full no-GUI ChimeraX session from plain Python (the wheel has no ``--nogui`` app).

    Same sequence as ``chimerax.core.__main__.init`` for ``--nogui``: app dirs, Session,
    settings, toolshed (no bundle metadata in the wheel, so nothing is registered), the
    atomic initialisation and the standard commands.
    """
    import collections
    import collections.abc

    # grako (atom-spec parser) still imports these from collections (Python < 3.10 API)
    for name in ("Mapping", "MutableMapping", "Sequence", "MutableSequence", "Iterable",
                 "Callable", "Set", "MutableSet"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    import appdirs
    import chimerax

    pkg = os.path.dirname(chimerax.__file__)
    dirs = appdirs.AppDirs("ChimeraX", appauthor="UCSF", version="0.1")
    for d in (dirs.user_data_dir, dirs.user_config_dir, dirs.user_cache_dir):
        os.makedirs(d, exist_ok=True)
    chimerax.app_dirs = dirs
    chimerax.app_dirs_unversioned = appdirs.AppDirs("ChimeraX", appauthor="UCSF")
    chimerax.app_bin_dir = os.path.dirname(sys.executable)
    chimerax.app_data_dir = os.path.join(pkg, "share")
    chimerax.app_lib_dir = os.path.join(pkg, "lib")

    from chimerax.core import attributes, core_settings, tools, toolshed, undo
    from chimerax.core import session as sessmod
    from chimerax.core.nogui import NoGuiLog

    session = sessmod.Session("ChimeraX", minimal=False, offscreen_rendering=False)
    session.logger.add_log(NoGuiLog())
    core_settings.init(session)
    sessmod.register_misc_commands(session)
    attributes.RegAttrManager(session)
    toolshed.init(session.logger, check_available=False, session=session)
    session.toolshed = toolshed.get_toolshed()
    session.toolshed.bootstrap_bundles(session, False)
    session.tools = tools.Tools(session, first=True)
    session.undo = undo.Undo(session, first=True)
    from chimerax.atomic import initialize_atomic
    from chimerax.std_commands import register_commands as std_register

    initialize_atomic(session)
    std_register(session)
    return session


def load_plugin():
    """Import the bundle's package from plugins/chimerax/src as ``chimerax_densrefine``."""
    name = "chimerax_densrefine"
    spec = importlib.util.spec_from_file_location(
        name, BUNDLE / "src" / "__init__.py", submodule_search_locations=[str(BUNDLE / "src")])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    importlib.import_module(name + ".cmd")
    return mod


class Capture:
    """Collect what reaches the session log (HTML kept as HTML)."""

    def __init__(self, session):
        from chimerax.core.logger import HtmlLog

        msgs = self.msgs = []

        class _Log(HtmlLog):
            def log(self, level, msg, image_info, is_html):
                msgs.append((level, msg, bool(is_html)))
                return False

        session.logger.add_log(_Log())

    def since(self, n, level=None):
        return [m for m in self.msgs[n:] if level is None or m[0] == level]


def open_inputs(session, model_path, map_path, tmp):
    """Open the model (PDB/mmCIF, gzipped or not) and the map with the Python API."""
    path = pathlib.Path(model_path)
    if path.suffix == ".gz":
        plain = pathlib.Path(tmp) / path.stem
        with gzip.open(path) as fh:
            plain.write_bytes(fh.read())
        path = plain
    if path.suffix == ".cif":
        from chimerax.mmcif.mmcif import open_mmcif
        models, _ = open_mmcif(session, str(path), log_info=False)
    else:
        from chimerax.pdb import open_pdb
        models, _ = open_pdb(session, str(path), log_info=False)
    session.models.add(models)
    from chimerax.map.volume import open_map
    maps, _ = open_map(session, str(map_path))
    session.models.add(maps)
    return models[0], maps[0]


def register_chimerax_measures(session):
    """ChimeraX's own fitmap and measure mapvalues, registered by hand (no bundle metadata)."""
    from chimerax.map import bundle_api as map_api
    from chimerax.map_fit import bundle_api as fit_api

    fit_api.register_command("fitmap", session.logger)
    map_api.register_command("measure mapvalues", session.logger)


def chimerax_scores(session, model, vol, spec, mask, resolution):
    """ChimeraX's own numbers for the atoms ``spec`` (= ``mask`` over model.atoms).

    Returns the mean map value at those atoms (``measure mapvalues``) and the correlation
    of their simulated map with the map (``fitmap ... metric correlation`` with shift and
    rotate off, so nothing moves).
    """
    from chimerax.core.commands import run

    m, v = model.id_string, vol.id_string
    run(session, f"measure mapvalues #{v} atoms #{m}{spec} attribute densrefine_test_mv",
        log=False)
    mv = float(np.mean([a.densrefine_test_mv for a in model.atoms.filter(mask)]))
    before = set(session.models)
    fits = run(session, f"fitmap #{m}{spec} inMap #{v} resolution {resolution:g} "
               "metric correlation shift false rotate false", log=False)
    corr = float(fits[0].correlation())
    session.models.close([x for x in session.models if x not in before])
    return {"mapvalues_mean": mv, "fitmap_corr": corr, "n_atoms": int(mask.sum())}


def residue_mask(model, chain, first, last):
    """Boolean (N,) over model.atoms: atoms of chain ``chain`` residues first..last."""
    res = model.atoms.residues
    return (res.chain_ids == chain) & (res.numbers >= first) & (res.numbers <= last)


def rmsd(a, b):
    return float(np.sqrt(((a - b) ** 2).sum(1).mean()))


def _user_error(session, command):
    """Run ``command``; the UserError text (or None) and whether it was one line."""
    from chimerax.core.commands import run
    from chimerax.core.errors import UserError

    try:
        run(session, command, log=False)
    except UserError as exc:
        return str(exc)
    return None


def mode_fit(session, plugin, a, tmp):
    """Perturb a range by a.shift Å along x, refine it, measure before/after."""
    from chimerax.core.commands import run

    model, vol = open_inputs(session, a["model"], a["map"], tmp)
    cap = Capture(session)
    chain, (p0, p1), (s0, s1) = a["chain"], a["perturb"], a["select"]
    spec = f"/{chain}:{s0}-{s1}"
    true_xyz = model.atoms.coords.copy()
    pert = residue_mask(model, chain, p0, p1)
    sel = residue_mask(model, chain, s0, s1)
    xyz = true_xyz.copy()
    xyz[pert] += np.array([a["shift"], 0.0, 0.0])
    model.atoms.coords = xyz
    start = model.atoms.coords.copy()
    start_b = model.atoms.bfactors.copy()
    out = {"n_atoms": int(model.num_atoms), "n_selected": int(sel.sum()),
           "n_perturbed": int(pert.sum())}
    out["before"] = chimerax_scores(session, model, vol, spec, sel, a["resolution"])
    out["rmsd_to_true_before"] = rmsd(start[pert], true_xyz[pert])
    n_log = len(cap.msgs)
    t = time.monotonic()
    result = run(session, f"densrefine fit #{model.id_string} inMap #{vol.id_string} "
                 f"resolution {a['resolution']:g} select {spec} stages {a['stages']} "
                 f"cycles {a['cycles']}", log=False)
    out["fit_s"] = time.monotonic() - t
    res = result[0] if isinstance(result, list) else result
    end = model.atoms.coords
    out["after"] = chimerax_scores(session, model, vol, spec, sel, a["resolution"])
    out["rmsd_to_true_after"] = rmsd(end[pert], true_xyz[pert])
    moved = np.abs(end - start).max(1) > 0
    out["n_moved_selected"] = int((moved & sel).sum())
    out["n_moved_outside"] = int((moved & ~sel).sum())
    out["max_change_outside"] = float(np.abs(end - start)[~sel].max())
    out["n_b_changed_outside"] = int((model.atoms.bfactors != start_b)[~sel].sum())
    out["plugin"] = {k: res.get(k) for k in ("n_moved", "before", "after", "select",
                                             "color_range")}
    ccs = [r.densrefine_cc for r in model.residues]
    out["n_residues"] = len(ccs)
    out["n_residue_cc"] = sum(c is not None for c in ccs)
    cc_sel = [r.densrefine_cc for r in model.residues
              if r.chain_id == chain and s0 <= r.number <= s1]
    cc_sel_before = [r.densrefine_cc_before for r in model.residues
                     if r.chain_id == chain and s0 <= r.number <= s1]
    out["residue_cc_sel_mean"] = [float(np.mean(cc_sel_before)), float(np.mean(cc_sel))]
    ribbon = model.residues.ribbon_colors
    out["n_ribbon_colours"] = len({tuple(c) for c in ribbon.tolist()})
    html = [m for lvl, m, is_html in cap.since(n_log) if is_html]
    out["html_tables"] = [h for h in html if "<table" in h]
    out["progress_lines"] = sum(1 for lvl, m, is_html in cap.since(n_log)
                                if not is_html and "CC_mask" in m)
    run(session, "undo", log=False)
    out["undo_restores"] = bool(np.array_equal(model.atoms.coords, start))
    run(session, "redo", log=False)
    out["redo_reapplies"] = bool(np.array_equal(model.atoms.coords, end))
    return out


def mode_score(session, plugin, a, tmp):
    """densrefine score through the plugin: per-residue CC attribute and colours."""
    from chimerax.core.commands import run

    model, vol = open_inputs(session, a["model"], a["map"], tmp)
    cap = Capture(session)
    start = model.atoms.coords.copy()
    result = run(session, f"densrefine score #{model.id_string} inMap #{vol.id_string} "
                 f"resolution {a['resolution']:g}", log=False)
    res = result[0] if isinstance(result, list) else result
    ccs = [r.densrefine_cc for r in model.residues]
    return {"scores": res["before"], "n_residues": len(ccs),
            "n_residue_cc": sum(c is not None for c in ccs),
            "unchanged": bool(np.array_equal(model.atoms.coords, start)),
            "html_tables": [m for lvl, m, h in cap.msgs if h and "<table" in m],
            "map_origin": [float(x) for x in vol.data.origin],
            "n_ribbon_colours": len({tuple(c) for c in model.residues.ribbon_colors.tolist()})}


def mode_errors(session, plugin, a, tmp):
    """Bad executable, bad resolution, bad stages, cancel, timeout: model untouched."""
    from chimerax.core.commands import run

    model, vol = open_inputs(session, a["model"], a["map"], tmp)
    cap = Capture(session)
    start = model.atoms.coords.copy()
    start_b = model.atoms.bfactors.copy()
    base = f"densrefine fit #{model.id_string} inMap #{vol.id_string}"
    out = {"errors": {}}
    cases = {"no_executable": f"{base} resolution 3.2 executable /nonexistent/densrefine",
             "negative_resolution": f"{base} resolution -1",
             "bad_stages": f"{base} resolution 3.2 stages xyz,wobble",
             "empty_selection": f"{base} resolution 3.2 select /Z:1-5",
             "timeout": f"{base} resolution 3.2 timeout 0.5"}
    for name, command in cases.items():
        t = time.monotonic()
        msg = _user_error(session, command)
        out["errors"][name] = {"message": msg, "s": time.monotonic() - t,
                               "unchanged": bool(np.array_equal(model.atoms.coords, start))}
    # cancel a background run with 'densrefine stop', polled from "new frame" as in the GUI
    n_log = len(cap.msgs)
    bg = run(session, f"{base} resolution 3.2 wait false", log=False)
    bg = bg[0] if isinstance(bg, list) else bg
    busy = _user_error(session, f"{base} resolution 3.2 wait false")
    time.sleep(0.5)
    stopped = run(session, "densrefine stop", log=False)
    t = time.monotonic()
    while bg in plugin.cmd._runs(session) and time.monotonic() - t < 30:
        session.triggers.activate_trigger("new frame", None)
        time.sleep(0.05)
    errors = [m for lvl, m, h in cap.since(n_log) if lvl >= 2]
    out["cancel"] = {"state": bg.job.state, "stopped": stopped, "busy_message": busy,
                     "error_lines": errors, "folder_removed": not os.path.exists(bg.folder),
                     "unchanged": bool(np.array_equal(model.atoms.coords, start))}
    out["settings"] = run(session, "densrefine set", log=False)
    out["unchanged_at_end"] = bool(np.array_equal(model.atoms.coords, start)
                                   and np.array_equal(model.atoms.bfactors, start_b))
    out["tracebacks_logged"] = sum("Traceback" in m for _, m, _ in cap.msgs)
    return out


def use_app_user_site(core_version: str, wheel_dir: str | None) -> str:
    """Set up what a ChimeraX app has and the PyPI wheel lacks, before the session starts.

    * The app's per-user site (``chimerax.core.__main__``, non-root branch): pip
      ``--user`` and the toolshed both use ``<user data dir>/lib/pythonX.Y/site-packages``
      under the fresh HOME, so an install never writes the shared ChimeraX venv.
    * The distributions every app has installed and bundles depend on (ChimeraX-Core at
      this wheel's core version, ChimeraX-Atomic, ChimeraX-Map): metadata only, in that
      user site (the monolithic wheel registers as "ChimeraX" 0.1.71).
    * ``wheel`` (the app ships it; setuptools 65 needs it for bdist_wheel): ``wheel_dir``
      is put on sys.path.
    Returns the user site.
    """
    import site

    import appdirs

    dirs = appdirs.AppDirs("ChimeraX", appauthor="UCSF", version="0.1")
    site.USER_BASE = dirs.user_data_dir
    site.USER_SITE = os.path.join(site.USER_BASE, "lib",
                                  f"python{sys.version_info[0]}.{sys.version_info[1]}",
                                  "site-packages")
    site.ENABLE_USER_SITE = True
    os.makedirs(site.USER_SITE, exist_ok=True)
    for name in ("ChimeraX-Core", "ChimeraX-Atomic", "ChimeraX-Map"):
        info = pathlib.Path(site.USER_SITE) / f"{name.replace('-', '_')}-{core_version}.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\n"
                                       f"Version: {core_version}\n")
        (info / "RECORD").write_text("")
        (info / "INSTALLER").write_text("densrefine-test\n")
    if wheel_dir:
        sys.path.insert(0, wheel_dir)
    return site.USER_SITE


def _wheel_metadata(wheel) -> dict:
    """Name, version, Requires-Dist and classifiers from a wheel's METADATA."""
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
        files = sorted(n for n in z.namelist() if n.endswith(".py"))
    get = (lambda key: [ln.split(": ", 1)[1] for ln in lines if ln.startswith(key + ": ")])
    return {"name": get("Name")[0], "version": get("Version")[0],
            "requires": sorted(get("Requires-Dist")), "classifiers": get("Classifier"),
            "files": files}


def _copy_bundle(tmp, name, xml=True) -> pathlib.Path:
    """The bundle folder as a user has it (a copy: building writes build/, dist/ there)."""
    work = pathlib.Path(tmp) / name
    shutil.copytree(BUNDLE, work, ignore=shutil.ignore_patterns(
        "__pycache__", "build", "dist", "*.egg-info", *(() if xml else ("bundle_info.xml",))))
    return work


def mode_install(session, plugin, a, tmp):
    """The documented install: ``devel install PATH`` from another folder, then use it.

    Runs in a session whose toolshed knows nothing of the bundle (nothing registered by
    hand): the install builds the wheel, pip-installs it into the user site and the
    toolshed registers its commands from the wheel's metadata on first use.
    """
    from chimerax.core.commands import run
    from chimerax.core.errors import UserError

    work = _copy_bundle(tmp, "chimerax")
    cap = Capture(session)
    os.chdir(tmp)                       # not the bundle folder
    out = {"cwd_is_bundle": os.getcwd() == str(work)}
    try:
        run(session, f"devel install {work}", log=False)
        out["error"] = None
    except UserError as exc:
        out["error"] = str(exc)
    log = [m for _, m, _ in cap.msgs]
    out["log_errors"] = [m for lvl, m, _ in cap.msgs if lvl >= 2]
    out["log_tail"] = "\n".join(log)[-3000:]
    wheels = sorted((work / "dist").glob("*.whl"))
    out["wheel"] = _wheel_metadata(wheels[0]) if wheels else None
    bi = session.toolshed.find_bundle("ChimeraX-Densrefine", session.logger, installed=True)
    out["installed"] = None if bi is None else {
        "version": bi.version, "package": bi.package_name,
        "commands": sorted(c.name for c in bi.commands)}
    if bi is not None:
        out["set"] = run(session, "densrefine set timeout 42", log=False)
        from chimerax.core.commands import command_function

        out["registered"] = {c: command_function(c) is not None
                             for c in ("densrefine fit", "densrefine score",
                                       "densrefine stop", "densrefine set")}
        import chimerax.densrefine as mod

        out["module_file"] = mod.__file__
    return out


def mode_build_toml(session, plugin, a, tmp):
    """``devel build .`` of the pyproject.toml form (no bundle_info.xml) in its folder."""
    from chimerax.core.commands import run

    work = _copy_bundle(tmp, "chimerax_toml", xml=False)
    cap = Capture(session)
    os.chdir(work)                      # this form builds in the current folder
    run(session, "devel build .", log=False)
    wheels = sorted((work / "dist").glob("*.whl"))
    return {"wheel": _wheel_metadata(wheels[0]) if wheels else None,
            "log_errors": [m for lvl, m, _ in cap.msgs if lvl >= 2]}


def run_driver(python, mode, args, home, timeout=900):
    """Pytest side: run this driver in ChimeraX's ``python``; returns its JSON dict.

    densrefine is the test interpreter's own (``DENSREFINE_EXE="<python> -m densrefine"``);
    ``home`` is a fresh HOME for ChimeraX's settings and caches. A failed run raises
    AssertionError with the end of the output.
    """
    import shlex
    import subprocess

    env = dict(os.environ, HOME=str(home),
               DENSREFINE_EXE=os.environ.get("DENSREFINE_EXE")
               or f"{shlex.quote(sys.executable)} -m densrefine")
    proc = subprocess.run([str(python), __file__, mode, "--json-args", json.dumps(args)],
                          capture_output=True, text=True, env=env, timeout=timeout,
                          check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("DRIVER_JSON ")]
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0 and lines, f"driver {mode} failed ({proc.returncode}):\n{tail}"
    return json.loads(lines[-1][len("DRIVER_JSON "):])


MODES = {"fit": mode_fit, "score": mode_score, "errors": mode_errors,
         "install": mode_install, "build_toml": mode_build_toml}
BUNDLE_MODES = {"install", "build_toml"}   # the bundle comes from a build, not from src/


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=sorted(MODES))
    p.add_argument("--json-args", default="{}", help="mode arguments as JSON")
    ns = p.parse_args()
    args = json.loads(ns.json_args)
    t0 = time.monotonic()
    plugin = None
    if ns.mode in BUNDLE_MODES:
        from chimerax.core.buildinfo import version

        use_app_user_site(args.get("core_version") or version, args.get("wheel_dir"))
    session = build_session()
    if ns.mode not in BUNDLE_MODES:
        plugin = load_plugin()
        plugin.cmd.register_commands(session)
        register_chimerax_measures(session)
    t_session = time.monotonic() - t0
    tmp = tempfile.mkdtemp(prefix="cx-driver-")
    try:
        out = MODES[ns.mode](session, plugin, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out.update(session_s=t_session, total_s=time.monotonic() - t0)
    print("DRIVER_JSON " + json.dumps(out, default=float), flush=True)


if __name__ == "__main__":
    main()
