"""Restrained real-space refinement of atomic models against maps (``densrefine fit``).

Target = w · map term + geometry energy, minimised by L-BFGS with autograd gradients:

* `mapterm`: −CC over an atom-radius mask (or LSQ with fitted scale) between the map,
  cut to a box around the refined atoms, and a Gaussian-blurred model map
  (`densrefine.simulate.simulate_tensor`); blur from coarse to fine over macro cycles;
* `geometry`: the restraints of `densrefine.restraints` (monomer library) plus the
  B-factor similarity restraint;
* stages (`config.FitConfig.stages`): rigid body (whole model, then per chain),
  rigid secondary-structure elements (`sse`), χ1 rotamer scan (`rotamer`), all-atom
  coordinates (optionally with reference-model restraints), per-atom B-factors;
* `select`: the ``--select`` syntax (``A``, ``A/10-40``, comma-separated);
* `output`: the stats JSON layout and the HTML report.

Examples
--------
>>> import densrefine as dr                                         # doctest: +SKIP
>>> res = dr.fit(dr.read_model("m.pdb"), dr.read_map("m.mrc"), 3.0)  # doctest: +SKIP
>>> res.stats["after"]["cc_mask"], res.model                        # doctest: +SKIP
"""
from .config import FitConfig, MapConfig, WeightConfig, dump_config, load_config
from .engine import RefineResult, fit
from .select import parse_selection, select_atoms

__all__ = ["FitConfig", "MapConfig", "RefineResult", "WeightConfig", "dump_config", "fit",
           "load_config", "parse_selection", "select_atoms"]
