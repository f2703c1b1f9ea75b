#!/usr/bin/env python3
"""Ramachandran restraints at low resolution: ``fit`` with rama off vs on.

usage: OMP_NUM_THREADS=1 python3 benchmarks/rama_low_res.py [--res 4.5,6] [--seeds 0,1,2]
           [--rms 1.0] [--noise 4.5:0.35,6:1.0] [--chain A|all] [--rama-weight W]
           [--rama-params FILE]
           [--workdir DIR] [--force] [--json FILE]

Protocol (as "Secondary-structure restraints at low resolution" in RESULTS.md): truth =
5NI1 chain A (EMD-3488's model, 1,119 atoms incl. haem); map = `densrefine.simulate`
(fourier, electron table) of the truth at d Å on the EMD-3488 grid plus Gaussian noise
of ``noise`` × the std of the map above 10 % of its maximum (rng seed 0); start =
`densrefine.perturb` of the truth (``rms`` Å: rigid SSE moves + waves + χ1 flips,
seed = case seed). Each start is refined with default settings (SS restraints "auto",
i.e. on at these resolutions) and ``rama_restraints`` "off" and "on".

Measured: RMSD (Å, non-H atoms) to the truth; bond/angle RMSD and CC_mask from the
stats JSON; Ramachandran favored/outlier % by cctbx's MolProbity ramalyze
(benchmarks/peer_ramalyze.py, peer venv, own process) and by our density
(`densrefine.restraints.rama.classify`); wall time. Cases are cached as JSON in
--workdir; prints a markdown table. --rama-weight sets ``rama_weight`` of the "on" fits
(default: `densrefine.restraints.rama.WEIGHT`);
--rama-params uses another parameter file (e.g. one fitted without 5NI1:
``python3 -m densrefine.restraints.rama_fit --exclude 5ni1 --out F``) for the restraints
and our classifier (ramalyze is unaffected).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
DATA = os.environ.get("DENSREFINE_DATA", os.path.join(os.path.dirname(ROOT), "shared", "data"))
PEERS_PY = os.path.join(os.environ.get("PEERS_VENV", "/tmp/peers/venv"), "bin", "python")


def ramalyze(path) -> dict:
    """favored/allowed/outlier by the peer script (separate process, peer venv)."""
    r = subprocess.run([PEERS_PY, os.path.join(HERE, "peer_ramalyze.py"), str(path)],
                       capture_output=True, text=True, timeout=600)
    if r.returncode:
        return {"error": r.stderr.strip().splitlines()[-1:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def ours(model) -> dict:
    from densrefine.restraints import rama

    s = rama.find_residues(model).summary(model.atoms.xyz)
    return {k: s[k] for k in ("n", "favored", "allowed", "outlier", "favored_pct",
                              "outlier_pct")}


def truth_chain(workdir, chain="A"):
    """Deposited 5NI1 (one chain, or all four with chain="all") written to workdir."""
    import gemmi

    import densrefine as dr

    path = os.path.join(workdir, f"5ni1_{chain}.cif")
    if not os.path.exists(path):
        st = gemmi.read_structure(os.path.join(DATA, "emd-3488_5ni1", "5ni1_updated.cif.gz"))
        for name in [ch.name for ch in st[0]][::-1]:
            if chain != "all" and name != chain:
                st[0].remove_chain(name)
        st.setup_entities()
        st.make_mmcif_document().write_file(path)
    return path, dr.read_model(path)


def noisy_map(truth, d, noise):
    import densrefine as dr
    from densrefine.simulate import simulate

    emap = dr.read_map(os.path.join(DATA, "emd-3488_5ni1", "emd_3488.mrc"))
    sim = simulate(truth, like=emap, resolution=d, method="fourier").values
    rng = np.random.default_rng(0)
    noisy = sim + rng.normal(size=sim.shape) * noise * sim[sim > 0.1 * sim.max()].std()
    return emap.with_values(noisy.astype(np.float32))


def run_case(d, noise, rms, seed, workdir, force=False, weight=None, tag="", chain="A") -> dict:
    import densrefine as dr
    from densrefine.perturb import perturb

    from densrefine.restraints.rama import WEIGHT

    weight = WEIGHT if weight is None else float(weight)
    wtag = f"_w{weight}" + ("" if chain == "A" else f"_c{chain}")
    cache = os.path.join(workdir, f"rama_d{d}_n{noise}_r{rms}_s{seed}{wtag}{tag}.json")
    if os.path.exists(cache) and not force:
        with open(cache, encoding="utf-8") as f:
            return json.load(f)
    tpath, truth = truth_chain(workdir, chain)
    heavy = ~np.asarray(truth.atoms.is_hydrogen)
    emap = noisy_map(truth, d, noise)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = perturb(truth, rms=rms, seed=seed)
    spath = os.path.join(workdir, f"start_s{seed}_r{rms}{wtag}.cif")
    dr.write_model(start, spath)

    def rmsd(m):
        return float(np.sqrt((((m.atoms.xyz - truth.atoms.xyz)[heavy]) ** 2).sum(1).mean()))

    out = {"d": d, "noise": noise, "rms": rms, "seed": seed,
           "truth": {"ramalyze": ramalyze(tpath), "ours": ours(truth)},
           "start": {"rmsd": rmsd(start), "ramalyze": ramalyze(spath), "ours": ours(start)}}
    for mode in ("off", "on"):
        cfg = {"rama_restraints": mode}
        if mode == "on":
            cfg["rama_weight"] = weight
        t0 = time.perf_counter()
        res = dr.fit(start, emap, d, config=cfg, seed=0, device="cpu")
        wall = time.perf_counter() - t0
        path = os.path.join(workdir, f"fit_d{d}_s{seed}_r{rms}{wtag}{tag}_{mode}.cif")
        dr.write_model(res.model, path)
        g = res.stats["after"]["geometry"]
        out[mode] = {"rmsd": rmsd(res.model), "bond": g["bond_rmsd"], "angle": g["angle_rmsd"],
                     "cc_mask": res.stats["after"]["cc_mask"], "time_s": wall,
                     "ramalyze": ramalyze(path), "ours": ours(res.model),
                     "rama_block": g.get("rama")}
    with open(cache, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    return out


def table(rows) -> str:
    head = ("| d (Å) | seed | start RMSD / fav % / out % | off: RMSD / fav % / out % / bond / "
            "angle / CC_mask | on: RMSD / fav % / out % / bond / angle / CC_mask |\n"
            "|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        s = r["start"]
        cells = [f"{s['rmsd']:.3f} / {s['ramalyze'].get('favored_pct', float('nan')):.1f} / "
                 f"{s['ramalyze'].get('outlier_pct', float('nan')):.1f}"]
        for mode in ("off", "on"):
            m = r[mode]
            cells.append(f"{m['rmsd']:.3f} / {m['ramalyze'].get('favored_pct', float('nan')):.1f}"
                         f" / {m['ramalyze'].get('outlier_pct', float('nan')):.1f} / "
                         f"{m['bond']:.4f} / {m['angle']:.2f} / {m['cc_mask']:.3f}")
        lines.append(f"| {r['d']} | {r['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--res", default="4.5,6")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rms", type=float, default=1.0)
    ap.add_argument("--noise", default="4.5:0.35,6:1.0", help="d:noise pairs")
    ap.add_argument("--chain", default="A", help='5NI1 chain, or "all" (4 chains)')
    ap.add_argument("--rama-weight", type=float)
    ap.add_argument("--rama-params", help="parameter file instead of the shipped one")
    ap.add_argument("--workdir", default="/tmp/rama_low_res")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    os.makedirs(a.workdir, exist_ok=True)
    noise = {float(k): float(v) for k, v in (p.split(":") for p in a.noise.split(","))}
    tag = ""
    if a.rama_params:
        from densrefine.restraints import rama

        rama._shipped_params = lambda: rama._read_params(a.rama_params)  # this process only
        tag = "_p" + os.path.splitext(os.path.basename(a.rama_params))[0]
    rows = []
    for d in (float(x) for x in a.res.split(",")):
        for seed in (int(x) for x in a.seeds.split(",")):
            rows.append(run_case(d, noise.get(d, 0.5), a.rms, seed, a.workdir, a.force,
                                 a.rama_weight, tag, a.chain))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    t = rows[0]["truth"]
    print(f"\ntruth (deposited 5NI1, chain {a.chain}): ramalyze {t['ramalyze'].get('favored_pct')} % favored, "
          f"{t['ramalyze'].get('outlier_pct')} % outliers; ours {t['ours']['favored_pct']:.1f} / "
          f"{t['ours']['outlier_pct']:.1f} %\n")
    print(table(rows))
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
