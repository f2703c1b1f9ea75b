"""Match densrefine's output atoms to the host's atoms, and write selections for it.

Host-neutral (no ChimeraX import). Atoms are matched by the key
``(chain, residue number, insertion code, atom name, altloc)``, never by order: the
host may write atoms in another order than densrefine returns them. Empty insertion
codes and altlocs are ``""``.
"""
from __future__ import annotations

import numpy as np

# tolerances below which a returned value counts as unchanged: the PDB format keeps
# coordinates to 0.001 Å and B-factors to 0.01 Å² (wwPDB format v3.3, ATOM record)
XYZ_TOL = 0.0015
B_TOL = 0.006


class MatchError(Exception):
    """Output atoms do not match the host's atoms one to one; ``str()`` is one line."""


def read_pdb_atoms(path):
    """ATOM/HETATM records of the first model of a PDB file, keyed by atom identity.

    Parameters
    ----------
    path : str
        PDB file (as densrefine writes it: gemmi, fixed columns).

    Returns
    -------
    dict
        ``(chain, res_seq, icode, name, altloc) -> (x, y, z, b)``; x, y, z in Å,
        b (B-factor) in Å².

    Raises
    ------
    MatchError
        A record that cannot be parsed, or two records with the same key.
    """
    out = {}
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            rec = line[:6]
            if rec == "ENDMDL":
                break
            if rec not in ("ATOM  ", "HETATM"):
                continue
            try:
                key = (line[20:22].strip(), int(line[22:26]), line[26:27].strip(),
                       line[12:16].strip(), line[16:17].strip())
                val = (float(line[30:38]), float(line[38:46]), float(line[46:54]),
                       float(line[60:66]))
            except ValueError:
                raise MatchError(f"{path}: cannot read the atom record on line {n}") from None
            if key in out:
                raise MatchError(f"{path}: atom {format_key(key)} appears twice")
            out[key] = val
    return out


def format_key(key) -> str:
    """``/A:10A@CA.B`` style text of an atom key (ChimeraX atom-spec look)."""
    chain, num, icode, name, alt = key
    return f"/{chain}:{num}{icode}@{name}" + (f".{alt}" if alt else "")


def match_atoms(keys, found):
    """New coordinates and B-factors for ``keys``, in order.

    Parameters
    ----------
    keys : list of tuple
        Host atom keys, one per host atom (or per host atom and altloc).
    found : dict
        `read_pdb_atoms` result.

    Returns
    -------
    xyz : ndarray, shape (N, 3), float64
        Coordinates, Å (frame of the file).
    b : ndarray, shape (N,), float64
        B-factors, Å².

    Raises
    ------
    MatchError
        A host atom missing from ``found``, an extra atom in ``found``, or duplicated
        host keys. The message names the first few offenders.
    """
    if len(set(keys)) != len(keys):
        seen, dup = set(), []
        for k in keys:
            if k in seen:
                dup.append(format_key(k))
            seen.add(k)
        raise MatchError(f"the model has duplicate atom ids ({', '.join(dup[:3])}); "
                         "cannot match the result by identity")
    missing = [k for k in keys if k not in found]
    extra = set(found) - set(keys)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} atom(s) missing from the result, e.g. "
                         + ", ".join(format_key(k) for k in missing[:3]))
        if extra:
            parts.append(f"{len(extra)} unexpected atom(s), e.g. "
                         + ", ".join(format_key(k) for k in sorted(extra)[:3]))
        raise MatchError("; ".join(parts))
    arr = np.array([found[k] for k in keys], dtype=np.float64).reshape(-1, 4)
    return arr[:, :3], arr[:, 3]


def keep_unchanged(old, new, tol):
    """``new`` with entries whose change is within ``tol`` replaced by ``old``.

    Rounding to the file format's precision must not count as a move, so atoms that
    densrefine kept fixed keep their exact coordinates. ``old``/``new``: (N, 3) or (N,).
    """
    old, new = np.asarray(old, np.float64), np.asarray(new, np.float64)
    d = np.abs(new - old)
    same = d.max(axis=1) <= tol if d.ndim == 2 else d <= tol
    out = new.copy()
    out[same] = old[same]
    return out, ~same


def selection_text(selected, residues):
    """densrefine ``--select`` text for a set of residues.

    Parameters
    ----------
    selected : iterable of (chain, number)
        Residues to refine.
    residues : iterable of (chain, number)
        All residues of the model (fixes where a range may run: it never spans an
        unselected residue).

    Returns
    -------
    str
        e.g. ``"A/10-40,B"``: whole chains as ``CHAIN``, runs as ``CHAIN/FIRST-LAST``.

    Examples
    --------
    >>> selection_text([("A", 10), ("A", 11), ("A", 13)], [("A", n) for n in range(9, 15)])
    'A/10-11,A/13'
    """
    chosen = set(selected)
    by_chain = {}
    for chain, num in residues:
        by_chain.setdefault(chain, set()).add(num)
    items = []
    for chain in sorted({c for c, _ in chosen}):
        nums = sorted(by_chain.get(chain, set()) | {n for c, n in chosen if c == chain})
        picked = [n for n in nums if (chain, n) in chosen]
        if len(picked) == len(nums):
            items.append(chain)
            continue
        run = []
        for n in nums:
            if (chain, n) in chosen:
                run.append(n)
            elif run:
                items.append(_run_text(chain, run))
                run = []
        if run:
            items.append(_run_text(chain, run))
    return ",".join(items)


def _run_text(chain, run):
    return f"{chain}/{run[0]}" if run[0] == run[-1] else f"{chain}/{run[0]}-{run[-1]}"
