"""Small QM fragments cut from real models (issue 6 data pipeline).

Every fragment is a set of heavy atoms taken from a deposited model, with the
hydrogens gemmi places on them (``prepare_topology`` with
``HydrogenChange.ReAdd`` and the CCP4 monomer library), and every bond that the
cut breaks capped by a hydrogen placed along the broken bond (C–H 1.09 Å,
N–H 1.01 Å, O–H 0.97 Å; the usual link-atom scheme of QM/MM). Kinds:

``side``
    Side-chain analogue: the side chain from CB on, CB capped to a methyl
    (Ala → methane, Asp → acetate, Lys → n-butylammonium, Arg → propylguanidinium ...).
``capped``
    Residue with its backbone context, formyl-X-amide: C, O of residue i−1 and N of
    i+1 kept, their CA replaced by H; side chain kept when the fragment stays small,
    otherwise cut after CB (an Ala-like dipeptide model with the real φ/ψ).
``backbone``
    As ``capped`` for residues too large to keep whole: side chain cut after CB
    (an Ala-like dipeptide with the φ/ψ of residue X; state ``"0"``).
``nma``
    N-methylacetamide, the peptide-bond model (CA(i−1), C, O, N, CA(i)).
``base`` / ``phosphate``
    RNA: nucleobase with C1' as methyl; dimethyl phosphate (−1) across O3'–P–O5'.
``water`` / ``ion``
    One water (O from a model, H at 0.9572 Å / 104.52°, random orientation); Na+, K+,
    Mg2+, Cl−.

Protonation states (gemmi's monomer library adds Asp−, Glu−, Lys+, Arg+, His+):
Asp/Glu ``"-1"`` and ``"0"`` (H on OD2/OE2, syn), Lys ``"+1"`` and ``"0"`` (HZ3 removed),
Arg ``"+1"``, His ``"+1"`` (HIP), ``"0d"`` (HID, HE2 removed), ``"0e"`` (HIE, HD1 removed),
everything else ``"0"``. Formal charges per atom sit on OD2/OE2 (−1; the carboxylate
charge is shared, the label is a convention), NZ (+1), NH2 (+1; Arg), NE2 (+1; HIP),
OP1 (−1; phosphate).
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("densrefine")

DATA_SETS = (
    ("5ni1", "emd-3488_5ni1/5ni1_updated.cif.gz"),
    ("6vyb", "emd-21457_6vyb-ntd/6vyb_Ndom.pdb.gz"),
    ("3j6b", "emd-2566_3j6b-chain9/3J6B_9.pdb.gz"),
    ("5a3h", "5a3h/5a3h.pdb.gz"),
    ("3io0", "3io0/3io0_before.pdb.gz"),
    ("6yyt", "emd-11007_6yyt-rna/6yyt_rna.pdb.gz"),
)
"""(short name, path under the shared data folder) of the source models."""

AMINO = ("ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE", "LEU", "LYS",
         "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL")
BASES = ("A", "C", "G", "U")
BACKBONE = ("N", "CA", "C", "O", "OXT")
STATES = {"ASP": ("-1", "0"), "GLU": ("-1", "0"), "LYS": ("+1", "0"), "ARG": ("+1",),
          "HIS": ("+1", "0d", "0e")}
"""Protonation states generated per residue type (others: ``("0",)``)."""
X_H = {"C": 1.09, "N": 1.01, "O": 0.97, "S": 1.34, "P": 1.42}
"""Link-hydrogen bond lengths (Å) by the element of the kept atom."""
MAX_ATOMS = 25
"""Largest fragment (all atoms, H included) that is generated."""
ION_CHARGE = {"Na": 1, "K": 1, "Mg": 2, "Cl": -1}


def place_atom(a, b, c, bond, angle, torsion):
    """Position of atom d with |cd| = bond, angle(b, c, d) and torsion(a, b, c, d) (NeRF).

    Parameters
    ----------
    a, b, c : array_like, shape (3,)
        Reference positions (Å).
    bond : float
        Distance c–d (Å).
    angle, torsion : float
        Bond angle b–c–d and dihedral a–b–c–d in degrees.

    Returns
    -------
    ndarray, shape (3,)
    """
    a, b, c = (np.asarray(v, float) for v in (a, b, c))
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    th, ph = np.radians(angle), np.radians(torsion)
    d2 = bond * np.array([-np.cos(th), np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph)])
    return c + d2[0] * bc + d2[1] * m + d2[2] * n


def load_hydrogenated(path: str):
    """Read a model, keep the first model, strip and re-add hydrogens with gemmi.

    Returns
    -------
    gemmi.Structure
        With riding hydrogens from the CCP4 monomer library (waters keep no H).
    """
    import gemmi

    from ..restraints.monlib import find_monlib

    st = gemmi.read_structure(path)
    for i in range(len(st) - 1, 0, -1):
        del st[i]
    st.setup_entities()
    st.remove_hydrogens()
    st.remove_alternative_conformations()
    names = sorted({r.name for ch in st[0] for r in ch} & set(AMINO + BASES))
    ml = gemmi.read_monomer_lib(find_monlib(), names, ignore_missing=True)
    # drop everything not in the library (ligands, glycans) before adding H
    for ch in st[0]:
        for i in range(len(ch) - 1, -1, -1):
            if ch[i].name not in AMINO + BASES and ch[i].name != "HOH":
                del ch[i]
    gemmi.prepare_topology(st, ml, h_change=gemmi.HydrogenChange.ReAdd, warnings=None,
                           ignore_unknown_links=True)
    return st


def _atoms_of(residues):
    """Flat arrays (elements, names, resnames, residue index, xyz) of gemmi residues."""
    el, nm, rn, ri, xyz = [], [], [], [], []
    for k, r in enumerate(residues):
        for a in r:
            el.append(a.element.name)
            nm.append(a.name)
            rn.append(r.name)
            ri.append(k)
            xyz.append(a.pos.tolist())
    return (np.array(el), np.array(nm), np.array(rn), np.array(ri), np.array(xyz, float))


def _cut(el, nm, rn, ri, xyz, keep_heavy):
    """Kept heavy atoms + their H + link H for every broken heavy–heavy bond."""
    heavy = el != "H"
    keep = np.zeros(len(el), bool)
    keep[keep_heavy] = True
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    cov = np.where(heavy, 1.9, 1.3)
    bonded = (d < np.minimum(cov[:, None], cov[None])) & (d > 0.1)
    hs = np.flatnonzero(~heavy & bonded[:, keep].any(axis=1) & (d[:, keep] < 1.3).any(axis=1))
    out = list(np.flatnonzero(keep)) + list(hs)
    E, N = [el[i] for i in out], [nm[i] for i in out]
    R, X = [rn[i] for i in out], [xyz[i] for i in out]
    for i in np.flatnonzero(keep):
        for j in np.flatnonzero(bonded[i] & heavy & ~keep):
            u = (xyz[j] - xyz[i]) / d[i, j]
            E.append("H")
            N.append("HL" + nm[i])
            R.append(rn[i])
            X.append(xyz[i] + X_H.get(el[i], 1.09) * u)
    return np.array(E), np.array(N), np.array(R), np.array(X, float)


def bonds_of(elements, xyz):
    """Distance-based bond list (pairs i < j), heavy–heavy < 1.9 Å, X–H < 1.3 Å."""
    el = np.asarray(elements)
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    cov = np.where(el == "H", 1.3, 1.9)
    cov = np.where(np.isin(el, ("S", "P")), 2.1, cov)
    m = (d < np.minimum(cov[:, None], cov[None])) & (d > 0.1)
    m &= ~((el[:, None] == "H") & (el[None] == "H"))
    i, j = np.nonzero(np.triu(m, 1))
    return np.stack([i, j], 1).astype(np.int32)


def set_state(frag, state):
    """Apply a protonation state in place (adds/removes H, sets formal charges).

    Returns the fragment, or None when the needed atoms are missing.
    """
    E, N, X = list(frag["elements"]), list(frag["names"]), list(frag["xyz"])
    res = frag["resname"]
    q = np.zeros(len(E), int)

    def idx(name):
        return N.index(name) if name in N else None

    if res in ("ASP", "GLU"):
        c, o1, o2 = (("CG", "OD1", "OD2") if res == "ASP" else ("CD", "OE1", "OE2"))
        ic, i1, i2 = idx(c), idx(o1), idx(o2)
        if None in (ic, i1, i2):
            return None
        if state == "0":
            E.append("H")
            N.append("HD2" if res == "ASP" else "HE2")
            X.append(place_atom(X[i1], X[ic], X[i2], 0.97, 109.5, 0.0))
            q = np.zeros(len(E), int)
        else:
            q[i2] = -1
    elif res == "LYS":
        if idx("NZ") is None or idx("HZ3") is None:
            return None
        if state == "0":
            k = idx("HZ3")
            del E[k], N[k], X[k]
            q = np.zeros(len(E), int)
        else:
            q[idx("NZ")] = 1
    elif res == "ARG":
        if idx("NH2") is None or idx("HE") is None:
            return None
        q[idx("NH2")] = 1
    elif res == "HIS":
        if idx("HD1") is None or idx("HE2") is None:
            return None
        if state == "+1":
            q[idx("NE2")] = 1
        else:
            k = idx("HE2" if state == "0d" else "HD1")
            del E[k], N[k], X[k]
            q = np.zeros(len(E), int)
    frag.update(elements=np.array(E), names=np.array(N), xyz=np.array(X, float),
                charges=q, state=state)
    return frag


def _frag(source, res, kind, el, nm, rn, xyz, chain_res):
    return {"elements": el, "names": nm, "resnames": rn, "xyz": xyz,
            "charges": np.zeros(len(el), int), "resname": res, "kind": kind, "state": "0",
            "source": f"{source}:{chain_res}"}


def _linked(prev, cur):
    """True when prev's C is peptide-bonded to cur's N (C–N < 1.5 Å)."""
    try:
        return prev["C"][0].pos.dist(cur["N"][0].pos) < 1.5
    except (RuntimeError, IndexError):
        return False


def _protein_fragments(source, chain):
    """Side-chain analogues, capped residues and NMA of one chain (neutral/default state)."""
    out = []
    res = [r for r in chain if r.name in AMINO]
    for k, r in enumerate(res):
        tag = f"{chain.name}/{r.name}{r.seqid.num}"
        el, nm, rn, ri, xyz = _atoms_of([r])
        side = np.flatnonzero((el != "H") & ~np.isin(nm, BACKBONE))
        if r.name != "GLY" and len(side):
            E, N, R, X = _cut(el, nm, rn, ri, xyz, side)
            out.append(_frag(source, r.name, "side", E, N, R, X, tag))
        if 0 < k < len(res) - 1 and _linked(res[k - 1], r) and _linked(r, res[k + 1]):
            el, nm, rn, ri, xyz = _atoms_of(res[k - 1:k + 2])
            bb = ((ri == 0) & np.isin(nm, ("C", "O"))) | ((ri == 2) & (nm == "N"))
            full = bb | ((ri == 1) & (el != "H"))
            E, N, R, X = _cut(el, nm, rn, ri, xyz, np.flatnonzero(full))
            kind = "capped"
            if len(E) > MAX_ATOMS - 1:
                part = bb | ((ri == 1) & np.isin(nm, ("N", "CA", "C", "O", "CB")))
                E, N, R, X = _cut(el, nm, rn, ri, xyz, np.flatnonzero(part))
                kind = "backbone"  # side chain cut after CB: an Ala-like dipeptide model
            out.append(_frag(source, r.name, kind, E, N, R, X, tag))
            sel = (((ri == 0) & np.isin(nm, ("CA", "C", "O")))
                   | ((ri == 1) & np.isin(nm, ("N", "CA"))))
            E, N, R, X = _cut(el, nm, rn, ri, xyz, np.flatnonzero(sel))
            out.append(_frag(source, "NMA", "nma", E, N, R, X, tag))
    return out


def _rna_fragments(source, chain):
    """Nucleobase (C1' methyl) and dimethyl-phosphate (−1) fragments of one RNA chain."""
    out = []
    res = [r for r in chain if r.name in BASES]
    for k, r in enumerate(res):
        tag = f"{chain.name}/{r.name}{r.seqid.num}"
        el, nm, rn, ri, xyz = _atoms_of([r])
        base = np.flatnonzero((el != "H") & (np.char.find(nm.astype(str), "'") < 0)
                              & ~np.isin(nm, ("P", "OP1", "OP2", "OP3")))
        base = np.concatenate([base, np.flatnonzero(nm == "C1'")])
        E, N, R, X = _cut(el, nm, rn, ri, xyz, base)
        out.append(_frag(source, r.name, "base", E, N, R, X, tag))
        if k > 0 and "P" in [a.name for a in r]:
            el, nm, rn, ri, xyz = _atoms_of(res[k - 1:k + 1])
            sel = ((ri == 0) & np.isin(nm, ("C3'", "O3'"))) | \
                  ((ri == 1) & np.isin(nm, ("P", "OP1", "OP2", "O5'", "C5'")))
            if sel.sum() != 7:
                continue
            E, N, R, X = _cut(el, nm, rn, ri, xyz, np.flatnonzero(sel))
            f = _frag(source, "PHO", "phosphate", E, N, R, X, tag)
            f["charges"][list(N).index("OP1")] = -1
            f["state"] = "-1"
            out.append(f)
    return out


def _water(xyz_o, rng):
    """Water at an O position with a random orientation (TIP3P-like geometry)."""
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    half = np.radians(104.52) / 2
    h = 0.9572 * np.array([[np.sin(half), np.cos(half), 0], [-np.sin(half), np.cos(half), 0]])
    X = np.vstack([xyz_o, xyz_o + h @ rot.T])
    return np.array(["O", "H", "H"]), np.array(["O", "H1", "H2"]), X


def enumerate_fragments(data_dir, rng=None):
    """All candidate fragments from the source models, in every protonation state.

    Parameters
    ----------
    data_dir : str
        The shared data folder (holds the `DATA_SETS` paths).
    rng : numpy.random.Generator, optional
        For water orientations.

    Returns
    -------
    list of dict
        Keys: elements (N,) str, names (N,) str, resnames (N,) str, xyz (N, 3) float Å,
        charges (N,) int, resname, kind, state, source. Fragments above `MAX_ATOMS`
        atoms or with atoms closer than 0.8 Å are dropped.
    """
    import os

    import gemmi

    rng = rng or np.random.default_rng(0)
    out = []
    for name, rel in DATA_SETS:
        path = os.path.join(data_dir, rel)
        st = load_hydrogenated(path)
        for ch in st[0]:
            base = _protein_fragments(name, ch) + _rna_fragments(name, ch)
            for f in base:
                states = STATES.get(f["resname"], (None,)) if f["kind"] in ("side", "capped") \
                    else (None,)
                for s in states:
                    g = dict(f) if s is None else set_state(dict(f), s)
                    if g is not None:
                        out.append(g)
        if name == "5a3h":
            w = gemmi.read_structure(path)
            ows = [a.pos.tolist() for ch in w[0] for rr in ch
                   if rr.name == "HOH" for a in rr if a.element.name == "O"][:200]
            for k, o in enumerate(ows):
                E, N, X = _water(np.array(o), rng)
                out.append({"elements": E, "names": N, "resnames": np.array(["HOH"] * 3),
                            "xyz": X, "charges": np.zeros(3, int), "resname": "HOH",
                            "kind": "water", "state": "0", "source": f"{name}:HOH{k}"})
    for el, q in ION_CHARGE.items():
        out.append({"elements": np.array([el]), "names": np.array([el.upper()]),
                    "resnames": np.array([el.upper()]), "xyz": np.zeros((1, 3)),
                    "charges": np.array([q]), "resname": el.upper(), "kind": "ion",
                    "state": f"{q:+d}", "source": "ion"})
    good = [f for f in out if len(f["elements"]) <= MAX_ATOMS and _min_dist(f["xyz"]) > 0.8]
    good = _modal_composition(good)
    log.info("Fragments: %d candidates from %d models (max %d atoms)", len(good),
             len(DATA_SETS), MAX_ATOMS)
    return good


def composition(f) -> str:
    """Sorted element string, e.g. ``"CCHHHHOO"``."""
    return "".join(sorted(map(str, f["elements"])))


def _modal_composition(frags):
    """Drop fragments whose composition differs from the most common one of their group.

    Residues with missing atoms (or hydrogens gemmi could not place) give fragments with
    the wrong stoichiometry, often an odd electron count; this removes them.
    """
    import collections

    by = collections.defaultdict(collections.Counter)
    for f in frags:
        by[group_key(f)][composition(f)] += 1
    mode = {k: c.most_common(1)[0][0] for k, c in by.items()}
    return [f for f in frags if composition(f) == mode[group_key(f)]]


def _min_dist(xyz):
    if len(xyz) < 2:
        return np.inf
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    return d[np.triu_indices(len(xyz), 1)].min()


def group_key(f):
    """(kind, resname, state): the unit of sampling and of the train/val/test split."""
    return (f["kind"], f["resname"], f["state"])


PERIOD = {"capped": 3, "backbone": 3, "base": 2}
"""Plan rounds between two fragments of these (costlier, 15-24 atom) kinds; others: every round."""


def sample_plan(fragments, seed=0, jitter_every=4, sigma=0.04, prefix="p2"):
    """Order fragments round-robin over groups, so any prefix of the plan is balanced.

    Round r takes the next (shuffled) member of every `group_key` group whose kind is due
    (`PERIOD`; all ``backbone`` fragments form one group); every ``jitter_every``-th round
    re-uses a fragment of an earlier round with Gaussian coordinate noise of σ = ``sigma`` Å
    per axis (H caps included) instead of a new conformer.

    Returns
    -------
    list of dict
        Each fragment gains ``id`` (str, stable for a given seed and input) and ``jitter`` (Å).
    """
    rng = np.random.default_rng(seed)
    groups = {}
    for f in fragments:
        k = ("backbone", "X", "0") if f["kind"] == "backbone" else group_key(f)
        groups.setdefault(k, []).append(f)
    for k in groups:
        order = rng.permutation(len(groups[k]))
        groups[k] = [groups[k][i] for i in order]
    plan, used = [], {k: 0 for k in groups}
    for r in range(max(len(v) for v in groups.values())):
        for k in sorted(groups):
            if (r - (k[0] in PERIOD)) % PERIOD.get(k[0], 1):  # costly kinds from round 1 on
                continue
            jit = sigma if jitter_every and r % jitter_every == jitter_every - 1 else 0.0
            src = used[k] - 1 if jit else used[k]
            if src < 0 or src >= len(groups[k]) or (k[0] == "ion" and r):
                continue
            used[k] += 0 if jit else 1
            f = dict(groups[k][src])
            if jit:
                f["xyz"] = f["xyz"] + rng.normal(scale=jit, size=f["xyz"].shape)
            f["jitter"] = jit
            f["id"] = f"{prefix}_{len(plan):05d}_{k[0]}_{f['resname']}_{k[2]}"
            plan.append(f)
    return plan
