"""densrefine menu for Coot 1.x: refine the open model against the open map, in Coot.

Thin GUI layer: everything that is not a Coot call lives in the host-neutral
``densrefine_exchange`` module (plugins/exchange/). Install with
``python3 plugins/coot/install_coot_plugin.py`` (see docs/plugins_coot.md).

Menu "densrefine":

* Refine active model against map...  whole model of the active residue (the one at
  the screen centre) against ``imol_refinement_map()``;
* Refine residue range / selection...  a ``CHAIN/FIRST-LAST`` entry, pre-filled with the
  active residue +/- 5;
* Score model                          densrefine's per-residue CC, no change to the model;
* Set map resolution...                asked once per session otherwise;
* Cancel running job;
* Live mode on/off                     a warm ``densrefine serve`` session (docs/live.md):
  after each edit (moved atoms, rotamer change, real-space refinement in Coot) the
  status bar shows R-work/R-free (X-ray: the map came from an MTZ) or CC_mask and the
  residue's CC (cryo-EM) with the change, and the difference map (mFo−DFc, or map −
  model map) around the edit is re-read.

Runs are asynchronous when GLib is available (Coot stays usable; the status bar says
what is running: scoring, or the last finished optimisation call with its CC). On success the refined coordinates replace the molecule in place
(``clear_and_update_model_molecule_from_file``) and an "interesting places" dialog lists
the refined residues worst CC first. On failure the one-line densrefine message is shown
and the model is left untouched (nothing is read back).

Coot names used (documented in Coot's python/coot_gui.py, python/coot_utils.py and
src/*.hh; list with sources in docs/plugins_coot.md): see ``COOT_NAMES``.
"""
from __future__ import annotations

import os
import re
import sys

if __name__ != "__main__":  # make the exchange module importable next to this file
    _here = os.path.dirname(os.path.abspath(globals().get("__file__", os.getcwd())))
    for _p in (os.path.join(os.path.dirname(_here), "exchange"), _here):
        if os.path.isdir(_p) and _p not in sys.path:
            sys.path.insert(0, _p)

import densrefine_exchange as ex
import densrefine_live as live

#: every coot / coot_gui / coot_gui_api / coot_utils name this file calls
COOT_NAMES = {
    "coot": ["active_residue_py", "imol_refinement_map", "is_valid_model_molecule",
             "is_valid_map_molecule", "molecule_name", "write_pdb_file", "export_map",
             "clear_and_update_model_molecule_from_file", "add_status_bar_text",
             "info_dialog", "handle_read_ccp4_map", "close_molecule"],
    "coot_gui": ["coot_menubar_menu", "add_simple_action_to_menu",
                 "add_simple_coot_menu_menuitem", "generic_single_entry",
                 "interesting_things_gui"],
    "coot_gui_api": ["main_menumodel", "main_menubar"],
    "coot_utils": ["residue_spec_to_atom_for_centre"],
}

MENU = "densrefine"
LABELS = {"fit": "Refine active model against map...",
          "range": "Refine residue range / selection...",
          "score": "Score model", "resolution": "Set map resolution...",
          "cancel": "Cancel running job", "live": "Live mode on/off"}

#: settings; environment variables give the defaults
SETTINGS = {"resolution": None,
            "stages": os.environ.get("DENSREFINE_STAGES") or None,
            "cycles": os.environ.get("DENSREFINE_CYCLES") or None,
            "exe": None, "range_half_width": 5}
try:
    SETTINGS["resolution"] = float(os.environ.get("DENSREFINE_RESOLUTION", "")) or None
except ValueError:
    pass
#: ``schedule(ms, fn)`` runs fn every ms until it returns False; None = run synchronously
SCHEDULE = None
_JOB = {"job": None}
#: live mode state (one session at a time)
_LIVE = {"client": None, "tracker": None, "imol": None, "diff_imol": None, "dir": None,
         "watch": None}
#: ms between looks at the model in live mode
LIVE_TICK_MS = 250
#: edge (Å) of the difference-map box re-read after each edit
LIVE_BOX_A = 20.0


def _coot():
    import coot
    return coot


def _gui():
    import coot_gui
    return coot_gui


def _default_schedule():
    try:
        from gi.repository import GLib
    except ImportError:
        return None
    return GLib.timeout_add


def say(msg):
    """One line to the status bar and a dialog (never a traceback)."""
    coot = _coot()
    line = " ".join(str(msg).split())[:400]
    coot.add_status_bar_text(line)
    coot.info_dialog(line)


def _guard(fn):
    """Menu callback wrapper: any failure becomes a one-line message."""
    def run(*_args):
        try:
            fn()
        except ex.DensrefineError as err:
            say(str(err))
        except Exception as err:  # noqa: BLE001 - a plugin must never crash Coot
            first = (str(err).splitlines() or [""])[0]
            say(f"densrefine plugin: {type(err).__name__}: {first}")
        return False
    return run


