"""densrefine commands for PyMOL: refine or score a loaded model against a loaded map.

Load in PyMOL with ``run plugins/pymol/densrefine_pymol.py`` (or from ~/.pymolrc).
Commands::

    densrefine_fit SELECTION, MAP, RESOLUTION [, stages=xyz] [, cycles=N] [, weight=W]
    densrefine_score SELECTION, MAP, RESOLUTION
    densrefine_live on, OBJECT, DATA [, RESOLUTION]   # live mode (docs/live.md)
    densrefine_live update                            # after edits: R or CC, diff map
    densrefine_live off

``SELECTION`` must lie in one object. The whole object is exported (PDB) with the map
(CCP4, PyMOL keeps the map's origin); when ``SELECTION`` is part of the object only its
residues are refined (``--select A/10-40,...``). While it runs, one feedback line per
optimisation call (stage, CC, bond RMSD) is printed. On success the object's coordinates
and B-factors are updated in place, every atom of the object gets the property
``p.densrefine_cc`` (its residue's CC after refinement; densrefine scores the whole
model after a selection fit), the selection ``densrefine_worst`` holds the 10 worst
refined residues, and a worst-first table is printed. On failure (including a map name
that is not a loaded map) a one-line message is raised as a PyMOL error (no traceback)
and the object is left unchanged.

While ``densrefine_live`` runs for the object, fit and score run inside that warm
session (no start-up per call; same command, same results); otherwise, and it says so,
densrefine runs out of process (PyMOL's Python has no torch): set ``DENSREFINE_EXE``
(e.g. ``"/path/to/python3 -m densrefine"``), else ``densrefine`` on PATH is used.
The host-neutral part is ``plugins/exchange/densrefine_exchange.py``.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

# PyMOL's "run" sets __script__ (its namespace's __file__ is pymol's own)
_here = os.path.dirname(os.path.abspath(globals().get("__script__")
                                        or globals().get("__file__", os.getcwd())))
for _p in (os.path.join(os.path.dirname(_here), "exchange"),):
    if os.path.isdir(_p) and _p not in sys.path:
        sys.path.insert(0, _p)

import densrefine_exchange as ex
import densrefine_live as live
from pymol import CmdException, cmd

TMP_OBJECT = "_densrefine_tmp"


def _object_and_selection(selection, _self):
    objs = _self.get_object_list(f"({selection})") or []
    if len(objs) != 1:
        raise CmdException(f"densrefine: selection '{selection}' must lie in exactly one "
                           f"object (found {len(objs)})")
    obj = objs[0]
    if _self.count_atoms(f"({selection})") == _self.count_atoms(obj):
        return obj, None
    space = {"pairs": set()}
    _self.iterate(f"({selection})", "pairs.add((chain, resv))", space=space)
    return obj, ex.selection_for_residues(space["pairs"])


def _check_map(map_name, _self):
    """A one-line PyMOL error unless ``map_name`` is a loaded map object."""
    maps = [n for n in _self.get_names("objects") if _self.get_type(n) == "object:map"]
    have = f"maps loaded: {', '.join(maps)}" if maps else "no map is loaded"
    if map_name not in _self.get_names("all"):
        raise CmdException(f"densrefine: no map named '{map_name}' ({have}); load one with "
                           f"'load emd_1234.map, {map_name}'")
    kind = _self.get_type(map_name)
    if kind != "object:map":
        raise CmdException(f"densrefine: '{map_name}' is a {kind.split(':')[-1]}, not a map "
                           f"({have}); give the map object as the second argument")


def _live_client_for(obj):
    """The live session's client when ``densrefine_live`` runs for ``obj``, else None:
    fit and score then run inside that warm session (no start-up per call)."""
    client = _LIVE.get("client")
    if client is None or _LIVE.get("obj") != obj or not client.alive():
        return None
    return client


def _say_where(job, quiet):
    if int(quiet):
        return
    if isinstance(job, ex.ServedJob):
        print(" densrefine: running in the warm live session", flush=True)
    else:
        why = job.why or "no live session"
        print(f" densrefine: running in a new densrefine process ({why})", flush=True)


def _wait(job, quiet):
    """Wait for a densrefine job, printing one feedback line per finished call."""
    seen = 0
    while True:
        res = job.poll()
        cycles = job.cycles()
        if len(cycles) > seen and not int(quiet):
            # every call, also those that finished within one poll interval
            for n, rec in enumerate(cycles[seen:], start=seen + 1):
                print(" " + ex.progress_line(n, rec), flush=True)
            seen = len(cycles)
        if res is not None:
            return res
        time.sleep(ex.POLL_S)


def _read_back(obj, path, _self):
    """Coordinates and B of ``path`` into ``obj`` (atoms matched by identifiers)."""
    _self.load(path, TMP_OBJECT)
    try:
        _self.update(obj, TMP_OBJECT)
        space = {"bmap": {}}
        _self.iterate(TMP_OBJECT, "bmap[(chain, resi, name, alt)] = b", space=space)
        _self.alter(obj, "b = b_new.get((chain, resi, name, alt), b)",
                    space={"b_new": space["bmap"]})
    finally:
        _self.delete(TMP_OBJECT)


def _show_residues(obj, rows, every, _self, title, quiet=0):
    """Per-atom property p.densrefine_cc (from ``every`` residue record), selection
    densrefine_worst (from ``rows``, worst first), printed table."""
    cc = {(r["chain"], str(r["res_seq"]) + (r.get("icode") or "").strip()): r["cc"]
          for r in every if r.get("cc") is not None}
    _self.alter(obj, "p.densrefine_cc = cc.get((chain, resi), -1.0)", space={"cc": cc})
    worst = rows[:10]
    if worst:
        sel = " or ".join(f"(chain {r['chain']} and resi {r['res_seq']}{r['icode']})"
                          for r in worst)
        _self.select("densrefine_worst", f"{obj} and ({sel})", enable=0)
    if int(quiet):
        return
    print(f" densrefine: {title}, worst first:")
    for r in worst:
        print(f"   {r['label']}")


def densrefine_fit(selection, map_name, resolution, stages="", cycles="", weight="",
                   quiet=0, _self=cmd):
    """Refine SELECTION's object against MAP (see the module docstring)."""
    obj, select = _object_and_selection(selection, _self)
    _check_map(map_name, _self)
    with tempfile.TemporaryDirectory(prefix="densrefine_pymol_") as tmp:
        workdir = os.path.join(tmp, "run")
        try:
            job = ex.start_fit(lambda p: _self.save(p, obj), lambda p: _self.save(p, map_name),
                               resolution, select=select, stages=stages or None,
                               cycles=cycles or None, weight=weight or None,
                               workdir=workdir, model_ext=".pdb", live=_live_client_for(obj))
            _say_where(job, quiet)
            res = _wait(job, quiet)
        except ex.DensrefineError as err:
            raise CmdException(str(err)) from None
        _read_back(obj, res.model_path, _self)
        rows = res.worst()
        every = res.residues("after")
        summary = res.summary()
    print(" " + summary)
    _show_residues(obj, rows, every, _self, f"per-residue CC ({select or 'all'})", quiet)
    return {"summary": summary, "select": select, "worst": rows}


