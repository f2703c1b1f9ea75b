"""Generate the ML density data set: fragments → PySCF → Coulomb fits → chunk npz files.

Usage (from the repository root; PySCF needed, ``pip install -e .[mldata]``)::

    OMP_NUM_THREADS=1 nice -n 19 python3 -m densrefine.ml.generate --out ml_data \\
        --phase qm --resume --worker 0 --workers 2 &      # and --worker 1 likewise
    python3 -m densrefine.ml.generate --out ml_data --phase pack --chunk 50

Phase ``qm`` walks the fragment plan (`densrefine.ml.fragments.sample_plan`, balanced
round-robin over (kind, residue, state)); worker k of W takes plan entries i with
i mod W = k, runs one single point each and writes ``<out>/raw/<id>.npz`` (geometry,
AO density matrix, energy, timing; not committed) and appends to ``<out>/raw/done.txt``.
With ``--resume`` entries whose raw file exists are skipped; creating ``<out>/STOP`` makes
every worker exit after its current fragment. Phase ``pack`` fits every raw file
(`densrefine.ml.fitting`) and writes ``<out>/chunk_XXX.npz`` (``--chunk`` fragments each)
plus ``<out>/index.json``.
"""
from __future__ import annotations

import argparse
import logging
import os
import time
import traceback

import numpy as np

log = logging.getLogger("densrefine")

DEFAULT_DATA = os.environ.get("DENSREFINE_DATA", os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "shared", "data"))


def _save_raw(path, frag, res):
    tmp = path + ".tmp.npz"
    np.savez_compressed(
        tmp, elements=np.asarray(frag["elements"]).astype("U2"),
        names=np.asarray(frag["names"]).astype("U6"),
        resnames=np.asarray(frag["resnames"]).astype("U4"), xyz=frag["xyz"],
        charges=np.asarray(frag["charges"], np.int8),
        meta=np.array([frag["id"], frag["kind"], frag["resname"], frag["state"],
                       frag["source"], str(frag["jitter"])]),
        dm=res.get("dm", np.zeros((0, 0))), energy=res.get("energy", np.nan),
        converged=res.get("converged", False), seconds=res.get("seconds", np.nan),
        error=np.array(res.get("error", "")))
    os.replace(tmp, path)


def run_qm_phase(out, data_dir, worker=0, workers=1, resume=True, limit=None, seed=0):
    """Run (or resume) the single points of this worker's share of the plan."""
    from .fragments import enumerate_fragments, sample_plan
    from .qm import run_single_point

    raw = os.path.join(out, "raw")
    os.makedirs(raw, exist_ok=True)
    plan = sample_plan(enumerate_fragments(data_dir), seed=seed)
    mine = [f for i, f in enumerate(plan) if i % workers == worker][:limit]
    log.info("QM phase: worker %d/%d, %d plan entries", worker, workers, len(mine))
    for f in mine:
        if os.path.exists(os.path.join(out, "STOP")):
            log.info("STOP file found: exiting")
            break
        path = os.path.join(raw, f["id"] + ".npz")
        if resume and os.path.exists(path):
            continue
        try:
            res = run_single_point(f["elements"], f["xyz"], int(np.sum(f["charges"])))
        except Exception as exc:  # recorded, the run goes on
            res = {"error": f"{type(exc).__name__}: {exc}",
                   "seconds": np.nan}
            log.warning("%s failed: %s", f["id"], traceback.format_exc(limit=2))
        _save_raw(path, f, res)
        with open(os.path.join(raw, "done.txt"), "a") as fh:
            fh.write(f"{f['id']} {len(f['elements'])} {res.get('seconds', np.nan):.1f} "
                     f"{res.get('energy', np.nan):.8f} {res.get('converged', False)} "
                     f"{time.strftime('%H:%M:%S')}\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="ml_data")
    p.add_argument("--data", default=os.path.normpath(DEFAULT_DATA),
                   help="shared data folder with the source models")
    p.add_argument("--phase", choices=("qm", "pack", "all"), default="all")
    p.add_argument("--chunk", type=int, default=50, help="fragments per chunk npz")
    p.add_argument("--resume", action="store_true", help="skip fragments already computed")
    p.add_argument("--worker", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--limit", type=int, default=None, help="at most this many per worker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frozen", action="store_true",
                   help="pack only the fragments already in <out>/index.json")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.phase in ("qm", "all"):
        run_qm_phase(a.out, a.data, a.worker, a.workers, a.resume, a.limit, a.seed)
    if a.phase in ("pack", "all"):
        from .pack import pack
        pack(a.out, a.chunk, a.frozen)


if __name__ == "__main__":
    main()
