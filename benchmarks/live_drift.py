"""Live mode: rounding drift of the incremental F_calc / F_mask over many edits (issue 23).

Applies ``--n`` random updates (1-5 atoms moved 0.3 Å (σ) from their deposited
positions, every third also raising their B by U(0, 2) Å²) to 5E5Z through
`densrefine.live.xray.XrayLive` with no refit in between (the test
``test_ten_thousand_random_updates_leave_r_exact`` does the same), then prints

* ‖F_calc − fresh‖/‖fresh‖ against the same FFT grid and blur (`XrayLive._full_fc`) and
  against `make_fmodel` (what ``densrefine rfactor`` computes), and the same for F_mask;
* R-work/R-free of the session minus R of the fresh F_calc/F_mask with the session's scales;
* the same after the refit the server runs when idle (`rescale_async` + `poll_rescale`),
  and its R minus `make_fmodel`'s (scales refitted there too).

Usage: ``python benchmarks/live_drift.py [--n 10000]`` (≈ 4-8 min on the shared 2-core VM).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

DATA = os.environ.get("DENSREFINE_DATA",
                      os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                   "shared", "data"))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10000)
    args = p.parse_args()
    import torch

    import densrefine as dr
    from densrefine.live.xray import XrayLive
    from densrefine.xtal.api import make_fmodel
    from densrefine.xtal.scale import f_model_abs, r_factor

    torch.set_num_threads(1)
    pdb, mtz = (os.path.join(DATA, "5e5z", f) for f in ("5e5z.pdb.gz", "5e5z.mtz.gz"))
    model = dr.read_model(pdb)
    model = model.with_atoms(model.atoms.replace(u_aniso=None))      # the FFT path
    s = XrayLive(model, mtz, twin="off")
    s.rescale_change = float("inf")
    rng = np.random.default_rng(7)
    home = s.xyz.copy()
    t0 = time.perf_counter()
    for i in range(args.n):
        k = int(rng.integers(1, 6))
        sel = rng.choice(len(home), k, replace=False)
        s.update(sel, home[sel] + rng.normal(0, 0.3, (k, 3)),
                 b_iso=None if i % 3 else s.b_iso[sel] + rng.uniform(0, 2, k))
    s.flush()
    print(f"{args.n} updates of {len(home)} atoms in {time.perf_counter() - t0:.1f} s; "
          f"smallest B {s.b_min:.2f} at the start, {s.b_iso.min():.2f} now")
    fresh = make_fmodel(s.current_model(), mtz, twin="off")
    rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))

    def report(when):
        n = s.n
        fa = f_model_abs(fresh.fc, fresh.fm, s.fmodel.sc, s.fmodel.s2, s.fmodel.scales)
        print(f"{when}: F_calc vs same grid {rel(s.fc_all[:n], s._full_fc()[:n]):.2e}, "
              f"vs rfactor's {rel(s.fc_all[:n], fresh.fc):.2e}; F_mask vs rfactor's "
              f"{rel(s.fm_all[:n], fresh.fm):.2e}; R-work - R(fresh F, same scales) "
              f"{s.fmodel.r_work - r_factor(fresh.fo, fa, fresh.work):+.2e}, R-free "
              f"{s.fmodel.r_free - r_factor(fresh.fo, fa, fresh.free):+.2e}")

    report("before any refit")
    s.rescale_async()
    while not s.poll_rescale():
        time.sleep(0.05)
    report("after the idle refit")
    print(f"after the idle refit: R-work - rfactor {s.fmodel.r_work - fresh.r_work:+.2e}, "
          f"R-free - rfactor {s.fmodel.r_free - fresh.r_free:+.2e}")


if __name__ == "__main__":
    main()
