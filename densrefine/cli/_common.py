"""Shared CLI plumbing: common flags, logging, the log header, tracebacks, outputs.

Nothing is written, and nothing but the error is printed, before a command has
validated its inputs. Until then every log record (console and file alike) is kept in
memory; `commit` opens the console and the file log and replays them. A refused run
(`InputError` before `commit`) therefore prints exactly one line on stderr and leaves
no file behind, and never touches the log of an earlier run under the same name.

Warnings (``warnings.warn`` with `DensrefineWarning`, and ``log.warning``) become one
console line ``warning: ...`` and are collected for the ``"warnings"`` list of the
JSON outputs (`warnings_seen`).
"""
from __future__ import annotations

import logging
import os
import platform
import signal
import sys
import tempfile
import time
import traceback
import warnings

from ..report.provenance import versions_str

log = logging.getLogger("densrefine")
_state: dict = {}

HEAVY_IMPORTS = ("torch", "numba")
"""Packages whose import time the log header reports (seconds each, first line)."""
_import_seconds: dict = {}


class _ImportClock:
    """Meta-path hook that times the first import of each of `HEAVY_IMPORTS`.

    It finds the real spec with the other finders and wraps its loader's
    ``exec_module``; the time covers the package and everything it imports.
    """

    def find_spec(self, name, path=None, target=None):
        if name not in HEAVY_IMPORTS or name in _import_seconds:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        run = getattr(loader, "exec_module", None)
        if run is None:
            return spec

        def exec_module(module):
            t0 = time.perf_counter()
            try:
                run(module)
            finally:
                _import_seconds[name] = time.perf_counter() - t0

        loader.exec_module = exec_module
        return spec


def _install_import_clock() -> None:
    if not any(isinstance(f, _ImportClock) for f in sys.meta_path):
        sys.meta_path.insert(0, _ImportClock())


def import_times() -> str:
    """"torch 1.52 s, numba 0.41 s": heavy imports this process made, as timed (or
    "torch loaded before the command" when it was imported before the clock ran)."""
    parts = []
    for name in HEAVY_IMPORTS:
        if name in _import_seconds:
            parts.append(f"{name} {_import_seconds[name]:.2f} s")
        elif name in sys.modules:
            parts.append(f"{name} loaded before the command")
    return ", ".join(parts) or "none of " + ", ".join(HEAVY_IMPORTS)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that cleanup (temporary files) runs."""


def add_common_args(p) -> None:
    """Flags every subcommand has: --device, -v/--verbose, -q/--quiet."""
    g = p.add_argument_group("common options")
    g.add_argument("--device", default="auto",
                   help="compute device: auto (CUDA when available), cpu, cuda or cuda:N "
                        "(default: %(default)s)")
    g.add_argument("-v", "--verbose", action="store_true", help="debug messages on the console")
    g.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


class _ConsoleFormatter(logging.Formatter):
    """``message`` for info/debug, ``warning: message`` / ``error: message`` above."""

    def format(self, record):
        msg = " ".join(record.getMessage().split()) if record.levelno >= logging.WARNING \
            else record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"error: {msg}"
        if record.levelno >= logging.WARNING:
            return f"warning: {msg}"
        return msg


class _Buffer(logging.Handler):
    """Keeps every record until `commit` replays them (or the run is refused)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list = []

    def emit(self, record):
        self.records.append(record)


