#!/usr/bin/env python3
"""`densrefine fit` side by side with servalcat on every shared map (issue 20).

usage: PYTHONPATH=<tree> python3 benchmarks/fit_vs_servalcat_all.py
           [--cases 5ni1:real,3j6b:real,6vyb:real,6yyt:real,actin:real,5ni1:uneven,5ni1:seg]
           [--rms 0.5,1.0,1.5] [--seeds 0] [--tools densrefine,servalcat]
           [--workdir /tmp/bench20s] [--fit-args "..."] [--table-only] [--force]
           [--json FILE] [--md FILE]

Cases are (model, map kind) of benchmarks/fit_recovery.py: "real" = the deposited map
(6vyb's is EMDB's segmented, noisy NTD box; actin's is 6.6 Å), "uneven" = the deposited
model's simulated 3.2 Å map with the half at larger x blurred to 6 Å and noisier
(`fit_recovery.uneven_map`, noise seed = the seed), "seg" = the real map times a soft
4 Å mask around the deposited model (`fit_recovery.segmented_map`). Start = the deposited
model perturbed by `densrefine.perturb.perturb(rms, seed)` (rms 0 = the deposited model
itself, a control), written once as PDB and given to both tools.

Maps with a non-zero MRC2014 ORIGIN (6vyb, 3j6b) are given to both tools (and the scorers)
as a copy with the ORIGIN moved into NSTART (same voxels, same frame): servalcat ignores
ORIGIN and would refine against a shifted map (on 6vyb its FSCaverage was −0.01).

Tools (run one at a time, sequentially; environment as inherited):
  densrefine  `python3 -m densrefine fit START MAP -d D -o PREFIX` (defaults + --fit-args)
  servalcat   `/tmp/peers/venv/bin/python ../shared/tools/peers/servalcat_refine.py spa
              START MAP D --ref TRUTH --workdir W` = refine_spa_norefmac `--map MAP` (full
              map; no half maps exist for these data), 10 cycles, coot-headless-api monomers

Every start and output is scored by the same independent programs, each in its own process,
on a PDB copy written by gemmi without hydrogens and formal charges (3J6B's deposited model
has riding H and an O1-; cctbx's electron table has neither; all numbers are heavy-atom):
  RMSD to the deposited model: non-H atoms matched by chain/res_seq/icode/name/altloc (here)
  CC_mask: cctbx map_model_cc (../shared/tools/peers/cctbx_map_model_cc.py, electron table)
  bond/angle RMSD, largest bond z, bonds > 4σ: cctbx restraints (benchmarks/cctbx_bond_z.py,
      which computes exactly what peers/cctbx_geometry.py computes, plus the z-scores)
  Ramachandran favoured/outliers, rotamer outliers, clashscore: `densrefine validate`
Wall time of each refinement command, CPU s (user + sys of it and its children) and the
1-minute load average before and after (the machine is shared: times are indicative only).
Results are cached as JSON per start and per tool run in WORKDIR/rows (--force redoes).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shlex
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import fit_recovery as fr

SERVALCAT = os.path.join(fr.PEERS, "servalcat_refine.py")
BOND_Z = os.path.join(HERE, "cctbx_bond_z.py")
DEFAULT_CASES = "5ni1:real,3j6b:real,6vyb:real,6yyt:real,actin:real,5ni1:uneven,5ni1:seg"
ENV = dict(os.environ, PYTHONPATH=ROOT + (os.pathsep + os.environ["PYTHONPATH"]
                                          if os.environ.get("PYTHONPATH") else ""))


# ---------------------------------------------------------------- inputs

def nstart_copy(path, out_dir):
    """``path`` when its MRC2014 ORIGIN is 0, else a copy (same voxels, same frame) with the
    ORIGIN moved into NXSTART/NYSTART/NZSTART: servalcat 0.4.142 ignores ORIGIN ("ORIGIN header
    is not supported ... might cause a misalignment") and then refines against a shifted map."""
    import mrcfile

    with mrcfile.open(path, permissive=True) as m:
        org = np.array([float(m.header.origin[c]) for c in "xyz"])
        if not org.any():
            return path
        vox = np.array([float(m.voxel_size[c]) for c in "xyz"])
        n = org / vox
        if np.abs(n - np.rint(n)).max() > 1e-3 or any(
                int(m.header[k]) for k in ("nxstart", "nystart", "nzstart")) or (
                (int(m.header.mapc), int(m.header.mapr), int(m.header.maps)) != (1, 2, 3)):
            raise SystemExit(f"{path}: ORIGIN {org} is not a whole number of voxels from "
                             "NSTART 0 with axes 1,2,3: no NSTART copy")
        out = os.path.join(out_dir, os.path.basename(path).rsplit(".", 1)[0] + "_nstart.mrc")
        if not os.path.exists(out):
            with mrcfile.new(out, overwrite=True) as o:
                o.set_data(np.asarray(m.data).copy())
                o.header.cella = m.header.cella
                o.header.mx, o.header.my, o.header.mz = m.header.mx, m.header.my, m.header.mz
                o.header.nxstart, o.header.nystart, o.header.nzstart = (int(v) for v in np.rint(n))
                o.header.origin = (0.0, 0.0, 0.0)
                o.update_header_stats()
    return out


def case_inputs(name, kind, seed, workdir):
    """(truth, map path, d) for a case; derived maps are written once into workdir/maps."""
    truth, real_map, d = fr.CASES[name]
    mdir = os.path.join(workdir, "maps")
    os.makedirs(mdir, exist_ok=True)
    if kind == "real":
        return truth, nstart_copy(real_map, mdir), d
    if kind == "uneven":
        path = os.path.join(mdir, f"{name}_uneven{fr.SIM_RES:g}_s{seed}.mrc")
        if not os.path.exists(path):
            fr.uneven_map(truth, real_map, path, seed=seed)
        return truth, path, fr.SIM_RES
    if kind == "seg":
        path = os.path.join(mdir, f"{name}_seg.mrc")
        if not os.path.exists(path):
            fr.segmented_map(truth, real_map, path)
        return truth, path, d
    raise SystemExit(f"unknown map kind {kind!r} (real, uneven, seg)")


# Atoms the CCP4 monomer library (coot-headless-api) has no definition for: servalcat stops
# ("Error: Provide restraint cif file(s) for HIS"; densrefine leaves such an atom unrestrained).
# They are removed from the start model both tools get; RMSD is over the atoms the model has.
DROP = {"actin": [("A", 73, "HIS", "CZ")]}   # 3MFP's methyl-His 73 (HIC) written as HIS + CZ


def start_model(name, rms, seed, workdir):
    truth = fr.CASES[name][0]
    sdir = os.path.join(workdir, "starts")
    os.makedirs(sdir, exist_ok=True)
    tail = "_lib" if name in DROP else ""
    path = os.path.join(sdir, f"{name}_rms{rms:g}_s{seed}{tail}.pdb")
    if not os.path.exists(path):
        fr.perturbed_model(truth, rms, seed, path)
        if name in DROP:      # drop the lines (the rest stays as densrefine wrote it)
            def dropped(line):
                return line.startswith(("ATOM", "HETATM", "ANISOU")) and any(
                    (line[21], int(line[22:26]), line[17:20], line[12:16].strip()) == k
                    for k in DROP[name])
            lines = open(path).readlines()
            with open(path, "w") as f:
                f.writelines(x for x in lines if not dropped(x))
    return path


# ---------------------------------------------------------------- scoring

def _key(path):
    return hashlib.md5(os.path.abspath(path).encode()).hexdigest()[:10]


def heavy_copy(path, workdir):
    """The model as every scorer sees it: a PDB copy (gemmi) without hydrogens and with formal
    charges cleared (cctbx's electron table has neither H nor O1-; servalcat's output carries
    no charges, densrefine's keeps the input's), under workdir/noH."""
    import gemmi

    st = gemmi.read_structure(path)
    st.remove_hydrogens()
    for cra in st[0].all():
        cra.atom.charge = 0
    hdir = os.path.join(workdir, "noH")
    os.makedirs(hdir, exist_ok=True)
    base = os.path.basename(path).replace(".gz", "").rsplit(".", 1)[0]
    out = os.path.join(hdir, f"{_key(path)}_{base}.pdb")
    st.write_pdb(out)
    return out


rmsd_to = fr.matched_rmsd   # (RMSD Å, atoms matched, truth atoms)


def peer(script, *args, timeout=900):
    p = subprocess.run([fr.PEERS_PY, script, *map(str, args)], capture_output=True,
                       text=True, timeout=timeout)
    if p.returncode != 0:
        return {"error": ((p.stderr or p.stdout).strip().splitlines() or ["?"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def validate(model, workdir):
    vdir = os.path.join(workdir, "validate")
    os.makedirs(vdir, exist_ok=True)
    out = os.path.join(vdir, f"{_key(model)}.json")
    p = subprocess.run([sys.executable, "-m", "densrefine", "validate", model, "--json", out],
                       capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=900)
    if p.returncode != 0 or not os.path.exists(out):
        return {"error": ((p.stderr or p.stdout).strip().splitlines() or ["?"])[-1]}
    v = json.load(open(out))
    return {"rama_fav_pct": v["ramachandran"]["favored_pct"],
            "rama_out_pct": v["ramachandran"]["outlier_pct"],
            "rama_out": v["ramachandran"]["outlier"], "rama_n": v["ramachandran"]["n"],
            "rot_out_pct": v["rotamers"]["outlier_pct"],
            "clashscore": v["clashes"]["clashscore"]}


def score(model, emap, d, truth, workdir):
    """All numbers for one model, each from the tool named in the module docstring."""
    t0 = time.perf_counter()
    m = heavy_copy(model, workdir)
    s = {"model": model, "scored_file": m}
    s["rmsd"], s["n_matched"], s["n_truth"] = rmsd_to(truth, model)
    cc = peer(os.path.join(fr.PEERS, "cctbx_map_model_cc.py"), m, emap, d)
    s["cc_mask"], s["cc_box"] = cc.get("cc_mask"), cc.get("cc_box")
    if "error" in cc:
        s["cc_error"] = cc["error"]
    g = peer(BOND_Z, m)
    for k in ("bond_rmsd", "angle_rmsd", "bond_max", "max_bond_z", "n_bond_z_gt4",
              "max_bond_z_nonhet", "n_bond_z_gt4_nonhet", "worst_bond", "n_bonds"):
        s[k] = g.get(k)
    if "error" in g:
        s["geom_error"] = g["error"]
    s.update(validate(m, workdir))
    s["score_seconds"] = round(time.perf_counter() - t0, 1)
    return s


# ---------------------------------------------------------------- refinement

def _child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def refine(tool, start, emap, d, truth, wd, fit_args):
    os.makedirs(wd, exist_ok=True)
    if tool == "densrefine":
        cmd = [sys.executable, "-m", "densrefine", "fit", start, emap, "-d", str(d),
               "-o", os.path.join(wd, "fit"), *shlex.split(fit_args)]
        out = os.path.join(wd, "fit.pdb")
    else:
        cmd = [fr.PEERS_PY, SERVALCAT, "spa", start, emap, str(d), "--ref", truth,
               "--workdir", wd]
        out = os.path.join(wd, "refined.pdb")
    info = {"command": shlex.join(cmd), "uptime_before": _uptime(),
            "load_before": os.getloadavg()[0]}
    c0, t0 = _child_cpu(), time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=3600)
    info["seconds"] = round(time.perf_counter() - t0, 1)
    info["cpu_s"] = round(_child_cpu() - c0, 1)
    info["load_after"], info["uptime_after"] = os.getloadavg()[0], _uptime()
    info["returncode"] = p.returncode
    with open(os.path.join(wd, "stdout_stderr.txt"), "w") as f:
        f.write(p.stdout + "\n---- stderr ----\n" + p.stderr)
    if p.returncode != 0 or not os.path.exists(out):
        info["error"] = ((p.stderr or p.stdout).strip().splitlines() or ["?"])[-3:]
        return None, info
    if tool == "servalcat":
        try:
            own = json.loads(p.stdout.strip().splitlines()[-1])
            info["own"] = {k: own.get(k) for k in (
                "seconds", "ncycle", "fscaverage_before", "fscaverage_after", "cc_mask_before",
                "cc_mask_after", "bond_rmsd_after", "angle_rmsd_after", "rmsd_to_ref_after")}
        except (ValueError, IndexError):
            pass
    else:
        sp = os.path.join(wd, "fit_stats.json")
        if os.path.exists(sp):
            st = json.load(open(sp))
            info["own"] = {"status": st.get("status"),
                           "warnings": (st.get("warnings") or [])[:5],
                           "resolution_used": (st.get("input") or {}).get("resolution"),
                           "local_resolution": (st.get("input") or {}).get("local_resolution")}
    return out, info


# ---------------------------------------------------------------- driver

def _cached(path, force, make):
    if os.path.exists(path) and not force:
        return json.load(open(path))
    row = make()
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(row, f, indent=1)
    os.replace(tmp, path)
    return row


def tag_of(name, kind, rms, seed):
    return f"{name}_{kind}_rms{rms:g}_s{seed}" + ("_lib" if name in DROP else "")


def run_one(name, kind, rms, seed, tools, a):
    rdir = os.path.join(a.workdir, "rows")
    os.makedirs(rdir, exist_ok=True)
    truth, emap, d = case_inputs(name, kind, seed, a.workdir)
    start = start_model(name, rms, seed, a.workdir)
    tag = tag_of(name, kind, rms, seed)
    before = _cached(os.path.join(rdir, f"{tag}_start.json"), a.force_scores,
                     lambda: score(start, emap, d, truth, a.workdir))
    rows = []
    for tool in tools:
        def make(tool=tool):
            wd = os.path.join(a.workdir, "runs", f"{tag}_{tool}")
            out, info = refine(tool, start, emap, d, truth, wd, a.fit_args)
            row = {"case": name, "map": kind, "d": d, "rms": rms, "seed": seed, "tool": tool,
                   "start": start, "emap": emap, "truth": truth, "info": info,
                   "date": time.strftime("%Y-%m-%d %H:%M:%S")}
            if out:
                row["after"] = score(out, emap, d, truth, a.workdir)
            return row
        path = os.path.join(rdir, f"{tag}_{tool}.json")
        row = _cached(path, a.force, make)
        out = (row.get("after") or {}).get("model")
        if a.rescore and out:
            row["after"] = score(out, emap, d, truth, a.workdir)
            with open(path, "w") as f:
                json.dump(row, f, indent=1)
        row["before"] = before
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("case", "map", "rms", "seed", "tool")}
                         | {"rmsd": [before.get("rmsd"), (row.get("after") or {}).get("rmsd")],
                            "s": row["info"].get("seconds"),
                            "err": row["info"].get("error")}), file=sys.stderr, flush=True)
    return rows


