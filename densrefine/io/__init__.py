"""File input/output: files ↔ core types (`Model`, `Grid`).

* `model`: PDB / mmCIF (optionally gzipped) via gemmi — `read_model`, `write_model`,
  `model_summary`. Writing goes through the gemmi handle so nothing that is not
  refined is lost.
* `mrc`: MRC / CCP4 maps via mrcfile — `read_map`, `write_map`, `map_summary`. It is
  the only place where header words (MAPC/MAPR/MAPS, NSTART, MX.., ORIGIN) become a
  frame; see its module docstring for the rules.
* `reflections`: merged X-ray data (MTZ / mmCIF structure factors) via gemmi —
  `read_reflections` (column choice, French–Wilson, free-R flags), `read_map_coefficients`,
  `check_model_compatible`.
* `atomic`: atomic writes and the refusal to overwrite inputs.

gemmi and mrcfile are imported only when a file is read or written.
"""
from __future__ import annotations

from .model import model_summary, read_model, write_model
from .mrc import is_map_path, looks_like_map, map_summary, read_map, write_map
from .reflections import (Reflections, check_model_compatible, read_map_coefficients,
                          read_reflections)

__all__ = ["read_model", "write_model", "model_summary",
           "read_map", "write_map", "map_summary", "is_map_path", "looks_like_map",
           "Reflections", "read_reflections", "read_map_coefficients", "check_model_compatible"]