def densrefine_score(selection, map_name, resolution, quiet=0, _self=cmd):
    """Per-residue CC of SELECTION's object against MAP; the model is not changed."""
    obj, _ = _object_and_selection(selection, _self)
    _check_map(map_name, _self)
    with tempfile.TemporaryDirectory(prefix="densrefine_pymol_") as tmp:
        try:
            job = ex.start_score(lambda p: _self.save(p, obj),
                                 lambda p: _self.save(p, map_name), resolution,
                                 workdir=os.path.join(tmp, "run"), live=_live_client_for(obj))
            _say_where(job, quiet)
            stats = job.wait()
        except ex.DensrefineError as err:
            raise CmdException(str(err)) from None
    rows = ex.worst_residues(stats)
    print(" " + ex.summary_line(stats))
    _show_residues(obj, rows, ex.residue_scores(stats), _self, "per-residue CC", quiet)
    return {"summary": ex.summary_line(stats), "worst": rows}


cmd.extend("densrefine_fit", densrefine_fit)
cmd.extend("densrefine_score", densrefine_score)
try:  # tab completion: selection, then map object (cosmetic; absent in some builds)
    for _name in ("densrefine_fit", "densrefine_score"):
        cmd.auto_arg[0][_name] = cmd.auto_arg[0]["zoom"]
        cmd.auto_arg[1][_name] = [cmd.object_sc, "map object", ""]
