"""Score a model against a cryo-EM map: CC_mask, CC_box, CC_volume, CC_peaks, RSR, FSC.

Scores as phenix.map_model_cc (cctbx mmtbx.maps.map_model_cc) defines them
(Afonine et al. 2018, Acta Cryst. D74, 814): the model map is Fcalc truncated at the
given resolution on the map's grid (the box as a P1 cell), CC_mask uses the molecular
(bulk-solvent style) mask, per-residue CCs use voxels within the automatic atom
radius. Also: real-space R over the mask, unmasked map-model FSC and the d where it
drops below 0.5, main-chain / side-chain CC, the worst residues.

examples:
  densrefine score model.cif map.mrc -d 3.2
  densrefine score model.cif map.mrc -d 3.2 --json model_score.json   # + model_score.log
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger("densrefine")


def add_args(p):
    p.add_argument("model", help="atomic model (.pdb/.cif, optionally .gz)")
    p.add_argument("map", help="map (.mrc/.map/.ccp4) in the model's frame")
    g = p.add_argument_group("the flags most users need")
    g.add_argument("-d", "--resolution", type=float,
                   help="map resolution in Å, 0.5–50 (the model map keeps d > this; default: "
                        "estimated from the map and model as d_model, said in the output)")
    g.add_argument("--json", metavar="FILE",
                   help="write all scores (incl. FSC curve, per-residue CC, warnings) to FILE; "
                        "the log goes to FILE's stem + .log")
    p.add_argument("--table", choices=["electron", "xray"], default="electron",
                   help="scattering table of the model map (default: %(default)s)")
    p.add_argument("--density", choices=["iam", "ml", "ml-solvent", "ml-spdf"], default="iam",
                   help="density model of the model map: independent atoms, or IAM plus the "
                        "learned deformation density (default: %(default)s)")
    p.add_argument("--no-residues", action="store_true",
                   help="skip the per-residue CC list (main/side-chain CC are kept)")
    p.add_argument("--worst-with-waters", action="store_true",
                   help="let waters and single-atom ions into the printed worst-residue list "
                        "(default: polymer residues and ligands only)")


def outputs(args) -> dict:
    """Every file ``densrefine score`` writes, by role (checked before anything runs)."""
    if not args.json:
        return {}
    return {"json": args.json, "log": os.path.splitext(args.json)[0] + ".log"}


def main(args):
    from ..io import read_map, read_model
    from ..device import resolve_device
    from ..report import write_json_atomic
    from ..scoring import score
    from ..scoring.api import check_resolution
    from . import _common

    _common.check_order(args.model, args.map, "map", "densrefine score MODEL MAP -d D")
    out = _common.plan_outputs(outputs(args), [args.model, args.map])
    if args.resolution is not None:
        check_resolution(args.resolution)
    model = read_model(args.model)  # inputs before the device: refusals need no torch
    emap = read_map(args.map)
    device = resolve_device(args.device)
    _common.log_device(device)
    d, estimate, said = args.resolution, None, None
    if d is None:
        from ..scoring import check_inputs, estimate_resolution

        check_inputs(model, emap, 2.0 * float(max(emap.voxel_size)))
        estimate = estimate_resolution(model, emap, table=args.table, device=device)
        d = estimate.d_model
        said = (f"resolution not given: estimated d_model = {d:.3g} Å (masked model-map CC "
                f"{estimate.cc_max:.3f}); pass -d to override")
    rep = score(model, emap, d, table=args.table, device=device,
                per_residue=not args.no_residues, density=args.density)
    _common.commit(out.get("log"))
    if said:
        print(said)
    seen = _common.warnings_seen()
    print(format_report(rep, model=args.model, emap=args.map, warnings=seen,
                        with_waters=args.worst_with_waters))
    if args.json:
        doc = {"model": os.path.abspath(args.model), "map": os.path.abspath(args.map),
               **rep.to_dict(), "warnings": seen}
        if estimate is not None:
            doc["resolution_estimate"] = estimate.to_dict()
        write_json_atomic(out["json"], doc)
        log.info("Wrote %s", out["json"])
    return 0


def _f(x, fmt="{:.4f}") -> str:
    return "n/a" if x is None or x != x else fmt.format(x)


def format_report(rep, model="", emap="", n_worst: int = 10, warnings=None,
                  with_waters: bool = False) -> str:
    """Readable summary of a `ScoreReport` (what ``densrefine score`` prints).

    The worst-residue list leaves out waters and single-atom ions unless
    ``with_waters`` (`densrefine.report.stats.worst_residues`); ``warnings`` (default:
    the report's own) end the summary.
    """
    from ..report.stats import worst_residues

    lines = [f"model {model}  map {emap}",
             f"resolution {rep.resolution:g} Å, {rep.table} table, model map: {rep.method}, "
             f"{rep.n_atoms} atoms ({100 * rep.fraction_inside:.1f} % inside the box)", "",
             f"  CC_mask    {_f(rep.cc_mask)}   (molecular mask, {rep.n_mask_voxels} voxels)",
             f"  CC_box     {_f(rep.cc_box)}",
             f"  CC_volume  {_f(rep.cc_volume)}",
             f"  CC_peaks   {_f(rep.cc_peaks)}",
             f"  CC main chain {_f(rep.cc_main_chain)}, side chain {_f(rep.cc_side_chain)}"
             f"   (atom radius {rep.atom_radius:.2f} Å)",
             f"  RSR        {_f(rep.rsr)}   (over the mask, after LSQ scaling)",
             f"  d(FSC=0.5) {_f(rep.d_fsc05, '{:.2f} Å')}   (unmasked map-model FSC)"]
    worst, n_scored, n_left = worst_residues(rep.residues, n_worst, with_waters=with_waters)
    if worst:
        left = f", {n_left} waters/ions left out" if n_left else ""
        lines += ["", f"  worst {len(worst)} of {n_scored} residues by CC{left}:",
                  "    chain  residue      CC    CC_main  CC_side"]
        for r in worst:
            rid = f"{r['res_name']} {r['res_seq']}{r['icode']}"
            lines.append(f"    {r['chain']:<5}  {rid:<10} {_f(r['cc'], '{:6.3f}')}   "
                         f"{_f(r['cc_main'], '{:6.3f}'):>6}   {_f(r['cc_side'], '{:6.3f}'):>6}")
    notes = list(rep.warnings) if warnings is None else list(warnings)
    if notes:
        lines += ["", f"  {len(notes)} warning(s):"] + [f"    - {w}" for w in notes]
    return "\n".join(lines)
