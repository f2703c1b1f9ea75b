"""Show what densrefine reads from a map or model file.

For a map (.mrc, .map, .ccp4, .mrcs, optionally .gz, or any file carrying the MRC
'MAP ' word): grid, voxel size, origin (the log line on stderr says which header
words it came from), axis order, start, cell, value statistics. For a model
(PDB/mmCIF, optionally .gz): chains, residues, atoms, hydrogens, waters, ligands,
B range, occupancy, altlocs, cell and space group. For reflections (MTZ, mmCIF
structure factors): cell, space group, columns, resolution range, number of
reflections, the observations densrefine would use and the free-R flags.

Examples:
  densrefine info emd_3488.mrc
  densrefine info 5ni1.cif.gz --json
  densrefine info 3io0-sf.mtz
"""
from __future__ import annotations

import json
import logging
import sys

log = logging.getLogger("densrefine")


def add_args(p) -> None:
    p.add_argument("file", metavar="FILE", help="map (.mrc/.map/.ccp4), model (.pdb/.cif) or "
                   "reflections (.mtz, r*sf.ent)")
    p.add_argument("--json", action="store_true", help="print the facts as one JSON object")


def main(args) -> int:
    from ..errors import check_readable
    from ..io import looks_like_map, map_summary, model_summary, read_map, read_model
    from ..io.reflections import reflections_summary
    from . import _common

    path = check_readable(args.file, "a map, model or reflection file",
                          "give an .mrc/.map, .pdb/.cif or .mtz file")
    if looks_like_map(path):
        info = {"kind": "map", **map_summary(read_map(path))}
        text = format_map(info)
    elif _common._looks_like_reflections(path):
        info = {"kind": "reflections", **reflections_summary(path)}
        text = format_reflections(info)
    else:
        info = {"kind": "model", **model_summary(read_model(path))}
        text = format_model(info)
    _common.commit()
    sys.stdout.write(json.dumps(info) + "\n" if args.json else text)
    return 0


def format_reflections(s: dict) -> str:
    """Readable table of a `densrefine.io.reflections.reflections_summary` dict."""
    cols = "  ".join(f"{k}({v})" for k, v in s["columns"].items()
                     if k not in ("H", "K", "L", "index_h", "index_k", "index_l"))
    obs = s.get("observations")
    ff = s.get("free_flags") or {}
    if obs is None:
        obs_txt = f"none usable ({s.get('observations_problem', '?')})"
    else:
        obs_txt = f"{', '.join(obs.values())}  ({s['n_obs']} reflections after cleaning)"
    if not ff:
        free = "n/a"
    elif ff.get("problem"):
        free = f"unusable ({ff['problem']})"
    else:
        free = (f"{ff.get('column')}: {ff.get('convention')}; {ff.get('n_free')} test, "
                f"{ff.get('n_work')} work")
    res = ("n/a" if s["d_min"] is None else f"{s['d_max']:.2f} – {s['d_min']:.2f} Å")
    return "".join([
        f"reflections {s['path']} ({s['file_type']})\n",
        _row("cell", _nums(s["cell"], "{:.3f}")),
        _row("space group", s["space_group"]),
        _row("reflections", s["n_reflections"]),
        _row("resolution", res),
        _row("columns", cols),
        _row("observations", obs_txt),
        _row("free-R flags", free),
    ])


def _row(name, value) -> str:
    return f"  {name:<16} {value}\n"


def _nums(xs, fmt="{:.4f}") -> str:
    return "  ".join(fmt.format(x) for x in xs)


def format_map(s: dict) -> str:
    """Readable table of a `densrefine.io.mrc.map_summary` dict."""
    order = "".join("xyz"[a - 1] for a in s["axis_order"])
    return "".join([
        f"map {s['path']}\n",
        _row("grid (x y z)", _nums(s["shape_xyz"], "{:d}")),
        _row("voxel size", _nums(s["voxel_size"]) + " Å"),
        _row("origin", _nums(s["origin"], "{:.3f}") + " Å  (position of the first voxel)"),
        _row("extent", _nums(s["extent"], "{:.2f}") + " Å"),
        _row("axis order", f"{_nums(s['axis_order'], '{:d}')}  (columns, rows, sections "
                           f"along {order[0]}, {order[1]}, {order[2]})"),
        _row("start (x y z)", _nums(s["start"], "{:d}")),
        _row("cell sampling", _nums(s["full_shape"], "{:d}")),
        _row("cell", _nums(s["cell"], "{:.3f}")),
        _row("space group", s["space_group"]),
        _row("min / max", f"{s['min']:.5g} / {s['max']:.5g}"),
        _row("mean / rms", f"{s['mean']:.5g} / {s['rms']:.5g}"),
    ])


def format_model(s: dict) -> str:
    """Readable table of a `densrefine.io.model.model_summary` dict."""
    ligands = ", ".join(f"{k} ×{v}" for k, v in s["ligands"].items()) or "none"
    altlocs = (f"{s['altloc_atoms']} atoms ({', '.join(s['altlocs'])})"
               if s["altloc_atoms"] else "none")
    return "".join([
        f"model {s['path']}\n",
        _row("chains", f"{len(s['chains'])}  ({' '.join(s['chains'])})"),
        _row("residues", s["residues"]),
        _row("atoms", s["atoms"]),
        _row("hydrogens", s["hydrogens"]),
        _row("waters", s["waters"]),
        _row("ligands", ligands),
        _row("B range", f"{s['b_min']:.2f} – {s['b_max']:.2f} Å² (mean {s['b_mean']:.2f})"),
        _row("occupancy < 1", f"{s['partial_occupancy']} atoms"),
        _row("altlocs", altlocs),
        _row("anisotropic", f"{s['anisotropic']} atoms"),
        _row("cell", "none" if s["cell"] is None else _nums(s["cell"], "{:.3f}")),
        _row("space group", s["space_group"]),
    ])
