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
