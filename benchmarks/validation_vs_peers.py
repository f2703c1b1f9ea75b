#!/usr/bin/env python3
"""densrefine.validation vs cctbx (ramalyze, rotalyze) and jqscore on the shared models.

usage: PYTHONPATH=. python3 benchmarks/validation_vs_peers.py [--json OUT] [--no-qscore]

For every protein model in ../shared/data: Ramachandran favoured / outlier %, rotamer
outlier %, clashscore (ours; no peer ran, see docs/validation.md) and, for the cryo-EM
pairs, mean Q-score; the peer's numbers next to ours and the per-residue agreement.
Peers run in their own processes: ``benchmarks/peer_molprobity.py`` with the peer venv
($PEERS_VENV, default /tmp/peers/venv; needs ``--setup`` once, see its docstring) and
``benchmarks/peer_qscore.py`` with a jqscore venv ($JQSCORE_VENV, default /tmp/jq).
Prints a Markdown table; --json writes everything.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
DATA = os.environ.get("DENSREFINE_DATA", os.path.join(os.path.dirname(os.path.dirname(HERE)),
                                                     "shared", "data"))
MODELS = [  # (label, model, map or None)
    ("5NI1", "emd-3488_5ni1/5ni1_updated.cif.gz", "emd-3488_5ni1/emd_3488.mrc"),
    ("5ME2", "emd-3488_5ni1/5me2.pdb.gz", None),
    ("6VYB NTD", "emd-21457_6vyb-ntd/6vyb_Ndom.pdb.gz", "emd-21457_6vyb-ntd/emd_21457_seg.mrc"),
    ("3J6B ch9", "emd-2566_3j6b-chain9/3J6B_9.pdb.gz", "emd-2566_3j6b-chain9/2566_3J6B_9.mrc"),
    ("3MFP actin", "emd-5168_actin-lowres/3mfp_modeller.pdb.gz", None),
    ("5A3H", "5a3h/5a3h.pdb.gz", None), ("3IO0", "3io0/3io0_before.pdb.gz", None),
    ("5E5Z", "5e5z/5e5z.pdb.gz", None), ("1L2H", "1l2h/1l2h.cif.gz", None),
    ("3AY4", "3ay4/3ay4.pdb.gz", None), ("3NR7", "3nr7/3nr7.pdb.gz", None),
    ("4HG7", "4hg7/4hg7_no_ligand.pdb.gz", None),
]


def _run(python, script, *args):
    if not os.path.exists(python):
        return None
    out = subprocess.run([python, os.path.join(HERE, script), *args], capture_output=True,
                         text=True, timeout=900)
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-2000:])
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def rama_agreement(ours, peer) -> tuple[int, int]:
    pk = {(c, s, i): e.lower() for c, s, i, _, _, _, _, e, _ in peer["residues"]}
    ok = n = 0
    for k, lab in zip(ours.keys, ours.label):
        if k[:3] in pk:
            n += 1
            ok += pk[k[:3]] == lab
    return ok, n


def rota_agreement(ours, peer) -> tuple[int, int, int, int]:
    """(agree, n, ours outliers, peer outliers) over side chains both evaluate."""
    pk = {(c, s, i): e == "OUTLIER" for c, s, i, _, alt, e, *_ in peer["residues"]
          if alt in ("", "A")}
    ok = n = no = npe = 0
    for k, o in zip(ours.keys, ours.outlier):
        if k[:3] in pk:
            n += 1
            ok += pk[k[:3]] == bool(o)
            no += bool(o)
            npe += pk[k[:3]]
    return ok, n, no, npe


def q_agreement(ours, peer, model) -> dict:
    at = model.atoms
    key = {(str(at.chain[i]), int(at.res_seq[i]), str(at.atom_name[i])): q
           for i, q in zip(ours.atom_index, ours.q)}
    a, b = [], []
    for c, s, _, _, name, q in peer["atoms"]:
        k = (c, s, name)
        if k in key and q == q:
            a.append(key[k])
            b.append(q)
    a, b = np.array(a), np.array(b)
    return {"n": len(a), "mean_abs_diff": round(float(np.abs(a - b).mean()), 4),
            "max_abs_diff": round(float(np.abs(a - b).max()), 4),
            "r": round(float(np.corrcoef(a, b)[0, 1]), 4)}


def main(argv=None):
    import densrefine as dr
    from densrefine.validation import validate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json")
    ap.add_argument("--no-qscore", action="store_true")
    a = ap.parse_args(argv)
    peers = os.path.join(os.environ.get("PEERS_VENV", "/tmp/peers/venv"), "bin", "python")
    jq = os.path.join(os.environ.get("JQSCORE_VENV", "/tmp/jq"), "bin", "python")
    rows = []
    for label, mpath, emp in MODELS:
        model = dr.read_model(os.path.join(DATA, mpath))
        emap = dr.read_map(os.path.join(DATA, emp)) if emp and not a.no_qscore else None
        validate(model)                                   # warm caches (tables, monlib)
        t = time.perf_counter()
        rep = validate(model, emap)
        row = {"label": label, "ours": rep.to_dict(), "seconds": round(time.perf_counter() - t, 2)}
        peer = _run(peers, "peer_molprobity.py", os.path.join(DATA, mpath), "--residues")
        if peer:
            row["peer"] = {"rama": {k: v for k, v in peer["rama"].items() if k != "residues"},
                           "rota": {k: v for k, v in peer["rota"].items() if k != "residues"}}
            row["rama_agree"] = rama_agreement(rep.details["ramachandran"], peer["rama"])
            row["rota_agree"] = rota_agreement(rep.details["rotamers"], peer["rota"])
        if emap is not None:
            pq = _run(jq, "peer_qscore.py", os.path.join(DATA, mpath), os.path.join(DATA, emp))
            if pq:
                row["jqscore"] = {"q_mean": pq["q_mean"], "seconds": pq["seconds"],
                                  **q_agreement(rep.details["qscore"], pq, model)}
        rows.append(row)
        sys.stderr.write(f"{label} done\n")
    print("| model | Rama fav % ours / cctbx | Rama out % ours / cctbx | Rama agree | rotamer out % "
          "ours / cctbx (no R, K) | rotamer agree | clashscore ours | Q ours / jqscore "
          "(atom r) | time ours (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        o, p = r["ours"], r.get("peer")
        ra = r.get("rama_agree", (0, 0))
        ro = r.get("rota_agree", (0, 0, 0, 0))
        q = o.get("qscore")
        jqr = r.get("jqscore")
        rot_ours = 100.0 * ro[2] / max(ro[1], 1)
        print(f"| {r['label']} | {o['ramachandran']['favored_pct']:.2f} / "
              f"{p['rama']['favored_pct'] if p else '–'} | {o['ramachandran']['outlier_pct']:.2f} / "
              f"{p['rama']['outlier_pct'] if p else '–'} | {ra[0]}/{ra[1]} | {rot_ours:.2f} / "
              f"{p['rota']['outlier_pct'] if p else '–'} | {ro[0]}/{ro[1]} | "
              f"{o['clashes']['clashscore']:.2f} | "
              + (f"{q['q_mean']:.4f} / {jqr['q_mean']:.4f} ({jqr['r']:.3f})" if q and jqr else
                 (f"{q['q_mean']:.4f} / –" if q else "–"))
              + f" | {r['seconds']} |")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1, default=str)


if __name__ == "__main__":
    main()
