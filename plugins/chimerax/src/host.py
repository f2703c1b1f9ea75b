"""ChimeraX side of the exchange: write the inputs, put the result back, colour by CC.

Only ChimeraX's Python API is used (`chimerax.pdb.save_pdb`,
`chimerax.map_data.save_grid_data`, ``Atoms.coords``/``bfactors``, residue attributes),
no commands, so it works where only hand-registered commands exist.

Frames: the model is written relative to the map (``save_pdb(..., rel_model=map)``),
so densrefine sees both in the map's own frame; the returned coordinates are taken
back into the model's frame with the positions both models had at export time.
"""
from __future__ import annotations

import os

import numpy as np

from .matching import B_TOL, XYZ_TOL, keep_unchanged, match_atoms, read_pdb_atoms

CC_ATTR = "densrefine_cc"
CC_BEFORE_ATTR = "densrefine_cc_before"
# red (poor fit) -> white -> blue (good fit), as RGBA 0..1
PALETTE = ((1.0, 0.0, 0.0, 1.0), (1.0, 1.0, 1.0, 1.0), (0.0, 0.0, 1.0, 1.0))


def export_inputs(session, structure, volume, folder):
    """Write ``model.pdb`` (in the map's frame) and ``map.mrc`` into ``folder``.

    Returns
    -------
    snapshot : dict
        Paths (``model``, ``map``), the transform map frame -> model frame
        (``to_model``, a ChimeraX Place) and the model's coordinates at export time
        (``coords``, (N, 3) float64, Å) to detect edits made while densrefine runs.
    """
    from chimerax.map_data import save_grid_data
    from chimerax.pdb import save_pdb

    model, emap = os.path.join(folder, "model.pdb"), os.path.join(folder, "map.mrc")
    save_pdb(session, model, models=[structure], rel_model=volume)
    save_grid_data([volume.data], emap, session, format="mrc")
    return {"model": model, "map": emap,
            "to_model": structure.scene_position.inverse() * volume.scene_position,
            "coords": structure.atoms.coords.copy(), "n_atoms": structure.num_atoms}


def atom_keys(structure):
    """Keys of the structure's atoms (`matching` order) and the altloc atoms apart.

    Returns
    -------
    keys : list of tuple
        One key per atom without alternative locations, in ``structure.atoms`` order.
    plain : ndarray of bool, shape (N,)
        Atoms without alternative locations.
    alt : list of (Atom, altloc, key)
        One entry per alternative location of the other atoms.
    """
    atoms = structure.atoms
    res = atoms.residues
    chains, nums, icodes = res.chain_ids, res.numbers, res.insertion_codes
    names, n_alt = atoms.names, atoms.num_alt_locs
    plain = n_alt == 0
    keys = [(str(chains[i]), int(nums[i]), str(icodes[i]).strip(), str(names[i]), "")
            for i in np.flatnonzero(plain)]
    alt = []
    for i in np.flatnonzero(~plain):
        a = atoms[int(i)]
        for loc in a.alt_locs:
            alt.append((a, loc, (str(chains[i]), int(nums[i]), str(icodes[i]).strip(),
                                 str(names[i]), loc.strip())))
    return keys, plain, alt


def read_result(structure, pdb_path, snapshot):
    """Match densrefine's output model to ``structure``; nothing is changed yet.

    Returns
    -------
    dict
        ``xyz``/``b`` (new coordinates in the model frame, Å, and B-factors, Å², for
        the atoms without altlocs), ``plain`` mask, ``alt`` list of
        (atom, loc, xyz, b), ``moved`` (bool per plain atom).

    Raises
    ------
    matching.MatchError
        The output does not hold exactly the model's atoms.
    """
    found = read_pdb_atoms(pdb_path)
    keys, plain, alt = atom_keys(structure)
    xyz, b = match_atoms(keys + [k for _, _, k in alt], found)
    xyz = snapshot["to_model"].transform_points(xyz)
    n = len(keys)
    atoms = structure.atoms.filter(plain)
    new_xyz, moved = keep_unchanged(atoms.coords, xyz[:n], XYZ_TOL)
    new_b, b_changed = keep_unchanged(atoms.bfactors, b[:n], B_TOL)
    alt_out = [(a, loc, xyz[n + j], b[n + j]) for j, (a, loc, _) in enumerate(alt)]
    return {"xyz": new_xyz, "b": new_b, "plain": plain, "alt": alt_out,
            "moved": moved, "b_changed": b_changed}


def apply_result(session, structure, result, name="densrefine fit"):
    """Set the new coordinates and B-factors in place (one undoable step)."""
    from chimerax.core.undo import UndoState

    atoms = structure.atoms.filter(result["plain"])
    undo = UndoState(name)
    undo.add(atoms, "coords", atoms.coords.copy(), result["xyz"])
    undo.add(atoms, "bfactors", atoms.bfactors.copy(), result["b"].astype(np.float32))
    atoms.coords = result["xyz"]
    atoms.bfactors = result["b"].astype(np.float32)
    for atom, loc, xyz, b in result["alt"]:
        current = atom.alt_loc
        atom.set_alt_loc(loc, False)
        atom.coord = xyz
        atom.bfactor = float(b)
        atom.set_alt_loc(current, False)
    session.undo.register(undo)


def register_attributes(session):
    """Register the per-residue CC attributes (so users can ``color byattribute``)."""
    from chimerax.atomic import Residue

    for attr in (CC_ATTR, CC_BEFORE_ATTR):
        try:
            Residue.register_attr(session, attr, "densrefine", attr_type=float,
                                  can_return_none=True)
        except Exception as exc:  # noqa: BLE001 - a name clash must not stop the run
            session.logger.warning(f"could not register residue attribute {attr}: {exc}")


def set_residue_values(structure, values, attr=CC_ATTR):
    """Set ``attr`` on each residue from ``values`` ((chain, number, icode) -> float).

    Returns
    -------
    ndarray, shape (n_residues,), float64
        The value per residue of ``structure.residues``, NaN where none was given.
    """
    res = structure.residues
    out = np.full(len(res), np.nan)
    for i, (r, c, n, ic) in enumerate(zip(res, res.chain_ids, res.numbers,
                                          res.insertion_codes)):
        v = values.get((str(c), int(n), str(ic).strip()))
        setattr(r, attr, None if v is None else float(v))
        if v is not None:
            out[i] = float(v)
    return out


def color_by_values(structure, per_residue):
    """Colour ribbons and atoms red -> white -> blue from the lowest to the highest value.

    Residues without a value keep their colours. Returns (low, high) or None.
    """
    from chimerax.core.colors import Colormap

    ok = np.isfinite(per_residue)
    if not ok.any():
        return None
    lo, hi = float(per_residue[ok].min()), float(per_residue[ok].max())
    if hi - lo < 1e-6:
        hi = lo + 1e-6
    cmap = Colormap([lo, 0.5 * (lo + hi), hi], PALETTE)
    rgba = cmap.interpolated_rgba8(per_residue[ok].astype(np.float32))
    res = structure.residues.filter(ok)
    res.ribbon_colors = rgba
    for r, c in zip(res, rgba):
        r.atoms.colors = np.tile(c, (r.num_atoms, 1))
    return lo, hi
