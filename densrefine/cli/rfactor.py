"""R-work and R-free of a model against X-ray data (MTZ or mmCIF structure factors).

F_calc by FFT of the IT92 X-ray density over the unit cell with the space-group
symmetry (direct summation for small models with ANISOU); flat bulk solvent (cctbx
mask: probe 1.1 Å, shrink 0.9 Å) with k_sol/B_sol, overall anisotropic scale and a
per-shell isotropic scale fitted on the work set (Afonine et al. 2013). R factors as
mmtbx.f_model computes them. Columns are chosen automatically (amplitudes, else
intensities via French–Wilson, else merged anomalous pairs); the free-R convention
(CCP4 test = 0, phenix test = 1) is detected and reported; broken flags give
R-free = n/a with the reason.

examples:
  densrefine rfactor model.pdb data.mtz
  densrefine rfactor model.cif r1abcsf.ent.gz --json rfactor.json   # + rfactor.log
  densrefine rfactor model.pdb data.mtz --labin IOBS,SIGIOBS,FreeR_flag -d 2.5
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger("densrefine")


def add_args(p):
    p.add_argument("model", help="atomic model (.pdb/.cif, optionally .gz) with CRYST1 / cell")
    p.add_argument("data", help="reflections: MTZ or mmCIF structure factors (r*sf.ent[.gz])")
    g = p.add_argument_group("the flags most users need")
    g.add_argument("--json", metavar="FILE",
                   help="write the report (R factors, scales, shells, data) to FILE; "
                        "the log goes to FILE's stem + .log")
    g.add_argument("--labin", metavar="COLS",
                   help='columns, e.g. "FP,SIGFP,FreeR_flag" or "IOBS,SIGIOBS" '
                        "(default: chosen automatically)")
    p.add_argument("-d", "--d-min", type=float, metavar="Å",
                   help="high-resolution limit (default: all data)")
    p.add_argument("--d-max", type=float, metavar="Å", help="low-resolution limit")
    p.add_argument("--density", choices=["iam", "ml"], default="iam",
                   help="density model of F_calc: independent atoms, or IAM plus the learned "
                        "deformation density (default: %(default)s)")
    p.add_argument("--free-flag", type=int, metavar="N",
                   help="flag value of the test set (default: detected)")


def outputs(args) -> dict:
    """Every file ``densrefine rfactor`` writes, by role (checked before anything runs)."""
    if not args.json:
        return {}
    return {"json": args.json, "log": os.path.splitext(args.json)[0] + ".log"}


def main(args):
    from ..errors import input_error
    from ..io import read_model
    from ..report import write_json_atomic
    from ..xtal import rfactor
    from . import _common

    for name, v in (("--d-min", args.d_min), ("--d-max", args.d_max)):
        if v is not None and not v > 0:
            raise input_error(name, f"{v} is not a positive resolution in Å",
                              f"give {name} in Å, e.g. 2.5")
    _common.check_order(args.model, args.data, "reflection", "densrefine rfactor MODEL DATA")
    out = _common.plan_outputs(outputs(args), [args.model, args.data])
    model = read_model(args.model)
    rep = rfactor(model, args.data, labin=args.labin, d_min=args.d_min, d_max=args.d_max,
                  free_flag=args.free_flag, density=args.density)
    _common.commit(out.get("log"))
    seen = _common.warnings_seen()
    print(format_report(rep, args.model, args.data, warnings=seen))
    if args.json:
        doc = {"model": os.path.abspath(args.model), "data": os.path.abspath(args.data),
               **rep.to_dict(), "warnings": seen}
        write_json_atomic(out["json"], doc)
        log.info("Wrote %s", out["json"])
    return 0


def _f(x, fmt="{:.4f}") -> str:
    return "n/a" if x is None or x != x else fmt.format(x)


def format_report(rep, model="", data="", warnings=()) -> str:
    """Readable summary of an `RfactorReport` (what ``densrefine rfactor`` prints);
    ``warnings`` end it."""
    cols = rep.reflections.get("columns", {})
    lines = [f"model {model}  data {data}",
             f"data: {rep.reflections.get('source', '?')} ({', '.join(cols.values())}), "
             f"{rep.d_max:.2f}-{rep.d_min:.2f} Å, {rep.n_work} work + {rep.n_free} test "
             f"reflections; free set: "
             + (rep.reflections.get("convention") or "-" if rep.free_problem is None
                else f"unusable ({rep.free_problem})"),
             "",
             f"  R-work   {_f(rep.r_work)}",
             f"  R-free   {_f(rep.r_free)}",
             f"  k_sol    {rep.k_sol:.3f}   B_sol {rep.b_sol:.1f} Å²   "
             f"(solvent fraction {rep.solvent_fraction:.2f})",
             "  B_aniso  " + " ".join(f"{b:.2f}" for b in rep.b_aniso)
             + "  Å² (B11 B22 B33 B12 B13 B23)",
             f"  F_calc   {rep.fcalc_method}",
             "",
             "      d_max   d_min   n_work  n_free  R-work  R-free  k_mask"]
    for s in rep.shells:
        lines.append(f"    {s['d_max']:7.2f} {s['d_min']:7.2f}  {s['n_work']:7d} {s['n_free']:7d}"
                     f"  {_f(s['r_work'])}  {_f(s['r_free'])}  {s['k_mask']:.3f}")
    if warnings:
        lines += ["", f"  {len(warnings)} warning(s):"] + [f"    - {w}" for w in warnings]
    return "\n".join(lines)
