"""``densrefine live on|off|update``: a warm densrefine session that follows your edits.

::

    densrefine live on #1 inMap #2 resolution 3.2      # cryo-EM: CC_mask, residue CC
    densrefine live on #1 data /path/data.mtz          # X-ray: R-work / R-free
    densrefine live update                             # look at the model now
    densrefine live off

``on`` writes the model (in the map's frame for cryo-EM), starts ``densrefine serve``
(docs/live.md) and keeps it. After each edit of the model's coordinates (seen on the
"new frame" trigger, at most every 0.25 s, or at once with ``live update``) the moved
atoms go to the session; the log's status line shows R-work/R-free or CC_mask with the
change, and two volumes around the edit are updated in place: mFo−DFc and 2mFo−DFc
(X-ray) or the difference map (map − scaled model map) and the model map (cryo-EM).
The client is `live_client` (a copy of plugins/exchange/densrefine_live.py: the bundle
must stand alone once installed).
"""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from . import live_client as lc

TICK_S = 0.25
BOX_A = 20.0
TOL_A = 5e-4


class LiveState:
    """One live session: the client, the structure, the atom mapping and the volumes."""

    def __init__(self, session, structure, volume, client, folder):
        self.session, self.structure, self.volume = session, structure, volume
        self.client, self.folder = client, folder
        tracker = lc.AtomTracker(client.info()["atoms"])
        atoms = structure.atoms
        res = atoms.residues
        keys = zip(res.chain_ids, res.numbers, res.insertion_codes, atoms.names)
        alt = atoms.num_alt_locs
        self.index = np.array([-1 if alt[i] else tracker.index.get(
            (str(c), int(n), str(ic).strip(), str(nm), ""), -1)
            for i, (c, n, ic, nm) in enumerate(keys)], np.int64)
        self.ok = self.index >= 0
        self.last = self.coords()
        self.volumes = {}
        self.handler = None
        self._t = 0.0
        self.last_result = None
        self.watch = lc.ScoreWatch()

    def coords(self):
        """Coordinates in the session's frame (the map's for cryo-EM), (N, 3)."""
        xyz = self.structure.atoms.scene_coords
        ref = self.volume if self.volume is not None else self.structure
        return ref.scene_position.inverse().transform_points(xyz)

    def tick(self, force=False):
        """Send moved atoms; show the numbers and update the volumes. Returns the result
        (None when nothing moved). When nothing moved, the status line is brought up to
        date once the session's idle refit of the X-ray scales has changed R-work/R-free
        (`live_client.ScoreWatch`); that result is returned, ``refit`` True."""
        now = time.monotonic()
        if not force and now - self._t < TICK_S:
            return None
        self._t = now
        if self.structure.deleted:
            stop(self.session)
            return None
        xyz = self.coords()
        moved = self.ok & (np.abs(xyz - self.last).max(1) > TOL_A)
        if not moved.any():
            fresh = self.watch.poll(self.client)
            if fresh is None:
                return None
            text = lc.status_text(fresh, self.client.kind)
            self.session.logger.status(text, log=True)
            self.last_result = dict(fresh, text=text)
            return self.last_result
        res = self.client.update(self.index[moved].tolist(), xyz[moved].tolist())
        self.last[moved] = xyz[moved]
        res["n_moved"] = int(moved.sum())
        self.watch.shown(res)
        text = lc.status_text(res, self.client.kind)
        self.session.logger.status(text, log=True)
        box = res["boxes"][0]
        self.show_maps([(a + b) / 2.0 for a, b in zip(box["lo"], box["hi"])])
        self.last_result = dict(res, text=text)
        return self.last_result

    def show_maps(self, centre):
        """Create or refresh the map volumes around ``centre`` (session frame, Å)."""
        from chimerax.map import volume_from_grid_data
        from chimerax.map_data import ArrayGridData

        out = self.client.maps(centre, BOX_A)
        steps = np.array(out["steps"], float)
        cell = out.get("cell") or [0, 0, 0, 90.0, 90.0, 90.0]
        place = (self.volume or self.structure).scene_position
        names = (("fofc", "2fofc") if self.client.kind == "xray"
                 else ("difference", "model"))
        for name in names:
            arr = np.ascontiguousarray(out["maps"][name], np.float32)
            g = ArrayGridData(arr, origin=tuple(out["origin"]),
                              step=tuple(np.linalg.norm(steps, axis=0)),
                              cell_angles=tuple(cell[3:6]), name=f"densrefine {name}")
            v = self.volumes.get(name)
            if v is None or v.deleted:
                v = volume_from_grid_data(g, self.session, style="mesh", show_dialog=False)
                self.volumes[name] = v
            else:
                v.replace_data(g)
            v.scene_position = place
        return out


