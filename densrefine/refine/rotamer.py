"""χ1/χ2 rotamer scan: the ``chi1`` stage of ``fit``.

Gradient refinement cannot move a side chain between rotamers: the staggered χ values
are 120° apart and separated by barriers in both the map term and the torsion
restraints. Like the density-guided rotamer fitting of Coot (Emsley et al., Acta Cryst.
D66, 486 (2010)) this stage tries, for every amino acid with a γ atom (not Gly/Ala/Pro,
no altlocs), the combinations of the current and the two other staggered χ1 values
(every side-chain atom beyond Cβ rotated rigidly about Cα→Cβ) with, for residues with a
χ2, rotations about Cβ→Cγ of the atoms beyond Cγ (remoteness δ and further): ±120° where
Cγ is sp3 (Leu, Ile, Met, Lys, Arg, Glu, Gln), 90° for the symmetric rings and
carboxylate (Phe, Tyr, Asp: ±90° are equivalent) and 180°, ±90° for His, Trp, Asn. Bond
lengths and angles are kept exactly. The candidate with the highest mean map value at
its heavy atoms wins, provided it beats the current one by ``margin`` (map standard
deviations over the molecular mask, scaled for the number of atoms averaged) and brings no
heavy atom closer to a heavy atom of another residue than ``CLASH`` Å or than the current
side chain's closest contact, whichever is shorter. The all-atom stage then polishes it.

The contact limit is relative because the neighbours are as wrong as the side chain:
after the rigid and SSE stages of a 1 Å perturbation (5NI1 in EMD-3488, seeds 0–2),
the correct χ1 of Tyr A140 and C140 (map score 1.0–1.2 σ against −0.1) was rejected by
a 2.2–2.4 Å contact with a displaced main-chain O, while the current wrong one had
closer contacts still. With the relative limit, over the 3 seeds' 1.2k side chains,
92 instead of 84 wrong rotamers were fixed, 19 instead of 18 correct ones lost, and
Σ n·dev² to the deposited side chains fell 3011 → 2166 Å² (1.5 Å errors: 87 vs 77
fixed, 24 vs 22 lost, 6527 → 5384 Å²); an absolute 2.2 or 2.0 Å limit, or main-chain
contacts only, did less (`benchmarks/RESULTS.md`).
"""
from __future__ import annotations

import numpy as np

from ..restraints.chains import flip_groups

CLASH = 2.6  # Å, heavy-atom contact that rejects a candidate rotamer
ANGLES = (2.0 * np.pi / 3.0, -2.0 * np.pi / 3.0)
_Q = np.pi / 2.0
CHI2 = {  # residue: (γ atom of the χ2 axis Cβ→Cγ, rotations of the atoms beyond it, rad)
    "LEU": ("CG", ANGLES), "ILE": ("CG1", ANGLES), "MET": ("CG", ANGLES),
    "LYS": ("CG", ANGLES), "ARG": ("CG", ANGLES), "GLU": ("CG", ANGLES),
    "GLN": ("CG", ANGLES), "PHE": ("CG", (_Q,)), "TYR": ("CG", (_Q,)), "ASP": ("CG", (_Q,)),
    "HIS": ("CG", (np.pi, _Q, -_Q)), "TRP": ("CG", (np.pi, _Q, -_Q)),
    "ASN": ("CG", (np.pi, _Q, -_Q)),
}
"""χ2 rotations tried per residue type (see the module docstring)."""
MIN_SCORE = 0.0
"""A new rotamer must also reach this mean map value (σ over the molecular mask) at its
heavy atoms beyond Cβ: a side chain without density is left as it is."""
MARGIN_ATOMS = 6
"""The margin applies to side chains of this many heavy atoms beyond Cβ; for n atoms it is
scaled by sqrt(MARGIN_ATOMS / n), as the noise of a mean over n map values (Ser, n = 1:
2.4×). On 5NI1 perturbed by 1 Å (3 seeds) the final RMSD went 0.433 / 0.462 / 0.573 →
0.432 / 0.462 / 0.563 Å; with flips only (benchmarks/rotamer_chi2.py, 3 seeds) correct side
chains moved 8 / 5 / 7 → 6 / 4 / 5 and restored flips 37 / 34 / 35 → 36 / 33 / 33."""


def _rotate(x, centre, axis, angle):
    """Rodrigues rotation of points x (n, 3) about the line (centre, unit axis)."""
    v = x - centre
    c, s = np.cos(angle), np.sin(angle)
    return centre + v * c + np.cross(axis, v) * s + np.outer(v @ axis, axis) * (1 - c)


def _sampler(values, frame, mask):
    """Map value (in σ over ``mask``) at positions (n, 3) Å, trilinear interpolation."""
    from scipy.ndimage import map_coordinates

    v = np.asarray(values, np.float64)
    sel = v[mask] if mask is not None and mask.any() else v
    v = (v - sel.mean()) / max(sel.std(), 1e-12)

    def sample(xyz):
        idx = frame.xyz_to_index(np.asarray(xyz, np.float64))  # (n, 3) in x, y, z order
        return map_coordinates(v, idx[:, ::-1].T, order=1, mode="nearest")
    return sample


