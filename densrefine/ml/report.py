"""Baseline scores of the data set: IAM and the stage-1 fit itself ("s-fit", the best a
stage-1 model could reach) on one split, against the rich reference.

Usage::

    python3 -m densrefine.ml.report --data ml_data --split test --json ml_data/eval_test.json

Scores per fragment (`densrefine.ml.evaluate`): density NMAE, scaled R of the blurred
potential at d = 2 and 3 Å (B = 4d²), and the potential ratio at the formally charged atoms
at 3 Å ("peak", V_ref/V_IAM relative to the region mean). A model helper passes its own
predicted ``c_s`` through `score_fragment` to get the same numbers.
"""
from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np

from . import evaluate
from .pack import load_fragments

log = logging.getLogger("densrefine")


def score_fragment(frag, c_s_pred=None, extra=None):
    """Scores of the IAM, the stored s-fit and (optionally) predictions on one fragment.

    ``extra``: further name → prediction (c_s (N, 8) or `evaluate.cart_terms`) to score.

    Returns
    -------
    dict
        ``nmae_<m>``, ``r2_<m>``, ``r3_<m>`` for m in iam, sfit (and pred), ``peak3``,
        ``r3_ref`` (the reference against itself: 0), ``charged`` (bool).
    """
    models = {"sfit": frag["c_s"]}
    if c_s_pred is not None:
        models["pred"] = c_s_pred
    models.update(extra or {})
    grid = evaluate.becke_grid(np.asarray(frag["xyz"], float))
    out = {"frag_id": str(frag["frag_id"]), "kind": str(frag["kind"]),
           "resname": str(frag["resname"]), "state": str(frag["state"]),
           "charged": int(frag["charge"]) != 0, "nmae_iam": evaluate.density_nmae(frag, None, grid)}
    for m, c in models.items():
        out[f"nmae_{m}"] = evaluate.density_nmae(frag, c, grid)
    for d in (2.0, 3.0):
        r = evaluate.potential_r(frag, d, list(models.values()))
        tag = f"r{int(d)}"
        out[f"{tag}_iam"] = r["iam"]
        for i, m in enumerate(models):
            out[f"{tag}_{m}"] = r[f"pred{i}"]
        if d == 3.0:
            out["peak3"] = r["peak_iam"]
    lo, h, V = evaluate.blurred_potentials(frag, 36.0, spacing=0.6)
    out["r3_ref"] = evaluate.scaled_r(V["ref"], V["ref"])
    return out


def summarise(rows):
    """Means of every score over all / charged / neutral fragments."""
    keys = [k for k in rows[0] if k.startswith(("nmae_", "r2_", "r3_"))] if rows else []
    out = {}
    for name, sel in (("all", rows), ("charged", [r for r in rows if r["charged"]]),
                      ("neutral", [r for r in rows if not r["charged"]])):
        out[name] = {"n": len(sel), **{k: float(np.mean([r[k] for r in sel])) for k in keys}
                     } if sel else {"n": 0}
    return out


def dataset_tables(data_dir):
    """Markdown: counts per (kind, residue, state) and split; timing and residual statistics."""
    import collections

    frags = load_fragments(data_dir)
    cnt = collections.Counter((str(f["kind"]), str(f["resname"]), str(f["state"]),
                               str(f["split"])) for f in frags)
    lines = ["| kind | residue | state | split | n |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {r} | {s} | {sp} | {n} |" for (k, r, s, sp), n in sorted(cnt.items())]
    by_split = collections.Counter(str(f["split"]) for f in frags)
    lines += ["", "split totals: " + ", ".join(f"{k} {v}" for k, v in sorted(by_split.items())),
              f"fragments {len(frags)}, atoms {sum(len(f['elements']) for f in frags)}, "
              f"jittered {sum(float(f['jitter']) > 0 for f in frags)}"]
    qs = np.array([float(f["qm_seconds"]) for f in frags])
    na = np.array([len(f["elements"]) for f in frags])
    lines.append(f"QM wall time per fragment: median {np.median(qs):.0f} s, "
                 f"mean {qs.mean():.0f} s, max {qs.max():.0f} s (atoms: median {np.median(na):.0f}, max {na.max()})")
    fs = np.array([float(f["fit_seconds"]) for f in frags])
    lines.append(f"fit wall time per fragment: median {np.median(fs):.1f} s")
    for key in ("resid_s", "resid_rich", "resid_sph"):
        if key not in frags[0]:
            continue
        r = np.array([f[key] for f in frags])
        lines.append(f"{key} (blurred Coulomb norm, rel.) median / 90th pct at B = 2, 16, 36 Å²: "
                     + ", ".join(f"{np.median(r[:, i]):.3f}/{np.percentile(r[:, i], 90):.3f}"
                                 for i in range(3)))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="ml_data")
    p.add_argument("--split", default="test", help="train, val, test or all")
    p.add_argument("--json", default=None, help="write rows + summary here")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--tables", action="store_true", help="print the data-set tables and stop")
    a = p.parse_args(argv)
    if a.tables:
        print(dataset_tables(a.data))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    frags = [f for f in load_fragments(a.data) if a.split == "all" or f["split"] == a.split]
    t0 = time.perf_counter()
    rows = [score_fragment(f) for f in frags[:a.limit]]
    summ = summarise(rows)
    log.info("Scored %d %s fragments in %.0f s: %s", len(rows), a.split,
             time.perf_counter() - t0, json.dumps(summ))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"split": a.split, "summary": summ, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
