"""Atomic models (PDB / mmCIF, optionally gzipped) ↔ `densrefine.types.Model`.

gemmi parses and writes the files; this module turns the first model of a
``gemmi.Structure`` into the struct-of-arrays `Atoms` and writes refined values back
into a copy of the same structure, so that everything densrefine does not refine
(chains, numbering, insertion codes, altlocs, ligands, waters, hydrogens, headers as
far as gemmi keeps them) survives a read → write round trip.

Conventions
-----------
* Atom order is the file order: chain part → residue → atom, read with
  ``merge_chain_parts=False`` so that, e.g., the waters of chain A that follow chain B
  in a PDB file stay where they are. `write_model` walks the same order.
* Only the first model of a multi-model file is read (and written).
* ``b_iso`` is the file's B (Å²). When an atom has ANISOU but a zero B (some mmCIF
  files give only ``_atom_site_anisotrop``), ``b_iso`` is B_eq = 8π²·tr(U)/3.
* ``u_aniso`` holds U11 U22 U33 U12 U13 U23 (Å², PDB ANISOU / mmCIF order); rows of
  isotropic atoms are NaN and the field is None when no atom is anisotropic.
* A cell with edges of 1 Å (CRYST1 ``1 1 1``, written by PDB for cryo-EM entries) or
  no cell at all gives ``Model.cell = None`` (gemmi ``UnitCell.is_crystal()``).
"""
from __future__ import annotations

import collections
import gzip
import logging
import os
import warnings

import numpy as np

from ..errors import DensrefineWarning, check_readable, format_error, input_error
from ..types import B_PER_U, Atoms, Model, UnitCell
from .atomic import atomic_path, check_output_path

log = logging.getLogger("densrefine")

_MODEL_SUFFIXES = {".pdb": "pdb", ".ent": "pdb", ".cif": "cif", ".mmcif": "cif"}


_format_error = format_error


def _check_readable(path) -> str:
    return check_readable(path, "a model file", "give a .pdb or .cif file (optionally .gz)")


def _looks_binary(path) -> bool:
    """True when the first 4 kB (decompressed for .gz) contain NUL bytes."""
    try:
        opener = gzip.open if path.lower().endswith(".gz") else open
        with opener(path, "rb") as f:
            head = f.read(4096)
    except (OSError, EOFError):
        return True
    return b"\0" in head


def _read_structure(path):
    import gemmi

    low = path.lower().removesuffix(".gz")
    fmt = gemmi.CoorFormat.Unknown
    if os.path.splitext(low)[1] not in _MODEL_SUFFIXES:
        fmt = gemmi.CoorFormat.Detect  # unusual suffix: let gemmi look at the content
    if _looks_binary(path):
        raise _format_error(path, "binary file, not a PDB or mmCIF model",
                            "give a .pdb or .cif model file")
    try:
        return gemmi.read_structure(path, merge_chain_parts=False, format=fmt)
    except (RuntimeError, ValueError, OSError, UnicodeDecodeError, IndexError) as exc:
        msg = " ".join(str(exc).split())[:200]
        raise _format_error(path, f"cannot be read as PDB or mmCIF ({msg})",
                            "check that it is a valid, complete model file") from None


def read_model(path) -> Model:
    """Read the first model of a PDB or mmCIF file (optionally gzipped).

    Parameters
    ----------
    path : str or os.PathLike
        ``.pdb``, ``.ent``, ``.cif``, ``.mmcif``, each optionally ``.gz``; other
        suffixes are detected from the content.

    Returns
    -------
    Model
        All atom sites (every altloc) in file order; ``handle`` is the
        ``gemmi.Structure`` (entities set up) used by `write_model`.

    Raises
    ------
    InputError
        Missing file, directory, or a model without atoms.
    FormatError
        Unreadable, corrupt or wrong-format file (e.g. a map).
    """
    path = _check_readable(path)
    st = _read_structure(path)
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        _explain_no_atoms(path)
        raise input_error(path, "no atoms found (no ATOM/HETATM records or _atom_site rows)",
                          "give a model file that contains coordinates")
    if len(st) > 1:
        log.warning("%s has %d models; using the first (model %s)", path, len(st), st[0].num)
    st.setup_entities()
    atoms = atoms_from_gemmi(st[0])
    _check_finite(atoms, path)
    cell = UnitCell(*st.cell.parameters) if st.cell.is_crystal() else None
    sg = st.spacegroup_hm.strip() or "P 1"
    n_h = int(atoms.is_hydrogen.sum())
    log.info("Read model %s: %d atoms (%d H) in %d residues, %d chain(s), cell %s, space group %s",
             path, len(atoms), n_h, int(atoms.res_index[-1]) + 1,
             len(set(atoms.chain.tolist())), _cell_str(cell), sg)
    return Model(atoms=atoms, cell=cell, space_group=sg, path=path, handle=st)


