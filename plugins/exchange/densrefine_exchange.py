"""Host-neutral exchange between a molecular-graphics host (Coot, PyMOL) and densrefine.

The host plugins are thin: they hand this module two *writer callbacks* (write the
model, write the map), and read the refined model back only when the run succeeded.
This module runs the densrefine command line out of process, reads
``PREFIX_stats.json`` and turns it into host-friendly data: a per-residue CC list
sorted worst first ("interesting places"), a one-line summary, and, on failure, the
one-line message densrefine printed (``densrefine fit: error: ...``, exit code 2),
never a traceback.

It imports neither Coot nor PyMOL nor densrefine, only the standard library, so it
runs inside any host's own Python (Coot's and PyMOL's have no torch).

The densrefine executable, in order of preference:

1. the ``exe`` argument (a string, split like a shell command, or a list);
2. the environment variable ``DENSREFINE_EXE`` (e.g. ``"/opt/venv/bin/densrefine"`` or
   ``"/usr/bin/python3 -m densrefine"``);
3. ``densrefine`` on ``PATH``;
4. ``python3 -m densrefine``.

Examples
--------
>>> selection_for_range("A", 10, 40)
'A/10-40'
>>> one_line_error("Traceback ...\\nValueError: x\\ndensrefine fit: error: bad -d\\n", 2)
'densrefine fit: error: bad -d'
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time

__all__ = ["DensrefineError", "FitResult", "Job", "ServedJob", "densrefine_command", "selection_for_range", "selection_for_residues",
           "fit_arguments", "one_line_error", "read_stats", "residue_scores", "worst_residues",
           "summary_line", "start_fit", "run_fit", "start_score", "run_score"]

#: seconds between polls of a running densrefine process
POLL_S = 0.2


class DensrefineError(RuntimeError):
    """densrefine failed; ``str(err)`` is one line suitable for a status bar or dialog."""


class FitResult:
    """What a finished ``densrefine fit`` gives the host.

    Attributes
    ----------
    model_path : str
        Refined model (PDB or mmCIF, same format as the exported model).
    stats : dict
        Parsed ``PREFIX_stats.json`` (see densrefine/refine/output.py for the layout).
    prefix : str
        Output prefix; ``prefix + "_report.html"`` and ``prefix + ".log"`` are next to it.
    selection : str or None
        The ``--select`` string used.
    """

    def __init__(self, model_path, stats, prefix, selection=None):
        self.model_path, self.stats, self.prefix = model_path, stats, prefix
        self.selection = selection

    def residues(self, block="after"):
        """Per-residue CC dicts of ``block`` ("before" or "after"), file order."""
        return residue_scores(self.stats, block)

    def worst(self, n=None):
        """Refined residues sorted by CC after refinement, worst first (see `worst_residues`)."""
        return worst_residues(self.stats, n=n, selection=self.selection)

    def summary(self):
        """One-line before → after summary (see `summary_line`)."""
        return summary_line(self.stats, self.selection)


def densrefine_command(exe=None):
    """The command (list of strings) that starts densrefine.

    Parameters
    ----------
    exe : str or list of str, optional
        Explicit executable; a string is split with `shlex.split`.

    Returns
    -------
    list of str
    """
    if exe is None:
        exe = os.environ.get("DENSREFINE_EXE", "").strip() or None
    if exe is None:
        found = shutil.which("densrefine")
        return [found] if found else ["python3", "-m", "densrefine"]
    return shlex.split(exe) if isinstance(exe, str) else [str(x) for x in exe]


def selection_for_range(chain, first=None, last=None):
    """densrefine ``--select`` string for a residue range of one chain.

    Parameters
    ----------
    chain : str
        Chain ID (Coot ``chain_id``, PyMOL ``chain``).
    first, last : int, optional
        Inclusive residue numbers; both None selects the whole chain, ``last`` None
        (or equal to ``first``) one residue.

    Returns
    -------
    str
        ``"A"``, ``"A/10"`` or ``"A/10-40"`` (first/last swapped if given reversed).
    """
    chain = str(chain).strip()
    if not chain or "/" in chain or "," in chain:
        raise DensrefineError(f"densrefine plugin: chain ID {chain!r} cannot be selected; "
                              "pick a residue in a chain with a plain ID")
    if first is None:
        return chain
    first = int(first)
    last = first if last is None else int(last)
    lo, hi = min(first, last), max(first, last)
    return f"{chain}/{lo}" if lo == hi else f"{chain}/{lo}-{hi}"


def selection_for_residues(pairs):
    """densrefine ``--select`` text for (chain, residue number) pairs, as ranges.

    Parameters
    ----------
    pairs : iterable of (str, int)
        E.g. the residues of a PyMOL selection (``chain``, ``resv``).

    Returns
    -------
    str

    Examples
    --------
    >>> selection_for_residues([("A", 3), ("A", 1), ("A", 2), ("A", 7), ("B", 5)])
    'A/1-3,A/7,B/5'
    """
    pairs = {(str(c), int(n)) for c, n in pairs}
    parts = []
    for chain in sorted({c for c, _ in pairs}):
        nums = sorted(n for c, n in pairs if c == chain)
        start = prev = nums[0]
        for n in nums[1:] + [None]:
            if n is not None and n == prev + 1:
                prev = n
                continue
            parts.append(selection_for_range(chain, start, prev))
            start = prev = n
    return ",".join(parts)


def fit_arguments(model, emap, resolution, prefix, select=None, stages=None, cycles=None,
                  weight=None, extra=()):
    """Arguments of ``densrefine fit`` (without the executable)."""
    args = ["fit", str(model), str(emap), "-d", repr(float(resolution)), "-o", str(prefix)]
    for flag, val in (("--select", select), ("--stages", stages), ("--cycles", cycles),
                      ("--weight", weight)):
        if val is not None:
            args += [flag, str(val)]
    return args + [str(x) for x in extra]


def one_line_error(stderr, returncode):
    """The one line a host shows when densrefine failed.

    densrefine reports bad input as one ``densrefine <cmd>: error: ...`` line on stderr
    (exit code 2) and anything else as ``unexpected error, see <log>`` (exit code 1).
    Prefer that line; else take the last non-empty stderr line; never a traceback.

    Parameters
    ----------
    stderr : str
    returncode : int

    Returns
    -------
    str
    """
    lines = [ln.strip() for ln in (stderr or "").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("densrefine") and ": error:" in ln:
            return ln
    tail = lines[-1] if lines else "no message"
    return f"densrefine failed (exit code {returncode}): {tail}"[:500]


def read_stats(path):
    """Parse a densrefine stats JSON (``PREFIX_stats.json`` or ``score --json`` output)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as err:
        raise DensrefineError(f"densrefine plugin: cannot read {path}: {err}") from None