class _Collector(logging.Handler):
    """Collects the text of every warning (deduplicated, in order)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list = []

    def emit(self, record):
        if record.levelno == logging.WARNING:
            msg = " ".join(record.getMessage().split())
            if msg not in self.messages:
                self.messages.append(msg)


def _showwarning(message, category, filename, lineno, file=None, line=None):
    """``warnings.warn`` → one ``log.warning`` line (no file, line or source)."""
    text = str(message)
    from ..errors import DensrefineWarning

    if not issubclass(category, DensrefineWarning):
        text = f"{text} ({category.__name__})"
    log.warning("%s", text)


def _on_sigterm(signum, frame):
    raise Terminated()


def setup_logging(args) -> None:
    """Start buffering the log of a command run (called by `densrefine.cli.main`)."""
    _install_import_clock()
    close_logging()
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    log.setLevel(logging.DEBUG)
    log.propagate = False
    for h in list(log.handlers):
        if getattr(h, "_densrefine", False):
            log.removeHandler(h)
    buf, col = _Buffer(), _Collector()
    for h in (buf, col):
        h._densrefine = True  # type: ignore[attr-defined]
        log.addHandler(h)
    _state.update(buffer=buf, collector=col, level=level, file_handler=None, log_path=None,
                  console=None, committed=False, showwarning=warnings.showwarning,
                  sigterm=None)
    warnings.showwarning = _showwarning
    try:
        _state["sigterm"] = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not in the main thread (tests calling main() from a thread)
        _state["sigterm"] = None


# kept for callers of the old name
setup_console_logging = setup_logging


def committed() -> bool:
    """True once `commit` has run for the current command."""
    return bool(_state.get("committed"))


def commit(log_path=None) -> str | None:
    """Inputs are valid: show the buffered log on the console and open the file log.

    Parameters
    ----------
    log_path : path, optional
        The command's log file (already checked by `plan_outputs`); its folder is
        created. The header records versions, host, start time and the exact command
        line (servalcat ``write_header`` pattern).

    Returns
    -------
    str or None
        The log path.
    """
    if _state.get("committed"):
        return _state.get("log_path")
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(_state.get("level", logging.INFO))
    console.setFormatter(_ConsoleFormatter())
    console._densrefine = True  # type: ignore[attr-defined]
    console._densrefine_console = True  # type: ignore[attr-defined]  (progress bar: fit)
    handlers = [console]
    if log_path is not None:
        from ..io.atomic import check_output_path

        path = check_output_path(os.fspath(log_path))
        fh = logging.FileHandler(path, mode="w", encoding="utf-8")
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s",
                                          "%Y-%m-%d %H:%M:%S"))
        fh._densrefine = True  # type: ignore[attr-defined]
        _state.update(file_handler=fh, log_path=path)
        for line in _header():
            fh.handle(log.makeRecord(log.name, logging.DEBUG, "", 0, "%s", (line,), None))
        handlers.append(fh)
    buf = _state.get("buffer")
    records = buf.records if buf is not None else []
    if buf is not None:
        log.removeHandler(buf)
    for h in handlers:
        for rec in records:
            if rec.levelno >= h.level:
                h.handle(rec)
        log.addHandler(h)
    _state.update(committed=True, console=console, buffer=None)
    return _state.get("log_path")


# kept for callers of the old name: validate first, then call this
def start_file_log(path) -> str:
    return commit(path)


def _header() -> list:
    versions = versions_str()            # imports torch if nothing has yet: timed too
    return [f"# {versions}; import time: {import_times()}",
            f"# host {platform.node()}, {platform.platform()}, started "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}",
            "# command: " + " ".join(_quote(a) for a in sys.argv),
            f"# working directory: {os.getcwd()}"]


def _quote(a: str) -> str:
    return a if a and all(c.isalnum() or c in "-_./:=,+@%" for c in a) else repr(a)


def log_to_file(level: int, msg: str) -> None:
    """Write one record to the file log only (when there is one)."""
    fh = _state.get("file_handler")
    if fh is not None:
        fh.handle(log.makeRecord(log.name, level, "", 0, "%s", (msg,), None))


def warnings_seen() -> list:
    """Every warning of the current command so far (text, deduplicated, in order)."""
    col = _state.get("collector")
    return list(col.messages) if col is not None else []


def close_logging() -> None:
    """Remove this module's handlers, restore ``warnings.showwarning`` and SIGTERM."""
    for h in list(log.handlers):
        if getattr(h, "_densrefine", False):
            log.removeHandler(h)
            if isinstance(h, logging.FileHandler):
                h.close()
    if "showwarning" in _state:
        warnings.showwarning = _state.pop("showwarning")
    old = _state.pop("sigterm", None)
    if old is not None:
        try:
            signal.signal(signal.SIGTERM, old)
        except ValueError:
            pass
    _state.update(file_handler=None, buffer=None, console=None, committed=False)


close_file_logging = close_logging


def dump_traceback(args) -> str:
    """Write the current exception's traceback to the log (or a temp file); return its path.

    Before `commit` the buffered log goes to the temporary file as well, so that the
    log of an earlier run under the same name is never touched.
    """
    path = _state.get("log_path")
    if _state.get("file_handler") is not None:
        log.error("unexpected error\n%s", traceback.format_exc())
        return path
    fd, path = tempfile.mkstemp(prefix="densrefine-error-", suffix=".log")
    buf = _state.get("buffer")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(_header()) + "\n")
        for rec in (buf.records if buf is not None else []):
            f.write(f"{rec.levelname:<7} {rec.getMessage()}\n")
        f.write(traceback.format_exc())
    return path


def log_device(device) -> None:
    from ..device import describe_device

    log.info("Device: %s", describe_device(device))


def plan_outputs(outputs: dict, inputs) -> dict:
    """All output names of a command, checked against all inputs before anything is written.

    See `densrefine.io.atomic.check_outputs`.
    """
    from ..io.atomic import check_outputs

    return check_outputs(outputs, inputs)


def check_order(model, second, what: str, example: str) -> None:
    """Refuse MODEL and MAP/DATA given the wrong way round ("did you swap them?").

    Parameters
    ----------
    model, second : str
        The two positional arguments as given.
    what : str
        Name of the second argument ("MAP", "DATA").
    example : str
        The corrected command line to suggest.
    """
    from ..errors import input_error
    from ..io.mrc import looks_like_map

    if _looks_like_model(second) and (looks_like_map(model) or _looks_like_reflections(model)):
        raise input_error(model, f"is given as MODEL but looks like a {what} file, and "
                          f"{second} looks like a model: did you swap them?",
                          f"give the model first: {example}")


def _looks_like_model(path) -> bool:
    low = os.fspath(path).lower().removesuffix(".gz")
    if low.endswith((".pdb", ".ent")):
        return True
    if low.endswith((".cif", ".mmcif")):
        return not _looks_like_reflections(path)
    return False


def _looks_like_reflections(path) -> bool:
    import gzip

    low = os.fspath(path).lower().removesuffix(".gz")
    if low.endswith(".mtz"):
        return True
    if not low.endswith((".cif", ".mmcif", ".ent")):
        return False
    try:
        opener = gzip.open if os.fspath(path).lower().endswith(".gz") else open
        if not os.path.isfile(path):
            return False
        with opener(path, "rb") as f:
            head = f.read(65536)
    except (OSError, EOFError):
        return False
    return b"_refln." in head and b"_atom_site." not in head
