"""Fit every raw single point and pack the results into compact chunk files (ml_data/).

Chunk layout (``np.load(path, allow_pickle=False)``; F fragments, A atoms, M rich functions,
B bonds in the chunk; per-fragment slices via the ``*_offset`` arrays of length F + 1)::

    frag_id, kind, resname, state, source, split : (F,) str
    charge (F,) int; jitter (F,) Å; energy (F,) Hartree; converged (F,) bool
    qm_seconds, fit_seconds (F,); n_electrons (F,)
    resid_s, resid_rich, dnorm : (F, 3) at blur B = 2, 16, 36 Å² (see fitting.B_EVAL)
    atom_offset (F+1,); elements, atom_names, res_names (A,) str; xyz (A, 3) Å;
    formal_charge (A,) int8; c_s (A, 8) e (unit-integral s; H uses columns 0-3)
    c_sph (A, 42) stage-2 solid-harmonic coefficients (e·Å^l; `ml_basis` "sph", H: subset);
    resid_sph (F, 3) its relative residual at B = 2, 16, 36 Å²
    rich_offset (F+1,); c_rich (M,) e/Å³; rich_atom (M,) fragment-local atom index;
    rich_alpha (M,) Å⁻²; rich_powers (M, 3) int8
    bond_offset (F+1,); bonds (B, 2) int32 fragment-local
"""
from __future__ import annotations

import glob
import json
import logging
import os

import numpy as np

log = logging.getLogger("densrefine")

TEST = {("GLU", "-1"), ("GLU", "0"), ("GLN", "0"), ("HIS", "+1")}
"""Held-out (resname, state) pairs: side-chain and capped fragments of these are the test set."""
VALIDATION = {("THR", "0"), ("MET", "0")}
"""Validation (resname, state) pairs."""


def split_of(kind: str, resname: str, state: str) -> str:
    """'train', 'val' or 'test' for a fragment (only side/capped fragments are held out)."""
    if kind in ("side", "capped"):
        if (resname, state) in TEST:
            return "test"
        if (resname, state) in VALIDATION:
            return "val"
    return "train"


def _cached(raw_path, suffix, fit):
    """``fit(elements, xyz, charge, dm)`` of one raw file, cached next to it as <id><suffix>."""
    cache = raw_path[:-4] + suffix
    if os.path.exists(cache):
        return dict(np.load(cache, allow_pickle=False))
    z = np.load(raw_path, allow_pickle=False)
    r = fit(z["elements"], z["xyz"], int(z["charges"].sum()), z["dm"])
    np.savez(cache, **r)
    return r


def _fit_cached(raw_path):
    """Stage-1 s and Cartesian rich fits of one raw file (cache ``<id>.fit.npz``)."""
    from .fitting import fit_fragment

    return _cached(raw_path, ".fit.npz", fit_fragment)


def _fit_sph_cached(raw_path):
    """Stage-2 (sph) fit of one raw file (cache ``<id>.sph.npz``)."""
    from .fitting_sph import fit_fragment_sph

    return _cached(raw_path, ".sph.npz", fit_fragment_sph)


def _raw_files(out, only=None):
    files = sorted(f for f in glob.glob(os.path.join(out, "raw", "*.npz"))
                   if not f.endswith((".fit.npz", ".sph.npz")) and ".tmp" not in f
                   and (only is None or os.path.basename(f)[:-4] in only))
    keep, seen = [], set()
    for f in files:
        z = np.load(f, allow_pickle=False)
        if str(z["error"]) or not bool(z["converged"]):
            continue
        key = (tuple(map(str, z["meta"][1:4])), "".join(z["elements"]),
               np.round(z["xyz"], 3).tobytes())
        if key not in seen:  # the same geometry computed under two plan ids
            seen.add(key)
            keep.append(f)
    return keep


def pack(out, chunk=50, frozen=False):
    """Fit (cached) and write ``<out>/chunk_XXX.npz`` and ``<out>/index.json``.

    ``frozen``: only the fragments already listed in ``<out>/index.json`` (raw files computed
    later are left for a future pack), so that a re-pack adds fields without changing the set.
    """
    from .fragments import bonds_of

    only = None
    if frozen:
        with open(os.path.join(out, "index.json")) as fh:
            only = {r["frag_id"] for r in json.load(fh)}
    files = _raw_files(out, only)
    log.info("Pack: %d converged raw single points, %d per chunk", len(files), chunk)
    stale = set(glob.glob(os.path.join(out, "chunk_*.npz")))
    index = []
    for c0 in range(0, len(files), chunk):
        rows = []
        for f in files[c0:c0 + chunk]:
            z = dict(np.load(f, allow_pickle=False))
            z.update({"fit": _fit_cached(f), "sph": _fit_sph_cached(f)})
            rows.append(z)
        name = f"chunk_{c0 // chunk:03d}.npz"
        _write_chunk(os.path.join(out, name), rows, bonds_of)
        stale.discard(os.path.join(out, name))
        index += [{"chunk": name, "frag_id": str(r["meta"][0]), "kind": str(r["meta"][1]),
                   "resname": str(r["meta"][2]), "state": str(r["meta"][3]),
                   "split": split_of(*map(str, r["meta"][1:4])),
                   "n_atoms": int(len(r["elements"]))} for r in rows]
    for old in stale:  # chunks of an earlier, longer pack
        os.remove(old)
    with open(os.path.join(out, "index.json"), "w") as fh:
        json.dump(index, fh, indent=0)
    return index


