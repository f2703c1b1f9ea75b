"""Atomic file writing: write to a temporary file in the same folder, then rename.

A reader never sees a half-written file and a failure never leaves one behind.
"""
from __future__ import annotations

import contextlib
import os
import tempfile

from ..errors import input_error


def check_output_path(path, inputs=()) -> str:
    """Refuse to overwrite an input file; create the output folder if needed.

    Raises
    ------
    InputError
        When ``path`` is one of ``inputs`` or its folder cannot be created or written.
    """
    path = os.fspath(path)
    ap = os.path.realpath(path)
    for inp in inputs:
        if inp is not None and os.path.exists(inp) and os.path.realpath(os.fspath(inp)) == ap:
            raise input_error(path, "output would overwrite an input file",
                              "choose another output name")
    d = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(d, exist_ok=True)
    except OSError as exc:
        raise input_error(path, f"cannot create the output folder {d} ({exc.strerror})",
                          "choose a writable output location") from None
    if not os.access(d, os.W_OK):
        raise input_error(path, f"output folder {d} is not writable",
                          "choose a writable output location")
    return path


@contextlib.contextmanager
def atomic_path(path):
    """Context manager yielding a temporary path next to ``path``; renamed on success.

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> with atomic_path(os.path.join(d, "x.txt")) as tmp:
    ...     _ = open(tmp, "w").write("hello")
    >>> open(os.path.join(d, "x.txt")).read()
    'hello'
    """
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path)) or "."
    base = os.path.basename(path)
    # keep the real suffix(es) so libraries that dispatch on them still work
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{_suffix(base)}", dir=d)
    os.close(fd)
    try:
        yield tmp
        # mkstemp makes 0600 files; give the result the usual permissions (umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _suffix(name: str) -> str:
    low = name.lower()
    for s in (".pdb.gz", ".cif.gz", ".mmcif.gz", ".ent.gz", ".pdb", ".cif", ".mmcif", ".ent",
              ".mrc", ".map", ".ccp4", ".json", ".mtz"):
        if low.endswith(s):
            return s
    return os.path.splitext(name)[1]


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