def fmt(v, nd=3):
    if v is None:
        return "–"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def rama(s):
    if not s.get("rama_n"):
        return "–"
    return f"{fmt(s.get('rama_fav_pct'), 1)} / {fmt(s.get('rama_out_pct'), 1)}"


def rot(s):
    return fmt(s.get("rot_out_pct"), 1) if s.get("rama_n") else "–"


def markdown(rows):
    def delta(r):
        f = r.get("after") or {}
        return (f["rmsd"] - r["before"]["rmsd"]) if "rmsd" in f else float("inf")

    rows = sorted(rows, key=lambda r: (-delta(r), r["case"], r["map"], r["rms"], r["tool"]))
    head = ("| case | map | d Å | start rms, seed | tool | RMSD to deposited Å start → after (Δ) "
            "| CC_mask (cctbx) start → after | bond Å / angle ° (cctbx) | max bond z (all / "
            "polymer), n > 4σ | Rama fav / out % | rot out % | clashscore | wall s (CPU s), "
            "load |")
    lines = [head, "|---" * 13 + "|"]
    for r in rows:
        b, f, i = r["before"], r.get("after") or {}, r["info"]
        if not f:
            lines.append(f"| {r['case']} | {r['map']} | {r['d']:g} | {r['rms']:g}, {r['seed']} "
                         f"| {r['tool']} | **failed**: {' '.join(i.get('error') or [])[:150]} "
                         "| | | | | | | " f"{fmt(i.get('seconds'), 1)} |")
            continue
        dl = f["rmsd"] - b["rmsd"]
        lines.append(
            f"| {r['case']} | {r['map']} | {r['d']:g} | {r['rms']:g}, {r['seed']} | {r['tool']} "
            f"| {fmt(b['rmsd'])} → {fmt(f['rmsd'])} ({dl:+.3f}) "
            f"| {fmt(b.get('cc_mask'))} → {fmt(f.get('cc_mask'))} "
            f"| {fmt(f.get('bond_rmsd'), 4)} / {fmt(f.get('angle_rmsd'), 2)} "
            f"| {fmt(f.get('max_bond_z'), 1)} / {fmt(f.get('max_bond_z_nonhet'), 1)}, "
            f"{fmt(f.get('n_bond_z_gt4'))} "
            f"| {rama(f)} | {rot(f)} | {fmt(f.get('clashscore'), 1)} "
            f"| {fmt(i.get('seconds'), 1)} ({fmt(i.get('cpu_s'), 0)}), "
            f"{fmt(i.get('load_before'), 1)} |")
    return "\n".join(lines)


