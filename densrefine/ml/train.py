"""Train the stage-1 deformation-density network on the fragment dataset (CPU, minutes).

    python3 -m densrefine.ml.train --data ml_data --out densrefine/density/weights/ml_s_v1.npz

Loss: the Coulomb-metric distance between predicted and reference Δρ, blurred by
B = 2 Å² (the metric of the reference fit, `densrefine.ml.fitting.B_FIT`) and B = 16 Å²
(a 2 Å map), each relative to the reference's own norm:

    L = Σ_B (p − t)ᵀ J_B (p − t) / tᵀ J_B t,   J_B[a, b] = (g_a ∗ G_B | g_b ∗ G_B),

i.e. the squared error left relative to the IAM's (which predicts p = 0): IAM scores 1.

Every fragment is used twice: with explicit hydrogens (reference = its stage-1 fit), and
as united atoms without hydrogens (reference = the heavy atoms' fit plus, at the hydrogen
positions, the hydrogens' Δρ and their IAM density; the network then has to put that
density on the heavy atoms: the mode used for models without hydrogens). Splits are those
of the dataset (`densrefine.ml.pack.split_of`): train for the weights, validation for the
epoch choice, test (held-out residue types / protonation states) only for the report.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import time

import numpy as np

from ..density import ml as mlmod
from ..density import ml_basis
from ..scattering import tables

log = logging.getLogger("densrefine")

BLURS = (2.0, 16.0)
"""Å²: blurs of the training metric."""
IAM_DELTA_B = 1e-3


def _iam_h_functions():
    """IT92 hydrogen as unit-integral s Gaussians: (exponents Å⁻², weights e)."""
    a, b = tables.coefficients(["H"], None, "xray")
    b = np.where(np.asarray(b[0]) > 0, b[0], IAM_DELTA_B)
    return 4 * math.pi ** 2 / b, np.asarray(a[0], float)


def _metric(alpha, centres, blur):
    import torch

    al = torch.as_tensor(alpha)
    r = torch.cdist(torch.as_tensor(centres), torch.as_tensor(centres))
    return mlmod.pair_metric(al[:, None], al[None, :], r, blur).float()


def make_sample(frag, united: bool):
    """Tensors of one training sample (see module docstring)."""
    import torch

    el = np.array([str(e).strip().upper() for e in frag["elements"]])
    xyz = np.asarray(frag["xyz"], np.float64)
    q = np.asarray(frag["formal_charge"], np.float64)
    c = np.asarray(frag["c_s"], np.float64)
    alpha, mask = ml_basis.s_exponent_table([e.capitalize() for e in el])
    bonds = mlmod.bonds_from_distances(el, xyz)
    if not united or not np.any(el == "H"):
        keep, imp = np.ones(len(el), bool), None
        extra_alpha, extra_xyz, extra_c = np.zeros(0), np.zeros((0, 3)), np.zeros(0)
    else:
        keep = el != "H"
        hidx = np.flatnonzero(~keep)
        d = np.linalg.norm(xyz[hidx, None] - xyz[None, keep], axis=2)
        parent = np.flatnonzero(keep)[d.argmin(1)]
        imp_full = np.bincount(parent, minlength=len(el))
        imp = imp_full[keep]
        ia, iw = _iam_h_functions()
        hm = mask[hidx]
        extra_alpha = np.concatenate([alpha[hidx][hm], np.tile(ia, len(hidx))])
        extra_xyz = np.concatenate([np.repeat(xyz[hidx], hm.sum(1), 0),
                                    np.repeat(xyz[hidx], len(ia), 0)])
        extra_c = np.concatenate([c[hidx][hm], np.tile(iw, len(hidx))])
        remap = -np.ones(len(el), int)
        remap[keep] = np.arange(keep.sum())
        bonds = remap[bonds]
        bonds = bonds[(bonds >= 0).all(1)]
    el_k, xyz_k, q_k, m_k = el[keep], xyz[keep], q[keep], mask[keep]
    comp = mlmod.components_of(len(el_k), bonds)
    extra_q = np.zeros(len(el_k)) if imp is None else imp.astype(float)
    target_q = np.bincount(comp, extra_q - q_k, comp.max() + 1)
    sel = m_k.ravel()
    base_alpha = alpha[keep].ravel()[sel]
    base_xyz = np.repeat(xyz_k, ml_basis.K_S, 0)[sel]
    all_alpha = np.concatenate([base_alpha, extra_alpha])
    all_xyz = np.concatenate([base_xyz, extra_xyz])
    t = np.concatenate([c[keep].ravel()[sel], extra_c])
    js = [_metric(all_alpha, all_xyz, b) for b in BLURS]
    tt = torch.as_tensor(t, dtype=torch.float32)
    norms = [float(tt @ j @ tt) for j in js]    # = the IAM's error: IAM scores 1, exact 0
    return {"feat": torch.from_numpy(mlmod.features(el_k, bonds, q_k, imp)),
            "bonds": torch.as_tensor(bonds, dtype=torch.long).reshape(-1, 2),
            "comp": torch.as_tensor(comp, dtype=torch.long),
            "target_q": torch.as_tensor(target_q, dtype=torch.float32),
            "mask": torch.as_tensor(m_k, dtype=torch.float32),
            "sel": torch.as_tensor(sel), "n_base": int(sel.sum()),
            "t": torch.as_tensor(t, dtype=torch.float32),
            "J": js, "norms": norms,
            "united": bool(imp is not None), "frag_id": str(frag["frag_id"]),
            "resname": str(frag["resname"]), "state": str(frag["state"]),
            "split": str(frag["split"]), "charge": int(frag["charge"])}


def collate(samples):
    """One block-diagonal graph for a list of samples (a single network call per batch)."""
    import torch

    feats, bonds, comps, tq, masks, rows = [], [], [], [], [], []
    n = c = 0
    for s in samples:
        m = len(s["feat"])
        feats.append(s["feat"])
        bonds.append(s["bonds"] + n)
        comps.append(s["comp"] + c)
        tq.append(s["target_q"])
        masks.append(s["mask"])
        rows.append((n, n + m))
        n += m
        c += len(s["target_q"])
    return (torch.cat(feats), torch.cat(bonds), torch.cat(comps), torch.cat(tq),
            torch.cat(masks)), rows


def batch_losses(net, samples, per_blur=False):
    """Relative Coulomb-metric errors of the network on each sample (list)."""
    import torch

    args, rows = collate(samples)
    c_all = net(*args)
    out = []
    for s, (lo, hi) in zip(samples, rows):
        p = torch.zeros_like(s["t"])
        p[:s["n_base"]] = c_all[lo:hi].reshape(-1)[s["sel"]]
        e = p - s["t"]
        errs = [(e @ j @ e) / n for j, n in zip(s["J"], s["norms"])]
        out.append(errs if per_blur else sum(errs) / len(errs))
    return out


def sample_loss(net, s, per_blur=False):
    """Relative Coulomb-metric errors (one per blur) of the network on sample ``s``."""
    return batch_losses(net, [s], per_blur)[0]


def iam_error(s):
    """Same errors for the IAM (Δρ = 0; united: the hydrogens' IAM is then missing too)."""
    e = -s["t"]
    return [float((e @ j @ e) / n) for j, n in zip(s["J"], s["norms"])]


def train(samples, epochs=300, lr=3e-3, seed=0, batch=16):
    import torch

    torch.manual_seed(seed)
    net = mlmod.make_net()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    tr = [s for s in samples if s["split"] == "train"]
    va = [s for s in samples if s["split"] == "val"]
    rng = np.random.default_rng(seed)
    hist = []
    for ep in range(epochs):
        net.train()
        order = rng.permutation(len(tr))
        for k in range(0, len(order), batch):
            opt.zero_grad()
            loss = sum(batch_losses(net, [tr[i] for i in order[k:k + batch]])) / batch
            loss.backward()
            opt.step()
        sched.step()
        if ep % 10 == 9 or ep == epochs - 1:
            net.eval()
            with torch.no_grad():
                vl = float(np.mean([float(x) for x in batch_losses(net, va or tr)]))
            hist.append((ep + 1, vl))
            log.info("epoch %d: validation relative error %.4f", ep + 1, vl)
    # the last epoch (cosine-annealed) is kept: the validation set is a few fragments only
    return net.eval(), hist


def report(net, samples) -> dict:
    """Per split/kind relative Coulomb errors, ML vs IAM, charged vs neutral."""
    import torch

    rows = {}
    with torch.no_grad():
        for s in samples:
            ml = [float(x) for x in sample_loss(net, s, per_blur=True)]  # noqa: per sample
            key = (s["split"], "united" if s["united"] else "explicit",
                   "charged" if s["charge"] else "neutral")
            rows.setdefault(key, []).append((ml, iam_error(s)))
    out = {}
    for key, v in sorted(rows.items()):
        ml = np.sqrt(np.mean([x[0] for x in v], 0))
        iam = np.sqrt(np.mean([x[1] for x in v], 0))
        out["/".join(key)] = {"n": len(v), "ml_rel_err": ml.round(4).tolist(),
                              "iam_rel_err": iam.round(4).tolist(), "blurs": list(BLURS)}
    return out


def evaluate_physics(net, frags, splits=("test", "val")) -> dict:
    """Density NMAE and blurred-potential R (2, 3 Å) of IAM, the s-fit and the network on
    the held-out fragments (explicit hydrogens), with `densrefine.ml.report.score_fragment`."""
    from .report import score_fragment, summarise

    rows = []
    for f in frags:
        if str(f["split"]) not in splits:
            continue
        el = np.array([str(e).strip().upper() for e in f["elements"]])
        c = mlmod.predict(el, f["xyz"], np.asarray(f["formal_charge"], float), net=net)
        rows.append(score_fragment(f, c))
    return {"summary": summarise(rows) if rows else {}, "rows": rows}


def main(argv=None):
    from ..ml.pack import load_fragments

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="ml_data")
    ap.add_argument("--out", default=mlmod.WEIGHTS)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--physics", action="store_true",
                    help="also score density NMAE / potential R on the held-out fragments")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    frags = [f for f in load_fragments(args.data) if bool(f["converged"])]
    samples = [make_sample(f, u) for f in frags for u in (False, True)]
    log.info("%d fragments, %d samples (%s)", len(frags), len(samples),
             {k: sum(s["split"] == k for s in samples) for k in ("train", "val", "test")})
    net, hist = train(samples, epochs=args.epochs, seed=args.seed)
    rep = report(net, samples)
    phys = evaluate_physics(net, frags) if args.physics else {}
    meta = {"trained_on": args.data, "n_fragments": len(frags), "epochs": args.epochs,
            "history": hist, "report": rep, "physics": phys.get("summary"),
            "seconds": time.perf_counter() - t0}
    if args.physics:
        with open(args.out.replace(".npz", "_eval.json"), "w") as fh:
            json.dump(phys, fh, indent=1, default=float)
    mlmod.save_net(net, args.out, meta)
    print(json.dumps({"coulomb": rep, "physics": phys.get("summary")}, indent=1))
    log.info("wrote %s (%.0f s)", args.out, meta["seconds"])


if __name__ == "__main__":
    main()
