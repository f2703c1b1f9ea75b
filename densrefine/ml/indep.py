"""Independent validation set for the learned density and its solvent model (issue 21).

Never used for training or for choosing a parameter. Its protocol differs from the
training set's (`densrefine.ml.fragments`, `densrefine.ml.qm`) on purpose:

* fragments: charged end groups with their crystallographic water partners (5A3H, waters
  oriented by an H-bond search), salt bridges cut from 5A3H (guanidinium–carboxylate,
  ammonium–carboxylate, imidazolium–carboxylate), an RNA nucleotide and a methyl
  phosphate dianion (6YYT), a Zn²⁺–imidazole–(H₂O)₃ complex, contact ion pairs (Na⁺–
  acetate, Cl⁻–methylammonium), a thiolate, neutral amides with a water; the functional
  groups are cut at the last carbon (methylguanidinium, acetate, methylammonium), not at
  Cβ as in training;
* level of theory: PBE/def2-SVP with C-PCM water (conductor-like scaling; Barone & Cossi
  1998, J. Phys. Chem. A 102, 1995; PySCF's SWIG surface, York & Karplus 1999, J. Phys.
  Chem. A 103, 11060, cavity = 1.2 × modified Bondi radii, Lebedev order 17), XC grid level
  2. The level of theory is the training set's (`densrefine.ml.qm`: PBE/def2-SVP, IEF-PCM
  with the same cavity, Lebedev order 17, grid level 2); only the PCM variant differs, and
  for water (ε 78.4) C-PCM and IEF-PCM nearly coincide. Order 29 / level 3 were planned
  but cost 3–4× more on the shared machine; the settings used are stored in each file.
  What makes the set independent is the fragments (kinds, cuts and waters above) and the
  references (exact potentials below, not fitted densities);
* reference potentials: exact, not from fitted densities. At each point p of the region
  (voxels within 2.5 Å of any atom, 0.5 Å grid) the blurred potential of a charge density
  ρ is its Coulomb interaction with a unit Gaussian probe of exponent 4π²/B at p,
  V_B(p) = ∫ρ(r) erf(√a |r−p|)/|r−p|, a = 4π²/B (B = 4d², d = 2 and 3 Å), i.e. the
  potential convolved with the splat-convention blur; for the electrons
  Σ_μν D_μν (μν|g_p) (PySCF ``int3c2e``, analytic), nuclei and PCM surface charges
  (Gaussians of exponent ζ_i²) in closed form. ``v_solute`` = nuclei + electrons (the
  PCM-polarised solute), ``v_pcm`` = the surface charges; solvated = their sum. e/Å.

Regenerate (about 1–6 min per fragment on one shared core)::

    OMP_NUM_THREADS=1 nohup nice -n 19 python3 -m densrefine.ml.indep --out ml_data/indep \\
        > ml_data/indep/run.log 2>&1 &

Per fragment it writes ``<out>/<id>.npz`` (compact: geometry, labels, region, potentials,
surface charges; ``np.load(..., allow_pickle=False)``); the AO density matrix goes to
``<out>/raw/`` (not committed).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time

import numpy as np

from .fragments import X_H, _atoms_of, _cut, _water, load_hydrogenated, place_atom

log = logging.getLogger("densrefine")

SETTINGS = {"basis": "def2-svp", "auxbasis": "def2-universal-jkfit", "xc": "pbe",
            "solvent": "C-PCM", "eps": 78.3553, "lebedev_order": 17, "vdw_scale": 1.2,
            "grids_level": 2, "conv_tol": 1e-8, "spacing": 0.5, "region": 2.5,
            "d": [2.0, 3.0]}
"""Level of theory and evaluation grid of the independent set."""

BOHR = 0.52917721092
END_GROUPS = {"ASP": ("CB", "CG", "OD1", "OD2"), "GLU": ("CG", "CD", "OE1", "OE2"),
              "LYS": ("CE", "NZ"), "ARG": ("CD", "NE", "CZ", "NH1", "NH2"),
              "HIS": ("CB", "CG", "ND1", "CD2", "CE1", "NE2"), "ASN": ("CB", "CG", "OD1", "ND2"),
              "GLN": ("CG", "CD", "OE1", "NE2"), "SER": ("CB", "OG"), "CYS": ("CB", "SG"),
              "TYR": ("CZ", "OH", "CE1", "CE2")}
"""Heavy atoms kept of each residue (the first is capped to a methyl by link H)."""
POLAR = {"ASP": ("OD1", "OD2"), "GLU": ("OE1", "OE2"), "LYS": ("NZ",),
         "ARG": ("NE", "NH1", "NH2"), "HIS": ("ND1", "NE2"), "ASN": ("OD1", "ND2"),
         "GLN": ("OE1", "NE2"), "SER": ("OG",), "CYS": ("SG",), "TYR": ("OH",)}
CHARGE = {"ASP": {"OD2": -1}, "GLU": {"OE2": -1}, "LYS": {"NZ": 1}, "ARG": {"NH2": 1},
          "HIS": {"NE2": 1}}


def _residues(st):
    return [(ch.name, r) for ch in st[0] for r in ch]


def _group(res, names=None):
    """End group of a residue: (elements, names, resnames, xyz, charges) with link H."""
    el, nm, rn, ri, xyz = _atoms_of([res])
    keep = np.flatnonzero(np.isin(nm, names or END_GROUPS[res.name]) & (el != "H"))
    E, N, R, X = _cut(el, nm, rn, ri, xyz, keep)
    q = np.array([CHARGE.get(res.name, {}).get(n, 0) for n in N], int)
    return [E, N, R, X, q]


def _nucleus_h(E, X):
    """Move each H to its nucleus distance from the nearest heavy atom (gemmi places
    riding H at X-ray, electron-cloud distances)."""
    X = X.copy()
    heavy = np.flatnonzero(E != "H")
    for i in np.flatnonzero(E == "H"):
        d = np.linalg.norm(X[heavy] - X[i], axis=1)
        j = heavy[np.argmin(d)]
        if d.min() < 1.5:
            X[i] = X[j] + X_H.get(str(E[j]), 1.09) * (X[i] - X[j]) / d.min()
    return X


def _join(*parts):
    return [np.concatenate([p[k] for p in parts]) for k in range(5)]


def _drop(part, name):
    keep = np.asarray(part[1]) != name
    return [np.asarray(p)[keep] for p in part]


def _orient_waters(frag, n_water, rng, n_try=4000):
    """Rotate the last ``n_water`` waters (O, H, H) for the best H-bond score, in order."""
    E, N, R, X, q = frag
    X = X.copy()
    acc = np.isin(E, ("O", "N", "S", "Cl")) & ~((E == "N") & (q > 0))
    for w in range(n_water):
        o = len(E) - 3 * (n_water - w)
        others = np.setdiff1d(np.arange(len(E)), [o, o + 1, o + 2])
        rots = np.linalg.qr(rng.normal(size=(n_try, 3, 3)))[0]
        half = np.radians(104.52) / 2
        h0 = 0.9572 * np.array([[np.sin(half), np.cos(half), 0], [-np.sin(half), np.cos(half), 0]])
        hs = X[o] + np.einsum("rij,hj->rhi", rots, h0)                     # (r, 2, 3)
        d = np.linalg.norm(hs[:, :, None] - X[others][None, None], axis=-1)  # (r, 2, n)
        a = acc[others]
        score = np.exp(-(d[:, :, a] - 1.9) ** 2 / 0.08).sum((1, 2))
        bad = ~a | (E[others] == "N") & (q[others] > 0)
        score -= 5 * (np.clip(2.2 - d[:, :, bad], 0, None) ** 2).sum((1, 2))
        score -= 5 * (np.clip(1.6 - d, 0, None) ** 2).sum((1, 2))
        X[o + 1:o + 3] = hs[int(np.argmax(score))]
    return [E, N, R, X, q]


def _waters_near(st, xyz_polar, cutoff, n_max, exclude=()):
    """O positions of up to n_max waters within ``cutoff`` Å of any of ``xyz_polar``."""
    out = []
    for _, r in _residues(st):
        if r.name != "HOH":
            continue
        p = np.array(r[0].pos.tolist())
        d = np.linalg.norm(np.asarray(xyz_polar) - p, axis=1).min()
        if d < cutoff and not any(np.linalg.norm(p - e) < 0.1 for e in exclude):
            out.append((d, p))
    return [p for _, p in sorted(out, key=lambda t: t[0])[:n_max]]


def _add_waters(frag, waters, rng):
    parts = [frag]
    for p in waters:
        E, N, X = _water(p, rng)
        parts.append([E, N, np.array(["HOH"] * 3), X, np.zeros(3, int)])
    return _orient_waters(_join(*parts), len(waters), rng)


def _polar_xyz(res):
    return [np.array(a.pos.tolist()) for a in res if a.name in POLAR.get(res.name, ())]


def _pick(st, name, n_water, used, cutoff=3.2, state=None):
    """First residue ``name`` (not in ``used``) with ≥ n_water waters near its polar atoms."""
    for ch, r in _residues(st):
        key = f"{ch}/{r.name}{r.seqid.num}"
        if r.name != name or key in used or not _polar_xyz(r):
            continue
        w = _waters_near(st, _polar_xyz(r), cutoff, n_water)
        if len(w) >= n_water and all(n in [a.name for a in r] for n in END_GROUPS[name]):
            used.add(key)
            return key, r, w
    return None, None, []


def _salt_bridges(st, cation, n, used, cutoff=3.2):
    """Up to n (cation residue, carboxylate residue) pairs with a polar contact < cutoff Å."""
    out = []
    res = _residues(st)
    for ch, r in res:
        if r.name != cation or len(out) >= n:
            continue
        for ch2, r2 in res:
            if r2.name not in ("ASP", "GLU"):
                continue
            d = min(np.linalg.norm(a - b) for a in _polar_xyz(r) for b in _polar_xyz(r2))
            keys = (f"{ch}/{r.name}{r.seqid.num}", f"{ch2}/{r2.name}{r2.seqid.num}")
            if d < cutoff and not (set(keys) & used):
                used.update(keys)
                out.append((keys, r, r2))
                break
    return out


def build_fragments(data_dir, seed=0):
    """The independent fragments: list of dicts (id, kind, elements, names, resnames, xyz,
    charges (per atom, int), source)."""
    rng = np.random.default_rng(seed)
    st = load_hydrogenated(os.path.join(data_dir, "5a3h", "5a3h.pdb.gz"))
    frags, used = [], set()

    def add(fid, kind, part, source):
        E, N, R, X, q = part
        X = _nucleus_h(np.asarray(E).astype(str), np.asarray(X, float))
        frags.append({"id": fid, "kind": kind, "elements": np.asarray(E).astype(str),
                      "names": np.asarray(N).astype(str), "resnames": np.asarray(R).astype(str),
                      "xyz": np.asarray(X, float), "charges": np.asarray(q, int),
                      "source": source})

    # charged end groups with their crystallographic water partners
    for name, nw in (("ASP", 3), ("GLU", 3), ("LYS", 2), ("ARG", 2), ("HIS", 1)):
        key, r, w = _pick(st, name, nw, used)
        if r is not None:
            add(f"w_{name.lower()}", "water_partners", _add_waters(_group(r), w, rng),
                f"5a3h:{key}")
    # salt bridges (+ one water each when there is one)
    for cat, n in (("ARG", 2), ("LYS", 2), ("HIS", 1)):
        for i, (keys, r1, r2) in enumerate(_salt_bridges(st, cat, n, used, 3.3)):
            part = _join(_group(r1), _group(r2))
            w = _waters_near(st, _polar_xyz(r1) + _polar_xyz(r2), 3.0, 1)
            add(f"sb_{cat.lower()}{i}", "salt_bridge", _add_waters(part, w, rng),
                "5a3h:" + "+".join(keys))
    # neutral amides / hydroxyl with a water
    for name in ("ASN", "SER"):
        key, r, w = _pick(st, name, 1, used, 3.1)
        if r is not None:
            add(f"w_{name.lower()}", "neutral", _add_waters(_group(r), w[:1], rng), f"5a3h:{key}")
    # N-methylacetamide from a peptide bond whose O has a water partner
    for ch, r in _residues(st):
        o = [np.array(a.pos.tolist()) for a in r if a.name == "O"]
        w = _waters_near(st, o, 3.0, 1) if o and r.name != "HOH" else []
        if not w:
            continue
        pair = [x for _, x in _residues(st) if x.name != "HOH"]
        k = next(i for i, x in enumerate(pair) if x is r or (x.seqid.num == r.seqid.num))
        if k + 1 >= len(pair):
            continue
        el, nm, rn, ri, xyz = _atoms_of(pair[k:k + 2])
        sel = ((ri == 0) & np.isin(nm, ("CA", "C", "O"))) | ((ri == 1) & np.isin(nm, ("N", "CA")))
        if sel.sum() != 5 or np.linalg.norm(xyz[(ri == 0) & (nm == "C")][0]
                                            - xyz[(ri == 1) & (nm == "N")][0]) > 1.5:
            continue
        E, N, R, X = _cut(el, nm, rn, ri, xyz, np.flatnonzero(sel))
        add("w_nma", "neutral", _add_waters([E, N, R, X, np.zeros(len(E), int)], w, rng),
            f"5a3h:{ch}/{r.name}{r.seqid.num}-{pair[k + 1].seqid.num}")
        break
    # thiolate (Cys−, not a training state) with a water placed on S (5NI1 Cys)
    hb = load_hydrogenated(os.path.join(data_dir, "emd-3488_5ni1", "5ni1_updated.cif.gz"))
    cys = next(r for _, r in _residues(hb) if r.name == "CYS")
    g = _drop(_group(cys), "HG")
    g[4] = np.where(g[1] == "SG", -1, 0)
    sg, cb, hl = g[3][g[1] == "SG"][0], g[3][g[1] == "CB"][0], g[3][g[0] == "H"][0]
    w = [place_atom(hl, cb, sg, 3.3, 100.0, 180.0)]
    add("thiolate", "thiolate", _add_waters(g, w, rng),
        f"5ni1:{hb[0][0].name}/CYS{cys.seqid.num} + 1 water")
    # ion pairs
    key, r, _ = _pick(st, "ASP", 0, used)
    g = _group(r)
    c, o = g[3][g[1] == "CG"][0], g[3][g[1] == "OD1"][0]
    na = o + 2.3 * (o - c) / np.linalg.norm(o - c)
    add("ip_na_acetate", "ion_pair", _join(g, [np.array(["Na"]), np.array(["NA"]),
                                               np.array(["NA"]), na[None], np.array([1])]),
        f"5a3h:{key}+Na")
    key, r, _ = _pick(st, "LYS", 0, used)
    g = _group(r)
    nz, hz = g[3][g[1] == "NZ"][0], g[3][g[1] == "HZ1"][0]
    cl = nz + 3.1 * (hz - nz) / np.linalg.norm(hz - nz)
    add("ip_cl_methylammonium", "ion_pair", _join(g, [np.array(["Cl"]), np.array(["CL"]),
                                                      np.array(["CL"]), cl[None], np.array([-1])]),
        f"5a3h:{key}+Cl")
    # Zn2+ on Nε2 of a neutral (Nδ1-H) histidine, three waters: tetrahedral
    key, r, _ = _pick(st, "HIS", 0, used)
    g = _drop(_group(r), "HE2")
    g[4][:] = 0
    ne2, cd2, ce1 = (g[3][g[1] == a][0] for a in ("NE2", "CD2", "CE1"))
    u = 2 * ne2 - cd2 - ce1
    u /= np.linalg.norm(u)
    zn = ne2 + 2.05 * u
    perp = np.cross(u, cd2 - ce1)
    perp /= np.linalg.norm(perp)
    ws = [place_atom(cd2, ne2, zn, 2.10, 109.5, t) for t in (90.0, 210.0, 330.0)]
    part = _join(g, [np.array(["Zn"]), np.array(["ZN"]), np.array(["ZN"]), zn[None],
                     np.array([2])])
    add("zn_his_3w", "metal_his", _add_waters(part, ws, rng), f"5a3h:{key}+Zn(H2O)3")
    # RNA: a nucleotide (3'-OH, 5'-methyl phosphodiester, −1) and methyl phosphate (2−)
    rna = load_hydrogenated(os.path.join(data_dir, "emd-11007_6yyt-rna", "6yyt_rna.pdb.gz"))
    ch = [r for r in rna[0][0]]
    k = next(i for i in range(1, len(ch)) if ch[i].name in ("C", "U"))
    el, nm, rn, ri, xyz = _atoms_of(ch[k - 1:k + 1])
    sel = ((ri == 0) & np.isin(nm, ("C3'", "O3'"))) | ((ri == 1) & (el != "H"))
    E, N, R, X = _cut(el, nm, rn, ri, xyz, np.flatnonzero(sel))
    q = np.where(N == "OP1", -1, 0)
    add(f"nucleotide_{ch[k].name.lower()}", "nucleotide", [E, N, R, X, q],
        f"6yyt:{rna[0][0].name}/{ch[k].name}{ch[k].seqid.num}")
    sel = ((ri == 0) & (nm == "O3'")) | ((ri == 1) & np.isin(nm, ("P", "OP1", "OP2", "O5'", "C5'")))
    E, N, R, X = _cut(el, nm, rn, ri, xyz, np.flatnonzero(sel))
    keep = N != "HLO3'"
    E, N, R, X = E[keep], N[keep], R[keep], X[keep]
    q = np.where(np.isin(N, ("OP1", "O3'")), -1, 0)
    p, o1, o2 = X[N == "P"][0], X[N == "OP1"][0], X[N == "OP2"][0]
    ws = [p + 4.4 * (o - p) / np.linalg.norm(o - p) for o in (o1, o2)]   # O···O 2.9 Å
    add("methyl_phosphate_2m", "phosphate", _add_waters([E, N, R, X, q], ws, rng),
        f"6yyt:{rna[0][0].name}/{ch[k].name}{ch[k].seqid.num} phosphate + 2 waters")
    return frags


# ----------------------------------------------------------------------------- QM + references
def run_qm(frag, settings=SETTINGS):
    """PBE/def2-SVP + C-PCM single point: (mol, dm, surface dict, q, energy, converged)."""
    from pyscf import dft

    from .qm import build_mol

    mol = build_mol(frag["elements"], frag["xyz"], int(frag["charges"].sum()), settings["basis"])
    mf = dft.RKS(mol, xc=settings["xc"]).density_fit(auxbasis=settings["auxbasis"])
    mf.grids.level = settings["grids_level"]
    mf.conv_tol = settings["conv_tol"]
    mf.max_cycle = 100
    mf = mf.PCM()
    ws = mf.with_solvent
    ws.method, ws.eps = settings["solvent"], settings["eps"]
    ws.lebedev_order, ws.vdw_scale = settings["lebedev_order"], settings["vdw_scale"]
    energy = mf.kernel()
    if not mf.converged:
        mf = mf.newton()
        energy = mf.kernel(mf.make_rdm1())
    dm = mf.make_rdm1()
    ws = mf.with_solvent
    ws._get_vind(dm)                        # surface charges of the final density
    return mol, dm, ws.surface, np.asarray(ws._intermediates["q"]), float(energy), bool(
        mf.converged)


def region_of(xyz, spacing=0.5, radius=2.5, margin=3.0):
    """Frame (origin (3,), shape (nz, ny, nx)) around ``xyz`` and the flat indices of the
    voxels within ``radius`` Å of an atom (z slowest, as a densrefine grid)."""
    from scipy.spatial import cKDTree

    lo = np.floor((xyz.min(0) - margin) / spacing) * spacing
    n = np.ceil((xyz.max(0) + margin - lo) / spacing).astype(int) + 1
    z, y, x = np.meshgrid(*(np.arange(k) for k in n[::-1]), indexing="ij")
    pts = lo + spacing * np.stack([x.ravel(), y.ravel(), z.ravel()], 1)
    near = cKDTree(xyz).query(pts, distance_upper_bound=radius)[0] < radius
    return lo, tuple(int(k) for k in n[::-1]), np.flatnonzero(near).astype(np.int32), pts[near]


def blurred_potential(mol, dm, pts, blur, chunk=256):
    """Electron potential (e/Å, positive for electrons) of ``dm`` at ``pts`` (Å), blurred
    by B = ``blur`` Å²: Σ D_μν (μν|g_p), g_p a unit Gaussian of exponent 4π²/B at p."""
    from pyscf import df, gto, lib

    a = 4 * np.pi ** 2 / blur * BOHR ** 2
    dm_tril = lib.pack_tril(dm + dm.T - np.diag(np.diag(dm)))
    out = np.empty(len(pts))
    for s in range(0, len(pts), chunk):
        fake = gto.fakemol_for_charges(np.asarray(pts[s:s + chunk]) / BOHR, expnt=a)
        v = df.incore.aux_e2(mol, fake, intor="int3c2e", aosym="s2ij")
        out[s:s + chunk] = dm_tril @ v
    return out / BOHR


def point_potential(centres, charges, exponents, pts, blur):
    """Σ q erf(√p r)/r (e/Å) of Gaussian charges (exponents Å⁻², inf = point) at ``pts``,
    each blurred by B Å² (p = a·e/(a + e), a = 4π²/B)."""
    from scipy.special import erf

    a = 4 * np.pi ** 2 / blur
    e = np.asarray(exponents, float)
    p = np.where(np.isinf(e), a, a * e / (a + np.where(np.isinf(e), 1.0, e)))
    out = np.zeros(len(pts))
    for s in range(0, len(pts), 2048):
        r = np.linalg.norm(pts[s:s + 2048, None] - centres[None], axis=-1)
        rs = np.maximum(r, 1e-9)
        f = np.where(r > 1e-9, erf(np.sqrt(p) * rs) / rs, 2 * np.sqrt(p / np.pi))
        out[s:s + 2048] = f @ charges
    return out


def references(frag, mol, dm, surface, q, settings=SETTINGS):
    """Region and blurred potentials (solute, PCM) at each d of ``settings``."""
    xyz = np.asarray(frag["xyz"], float)
    lo, shape, idx, pts = region_of(xyz, settings["spacing"], settings["region"])
    zeta2 = np.asarray(surface["charge_exp"]) ** 2 / BOHR ** 2
    sc = np.asarray(surface["grid_coords"]) * BOHR
    v_sol, v_pcm = [], []
    for d in settings["d"]:
        b = 4 * d * d
        v_nuc = point_potential(xyz, mol.atom_charges().astype(float),
                                np.full(len(xyz), np.inf), pts, b)
        v_sol.append(v_nuc - blurred_potential(mol, dm, pts, b))
        v_pcm.append(point_potential(sc, q, zeta2, pts, b))
    return {"origin": lo, "shape": np.array(shape), "region": idx,
            "v_solute": np.array(v_sol, np.float32), "v_pcm": np.array(v_pcm, np.float32),
            "surface_xyz": sc.astype(np.float32), "surface_q": q.astype(np.float32),
            "surface_zeta2": zeta2.astype(np.float32)}


def run(out, data_dir, only=None, settings=SETTINGS):
    """Compute every fragment not yet in ``out`` (smallest first)."""
    os.makedirs(os.path.join(out, "raw"), exist_ok=True)
    frags = sorted(build_fragments(data_dir), key=lambda f: len(f["elements"]))
    for f in frags:
        path = os.path.join(out, f["id"] + ".npz")
        if (only and f["id"] not in only) or os.path.exists(path) \
                or os.path.exists(os.path.join(out, "STOP")):
            continue
        t0 = time.perf_counter()
        mol, dm, surf, q, energy, conv = run_qm(f, settings)
        t1 = time.perf_counter()
        np.savez_compressed(os.path.join(out, "raw", f["id"] + ".npz"), dm=dm)
        ref = references(f, mol, dm, surf, q, settings)
        tmp = path + ".tmp.npz"
        np.savez_compressed(
            tmp, elements=f["elements"].astype("U2"), names=f["names"].astype("U6"),
            resnames=f["resnames"].astype("U4"), xyz=f["xyz"], charges=f["charges"].astype(np.int8),
            meta=np.array([f["id"], f["kind"], f["source"]]), energy=energy, converged=conv,
            qm_seconds=t1 - t0, ref_seconds=time.perf_counter() - t1, spacing=settings["spacing"],
            d=np.array(settings["d"]), settings=np.array(json.dumps(settings)), **ref)
        os.replace(tmp, path)
        log.info("%s: %d atoms, Q %+d, E %.6f, converged %s, QM %.0f s, references %.0f s, "
                 "%d region points, Σq_PCM %+.3f", f["id"], len(f["elements"]),
                 int(f["charges"].sum()), energy, conv, t1 - t0, time.perf_counter() - t1,
                 len(ref["region"]), float(q.sum()))


def load(folder):
    """All computed fragments of the independent set: list of dicts (numpy only)."""
    out = []
    for fn in sorted(os.listdir(folder)):
        if fn.endswith(".npz") and not fn.endswith(".tmp.npz"):
            with np.load(os.path.join(folder, fn), allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
            d["id"], d["kind"], d["source"] = (str(x) for x in d["meta"])
            out.append(d)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="ml_data/indep")
    p.add_argument("--data", default=os.path.normpath(os.path.join(
        os.path.dirname(__file__), "..", "..", "..", "shared", "data")))
    p.add_argument("--only", default="", help="comma-separated fragment ids")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    run(a.out, os.environ.get("DENSREFINE_DATA", a.data), [x for x in a.only.split(",") if x])


if __name__ == "__main__":
    main()
