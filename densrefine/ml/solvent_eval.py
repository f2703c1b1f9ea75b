"""Score density models on the independent DFT set (`densrefine.ml.indep`) as maps.

Each fragment's model map is made the way ``densrefine simulate --table electron`` makes
it (`densrefine.simulate.simulate_tensor`, B = 0, blur 4d², on a 0.5 Å grid padded by
``PAD`` Å and taken as periodic) and compared, over the fragment's region (voxels within
2.5 Å of an atom), with two exact references (e/Å):

* solute: nuclei + PCM-polarised electrons (``v_solute``),
* solvated: solute + the PCM surface charges (``v_solute + v_pcm``).

Scores: scaled R = Σ|a − (k m + c)| / Σ|a − ā| (k, c least squares; the denominator is
offset-free, so a flat map scores 1) and Pearson CC, a = reference, m = model.

    python3 -m densrefine.ml.solvent_eval --data ml_data/indep --json ml_data/eval_indep.json
"""
from __future__ import annotations

import argparse
import json
import logging
import warnings

import numpy as np

from ..density import get_density_model
from ..density import ml as ml_model
from ..types import Atoms, GridFrame

log = logging.getLogger("densrefine")

PAD = 10.0
"""Å of padding around the region's frame for the periodic FFTs."""
VARIANTS = ("iam", "ml-screened", "ml-none", "ml-solvent")
"""Density models scored: IAM; stage-1 Δρ with the Yukawa screening λ = 1.5 Å (density
"ml", the first generation), with the bare Coulomb potential (the solute alone), and with
the Poisson reaction field (density "ml-solvent", issue 21)."""


def scaled_r(ref, model):
    """Σ|a − (k m + c)| / Σ|a − ā| with least-squares k, c (a = ``ref``, m = ``model``)."""
    A = np.stack([model, np.ones_like(model)], 1)
    (k, c), *_ = np.linalg.lstsq(A, ref, rcond=None)
    return float(np.abs(ref - k * model - c).sum() / np.abs(ref - ref.mean()).sum())


def fragment_atoms(frag) -> Atoms:
    """`Atoms` of one fragment (one non-standard residue "FRG", per-atom formal charges)."""
    n = len(frag["elements"])
    el = np.array([str(e).capitalize() for e in frag["elements"]])
    import gemmi

    return Atoms(xyz=np.asarray(frag["xyz"], float), b_iso=np.zeros(n), occ=np.ones(n),
                 element=el, atomic_number=np.array([gemmi.Element(e).atomic_number for e in el]),
                 charge=np.asarray(frag["charges"], np.int8), chain=np.full(n, "A"),
                 res_name=np.full(n, "FRG"), res_seq=np.ones(n, np.int32), icode=np.full(n, ""),
                 atom_name=np.asarray(frag["names"]).astype(str), altloc=np.full(n, ""),
                 het=np.ones(n, bool), res_index=np.zeros(n, np.int32))


def padded_frame(frag):
    """(periodic frame, flat region indices in it) for one fragment."""
    h = float(frag["spacing"])
    nz, ny, nx = (int(v) for v in frag["shape"])
    p = round(PAD / h)
    fr = GridFrame.box((nz + 2 * p, ny + 2 * p, nx + 2 * p), h,
                       origin=tuple(np.asarray(frag["origin"], float) - p * h), periodic=True)
    k, j, i = np.unravel_index(frag["region"], (nz, ny, nx))
    return fr, np.ravel_multi_index((k + p, j + p, i + p), fr.shape)


def model_terms(atoms, variant):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if variant == "iam":
            return get_density_model("iam").terms(atoms, "electron")
        response = {"ml-screened": "screened", "ml-none": "none", "ml-solvent": "poisson"}[variant]
        return ml_model.terms(atoms, "electron", response=response)