except (AttributeError, KeyError, IndexError):
    pass


_LIVE = {"client": None}


def densrefine_live(mode, obj="", data="", resolution="", quiet=0, _self=cmd):
    """Live mode: ``on`` starts a warm session for OBJECT against DATA (reflections, or a
    map file with RESOLUTION); ``update`` sends the atoms moved since the last update,
    prints R-work/R-free or CC_mask with the change and reloads the difference map around
    the edit as the map object ``densrefine_diff``; ``off`` ends the session. Returns the
    update's numbers (dict) or None."""
    mode = str(mode).strip()
    try:
        if mode == "on":
            return _live_on(obj, data, resolution, _self)
        if mode == "off":
            client = _LIVE.get("client")
            _LIVE.clear()
            _LIVE["client"] = None
            if client is not None:
                client.close()
            print("densrefine live: off")
            return None
        if mode == "update":
            return _live_update(_self)
    except ex.DensrefineError as err:
        raise CmdException(str(err)) from None
    raise CmdException(f"densrefine_live: mode must be on, update or off, not {mode!r}")


def _live_keys(obj, _self):
    rows = []
    _self.iterate(obj, "rows.append((chain, resv, resi, name, alt))", space={"rows": rows})
    # the insertion code is what follows the number in resi ("100A")
    return [(c, v, str(r).lstrip("-0123456789"), n, a) for c, v, r, n, a in rows]


def _live_on(obj, data, resolution, _self):
    if _LIVE.get("client") is not None:
        densrefine_live("off")
    if obj not in (_self.get_names("objects") or []):
        raise CmdException(f"densrefine_live: no object {obj!r}")
    if not os.path.isfile(data):
        raise CmdException(f"densrefine_live: no such file {data!r}")
    folder = tempfile.mkdtemp(prefix="densrefine_live_")
    model = os.path.join(folder, "start.pdb")
    _self.save(model, obj)
    d = float(resolution) if str(resolution).strip() else None
    client = live.LiveClient.start(model, data, d, log=os.path.join(folder, "live.log"))
    tracker = live.AtomTracker(client.info()["atoms"])
    keys = _live_keys(obj, _self)
    tracker.prime(dict(zip(keys, _self.get_coords(obj).tolist())))
    _LIVE.update(client=client, tracker=tracker, obj=obj, keys=keys, folder=folder,
                 watch=live.ScoreWatch())
    text = live.status_text(client.scores(), client.kind)
    print(text)
    return text


def _live_update(_self):
    client = _LIVE.get("client")
    if client is None:
        raise CmdException("densrefine_live: not running; use densrefine_live on, OBJ, DATA")
    obj = _LIVE["obj"]
    res = _LIVE["tracker"].send(client, dict(zip(_LIVE["keys"], _self.get_coords(obj).tolist())))
    if res is None:
        # the idle refit of the X-ray scales may have moved R since the last update
        fresh = _LIVE["watch"].poll(client)
        if fresh is None:
            print("densrefine live: nothing moved")
            return None
        fresh["text"] = live.status_text(fresh, client.kind)
        print("densrefine live: nothing moved; " + fresh["text"])
        return fresh
    _LIVE["watch"].shown(res)
    res["text"] = live.status_text(res, client.kind)
    print(res["text"])
    box = res["boxes"][0]
    maps = client.maps([(a + b) / 2.0 for a, b in zip(box["lo"], box["hi"])], 20.0)
    name = "fofc" if client.kind == "xray" else "difference"
    path = live.write_ccp4_box(os.path.join(_LIVE["folder"], "diff.ccp4"), maps["maps"][name],
                               maps)
    _self.delete("densrefine_diff")
    _self.load(path, "densrefine_diff", format="ccp4")
    return res


cmd.extend("densrefine_live", densrefine_live)