def residue_scores(stats, block="after"):
    """Per-residue CC list of a stats dict.

    Parameters
    ----------
    stats : dict
        ``fit`` stats (blocks "before"/"after") or ``score --json`` output (flat).
    block : {"after", "before"}

    Returns
    -------
    list of dict
        chain, res_seq, icode, res_name, cc, cc_main, cc_side (CCs may be None).
    """
    blk = stats.get(block) if isinstance(stats.get(block), dict) else stats
    return list(blk.get("residues") or [])


def _in_selection(res, selection):
    """Whether a residue dict lies in a ``CHAIN[/N[-M]]`` comma list (None = all)."""
    if not selection:
        return True
    for part in selection.split(","):
        m = re.match(r"^\s*([^/\s]+)\s*(?:/\s*(-?\d+)\s*(?:-\s*(-?\d+))?)?\s*$", part)
        if not m or m.group(1) not in (res["chain"], "*"):
            continue
        if m.group(2) is None:
            return True
        lo = int(m.group(2))
        if lo <= res["res_seq"] <= int(m.group(3) or lo):
            return True
    return False


def worst_residues(stats, n=None, selection=None):
    """Residues sorted by CC, worst first, with the CC before refinement if known.

    Parameters
    ----------
    stats : dict
        ``fit`` stats or ``score --json`` output.
    n : int, optional
        Keep the ``n`` worst.
    selection : str, optional
        Keep only residues inside this ``--select`` string.

    Returns
    -------
    list of dict
        chain, res_seq, icode, res_name, cc, cc_before (None for ``score``) and label,
        a short text such as ``"A 23 LEU  CC 0.41 (was 0.38)"``.
    """
    after = residue_scores(stats, "after")
    before = {(r["chain"], r["res_seq"], r.get("icode", "")): r.get("cc")
              for r in residue_scores(stats, "before")} if "before" in stats else {}
    out = []
    for r in after:
        if r.get("cc") is None or not _in_selection(r, selection):
            continue
        key = (r["chain"], r["res_seq"], r.get("icode", ""))
        was = before.get(key) if "after" in stats else None
        label = f"{r['chain']} {r['res_seq']}{key[2]} {r.get('res_name', '')}  CC {r['cc']:.3f}"
        if was is not None:
            label += f" (was {was:.3f})"
        out.append({"chain": r["chain"], "res_seq": int(r["res_seq"]), "icode": key[2],
                    "res_name": r.get("res_name", ""), "cc": float(r["cc"]),
                    "cc_before": was, "label": label})
    out.sort(key=lambda d: d["cc"])
    return out[:n] if n else out


