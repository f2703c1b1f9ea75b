"""Run the densrefine CLI as a child process that can be polled and cancelled.

Host-neutral: nothing here imports ChimeraX, so the same code runs (and is tested) in
any Python. The ChimeraX side (`.cmd`) polls a `Job` either in a loop (no GUI, or
``wait true``) or from the "new frame" trigger (GUI), and logs the lines it returns.

Which densrefine runs (first that applies):

1. the ``executable`` keyword of the command,
2. the environment variable ``DENSREFINE_EXE``,
3. the saved setting (``densrefine set executable ...``),
4. ``densrefine`` on ``PATH``,
5. in-process, when ``import densrefine`` works in ChimeraX's own Python (it needs
   torch, which ChimeraX does not ship).

An executable is a command line split with `shlex` (``"python3 -m densrefine"`` works);
a bare Python interpreter (``/usr/bin/python3``) gets ``-m densrefine`` appended.
"""
from __future__ import annotations

import importlib.util
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time

ENV_VAR = "DENSREFINE_EXE"
STAGES = ("rigid", "sse", "chi1", "xyz", "b")
# densrefine's one-line user error ("densrefine fit: error: ..."), argparse's too
_ERROR = re.compile(r"^densrefine(?: [\w-]+)?: error: .+")
_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?(\.exe)?$")

RUNNING, FINISHED, FAILED, CANCELLED = "running", "finished", "failed", "cancelled"


class JobError(Exception):
    """A densrefine run that cannot start or did not succeed; ``str()`` is one line."""


def resolve_executable(explicit=None, setting=None, environ=None):
    """Command-line prefix that runs densrefine, or None for in-process.

    Parameters
    ----------
    explicit : str or None
        The command's ``executable`` keyword.
    setting : str or None
        The saved setting.
    environ : mapping or None
        Environment (default `os.environ`); ``DENSREFINE_EXE`` is read from it.

    Returns
    -------
    list of str or None
        e.g. ``["/usr/bin/densrefine"]`` or ``["/usr/bin/python3", "-m", "densrefine"]``;
        None when only the in-process route is left.

    Raises
    ------
    JobError
        Nothing found at all (no executable, and densrefine is not importable here).
    """
    environ = os.environ if environ is None else environ
    for text in (explicit, environ.get(ENV_VAR), setting):
        if text and str(text).strip():
            return _as_argv(str(text))
    found = shutil.which("densrefine")
    if found:
        return [found]
    if importlib.util.find_spec("densrefine") is not None:
        return None
    raise JobError("densrefine not found: install it (pip install densrefine) and set its "
                   f"path with 'densrefine set executable PATH' or the {ENV_VAR} environment "
                   "variable")


def _as_argv(text: str) -> list:
    argv = shlex.split(text)
    if not argv:
        raise JobError(f"empty densrefine executable {text!r}")
    exe = argv[0]
    if os.sep not in exe:
        exe = shutil.which(exe) or exe
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise JobError(f"densrefine executable {argv[0]!r} not found or not executable: "
                       f"fix 'densrefine set executable', the {ENV_VAR} environment variable "
                       "or the executable keyword")
    argv[0] = exe
    if len(argv) == 1 and _PYTHON.match(os.path.basename(exe)):
        argv += ["-m", "densrefine"]
    return argv


def fit_args(model, emap, resolution, prefix, *, select=None, weight=None, stages=None,
             cycles=None, device=None):
    """Arguments of ``densrefine fit`` (after the executable).

    Parameters
    ----------
    model, emap : str
        Model (.pdb) and map (.mrc) paths, both in the map's frame.
    resolution : float
        Map resolution, Å.
    prefix : str
        Output prefix: PREFIX.pdb, PREFIX_stats.json, PREFIX.log.
    select : str or None
        densrefine selection text, e.g. ``"A/10-40,B"``.
    weight : float or None
        Fixed map weight (None: automatic).
    stages : str or None
        Comma-separated subset of `STAGES`.
    cycles : int or None
        Macro cycles of the xyz stage.
    device : str or None
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """
    args = ["fit", str(model), str(emap), "-d", repr(float(resolution)), "-o", str(prefix)]
    for flag, value in (("--select", select), ("--weight", weight), ("--stages", stages),
                        ("--cycles", cycles), ("--device", device)):
        if value is not None and value != "":
            args += [flag, str(value)]
    return args


