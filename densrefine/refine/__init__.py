"""Restrained real-space refinement of atomic models against maps (``densrefine fit``).

Target = w · data term + geometry energy, minimised by L-BFGS with autograd gradients:

* `data`: the data-term interface and what ``fit`` can refine against — one map
  (`mapterm.MapTerm`: −CC over an atom-radius mask, or LSQ with fitted scale, between
  the map cut to a box around the refined atoms and a Gaussian-blurred model map,
  `densrefine.simulate.simulate_tensor`; blur from coarse to fine over macro cycles),
  two half maps (`data.HalfMapTerm`: work and free), X-ray data (`xray.XrayTerm`:
  real space against 2mFo−DFc with R-work/R-free per cycle);
* `engine`: `fit`, the run context and the process-wide settings; `stages`: the stages;
* `geometry`: the restraints of `densrefine.restraints` (monomer library) plus the
  B-factor similarity restraint;
* stages (`config.FitConfig.stages`, `stages`): rigid body (whole model, then per chain),
  rigid secondary-structure elements (`sse`), χ1 rotamer scan (`rotamer`), all-atom
  coordinates (optionally with reference-model restraints), per-atom B-factors;
* `select`: the ``--select`` syntax (``A``, ``A/10-40``, comma-separated);
* `output`: the stats JSON layout (the HTML report is `densrefine.report.html`).

Examples
--------
>>> import densrefine as dr                                         # doctest: +SKIP
>>> res = dr.fit(dr.read_model("m.pdb"), dr.read_map("m.mrc"), 3.0)  # doctest: +SKIP
>>> res.stats["after"]["cc_mask"], res.model                        # doctest: +SKIP
"""
from .._lazy import lazy_attributes

# Imported on first use (PEP 562): the CLI reads and checks --config (`config`, torch-free)
# and refuses bad input before the engine (torch) is imported.
_LAZY = {"FitConfig": ".config", "MapConfig": ".config", "WeightConfig": ".config",
         "dump_config": ".config", "load_config": ".config", "DataSpec": ".data",
         "HalfMapTerm": ".data", "make_term": ".data", "read_data": ".data",
         "RefineResult": ".engine", "Run": ".engine", "fit": ".engine",
         "process_settings": ".engine", "scaled_aniso": ".engine", "MapTerm": ".mapterm",
         "parse_selection": ".select",
         "select_atoms": ".select", "XrayTerm": ".xray"}

__all__ = ["DataSpec", "FitConfig", "HalfMapTerm", "MapConfig", "MapTerm", "RefineResult", "Run",
           "WeightConfig", "XrayTerm", "dump_config", "fit", "load_config", "make_term",
           "parse_selection", "process_settings", "read_data", "scaled_aniso",
           "select_atoms"]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