def summary_line(stats, selection=None):
    """One line: ``densrefine: CC_mask 0.612 -> 0.688, bond RMSD 0.012 A (A/10-40, 12.3 s)``."""
    def f(x, fmt="{:.3f}"):
        return "n/a" if x is None else fmt.format(x)

    if "after" not in stats:
        return (f"densrefine score: CC_mask {f(stats.get('cc_mask'))}, CC_box "
                f"{f(stats.get('cc_box'))}, {len(residue_scores(stats))} residues")
    b, a = stats.get("before") or {}, stats.get("after") or {}
    bond = (a.get("geometry") or {}).get("bond_rmsd")
    t = (stats.get("timings") or {}).get("total_s")
    where = f"{selection}, " if selection else ""
    return (f"densrefine: CC_mask {f(b.get('cc_mask'))} -> {f(a.get('cc_mask'))}, bond RMSD "
            f"{f(bond)} A ({where}{f(t, '{:.1f}')} s)")


class Job:
    """A running densrefine process; poll it from a GUI timer, or `wait` for it.

    Parameters
    ----------
    args : list of str
        densrefine arguments (e.g. from `fit_arguments`).
    prefix : str
        Output prefix of the run (to find the stats JSON).
    exe : str or list, optional
        See `densrefine_command`.
    selection : str, optional
        Recorded in the result.
    model_ext : str
        Extension of the refined model (".pdb" or ".cif").
    """

    via, why = "a new densrefine process", None

    def __init__(self, args, prefix, exe=None, selection=None, model_ext=".pdb", kind="fit"):
        self.prefix, self.selection, self.model_ext, self.kind = prefix, selection, model_ext, kind
        self.command = densrefine_command(exe) + list(args)
        self._err = open(prefix + "_stderr.txt", "w+", encoding="utf-8")
        try:
            self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL,
                                         stderr=self._err, stdin=subprocess.DEVNULL)
        except OSError as err:
            self._err.close()
            raise DensrefineError(
                f"densrefine plugin: cannot start {self.command[0]!r} ({err.strerror}); set "
                "DENSREFINE_EXE to the densrefine executable or 'PYTHON -m densrefine'") from None
        self.cancelled = False

    def progress(self):
        """Cycles finished so far (from the stats JSON the fit rewrites each cycle)."""
        try:
            with open(self.prefix + "_stats.json", encoding="utf-8") as fh:
                return len(json.load(fh).get("cycles") or [])
        except (OSError, ValueError):
            return 0

    def last_cycle(self):
        """(calls finished, record of the last one or None) from the stats JSON.

        The record has ``stage``, ``cc_mask_term`` (and ``cc_mask_ref`` when densrefine
        writes it), ``bond_rmsd``; see densrefine/refine/output.py.
        """
        cycles = self.cycles()
        return len(cycles), (cycles[-1] if cycles else None)

    def cycles(self):
        """Records of every call finished so far (the stats JSON's ``cycles``; [] before)."""
        try:
            with open(self.prefix + "_stats.json", encoding="utf-8") as fh:
                return json.load(fh).get("cycles") or []
        except (OSError, ValueError):
            return []

    def cancel(self):
        """Stop the run; nothing is read back, the host's model stays as it was."""
        self.cancelled = True
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def poll(self):
        """None while running; else the `FitResult` (or stats dict for ``score``).

        Raises
        ------
        DensrefineError
            One-line message when densrefine failed or was cancelled.
        """
        rc = self.proc.poll()
        if rc is None:
            return None
        self._err.seek(0)
        stderr = self._err.read()
        self._err.close()
        return self._result(rc, stderr)

    def _result(self, rc, stderr):
        if self.cancelled:
            raise DensrefineError("densrefine: cancelled; the model was not changed")
        if rc != 0:
            raise DensrefineError(one_line_error(stderr, rc))
        if self.kind == "score":
            return read_stats(self.prefix + ".json")
        model = self.prefix + self.model_ext
        if not os.path.exists(model):
            raise DensrefineError(f"densrefine plugin: densrefine wrote no model {model}")
        return FitResult(model, read_stats(self.prefix + "_stats.json"), self.prefix,
                         self.selection)

    def wait(self, timeout=None):
        """Block until done; return what `poll` returns (cancel on timeout, in s)."""
        t0 = time.monotonic()
        while True:
            res = self.poll()
            if res is not None:
                return res
            if timeout is not None and time.monotonic() - t0 > timeout:
                self.cancel()
                raise DensrefineError(f"densrefine: no result after {timeout:g} s; cancelled")
            time.sleep(POLL_S)


