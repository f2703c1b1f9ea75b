#!/usr/bin/env python3
"""X-ray refinement: `densrefine fit` (reciprocal-space ML target) side by side with servalcat
``refine_xtal_norefmac`` on the same perturbed starts (issue 17).

usage: python3 benchmarks/xray_fit_vs_servalcat.py [--cases 3ay4_0.5,3ay4_1.0,3io0_0.5,3io0_1.0]
                                                   [--tools servalcat,densrefine]
                                                   [--baseline ROOT] [--jobs N]
                                                   [--workdir DIR] [--fit-args "..."]
                                                   [--force] [--json FILE]
       (from the repo root; needs ../shared/data and the peer venv /tmp/peers/venv)

Starts: the deposited model (3AY4 2.2 Å, P 4₁2₁2, 5379 atoms with glycans; 3IO0 3.0 Å,
I 2₁3, 1658 non-H atoms) moved by `densrefine.perturb.perturb(model, rms=R, seed=0)`
(R = 0.5 or 1.0 Å: rigid secondary-structure moves, low-frequency waves, χ1 flips),
every B reset to the model's mean B, hydrogens removed (servalcat adds its riding
hydrogens itself; densrefine refines the atoms it is given).

servalcat: ``servalcat_refine.py xtal START MTZ --labin F,SIGF,FREE --free 0`` (10 cycles,
automatic weight, coot-headless-api monomer library). densrefine: ``python -m densrefine
fit START MTZ -o PREFIX --xray-target ml`` (+ --fit-args). Both outputs are scored by the
same independent scripts, each in its own process: R-work/R-free by cctbx
``mmtbx.model_vs_data`` (`cctbx_model_vs_data.py`), bond/angle RMSD by cctbx restraints
(`cctbx_geometry.py`, hydrogens stripped first), RMSD to the deposited model over
matched non-H atoms here. Wall time is the whole command (start-up, reading, refinement,
writing); CPU s = user + sys of the command and its children (GNU time when present,
so that cases may run side by side with --jobs N); load = the 1-minute load average when
it started (the machine is shared: wall times are noisy). ``--baseline ROOT`` adds the
tool "baseline": the same densrefine command run from another checkout (e.g. a
``git worktree`` of the commit before a change), so before and after share the machine
state. Results are cached per case and tool in --workdir (--force recomputes).
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
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
DATA = os.environ.get("DENSREFINE_DATA", os.path.join(os.path.dirname(ROOT), "shared", "data"))
PEERS = os.path.join(os.path.dirname(ROOT), "shared", "tools", "peers")
PEERS_PY = os.path.join(os.environ.get("PEERS_VENV", "/tmp/peers/venv"), "bin", "python")

ENTRIES = {  # name: (model, data, servalcat labin, cctbx phil args)
    "3ay4": (os.path.join(DATA, "3ay4", "3ay4.pdb.gz"), os.path.join(DATA, "3ay4", "3ay4.mtz.gz"),
             "FP,SIGFP,FREE", []),
    "3io0": (os.path.join(DATA, "3io0", "3io0_before.pdb.gz"),
             os.path.join(DATA, "3io0", "3io0-sf.mtz"), "FOBS,SIGFOBS,R-free-flags",
             ["f_obs_label=FOBS", "r_free_flags_label=R-free-flags"]),
}


def start_model(entry, rms, seed, workdir):
    """Perturbed start (B reset to the mean, no H) as PDB; returns its path."""
    import warnings

    import numpy as np

    import densrefine as dr
    from densrefine.perturb import perturb

    out = os.path.join(workdir, f"{entry}_rms{rms}_s{seed}.pdb")
    if os.path.exists(out):
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        noh = os.path.join(workdir, f"{entry}_noh.pdb")
        if not os.path.exists(noh):
            import gemmi

            st = gemmi.read_structure(ENTRIES[entry][0])
            st.remove_hydrogens()
            st.write_pdb(noh)
        p = perturb(dr.read_model(noh), rms=rms, seed=seed)
        at = p.atoms
        b = np.full(len(at.b_iso), float(np.mean(at.b_iso)))
        p = p.with_atoms(at.replace(b_iso=b, u_aniso=None))
        dr.write_model(p, out)
    return out


def peer_json(script, *args, timeout=1800):
    p = subprocess.run([PEERS_PY, os.path.join(PEERS, script), *map(str, args)],
                       capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        return {"error": (p.stderr or p.stdout).strip().splitlines()[-3:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def _coords(path):
    import gemmi

    st = gemmi.read_structure(path)
    return {(c.chain.name, str(c.residue.seqid), c.atom.name, c.atom.altloc): c.atom.pos.tolist()
            for c in st[0].all() if not c.atom.is_hydrogen()}


def rmsd_to(ref_path, model_path):
    import numpy as np

    ref, mod = _coords(ref_path), _coords(model_path)
    keys = [k for k in mod if k in ref]
    d = np.array([mod[k] for k in keys]) - np.array([ref[k] for k in keys])
    return float(np.sqrt((d ** 2).sum(1).mean()))


def no_h_copy(path, workdir):
    import gemmi

    st = gemmi.read_structure(path)
    st.remove_hydrogens()
    # next to the model: outputs of different cases and tools share the name "fit.pdb"
    out = os.path.join(os.path.dirname(os.path.abspath(path)),
                       os.path.basename(path).replace(".pdb", "_noh.pdb"))
    st.write_pdb(out)
    return out


def score(entry, model, workdir):
    _, mtz, _, phil = ENTRIES[entry]
    r = peer_json("cctbx_model_vs_data.py", model, mtz, *phil)
    g = peer_json("cctbx_geometry.py", no_h_copy(model, workdir))
    return {"r_work": r.get("r_work"), "r_free": r.get("r_free"),
            "bond_rmsd": g.get("bond_rmsd"), "angle_rmsd": g.get("angle_rmsd"),
            "rmsd_to_deposited": rmsd_to(ENTRIES[entry][0], model)}


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


GNU_TIME = "/usr/bin/time"


def timed(cmd, **kw):
    """subprocess.run(cmd) → (CompletedProcess, wall s, CPU s of the command and its
    children). With GNU time the CPU is that command's alone (safe with --jobs)."""
    import tempfile

    t0 = time.perf_counter()
    if os.path.exists(GNU_TIME):
        with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
            p = subprocess.run([GNU_TIME, "-o", tf.name, "-f", "%U %S", *cmd],
                               capture_output=True, text=True, **kw)
            secs = time.perf_counter() - t0
            last = (tf.read().strip().splitlines() or ["nan nan"])[-1].split()
            try:
                cpu = float(last[0]) + float(last[1])
            except (ValueError, IndexError):
                cpu = float("nan")
        return p, secs, cpu
    c0 = _child_cpu()
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    return p, time.perf_counter() - t0, _child_cpu() - c0


