"""Train and evaluate the stage-2 (s,p,d,f, e3nn) deformation-density network (CPU).

    python3 -m densrefine.ml.train_spdf --data ml_data --epochs 150 \\
        --out densrefine/density/weights/ml_spdf_v1.npz --eval ml_data/eval_ml_spdf_v1.json

Loss: as stage 1 (`densrefine.ml.train`), the Coulomb-metric error of the predicted Δρ
relative to the reference's own norm, averaged over the blurs B = 2 and 16 Å²,

    L = ½ Σ_B (p − t)ᵀ J_B (p − t) / tᵀ J_B t,

now with the stage-2 "sph" functions (reference t = the stored ``c_sph`` fit) and the metric
J_B from libcint (`densrefine.ml.fitting_sph.sph_metric`; needs PySCF, the ``[mldata]`` extra,
at training time only). IAM (p = 0) scores 1. Every fragment is used twice: explicit
hydrogens, and united atoms (hydrogens removed; the reference then also holds, at the hydrogen
positions, their Δρ and IAM density, which the network has to put on the heavy atoms).
Splits are those of the data set (`densrefine.ml.pack.split_of`); torch uses one thread.
"""
from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np

from ..density import ml as ml1
from ..density import ml_basis, ml_spdf
from . import train as train1

log = logging.getLogger("densrefine")


def make_sample(frag, united: bool):
    """Tensors of one training sample (module docstring)."""
    import torch

    from .fitting_sph import sph_metric

    el = np.array([str(e).strip().upper() for e in frag["elements"]])
    elc = [e.capitalize() for e in el]
    xyz = np.asarray(frag["xyz"], np.float64)
    q = np.asarray(frag["formal_charge"], np.float64)
    c = np.asarray(frag["c_sph"], np.float64)
    _, mask = ml_basis.sph_table(elc)
    is_h = el == "H"
    united = united and is_h.any()
    keep = ~is_h if united else np.ones(len(el), bool)
    extra, extra_c, imp = [], [], None
    if united:
        ia, iw = train1._iam_h_functions()
        extra = [(int(h), float(a)) for h in np.flatnonzero(is_h) for a in ia]
        extra_c = [float(w) for _ in np.flatnonzero(is_h) for w in iw]
        d = np.linalg.norm(xyz[is_h][:, None] - xyz[None, keep], axis=2)
        imp = np.bincount(d.argmin(1), minlength=int(keep.sum()))
    js = sph_metric(elc, xyz, extra=extra)
    t = np.concatenate([c[mask], extra_c])
    # positions of the kept atoms' functions in the union vector (atom-major, masked)
    start = np.concatenate([[0], np.cumsum(mask.sum(1))])
    pos = np.concatenate([np.arange(start[i], start[i + 1]) for i in np.flatnonzero(keep)])
    bonds = ml1.bonds_from_distances(el[keep], xyz[keep])
    feat, b, comp, target, m = ml_spdf.inputs(el[keep], xyz[keep], q[keep], bonds, imp)
    tt = torch.as_tensor(t, dtype=torch.float32)
    jt = [torch.as_tensor(j, dtype=torch.float32) for j in js]
    return {"feat": feat, "xyz": torch.as_tensor(xyz[keep], dtype=torch.float32), "bonds": b,
            "comp": comp, "target_q": target.float(), "mask": m,
            "msel": torch.as_tensor(mask[keep].ravel()), "pos": torch.as_tensor(pos),
            "t": tt, "J": jt, "norms": [float(tt @ j @ tt) for j in jt], "united": bool(united),
            "frag_id": str(frag["frag_id"]), "split": str(frag["split"]),
            "charge": int(frag["charge"])}


