"""Atom selections for ``--select``.

Syntax: comma-separated items, each ``CHAIN`` (a whole chain) or ``CHAIN/FIRST-LAST``
(residue numbers, inclusive; insertion codes are ignored) or ``CHAIN/N`` (one
residue). Examples: ``A``, ``A/10-40``, ``A/10-40,B/5``, ``A/-3-12`` (negative first
residue). ``*`` selects every chain.
"""
from __future__ import annotations

import re

import numpy as np

from ..errors import input_error

_ITEM = re.compile(r"^\s*([^/\s]+)\s*(?:/\s*(-?\d+)\s*(?:-\s*(-?\d+))?)?\s*$")


def parse_selection(text: str) -> list[tuple[str, int | None, int | None]]:
    """Parse ``--select`` text into (chain, first, last) items (None: whole chain).

    Examples
    --------
    >>> parse_selection("A/10-40,B")
    [('A', 10, 40), ('B', None, None)]
    """
    items = []
    for part in str(text).split(","):
        m = _ITEM.match(part)
        if not m:
            raise input_error("--select", f"cannot parse {part.strip()!r}",
                              "use CHAIN, CHAIN/N or CHAIN/FIRST-LAST, comma-separated "
                              "(e.g. A/10-40,B)")
        chain, first, last = m.group(1), m.group(2), m.group(3)
        first = int(first) if first is not None else None
        last = int(last) if last is not None else first
        if first is not None and last < first:
            raise input_error("--select", f"range {part.strip()!r} runs backwards",
                              "write FIRST-LAST with FIRST <= LAST")
        items.append((chain, first, last))
    return items


def select_atoms(atoms, text) -> np.ndarray:
    """Boolean (N,) mask of the atoms ``text`` selects (None/empty: all atoms).

    Raises
    ------
    InputError
        Unparsable text, or a selection that matches no atom.
    """
    n = len(atoms)
    if text is None or (isinstance(text, str) and not text.strip()):
        return np.ones(n, bool)
    if isinstance(text, np.ndarray) and text.dtype == bool:
        if text.shape != (n,):
            raise input_error("select", f"mask shape {text.shape} != ({n},)",
                              "give one boolean per atom")
        return text.copy()
    chain = np.asarray(atoms.chain).astype(str)
    seq = np.asarray(atoms.res_seq)
    mask = np.zeros(n, bool)
    for ch, first, last in parse_selection(text):
        m = np.ones(n, bool) if ch == "*" else chain == ch
        if first is not None:
            m &= (seq >= first) & (seq <= last)
        mask |= m
    if not mask.any():
        chains = ", ".join(sorted(set(chain.tolist())))
        raise input_error("--select", f"{text!r} matches no atom (chains: {chains})",
                          "check the chain id and residue numbers")
    return mask
