"""Typed exceptions and warnings of densrefine.

Library code raises these with the offending value and a suggested fix; only the
CLI turns them into a one-line message and an exit code (2 for `InputError`).
"""
from __future__ import annotations


class DensrefineError(Exception):
    """Base class of all densrefine errors."""


class InputError(DensrefineError):
    """Something the user gave is wrong (file, option, value).

    The message names the file or option, the problem and the fix, on one line.
    """


class FormatError(InputError):
    """A file exists but is not in the expected format, or is corrupt/truncated."""


class DeviceError(DensrefineError):
    """The requested compute device is not available."""


class DensrefineWarning(UserWarning):
    """A recoverable oddity in the input (ignored ORIGIN, unknown element, ...)."""


def input_error(path, problem: str, fix: str) -> InputError:
    """Build an `InputError` with the house one-line format ``PATH: problem; fix``.

    Parameters
    ----------
    path : str or os.PathLike or None
        The offending file (or option name); omitted from the message when None.
    problem : str
        What is wrong.
    fix : str
        What the user should do.
    """
    head = f"{path}: " if path is not None else ""
    return InputError(f"{head}{problem}; {fix}")


def format_error(path, problem: str, fix: str) -> FormatError:
    """`input_error`'s one-line message as a `FormatError` (the file is unreadable or malformed)."""
    return FormatError(str(input_error(path, problem, fix)))


def check_readable(path, what: str, fix: str) -> str:
    """``os.fspath(path)`` after checking it exists, is a regular file and is readable.

    ``what`` names the expected kind ("a model file"), ``fix`` what to give instead.
    Named pipes (``<(zcat f.gz)``), sockets and devices are refused: they cannot be
    read twice (format sniffing, then parsing) and reading one may wait forever.

    Raises
    ------
    InputError
        Missing, a directory, not a regular file, empty, or not readable.
    """
    import os
    import stat

    path = os.fspath(path)
    if not os.path.exists(path):
        hint = " (a broken symbolic link)" if os.path.islink(path) else ""
        raise input_error(path, f"file not found{hint}", "check the path")
    if os.path.isdir(path):
        raise input_error(path, f"is a directory, not {what}", fix)
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = ("a named pipe or process substitution" if stat.S_ISFIFO(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a device")
        raise input_error(path, f"is {kind}, not a regular file",
                          "save it to a file first (densrefine reads .gz files directly)")
    if not os.access(path, os.R_OK):
        raise input_error(path, "file is not readable", "check its permissions")
    if os.path.getsize(path) == 0:
        raise input_error(path, f"is empty (0 bytes), not {what}", fix)
    return path
