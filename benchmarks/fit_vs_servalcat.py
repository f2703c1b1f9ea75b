#!/usr/bin/env python3
"""`densrefine fit` side by side with servalcat refine_spa_norefmac, same inputs, same machine.

usage: python benchmarks/fit_vs_servalcat.py [--cases 5ni1_dep,5ni1_rms1_real,...]
                                             [--tools servalcat,densrefine] [--workdir DIR]
                                             [--fit-args "..."] [--force] [--dry-run]
                                             [--json FILE]

Cases (start model, map, d, truth):
  5ni1_dep        deposited 5NI1 (4579 atoms) in EMD-3488, 3.2 Å; no truth (RMSD = how far
                  the refinement moved it from the deposited model)
  5ni1_rms1_real  5NI1 perturbed by `densrefine.perturb` (1.0 Å RMS, seed 0) in EMD-3488
  5ni1_rms1_sim   same start in the noisy 3.2 Å map simulated from the deposited model
                  (benchmarks/fit_recovery.py `simulated_map`, seed 0)
  helix           bundled example_maps/helix_start.pdb in helix_3A.mrc, 3.0 Å, truth
                  helix_true.pdb
servalcat: `/tmp/peers/venv/bin/python ../shared/tools/peers/servalcat_refine.py spa START
MAP D [--ref TRUE]` (full map only: `--map`, 10 cycles, coot-headless-api monomer library).
densrefine: `python -m densrefine fit START MAP -d D -o PREFIX` (defaults + --fit-args).
Both outputs are scored by the same independent scripts, each in its own process:
CC_mask by cctbx (`cctbx_map_model_cc.py`), bond/angle RMSD by cctbx restraints
(`cctbx_geometry.py`), RMSD to truth (non-H, matched atoms) here. Wall time is the
whole command (start-up, I/O and refinement; scoring excluded); CPU s = user + sys of
that command and its children (load-independent, unlike wall time on a shared machine);
load = the 1-minute load average when it started. Results are cached
per case and tool as JSON in --workdir (--force recomputes).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fit_recovery as fr  # noqa: E402

SERVALCAT = os.path.join(fr.PEERS, "servalcat_refine.py")


def cases(workdir):
    """name -> (start model, map, d, truth or None); inputs are made on demand."""
    truth, real_map, d = fr.CASES["5ni1"]
    start1 = os.path.join(workdir, "5ni1_rms1.pdb")
    sim = os.path.join(workdir, "5ni1_sim3.2.mrc")
    ex = os.path.join(fr.ROOT, "example_maps")
    return {
        "5ni1_dep": (lambda: (truth, real_map, d, None)),
        "5ni1_rms1_real": (lambda: (fr.perturbed_model(truth, 1.0, 0, start1) if not
                                    os.path.exists(start1) else start1, real_map, d, truth)),
        "5ni1_rms1_sim": (lambda: (fr.perturbed_model(truth, 1.0, 0, start1) if not
                                   os.path.exists(start1) else start1,
                                   sim if os.path.exists(sim) else
                                   fr.simulated_map(truth, real_map, sim), fr.SIM_RES, truth)),
        "helix": (lambda: (os.path.join(ex, "helix_start.pdb"), os.path.join(ex, "helix_3A.mrc"),
                           3.0, os.path.join(ex, "helix_true.pdb"))),
    }


def run_servalcat(start, emap, d, truth, workdir):
    cmd = [fr.PEERS_PY, SERVALCAT, "spa", start, emap, str(d), "--workdir", workdir]
    cmd += ["--ref", truth] if truth else []
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    secs = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"servalcat failed: {p.stdout[-1000:]} {p.stderr[-1000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    return out["refined_model"], out["seconds"], {"own": out, "outer_seconds": secs,
                                                   "command": shlex.join(cmd)}


def run_ours(start, emap, d, workdir, fit_args):
    os.makedirs(workdir, exist_ok=True)
    out, secs, stats, cmd = fr.run_fit(start, emap, d, os.path.join(workdir, "fit"),
                                       shlex.split(fit_args))
    return out, secs, {"command": cmd, "n_cycles": len(stats.get("cycles", []) or [])}


def score(model, emap, d, truth):
    cc = fr.peer_json("cctbx_map_model_cc.py", model, emap, d)
    g = fr.peer_json("cctbx_geometry.py", model)
    return {"cc_mask": cc.get("cc_mask"), "cc_box": cc.get("cc_box"),
            "bond_rmsd": g.get("bond_rmsd"), "angle_rmsd": g.get("angle_rmsd"),
            "rmsd_to_truth": fr.rmsd_to(truth, model) if truth else None}


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def one(case, tool, a):
    cache = os.path.join(a.workdir, f"{case}_{tool}.json")
    if os.path.exists(cache) and not a.force:
        return json.load(open(cache))
    start, emap, d, truth = cases(a.workdir)[case]()
    row = {"case": case, "tool": tool, "start": start, "map": emap, "d": d, "truth": truth,
           "before": score(start, emap, d, truth), "date": time.strftime("%Y-%m-%d %H:%M")}
    if truth is None:
        row["before"]["rmsd_to_truth"] = 0.0
    if a.dry_run:
        return row
    wd = os.path.join(a.workdir, f"{case}_{tool}")
    row["load"], c0 = os.getloadavg()[0], _child_cpu()
    if tool == "servalcat":
        out, secs, info = run_servalcat(start, emap, d, truth, wd)
    else:
        out, secs, info = run_ours(start, emap, d, wd, a.fit_args)
    row.update(seconds=secs, cpu_s=_child_cpu() - c0, output=out, info=info,
               after=score(out, emap, d, truth or start))
    with open(cache, "w") as f:
        json.dump(row, f, indent=1)
    return row


def fmt(v, nd=3):
    return "–" if v is None else f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def markdown(rows):
    lines = ["| case | tool | wall s | CPU s | load | ours/servalcat wall (CPU) "
             "| CC_mask (cctbx) before → after | RMSD to truth Å before → after "
             "| bond Å / angle ° after (cctbx) |",
             "|---" * 9 + "|"]
    wall = {(r["case"], r["tool"]): r.get("seconds") for r in rows}
    cpu = {(r["case"], r["tool"]): r.get("cpu_s") for r in rows}
    for r in rows:
        b, f = r["before"], r.get("after", {})
        ws, wo = wall.get((r["case"], "servalcat")), wall.get((r["case"], "densrefine"))
        ratio = wo / ws if (r["tool"] == "densrefine" and ws and wo) else None
        cs, co = cpu.get((r["case"], "servalcat")), cpu.get((r["case"], "densrefine"))
        cratio = co / cs if (r["tool"] == "densrefine" and cs and co) else None
        ratios = "–" if ratio is None else f"{ratio:.2f} ({fmt(cratio, 2)})"
        lines.append(
            f"| {r['case']} | {r['tool']} | {fmt(r.get('seconds'), 1)} | "
            f"{fmt(r.get('cpu_s'), 1)} | {fmt(r.get('load'), 1)} | {ratios} | "
            f"{fmt(b['cc_mask'], 4)} → {fmt(f.get('cc_mask'), 4)} | "
            f"{fmt(b['rmsd_to_truth'])} → {fmt(f.get('rmsd_to_truth'))} | "
            f"{fmt(f.get('bond_rmsd'), 4)} / {fmt(f.get('angle_rmsd'), 2)} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="5ni1_dep,5ni1_rms1_real,5ni1_rms1_sim,helix")
    ap.add_argument("--tools", default="servalcat,densrefine")
    ap.add_argument("--workdir", default="/tmp/densrefine_fit_vs_servalcat")
    ap.add_argument("--fit-args", default="")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--dry-run", action="store_true", help="make inputs and score starts only")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    os.makedirs(a.workdir, exist_ok=True)
    tools = a.tools.split(",")
    if "densrefine" in tools and not a.dry_run and not fr.fit_available():
        print("densrefine.fit not available yet: running servalcat only", file=sys.stderr)
        tools = [t for t in tools if t != "densrefine"]
    rows = []
    for case in a.cases.split(","):
        for tool in tools:
            rows.append(one(case, tool, a))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    print(markdown(rows))


if __name__ == "__main__":
    main()
