"""`score`: every map–model score of densrefine in one call, as a `ScoreReport`."""
from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import DensrefineWarning, input_error
from ..grid import box_cell, rebox_periodic
from ..grid import inside as inside_box
from ..types import Grid, Model
from . import cc as _cc
from .fsc import d_at_fsc, fsc_curve
from .masks import atom_radius as _atom_radius
from .masks import molecular_mask
from .residues import residue_scores

log = logging.getLogger("densrefine")

MAX_RESOLUTION = 50.0
"""Largest resolution (Å) accepted by `score` (the same range as `fit` and `simulate`)."""
MIN_RESOLUTION = 0.5
"""Smallest resolution (Å) accepted by `score`."""
LOW_CC_MASK = 0.2
"""CC_mask below this draws a warning: the model is probably not in this map (frame)."""
MOSTLY_OUTSIDE = 0.5
"""Fewer atoms than this fraction inside the map box draw a "mostly outside" warning."""
DUPLICATE_DISTANCE = 0.01
"""Atoms closer than this (Å), in the same or no altloc, count as duplicated records."""


@dataclass(frozen=True)
class ScoreReport:
    """Map–model scores (see `densrefine.scoring` for every definition).

    Attributes
    ----------
    cc_mask, cc_box, cc_volume, cc_peaks : float
        Pearson CCs over the molecular mask, the box, the model map's N highest voxels
        and the union of both maps' N highest voxels (N = mask voxels).
    rsr : float
        Real-space R over the molecular mask after mean removal and LSQ scaling.
    fsc : list of dict
        Unmasked map–model FSC curve: d (Å), d_min, d_max, fsc, n per shell.
    d_fsc05 : float or None
        d (Å) where the FSC first drops below 0.5 (None: never within the curve, e.g.
        it stays above 0.5 up to the model map's d_min, beyond which it is undefined).
    atom_radius : float
        Radius (Å) of the per-residue / main-chain / side-chain masks.
    cc_main_chain, cc_side_chain : float or None
        CC around main-chain atoms / all other atoms (None when there are none).
    residues : list of dict
        Per residue: chain, res_seq, icode, res_name, cc, cc_main, cc_side, n_atoms.
    n_atoms : int
        Atoms scored.
    resolution : float
        d_min of the model map, Å.
    table : str
        Scattering table of the model map ("electron" or "xray").
    method : str
        How the model map was made ("fourier": Fcalc truncated at d; "given").
    n_mask_voxels : int
        Voxels in the molecular mask.
    fraction_inside : float
        Fraction of the atoms inside the map box.
    warnings : list of str
        What makes these numbers doubtful (model mostly outside the box, CC_mask below
        0.2, resolution finer than the map's Nyquist limit, zero or negative occupancy
        or B, duplicated atoms); also issued as `DensrefineWarning`.
    """

    cc_mask: float
    cc_box: float
    cc_volume: float
    cc_peaks: float
    rsr: float
    fsc: list = field(default_factory=list)
    d_fsc05: float | None = None
    atom_radius: float = float("nan")
    cc_main_chain: float | None = None
    cc_side_chain: float | None = None
    residues: list = field(default_factory=list)
    n_atoms: int = 0
    resolution: float = float("nan")
    table: str = "electron"
    method: str = "fourier"
    n_mask_voxels: int = 0
    fraction_inside: float = 1.0
    warnings: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain-Python dict (JSON-ready after NaN → null, see `report.write_json_atomic`)."""
        return dataclasses.asdict(self)


def check_inputs(model: Model, emap: Grid, resolution: float) -> np.ndarray:
    """Validate a scoring request; return the boolean (N,) atoms-inside-box array.

    Raises
    ------
    InputError
        Empty model, resolution out of (0, 50] Å or larger than the box, a map with
        NaN/inf values, or no atom inside the map box (message gives the map origin
        and extent, the model centre, and points at ORIGIN vs NSTART conventions).
    """
    edges = np.array(box_cell(emap).parameters[:3])
    if not (np.isfinite(resolution) and 0 < resolution <= min(MAX_RESOLUTION, edges.max())):
        raise input_error(None, f"resolution {resolution:g} Å is out of range "
                          f"(0, {min(MAX_RESOLUTION, edges.max()):.4g}] Å",
                          "give the map's resolution in Å with -d/--resolution")
    if len(model) == 0:
        raise input_error(model.path, "the model has no atoms",
                          "give a model with ATOM/HETATM records")
    _check_atoms(model)
    bad = int(np.size(emap.values) - np.count_nonzero(np.isfinite(emap.values)))
    if bad:
        raise input_error(emap.path, f"the map has {bad} NaN or infinite values",
                          "replace them (e.g. by 0) before scoring")
    vals = np.asarray(emap.values)
    if vals.size and float(vals.max()) == float(vals.min()):
        raise input_error(emap.path, f"every map value is {float(vals.flat[0]):g}: a flat map "
                          "has no correlation with any model", "give the experimental map")
    inside = inside_box(model.atoms.xyz, emap)
    if not inside.any():
        org = ", ".join(f"{x:.2f}" for x in emap.origin)
        ext = ", ".join(f"{x:.2f}" for x in edges)
        cen = ", ".join(f"{x:.2f}" for x in model.atoms.xyz.mean(0))
        raise input_error(
            model.path, f"none of the {len(model)} atoms lies inside the map box "
            f"(map {emap.path or ''} origin ({org}) Å, extent ({ext}) Å; model centre "
            f"({cen}) Å); the map's ORIGIN vs NSTART convention may disagree with the model",
            "check the map frame with `densrefine info MAP` and fit or shift the model")
    if inside.mean() < MOSTLY_OUTSIDE:
        warnings.warn(f"{_who(model)}: the model lies mostly outside the map "
                      f"{emap.path or ''} (only {100 * inside.mean():.1f} % of its "
                      f"{len(model)} atoms are inside the box): scores cover only that part; "
                      "check the map frame with `densrefine info MAP`",
                      DensrefineWarning, stacklevel=3)
    elif not inside.all():
        warnings.warn(f"{100 * (1 - inside.mean()):.1f} % of the {len(model)} atoms lie "
                      f"outside the map box; they are scored as if the box were periodic "
                      "(model map, molecular mask) and add no voxels to per-residue CCs",
                      DensrefineWarning, stacklevel=3)
    return inside


def _check_atoms(model: Model) -> None:
    """Refuse a model whose map would be meaningless (undefined coordinates, B or
    occupancy; every occupancy zero or below)."""
    at = model.atoms
    for name, arr in (("coordinates", at.xyz), ("B-factors", at.b_iso),
                      ("occupancies", at.occ)):
        bad = ~np.isfinite(np.asarray(arr, float))
        if bad.any():
            n = int(bad.reshape(len(at), -1).any(1).sum())
            raise input_error(model.path, f"{n} of {len(at)} atoms have undefined (NaN or "
                              f"infinite) {name}", "fix or remove those atoms")
    occ = np.asarray(at.occ, float)
    if not (occ > 0).any():
        raise input_error(model.path, f"every atom has occupancy {occ.max():g} or less: the "
                          "model map would be empty and every score undefined",
                          "set the occupancies (e.g. to 1.0) in the model file")


def input_warnings(model: Model, emap: Grid, resolution: float) -> list:
    """Oddities that make scores of ``model`` in ``emap`` at ``resolution`` doubtful.

    Parameters
    ----------
    model : Model
    emap : Grid
    resolution : float
        d, Å.

    Returns
    -------
    list of str
        One message per problem: resolution finer than the map's Nyquist limit
        (2 × the largest voxel size), atoms with zero or negative occupancy, atoms
        with zero or negative B, duplicated atoms (closer than `DUPLICATE_DISTANCE` in
        the same or no altloc). Each names the file and what to do.
    """
    at, out = model.atoms, []
    nyq = 2.0 * float(np.max(emap.voxel_size))
    if resolution < nyq * (1 - 1e-6):
        out.append(f"resolution {resolution:g} Å is finer than the Nyquist limit {nyq:.3g} Å "
                   f"of {emap.path or 'the map'} (2 × voxel {nyq / 2:.3g} Å): the map holds no "
                   "signal beyond it; give the map's resolution (-d)")
    occ, b = np.asarray(at.occ, float), np.asarray(at.b_iso, float)
    for what, arr, fix in (("occupancy", occ, "they add nothing to the model map"),
                           ("B-factor", b, "the model map is undefined or sharpened there")):
        n0, neg = int((arr == 0).sum()), int((arr < 0).sum())
        if n0 or neg:
            parts = ([f"{n0} zero"] if n0 else []) + ([f"{neg} negative"] if neg else [])
            out.append(f"{_who(model)}: {' and '.join(parts)} {what} value(s) among "
                       f"{len(at)} atoms ({fix}); check the model file")
    dup = duplicate_atoms(at)
    if len(dup):
        i, j = dup[0]
        out.append(f"{_who(model)}: {len(dup)} atom(s) duplicate another atom's position "
                   f"(first: {_label(at, j)} on {_label(at, i)}); remove the duplicated "
                   "records")
    return out


def duplicate_atoms(atoms) -> np.ndarray:
    """Pairs (i, j), i < j, of atoms closer than `DUPLICATE_DISTANCE` in compatible altlocs.

    Parameters
    ----------
    atoms : Atoms

    Returns
    -------
    ndarray (M, 2) of int
    """
    from scipy.spatial import cKDTree

    xyz = np.asarray(atoms.xyz, float)
    if len(xyz) < 2:
        return np.zeros((0, 2), int)
    pairs = cKDTree(xyz).query_pairs(DUPLICATE_DISTANCE, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros((0, 2), int)
    alt = np.asarray(atoms.altloc).astype(str)
    a, b = alt[pairs[:, 0]], alt[pairs[:, 1]]
    pairs = np.sort(pairs[(a == b) | (a == "") | (b == "")], axis=1)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def _who(model) -> str:
    return str(model.path) if model.path else "the model"


def _label(at, i) -> str:
    return (f"{at.chain[i]}/{at.res_name[i]} {int(at.res_seq[i])}{str(at.icode[i]).strip()}/"
            f"{str(at.atom_name[i]).strip()}")


def check_resolution(resolution) -> None:
    """Refuse a resolution outside `MIN_RESOLUTION`–`MAX_RESOLUTION` Å (fit's range).

    Raises
    ------
    InputError
        Naming -d/--resolution, the value and the range.
    """
    try:
        d = float(resolution)
    except (TypeError, ValueError):
        d = float("nan")
    if not (np.isfinite(d) and MIN_RESOLUTION <= d <= MAX_RESOLUTION):
        raise input_error("-d/--resolution", f"{resolution} Å is outside "
                          f"{MIN_RESOLUTION}–{MAX_RESOLUTION} Å (the range of fit and simulate)",
                          "give the map's resolution d in Å, e.g. -d 3.2")


def _vox(emap) -> str:
    return "×".join(f"{v:.3g}" for v in np.asarray(emap.voxel_size, float))


def _model_map(model, emap, resolution, table, device, density) -> np.ndarray:
    from ..simulate import simulate

    sim = simulate(model, like=emap, resolution=resolution, table=table, method="fourier",
                   device=device, density=density)
    vals = np.asarray(getattr(sim, "values", sim))
    if vals.shape != emap.shape:
        raise RuntimeError(f"model map shape {vals.shape} != map shape {emap.shape}")
    return vals


def score(model: Model, emap: Grid, resolution: float, *, table: str = "electron",
          device="auto", per_residue: bool = True, fsc: bool = True, density: str = "iam",
          model_map=None, radius: float | None = None, periodic: bool = False) -> ScoreReport:
    """Score a model against a map the way phenix.map_model_cc (cctbx) does.

    Parameters
    ----------
    model : Model
        Atomic model in the map's frame (Å, Å²).
    emap : Grid
        Experimental map; its box is treated as a P1 cell of its own.
    resolution : float
        Map resolution d, Å: the model map is Fcalc with d > resolution.
    table : {"electron", "xray"}
        Scattering table of the model map.
    device : str or torch.device
        Device for the model-map simulation (scores themselves run in numpy).
    per_residue : bool
        Compute the per-residue CC list.
    fsc : bool
        Compute the map–model FSC curve and d at FSC = 0.5.
    density : str
        Density model of the simulation ("iam": independent atoms).
    model_map : Grid or ndarray, optional
        A precomputed model map on ``emap``'s grid (skips the simulation).
    radius : float, optional
        Atom radius (Å) for main/side-chain and per-residue CCs; default: cctbx's
        automatic radius (`masks.atom_radius`) from the mean B.
    periodic : bool
        Wrap the atom-radius masks around the box (cctbx does); default False.

    Returns
    -------
    ScoreReport

    Notes
    -----
    CC_mask is computed over the molecular (bulk-solvent style) mask, as in Afonine
    et al. (2018) and cctbx; the ARCHITECTURE's wording "voxels within an atom radius
    of the model" is what the main-chain, side-chain and per-residue CCs use. Given
    cctbx's own model map, every CC here equals cctbx's to < 1e-9 (with
    ``periodic=True``); see benchmarks/RESULTS_score_draft.md.
    """
    t0 = time.perf_counter()
    check_resolution(resolution)
    if resolution is not None and np.isfinite(resolution) and resolution > 0:
        emap = rebox_periodic(model, emap, float(resolution))  # a crystal map, model elsewhere
    inside = check_inputs(model, emap, resolution)
    notes = input_warnings(model, emap, float(resolution))
    atoms = model.atoms
    if model_map is None:
        log.debug("Scoring: model map by densrefine.simulate (fourier, %s table, d > %.3g Å)",
                  table, resolution)
        mmap, method = _model_map(model, emap, resolution, table, device, density), "fourier"
    else:
        mmap, method = np.asarray(getattr(model_map, "values", model_map)), "given"
        if mmap.shape != emap.shape:
            raise ValueError(f"model_map shape {mmap.shape} != map shape {emap.shape}")
    e = emap.values
    mask = molecular_mask(atoms.xyz, atoms.element, emap)
    n = int(mask.sum())
    if n < 2:
        raise input_error(emap.path, f"the molecular mask of the model holds {n} voxel(s) of "
                          f"{_vox(emap)} Å: CC_mask, CC_volume, CC_peaks and RSR are undefined",
                          "give a map sampled finer than the atoms' size (voxel ≤ d/2, "
                          "typically ≤ 1.5 Å)")
    log.info("Molecular mask (cctbx vdW radii, probe 1.1 Å, shrink 0.9 Å): %d of %d voxels",
             n, e.size)
    r = float(radius) if radius is not None else _atom_radius(resolution, float(atoms.b_iso.mean()))
    log.info("CC_mask/box/volume/peaks, RSR; atom radius %.2f Å (mean B %.1f Å²)", r,
             float(atoms.b_iso.mean()))
    local = residue_scores(atoms, emap, mmap, r, periodic=periodic, per_residue=per_residue)
    curve = fsc_curve(e, mmap, emap) if fsc else []
    if fsc:
        log.info("Map-model FSC: unmasked, %d shells of constant width in 1/d", len(curve))
    ccm = _cc.cc_mask(e, mmap, mask)
    if np.isfinite(ccm) and ccm < LOW_CC_MASK:
        notes.append(f"{_who(model)}: CC_mask {ccm:.3f} is below {LOW_CC_MASK}: the model "
                     f"does not match {emap.path or 'the map'} (wrong map, wrong frame or "
                     "origin, or a different hand); check with `densrefine info` and fit or "
                     "move the model")
    for msg in notes:
        warnings.warn(msg, DensrefineWarning, stacklevel=2)
    rep = ScoreReport(
        cc_mask=ccm, cc_box=_cc.cc_box(e, mmap),
        cc_volume=_cc.cc_volume(e, mmap, n), cc_peaks=_cc.cc_peaks(e, mmap, n),
        rsr=_cc.rsr(e, mmap, mask), fsc=curve, d_fsc05=d_at_fsc(curve) if fsc else None,
        atom_radius=r, cc_main_chain=local["cc_main_chain"],
        cc_side_chain=local["cc_side_chain"], residues=local["residues"],
        n_atoms=len(atoms), resolution=float(resolution), table=table, method=method,
        n_mask_voxels=n, fraction_inside=float(inside.mean()), warnings=notes)
    log.debug("scoring took %.2f s", time.perf_counter() - t0)
    return rep
