#!/usr/bin/env python3
"""Behaviour and speed A/B of two revisions of densrefine (for refactors that must not
change results).

usage (from the repository root)::

    python3 benchmarks/refactor_ab.py outputs OUTDIR [--cases score,simulate,rfactor,fit]
    python3 benchmarks/refactor_ab.py compare DIR_A DIR_B
    python3 benchmarks/refactor_ab.py run --base REV [--cases ...]      # base vs this tree
    python3 benchmarks/refactor_ab.py speed --base REV [--pairs 4]      # fit 5NI1, A/B/A/B

``outputs`` computes, with whatever ``densrefine`` is first on ``sys.path`` (set
PYTHONPATH), the numbers the acceptance of a refactor names: `score` on every cryo-EM
pair in ../shared/data, `simulate` (blur and Fourier, electron and X-ray, IAM and the ML
densities) of 5NI1 on the EMD-3488 grid, `rfactor` on the X-ray entries, and `fit` of the
bundled example and of 5NI1 into EMD-3488 (coordinates, B, CC_mask). ``run`` checks the
base revision out into a temporary git worktree, computes both sets in separate processes
and prints the differences (fit: RMSD between the two refined models, Å; CC: absolute
difference; maps: max |Δ| / max |map|). ``speed`` times ``fit`` of 5NI1 inside fresh
processes, alternating base and this tree, and prints each pair (wall and CPU time of the
`fit` call only, imports excluded; CPU time is the steadier on a shared machine).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import EM_PAIRS  # noqa: E402

DATA = pathlib.Path(os.environ.get("DENSREFINE_DATA", ROOT.parent / "shared" / "data"))
EM = EM_PAIRS + [("emd-5168_actin-lowres", "3mfp_modeller.pdb.gz", "emd_5168.map", 6.6)]
XRAY = [("3io0", "3io0_before.pdb.gz", "3io0-sf.mtz"), ("5e5z", "5e5z.pdb.gz", "5e5z.mtz.gz"),
        ("5a3h", "5a3h.pdb.gz", "5a3h_sigmaa.mtz"), ("3ay4", "3ay4.pdb.gz", "3ay4.mtz.gz"),
        ("1l2h", "1l2h.cif.gz", "1l2h.mtz.gz"), ("3nr7", "3nr7.pdb.gz", "3nr7.mtz"),
        ("4hg7", "4hg7_no_ligand.pdb.gz", "4hg7.mtz.gz")]
SCORE_KEYS = ("cc_mask", "cc_box", "cc_volume", "cc_peaks", "rsr", "d_fsc05")


def _score(out):
    import densrefine as dr

    res = {}
    for folder, model, emap, d in EM:
        rep = dr.score(dr.read_model(DATA / folder / model), dr.read_map(DATA / folder / emap), d)
        row = {k: getattr(rep, k) for k in SCORE_KEYS}
        row["residue_cc"] = [r.get("cc") for r in rep.residues]
        res[f"{folder}/{model}/{emap}"] = row
    (out / "score.json").write_text(json.dumps(res))


def _simulate(out):
    import numpy as np

    import densrefine as dr

    m = dr.read_model(DATA / "emd-3488_5ni1" / "5ni1_updated.cif.gz")
    like = dr.read_map(DATA / "emd-3488_5ni1" / "emd_3488.mrc")
    small = dr.read_model(DATA / "emd-21457_6vyb-ntd" / "6vyb_Ndom.pdb.gz")
    slike = dr.read_map(DATA / "emd-21457_6vyb-ntd" / "emd_21457_seg.mrc")
    arrays = {}
    for table in ("electron", "xray"):
        for method in ("blur", "fourier"):
            arrays[f"iam_{table}_{method}"] = dr.simulate(m, like, resolution=3.2, table=table,
                                                          method=method).values
    for density in ("ml", "ml-spdf"):
        for table in ("electron", "xray"):
            arrays[f"{density}_{table}_blur"] = dr.simulate(
                small, slike, resolution=3.2, table=table, density=density).values
    arrays["box_around"] = dr.simulate(small, resolution=3.0).values
    np.savez(out / "simulate.npz", **arrays)


def _rfactor(out):
    import densrefine as dr
    from densrefine.xtal import rfactor

    res = {}
    for folder, model, data in XRAY:
        rep = rfactor(dr.read_model(DATA / folder / model), str(DATA / folder / data))
        res[folder] = {k: getattr(rep, k) for k in ("r_work", "r_free", "k_sol", "b_sol",
                                                    "n_work", "n_free")}
    (out / "rfactor.json").write_text(json.dumps(res))


def _fit(out):
    import numpy as np

    import densrefine as dr

    cases = {"example": (ROOT / "example_maps" / "helix_start.pdb",
                         ROOT / "example_maps" / "helix_3A.mrc", 3.0),
             "5ni1": (DATA / "emd-3488_5ni1" / "5ni1_updated.cif.gz",
                      DATA / "emd-3488_5ni1" / "emd_3488.mrc", 3.2)}
    arrays, res = {}, {}
    for name, (model, emap, d) in cases.items():
        t0 = time.perf_counter()
        r = dr.fit(dr.read_model(model), dr.read_map(emap), d)
        res[name] = {"cc_mask": r.stats["after"]["cc_mask"], "time_s": time.perf_counter() - t0,
                     "bond_rmsd": r.stats["after"]["geometry"].get("bond_rmsd"),
                     "angle_rmsd": r.stats["after"]["geometry"].get("angle_rmsd")}
        arrays[f"{name}_xyz"] = np.asarray(r.model.atoms.xyz)
        arrays[f"{name}_b"] = np.asarray(r.model.atoms.b_iso)
    np.savez(out / "fit.npz", **arrays)
    (out / "fit.json").write_text(json.dumps(res))


def outputs(outdir, cases):
    out = pathlib.Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    warnings.simplefilter("ignore")
    for c in cases:
        t0 = time.perf_counter()
        {"score": _score, "simulate": _simulate, "rfactor": _rfactor, "fit": _fit}[c](out)
        print(f"{c}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)


def compare(a, b) -> list[str]:
    import numpy as np

    a, b = pathlib.Path(a), pathlib.Path(b)
    lines = []
    if (a / "score.json").exists() and (b / "score.json").exists():
        sa, sb = json.loads((a / "score.json").read_text()), json.loads((b / "score.json").read_text())
        for k in sa:
            dif = {s: abs((sa[k][s] or 0) - (sb[k][s] or 0)) for s in SCORE_KEYS}
            rc = np.array([(x or 0) - (y or 0) for x, y in zip(sa[k]["residue_cc"],
                                                                sb[k]["residue_cc"])])
            lines.append(f"score {k}: max |Δ| {max(dif.values()):.2e} "
                         f"({max(dif, key=dif.get)}), residue CC max |Δ| "
                         f"{np.abs(rc).max() if len(rc) else 0:.2e}")
    if (a / "simulate.npz").exists() and (b / "simulate.npz").exists():
        za, zb = np.load(a / "simulate.npz"), np.load(b / "simulate.npz")
        for k in za.files:
            if za[k].shape != zb[k].shape:
                lines.append(f"simulate {k}: shapes {za[k].shape} vs {zb[k].shape}")
                continue
            rel = np.abs(za[k] - zb[k]).max() / max(np.abs(za[k]).max(), 1e-30)
            lines.append(f"simulate {k}: max |Δ|/max|map| {rel:.2e}")
    if (a / "rfactor.json").exists() and (b / "rfactor.json").exists():
        ra, rb = json.loads((a / "rfactor.json").read_text()), json.loads((b / "rfactor.json").read_text())
        for k in ra:
            lines.append(f"rfactor {k}: R-work {ra[k]['r_work']:.4f} / {rb[k]['r_work']:.4f}, "
                         f"R-free {ra[k]['r_free'] or 0:.4f} / {rb[k]['r_free'] or 0:.4f}, "
                         f"k_sol {ra[k]['k_sol']:.3f} / {rb[k]['k_sol']:.3f}")
    if (a / "fit.npz").exists() and (b / "fit.npz").exists():
        za, zb = np.load(a / "fit.npz"), np.load(b / "fit.npz")
        fa, fb = json.loads((a / "fit.json").read_text()), json.loads((b / "fit.json").read_text())
        for name in fa:
            dx = za[f"{name}_xyz"] - zb[f"{name}_xyz"]
            rmsd = float(np.sqrt((dx ** 2).sum(1).mean()))
            db = float(np.abs(za[f"{name}_b"] - zb[f"{name}_b"]).max())
            lines.append(f"fit {name}: RMSD between revisions {rmsd:.4f} Å (max {np.sqrt((dx**2).sum(1)).max():.3f}), "
                         f"max |ΔB| {db:.2f} Å², CC_mask {fa[name]['cc_mask']:.4f} / "
                         f"{fb[name]['cc_mask']:.4f}, bond {fa[name]['bond_rmsd']:.4f} / "
                         f"{fb[name]['bond_rmsd']:.4f}, time {fa[name]['time_s']:.1f} / "
                         f"{fb[name]['time_s']:.1f} s")
    return lines


def _worktree(rev) -> pathlib.Path:
    path = pathlib.Path(tempfile.gettempdir()) / f"densrefine_ab_{rev}"
    if not path.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
                       check=True, capture_output=True)
    return path


def _in(tree, args):
    # the tree's own copy of this script: it puts its own root first on sys.path (this
    # copy would import this tree's densrefine whatever PYTHONPATH says)
    env = dict(os.environ, PYTHONPATH=str(tree), DENSREFINE_DATA=str(DATA))
    return subprocess.run([sys.executable, str(tree / "benchmarks" / "refactor_ab.py"), *args],
                          env=env, check=True, cwd=str(tree))


def run(base, cases):
    tree = _worktree(base)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="densrefine_ab_"))
    _in(tree, ["outputs", str(tmp / "base"), "--cases", ",".join(cases)])
    _in(ROOT, ["outputs", str(tmp / "head"), "--cases", ",".join(cases)])
    print(f"base {base} vs this tree ({tmp}):")
    print("\n".join(compare(tmp / "base", tmp / "head")))


SPEED = """
import time, warnings, densrefine as dr
warnings.simplefilter("ignore")
m = dr.read_model({model!r}); e = dr.read_map({emap!r})
t0, c0 = time.perf_counter(), time.process_time(); dr.fit(m, e, 3.2)
print(time.perf_counter() - t0, time.process_time() - c0)
"""


def speed(base, pairs):
    tree = _worktree(base)
    code = SPEED.format(model=str(DATA / "emd-3488_5ni1" / "5ni1_updated.cif.gz"),
                        emap=str(DATA / "emd-3488_5ni1" / "emd_3488.mrc"))
    rows = []
    for i in range(pairs):
        row = []
        for t in (tree, ROOT) if i % 2 == 0 else (ROOT, tree):
            env = dict(os.environ, PYTHONPATH=str(t))
            r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                               text=True, check=True, cwd=str(t))
            row.append((t, [float(x) for x in r.stdout.strip().splitlines()[-1].split()]))
        d = dict(row)
        rows.append((d[tree], d[ROOT]))
        print(f"pair {i + 1}: base {d[tree][0]:.2f} s wall / {d[tree][1]:.2f} s CPU, this tree "
              f"{d[ROOT][0]:.2f} s / {d[ROOT][1]:.2f} s", flush=True)
    import statistics

    for k, what in ((0, "wall"), (1, "CPU")):
        print(f"median {what}: base {statistics.median(r[0][k] for r in rows):.2f} s, this tree "
              f"{statistics.median(r[1][k] for r in rows):.2f} s")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("outputs")
    o.add_argument("outdir")
    o.add_argument("--cases", default="score,simulate,rfactor,fit")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    r = sub.add_parser("run")
    r.add_argument("--base", required=True)
    r.add_argument("--cases", default="score,simulate,rfactor,fit")
    s = sub.add_parser("speed")
    s.add_argument("--base", required=True)
    s.add_argument("--pairs", type=int, default=4)
    a = p.parse_args()
    if a.cmd == "outputs":
        outputs(a.outdir, a.cases.split(","))
    elif a.cmd == "compare":
        print("\n".join(compare(a.a, a.b)))
    elif a.cmd == "run":
        run(a.base, a.cases.split(","))
    else:
        speed(a.base, a.pairs)


if __name__ == "__main__":
    main()