def active_model():
    """(imol, chain, res_no, ins_code) of the active residue; DensrefineError if none."""
    coot = _coot()
    aa = coot.active_residue_py()
    if not aa or not coot.is_valid_model_molecule(aa[0]):
        raise ex.DensrefineError("densrefine: no active model; centre the view on a residue "
                                 "of the model to refine")
    return aa[0], aa[1], aa[2], aa[3]


def refinement_map():
    """imol of Coot's refinement map; DensrefineError if unset."""
    coot = _coot()
    imap = coot.imol_refinement_map()
    if imap is None or imap < 0 or not coot.is_valid_map_molecule(imap):
        raise ex.DensrefineError("densrefine: no refinement map; read a map or choose the "
                                 "refinement map in Coot first")
    return imap


def parse_selection(text):
    """Check a ``CHAIN[/FIRST[-LAST]]`` comma list typed by the user; return it cleaned."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    pat = re.compile(r"^[A-Za-z0-9]{1,4}(/-?\d+(--?\d+)?)?$")
    if not parts or not all(pat.match(p) for p in parts):
        raise ex.DensrefineError(f"densrefine: selection {text!r} not understood; use "
                                 "CHAIN/FIRST-LAST, e.g. A/10-40 or A/10-40,B")
    return ",".join(parts)


def _writers(imol, imap):
    coot = _coot()

    def write_model(path):
        if coot.write_pdb_file(imol, path) != 0:  # 0 = success (c-interface.h)
            raise ex.DensrefineError(f"densrefine: Coot could not write molecule {imol} "
                                     f"to {path}")

    def write_map(path):
        if coot.export_map(imap, path) != 1:  # 1 = success (c-interface.h)
            raise ex.DensrefineError(f"densrefine: Coot could not export map {imap} to {path}")
    return write_model, map_file(imap) or write_map


def map_file(imap):
    """The CCP4/MRC file the map was read from, if it still exists, else None.

    Used as is instead of ``export_map``: clipper writes the map as one P1 unit cell
    starting at the origin, which drops the NSTART/ORIGIN offset of boxed EM maps.
    Set DENSREFINE_EXPORT_MAP=1 to export anyway (e.g. after sharpening in Coot).
    """
    if os.environ.get("DENSREFINE_EXPORT_MAP") == "1":
        return None
    name = _coot().molecule_name(imap)
    if isinstance(name, str) and os.path.isfile(name) and \
            name.lower().endswith((".mrc", ".map", ".ccp4")):
        return name
    return None


def with_resolution(then):
    """Call ``then(d)`` with the map resolution, asking for it once if unset."""
    if SETTINGS["resolution"]:
        return then(SETTINGS["resolution"])

    def got(text):
        try:
            d = float(text)
            if not d > 0:
                raise ValueError
        except ValueError:
            say(f"densrefine: resolution {text!r} must be a positive number in Å, e.g. 3.2")
            return 0
        SETTINGS["resolution"] = d
        _guard(lambda: then(d))()
        return 1
    _gui().generic_single_entry("Map resolution (Å) for densrefine:", "3.0", "  OK  ", got)
    return None


def places(result_rows, imol):
    """Coot interesting-things entries ``[label, imol, chain, resno, ins, atom, alt]``."""
    try:
        import coot_utils
        centre = coot_utils.residue_spec_to_atom_for_centre
    except (ImportError, AttributeError):
        centre = None
    out = []
    for r in result_rows:
        atom = centre(imol, r["chain"], r["res_seq"], r["icode"]) if centre else None
        name, alt = (atom[0], atom[1]) if atom else (" CA ", "")
        out.append([r["label"], imol, r["chain"], r["res_seq"], r["icode"], name, alt])
    return out


def _finish_fit(imol, res):
    coot = _coot()
    if coot.clear_and_update_model_molecule_from_file(imol, res.model_path) < 0:
        raise ex.DensrefineError(f"densrefine: Coot could not read back {res.model_path}; "
                                 "the model was not changed")
    coot.add_status_bar_text(res.summary() + f"; report {res.prefix}_report.html")
    rows = res.worst()
    if rows:
        _gui().interesting_things_gui(f"densrefine: per-residue CC, worst first "
                                      f"({res.selection or 'all'})", places(rows, imol))


def _finish_score(imol, stats):
    coot = _coot()
    coot.add_status_bar_text(ex.summary_line(stats))
    rows = ex.worst_residues(stats)
    if rows:
        _gui().interesting_things_gui("densrefine score: per-residue CC, worst first",
                                      places(rows, imol))


def status_text(job):
    """What a running job is doing, for the status bar (from the stats JSON it rewrites)."""
    if job.kind == "score":
        return "densrefine: scoring the model against the map…"
    n, rec = job.last_cycle()
    if n == 0:
        return "densrefine fit: reading the inputs and scoring the start model…"
    return ex.progress_line(n, rec)


def _follow(job, done):
    """Poll ``job`` from the GUI loop (or wait), then call ``done(result)``."""
    _JOB["job"] = job
    coot = _coot()

    def tick():
        try:
            res = job.poll()
        except ex.DensrefineError as err:
            _JOB["job"] = None
            say(str(err))
            return False
        if res is None:
            coot.add_status_bar_text(status_text(job))
            return True
        _JOB["job"] = None
        _guard(lambda: done(res))()
        return False

    schedule = SCHEDULE if SCHEDULE is not None else _default_schedule()
    if schedule is None:
        try:
            res = job.wait()
        finally:
            _JOB["job"] = None
        done(res)
    else:
        schedule(500, tick)


def refine(selection=None):
    """Export the active model and refinement map, run ``densrefine fit``, read back."""
    if _JOB["job"] is not None:
        raise ex.DensrefineError("densrefine: a job is already running; cancel it first")
    imol, imap = active_model()[0], refinement_map()

    def go(d):
        job = ex.start_fit(*_writers(imol, imap), d, select=selection,
                           stages=SETTINGS["stages"], cycles=SETTINGS["cycles"],
                           exe=SETTINGS["exe"], live=live_client_for(imol))
        _coot().add_status_bar_text(f"densrefine fit started ({selection or 'all atoms'}) "
                                    + where(job))
        _follow(job, lambda res: _finish_fit(imol, res))
    with_resolution(go)


def refine_range():
    """Ask for a ``CHAIN/FIRST-LAST`` selection (default: active residue +/- 5) and refine."""
    _imol, chain, resno, _ins = active_model()
    h = SETTINGS["range_half_width"]
    default = ex.selection_for_range(chain, resno - h, resno + h)

    def got(text):
        _guard(lambda: refine(parse_selection(text)))()
        return 1
    _gui().generic_single_entry("Residues to refine (CHAIN/FIRST-LAST, comma-separated):",
                                default, "  Refine  ", got)


def score():
    """Per-residue CC of the active model (densrefine score); the model is not changed."""
    imol, imap = active_model()[0], refinement_map()

    def go(d):
        job = ex.start_score(*_writers(imol, imap), d, exe=SETTINGS["exe"],
                             live=live_client_for(imol))
        _coot().add_status_bar_text("densrefine score started " + where(job))
        _follow(job, lambda stats: _finish_score(imol, stats))
    with_resolution(go)


def live_client_for(imol):
    """The live session's client when live mode runs for molecule ``imol``, else None.

    Fit and score then run inside that warm session (no start-up per call); the data
    need not be the session's: the run reads the files it is given, as a process would.
    """
    client = _LIVE["client"]
    if client is None or _LIVE["imol"] != imol or not client.alive():
        return None
    return client


def where(job):
    """"in the warm live session" or "in a new densrefine process (why)"."""
    if isinstance(job, ex.ServedJob):
        return "in the warm live session"
    return f"in a new densrefine process ({job.why or 'no live session'})"


def ask_resolution():
    SETTINGS["resolution"] = None
    with_resolution(lambda d: _coot().add_status_bar_text(f"densrefine: resolution {d:g} Å"))


def cancel():
    job = _JOB["job"]
    if job is None:
        _coot().add_status_bar_text("densrefine: nothing running")
        return
    job.cancel()  # the next poll reports "cancelled"; nothing is read back


def live_data_file(imap):
    """The data file of live mode: $DENSREFINE_LIVE_DATA, else the MTZ/mmCIF a map was
    computed from ("/x/data.mtz FWT PHWT"), else the map file (cryo-EM)."""
    env = os.environ.get("DENSREFINE_LIVE_DATA")
    if env:
        return env
    name = _coot().molecule_name(imap)
    first = str(name).split()[0] if name else ""
    if first.lower().endswith((".mtz", ".cif", ".ent", ".cif.gz", ".ent.gz")) and \
            os.path.isfile(first):
        return first
    path = map_file(imap)
    if path is None:
        raise ex.DensrefineError("densrefine live: the refinement map has no MTZ or map "
                                 "file; set DENSREFINE_LIVE_DATA to the data file")
    return path


def host_atoms(imol, path):
    """{(chain, resno, ins, name, alt): (x, y, z)} of Coot's molecule, via a PDB snapshot."""
    if _coot().write_pdb_file(imol, path) != 0:
        raise ex.DensrefineError(f"densrefine live: Coot could not write molecule {imol}")
    with open(path, encoding="utf-8") as fh:
        return live.read_pdb_atoms(fh)


