"""ChimeraX commands ``densrefine fit|score|stop|set``.

::

    densrefine fit #1 inMap #2 resolution 3.2 [select /A:10-40] [weight W] [stages xyz,b]
                   [cycles N] [device cpu] [executable PATH] [timeout S] [wait true|false]
                   [color true|false] [keepFiles true|false]
    densrefine score #1 inMap #2 resolution 3.2 [...same run options...]
    densrefine stop          # cancel running densrefine jobs; models stay as they were
    densrefine set [executable "python3 -m densrefine"] [timeout 600]
    densrefine live on #1 inMap #2 resolution 3.2 | densrefine live on #1 data x.mtz
    densrefine live update | densrefine live off      # see `.live`

densrefine runs out of process (`.job`); the model and map are exported to a temporary
folder (`.host`). ``fit`` puts the refined coordinates and B-factors back into the open
model, matched atom by atom, and only when every atom matched and densrefine succeeded;
on any failure or cancel the model is untouched and one line is reported. With the GUI
the run is polled from the "new frame" trigger (ChimeraX stays responsive and ``densrefine
stop`` works); without it, or with ``wait true``, the command waits and logs progress.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time

from . import host, report
from . import job as jobmod
from .matching import MatchError, selection_text

COMMANDS = ("densrefine fit", "densrefine score", "densrefine stop", "densrefine set",
            "densrefine live")
POLL_S = 0.2


def _settings(session):
    s = getattr(session, "_densrefine_settings", None)
    if s is None:
        from chimerax.core.settings import Settings

        class _Settings(Settings):
            AUTO_SAVE = {"executable": "", "timeout": 0.0}  # noqa: RUF012 - ChimeraX API

        s = session._densrefine_settings = _Settings(session, "densrefine")
    return s


def _runs(session):
    """Runs in progress in ``session`` (a list kept on the session)."""
    if not hasattr(session, "_densrefine_runs"):
        runs = session._densrefine_runs = []

        def on_quit(*_):  # children run in their own process group: stop them too
            for r in runs:
                r.job.cancel("ChimeraX is quitting")
                r.job.poll()

        session.triggers.add_handler("app quit", on_quit)
    return session._densrefine_runs


class Run:
    """One fit/score run: export, start, poll, finish (apply or report), clean up."""

    def __init__(self, session, kind, structure, volume, resolution, opts):
        self.session, self.kind = session, kind
        self.structure, self.volume, self.resolution = structure, volume, resolution
        self.opts = opts
        self.folder = tempfile.mkdtemp(prefix="densrefine-chimerax-")
        self.job = self.snapshot = None
        self._last_poll = 0.0
        self.result = None

    @property
    def label(self):
        return f"densrefine {self.kind} #{self.structure.id_string}"

    def start(self, exe):
        """Export the inputs and start densrefine (``exe``: argv prefix, None: in-process)."""
        self.snapshot = host.export_inputs(self.session, self.structure, self.volume,
                                           self.folder)
        prefix = os.path.join(self.folder, "fit")
        if self.kind == "fit":
            args = jobmod.fit_args(self.snapshot["model"], self.snapshot["map"],
                                   self.resolution, prefix, select=self.opts.get("select"),
                                   weight=self.opts.get("weight"),
                                   stages=self.opts.get("stages"),
                                   cycles=self.opts.get("cycles"),
                                   device=self.opts.get("device"))
        else:
            args = jobmod.score_args(self.snapshot["model"], self.snapshot["map"],
                                     self.resolution, prefix + "_stats.json",
                                     device=self.opts.get("device"))
        timeout = self.opts.get("timeout")
        client = live_client_for(self.session, self.structure)
        if client is not None:
            self.job = jobmod.ServedJob(client, args, timeout=timeout)
            shown = "in the warm live session: densrefine " + " ".join(args)
        else:
            self.job = (jobmod.InProcessJob(args) if exe is None
                        else jobmod.Job(list(exe) + args, timeout=timeout))
            shown = (" ".join((exe or ["(in-process)"]) + args)
                     + " (a new densrefine process: no live session for this model)")
        self.session.logger.info(f"{self.label}: running {shown}")
        _runs(self.session).append(self)
        try:
            self.job.start()
        except BaseException:
            self._forget()
            raise
        return self

    def log_lines(self, lines):
        if lines:
            self.session.logger.info("\n".join(lines))
            self.session.logger.status(f"{self.label}: {lines[-1]}")

    def poll(self):
        """One non-blocking step; True while still running."""
        self.log_lines(self.job.poll())
        return self.job.state == jobmod.RUNNING

    def finish(self):
        """After the job ended: apply or report. Returns the result dict or raises UserError."""
        from chimerax.core.errors import UserError

        self._forget()
        try:
            self.log_lines(self.job.poll_rest())
            if self.job.state == jobmod.CANCELLED:
                raise UserError(f"{self.label}: {self.job.reason}; model "
                                f"#{self.structure.id_string} unchanged")
            if self.job.state != jobmod.FINISHED:
                log = os.path.join(self.folder, "fit.log" if self.kind == "fit"
                                   else "fit_stats.log")
                line = jobmod.error_line(self.job.lines, self.job.returncode,
                                         log if os.path.exists(log) else None)
                if not jobmod.is_user_error(line):
                    self.opts["keep_files"] = True  # the log it names must survive
                raise UserError(f"{line} (model #{self.structure.id_string} unchanged)")
            self.result = self._apply()
            return self.result
        finally:
            if not self.opts.get("keep_files"):
                shutil.rmtree(self.folder, ignore_errors=True)

    def _forget(self):
        runs = _runs(self.session)
        if self in runs:
            runs.remove(self)

    def _apply(self):
        from chimerax.core.errors import UserError

        s = self.structure
        if s.deleted or self.volume.deleted:
            raise UserError(f"{self.label}: the model or map was closed while densrefine ran")
        try:
            stats = report.read_stats(os.path.join(self.folder, "fit_stats.json"))
        except (OSError, ValueError) as exc:
            self.opts["keep_files"] = True
            raise UserError(f"{self.label}: cannot read densrefine's stats ({exc}); model "
                            f"#{s.id_string} unchanged") from None
        if self.kind == "score":
            return self._show(stats, None, {})
        if s.num_atoms != self.snapshot["n_atoms"] or \
                (s.atoms.coords != self.snapshot["coords"]).any():
            self.opts["keep_files"] = True
            raise UserError(f"{self.label}: the model was edited while densrefine ran; "
                            f"result not applied (files kept in {self.folder})")
        try:
            res = host.read_result(s, os.path.join(self.folder, "fit.pdb"), self.snapshot)
        except (MatchError, OSError) as exc:
            self.opts["keep_files"] = True
            raise UserError(f"{self.label}: result not applied, {exc} (files in "
                            f"{self.folder})") from None
        host.apply_result(self.session, s, res, name=self.label)
        extra = {"n_moved": int(res["moved"].sum()), "n_b_changed": int(res["b_changed"].sum()),
                 "rmsd_moved": stats.get("rmsd_moved")}
        return self._show(stats["before"], stats["after"], extra)

    def _show(self, before, after, extra):
        """Residue attributes, colours and the HTML table; returns the result dict."""
        host.register_attributes(self.session)
        s = self.structure
        if after is not None:
            host.set_residue_values(s, report.residue_cc(before), host.CC_BEFORE_ATTR)
        vals = host.set_residue_values(s, report.residue_cc(after or before), host.CC_ATTR)
        rng = host.color_by_values(s, vals) if self.opts.get("color", True) else None
        notes = [f"map #{self.volume.id_string}, resolution {self.resolution:g} Å"]
        if after is not None:
            notes.append(f"{extra['n_moved']} atoms moved (RMSD over all atoms "
                         f"{extra['rmsd_moved'] or 0:.3f} Å), selection "
                         f"{self.opts.get('select') or 'all'}, {self.job.elapsed:.1f} s")
        if rng:
            notes.append(f"residues coloured by {host.CC_ATTR}: red {rng[0]:.2f}, "
                         f"white {(rng[0] + rng[1]) / 2:.2f}, blue {rng[1]:.2f}")
        html = report.scores_html(f"{self.label} (map #{self.volume.id_string})", before, after,
                                  notes)
        self.session.logger.info(html, is_html=True)

        def scores(block):
            return {k: report.value(block, k, w) for k, _, w in report.ROWS}

        return dict(extra, kind=self.kind, html=html, before=scores(before),
                    after=scores(after) if after is not None else None, color_range=rng,
                    select=self.opts.get("select"))


def live_client_for(session, structure):
    """The client of ``densrefine live`` when it runs for ``structure``, else None: fit and
    score then run inside that warm session instead of a new process."""
    st = getattr(session, "_densrefine_live", None)
    if st is None or st.structure is not structure or not st.client.alive():
        return None
    return st.client


def _select_text(session, structure, atoms):
    """densrefine ``--select`` text for the atoms of ``structure`` in ``atoms``."""
    from chimerax.core.errors import UserError

    atoms = atoms.intersect(structure.atoms)
    if len(atoms) == 0:
        raise UserError(f"densrefine fit: the selection has no atoms of model "
                        f"#{structure.id_string}")
    res = atoms.unique_residues
    if len(res.atoms) != len(atoms):
        session.logger.info("densrefine refines whole residues: partly selected residues "
                            "are refined completely")
    allr = structure.residues
    if len(res) == len(allr):
        return None
    text = selection_text(zip(res.chain_ids.tolist(), res.numbers.tolist()),
                          zip(allr.chain_ids.tolist(), allr.numbers.tolist()))
    bad = [c for c in set(res.chain_ids.tolist()) if not c or set(c) & set("/, ")]
    if bad:
        raise UserError(f"chain id {bad[0]!r} cannot be written as a densrefine selection")
    return text


def _start(session, kind, structure, in_map, resolution, *, executable=None, timeout=None,
           wait=None, **opts):
    from chimerax.core.errors import UserError

    if any(r.structure is structure for r in _runs(session)):
        raise UserError(f"densrefine is already running on #{structure.id_string}; "
                        "wait for it or use 'densrefine stop'")
    settings = _settings(session)
    try:
        exe = jobmod.resolve_executable(executable, settings.executable)
    except jobmod.JobError as exc:
        raise UserError(f"{exc} (model #{structure.id_string} unchanged)") from None
    opts["timeout"] = timeout if timeout is not None else settings.timeout
    run = Run(session, kind, structure, in_map, resolution, opts)
    try:
        run.start(exe)
    except jobmod.JobError as exc:
        shutil.rmtree(run.folder, ignore_errors=True)
        raise UserError(f"{exc} (model #{structure.id_string} unchanged)") from None
    if wait is None:
        wait = not getattr(session.ui, "is_gui", False)
    if wait or isinstance(run.job, jobmod.InProcessJob):
        run.job.wait(on_lines=run.log_lines, interval=POLL_S)
        return run.finish()
    _poll_from_frames(session, run)
    session.logger.info(f"{run.label} runs in the background; 'densrefine stop' cancels it")
    return run


def _poll_from_frames(session, run):
    """Poll ``run`` from the "new frame" trigger; finish it on the frame after it ends."""
    from chimerax.core.errors import UserError
    from chimerax.core.triggerset import DEREGISTER

    def tick(*_):
        now = time.monotonic()
        if now - run._last_poll < POLL_S:
            return None
        run._last_poll = now
        if run.poll():
            return None
        try:
            run.finish()
        except UserError as exc:
            session.logger.error(str(exc))
        return DEREGISTER

    run.handler = session.triggers.add_handler("new frame", tick)


def densrefine_fit(session, structure, in_map=None, resolution=None, select=None,
                   weight=None, stages=None, cycles=None, device=None, executable=None,
                   timeout=None, wait=None, color=True, keep_files=False):
    """Refine ``structure`` into ``in_map`` with densrefine and update it in place.

    Returns the result dict (scores before/after, atoms moved, HTML table) when the
    command waits, else the running `Run`.
    """
    from chimerax.core.errors import UserError

    try:
        stages = jobmod.check_stages(stages)
    except ValueError as exc:
        raise UserError(f"densrefine fit: {exc}") from None
    sel = None if select is None else _select_text(session, structure, select)
    return _start(session, "fit", structure, in_map, resolution, select=sel, weight=weight,
                  stages=stages, cycles=cycles, device=device, executable=executable,
                  timeout=timeout, wait=wait, color=color, keep_files=keep_files)


def densrefine_score(session, structure, in_map=None, resolution=None, device=None,
                     executable=None, timeout=None, wait=None, color=True, keep_files=False):
    """Score ``structure`` against ``in_map``; sets and colours by ``densrefine_cc``."""
    return _start(session, "score", structure, in_map, resolution, device=device,
                  executable=executable, timeout=timeout, wait=wait, color=color,
                  keep_files=keep_files)


def densrefine_stop(session):
    """Cancel every running densrefine job of this session; models stay unchanged."""
    runs = list(_runs(session))
    if not runs:
        session.logger.info("no densrefine job is running")
    for r in runs:
        r.job.cancel("cancelled by user ('densrefine stop')")
        session.logger.info(f"{r.label}: stopping")
    return len(runs)


def densrefine_set(session, executable=None, timeout=None):
    """Set (and save) the densrefine executable and the timeout (s, 0: none); log them."""
    from chimerax.core.errors import UserError

    s = _settings(session)
    if executable is not None:
        if executable.strip():
            try:
                jobmod.resolve_executable(executable, environ={})
            except jobmod.JobError as exc:
                raise UserError(str(exc)) from None
        s.executable = executable.strip()
    if timeout is not None:
        s.timeout = max(0.0, float(timeout))
    try:
        used = jobmod.resolve_executable(None, s.executable)
        used = " ".join(used) if used else "in-process"
    except jobmod.JobError as exc:
        used = f"none ({exc})"
    session.logger.info(f"densrefine settings: executable {s.executable or '(not set)'}, "
                        f"timeout {s.timeout:g} s; runs: {used}")
    return {"executable": s.executable, "timeout": s.timeout, "runs": used}


def _desc(name):
    from chimerax.atomic import AtomicStructureArg, AtomsArg
    from chimerax.core.commands import BoolArg, CmdDesc, FloatArg, IntArg, StringArg
    from chimerax.map import MapArg

    run_kw = [("device", StringArg), ("executable", StringArg), ("timeout", FloatArg),
              ("wait", BoolArg), ("color", BoolArg), ("keep_files", BoolArg)]
    target = [("in_map", MapArg), ("resolution", FloatArg)]
    if name == "densrefine fit":
        return CmdDesc(required=[("structure", AtomicStructureArg)],
                       keyword=target + [("select", AtomsArg), ("weight", FloatArg),
                                         ("stages", StringArg), ("cycles", IntArg)] + run_kw,
                       required_arguments=["in_map", "resolution"],
                       synopsis="refine a model into a map with densrefine")
    if name == "densrefine score":
        return CmdDesc(required=[("structure", AtomicStructureArg)], keyword=target + run_kw,
                       required_arguments=["in_map", "resolution"],
                       synopsis="score a model against a map with densrefine")
    if name == "densrefine stop":
        return CmdDesc(synopsis="cancel running densrefine jobs")
    if name == "densrefine live":
        from .live import live_desc
        return live_desc()
    if name == "densrefine set":
        return CmdDesc(keyword=[("executable", StringArg), ("timeout", FloatArg)],
                       synopsis="set the densrefine executable and timeout")
    raise ValueError(f"unknown command {name!r}; this bundle provides {', '.join(COMMANDS)}")


def densrefine_live(session, mode, structure=None, in_map=None, resolution=None, data=None,
                    executable=None):
    """``densrefine live on|off|update`` (see `.live`)."""
    from .live import densrefine_live as _f

    return _f(session, mode, structure, in_map, resolution, data, executable)


FUNCTIONS = {"densrefine fit": densrefine_fit, "densrefine score": densrefine_score,
             "densrefine stop": densrefine_stop, "densrefine set": densrefine_set,
             "densrefine live": densrefine_live}


def register_command(name, logger):
    """Register one of `COMMANDS` (what the bundle API's register_command calls)."""
    from chimerax.core.commands import register

    register(name, _desc(name), FUNCTIONS[name], logger=logger)


def register_commands(logger_or_session):
    """Register all `COMMANDS`; takes a session or its logger."""
    logger = getattr(logger_or_session, "logger", logger_or_session)
    for name in COMMANDS:
        register_command(name, logger)
    return COMMANDS