def starts_table(rows):
    seen, lines = set(), [
        "| case | map | start rms, seed | RMSD Å | CC_mask (cctbx) | bond Å / angle ° | max "
        "bond z (all / polymer) | Rama fav / out % | rot out % | clashscore |",
        "|---" * 10 + "|"]
    for r in sorted(rows, key=lambda r: (r["case"], r["map"], r["rms"], r["seed"])):
        key = (r["case"], r["map"], r["rms"], r["seed"])
        if key in seen:
            continue
        seen.add(key)
        b = r["before"]
        lines.append(
            f"| {r['case']} | {r['map']} | {r['rms']:g}, {r['seed']} | {fmt(b['rmsd'])} "
            f"| {fmt(b.get('cc_mask'))} | {fmt(b.get('bond_rmsd'), 4)} / "
            f"{fmt(b.get('angle_rmsd'), 2)} | {fmt(b.get('max_bond_z'), 1)} / "
            f"{fmt(b.get('max_bond_z_nonhet'), 1)} | {rama(b)} | {rot(b)} "
            f"| {fmt(b.get('clashscore'), 1)} |")
    return "\n".join(lines)


def summary(rows):
    out = []
    pert = [r for r in rows if r["rms"] > 0]
    tools = sorted({r["tool"] for r in rows})
    # only (case, map, rms, seed) keys where every tool produced a model: a fair mean
    keys = {(r["case"], r["map"], r["rms"], r["seed"]) for r in pert}
    both = {k for k in keys if all(any((r["case"], r["map"], r["rms"], r["seed"]) == k
                                       and r.get("after") and r["tool"] == t for r in pert)
                                   for t in tools)}
    for t in tools:
        rt = [r for r in pert if r["tool"] == t]
        ok = [r for r in rt if r.get("after")]
        paired = [r for r in ok if (r["case"], r["map"], r["rms"], r["seed"]) in both]
        worse = [r for r in ok if r["after"]["rmsd"] > r["before"]["rmsd"]]
        flag = [r for r in ok if (r["after"].get("bond_rmsd") or 0) > 0.015
                or (r["after"].get("max_bond_z") or 0) > 4]
        out.append({
            "tool": t, "runs": len(rt), "failed": len(rt) - len(ok),
            "mean_rmsd_before_paired": float(np.mean([r["before"]["rmsd"] for r in paired]))
            if paired else None,
            "mean_rmsd_after_paired": float(np.mean([r["after"]["rmsd"] for r in paired]))
            if paired else None, "n_paired": len(paired),
            "mean_rmsd_after_all": float(np.mean([r["after"]["rmsd"] for r in ok])) if ok else None,
            "n_further": len(worse),
            "further": [f"{r['case']} {r['map']} {r['rms']:g}/s{r['seed']}" for r in worse],
            "flag_geometry": [f"{r['case']} {r['map']} {r['rms']:g}/s{r['seed']}: bond "
                              f"{r['after'].get('bond_rmsd')} Å, max z "
                              f"{r['after'].get('max_bond_z')} ({r['after'].get('n_bond_z_gt4')}"
                              f" > 4σ; polymer {r['after'].get('max_bond_z_nonhet')})"
                              for r in flag],
            "median_wall_s": float(np.median([r["info"]["seconds"] for r in ok])) if ok else None,
        })
    return out