def live_on():
    """Start the warm session for the active model and refinement map."""
    import tempfile

    imol, imap = active_model()[0], refinement_map()
    data = live_data_file(imap)
    xray = not data.lower().endswith((".mrc", ".map", ".ccp4"))
    work = tempfile.mkdtemp(prefix="densrefine_live_")
    start = os.path.join(work, "start.pdb")
    atoms = host_atoms(imol, start)

    def go(d):
        coot = _coot()
        coot.add_status_bar_text("densrefine live: loading the model and data…")
        client = live.LiveClient.start(start, data, None if xray else d, exe=SETTINGS["exe"],
                                       log=os.path.join(work, "live.log"))
        tracker = live.AtomTracker(client.info()["atoms"])
        tracker.prime(atoms)
        _LIVE.update(client=client, tracker=tracker, imol=imol, dir=work, diff_imol=None,
                     watch=live.ScoreWatch())
        coot.add_status_bar_text(live.status_text(client.scores(), client.kind))
        schedule = SCHEDULE if SCHEDULE is not None else _default_schedule()
        if schedule is not None:
            schedule(LIVE_TICK_MS, _guarded_tick)
    if xray:
        go(None)
    else:
        with_resolution(go)


def live_off():
    client = _LIVE["client"]
    _LIVE.update(client=None, tracker=None)
    if client is not None:
        client.close()
        _coot().add_status_bar_text("densrefine live: off")