class ServedJob(Job):
    """The same run inside a warm ``densrefine serve`` session (docs/live.md, ``run``).

    The session runs the command line a `Job` would start (same code, same output files)
    in its own process, which has already imported torch and gemmi: no start-up per call.
    Same interface as `Job` (``poll``, ``wait``, ``cancel``, ``progress``...).

    Parameters
    ----------
    client : densrefine_live.LiveClient
        A connected live session.
    args, prefix, selection, model_ext, kind
        As for `Job`.

    Raises
    ------
    DensrefineError
        The session refused the run (``densrefine_live.LiveError``; its ``code`` is
        ``unknown_op`` for a session too old to run commands, ``busy`` while one runs).
    """

    via = "the warm live session"

    def __init__(self, client, args, prefix, selection=None, model_ext=".pdb", kind="fit"):
        self.prefix, self.selection, self.model_ext, self.kind = prefix, selection, model_ext, kind
        self.client, self.command = client, ["(live session)"] + list(args)
        self.cancelled = False
        self.number = client.run(list(args))

    def poll(self):
        st = self.client.job(self.number)
        if st["state"] == "running":
            return None
        return self._result(st["returncode"], st.get("output") or "")

    def cancel(self):
        self.cancelled = True
        try:
            self.client.cancel_job(self.number)
        except DensrefineError:
            pass


def _job(live, args, prefix, exe, **kw):
    """A `ServedJob` in the live session when one is given and takes it, else a `Job`
    (a new process); ``job.via`` says which, ``job.why`` why not the session."""
    why = "no live session is running"
    if live is not None:
        try:
            return ServedJob(live, args, prefix, **kw)
        except DensrefineError as err:
            if getattr(err, "code", None) not in ("unknown_op", "gone", "busy"):
                raise
            why = f"the live session cannot take it ({err})"
    job = Job(args, prefix, exe=exe, **kw)
    job.via, job.why = "a new densrefine process", why
    return job


def progress_line(n, rec):
    """One line for a host's log: "call 3 (xyz): CC 0.9419, bond RMSD 0.0111 Å"."""
    if not rec:
        return "densrefine: starting"
    ref = rec.get("cc_mask_ref")
    cc, what = (ref, "CC_mask") if ref is not None else (rec.get("cc_mask_term"), "CC")
    bond = rec.get("bond_rmsd")
    return (f"densrefine: call {n} ({rec.get('stage', '?')}): "
            + (f"{what} {cc:.4f}" if cc is not None else f"{what} n/a")
            + (f", bond RMSD {bond:.4f} Å" if bond is not None else ""))


