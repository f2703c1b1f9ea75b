"""Model validation users can compare with MolProbity and MapQ.

`validate` runs, on one model (and optionally its map):

* Ramachandran favoured / allowed / outliers with MolProbity's Top8000 contours and six
  residue classes (`densrefine.validation.ramachandran`);
* rotamer outliers against the Top8000 rotamer library (`densrefine.validation.rotamers`);
* the all-atom clashscore with riding hydrogens placed (`densrefine.validation.clashes`);
* per-residue and overall Q-score when a map is given (`densrefine.validation.qscore`).

Reference distributions (`densrefine.validation.tables`): Williams et al. 2018 (Protein
Sci 27, 293), Hintze et al. 2016 (Proteins 84, 1177), Read et al. 2011 (Structure 19,
1395), Word et al. 1999 (J Mol Biol 285, 1735), Pintilie et al. 2020 (Nat Methods 17,
328). The agreement with cctbx's ramalyze/rotalyze and with jqscore is in
docs/validation.md. CaBLAM is not implemented (its Top8000 tables were not available).
"""
from .core import ValidationReport, validate

__all__ = ["ValidationReport", "validate"]