def run_servalcat(entry, start, wd):
    _, mtz, labin, _ = ENTRIES[entry]
    cmd = [PEERS_PY, os.path.join(PEERS, "servalcat_refine.py"), "xtal", start, mtz,
           "--labin", labin, "--free", "0", "--workdir", wd]
    p, secs, cpu = timed(cmd, timeout=7200)
    if p.returncode != 0:
        raise RuntimeError(f"servalcat failed: {p.stdout[-1500:]} {p.stderr[-1500:]}")
    own = json.loads(p.stdout.strip().splitlines()[-1])
    return own["refined_model"], secs, cpu, {"own": own, "command": shlex.join(cmd)}


def run_ours(entry, start, wd, fit_args, root=ROOT):
    _, mtz, _, _ = ENTRIES[entry]
    os.makedirs(wd, exist_ok=True)
    pre = os.path.join(wd, "fit")
    cmd = [sys.executable, "-m", "densrefine", "fit", start, mtz, "-o", pre, "-q",
           "--xray-target", "ml", *shlex.split(fit_args)]
    env = dict(os.environ, PYTHONPATH=root)
    p, secs, cpu = timed(cmd, timeout=7200, cwd=root, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed: {p.stderr[-2000:]}")
    st = json.load(open(pre + "_stats.json"))
    x = st.get("xray", {})
    own = {"r_work_before": x.get("before", {}).get("r_work"),
           "r_free_before": x.get("before", {}).get("r_free"),
           "r_work_after": x.get("after", {}).get("r_work"),
           "r_free_after": x.get("after", {}).get("r_free"),
           "cycles": [{k: c.get(k) for k in ("stage", "r_work", "r_free", "bond_rmsd",
                                             "angle_rmsd", "weight", "time_s")}
                      for c in st.get("cycles", [])]}
    return pre + ".pdb", secs, cpu, {"own": own, "command": shlex.join(cmd), "root": root}


def one(case, tool, a):
    cache = os.path.join(a.workdir, f"{case}_{tool}.json")
    if os.path.exists(cache) and not a.force:
        return json.load(open(cache))
    entry, rms = case.split("_")
    start = start_model(entry, float(rms), 0, a.workdir)
    before = os.path.join(a.workdir, f"{entry}_rms{rms}_before.json")
    if not os.path.exists(before):
        sc = score(entry, start, a.workdir)     # then write: a failed score leaves no file
        with open(before, "w") as f:
            json.dump(sc, f)
    row = {"case": case, "tool": tool, "start": start, "before": json.load(open(before)),
           "date": time.strftime("%Y-%m-%d %H:%M"), "load": os.getloadavg()[0]}
    wd = os.path.join(a.workdir, f"{case}_{tool}")
    if tool == "servalcat":
        out, secs, cpu, info = run_servalcat(entry, start, wd)
    elif tool == "baseline":
        if not a.baseline:
            raise SystemExit("tool baseline needs --baseline ROOT")
        out, secs, cpu, info = run_ours(entry, start, wd, a.fit_args, os.path.abspath(a.baseline))
    else:
        out, secs, cpu, info = run_ours(entry, start, wd, a.fit_args)
    row.update(seconds=secs, cpu_s=cpu, output=out, info=info,
               after=score(entry, out, a.workdir))
    with open(cache, "w") as f:
        json.dump(row, f, indent=1)
    return row


def fmt(v, nd=4):
    return "–" if v is None else f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def markdown(rows):
    lines = ["| start | tool | R-work before → after | R-free before → after | bond Å / angle ° "
             "after (cctbx) | RMSD to deposited Å before → after | wall s (CPU s, load) | "
             "wall / servalcat | CPU / servalcat |", "|---" * 9 + "|"]
    wall = {(r["case"], r["tool"]): r.get("seconds") for r in rows}
    cpu = {(r["case"], r["tool"]): r.get("cpu_s") for r in rows}
    for r in rows:
        b, f = r["before"], r.get("after", {})
        ratios = []
        for d in (wall, cpu):
            ws, wo = d.get((r["case"], "servalcat")), d.get((r["case"], r["tool"]))
            ratios.append(f"{wo / ws:.2f}" if r["tool"] != "servalcat" and ws and wo else "–")
        lines.append(
            f"| {r['case'].replace('_', ' ')} Å | {r['tool']} | {fmt(b['r_work'])} → "
            f"{fmt(f.get('r_work'))} | {fmt(b['r_free'])} → {fmt(f.get('r_free'))} | "
            f"{fmt(f.get('bond_rmsd'))} / {fmt(f.get('angle_rmsd'), 2)} | "
            f"{fmt(b['rmsd_to_deposited'], 3)} → {fmt(f.get('rmsd_to_deposited'), 3)} | "
            f"{fmt(r.get('seconds'), 0)} ({fmt(r.get('cpu_s'), 0)}, {fmt(r.get('load'), 1)}) | "
            f"{ratios[0]} | {ratios[1]} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="3ay4_0.5,3ay4_1.0,3io0_0.5,3io0_1.0")
    ap.add_argument("--tools", default="servalcat,densrefine")
    ap.add_argument("--workdir", default="/tmp/densrefine_xray_vs_servalcat")
    ap.add_argument("--fit-args", default="")
    ap.add_argument("--baseline", help="checkout whose densrefine runs as the tool 'baseline'")
    ap.add_argument("--jobs", type=int, default=1, help="cases run side by side")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    os.makedirs(a.workdir, exist_ok=True)
    cases, tools = a.cases.split(","), a.tools.split(",")
    for case in cases:              # start models first: cases of one entry share files
        entry, rms = case.split("_")
        start_model(entry, float(rms), 0, a.workdir)

    def run_case(case):
        out = []
        for tool in tools:
            out.append(one(case, tool, a))
            print(json.dumps({k: out[-1].get(k) for k in ("case", "tool", "before", "after",
                                                          "seconds", "cpu_s")}),
                  file=sys.stderr, flush=True)
        return out

    if a.jobs > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(a.jobs) as pool:
            rows = [r for rs in pool.map(run_case, cases) for r in rs]
    else:
        rows = [r for case in cases for r in run_case(case)]
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    print(markdown(rows))


if __name__ == "__main__":
    main()
