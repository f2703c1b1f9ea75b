"""Validate a model: Ramachandran, rotamers, clashscore with H placed, and Q-score with a map.

Ramachandran and rotamer outliers use MolProbity's Top8000 reference data, the clashscore
is MolProbity's definition (overlaps ≥ 0.4 Å per 1000 atoms, riding hydrogens added), the
Q-score is Pintilie et al. 2020's (docs/validation.md lists the agreement with cctbx and
jqscore).

examples:
  densrefine validate model.cif
  densrefine validate model.cif map.mrc -d 3.2 --json model_validation.json
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger("densrefine")


def add_args(p):
    p.add_argument("model", help="atomic model (.pdb/.cif, optionally .gz)")
    p.add_argument("map", nargs="?", help="map (.mrc/.map/.ccp4) for the Q-score (optional)")
    g = p.add_argument_group("the flags most users need")
    g.add_argument("-d", "--resolution", type=float,
                   help="map resolution in Å (recorded with the Q-score)")
    g.add_argument("--json", metavar="FILE",
                   help="write all numbers (per-residue lists included) to FILE; the log "
                        "goes to FILE's stem + .log")
    p.add_argument("--monlib", metavar="DIR", help="CCP4 monomer library for the hydrogens")
    p.add_argument("--qscore-sigma", type=float, default=0.6,
                   help="Å, width of the Q-score reference Gaussian (default: %(default)s)")


def main(args):
    from ..io import read_map, read_model
    from ..io.atomic import check_output_path
    from ..report import write_json_atomic
    from ..validation import validate
    from . import _common

    if args.json:
        check_output_path(args.json, inputs=[x for x in (args.model, args.map) if x])
        _common.start_file_log(os.path.splitext(args.json)[0] + ".log")
    model = read_model(args.model)
    emap = read_map(args.map) if args.map else None
    rep = validate(model, emap, args.resolution, monlib=args.monlib,
                   qscore_sigma=args.qscore_sigma)
    print(f"model {args.model}" + (f", map {args.map}" if args.map else ""))
    print(rep.table())
    if args.json:
        out = {"model": os.path.abspath(args.model),
               "map": os.path.abspath(args.map) if args.map else None, **rep.to_dict()}
        write_json_atomic(args.json, out)
        log.info("Wrote %s", args.json)
    return 0