def score_fragment(frag, variants=VARIANTS):
    """Scores of one fragment: {variant: {target: {d: {"r": R, "cc": CC}}}}."""
    import torch

    from ..simulate import simulate_tensor

    atoms = fragment_atoms(frag)
    fr, idx = padded_frame(frag)
    xyz = torch.as_tensor(atoms.xyz, dtype=torch.float64)
    zero, one = torch.zeros(len(atoms), dtype=torch.float64), torch.ones(len(atoms),
                                                                          dtype=torch.float64)
    out = {}
    for v in variants:
        terms = model_terms(atoms, v)
        out[v] = {"solute": {}, "solvated": {}}
        for k, d in enumerate(np.asarray(frag["d"], float)):
            with torch.no_grad():
                m = simulate_tensor(xyz, zero, one, terms, fr, blur=4 * d * d)
            m = m.reshape(-1).numpy()[idx]
            refs = {"solute": frag["v_solute"][k].astype(float),
                    "solvated": (frag["v_solute"][k] + frag["v_pcm"][k]).astype(float)}
            for t, a in refs.items():
                out[v][t][f"{d:g}"] = {"r": scaled_r(a, m), "cc": float(np.corrcoef(a, m)[0, 1])}
    return out


def summarise(rows, variants=VARIANTS):
    """Mean R and CC per group (all / charged / neutral), target and d, plus the mean
    reduction of the IAM's R (1 − R/R_IAM, averaged over fragments)."""
    groups = {"all": lambda r: True, "charged": lambda r: r["charged"],
              "neutral": lambda r: not r["charged"]}
    out = {}
    for g, f in groups.items():
        sel = [r for r in rows if f(r)]
        if not sel:
            continue
        out[g] = {"n": len(sel)}
        for v in variants:
            for t in ("solute", "solvated"):
                for d in sel[0]["scores"][v][t]:
                    key = f"{v}|{t}|{d}"
                    rs = np.array([r["scores"][v][t][d]["r"] for r in sel])
                    ri = np.array([r["scores"]["iam"][t][d]["r"] for r in sel])
                    out[g][key] = {"r": float(rs.mean()), "cc": float(np.mean(
                        [r["scores"][v][t][d]["cc"] for r in sel])),
                        "cut": float(np.mean(1 - rs / ri))}
    return out


def evaluate(folder, variants=VARIANTS):
    """Score every fragment of the independent set in ``folder``."""
    from .indep import load

    rows = []
    for frag in load(folder):
        s = score_fragment(frag, variants)
        rows.append({"id": frag["id"], "kind": frag["kind"], "n_atoms": len(frag["elements"]),
                     "charge": int(frag["charges"].sum()),
                     "charged": bool(np.any(frag["charges"] != 0)), "scores": s})
        log.info("%s: %s", frag["id"], "  ".join(
            f"{v} R(solute/solvated, 3 Å) {s[v]['solute']['3']['r']:.3f}/"
            f"{s[v]['solvated']['3']['r']:.3f}" for v in variants))
    return {"fragments": rows, "summary": summarise(rows, variants)}


def table(res, variants=VARIANTS) -> str:
    """Markdown table of the summary."""
    lines = ["| group | n | target | d Å | " + " | ".join(f"R {v} (cut)" for v in variants)
             + " | " + " | ".join(f"CC {v}" for v in variants) + " |",
             "|---|---|---|---|" + "---|" * (2 * len(variants))]
    for g, s in res["summary"].items():
        for t in ("solute", "solvated"):
            for d in ("2", "3"):
                cells = [f"{s[f'{v}|{t}|{d}']['r']:.3f} ({100 * s[f'{v}|{t}|{d}']['cut']:+.0f} %)"
                         for v in variants]
                cc = [f"{s[f'{v}|{t}|{d}']['cc']:.3f}" for v in variants]
                lines.append(f"| {g} | {s['n']} | {t} | {d} | " + " | ".join(cells) + " | "
                             + " | ".join(cc) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="ml_data/indep")
    p.add_argument("--json", default=None)
    p.add_argument("--variants", default=",".join(VARIANTS))
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(1)
    variants = tuple(a.variants.split(","))
    res = evaluate(a.data, variants)
    print(table(res, variants))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