def live_toggle():
    if _LIVE["client"] is None:
        live_on()
    else:
        live_off()


def live_tick():
    """One look at the model: send what moved, show the numbers, re-read the difference
    map. Returns the update result (None when nothing moved or live mode is off).

    When nothing moved, the status bar is brought up to date once the session's idle
    refit of the X-ray scales has changed R-work/R-free (`densrefine_live.ScoreWatch`);
    that refreshed result is returned (``refit`` True)."""
    client = _LIVE["client"]
    if client is None:
        return None
    atoms = host_atoms(_LIVE["imol"], os.path.join(_LIVE["dir"], "now.pdb"))
    res = _LIVE["tracker"].send(client, atoms)
    coot = _coot()
    if res is None:
        fresh = _LIVE["watch"].poll(client)
        if fresh is not None:
            coot.add_status_bar_text(live.status_text(fresh, client.kind))
        return fresh
    _LIVE["watch"].shown(res)
    coot.add_status_bar_text(live.status_text(res, client.kind))
    box = res["boxes"][0]
    centre = [(a + b) / 2.0 for a, b in zip(box["lo"], box["hi"])]
    maps = client.maps(centre, LIVE_BOX_A)
    name = "fofc" if client.kind == "xray" else "difference"
    path = live.write_ccp4_box(os.path.join(_LIVE["dir"], f"live_{name}.map"),
                               maps["maps"][name], maps)
    if _LIVE["diff_imol"] is not None:
        coot.close_molecule(_LIVE["diff_imol"])
    _LIVE["diff_imol"] = coot.handle_read_ccp4_map(path, 1)
    return res


def _guarded_tick(*_args):
    if _LIVE["client"] is None:
        return False
    try:
        live_tick()
    except ex.DensrefineError as err:
        _LIVE.update(client=None, tracker=None)
        say(str(err))
        return False
    except Exception as err:  # noqa: BLE001 - a plugin must never crash Coot
        first = (str(err).splitlines() or [""])[0]
        say(f"densrefine live: {type(err).__name__}: {first}")
        return False
    return True


ACTIONS = {"fit": lambda: refine(None), "range": refine_range, "score": score,
           "resolution": ask_resolution, "cancel": cancel, "live": live_toggle}


def install():
    """Add the "densrefine" menu to Coot's menu bar; returns the menu (None without GUI)."""
    import coot_gui_api
    coot_gui = _gui()
    has_bar = getattr(coot_gui_api, "main_menumodel", None) or coot_gui_api.main_menubar
    if not has_bar():
        return None
    if _JOB.get("menu") is not None:  # loaded twice (start-up file and --script)
        return _JOB["menu"]
    menu = _JOB["menu"] = coot_gui.coot_menubar_menu(MENU)
    for key, label in LABELS.items():
        cb = _guard(ACTIONS[key])
        if hasattr(coot_gui, "add_simple_action_to_menu"):  # Coot >= 1.1 (GTK 4, Gio actions)
            coot_gui.add_simple_action_to_menu(menu, label, f"densrefine_{key}",
                                               lambda _action, _param, cb=cb: cb())
        else:  # Coot 1.0 (GTK 3)
            coot_gui.add_simple_coot_menu_menuitem(menu, label, lambda _w, cb=cb: cb())
    return menu
