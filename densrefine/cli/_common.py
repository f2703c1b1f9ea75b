"""Shared CLI plumbing: common flags, console/file logging, the log header, tracebacks."""
from __future__ import annotations

import logging
import os
import platform
import sys
import tempfile
import time
import traceback

from ..report.provenance import versions_str

log = logging.getLogger("densrefine")
_state: dict = {"file_handler": None, "log_path": None}


def add_common_args(p) -> None:
    """Flags every subcommand has: --device, -v/--verbose, -q/--quiet."""
    g = p.add_argument_group("common options")
    g.add_argument("--device", default="auto",
                   help="compute device: auto (CUDA when available), cpu, cuda or cuda:N "
                        "(default: %(default)s)")
    g.add_argument("-v", "--verbose", action="store_true", help="debug messages on the console")
    g.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


def setup_console_logging(args) -> None:
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    log.setLevel(logging.DEBUG)
    for h in list(log.handlers):
        if getattr(h, "_densrefine_console", False):
            log.removeHandler(h)
    h = logging.StreamHandler(sys.stderr)
    h.setLevel(level)
    h.setFormatter(logging.Formatter("%(message)s"))
    h._densrefine_console = True  # type: ignore[attr-defined]
    log.addHandler(h)
    log.propagate = False
    logging.captureWarnings(True)
    wlog = logging.getLogger("py.warnings")
    wlog.handlers = [h]
    wlog.propagate = False


def start_file_log(path) -> str:
    """Add a file handler writing the full log to ``path`` and write the header.

    The header records versions, host, start time and the exact command line
    (servalcat ``write_header`` pattern).
    """
    close_file_logging()
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fh = logging.FileHandler(path, mode="w", encoding="utf-8")
    fh.setLevel(logging.DEBUG)
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s",
                                      "%Y-%m-%d %H:%M:%S"))
    log.addHandler(fh)
    logging.getLogger("py.warnings").addHandler(fh)
    _state["file_handler"], _state["log_path"] = fh, path
    log.debug("# %s", versions_str())
    log.debug("# host %s, %s, started %s", platform.node(), platform.platform(),
              time.strftime("%Y-%m-%d %H:%M:%S"))
    log.debug("# command: %s", " ".join(_quote(a) for a in sys.argv))
    log.debug("# working directory: %s", os.getcwd())
    return path


def _quote(a: str) -> str:
    return a if a and all(c.isalnum() or c in "-_./:=,+@%" for c in a) else repr(a)


def close_file_logging() -> None:
    fh = _state.get("file_handler")
    if fh is not None:
        log.removeHandler(fh)
        logging.getLogger("py.warnings").removeHandler(fh)
        fh.close()
        _state["file_handler"] = None


def dump_traceback(args) -> str:
    """Write the current exception's traceback to the log (or a temp file); return its path."""
    path = _state.get("log_path")
    if _state.get("file_handler") is not None:
        log.error("unexpected error\n%s", traceback.format_exc())
        return path
    fd, path = tempfile.mkstemp(prefix="densrefine-error-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        f.write(" ".join(sys.argv) + "\n" + versions_str() + "\n" + traceback.format_exc())
    return path


def log_device(device) -> None:
    from ..device import describe_device

    log.info("Device: %s", describe_device(device))