_XYZ_TAGS = ("_atom_site.Cartn_x", "_atom_site.Cartn_y", "_atom_site.Cartn_z")


def _explain_no_atoms(path) -> None:
    """Say why an mmCIF gave no atoms (no _atom_site loop, or a missing Cartn column)."""
    import gemmi

    low = path.lower().removesuffix(".gz")
    if not low.endswith((".cif", ".mmcif")):
        return
    try:
        doc = gemmi.cif.read(path)
    except (RuntimeError, ValueError, OSError):
        return
    for block in doc:
        rows = block.find_mmcif_category("_atom_site.")
        if rows is None or not len(rows.tags):
            continue
        missing = [t for t in _XYZ_TAGS if t not in rows.tags]
        if missing:
            raise input_error(path, f"the _atom_site loop of block {block.name} has no "
                              f"{', '.join(m.split('.')[1] for m in missing)} column",
                              "give a complete model file (Cartn_x, Cartn_y, Cartn_z)")
    if all(b.find_mmcif_category("_atom_site.") is None
           or not len(b.find_mmcif_category("_atom_site.").tags) for b in doc):
        if any(len(b.find_mmcif_category("_refln.").tags) for b in doc):
            raise input_error(path, "is a structure-factor file (_refln), not a model",
                              "give the model (.pdb/.cif) here and the reflections as DATA")


