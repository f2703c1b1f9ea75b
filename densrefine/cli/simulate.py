"""Simulate a model map (electron or X-ray scattering) at a given resolution.

The map goes on the grid of an existing map (--like: same shape, voxel size, origin
and cell) or on a P1 box around the model (--spacing, optional --box NX NY NZ). Two
ways to reach the resolution d, both named in the log:

  --method blur     Gaussian blur B = 4 d² (ChimeraX molmap σ = 0.225 d) added to the
                    atomic B-factors, real space (default; what refinement uses)
  --method fourier  phenix-style: splat with a small numerical blur, FFT over the box as
                    a P1 cell, remove the blur, keep only terms with d > resolution

examples:
  densrefine simulate model.cif --like emd_3488.mrc -d 3.2 -o model_map.mrc
  densrefine simulate model.pdb --spacing 1.0 -d 3.0 --method fourier -o sim.mrc   # P1 box
  densrefine simulate model.pdb --box 96 96 96 --spacing 1.1 -d 4 --table xray -o sim.mrc
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger("densrefine")


def add_args(p) -> None:
    p.add_argument("model", help="atomic model (.pdb/.cif, optionally .gz)")
    g = p.add_argument_group("the flags most users need")
    g.add_argument("-d", "--resolution", type=float, required=True, help="resolution d in Å")
    g.add_argument("-o", "--output", required=True, metavar="OUT.mrc",
                   help="output map (.mrc/.map/.ccp4); the log goes to OUT without suffix + .log")
    g.add_argument("--like", metavar="MAP", help="copy the grid (shape, voxel, origin, cell) "
                                                 "of this map")
    g.add_argument("--box", type=int, nargs=3, metavar=("NX", "NY", "NZ"),
                   help="grid size in voxels, centred on the model (instead of --like)")
    g.add_argument("--spacing", type=float, metavar="S",
                   help="voxel size in Å without --like (default: resolution / 3)")
    g.add_argument("--method", choices=["blur", "fourier"], default="blur",
                   help="how the resolution is reached (default: %(default)s)")
    p.add_argument("--table", choices=["electron", "xray"], default="electron",
                   help="scattering factors (default: %(default)s)")
    p.add_argument("--density", choices=["iam", "ml", "ml-spdf"], default="iam",
                   help="density model: independent atoms, or IAM plus the learned "
                        "deformation density (default: %(default)s)")
    p.add_argument("--blur", type=float, metavar="B",
                   help="extra B in Å² (default: 4 d² for blur, gemmi's refmac-compatible "
                        "blur for fourier)")
    p.add_argument("--cutoff", type=float, default=1e-5,
                   help="density level bounding each atom's box (default: %(default)g)")
    p.add_argument("--margin", type=float, default=5.0,
                   help="Å around the model for the automatic box (default: %(default)g)")


def _log_path(output: str) -> str:
    base = output
    for suf in (".gz",):
        if base.lower().endswith(suf):
            base = base[: -len(suf)]
    return os.path.splitext(base)[0] + ".log"


def _check_args(args) -> None:
    from ..errors import input_error

    if args.like and (args.box or args.spacing):
        raise input_error("--like", "--like cannot be combined with --box/--spacing",
                          "use either --like MAP or --box/--spacing")
    if not (args.like or args.box or args.spacing):
        raise input_error("--like", "no output grid given",
                          "use --like MAP, or --spacing S (optionally with --box NX NY NZ)")
    if args.box and min(args.box) < 2:
        raise input_error("--box", f"{args.box} has a size below 2 voxels",
                          "give three sizes ≥ 2, e.g. --box 96 96 96")
    if args.spacing is not None and not args.spacing > 0:
        raise input_error("--spacing", f"{args.spacing} Å is not positive", "give e.g. 1.0")
    if args.margin < 0:
        raise input_error("--margin", f"{args.margin} Å is negative", "give e.g. 5")


def main(args) -> int:
    from ..io import read_map, read_model, write_map
    from ..device import resolve_device
    from ..io.atomic import check_output_path
    from ..simulate import simulate
    from ..simulate.api import check_params
    from ._common import log_device, start_file_log

    _check_args(args)
    check_params(args.resolution, args.table, args.method, args.blur, args.cutoff)
    out = check_output_path(args.output, (args.model, args.like))
    dev = resolve_device(args.device)
    start_file_log(_log_path(out))
    log_device(dev)
    model = read_model(args.model)
    like = read_map(args.like) if args.like else None
    sim = simulate(model, like, resolution=args.resolution, table=args.table,
                   method=args.method, blur=args.blur, cutoff=args.cutoff, density=args.density,
                   device=dev, box=args.box, spacing=args.spacing, margin=args.margin)
    write_map(sim, out, inputs=(args.model, args.like))
    v = sim.values
    log.info("Wrote %s: grid %d×%d×%d, min %.4g, max %.4g, mean %.4g", out, *sim.shape_xyz,
             float(v.min()), float(v.max()), float(v.mean()))
    return 0
