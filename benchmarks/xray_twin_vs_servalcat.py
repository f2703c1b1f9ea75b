#!/usr/bin/env python3
"""Twinned X-ray refinement (issue 17): 1L2H from a 0.5 Å start, `densrefine fit --twin auto`
side by side with servalcat ``refine_xtal_norefmac --twin`` (intensities IMEAN).

usage: PYTHONPATH=. python3 benchmarks/xray_twin_vs_servalcat.py [WORKDIR]
Prints one JSON line after the start, servalcat and densrefine are scored (cctbx
model_vs_data with and without twin_law=-h,k,-l; cctbx geometry, H stripped; RMSD to the
deposited model). CPU by GNU time (`xray_fit_vs_servalcat.timed`). Results:
benchmarks/RESULTS.md ("Twinned data: 1L2H").
"""
import json
import os
import subprocess
import sys
import warnings

warnings.simplefilter("ignore")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gemmi
import numpy as np
import xray_fit_vs_servalcat as B

import densrefine as dr
from densrefine.perturb import perturb

wd = sys.argv[1] if len(sys.argv) > 1 else "/tmp/densrefine_xray_twin_vs_servalcat"
os.makedirs(wd, exist_ok=True)
mtz, dep = (os.path.join(B.DATA, "1l2h", f) for f in ("1l2h.mtz.gz", "1l2h.cif.gz"))
start = os.path.join(wd, "1l2h_rms0.5_s0.pdb")
if not os.path.exists(start):
    st = gemmi.read_structure(dep); st.remove_hydrogens(); st.setup_entities(); noh = os.path.join(wd, "1l2h_noh.pdb"); st.write_pdb(noh)
    p = perturb(dr.read_model(noh), rms=0.5, seed=0); at = p.atoms
    p = p.with_atoms(at.replace(b_iso=np.full(len(at.b_iso), float(np.mean(at.b_iso))), u_aniso=None))
    dr.write_model(p, start)
def cctbx(model):
    r = B.peer_json("cctbx_model_vs_data.py", model, mtz, "twin_law=-h,k,-l")
    r0 = B.peer_json("cctbx_model_vs_data.py", model, mtz)
    g = B.peer_json("cctbx_geometry.py", B.no_h_copy(model, wd))
    return {"twin": {k: r.get(k) for k in ("r_work", "r_free", "twin_fraction", "error")},
            "no_twin": {k: r0.get(k) for k in ("r_work", "r_free")},
            "bond": g.get("bond_rmsd"), "angle": g.get("angle_rmsd"), "rmsd_dep": B.rmsd_to(dep, model)}
out = {"start": cctbx(start)}
print(json.dumps(out), flush=True)
monlib = subprocess.run([B.PEERS_PY, "-c", f"import sys; sys.path.insert(0, {B.PEERS!r}); "
                         "import servalcat_refine as s; print(s.default_monlib())"],
                        capture_output=True, text=True).stdout.strip()
sdir = os.path.join(wd, "servalcat"); os.makedirs(sdir, exist_ok=True)
exe = os.path.join(os.path.dirname(B.PEERS_PY), "servalcat")
cmd = [exe, "refine_xtal_norefmac", "--hklin", mtz, "--labin", "IMEAN,SIGIMEAN,FreeR_flag", "--model", start,
       "--twin", "-s", "xray", "--monlib", monlib, "-o", "refined"]
p, secs, cpu = B.timed(cmd, cwd=sdir, timeout=7200)
out["servalcat"] = {"wall": secs, "cpu": cpu, "rc": p.returncode, "cmd": " ".join(cmd), "tail": p.stdout[-1500:] if p.returncode else None}
sm = os.path.join(sdir, "refined.pdb") if os.path.exists(os.path.join(sdir, "refined.pdb")) else os.path.join(sdir, "refined.mmcif")
if p.returncode == 0: out["servalcat"].update(cctbx(sm))
print(json.dumps(out), flush=True)
ddir = os.path.join(wd, "densrefine"); os.makedirs(ddir, exist_ok=True)
cmd = [sys.executable, "-m", "densrefine", "fit", start, mtz, "-o", os.path.join(ddir, "fit"), "-q", "--twin", "auto"]
p, secs, cpu = B.timed(cmd, cwd=B.ROOT, env=dict(os.environ, PYTHONPATH=B.ROOT), timeout=7200)
out["densrefine"] = {"wall": secs, "cpu": cpu, "rc": p.returncode, "tail": p.stderr[-1500:] if p.returncode else None}
if p.returncode == 0:
    s = json.load(open(os.path.join(ddir, "fit_stats.json"))); x = s["xray"]
    out["densrefine"].update(cctbx(os.path.join(ddir, "fit.pdb")), own_after=x["after"].get("r_work"), own_free=x["after"].get("r_free"),
                             own_twin=(x["after"].get("twin") or {}).get("fraction"))
print(json.dumps(out), flush=True)
