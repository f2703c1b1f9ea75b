"""Live mode latency and exactness (issue 23): X-ray 3AY4 and 3IO0, cryo-EM 5NI1/EMD-3488.

For each entry a `densrefine.live.Session` is started once; then

* one-residue edits (≤ 20 atoms, rigid shift 0.3–0.8 Å plus 0.1 Å noise) →
  R-work/R-free (X-ray) or CC_mask + the residue's CC (cryo-EM): median wall and process
  CPU time over ``--n`` calls;
* 200-atom edits (a contiguous stretch, same perturbation) → R (X-ray);
* 20 Å map boxes (X-ray 2mFo−DFc + mFo−DFc, cryo-EM model + difference);
* exactness: after the edits, R from the session vs R from a fresh F_calc / F_mask with
  the session's scales (the incremental part), and vs a fresh `make_fmodel` (what
  ``densrefine rfactor`` computes: F_calc, mask and scales refitted); cryo-EM: CC_mask
  vs `score` on the edited model.

Timings run with one torch thread (what ``densrefine serve`` uses by default). The load
average is printed with the numbers: on this shared 2-core machine other jobs compete,
so process CPU time is the better estimate of what an idle machine gives.

Usage: ``python benchmarks/live.py [--n 40] [--entries 3ay4,3io0,5ni1] [--json out.json]``

``--plugin-calls N``: instead, the per-call latency of the plugins' ordinary ``score``
and ``fit`` (5NI1 in EMD-3488, d = 3.2 Å; fit: A/100-110, stages xyz, 2 cycles) through
the host-neutral exchange module, as the Coot and PyMOL plugins (and ChimeraX's Run) call
them: a new ``densrefine`` process per call (before) vs the ``run`` request of a warm
``densrefine serve`` session (after). The two are interleaved, N calls each, so both see
the same machine load; the results of the two routes are checked equal.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

DATA = os.environ.get("DENSREFINE_DATA",
                      os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                   "shared", "data"))
ENTRIES = {
    "3ay4": ("3ay4/3ay4.pdb.gz", "3ay4/3ay4.mtz.gz", None),
    "3io0": ("3io0/3io0_before.pdb.gz", "3io0/3io0-sf.mtz", None),
    "5ni1": ("emd-3488_5ni1/5ni1_updated.cif.gz", "emd-3488_5ni1/emd_3488.mrc", 3.2),
}


def _timed(fn, n):
    wall, cpu, out = [], [], None
    for _ in range(n):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {"wall_ms": 1e3 * float(np.median(wall)), "cpu_ms": 1e3 * float(np.median(cpu)),
            "wall_p90_ms": 1e3 * float(np.percentile(wall, 90))}, out


def _rigid(xyz, rng):
    d = rng.normal(size=3)
    d *= rng.uniform(0.3, 0.8) / np.linalg.norm(d)
    return xyz + d + rng.normal(0, 0.1, xyz.shape)


def _pairs(s, core, pick, rng, n):
    """Time n edits that move a group away from its deposited place and n that put it
    back (so the model stays near the deposited one, as during building)."""
    home = core.xyz.copy()
    state = {"sel": None}

    def edit():
        if state["sel"] is None:
            sel = pick()
            state["sel"] = sel
            return s.update(sel, _rigid(home[sel], rng))
        sel, state["sel"] = state["sel"], None
        return s.update(sel, home[sel])
    return _timed(edit, 2 * n)


def _residues(at, lo=4, hi=20):
    res_ids = np.unique(at.res_index[~at.is_hydrogen])
    return [r for r in res_ids if lo <= (at.res_index == r).sum() <= hi]


def bench_xray(name, s, rng, n):
    from densrefine.xtal.api import make_fmodel
    from densrefine.xtal.scale import f_model_abs, r_factor

    core = s.core
    at = core.model.atoms
    protein = _residues(at)

    def one():
        return np.flatnonzero(at.res_index == protein[rng.integers(len(protein))])[:20]

    def many():
        i0 = int(rng.integers(0, len(at) - 200))
        return np.arange(i0, i0 + 200)

    core.rescale_change = float("inf")      # as the server: scales refitted in idle time
    for _ in range(3):
        sel = one()
        s.update(sel, core.xyz[sel])
    t1, out1 = _pairs(s, core, one, rng, n)
    t2, _ = _pairs(s, core, many, rng, max(4, n // 4))
    c = core.xyz[len(at) // 2]
    t3, _ = _timed(lambda: s.maps(center=c, size=20.0), max(5, n // 4))
    t4, _ = _timed(core.rescale, 2)
    home = core.xyz.copy()
    fm = core.fmodel
    checks = []
    for label, pick in (("one residue", one), ("200 atoms", many)):
        sel = pick()
        s.update(sel, _rigid(home[sel], rng))          # from freshly fitted scales
        core.flush()
        fresh = make_fmodel(core.current_model(), ENTRY_DATA[name], twin=fm.twin_mode)
        fa = f_model_abs(fresh.fc, fresh.fm, fm.sc, fm.s2, fm.scales,
                         None if fm.twin_f is None else fresh.twin_f)
        checks.append({
            "edit": label, "change": core.change(),
            "dr_same_scales": max(abs(fm.r_work - r_factor(fresh.fo, fa, fresh.work)),
                                  abs(fm.r_free - r_factor(fresh.fo, fa, fresh.free))),
            "dr_vs_rfactor": max(abs(fm.r_work - fresh.r_work), abs(fm.r_free - fresh.r_free)),
            "r_session": [fm.r_work, fm.r_free], "r_rfactor": [fresh.r_work, fresh.r_free]})
        core.rescale()
        checks[-1]["dr_vs_rfactor_after_rescale"] = max(abs(fm.r_work - fresh.r_work),
                                                        abs(fm.r_free - fresh.r_free))
        s.update(sel, home[sel])
        core.rescale()
    return {"one_residue": t1, "atoms_200": t2, "map_box_20A": t3, "rescale": t4,
            "checks": checks, "n_updates": int(core.version),
            "example": {k: out1[k] for k in ("r_work", "r_free", "timings")}}


def bench_em(name, s, rng, n):
    import densrefine as dr

    core = s.core
    at = core.model.atoms
    protein = _residues(at)

    def one():
        return np.flatnonzero(at.res_index == protein[rng.integers(len(protein))])[:20]

    t1, out = _pairs(s, core, one, rng, n)
    sel = one()
    out = s.update(sel, _rigid(core.xyz[sel], rng))
    c = core.xyz[len(at) // 2]
    t3, _ = _timed(lambda: s.maps(center=c, size=20.0), max(5, n // 4))
    rep = dr.score(core.current_model(), core.grid, core.d, fsc=False)
    by_res = {(r["chain"], r["res_seq"]): r["cc"] for r in rep.residues}
    dres = max(abs(r["cc"] - by_res[(r["chain"], r["res_seq"])]) for r in out["residues"])
    return {"one_residue": t1, "map_box_20A": t3, "cc_mask": core.cc_mask(),
            "score_cc_mask": rep.cc_mask, "max_dcc_mask": abs(core.cc_mask() - rep.cc_mask),
            "max_dcc_residue": dres, "n_updates": int(core.version)}


ENTRY_DATA = {}


def bench_plugin_calls(n):
    """Median wall seconds per ordinary score / fit call, process vs warm session."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    sys.path.insert(0, os.path.join(root, "plugins", "exchange"))
    import tempfile

    import densrefine_exchange as ex
    import densrefine_live as live

    os.environ["PYTHONPATH"] = os.pathsep.join(
        [os.path.abspath(root)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    os.environ["DENSREFINE_EXE"] = f"{sys.executable} -m densrefine"
    m, d, res = ENTRIES["5ni1"]
    model, emap = os.path.join(DATA, m), os.path.join(DATA, d)
    t = time.perf_counter()
    client = live.LiveClient.start(model, emap, res)
    start = time.perf_counter() - t
    times = {k: [] for k in ("score_process", "score_session", "fit_process", "fit_session")}
    same = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(n):
                got = {}
                for route, c in (("process", None), ("session", client)):
                    t = time.perf_counter()
                    sc = ex.run_score(model, emap, res, workdir=f"{tmp}/s{route}{i}", live=c)
                    times["score_" + route].append(time.perf_counter() - t)
                    t = time.perf_counter()
                    ft = ex.run_fit(model, emap, res, select="A/100-110", stages="xyz",
                                    cycles=2, workdir=f"{tmp}/f{route}{i}", live=c,
                                    model_ext=".cif")
                    times["fit_" + route].append(time.perf_counter() - t)
                    with open(ft.model_path, "rb") as fh:
                        got[route] = (sc["cc_mask"], ft.stats["after"]["cc_mask"], fh.read())
                same.append(got["process"] == got["session"])
                print(i, {k: round(v[-1], 2) for k, v in times.items()}, os.getloadavg()[0],
                      flush=True)
    finally:
        client.close()
    out = {k + "_s": float(np.median(v)) for k, v in times.items()}
    out.update(all_s=times, session_start_s=start, identical=all(same), n=n)
    return out


def main(argv=None):
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--entries", default="3ay4,3io0,5ni1")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json")
    p.add_argument("--plugin-calls", type=int, metavar="N",
                   help="time the plugins' ordinary score/fit calls instead (see above)")
    a = p.parse_args(argv)
    if a.plugin_calls:
        out = {"load_before": os.getloadavg()}
        out.update(bench_plugin_calls(a.plugin_calls))
        out["load_after"] = os.getloadavg()
        print(json.dumps({k: v for k, v in out.items() if k != "all_s"}, default=float))
        if a.json:
            with open(a.json, "w") as fh:
                json.dump(out, fh, indent=1, default=float)
        return out
    torch.set_num_threads(a.threads)
    from densrefine.live import Session

    out = {"load_before": os.getloadavg(), "threads": a.threads, "entries": {}}
    for name in a.entries.split(","):
        m, d, res = ENTRIES[name]
        ENTRY_DATA[name] = os.path.join(DATA, d)
        t = time.perf_counter()
        s = Session(os.path.join(DATA, m), os.path.join(DATA, d), res)
        start = time.perf_counter() - t
        rng = np.random.default_rng(23)
        r = (bench_xray if s.kind == "xray" else bench_em)(name, s, rng, a.n)
        r.update(start_s=start, n_atoms=s.n_atoms, load=os.getloadavg())
        out["entries"][name] = r
        print(name, json.dumps(r, default=float), flush=True)
    out["load_after"] = os.getloadavg()
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1, default=float)
    return out


if __name__ == "__main__":
    main()
