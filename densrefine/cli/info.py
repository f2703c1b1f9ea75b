"""Show what densrefine reads from a map or model file.

For a map (.mrc, .map, .ccp4, .mrcs, optionally .gz, or any file carrying the MRC
'MAP ' word): grid, voxel size, origin (the log line on stderr says which header
words it came from), axis order, start, cell, value statistics. For a model
(PDB/mmCIF, optionally .gz): chains, residues, atoms, hydrogens, waters, ligands,
B range, occupancy, altlocs, cell and space group.

Examples:
  densrefine info emd_3488.mrc
  densrefine info 5ni1.cif.gz --json
"""
from __future__ import annotations

import json
import logging
import sys

log = logging.getLogger("densrefine")


def add_args(p) -> None:
    p.add_argument("file", metavar="FILE", help="map (.mrc/.map/.ccp4) or model (.pdb/.cif)")
    p.add_argument("--json", action="store_true", help="print the facts as one JSON object")


def main(args) -> int:
    from ..io import looks_like_map, map_summary, model_summary, read_map, read_model

    if looks_like_map(args.file):
        info = {"kind": "map", **map_summary(read_map(args.file))}
        text = format_map(info)
    else:
        info = {"kind": "model", **model_summary(read_model(args.file))}
        text = format_model(info)
    sys.stdout.write(json.dumps(info) + "\n" if args.json else text)
    return 0


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
