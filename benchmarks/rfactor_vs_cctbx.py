#!/usr/bin/env python3
"""densrefine `rfactor` vs cctbx mmtbx.model_vs_data on every shared X-ray entry: R-work,
R-free (ours / cctbx / deposited header) and time; then the twinned entries with the twin
model (ours with twin="auto" / cctbx with the twin law / servalcat sigmaa --twin, stored);
prints markdown tables.

usage: python3 benchmarks/rfactor_vs_cctbx.py [--repeat 3] [--cases 3io0,5e5z] [--append]
       (from the repo root)

Ours: in-process, time.perf_counter around read_model + rfactor (reading the data
included), twin model off (as cctbx's default), best of --repeat runs (the first, cold
run is shown too). cctbx: the peer script cctbx_model_vs_data.py in the peer venv
(subprocess); its own "seconds" (model_vs_data.run: reading + scaling) and the wall time
of the whole command (interpreter start and imports included). Ratio = cctbx seconds /
ours best. Twin table: ours with twin="auto" (law found, fraction refined), cctbx live
with ``twin_law=LAW``, servalcat's numbers stored in tests/regression/test_xtal_real.py.
--append adds the tables, date, machine and load to benchmarks/RESULTS.md under
"## rfactor vs cctbx model_vs_data".
Needs the peer venv (/tmp/peers/venv or $PEERS_VENV) and ../shared/data.
"""
from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import sys
import time
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.regression import test_xtal_real as T  # noqa: E402

CASES = list(T.CASES)
SECTION = "## rfactor vs cctbx model_vs_data"


def ours(case, repeat, twin="off"):
    import torch

    from densrefine import read_model
    from densrefine.xtal import rfactor

    folder, model, data, *_ = T.CASES[case]
    mpath, dpath = T.require_data(folder, model), T.require_data(folder, data)
    times, rep = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rep = rfactor(read_model(mpath), dpath, twin=twin)
        times.append(time.perf_counter() - t0)
    return rep, times, torch.get_num_threads()


def twin_table(cases):
    lines = ["| entry | law | ours (twin=\"auto\") R-work / R-free / fraction | "
             "cctbx twin_law R-work / R-free / fraction | servalcat --twin (stored) | "
             "header | ours without twin model |", "|---|---|---|---|---|---|---|"]
    for case in cases:
        law, _, (s_w, s_f, s_a) = T.TWIN[case]
        rep, _, _ = ours(case, 1, twin="auto")
        ref = T.run_cctbx(case, [f"twin_law={law}"])
        tw = rep.twin
        c_alpha = T.TWIN[case][1][2]
        *_, h_work, h_free = T.CASES[case]
        lines.append(
            f"| {case} | {tw['law']} | {fmt(rep.r_work)} / {fmt(rep.r_free)} / "
            f"{fmt(tw['fraction'], '{:.3f}')} | {fmt(ref['r_work'])} / {fmt(ref['r_free'])} / "
            f"{c_alpha:.2f} | {s_w:.4f} / {s_f:.4f} / {s_a:.3f} | {h_work:.3f} / {h_free:.3f} | "
            f"{fmt(tw['untwinned']['r_work'])} / {fmt(tw['untwinned']['r_free'])} |")
        print(lines[-1], flush=True)
    return lines


def cctbx(case):
    t0 = time.perf_counter()
    ref = T.run_cctbx(case)
    return ref, time.perf_counter() - t0


def fmt(x, f="{:.4f}"):
    return "–" if x is None else f.format(x)


def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return (f"{platform.machine()}, {os.cpu_count()} CPUs ({cpu}); load average before "
            f"the run {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min)")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cases", default=",".join(CASES),
                    help="comma-separated subset of %(default)s")
    ap.add_argument("--append", action="store_true", help="append to benchmarks/RESULTS.md")
    a = ap.parse_args()
    env = machine()
    lines = ["| entry | R-work ours / cctbx / header | R-free ours / cctbx / header | "
             "n work / free (ours; cctbx) | ours s (best; first) | cctbx s (own; wall) | "
             "ratio cctbx/ours | ours split: read / F_calc / mask / scale s |",
             "|---|---|---|---|---|---|---|---|"]
    threads = None
    cases = [c for c in a.cases.split(",") if c]
    for case in cases:
        ref, wall = cctbx(case)
        rep, times, threads = ours(case, a.repeat)
        *_, h_work, h_free = T.CASES[case]
        best = min(times)
        tm = rep.timings                                   # of the last run
        split = " / ".join(f"{tm.get(k, float('nan')):.2f}"
                           for k in ("read_s", "fcalc_s", "mask_s", "scale_s"))
        lines.append(
            f"| {case} | {fmt(rep.r_work)} / {fmt(ref['r_work'])} / {fmt(h_work, '{:.3f}')} | "
            f"{fmt(rep.r_free)} / {fmt(ref['r_free'])} / {fmt(h_free, '{:.3f}')} | "
            f"{rep.n_work} / {rep.n_free}; {ref['n_work']} / {ref['n_free']} | "
            f"{best:.2f}; {times[0]:.2f} | {ref['seconds']:.2f}; {wall:.1f} | "
            f"{ref['seconds'] / best:.1f}× | {split} |")
        print(lines[-1], flush=True)
    twins = twin_table([c for c in T.TWIN if c in cases])
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = (f"\n### {stamp}: `python3 benchmarks/rfactor_vs_cctbx.py --repeat {a.repeat}`\n\n"
            f"Machine: {env}; torch threads {threads}. {T.CASES['5a3h_mtz'][2]} has no "
            "usable free set (R-free n/a in both). Ours without a twin model in the first "
            "table (cctbx's default).\n\n")
    text = head + "\n".join(lines) + "\n\n" + "\n".join(twins) + "\n"
    print(text)
    if a.append:
        res = ROOT / "benchmarks" / "RESULTS.md"
        old = res.read_text()
        intro = "" if SECTION in old else (
            f"\n{SECTION} (`benchmarks/rfactor_vs_cctbx.py`, issue 4)\n\n"
            "densrefine `rfactor` (FFT F_calc with symmetry, or direct summation for small "
            "models with ANISOU; cctbx flat mask via gemmi; k_sol/B_sol, anisotropic and "
            "binned scales on the work set; R with mmtbx's k1 rescale) against "
            "cctbx-base 2025.11 `mmtbx.model_vs_data` (peer script). Acceptance: |ΔR| ≤ 0.01 "
            "vs cctbx, ≤ 0.015 vs header; speed on 3IO0 faster than cctbx, goal ≤ 1 s.\n")
        with open(res, "a") as f:
            f.write(intro + text)


if __name__ == "__main__":
    main()
