"""Map–model scores: CC_mask, CC_box, CC_volume, CC_peaks, real-space R, FSC, local CCs.

Definitions and defaults follow Afonine et al. (2018), Acta Cryst. D74, 814–840, and
agree with cctbx ``mmtbx.maps.map_model_cc`` (the library behind phenix.map_model_cc):

* `masks`: the molecular mask of CC_mask (bulk-solvent style, cctbx vdW radii, probe
  1.1 Å, shrink 0.9 Å), voxels within a radius of atom sites, cctbx's automatic atom
  radius;
* `cc`: the four CCs, real-space R and a differentiable `cc_torch` for refinement;
* `fsc`: unmasked map–model FSC and the d where it drops below 0.5;
* `residues`: main-chain, side-chain and per-residue CCs;
* `resolution`: d_model, the resolution estimate used when none is given;
* `api`: `score(model, emap, resolution) -> ScoreReport`.

The map box is treated as a P1 unit cell of its own, as cctbx does after shifting the
map's origin to 0: the model map (Fcalc truncated at d, from `densrefine.simulate`) and
the molecular mask are periodic across the box faces.
"""
from .api import ScoreReport, check_inputs, score
from .cc import cc_box, cc_mask, cc_peaks, cc_torch, cc_volume, pearson, rsr
from .fsc import d_at_fsc, fsc_curve
from .masks import atom_radius, image_radius, molecular_mask, sites_mask, site_voxels
from .resolution import (LocalResolution, ResolutionEstimate, estimate_resolution,
                         local_resolution)

__all__ = [
    "ScoreReport", "score", "check_inputs",
    "cc_box", "cc_mask", "cc_peaks", "cc_torch", "cc_volume", "pearson", "rsr",
    "fsc_curve", "d_at_fsc",
    "atom_radius", "image_radius", "molecular_mask", "sites_mask", "site_voxels",
    "LocalResolution", "ResolutionEstimate", "estimate_resolution", "local_resolution",
]