def score_args(model, emap, resolution, json_path, *, device=None):
    """Arguments of ``densrefine score`` writing all scores to ``json_path``."""
    args = ["score", str(model), str(emap), "-d", repr(float(resolution)),
            "--json", str(json_path)]
    if device:
        args += ["--device", str(device)]
    return args


def check_stages(text):
    """Normalise a stage list ("xyz, b" -> "xyz,b"); ValueError naming unknown stages."""
    if text is None:
        return None
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    bad = [s for s in items if s not in STAGES]
    if bad or not items:
        raise ValueError(f"unknown stage(s) {', '.join(bad) or repr(text)}: use a "
                         f"comma-separated subset of {','.join(STAGES)}")
    return ",".join(items)


def error_line(lines, returncode, log_path=None) -> str:
    """The one line to show for a failed run.

    densrefine prints ``densrefine CMD: error: ...`` for bad input (exit code 2) and
    ``... unexpected error, see LOG`` (exit code 1); the last such line wins.
    """
    for line in reversed(list(lines)):
        text = line.strip()
        if _ERROR.match(text) or "unexpected error" in text:
            return text
    where = f"; see {log_path}" if log_path else ""
    return f"densrefine exited with code {returncode}{where}"


class Job:
    """One densrefine run in a child process: start, poll, cancel, wait.

    Parameters
    ----------
    argv : list of str
        Full command line (executable prefix + `fit_args`/`score_args`).
    timeout : float or None
        Seconds after which the run is cancelled (None or <= 0: no limit).
    cwd : str or None
        Working directory of the child.
    grace : float
        Seconds between SIGTERM and SIGKILL when cancelling.

    Attributes
    ----------
    state : str
        "running", "finished" (exit code 0), "failed" or "cancelled".
    lines : list of str
        Every output line (stdout and stderr merged) so far.
    reason : str or None
        Why a cancelled run stopped ("cancelled by user", "timed out after 5 s").
    """

    def __init__(self, argv, *, timeout=None, cwd=None, grace=3.0):
        self.argv = list(argv)
        self.timeout = timeout if timeout and timeout > 0 else None
        self.cwd, self.grace = cwd, grace
        self.state, self.lines, self.reason = RUNNING, [], None
        self.returncode = None
        self._queue = queue.Queue()
        self._proc = None
        self._reader = None
        self._t0 = self._term_at = None

    def start(self):
        """Start the child; JobError when the executable cannot be run."""
        try:
            self._proc = subprocess.Popen(
                self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace",
                bufsize=1, cwd=self.cwd, env=dict(os.environ, PYTHONIOENCODING="utf-8"),
                start_new_session=True)  # own process group: cancel kills its children too
        except OSError as exc:
            raise JobError(f"cannot run {self.argv[0]!r}: {exc.strerror or exc}") from None
        self._t0 = time.monotonic()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self):
        for line in self._proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._proc.stdout.close()

    @property
    def elapsed(self) -> float:
        """Seconds since start."""
        return 0.0 if self._t0 is None else time.monotonic() - self._t0

    def cancel(self, reason="cancelled by user"):
        """Ask the child to stop (SIGTERM to its process group); `poll` finishes it."""
        if self.state != RUNNING or self._term_at is not None:
            return
        self.reason = reason
        self._term_at = time.monotonic()
        self._signal(signal.SIGTERM)

    def _signal(self, sig):
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def poll(self) -> list:
        """New output lines since the last call; updates `state`. Never blocks."""
        new = []
        while True:
            try:
                new.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self.lines += new
        if self.state != RUNNING or self._proc is None:
            return new
        if self.timeout and self._term_at is None and self.elapsed > self.timeout:
            self.cancel(f"timed out after {self.timeout:g} s")
        if self._term_at is not None and time.monotonic() - self._term_at > self.grace:
            self._signal(signal.SIGKILL)
        rc = self._proc.poll()
        if rc is not None and not self._reader.is_alive():
            new += self.poll_rest()
            self.returncode = rc
            self.state = (CANCELLED if self._term_at is not None
                          else FINISHED if rc == 0 else FAILED)
        return new

    def poll_rest(self) -> list:
        rest = []
        while not self._queue.empty():
            rest.append(self._queue.get_nowait())
        self.lines += rest
        return rest

    def wait(self, on_lines=None, interval=0.2):
        """Poll until the run ends, passing new lines to ``on_lines``; returns `state`.

        Ctrl-C (KeyboardInterrupt) while waiting cancels the run.
        """
        while self.state == RUNNING:
            try:
                new = self.poll()
                if new and on_lines:
                    on_lines(new)
                if self.state == RUNNING:
                    time.sleep(interval)
            except KeyboardInterrupt:
                self.cancel("interrupted")
        return self.state


