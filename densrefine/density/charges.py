"""Formal charges of a macromolecular model: from residue names, hydrogens and the file.

Rules (the protonation states at pH ≈ 7 that refinement programs assume; overridden by a
non-zero charge in the model file, e.g. ``NZ  LYS ... N1+`` or ``MG  MG ... MG2+``):

* ASP −1 (on OD1/OD2, −½ each), GLU −1 (OE1/OE2), LYS +1 (NZ), ARG +1 (NE, NH1, NH2, ⅓
  each), unless hydrogens show the neutral form (ASP HD2, GLU HE2, LYS with < 3 HZ);
* HIS +1 (ND1/NE2, ½ each) only when both HD1 and HE2 are present, else neutral;
* chain termini: N-terminal N +1 when it carries H1/H2/H3 or, without hydrogens, when
  the residue has no peptide link before it; C-terminal OXT with O −1 (½ each);
* nucleic-acid phosphates −1 (OP1/OP2, ½ each);
* ions by element (Na, K +1; Mg, Ca, Zn, Mn, Fe, Co, Ni, Cu +2; Cl, Br, I −1) when they
  are single-atom residues.

* other residues (ligands, glycans, cofactors): the per-atom charges of their restraint
  dictionary (``_chem_comp_atom.charge`` of the CCP4 monomer library), issue 21. These
  are the formal charges of the dictionary's valence structure, not a pKa or redox
  judgement: HEM gets Fe +2, both propionate O2A/O2D −1, NA/NC −1 and NB/ND +1 (its Fe–N
  bonds are written as covalent), a net 0 where haem b with two ionised propionates is −2;
  glycans (NAG, MAN, BGC, ...) are neutral. A charge given in the model file wins.

Fractional charges on the symmetric atoms keep the description independent of which
oxygen the file calls OD1. ``unknown`` lists residues whose charge could not be decided
(none of the rules apply, the file gives no charge and no dictionary has the residue):
they are treated as neutral and reported, as issue 6 asks.
"""
from __future__ import annotations

import logging

import numpy as np

from ..errors import InputError
from ..restraints.monlib import find_monlib

log = logging.getLogger("densrefine")

ION_CHARGE = {"NA": 1, "K": 1, "LI": 1, "MG": 2, "CA": 2, "ZN": 2, "MN": 2, "FE": 2,
              "CO": 2, "NI": 2, "CU": 2, "CL": -1, "BR": -1, "I": -1, "F": -1}
_SIDE = {"ASP": (("OD1", "OD2"), -1, ("HD2", "HD1")), "GLU": (("OE1", "OE2"), -1, ("HE2", "HE1")),
         "ARG": (("NE", "NH1", "NH2"), +1, ()), "LYS": (("NZ",), +1, ())}
STANDARD = {"ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE", "LEU", "LYS",
            "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL", "MSE", "HOH", "WAT", "DOD",
            "A", "C", "G", "U", "DA", "DC", "DG", "DT", "I", "N"}


def _residue_groups(atoms):
    idx = np.asarray(atoms.res_index)
    order = np.argsort(idx, kind="stable")
    bounds = np.flatnonzero(np.diff(idx[order])) + 1
    return np.split(order, bounds)


def formal_charges(atoms) -> tuple[np.ndarray, list[str]]:
    """Per-atom formal charges (e, possibly fractional) and the undecided residues.

    Parameters
    ----------
    atoms : densrefine.Atoms

    Returns
    -------
    charge : ndarray, shape (N,), float64
    unknown : list of str
        "A/LIG 301"-style labels of residues with no rule and no charge in the file.
    """
    names = np.char.strip(np.asarray(atoms.atom_name).astype(str))
    resn = np.char.strip(np.asarray(atoms.res_name).astype(str))
    q = np.zeros(len(names))
    unknown = []
    groups = _residue_groups(atoms)
    ligands = sorted({resn[g[0]] for g in groups if resn[g[0]] not in STANDARD
                      and resn[g[0]] not in ION_CHARGE})
    dictionary = dictionary_charges(ligands)
    for gi, g in enumerate(groups):
        rn = resn[g[0]]
        nm = {n: i for n, i in zip(names[g], g)}
        _side_chain(rn, nm, q)
        first = gi == 0 or atoms.chain[groups[gi - 1][0]] != atoms.chain[g[0]]
        _termini(nm, q, first)
        if "P" in nm and "OP1" in nm and "OP2" in nm:
            q[nm["OP1"]] -= 0.5
            q[nm["OP2"]] -= 0.5
        if len(g) == 1 and rn in ION_CHARGE:
            q[g[0]] = ION_CHARGE[rn]
        if rn in dictionary and not np.any(atoms.charge[g]):
            for a, i in nm.items():
                q[i] = dictionary[rn].get(a, 0.0)
        elif rn not in STANDARD and rn not in ION_CHARGE and not np.any(atoms.charge[g]):
            unknown.append(f"{atoms.chain[g[0]]}/{rn} {atoms.res_seq[g[0]]}")
    given = np.asarray(atoms.charge) != 0
    q[given] = np.asarray(atoms.charge, np.float64)[given]
    return q, unknown


_DICT_CACHE: dict = {}


def dictionary_charges(names) -> dict:
    """{residue: {atom: charge (e)}} from the CCP4 monomer library (``_chem_comp_atom.charge``)
    for those of the residue ``names`` it has; residues it lacks are left out, and no
    library at all gives {} and a log line. Entries are read once per process."""
    names = [n for n in names if n not in _DICT_CACHE]
    if names:
        try:
            import gemmi

            lib = gemmi.read_monomer_lib(find_monlib(None), names, ignore_missing=True)
            for n in names:
                cc = lib.monomers[n] if n in lib.monomers else None  # noqa: SIM401 (no .get)
                _DICT_CACHE[n] = None if cc is None else {a.id: float(a.charge)
                                                          for a in cc.atoms}
        except (RuntimeError, ValueError, OSError, InputError) as exc:
            log.info("Formal charges: no monomer library for %s (%s)", ", ".join(names), exc)
            return {}
    return {n: _DICT_CACHE[n] for n in list(_DICT_CACHE) if _DICT_CACHE[n] is not None}


def _side_chain(rn, nm, q):
    if rn in _SIDE:
        heavy, z, neutral_h = _SIDE[rn]
        if any(h in nm for h in neutral_h):
            return
        if rn == "LYS" and any(h in nm for h in ("HZ1", "HZ2", "HZ3")) and \
                sum(h in nm for h in ("HZ1", "HZ2", "HZ3")) < 3:
            return
        present = [a for a in heavy if a in nm]
        for a in present:
            q[nm[a]] += z / len(present)
    elif rn == "HIS" and "HD1" in nm and "HE2" in nm:
        for a in ("ND1", "NE2"):
            if a in nm:
                q[nm[a]] += 0.5


def _termini(nm, q, first_in_chain):
    if "OXT" in nm and "O" in nm:
        q[nm["OXT"]] -= 0.5
        q[nm["O"]] -= 0.5
    if "N" in nm and "CA" in nm:
        has_h3 = sum(h in nm for h in ("H1", "H2", "H3")) == 3
        no_h = not any(h in nm for h in ("H", "HN", "H1", "H2", "H3"))
        if has_h3 or (no_h and first_in_chain):
            q[nm["N"]] += 1.0
