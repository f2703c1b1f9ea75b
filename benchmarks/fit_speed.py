#!/usr/bin/env python3
"""Where `densrefine.fit` spends its time on 5NI1 / EMD-3488 (3.2 Å): evaluations and CPU per stage.

usage: python benchmarks/fit_speed.py [--cases dep,real1,real15,sim1] [--config JSON]
                                      [--threads 1] [--root DIR]

Cases (truth = deposited 5NI1, 4579 atoms):
  dep     the deposited model in EMD-3488 ("RMSD" = how far the fit moved it)
  real1   `densrefine.perturb.perturb(truth, rms=1.0, seed=0)` in EMD-3488
  real15  the same at 1.5 Å RMS
  sim1    the 1.0 Å start in the map of tests/regression/test_fit_real.py (the truth's
          Fourier map + white noise, 0.35 × signal SD, seed 0)
Runs `densrefine.fit` in this process (no CLI start-up, no file output) with ``threads``
fixed (default 1: load-independent on a shared machine) and reports, per stage, the
number of target+gradient evaluations, wall and CPU seconds of the optimiser calls,
plus total CPU (user + sys), final RMSD to the truth (non-H), CC_mask (densrefine's
score) and bond/angle RMSD. --config takes `FitConfig` overrides as JSON;
keys "_module.NAME" set module constants of densrefine.refine (e.g.
'{"_optim.HISTORY": 30}'). --root imports densrefine from another checkout (before/after).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("DENSREFINE_DATA",
                      os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "data"))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _instrument(stages, calls):
    """Wrap stages.minimise (what the fit stages call): per call (evaluations, wall s, CPU s)."""
    orig = stages.minimise

    def wrapped(param, fn, iterations, *a, **k):
        n = [0]

        def counted():
            n[0] += 1
            return fn()
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return orig(param, counted, iterations, *a, **k)
        finally:
            calls.append((n[0], time.perf_counter() - t0, time.process_time() - c0))
    stages.minimise = wrapped


def inputs(case, dr):
    from densrefine.perturb import perturb

    d = os.path.join(DATA, "emd-3488_5ni1")
    truth = dr.read_model(os.path.join(d, "5ni1_updated.cif.gz"))
    emap = dr.read_map(os.path.join(d, "emd_3488.mrc"))
    if case == "dep":
        return truth, truth, emap
    rms = {"real1": 1.0, "real15": 1.5, "sim1": 1.0}[case]
    if case == "sim1":
        sim = dr.simulate(truth, like=emap, resolution=3.2, method="fourier").values
        rng = np.random.default_rng(0)
        noisy = sim + rng.normal(size=sim.shape) * 0.35 * sim[sim > 0.1 * sim.max()].std()
        emap = emap.with_values(noisy.astype(np.float32))
    return truth, perturb(truth, rms=rms, seed=0), emap


def run(case, cfg, threads, dr, calls):
    truth, start, emap = inputs(case, dr)
    cfg = dict(cfg, threads=threads)
    calls.clear()
    t0, c0 = time.perf_counter(), _cpu()
    res = dr.fit(start, emap, resolution=3.2, config=cfg, seed=0)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    heavy = ~truth.atoms.is_hydrogen
    diff = (res.model.atoms.xyz - truth.atoms.xyz)[heavy]
    after = res.stats["after"]
    out = {"case": case, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
           "rmsd": round(float(np.sqrt((diff**2).sum(1).mean())), 4),
           "cc_mask": round(after["cc_mask"], 4), "bond": round(after["geometry"]["bond_rmsd"], 4),
           "angle": round(after["geometry"]["angle_rmsd"], 3),
           "evals": sum(c[0] for c in calls), "stages": {}}
    recs = [r for r in res.cycles if r["stage"] != "chi1"]   # one minimise call per record
    for r, (n, w, c) in zip(recs, calls):
        s = out["stages"].setdefault(r["stage"], [0, 0.0, 0.0])
        s[0], s[1], s[2] = s[0] + n, round(s[1] + w, 2), round(s[2] + c, 2)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="dep,real1,real15,sim1")
    ap.add_argument("--config", default="{}")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--root", default=os.path.dirname(HERE))
    a = ap.parse_args(argv)
    sys.path.insert(0, a.root)
    import densrefine as dr
    from densrefine.refine import stages

    cfg = json.loads(a.config)
    for key in [k for k in cfg if k.startswith("_")]:
        mod, name = key[1:].split(".")
        setattr(importlib.import_module(f"densrefine.refine.{mod}"), name, cfg.pop(key))
    calls = []
    _instrument(stages, calls)
    print("| case | CPU s | wall s | evaluations | rigid / sse / xyz / b: evals, CPU s "
          "| RMSD Å | CC_mask | bond Å / angle ° |\n|---|---|---|---|---|---|---|---|")
    for case in a.cases.split(","):
        o = run(case, cfg, a.threads, dr, calls)
        print(json.dumps(o), file=sys.stderr, flush=True)
        st = " / ".join(f"{v[0]}, {v[2]:.1f}" for v in o["stages"].values())
        print(f"| {case} | {o['cpu_s']:.1f} | {o['wall_s']:.1f} | {o['evals']} | {st} | "
              f"{o['rmsd']:.3f} | {o['cc_mask']:.4f} | {o['bond']:.4f} / {o['angle']:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