class InProcessJob(Job):
    """Same interface, but densrefine runs inside this Python (``densrefine.cli.main``).

    Used only when no executable is found and ``import densrefine`` works. The run
    blocks in `start` and cannot be cancelled; its console output is collected in
    `lines`.
    """

    def start(self):
        import contextlib
        import io

        try:
            from densrefine.cli import main as cli_main
        except ImportError as exc:  # e.g. densrefine installed here but torch is not
            raise JobError(f"densrefine cannot run inside this Python ({exc}); install it "
                           "elsewhere and use 'densrefine set executable PATH'") from None

        # densrefine's console log handler writes to sys.stderr as it is at setup time,
        # i.e. into buf while redirected
        buf = io.StringIO()
        self._t0 = time.monotonic()
        with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(buf):
            try:
                self.returncode = cli_main(self.argv)
            except SystemExit as exc:  # argparse errors
                self.returncode = exc.code if isinstance(exc.code, int) else 2
        for line in buf.getvalue().splitlines():
            self._queue.put(line)
        self.state = FINISHED if self.returncode == 0 else FAILED
        return self

    def poll(self) -> list:
        return self.poll_rest()

    def cancel(self, reason="cancelled by user"):
        self.reason = "an in-process run cannot be cancelled"


class ServedJob(Job):
    """Same interface, but the run happens inside the warm ``densrefine serve`` session of
    ``densrefine live`` (its ``run`` request, docs/live.md): the same command line and
    code as the child process, without the start-up. Its output arrives when it ends.

    Parameters
    ----------
    client : live_client.LiveClient
    argv : list of str
        densrefine arguments (`fit_args` / `score_args`, no executable).
    timeout : float or None
        As for `Job`.
    """

    def __init__(self, client, argv, *, timeout=None):
        super().__init__(argv, timeout=timeout)
        self.client, self.number = client, None

    def start(self):
        from .live_client import DensrefineError

        try:
            self.number = self.client.run(self.argv)
        except DensrefineError as exc:
            raise JobError(str(exc)) from None
        self._t0 = time.monotonic()
        return self

    def poll(self) -> list:
        from .live_client import DensrefineError

        if self.state != RUNNING:
            return []
        if self.timeout and self._term_at is None and self.elapsed > self.timeout:
            self.cancel(f"timed out after {self.timeout:g} s")
        try:
            st = self.client.job(self.number)
        except DensrefineError as exc:
            self.lines.append(str(exc))
            self.returncode, self.state = 1, FAILED
            return [str(exc)]
        if st["state"] == "running":
            return []
        new = (st.get("output") or "").splitlines()
        self.lines += new
        self.returncode = rc = st["returncode"]
        self.state = (CANCELLED if self._term_at is not None
                      else FINISHED if rc == 0 else FAILED)
        return new

    def poll_rest(self) -> list:
        return []

    def cancel(self, reason="cancelled by user"):
        from .live_client import DensrefineError

        if self.state != RUNNING or self._term_at is not None:
            return
        self.reason, self._term_at = reason, time.monotonic()
        try:
            self.client.cancel_job(self.number)
        except DensrefineError:
            pass


def is_user_error(line) -> bool:
    """True for densrefine's one-line input error (``densrefine CMD: error: ...``)."""
    return bool(_ERROR.match(line.strip()))