def _check_finite(atoms, path) -> None:
    """Refuse undefined coordinates (mmCIF '?' or '.') instead of scoring NaN."""
    bad = ~np.isfinite(atoms.xyz).all(1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise input_error(path, f"{int(bad.sum())} of {len(atoms)} atoms have undefined "
                          f"coordinates (first: {atoms.chain[i]}/{atoms.res_name[i]} "
                          f"{int(atoms.res_seq[i])}/{str(atoms.atom_name[i]).strip()}; "
                          "'?' or '.' in Cartn_x/y/z)",
                          "give coordinates for every atom or remove those atoms")


def _cell_str(cell) -> str:
    if cell is None:
        return "none"
    return " ".join(f"{x:g}" for x in cell.parameters)


def atoms_from_gemmi(gmodel) -> Atoms:
    """Build `Atoms` from a ``gemmi.Model``, walking chain → residue → atom.

    Parameters
    ----------
    gmodel : gemmi.Model

    Returns
    -------
    Atoms
    """
    num, txt, aniso = [], [], []
    het, res_index = [], []
    any_aniso = False
    ri = -1
    for ch in gmodel:
        cname = ch.name
        for res in ch:
            ri += 1
            seq = res.seqid
            rname, rnum, icode, is_het = res.name, seq.num, seq.icode, res.het_flag == "H"
            for a in res:
                p, el, u = a.pos, a.element, a.aniso
                has_u = u.nonzero()
                any_aniso |= has_u
                b = a.b_iso
                if has_u and b == 0.0:
                    b = B_PER_U * (u.u11 + u.u22 + u.u33) / 3.0
                num.append((p.x, p.y, p.z, b, a.occ, el.atomic_number, a.charge, rnum))
                txt.append((el.name.upper(), cname, rname, icode, a.name,
                            a.altloc if a.altloc != "\0" else ""))
                aniso.append((u.u11, u.u22, u.u33, u.u12, u.u13, u.u23) if has_u else _NAN6)
                het.append(is_het)
                res_index.append(ri)
    arr = np.array(num, dtype=np.float64).reshape(-1, 8)
    cols = list(zip(*txt, strict=True)) if txt else [()] * 6
    return Atoms(
        xyz=arr[:, 0:3], b_iso=arr[:, 3], occ=arr[:, 4], atomic_number=arr[:, 5],
        charge=arr[:, 6], res_seq=arr[:, 7], element=cols[0], chain=cols[1],
        res_name=cols[2], icode=cols[3], atom_name=cols[4], altloc=cols[5],
        het=het, res_index=res_index,
        u_aniso=np.array(aniso, dtype=np.float64).reshape(-1, 6) if any_aniso else None)


_NAN6 = (np.nan,) * 6


# --------------------------------------------------------------------------- writing

def _model_format(path) -> tuple[str, bool]:
    low = os.fspath(path).lower()
    gz = low.endswith(".gz")
    ext = os.path.splitext(low.removesuffix(".gz"))[1]
    if ext not in _MODEL_SUFFIXES:
        raise input_error(path, f"unknown model suffix {ext or '(none)'!r}",
                          "name the output .pdb or .cif (optionally .gz)")
    return _MODEL_SUFFIXES[ext], gz


def write_model(model: Model, path, *, inputs=()) -> str:
    """Write a model as PDB or mmCIF (by suffix; ``.gz`` compresses), atomically.

    xyz, b_iso, occ and u_aniso (where not NaN) are written into a copy of
    ``model.handle`` in the order they were read; everything else the handle carries
    is kept. A model without a handle (built from arrays) is converted with
    `structure_from_model`.

    Parameters
    ----------
    model : Model
    path : str or os.PathLike
        ``.pdb``/``.ent`` → PDB, ``.cif``/``.mmcif`` → mmCIF, optional ``.gz``.
    inputs : sequence of paths
        Files that must not be overwritten (``model.path`` is always included).

    Returns
    -------
    str
        The path written.

    Raises
    ------
    InputError
        Unknown suffix, output equal to an input, missing output folder, or a model
        that PDB format cannot hold (write mmCIF instead).
    """
    fmt, gz = _model_format(path)
    path = check_output_path(path, (model.path, *inputs))
    st = _structure_for_writing(model)
    if fmt == "pdb":
        _check_pdb_limits(st, path)
        text = st.make_pdb_string()  # serials renumbered; CONECT not written (gemmi defaults)
    else:
        text = st.make_mmcif_document().as_string()
    with atomic_path(path) as tmp:
        opener = gzip.open if gz else open
        with opener(tmp, "wt", encoding="utf-8") as f:
            f.write(text)
    log.info("Wrote model %s (%s%s, %d atoms)", path, "PDB" if fmt == "pdb" else "mmCIF",
             ", gzip" if gz else "", len(model))
    return path


def to_gemmi(model: Model):
    """A ``gemmi.Structure`` with the model's current coordinates, B and occupancies.

    A clone of the model's handle (headers, cell, entities kept) with the arrays
    applied, or built from the arrays when there is no matching handle.
    """
    return _structure_for_writing(model)


def _structure_for_writing(model: Model):
    h = model.handle
    if h is not None and len(h) > 0 and h[0].count_atom_sites() == len(model.atoms):
        st = h.clone()
        while len(st) > 1:  # the refined model is the first one only
            del st[len(st) - 1]
        _apply_atoms(st[0], model.atoms)
        return st
    if h is not None:
        warnings.warn(f"model handle has {h[0].count_atom_sites()} atoms but the model "
                      f"{len(model.atoms)}; writing from the arrays (headers are lost)",
                      DensrefineWarning, stacklevel=3)
    return structure_from_model(model)


def _apply_atoms(gmodel, atoms: Atoms) -> None:
    import gemmi

    xyz, b, occ, u = atoms.xyz, atoms.b_iso, atoms.occ, atoms.u_aniso
    i = 0
    for ch in gmodel:
        for res in ch:
            for a in res:
                a.pos = gemmi.Position(*xyz[i])
                a.b_iso = float(b[i])
                a.occ = float(occ[i])
                if u is not None and not np.isnan(u[i, 0]):
                    a.aniso = gemmi.SMat33f(*u[i])
                i += 1


def _check_pdb_limits(st, path) -> None:
    long_chain = [c.name for c in st[0] if len(c.name) > 2]
    if long_chain:
        raise input_error(path, f"chain name {long_chain[0]!r} is too long for PDB format",
                          "write mmCIF (.cif) instead")
    lo, hi = -999.999, 9999.999
    for c in st[0]:
        for r in c:
            if len(r.name) > 3:
                raise input_error(path, f"residue name {r.name!r} is too long for PDB format",
                                  "write mmCIF (.cif) instead")
            for a in r:
                p = a.pos
                if not (lo <= p.x <= hi and lo <= p.y <= hi and lo <= p.z <= hi):
                    raise input_error(path, "coordinates do not fit PDB columns",
                                      "write mmCIF (.cif) instead")


def structure_from_model(model: Model):
    """Build a ``gemmi.Structure`` from the arrays of a `Model` (no handle needed).

    Chains are runs of equal ``chain``, residues runs of equal ``res_index``.

    Parameters
    ----------
    model : Model

    Returns
    -------
    gemmi.Structure
    """
    import gemmi

    at = model.atoms
    st = gemmi.Structure()
    st.add_model(gemmi.Model(1))
    gm = st[0]
    ch = res = None
    prev_chain = prev_res = None
    for i in range(len(at)):
        if ch is None or at.chain[i] != prev_chain:
            gm.add_chain(gemmi.Chain(str(at.chain[i])))
            ch, prev_chain, prev_res = gm[len(gm) - 1], at.chain[i], None
        if at.res_index[i] != prev_res:
            r = gemmi.Residue()
            r.name = str(at.res_name[i])
            r.seqid = gemmi.SeqId(int(at.res_seq[i]), str(at.icode[i]) or " ")
            r.het_flag = "H" if at.het[i] else "A"
            ch.add_residue(r)
            res, prev_res = ch[len(ch) - 1], at.res_index[i]
        res.add_atom(_make_atom(at, i))
    if model.cell is not None:
        st.cell = gemmi.UnitCell(*model.cell.parameters)
    st.spacegroup_hm = model.space_group
    st.setup_entities()
    st.assign_serial_numbers()
    return st


def _make_atom(at: Atoms, i: int):
    import gemmi

    a = gemmi.Atom()
    a.name = str(at.atom_name[i])
    a.element = gemmi.Element(str(at.element[i]) or "X")
    a.pos = gemmi.Position(*at.xyz[i])
    a.b_iso, a.occ, a.charge = float(at.b_iso[i]), float(at.occ[i]), int(at.charge[i])
    a.altloc = str(at.altloc[i]) or "\0"
    if at.u_aniso is not None and not np.isnan(at.u_aniso[i, 0]):
        a.aniso = gemmi.SMat33f(*at.u_aniso[i])
    return a


# --------------------------------------------------------------------------- summary

def model_summary(model: Model) -> dict:
    """Counts and ranges describing a model (used by ``densrefine info``).

    Parameters
    ----------
    model : Model

    Returns
    -------
    dict
        ``chains`` (names in order), ``residues``, ``atoms``, ``hydrogens``,
        ``waters`` (residues), ``ligands`` ({name: count} of non-polymer, non-water
        residues), ``b_min``/``b_max``/``b_mean`` (Å²), ``partial_occupancy`` (atoms
        with occ < 1), ``altloc_atoms``, ``altlocs`` (letters), ``anisotropic``
        (atoms with ANISOU), ``cell`` (6 numbers or None), ``space_group``.
    """
    at = model.atoms
    waters, ligands = _classify_residues(model)
    chains = list(dict.fromkeys(at.chain.tolist()))
    n_aniso = 0 if at.u_aniso is None else int((~np.isnan(at.u_aniso[:, 0])).sum())
    return {
        "path": model.path, "chains": chains, "residues": int(at.res_index.max()) + 1,
        "atoms": len(at), "hydrogens": int(at.is_hydrogen.sum()), "waters": waters,
        "ligands": dict(sorted(ligands.items())),
        "b_min": round(float(at.b_iso.min()), 3), "b_max": round(float(at.b_iso.max()), 3),
        "b_mean": round(float(at.b_iso.mean()), 3),
        "partial_occupancy": int((at.occ < 1.0).sum()),
        "altloc_atoms": int((at.altloc != "").sum()),
        "altlocs": sorted(set(at.altloc.tolist()) - {""}), "anisotropic": n_aniso,
        "cell": None if model.cell is None else list(model.cell.parameters),
        "space_group": model.space_group,
    }


def _classify_residues(model: Model) -> tuple[int, dict]:
    """Number of water residues and {name: count} of ligand residues."""
    import gemmi

    st = model.handle
    if st is None:
        st = structure_from_model(model)
    waters, ligands = 0, collections.Counter()
    for ch in st[0]:
        for res in ch:
            if res.is_water():
                waters += 1
            elif res.entity_type == gemmi.EntityType.NonPolymer:
                ligands[res.name] += 1
    return waters, dict(ligands)
