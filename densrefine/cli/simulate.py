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

import numpy as np

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

    if args.like and (args.box or args.spacing is not None):
        raise input_error("--like", "--like cannot be combined with --box/--spacing",
                          "use either --like MAP or --box/--spacing")
    if args.spacing is not None and not args.spacing > 0:
        raise input_error("--spacing", f"{args.spacing} Å is not positive", "give e.g. 1.0")
    if not (args.like or args.box or args.spacing is not None):
        raise input_error("--like", "no output grid given",
                          "use --like MAP, or --spacing S (optionally with --box NX NY NZ)")
    if args.box and min(args.box) < 2:
        raise input_error("--box", f"{args.box} has a size below 2 voxels",
                          "give three sizes ≥ 2, e.g. --box 96 96 96")
    if not args.margin >= 0:
        raise input_error("--margin", f"{args.margin} Å is negative", "give e.g. 5")
    if args.box:
        _check_size(args.box, "--box", args.method)


def _check_size(shape, what, method) -> None:
    from ..io.limits import check_grid_size

    check_grid_size(shape, what, "give a smaller --box or a coarser --spacing",
                    copies=3.0 if method == "fourier" else 2.0)


def outputs(args) -> dict:
    """Every file ``densrefine simulate`` writes, by role (checked before anything runs)."""
    return {"map": args.output, "log": _log_path(args.output)}


def main(args) -> int:
    from ..device import resolve_device
    from ..errors import input_error
    from ..io import read_map, read_model, write_map
    from ..io.mrc import is_map_path
    from ..simulate.params import check_params     # torch-free: refusals import no torch
    from . import _common

    _check_args(args)
    check_params(args.resolution, args.table, args.method, args.blur, args.cutoff)
    if not is_map_path(args.output):
        raise input_error(args.output, "unknown map suffix", "name the output .mrc or .map")
    out = _common.plan_outputs(outputs(args), [args.model, args.like])
    model = read_model(args.model)  # inputs before the device: refusals need no torch
    like = read_map(args.like) if args.like else None
    if like is None and not args.box:
        spacing = args.spacing if args.spacing is not None else args.resolution / 3.0
        xyz = model.atoms.xyz
        ext = xyz.max(0) - xyz.min(0) + 2 * args.margin
        _check_size(np.ceil(ext / spacing) + 1, "--spacing", args.method)
        spacing_used = spacing
    else:
        spacing_used = (float(max(like.voxel_size)) if like is not None
                        else args.spacing if args.spacing is not None else args.resolution / 3)
    if args.resolution < 2 * spacing_used * (1 - 1e-6):
        log.warning("-d %g Å is finer than the grid's Nyquist limit %.3g Å (2 × voxel %.3g "
                    "Å): detail beyond it cannot be represented; use a finer --spacing",
                    args.resolution, 2 * spacing_used, spacing_used)
    dev = resolve_device(args.device)
    _common.log_device(dev)
    from ..simulate import simulate

    sim = simulate(model, like, resolution=args.resolution, table=args.table,
                   method=args.method, blur=args.blur, cutoff=args.cutoff, density=args.density,
                   device=dev, box=args.box, spacing=args.spacing, margin=args.margin)
    _common.commit(out["log"])
    write_map(sim, out["map"], inputs=(args.model, args.like))
    v = sim.values
    log.info("Wrote %s: grid %d×%d×%d, min %.4g, max %.4g, mean %.4g", out["map"],
             *sim.shape_xyz, float(v.min()), float(v.max()), float(v.mean()))
    return 0