def _export(write_model, write_map, workdir, model_ext):
    """Call the host's writers; return (model path, map path).

    A writer may also be a path (str or os.PathLike) of an existing file, used as is
    (e.g. the map file the host read, which keeps its origin and saves a copy).
    """
    os.makedirs(workdir, exist_ok=True)
    model, emap = os.path.join(workdir, "input" + model_ext), os.path.join(workdir, "input.map")
    paths = []
    for writer, path, what in ((write_model, model, "model"), (write_map, emap, "map")):
        if isinstance(writer, (str, os.PathLike)):
            path = os.fspath(writer)
        else:
            writer(path)
        paths.append(path)
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            raise DensrefineError(f"densrefine plugin: the host did not write the {what} "
                                  f"to {path}")
    return paths[0], paths[1]


def _resolution(value):
    """float(value), or a one-line error; densrefine itself judges the value (e.g. -1)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DensrefineError(f"densrefine plugin: map resolution {value!r} is not a number; "
                              "give it in Å, e.g. 3.2") from None


def start_fit(write_model, write_map, resolution, select=None, stages=None, cycles=None,
              weight=None, extra=(), workdir=None, exe=None, model_ext=".pdb", live=None):
    """Export model and map through the host's writers and start ``densrefine fit``.

    Parameters
    ----------
    write_model, write_map : callable(path) -> Any, or str
        Host callbacks writing the model (PDB or mmCIF per ``model_ext``) and map
        (CCP4/MRC), or the path of an existing file to use as is.
    resolution : float
        Map resolution, Å.
    select, stages, cycles, weight, extra
        Passed to ``densrefine fit`` (``--select A/10-40`` etc.).
    workdir : str, optional
        Folder for inputs and outputs (default: a new temporary folder, kept so the
        user can open the log and report).
    exe : str or list, optional
        See `densrefine_command`.
    live : densrefine_live.LiveClient, optional
        A running live session of this model: the fit runs inside it (`ServedJob`, no
        start-up); without one (or one that cannot) a new process runs it.

    Returns
    -------
    Job
        ``job.via`` says where it runs ("the warm live session" or "a new densrefine
        process"; then ``job.why`` says why).
    """
    resolution = _resolution(resolution)
    workdir = workdir or tempfile.mkdtemp(prefix="densrefine_")
    model, emap = _export(write_model, write_map, workdir, model_ext)
    prefix = os.path.join(workdir, "fit")
    args = fit_arguments(model, emap, resolution, prefix, select, stages, cycles, weight, extra)
    return _job(live, args, prefix, exe, selection=select, model_ext=model_ext)


def run_fit(write_model, write_map, resolution, timeout=None, **kw):
    """`start_fit` and wait; returns a `FitResult` or raises `DensrefineError`."""
    return start_fit(write_model, write_map, resolution, **kw).wait(timeout)


def start_score(write_model, write_map, resolution, workdir=None, exe=None, model_ext=".pdb",
                live=None):
    """Export through the host's writers and start ``densrefine score --json``.

    ``live``: as for `start_fit` (the score runs inside a running live session).

    Returns
    -------
    Job
        Its `Job.poll` / `Job.wait` give the score dict (see `residue_scores`).
    """
    workdir = workdir or tempfile.mkdtemp(prefix="densrefine_")
    resolution = _resolution(resolution)
    model, emap = _export(write_model, write_map, workdir, model_ext)
    prefix = os.path.join(workdir, "score")
    args = ["score", model, emap, "-d", repr(resolution), "--json", prefix + ".json"]
    return _job(live, args, prefix, exe, kind="score")


def run_score(write_model, write_map, resolution, timeout=None, **kw):
    """`start_score` and wait; returns the score dict or raises `DensrefineError`."""
    return start_score(write_model, write_map, resolution, **kw).wait(timeout)
