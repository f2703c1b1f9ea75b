#!/usr/bin/env python3
"""Throughput of `densrefine batch` on the embedded cluster vs the same fits one after another.

usage: python benchmarks/batch_throughput.py [--jobs 20] [--fit-args "--cycles 2"]
           [--pairs ntd,3j6b,...] [--workdir DIR] [--modes sequential,batch1,batch]
           [--json FILE]

Jobs: the real pairs of ../shared/data that a fit finishes in well under a minute —
cryo-EM: 6VYB NTD in EMD-21457 (three origin conventions), 3J6B chain 9 in EMD-2566,
6YYT RNA in EMD-11007; X-ray: 5E5Z, 4HG7, 3NR7 — cycled with seeds 0, 1, … to make
--jobs fits (a seed changes the job key, so no job is skipped); ``--pairs`` keeps only the
named pairs (e.g. without the X-ray fits of 4HG7 and 3NR7, which take minutes each on a
loaded machine). Three ways to run them:

* ``sequential``: ``densrefine fit`` run --jobs times one after another (a new process
  each: what a shell loop does);
* ``batch1``: ``densrefine batch --workers 1`` (the same fits, one at a time, in one
  long-lived worker: the saving from not starting a process per job);
* ``batch``: ``densrefine batch`` on the default embedded cluster (workers × threads
  sized to the machine).

Reported: wall time of each (including cluster start-up), the ratios to sequential, the
load average before and after (the machine may be shared), and the job statuses.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.environ.get("DENSREFINE_DATA", os.path.join(os.path.dirname(ROOT), "shared", "data"))

PAIRS = [  # (name, model, data, resolution or None)
    ("ntd", "emd-21457_6vyb-ntd/6vyb_Ndom.pdb.gz", "emd-21457_6vyb-ntd/emd_21457_seg.mrc", 3.2),
    ("ntd_nstart", "emd-21457_6vyb-ntd/6vyb_Ndom.pdb.gz",
     "emd-21457_6vyb-ntd/emd_21457_seg_nstart.mrc", 3.2),
    ("ntd_orig0", "emd-21457_6vyb-ntd/6vyb_Ndom_shifted.pdb.gz",
     "emd-21457_6vyb-ntd/emd_21457_seg_orig0.mrc", 3.2),
    ("3j6b", "emd-2566_3j6b-chain9/3J6B_9.pdb.gz", "emd-2566_3j6b-chain9/2566_3J6B_9.mrc", 3.2),
    ("6yyt", "emd-11007_6yyt-rna/6yyt_rna.pdb.gz", "emd-11007_6yyt-rna/emd_11007_rna_box.map",
     2.9),
    ("5e5z", "5e5z/5e5z.pdb.gz", "5e5z/5e5z.mtz.gz", None),
    ("4hg7", "4hg7/4hg7_no_ligand.pdb.gz", "4hg7/4hg7.mtz.gz", None),
    ("3nr7", "3nr7/3nr7.pdb.gz", "3nr7/3nr7.mtz", None),
]


def jobs(n, fit_args, pairs=None):
    use = [p for p in PAIRS if pairs is None or p[0] in pairs]
    if pairs is not None and len(use) != len(set(pairs)):
        raise SystemExit(f"--pairs: unknown name(s) in {sorted(pairs)}; the pairs are "
                         f"{', '.join(p[0] for p in PAIRS)}")
    out = []
    for i in range(n):
        name, m, d, r = use[i % len(use)]
        seed = i // len(use)
        out.append({"name": f"{name}_s{seed}", "model": os.path.join(DATA, m),
                    "data": os.path.join(DATA, d), "resolution": r,
                    "options": f"{fit_args} --seed {seed}".strip()})
    return out


def write_manifest(path, rows):
    with open(path, "w") as f:
        f.write("model,data,resolution,name,options\n")
        f.writelines(f"{r['model']},{r['data']},{r['resolution'] or ''},{r['name']},"
                    f"{r['options']}\n" for r in rows)


def timed(cmd):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT)
    return time.perf_counter() - t0, p.returncode, p.stderr[-1500:]


def sequential(rows, workdir):
    out, statuses = os.path.join(workdir, "sequential"), []
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    for r in rows:
        cmd = [sys.executable, "-m", "densrefine", "fit", r["model"], r["data"], "-o",
               os.path.join(out, r["name"], r["name"]), "-q", *shlex.split(r["options"])]
        if r["resolution"]:
            cmd += ["-d", str(r["resolution"])]
        _, rc, _ = timed(cmd)
        statuses.append(rc)
    return {"wall_s": round(time.perf_counter() - t0, 1),
            "ok": sum(rc == 0 for rc in statuses), "failed": sum(rc != 0 for rc in statuses)}


def batch(manifest, workdir, name, extra):
    out = os.path.join(workdir, name)
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "densrefine", "batch", manifest, "-o", out, "-q", *extra]
    wall, rc, err = timed(cmd)
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    job_s = [j["time_s"] for j in s["jobs"] if j.get("time_s")]
    return {"wall_s": round(wall, 1), "returncode": rc, "counts": s["counts"],
            "cluster": s.get("cluster", {}).get("description"),
            "sum_job_s": round(sum(job_s), 1), "command": shlex.join(cmd),
            "stderr": err if rc else ""}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--fit-args", default="--cycles 2")
    ap.add_argument("--modes", default="sequential,batch1,batch")
    ap.add_argument("--pairs", help="comma-separated pair names to use (default: all)")
    ap.add_argument("--workdir", default="/tmp/densrefine_batch_bench")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    os.makedirs(a.workdir, exist_ok=True)
    rows = jobs(a.jobs, a.fit_args, a.pairs.split(",") if a.pairs else None)
    man = os.path.join(a.workdir, "jobs.csv")
    write_manifest(man, rows)
    res = {"jobs": a.jobs, "fit_args": a.fit_args, "cpus": os.cpu_count(),
           "pairs": sorted({r["name"].rsplit("_s", 1)[0] for r in rows}),
           "manifest": man}
    for mode in a.modes.split(","):
        load0 = os.getloadavg()[0]
        if mode == "sequential":
            r = sequential(rows, a.workdir)
        elif mode == "batch1":
            r = batch(man, a.workdir, "batch1", ["--workers", "1"])
        else:
            r = batch(man, a.workdir, "batch", [])
        r.update(load_avg_start=load0, load_avg_end=os.getloadavg()[0])
        res[mode] = r
        print(mode, json.dumps(r), file=sys.stderr, flush=True)
    if "sequential" in res:
        for mode in ("batch1", "batch"):
            if mode in res:
                res[f"{mode}_over_sequential"] = round(res[mode]["wall_s"]
                                                       / res["sequential"]["wall_s"], 3)
    print(json.dumps(res, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
