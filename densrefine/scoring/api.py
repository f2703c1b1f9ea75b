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
"""Largest resolution (Å) accepted by `score`."""


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
    bad = int(np.size(emap.values) - np.count_nonzero(np.isfinite(emap.values)))
    if bad:
        raise input_error(emap.path, f"the map has {bad} NaN or infinite values",
                          "replace them (e.g. by 0) before scoring")
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
    if not inside.all():
        warnings.warn(f"{100 * (1 - inside.mean()):.1f} % of the {len(model)} atoms lie "
                      f"outside the map box; they are scored as if the box were periodic "
                      "(model map, molecular mask) and add no voxels to per-residue CCs",
                      DensrefineWarning, stacklevel=3)
    return inside


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
    if resolution is not None and np.isfinite(resolution) and resolution > 0:
        emap = rebox_periodic(model, emap, float(resolution))  # a crystal map, model elsewhere
    inside = check_inputs(model, emap, resolution)
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
    log.info("Molecular mask (cctbx vdW radii, probe 1.1 Å, shrink 0.9 Å): %d of %d voxels",
             n, e.size)
    r = float(radius) if radius is not None else _atom_radius(resolution, float(atoms.b_iso.mean()))
    log.info("CC_mask/box/volume/peaks, RSR; atom radius %.2f Å (mean B %.1f Å²)", r,
             float(atoms.b_iso.mean()))
    local = residue_scores(atoms, emap, mmap, r, periodic=periodic, per_residue=per_residue)
    curve = fsc_curve(e, mmap, emap) if fsc else []
    if fsc:
        log.info("Map-model FSC: unmasked, %d shells of constant width in 1/d", len(curve))
    rep = ScoreReport(
        cc_mask=_cc.cc_mask(e, mmap, mask), cc_box=_cc.cc_box(e, mmap),
        cc_volume=_cc.cc_volume(e, mmap, n), cc_peaks=_cc.cc_peaks(e, mmap, n),
        rsr=_cc.rsr(e, mmap, mask), fsc=curve, d_fsc05=d_at_fsc(curve) if fsc else None,
        atom_radius=r, cc_main_chain=local["cc_main_chain"],
        cc_side_chain=local["cc_side_chain"], residues=local["residues"],
        n_atoms=len(atoms), resolution=float(resolution), table=table, method=method,
        n_mask_voxels=n, fraction_inside=float(inside.mean()))
    log.debug("scoring took %.2f s", time.perf_counter() - t0)
    return rep
