"""R-work and R-free of a model against X-ray data (MTZ or mmCIF structure factors).

F_calc by FFT of the IT92 X-ray density over the unit cell with the space-group
symmetry (direct summation for small models with ANISOU); flat bulk solvent (cctbx
mask: probe 1.1 Å, shrink 0.9 Å) with k_sol/B_sol, overall anisotropic scale and a
per-shell isotropic scale fitted on the work set (Afonine et al. 2013). R factors as
mmtbx.f_model computes them. Columns are chosen automatically (amplitudes, else
intensities via French–Wilson, else merged anomalous pairs); the free-R convention
(CCP4 test = 0, phenix test = 1) is detected and reported; broken flags give
R-free = n/a with the reason. Twinning (--twin auto, the default): candidate twin laws
from the lattice (gemmi), Padilla–Yeates L-test and Yeates H-test; when they indicate a
twin, |F_model|² = (1−α)|F(h)|² + α|F(Th)|² with α refined with the scales, and R is
reported with and without it. --peaks N / --map-out PREFIX: σA-weighted mFo−DFc peaks
next to the model and the 2mFo−DFc / mFo−DFc maps (CCP4 format, one unit cell).

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
    g.add_argument("--peaks", type=int, default=0, metavar="N",
                   help="list the N highest positive and negative mFo-DFc peaks (sigma, "
                        "position next to the model, nearest atom); in --json too")
    g.add_argument("--map-out", metavar="PREFIX",
                   help="write the sigmaA-weighted maps PREFIX_2fofc.ccp4 and PREFIX_fofc.ccp4 "
                        "(one unit cell)")
    p.add_argument("--peak-threshold", type=float, default=3.0, metavar="SIGMA",
                   help="lowest peak height for --peaks, in map rms (default: %(default)s)")
    g.add_argument("--twin", default="auto", metavar="auto|off|on|LAW",
                   help="twinning: auto = detect (L-test, H-test on the candidate twin laws) "
                        "and model the twin when indicated, refining the twin fraction; off; "
                        "on = the best candidate law; or a law, e.g. --twin=-h,k,-l "
                        "(default: %(default)s)")


def outputs(args) -> dict:
    """Every file ``densrefine rfactor`` writes, by role (checked before anything runs)."""
    out = {}
    if args.json:
        out.update(json=args.json, log=os.path.splitext(args.json)[0] + ".log")
    if args.map_out:
        out.update({f"map_{k}": f"{args.map_out}_{k}.ccp4" for k in ("2fofc", "fofc")})
    return out


def main(args):
    import time

    from ..errors import check_readable, input_error
    from ..io import read_model
    from ..report import write_json_atomic
    from . import _common

    for name, v in (("--d-min", args.d_min), ("--d-max", args.d_max)):
        if v is not None and not v > 0:
            raise input_error(name, f"{v} is not a positive resolution in Å",
                              f"give {name} in Å, e.g. 2.5")
    if args.peaks < 0:
        raise input_error("--peaks", f"{args.peaks} is negative", "give a count, e.g. 20")
    _common.check_order(args.model, args.data, "reflection", "densrefine rfactor MODEL DATA")
    out = _common.plan_outputs(outputs(args), [args.model, args.data])
    check_readable(args.data, "a reflection file", "give an MTZ or mmCIF structure-factor file")
    model = read_model(args.model)  # inputs before xtal: refusals import no torch
    from ..xtal.api import make_fmodel
    from ..xtal.peaks import cell_maps, difference_peaks, write_cell_maps

    t0 = time.perf_counter()
    fmod = make_fmodel(model, args.data, labin=args.labin, d_min=args.d_min,
                       d_max=args.d_max, free_flag=args.free_flag, density=args.density,
                       twin=args.twin)
    rep = fmod.report()
    _common.commit(out.get("log"))
    if args.peaks or args.map_out:
        maps = cell_maps(fmod, ("2fofc", "fofc") if args.map_out else ("fofc",))
        if args.peaks:
            rep.peaks = difference_peaks(fmod, model, n=args.peaks,
                                         threshold=args.peak_threshold, maps=maps)
        if args.map_out:
            write_cell_maps(maps, fmod, args.map_out, inputs=[args.model, args.data])
    rep.timings["total_s"] = time.perf_counter() - t0 + rep.timings.get("read_s", 0.0)
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
             *_twin_lines(rep.twin),
             "",
             "      d_max   d_min   n_work  n_free  R-work  R-free  k_mask"]
    for s in rep.shells:
        lines.append(f"    {s['d_max']:7.2f} {s['d_min']:7.2f}  {s['n_work']:7d} {s['n_free']:7d}"
                     f"  {_f(s['r_work'])}  {_f(s['r_free'])}  {s['k_mask']:.3f}")
    if rep.peaks is not None:
        lines += ["", f"mFo-DFc peaks ({rep.peaks['method']}):",
                  "      sigma        x        y        z  nearest atom          distance Å"]
        for p in rep.peaks["positive"] + rep.peaks["negative"]:
            x, y, z = p["xyz"]
            lines.append(f"    {p['height_sigma']:7.1f} {x:8.2f} {y:8.2f} {z:8.2f}  "
                         f"{p['nearest_atom']:<20s}  {p['distance']:.2f}")
    if warnings:
        lines += ["", f"  {len(warnings)} warning(s):"] + [f"    - {w}" for w in warnings]
    return "\n".join(lines)


def _twin_lines(tw) -> list[str]:
    if tw is None:
        return ["  twin     not tested (--twin off)"]
    lines = [f"  twin     {tw['reason']}"]
    a = tw.get("analysis") or {}
    lt = a.get("l_test") or {}
    if lt.get("mean_abs_l") is not None:
        lines.append(f"           L-test <|L|> {lt['mean_abs_l']:.3f}, <L^2> {lt['mean_l2']:.3f} "
                     f"({lt['n_pairs']} pairs; untwinned 0.500/0.333, perfect twin 0.375/0.200)")
    for h in a.get("h_tests") or []:
        lines.append(f"           H-test {h['law']}: alpha_H {_f(h['alpha'], '{:.3f}')} "
                     f"({h['n_pairs']} pairs)")
    if tw.get("applied"):
        u = tw["untwinned"]
        lines.append(f"           without the twin model: R-work {_f(u['r_work'])}, "
                     f"R-free {_f(u['r_free'])}")
    return lines
