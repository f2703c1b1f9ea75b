"""Locate and read the CCP4 monomer library (plus user ligand dictionaries).

The library is found from, in order: an explicit option (``--monlib DIR``), the
environment variable ``$CLIBD_MON`` (CCP4 convention), or the copy that ships inside
the PyPI package ``coot-headless-api`` (``<site-packages>/coot_headless_api/share/coot/
lib/data/monomers``), which is densrefine's default provider.  Reading goes through
gemmi (`gemmi.read_monomer_lib`, `gemmi.MonLib.read_monomer_cif`).
"""
from __future__ import annotations

import importlib.util
import logging
import os

from ..errors import input_error

log = logging.getLogger("densrefine")

_FIXES = ("pass --monlib DIR (Python: monlib=DIR), set $CLIBD_MON to a CCP4 monomer "
          "library, or `pip install coot-headless-api` (ships one)")


def _is_monlib(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "list", "mon_lib_list.cif")) or \
        os.path.isfile(os.path.join(path, "ener_lib.cif"))


def _coot_copy() -> str | None:
    try:
        spec = importlib.util.find_spec("coot_headless_api")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = list(spec.submodule_search_locations)[0]
    return os.path.join(root, "share", "coot", "lib", "data", "monomers")


def find_monlib(explicit=None) -> str:
    """Directory of the CCP4 monomer library to use.

    Parameters
    ----------
    explicit : str or os.PathLike, optional
        A directory given by the user (``--monlib``); it must exist and look like a
        monomer library (``list/mon_lib_list.cif`` or ``ener_lib.cif`` inside).

    Returns
    -------
    str
        Absolute path of the library directory.

    Raises
    ------
    InputError
        The explicit directory is not a monomer library, or no library was found
        (message lists the three ways to provide one).
    """
    if explicit is not None:
        path = os.path.abspath(os.fspath(explicit))
        if not _is_monlib(path):
            raise input_error(path, "not a CCP4 monomer library (no list/mon_lib_list.cif "
                              "or ener_lib.cif inside)", "give the 'monomers' directory")
        log.info("Monomer library: %s (explicit option)", path)
        return path
    env = os.environ.get("CLIBD_MON")
    if env:
        path = os.path.abspath(env)
        if _is_monlib(path):
            log.info("Monomer library: %s (from $CLIBD_MON)", path)
            return path
        log.warning("$CLIBD_MON=%s is not a monomer library; trying coot-headless-api", env)
    coot = _coot_copy()
    if coot is not None and _is_monlib(coot):
        log.info("Monomer library: %s (PyPI package coot-headless-api)", coot)
        return os.path.abspath(coot)
    raise input_error("--monlib", "no CCP4 monomer library found", _FIXES)


def read_library(resnames, *, monlib=None, ligands=()):
    """Read the monomers ``resnames`` (when present) and the ligand dictionaries.

    Parameters
    ----------
    resnames : sequence of str
        Residue names in the model.
    monlib : str, optional
        Library directory (see `find_monlib`).
    ligands : sequence of str or os.PathLike
        CCP4 restraint dictionaries (mmCIF ``data_comp_XXX`` blocks from AceDRG,
        eLBOW, GRADE, ...); they override library entries of the same name.

    Returns
    -------
    monlib : gemmi.MonLib
    missing : list of str
        Residue names with no dictionary (sorted).
    """
    import gemmi

    path = find_monlib(monlib)
    names = sorted(set(resnames))
    ml = gemmi.read_monomer_lib(path, names, ignore_missing=True)
    for lig in ligands:
        lig = os.fspath(lig)
        if not os.path.isfile(lig):
            raise input_error(lig, "ligand dictionary not found",
                              "give an existing CCP4 restraint .cif file")
        before = set(ml.monomers.keys())
        try:
            ml.read_monomer_cif(lig)
        except (RuntimeError, ValueError, OSError) as exc:
            msg = " ".join(str(exc).split())[:200]
            raise input_error(lig, f"cannot be read as a restraint dictionary ({msg})",
                              "give a CCP4 monomer-library mmCIF (data_comp_XXX blocks)") from None
        added = sorted(set(ml.monomers.keys()) - before)
        log.info("Read ligand dictionary %s (%s)", lig, ", ".join(added) or "no new monomers")
    missing = [n for n in names if n not in ml.monomers]
    return ml, missing