def _offsets(sizes):
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def _write_chunk(path, rows, bonds_of):
    meta = np.array([r["meta"] for r in rows]).astype(str)
    fit = [r["fit"] for r in rows]
    bonds = [bonds_of(r["elements"], r["xyz"]) for r in rows]
    arrays = dict(
        frag_id=meta[:, 0], kind=meta[:, 1], resname=meta[:, 2], state=meta[:, 3],
        source=meta[:, 4], jitter=meta[:, 5].astype(float),
        split=np.array([split_of(*m[1:4]) for m in meta]),
        charge=np.array([int(r["charges"].sum()) for r in rows]),
        energy=np.array([float(r["energy"]) for r in rows]),
        converged=np.array([bool(r["converged"]) for r in rows]),
        qm_seconds=np.array([float(r["seconds"]) for r in rows]),
        fit_seconds=np.array([float(f["seconds"]) for f in fit]),
        n_electrons=np.array([float(f["n_electrons"]) for f in fit]),
        resid_s=np.array([f["resid_s"] for f in fit]),
        resid_rich=np.array([f["resid_rich"] for f in fit]),
        dnorm=np.array([f["dnorm"] for f in fit]),
        atom_offset=_offsets([len(r["elements"]) for r in rows]),
        elements=np.concatenate([r["elements"] for r in rows]).astype("U2"),
        atom_names=np.concatenate([r["names"] for r in rows]).astype("U6"),
        res_names=np.concatenate([r["resnames"] for r in rows]).astype("U4"),
        xyz=np.concatenate([r["xyz"] for r in rows]),
        formal_charge=np.concatenate([r["charges"] for r in rows]).astype(np.int8),
        c_s=np.concatenate([f["c_s"] for f in fit]),
        c_sph=np.concatenate([r["sph"]["c_sph"] for r in rows]),
        resid_sph=np.array([r["sph"]["resid_sph"] for r in rows]),
        rich_offset=_offsets([len(f["c_rich"]) for f in fit]),
        c_rich=np.concatenate([f["c_rich"] for f in fit]),
        rich_atom=np.concatenate([f["rich_atom"] for f in fit]).astype(np.int32),
        rich_alpha=np.concatenate([f["rich_alpha"] for f in fit]),
        rich_powers=np.concatenate([f["rich_powers"] for f in fit]).astype(np.int8),
        bond_offset=_offsets([len(b) for b in bonds]),
        bonds=np.concatenate(bonds).astype(np.int32))
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def load_fragments(data_dir):
    """All fragments of all chunks as a list of dicts (numpy only, no pickle).

    Returns
    -------
    list of dict
        Per fragment: the per-fragment fields of the chunk layout (module docstring) plus
        its slices ``elements``, ``atom_names``, ``res_names``, ``xyz``, ``formal_charge``,
        ``c_s``, ``c_rich``, ``rich_atom``, ``rich_alpha``, ``rich_powers``, ``bonds``.
    """
    out = []
    for path in sorted(glob.glob(os.path.join(data_dir, "chunk_*.npz"))):
        z = np.load(path, allow_pickle=False)
        ao, ro, bo = z["atom_offset"], z["rich_offset"], z["bond_offset"]
        for i in range(len(z["frag_id"])):
            d = {k: z[k][i] for k in ("frag_id", "kind", "resname", "state", "source",
                                      "split", "charge", "jitter", "energy", "converged",
                                      "qm_seconds", "fit_seconds", "n_electrons",
                                      "resid_s", "resid_rich", "dnorm")}
            for k in ("elements", "atom_names", "res_names", "xyz", "formal_charge", "c_s"):
                d[k] = z[k][ao[i]:ao[i + 1]]
            if "c_sph" in z.files:  # stage-2 fields (packs after 2026-11-24 04:30)
                d["c_sph"] = z["c_sph"][ao[i]:ao[i + 1]]
                d["resid_sph"] = z["resid_sph"][i]
            for k in ("c_rich", "rich_atom", "rich_alpha", "rich_powers"):
                d[k] = z[k][ro[i]:ro[i + 1]]
            d["bonds"] = z["bonds"][bo[i]:bo[i + 1]]
            out.append(d)
    return out