def summary_md(summ):
    lines = []
    for t in summ:
        lines.append(
            f"- **{t['tool']}**: {t['runs']} runs from perturbed starts, {t['failed']} failed; "
            f"mean RMSD to deposited {fmt(t['mean_rmsd_before_paired'])} → "
            f"{fmt(t['mean_rmsd_after_paired'])} Å over the {t['n_paired']} starts both tools "
            f"refined; {t['n_further']} end further from the deposited model than they started"
            + (f" ({', '.join(t['further'])})" if t["further"] else "")
            + f"; median wall {fmt(t['median_wall_s'], 1)} s.")
        lines.append(f"  - bond RMSD > 0.015 Å or a bond > 4σ (cctbx): {len(t['flag_geometry'])}"
                     + ("".join(f"\n    - {x}" for x in t["flag_geometry"])))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=DEFAULT_CASES, help="NAME:KIND,... (kinds real/uneven/seg)")
    ap.add_argument("--rms", default="0.5,1.0,1.5", help="start RMS Å; 0 = the deposited model")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--tools", default="densrefine,servalcat")
    ap.add_argument("--workdir", default="/tmp/bench20s")
    ap.add_argument("--fit-args", default="", help="extra arguments for densrefine fit")
    ap.add_argument("--force", action="store_true", help="rerun refinements cached in workdir")
    ap.add_argument("--force-scores", action="store_true", help="rescore the start models")
    ap.add_argument("--rescore", action="store_true", help="rescore cached refined models")
    ap.add_argument("--table-only", action="store_true",
                    help="print the tables from whatever is cached, run nothing")
    ap.add_argument("--json", help="write all rows here")
    ap.add_argument("--md", help="write the tables and summary here")
    a = ap.parse_args(argv)
    os.makedirs(a.workdir, exist_ok=True)
    tools = a.tools.split(",")
    rows = []
    for seed in (int(s) for s in a.seeds.split(",")):
        for rms in (float(x) for x in a.rms.split(",")):
            for case in a.cases.split(","):
                name, kind = case.split(":")
                if a.table_only:
                    tag = tag_of(name, kind, rms, seed)
                    rdir = os.path.join(a.workdir, "rows")
                    sp = os.path.join(rdir, f"{tag}_start.json")
                    for tool in tools:
                        p = os.path.join(rdir, f"{tag}_{tool}.json")
                        if os.path.exists(p) and os.path.exists(sp):
                            r = json.load(open(p))
                            r["before"] = json.load(open(sp))
                            rows.append(r)
                    continue
                rows += run_one(name, kind, rms, seed, tools, a)
    pert = [r for r in rows if r["rms"] > 0]
    dep = [r for r in rows if r["rms"] == 0]
    text = ("Perturbed starts, worst first (Δ = RMSD after − before):\n\n" + markdown(pert)
            + ("\n\nDeposited model as the start (control; RMSD = how far each tool moves it):"
               "\n\n" + markdown(dep) if dep else "")
            + "\n\nStart models:\n\n" + starts_table(rows) + "\n\n"
            + summary_md(summary(rows)) + "\n")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    if a.md:
        with open(a.md, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
