"""Atomic file writing and the checks that keep outputs away from inputs.

* `check_outputs` is the one place where all output names of a command are checked,
  before anything is written: none may be an input (same resolved path, symlink or
  hard link), an existing directory or another non-regular file, and no two outputs
  may be the same file; every output folder must exist or be creatable, and writable.
* `atomic_path` writes to a temporary file in the same folder and renames it over the
  target: a reader never sees a half-written file and a failure never leaves one
  behind. It refuses a target that is a directory.
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile

from ..errors import input_error


def _identity(path):
    """(st_dev, st_ino) of an existing file (following symlinks), else None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _same_file(a, b) -> bool:
    """True when ``a`` and ``b`` name the same file: resolved path, symlink or hard link."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    ia = _identity(a)
    return ia is not None and ia == _identity(b)


def _nearest_existing_dir(d: str) -> str:
    while d and not os.path.exists(d):
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    return d or "."


def check_outputs(outputs, inputs=()) -> dict:
    """Check every output name of a command against every input; write nothing.

    Parameters
    ----------
    outputs : dict of str to path
        Role (e.g. ``"log"``, ``"stats"``) → output path; None values are skipped.
    inputs : iterable of path
        Every file the command reads (None entries are skipped).

    Returns
    -------
    dict of str to str
        The same mapping with ``os.fspath`` applied (None values dropped).

    Raises
    ------
    InputError
        An output that would overwrite an input (same path, a symlink to it or a hard
        link of it), an output that is a directory or a non-regular file (a pipe, a
        device), two roles giving the same file, or an output folder that is a file,
        cannot be created or is not writable.

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> m = os.path.join(d, "m.mrc"); _ = open(m, "w").write("x")
    >>> sorted(check_outputs({"log": os.path.join(d, "run.log")}, [m]))
    ['log']
    >>> check_outputs({"log": m}, [m])
    Traceback (most recent call last):
    ...
    densrefine.errors.InputError: ...m.mrc: the log output would overwrite the input ...
    """
    outs = {k: os.fspath(v) for k, v in outputs.items() if v is not None}
    ins = [os.fspath(p) for p in inputs if p is not None]
    seen: dict = {}
    for role, path in outs.items():
        for inp in ins:
            if _same_file(path, inp):
                raise input_error(path, f"the {role} output would overwrite the input {inp}",
                                  "choose another output name (-o/--output/--json)")
        for other, opath in seen.items():
            if _same_file(path, opath):
                raise input_error(path, f"the {role} and {other} outputs are the same file",
                                  "choose another output name")
        seen[role] = path
        check_output_path(path, create=False)
    return outs


def check_output_path(path, inputs=(), *, create: bool = True) -> str:
    """Refuse to overwrite an input, a directory or a non-regular file; check the folder.

    Parameters
    ----------
    path : path
        The output file.
    inputs : iterable of path
        Files that must not be overwritten.
    create : bool
        Create the output folder when missing (False: only check that it could be).

    Raises
    ------
    InputError
        When ``path`` is one of ``inputs``, a directory or a non-regular file, or its
        folder is a file, cannot be created or is not writable.
    """
    path = os.fspath(path)
    for inp in inputs:
        if inp is not None and _same_file(path, inp):
            raise input_error(path, f"output would overwrite the input {os.fspath(inp)}",
                              "choose another output name")
    if path.endswith(os.sep) or os.path.isdir(path):
        raise input_error(path, "output path is a directory",
                          "give a file name (or remove the directory)")
    if os.path.lexists(path) and os.path.exists(path) \
            and not stat.S_ISREG(os.stat(path).st_mode):
        raise input_error(path, "output path exists and is not a regular file (a pipe or "
                          "device)", "give the name of a regular file")
    d = os.path.dirname(os.path.abspath(path))
    base = _nearest_existing_dir(d)
    if not os.path.isdir(base):
        raise input_error(path, f"{base} is a file, not a folder",
                          "choose an output location inside a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise input_error(path, f"output folder {base} is not writable",
                          "choose a writable output location")
    if create:
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as exc:
            raise input_error(path, f"cannot create the output folder {d} ({exc.strerror})",
                              "choose a writable output location") from None
    return path


@contextlib.contextmanager
def atomic_path(path):
    """Context manager yielding a temporary path next to ``path``; renamed on success.

    Raises
    ------
    InputError
        ``path`` is a directory or a non-regular file, or its folder is missing or
        not writable.

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> with atomic_path(os.path.join(d, "x.txt")) as tmp:
    ...     _ = open(tmp, "w").write("hello")
    >>> open(os.path.join(d, "x.txt")).read()
    'hello'
    """
    path = check_output_path(path)
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
