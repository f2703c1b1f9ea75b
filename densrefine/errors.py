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
    """``os.fspath(path)`` after checking it exists, is a file and is readable.

    ``what`` names the expected kind ("a model file"), ``fix`` what to give instead.
    """
    import os

    path = os.fspath(path)
    if not os.path.exists(path):
        raise input_error(path, "file not found", "check the path")
    if os.path.isdir(path):
        raise input_error(path, f"is a directory, not {what}", fix)
    if not os.access(path, os.R_OK):
        raise input_error(path, "file is not readable", "check its permissions")
    return path