def collate(samples):
    """One block-diagonal graph for a list of samples."""
    import torch

    keys = ("feat", "xyz", "bonds", "comp", "target_q", "mask")
    parts = {k: [] for k in keys}
    rows, n, nc = [], 0, 0
    for s in samples:
        m = len(s["feat"])
        for k in keys:
            v = s[k]
            parts[k].append(v + n if k == "bonds" else v + nc if k == "comp" else v)
        rows.append((n, n + m))
        n += m
        nc += len(s["target_q"])
    return tuple(torch.cat(parts[k]) for k in keys), rows


def batch_losses(net, samples, per_blur=False):
    """Relative Coulomb-metric errors of the network on each sample."""
    import torch

    (feat, xyz, bonds, comp, tq, mask), rows = collate(samples)
    c_all = net(feat, xyz, bonds, comp, tq, mask)
    out = []
    for s, (lo, hi) in zip(samples, rows):
        p = torch.zeros_like(s["t"])
        p[s["pos"]] = c_all[lo:hi].reshape(-1)[s["msel"]]
        e = p - s["t"]
        errs = [(e @ j @ e) / nrm for j, nrm in zip(s["J"], s["norms"])]
        out.append(errs if per_blur else sum(errs) / len(errs))
    return out


def output_scales(frags):
    """Per-column RMS (42,) of the training targets, heavy atoms and H (shell-wise constant)."""
    ls, shell, _ = ml_basis.sph_columns()
    out = []
    for want_h in (False, True):
        rows = [np.asarray(f["c_sph"])[np.array([str(e).strip().upper() == "H"
                                                  for e in f["elements"]]) == want_h]
                for f in frags if str(f["split"]) == "train"]
        c = np.concatenate(rows)
        sc = np.ones(ml_basis.K_SPH)
        for l in range(4):
            for s in range(ml_basis.SPH_MUL[l]):
                sel = (ls == l) & (shell == s)
                v = float(np.sqrt(np.mean(c[:, sel] ** 2)))
                sc[sel] = v if v > 0 else 1.0
        out.append(sc)
    return out


def train(samples, scales, epochs=150, lr=5e-3, seed=0, batch=16, budget_s=1800):
    """Adam + cosine schedule on the train split; stops early when ``budget_s`` runs out."""
    import torch

    torch.manual_seed(seed)
    net = ml_spdf.make_net(*scales)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    tr = [s for s in samples if s["split"] == "train"]
    va = [s for s in samples if s["split"] == "val"]
    rng = np.random.default_rng(seed)
    hist, t0 = [], time.perf_counter()
    for ep in range(epochs):
        net.train()
        order = rng.permutation(len(tr))
        tl = 0.0
        for k in range(0, len(order), batch):
            opt.zero_grad()
            loss = sum(batch_losses(net, [tr[i] for i in order[k:k + batch]])) / batch
            loss.backward()
            opt.step()
            tl += float(loss) * min(batch, len(order) - k)
        sched.step()
        if ep % 5 == 4 or ep == epochs - 1:
            net.eval()
            with torch.no_grad():
                vl = float(np.mean([float(x) for x in batch_losses(net, va or tr)]))
            hist.append((ep + 1, tl / len(tr), vl))
            log.info("epoch %d: train %.4f validation %.4f (%.0f s)", ep + 1, tl / len(tr), vl,
                     time.perf_counter() - t0)
        if time.perf_counter() - t0 > budget_s:
            log.info("time budget reached after epoch %d", ep + 1)
            break
    return net.eval(), hist


def report(net, samples) -> dict:
    """Per split/mode/charge: sqrt of the mean relative Coulomb errors, ML vs IAM (= 1)."""
    import torch

    rows = {}
    with torch.no_grad():
        for s in samples:
            ml = [float(x) for x in batch_losses(net, [s], per_blur=True)[0]]
            key = (s["split"], "united" if s["united"] else "explicit",
                   "charged" if s["charge"] else "neutral")
            rows.setdefault(key, []).append(ml)
    return {"/".join(k): {"n": len(v), "ml_rel_err": np.sqrt(np.mean(v, 0)).round(4).tolist(),
                          "blurs": [2.0, 16.0]} for k, v in sorted(rows.items())}