def _state(session):
    return getattr(session, "_densrefine_live", None)


def start(session, structure, in_map=None, resolution=None, data=None, executable=None):
    """Start live mode (see the module docstring); returns the `LiveState`."""
    from chimerax.core.errors import UserError

    from . import job as jobmod

    if _state(session) is not None:
        stop(session)
    if (in_map is None) == (data is None):
        raise UserError("densrefine live on: give inMap (cryo-EM) or data (X-ray reflections)")
    if in_map is not None and resolution is None:
        raise UserError("densrefine live on: a map needs its resolution (resolution 3.2)")
    folder = tempfile.mkdtemp(prefix="densrefine-live-")
    if in_map is not None:
        from .host import export_inputs

        snap = export_inputs(session, structure, in_map, folder)
        model, source = snap["model"], snap["map"]
    else:
        from chimerax.pdb import save_pdb

        if not os.path.isfile(data):
            raise UserError(f"densrefine live on: no such file {data!r}")
        model, source = os.path.join(folder, "model.pdb"), data
        save_pdb(session, model, models=[structure])
    try:
        exe = jobmod.resolve_executable(executable)
    except jobmod.JobError as exc:
        raise UserError(str(exc)) from None
    session.logger.status("densrefine live: loading the model and data…")
    try:
        client = lc.LiveClient.start(model, source, resolution, exe=exe,
                                     log=os.path.join(folder, "live.log"))
    except lc.DensrefineError as exc:
        raise UserError(str(exc)) from None
    state = LiveState(session, structure, in_map, client, folder)
    session._densrefine_live = state
    text = lc.status_text(client.scores(), client.kind)
    session.logger.status(text, log=True)

    def on_frame(*_):
        st = _state(session)
        if st is None:
            from chimerax.core.triggerset import DEREGISTER
            return DEREGISTER
        try:
            st.tick()
        except lc.DensrefineError as exc:
            session.logger.error(str(exc))
            stop(session)
        return None

    state.handler = session.triggers.add_handler("new frame", on_frame)
    return state


def stop(session):
    """Stop live mode (the volumes stay open)."""
    st = _state(session)
    session._densrefine_live = None
    if st is None:
        session.logger.info("densrefine live: not running")
        return False
    if st.handler is not None:
        try:
            session.triggers.remove_handler(st.handler)
        except Exception as exc:  # noqa: BLE001 - already gone
            session.logger.info(f"densrefine live: frame handler already gone ({exc})")
    st.client.close()
    session.logger.status("densrefine live: off", log=True)
    return True


def densrefine_live(session, mode, structure=None, in_map=None, resolution=None, data=None,
                    executable=None):
    """The ``densrefine live`` command: ``on``, ``off`` or ``update``."""
    from chimerax.core.errors import UserError

    if mode == "on":
        if structure is None:
            raise UserError("densrefine live on: name the model, e.g. densrefine live on #1 …")
        return start(session, structure, in_map, resolution, data, executable)
    if mode == "off":
        return stop(session)
    st = _state(session)
    if st is None:
        raise UserError("densrefine live: not running; start it with 'densrefine live on'")
    try:
        res = st.tick(force=True)
    except lc.DensrefineError as exc:
        raise UserError(str(exc)) from None
    if res is None:
        session.logger.info("densrefine live: nothing moved")
    elif res.get("refit"):
        session.logger.info("densrefine live: nothing moved; " + res["text"])
    return res


def live_desc():
    from chimerax.atomic import AtomicStructureArg
    from chimerax.core.commands import CmdDesc, EnumOf, FloatArg, OpenFileNameArg, StringArg
    from chimerax.map import MapArg

    return CmdDesc(required=[("mode", EnumOf(("on", "off", "update")))],
                   optional=[("structure", AtomicStructureArg)],
                   keyword=[("in_map", MapArg), ("resolution", FloatArg),
                            ("data", OpenFileNameArg), ("executable", StringArg)],
                   synopsis="densrefine live mode: R or CC after each edit, maps that follow")