def chi2_part(model, rot):
    """(γ atom index, indices of ``rot`` beyond γ, angles) of one side chain, or None.

    "Beyond γ" = atoms whose name's second character is a remoteness letter after γ
    (δ, ε, ζ, η: D, E, Z, H), hydrogens included (HD21, HH, HE …).
    """
    at = model.atoms
    spec = CHI2.get(str(at.res_name[rot[0]])) if len(rot) else None
    if spec is None:
        return None
    names = [str(n) for n in at.atom_name[rot]]
    if spec[0] not in names:
        return None
    beyond = np.array([i for i, n in zip(rot, names) if len(n) > 1 and n[1] in "DEZH"], int)
    if len(beyond) == 0:
        return None
    return rot[names.index(spec[0])], beyond, spec[1]


def _candidates(x, rot, ca, cb, part):
    """Rigid χ1 × χ2 variants of the side chain ``rot`` (first: the current one)."""
    axis1 = x[cb] - x[ca]
    axis1 = axis1 / np.linalg.norm(axis1)
    pos = {i: k for k, i in enumerate(rot)}
    for a1 in (0.0, *ANGLES):
        c1 = _rotate(x[rot], x[cb], axis1, a1) if a1 else x[rot].copy()
        yield c1
        if part is None:
            continue
        cg, beyond, angles = part
        sel = np.array([pos[i] for i in beyond], int)
        g = c1[pos[cg]]
        axis2 = g - x[cb]
        axis2 = axis2 / np.linalg.norm(axis2)
        for a2 in angles:
            c2 = c1.copy()
            c2[sel] = _rotate(c1[sel], g, axis2, a2)
            yield c2


def _closest_contact(tree, heavy_idx, res, own, pts) -> float:
    """Shortest distance (Å, capped at `CLASH`) from ``pts`` to heavy atoms of other residues."""
    d, j = tree.query(pts, k=16, distance_upper_bound=CLASH)
    ok = np.isfinite(d)
    ok[ok] = res[heavy_idx[j[ok]]] != own
    return float(d[ok].min()) if ok.any() else CLASH


def scan_chi1(model, xyz, moving, values, frame, mask=None, margin: float | None = None,
              chi2: bool = False, min_score: float | None = None):
    """Best staggered χ1 (and χ2) per side chain by the map; returns new coordinates.

    Parameters
    ----------
    model : densrefine.Model
        Supplies names and residues (its coordinates are not used).
    xyz : ndarray, shape (N, 3), float
        Current coordinates (Å).
    moving : ndarray, shape (N,), bool
        Only residues whose side chain is entirely moving are scanned.
    values : ndarray, shape (nz, ny, nx)
        Map values on ``frame``.
    frame : densrefine.simulate.GridFrame
    mask : ndarray of bool like ``values``, optional
        Molecular mask over which the map is normalised.
    margin : float, optional
        Map σ by which a new rotamer must beat the current one, for a side chain of
        `MARGIN_ATOMS` heavy atoms (scaled by sqrt(MARGIN_ATOMS / n) otherwise); default
        0.1 for χ1 only, 0.2 with χ2 (more candidates, more chances to win on noise).
    chi2 : bool
        Also try the χ2 rotations of `CHI2` (else χ1 only). Measured on 5NI1 in
        EMD-3488 (``python3 benchmarks/rotamer_chi2.py``, 3 seeds): with 84–89 of 433 side
        chains given a χ1 or χ2 flip and nothing else moved, the χ1 × χ2 scan (margin 0.2)
        restored 43–52 and moved 2 correct ones (χ1 only, margin 0.1: 33–36 and 4–6);
        in the standard recovery benchmark (`densrefine.perturb`, which flips χ1 only,
        plus 1–1.5 Å smooth errors) the final RMSD was 0.015–0.02 Å worse (seeds 0, 1), so
        it is off by default (config ``rotamer_chi2: true``).

    Returns
    -------
    new_xyz : ndarray, shape (N, 3)
    n_changed : int
    n_scanned : int
    """
    from scipy.spatial import cKDTree

    at = model.atoms
    heavy = ~np.asarray(at.is_hydrogen)
    res = np.asarray(at.res_index)
    out = np.array(xyz, np.float64)
    sample = _sampler(values, frame, mask)
    tree = cKDTree(out[heavy])
    heavy_idx = np.flatnonzero(heavy)
    if margin is None:
        margin = 0.2 if chi2 else 0.1
    changed = scanned = 0
    for ca, cb, rot in flip_groups(model):
        if not moving[rot].all() or not moving[cb]:
            continue
        hv = heavy[rot]
        if not hv.any():
            continue
        scanned += 1
        part = chi2_part(model, rot) if chi2 else None
        best, best_score, limit = None, None, CLASH
        for k, cand in enumerate(_candidates(out, rot, ca, cb, part)):
            score = float(sample(cand[hv]).mean())
            contact = _closest_contact(tree, heavy_idx, res, res[cb], cand[hv])
            if k == 0:
                best_score = score + margin * np.sqrt(MARGIN_ATOMS / int(hv.sum()))
                limit = min(CLASH, contact)     # no closer than the current side chain
                continue
            if contact < limit:
                continue
            if score > best_score and score >= (MIN_SCORE if min_score is None else min_score):
                best, best_score = cand, score
        if best is not None:
            out[rot] = best
            changed += 1
    return out, changed, scanned