def evaluate_physics(net, frags, splits=("test", "val")) -> dict:
    """Density NMAE and potential R (2, 3 Å) of IAM, stage-1 fit / model, sph fit, stage 2."""
    from .evaluate import cart_terms
    from .report import score_fragment, summarise

    net1 = ml1.load_net()
    rows = []
    for f in frags:
        if str(f["split"]) not in splits:
            continue
        el = np.array([str(e).strip().upper() for e in f["elements"]])
        q = np.asarray(f["formal_charge"], float)
        c1 = ml1.predict(el, f["xyz"], q, net=net1)
        c2 = ml_spdf.predict(el, f["xyz"], q, net=net)
        r = score_fragment(f, c1, {"sphfit": cart_terms(f["elements"], f["c_sph"]),
                                   "spdf": cart_terms(f["elements"], c2)})
        r["split"] = str(f["split"])
        rows.append(r)
        log.info("scored %s: R3 iam %.3f s1 %.3f spdf %.3f sphfit %.3f", r["frag_id"],
                 r["r3_iam"], r["r3_pred"], r["r3_spdf"], r["r3_sphfit"])
    out = {"summary": summarise(rows)}
    for sp in splits:
        sel = [r for r in rows if r["split"] == sp]
        if sel:
            out[f"summary_{sp}"] = summarise(sel)
    out["rows"] = rows
    return out


def main(argv=None):
    import torch

    from .pack import load_fragments

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="ml_data")
    ap.add_argument("--out", default=ml_spdf.WEIGHTS)
    ap.add_argument("--eval", default=None, help="write held-out physics scores (JSON) here")
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--budget", type=float, default=1800, help="training time limit (s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--explicit-only", action="store_true", help="no united-atom samples")
    ap.add_argument("--score", metavar="NPZ", default=None,
                    help="no training: score these weights on the held-out fragments (--eval)")
    ap.add_argument("--combine", nargs="+", metavar="NPZ", default=None,
                    help="write the average of these trained networks to --out and stop")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.combine:
        nets = [ml_spdf.load_net(p) for p in args.combine]
        metas = [json.loads(str(np.load(p, allow_pickle=False)["meta_json"])) for p in args.combine]
        ml_spdf.save_net(ml_spdf.make_ensemble(nets), args.out,
                         {"ensemble_of": args.combine, "members": metas})
        log.info("wrote %s (mean of %d networks)", args.out, len(nets))
        return
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    frags = [f for f in load_fragments(args.data) if bool(f["converged"])]
    if args.score:
        phys = evaluate_physics(ml_spdf.load_net(args.score), frags)
        if args.eval:
            with open(args.eval, "w") as fh:
                json.dump(phys, fh, indent=1, default=float)
        print(json.dumps({k: v for k, v in phys.items() if k.startswith("summary")}, indent=1))
        return
    modes = (False,) if args.explicit_only else (False, True)
    samples = [make_sample(f, u) for f in frags for u in modes]
    log.info("%d fragments, %d samples (%.0f s)", len(frags), len(samples),
             time.perf_counter() - t0)
    scales = output_scales(frags)
    net, hist = train(samples, scales, args.epochs, args.lr, args.seed, budget_s=args.budget)
    rep = report(net, samples)
    meta = {"trained_on": args.data, "n_fragments": len(frags), "epochs": args.epochs,
            "lr": args.lr, "history": hist, "report": rep,
            "seconds": time.perf_counter() - t0}
    ml_spdf.save_net(net, args.out, meta)
    print(json.dumps(rep, indent=1))
    if args.eval:
        phys = evaluate_physics(net, frags)
        phys["coulomb"] = rep
        with open(args.eval, "w") as fh:
            json.dump(phys, fh, indent=1, default=float)
        print(json.dumps({k: v for k, v in phys.items() if k.startswith("summary")}, indent=1))
    log.info("wrote %s (%.0f s)", args.out, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
