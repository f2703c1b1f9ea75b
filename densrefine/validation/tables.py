"""MolProbity's Top8000 reference distributions, in compact form: what they are, and how
the shipped files were made.

Source: the ``Top8000`` folder of the Richardson lab's ``reference_data`` repository
(github.com/rlabduke/reference_data, licence CC-BY 4.0, which permits redistribution
with attribution; the files here are derived, not copied verbatim):

* **Ramachandran** (``top8000_rama.npz``): the six percentile-contour grids that
  MolProbity's ramalyze uses (Williams et al. 2018, Protein Sci 27, 293; classes of
  Read et al. 2011, Structure 19, 1395): general (no Gly/Pro/Ile/Val/pre-Pro), Gly,
  trans-Pro, cis-Pro, pre-Pro (no Gly/Pro), Ile/Val (no pre-Pro). Each grid has
  180 × 180 bins of 2° centred at −179, −177, … 179° (φ first); the value is the
  fraction of Top8000 residues outside the contour through that point. Stored as uint8
  q = round(40 (log10 v + 6)) (0 = below 10⁻⁶): a relative error of ≤ 3 % in v, which moves
  the 2 % / 0.05 % contour lines by much less than a bin. 58 kB.
* **Rotamers** (``top8000_rotamers.json``): per residue type and rotamer, the χ means and
  standard deviations and the frequency of the Top8000 rotamer library (Hintze et al.
  2016, Proteins 84, 1177, "MolProbity's ultimate rotamer-library distributions for
  model validation"; ``Top8000_rotamer_central_values``). The full 4-D contour grids are
  not shipped (megabytes, and the Arg/Lys grids were not available here).

Rebuild with ``python -m densrefine.validation.tables TOP8000_DIR`` (a checkout's
``Top8000`` folder); it rewrites both files next to this module.
"""
from __future__ import annotations

import csv
import functools
import json
import os
import sys
from importlib import resources

import numpy as np

RAMA_FILE = "top8000_rama.npz"
ROTA_FILE = "top8000_rotamers.json"
RAMA_CLASSES = ("general", "gly", "transpro", "cispro", "prepro", "ileval")
"""MolProbity's six Ramachandran classes, in the order of `RAMA_GRIDS`."""
RAMA_GRIDS = ("general-noGPIVpreP", "gly-sym", "transpro", "cispro", "prepro-noGP",
              "ileval-nopreP")
"""``rama8000-<name>.data`` file of each class."""
_Q_SCALE, _Q_OFFSET = 40.0, 6.0


def _encode(v: np.ndarray) -> np.ndarray:
    q = np.round(_Q_SCALE * (np.log10(np.maximum(v, 1e-12)) + _Q_OFFSET))
    return np.clip(q, 0, 255).astype(np.uint8)


def _decode(q: np.ndarray) -> np.ndarray:
    return np.where(q == 0, 0.0, 10.0 ** (q / _Q_SCALE - _Q_OFFSET))


def _read_grid(path) -> np.ndarray:
    a = np.loadtxt(path, comments="#")
    v = np.zeros((180, 180))
    i = np.round((a[:, 0] + 179.0) / 2.0).astype(int)
    j = np.round((a[:, 1] + 179.0) / 2.0).astype(int)
    v[i, j] = a[:, 2]
    return v


def build_tables(top8000, out=None) -> list[str]:
    """Write `RAMA_FILE` and `ROTA_FILE` from a ``Top8000`` folder; returns the paths.

    Parameters
    ----------
    top8000 : str
        The ``Top8000`` folder of rlabduke/reference_data.
    out : str, optional
        Output folder (default: next to this module).
    """
    out = out or os.path.dirname(os.path.abspath(__file__))
    grids = {c: _encode(_read_grid(os.path.join(
        top8000, "Top8000_ramachandran_pct_contour_grids", f"rama8000-{g}.data")))
        for c, g in zip(RAMA_CLASSES, RAMA_GRIDS)}
    rama = os.path.join(out, RAMA_FILE)
    np.savez_compressed(rama, **grids)
    lib = {}
    folder = os.path.join(top8000, "Top8000_rotamer_central_values")
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".csv"):
            continue
        with open(os.path.join(folder, name), newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                chis = [k for k in ("chi1", "chi2", "chi3", "chi4") if f"{k}_mean" in row]
                lib.setdefault(row["res_type"], []).append({
                    "name": row["rotamer"], "n": int(row["n"]),
                    "freq": float(row["frequency%"]),
                    "mean": [float(row[f"{k}_mean"]) for k in chis],
                    "sd": [float(row[f"{k}_esd"]) for k in chis]})
    rota = os.path.join(out, ROTA_FILE)
    rows = ",\n".join(f'  "{k}": [\n' + ",\n".join("    " + json.dumps(r) for r in v) + "]"
                       for k, v in lib.items())
    with open(rota, "w", encoding="utf-8") as f:
        f.write('{"source": "rlabduke/reference_data Top8000_rotamer_central_values '
                '(CC-BY 4.0); Hintze et al. 2016, Proteins 84, 1177",\n "residues": {\n'
                + rows + "}}\n")
    return [rama, rota]


@functools.lru_cache(maxsize=1)
def rama_grids() -> dict:
    """{class: (180, 180) float64 percentile values}, φ bins first (see the module docstring)."""
    with resources.files("densrefine.validation").joinpath(RAMA_FILE).open("rb") as f:
        z = np.load(f)
        return {c: _decode(z[c]) for c in RAMA_CLASSES}


@functools.lru_cache(maxsize=1)
def rotamer_library() -> dict:
    """{residue name: list of {"name", "n", "freq" (%), "mean" (°), "sd" (°)}} (Top8000)."""
    text = resources.files("densrefine.validation").joinpath(ROTA_FILE).read_text()
    return json.loads(text)["residues"]


if __name__ == "__main__":  # pragma: no cover - maintenance tool
    for p in build_tables(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None):
        sys.stderr.write(f"wrote {p}\n")
