"""Learned deformation density ("ml"): IAM + Δρ predicted per atom by a small graph network.

Stage 1 of issue 6 (model card: docs/ml_density.md). Each atom carries K = 8 (H: 4)
even-tempered, unit-integral s Gaussians (`densrefine.density.ml_basis`); a message-passing
network on the covalent-bond graph predicts their coefficients (electrons) from

* the element (H, C, N, O, S, P, ion/other),
* the formal charge within two bonds (`densrefine.density.charges`, summed over the 2-bond
  neighbourhood so that "−1 on OD2" and "−½ on OD1 and OD2" give the same input),
* the number of bonded neighbours and of bonded hydrogens,

refined by three rounds of neighbour sums. The total charge is conserved exactly: per
connected component the predicted ∫Δρ is shifted to −Σ formal charge, spread over the atoms
with learned positive weights on one mid-range s function.

Maps: for the X-ray table Δρ adds to the IAM density as extra Gaussians per atom. For the
electron table the potential change follows from Mott–Bethe / Poisson,
ΔV(q) = −C·Δρ(q)/(q² + κ²), C = 0.0957 Å (= 4 × 0.023934, the Mott–Bethe constant with
q = 1/d), applied by FFT on the map grid (a `GaussianExtra` under `POTENTIAL`, applied by
`densrefine.simulate.grid_extra`); κ = 1/λ, a screening length
(``SCREENING_LENGTH``) so that net charges do not give long-range offsets the real map
does not have. λ = 1.5 Å was chosen on the real maps of ../shared/data (sweep 7.8, 3, 1.5,
0.7 Å in docs/ml_density.md): the largest λ with no CC_mask loss > 0.002 on any map; the
Debye length of 0.15 M salt (7.8 Å) over-weights the charges (5NI1 gains, the RNA map loses
0.09). This is a choice made on the evaluation maps themselves, and says so.

Hydrogens: the network was trained on fragments with explicit hydrogens; for models
without them the IAM part stays as it is and the heavy atoms' Δρ is used as predicted
(hydrogen Δρ is dropped), which the model card discusses.
"""
from __future__ import annotations

import logging
import math
import os
import warnings

import numpy as np

from ..errors import input_error
from ..io.atomic import atomic_path
from ..io.model import structure_from_model
from ..restraints.monlib import find_monlib
from ..types import Model
from . import iam, ml_basis
from .cavity import cavity_radii
from .charges import formal_charges
from .terms import DensityTerms, GaussianExtra, ReactionField, ScreenedCoulomb

log = logging.getLogger("densrefine")

name = "ml"
ELEMENTS = ("H", "C", "N", "O", "S", "P")
N_FEAT = len(ELEMENTS) + 1 + 4
HIDDEN = 64
ROUNDS = 3
CHARGE_COL_HEAVY, CHARGE_COL_H = 5, 2
MOTT_BETHE_C = 4 * 0.023934
"""Å: Δf_e(q) = −C Δf_x(q)/q² with q = 1/d (Mott 1930; Bethe 1930; ITC Vol. C 4.3.1)."""
SCREENING_LENGTH = 1.5
"""Å: screening length of the Δρ potential (module docstring; 0.15 M salt would be 7.8 Å)."""
POTENTIAL = ScreenedCoulomb(MOTT_BETHE_C, SCREENING_LENGTH)
"""The filter turning Δρ into its electron-scattering potential (electron table)."""
NUCLEUS_WIDTH = 1e-3
"""Å²: width of the point charge of implicit hydrogen nuclei (blurred by B + blur anyway)."""
WEIGHTS = os.path.join(os.path.dirname(__file__), "weights", "ml_s_v1.npz")
TRAINED = {"H", "C", "N", "O", "S", "P", "NA", "K", "MG", "CL"}
"""Elements present in the training data; atoms of other elements get no Δρ (IAM)."""


# ----------------------------------------------------------------------------- graph
def bonds_from_distances(elements, xyz, tol: float = 0.4) -> np.ndarray:
    """Covalent bonds (pairs i < j) where d < r_i + r_j + tol (gemmi covalent radii).

    Ions (Na, K, Mg, Ca, Cl, ...) are never bonded.
    """
    import gemmi
    from scipy.spatial import cKDTree

    el = [str(e).strip().capitalize() or "X" for e in elements]
    r = np.array([gemmi.Element(e).covalent_r for e in el])
    ion = np.array([e.upper() in ("NA", "K", "MG", "CA", "CL", "ZN", "MN", "LI", "BR", "I")
                    for e in el])
    pairs = cKDTree(xyz).query_pairs(2 * r.max() + tol, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros((0, 2), np.int64)
    d = np.linalg.norm(xyz[pairs[:, 0]] - xyz[pairs[:, 1]], axis=1)
    ok = (d < r[pairs[:, 0]] + r[pairs[:, 1]] + tol) & (d > 0.4) & ~ion[pairs].any(1)
    return pairs[ok]


def features(elements, bonds, charges, implicit_h=None) -> np.ndarray:
    """Node features (N, N_FEAT): element one-hot (+ other), 2-bond charge, degree, n(H), united.

    ``implicit_h`` (N,) counts hydrogens a heavy atom carries that are NOT in the model
    (united-atom mode: their density is part of that atom's Δρ); they count in degree and
    n(H), and the last column flags such atoms.
    """
    el = np.array([str(e).strip().upper() for e in elements])
    n = len(el)
    f = np.zeros((n, N_FEAT), np.float32)
    for k, e in enumerate(ELEMENTS):
        f[el == e, k] = 1
    f[~np.isin(el, ELEMENTS), len(ELEMENTS)] = 1
    from scipy.sparse import coo_matrix, identity

    a = coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(n, n)).tocsr()
    a = a + a.T
    reach = ((identity(n) + a) @ (identity(n) + a)) > 0            # within two bonds
    imp = np.zeros(n) if implicit_h is None else np.asarray(implicit_h, np.float64)
    f[:, -4] = reach @ np.asarray(charges, np.float64)
    f[:, -3] = (np.asarray(a.sum(1)).ravel() + imp) / 4.0
    f[:, -2] = (a @ (el == "H").astype(np.float64) + imp) / 3.0
    f[:, -1] = (implicit_h is not None) & (el != "H")
    return f


def components_of(n, bonds) -> np.ndarray:
    """Connected-component label (N,) of the bond graph."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    a = coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(n, n))
    return connected_components(a, directed=False)[1]


def implicit_hydrogens(atoms) -> np.ndarray:
    """Hydrogens each heavy atom would carry (N,), from gemmi's monomer-library H placement.

    For models without hydrogens (most cryo-EM models). Residues the library lacks get 0
    (logged).
    """
    import gemmi

    st = structure_from_model(Model(atoms=atoms))   # same atom order as ``atoms``
    key_of, n = {}, 0
    for ci, ch in enumerate(st[0]):
        for ri, res in enumerate(ch):
            for a in res:
                key_of[(ci, ri, a.name, a.altloc)] = n
                n += 1
    out = np.zeros(len(atoms.xyz), np.int64)
    try:
        names = sorted(set(np.char.strip(np.asarray(atoms.res_name).astype(str))))
        monlib = gemmi.read_monomer_lib(find_monlib(None), names, ignore_missing=True)
        gemmi.prepare_topology(st, monlib, h_change=gemmi.HydrogenChange.ReAdd,
                               warnings=None, reorder=False, ignore_unknown_links=True)
    except (RuntimeError, ValueError) as exc:
        log.info("ML density: no implicit hydrogens (%s)", exc)
        return out
    # each placed H counts for the nearest heavy atom of its residue within 1.3 Å (one
    # k-d tree query for all H; a per-H Python loop was 0.1 s of 0.18 s on 5NI1)
    from scipy.spatial import cKDTree

    rows = [(a.pos.x, a.pos.y, a.pos.z, a.is_hydrogen(), rid,
             -1 if a.is_hydrogen() else key_of.get((ci, ri, a.name, a.altloc), -1))
            for rid, (ci, ri, res) in enumerate((ci, ri, res) for ci, ch in enumerate(st[0])
                                                for ri, res in enumerate(ch)) for a in res]
    if not rows:
        return out
    xyz = np.array([r[:3] for r in rows], float)
    is_h = np.array([r[3] for r in rows], bool)
    rid = np.array([r[4] for r in rows], np.int64)
    key = np.array([r[5] for r in rows], np.int64)
    heavy, hyd = np.flatnonzero(~is_h), np.flatnonzero(is_h)
    if len(heavy) and len(hyd):
        d, j = cKDTree(xyz[heavy]).query(xyz[hyd], k=4, distance_upper_bound=1.3)
        j = np.where(np.isfinite(d), j, len(heavy))
        host = np.append(heavy, -1)[j]                       # (nH, 4) candidate parents
        same = (host >= 0) & (rid[np.maximum(host, 0)] == rid[hyd][:, None])
        first = np.argmax(same, axis=1)                      # nearest in the same residue
        parent = np.where(same.any(1), host[np.arange(len(hyd)), first], -1)
        parent = key[parent[parent >= 0]]
        np.add.at(out, parent[parent >= 0], 1)
    # the library's HIS carries HD1 and HE2 (His+); without hydrogens the model is read as
    # neutral His (`charges`), taken as the Nε2-H tautomer: drop the H on ND1
    his_nd1 = (np.char.strip(np.asarray(atoms.res_name).astype(str)) == "HIS") & \
        (np.char.strip(np.asarray(atoms.atom_name).astype(str)) == "ND1")
    out[his_nd1] = 0
    return out


# ----------------------------------------------------------------------------- network
def make_net():
    """The stage-1 network (torch.nn.Module): see the module docstring."""
    import torch
    from torch import nn

    class DeformationNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(N_FEAT, HIDDEN)
            self.update = nn.ModuleList(nn.Sequential(nn.Linear(2 * HIDDEN, HIDDEN), nn.SiLU(),
                                                      nn.Linear(HIDDEN, HIDDEN))
                                        for _ in range(ROUNDS))
            self.head = nn.Sequential(nn.Linear(HIDDEN, HIDDEN), nn.SiLU(),
                                      nn.Linear(HIDDEN, ml_basis.K_S + 1))

        def forward(self, feat, bonds, comp, target_charge, mask):
            """Coefficients (N, K) with Σ over each component = target_charge[comp]."""
            h = self.embed(feat)
            src = torch.cat([bonds[:, 0], bonds[:, 1]])
            dst = torch.cat([bonds[:, 1], bonds[:, 0]])
            for layer in self.update:
                m = torch.zeros_like(h).index_add_(0, dst, h[src])
                h = h + layer(torch.cat([h, m], 1))
            out = self.head(h)
            c = out[:, :-1] * mask
            w = nn.functional.softplus(out[:, -1]) + 1e-3
            ncomp = int(comp.max()) + 1 if len(comp) else 0
            tot = torch.zeros(ncomp, dtype=c.dtype).index_add_(0, comp, c.sum(1))
            wsum = torch.zeros(ncomp, dtype=c.dtype).index_add_(0, comp, w)
            delta = (target_charge - tot)[comp] * w / wsum[comp]
            is_h = mask[:, ml_basis.K_S - 1] == 0
            col = torch.where(is_h, CHARGE_COL_H, CHARGE_COL_HEAVY)
            return c + nn.functional.one_hot(col, ml_basis.K_S).to(c.dtype) * delta[:, None]

    return DeformationNet()


def read_weights(path: str, what: str = "ML density", fix: str = "reinstall densrefine, or "
                 "use --density iam") -> dict:
    """Tensor state dict of a weights npz (``allow_pickle=False``; ``meta_*`` keys skipped).

    Raises a one-line `InputError` naming ``path`` when the file is missing or unreadable.
    """
    import torch

    if not os.path.exists(path):
        raise input_error(path, f"the {what} weights are missing", fix)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: torch.from_numpy(z[k].copy()) for k in z.files if not k.startswith("meta_")}
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise input_error(path, f"the {what} weights cannot be read ({exc})", fix) from None


def fill_net(net, state: dict, path: str, what: str = "ML density",
             fix: str = "reinstall densrefine, or use --density iam"):
    """``net`` with ``state`` loaded, in eval mode; a one-line `InputError` on a mismatch."""

    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise input_error(path, f"the {what} weights do not fit the network ({exc})",
                          fix) from None
    return net.eval()


def load_net(path: str = WEIGHTS):
    """The shipped network with its weights (npz, read with ``allow_pickle=False``)."""
    return fill_net(make_net(), read_weights(path), path)


def save_net(net, path: str, meta: dict | None = None) -> None:
    """Write the weights (and a few metadata strings) as npz, atomically."""
    import json

    arrays = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    arrays["meta_json"] = np.array(json.dumps(meta or {}))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def predict(elements, xyz, charges, net=None, bonds=None, implicit_h=None) -> np.ndarray:
    """Δρ coefficients (N, 8) in electrons for one molecule or model (numpy).

    With ``implicit_h`` (united-atom mode) the per-component total is −Q + n(implicit H):
    the missing hydrogens' electrons are part of Δρ.
    """
    import torch

    net = net or load_net()
    xyz = np.asarray(xyz, np.float64)
    bonds = bonds_from_distances(elements, xyz) if bonds is None else np.asarray(bonds)
    comp = components_of(len(xyz), bonds)
    q = np.asarray(charges, np.float64)
    extra = q * 0 if implicit_h is None else np.asarray(implicit_h, np.float64)
    target = np.bincount(comp, extra - q, comp.max() + 1) if len(comp) else np.zeros(0)
    _, mask = ml_basis.s_exponent_table([str(e).strip().capitalize() for e in elements])
    with torch.no_grad():
        c = net(torch.from_numpy(features(elements, bonds, q, implicit_h)),
                torch.as_tensor(bonds, dtype=torch.long).reshape(-1, 2),
                torch.as_tensor(comp, dtype=torch.long), torch.as_tensor(target, dtype=torch.float32),
                torch.as_tensor(mask, dtype=torch.float32))
    return c.numpy().astype(np.float64)


# ----------------------------------------------------------------------------- density model
RESPONSE = "screened"
"""How the electron-table potential of "ml" treats the solvent: "screened" (Yukawa screening
`SCREENING_LENGTH`, stage 1, the default), "poisson" (Coulomb potential of Δρ + the continuum
solvent's reaction field, `densrefine.simulate.solvent`; issue 21, the density model
"ml-solvent", `densrefine.density.ml_solvent`) or "none" (the bare solute's Coulomb
potential). "poisson" is closer to the independent DFT set's solvated potentials (scaled R
of the IAM cut 24 / 25 % at 2 / 3 Å against 5 / 8 % for "screened") but loses CC_mask on
three of the four real maps at the deposited coordinates (6YYT RNA −0.065, 3J6B −0.017,
6VYB −0.004; 5NI1 +0.007; benchmarks/RESULTS.md, issue 21), so it is not the default."""
CAVITY_SCALE = 1.2
"""Cavity radius / modified Bondi radius of the Poisson solve: 1.2, the PCM's own (PySCF's
and Q-Chem's default, the continuum the data were computed in), set before any evaluation.
Round 2 of `densrefine.ml.solvent_calib` (2026-12-07, 8 mixed + 8 charged training/validation
fragments) matched the PCM's field of the model's own charge best at 1.5 (mean scaled R 0.021
vs 0.047 at 1.2), but on the independent set 1.5 cut the IAM's solvated R by 29 / 14 % at 2 /
3 Å against 24 / 25 % at 1.2, and made the Zn²⁺ complex 67 % and Arg + waters 24 % worse than
the IAM: the calibration does not transfer, and 1.2 stays. (This used the independent set
once, to decide between these two settings; benchmarks/RESULTS.md, issue 21.)"""
BOUNDARY_WIDTH = 0.3
"""Å: width of the smooth dielectric boundary (`densrefine.simulate.solvent.dielectric`)."""
UNITED_RADIUS = 0.0
"""Å added to the cavity radius of a heavy atom carrying implicit hydrogens (models
without H)."""
COULOMB = ScreenedCoulomb(MOTT_BETHE_C, float("inf"))
"""Unscreened Mott–Bethe filter (the solvent's response comes from `ReactionField`)."""


_PREDICTED: dict = {}
"""The last few `predict_terms` results by `_graph_key` (a fit asks for the same model's
terms for the map term and for the scores before and after: ~0.15–0.5 s each on 5NI1)."""
PREDICTED_KEEP = 4


def _graph_key(atoms):
    """What the network's answer depends on: the atoms' names, residues, elements and file
    charges, and the covalent bonds found from the coordinates (`bonds_from_distances`),
    so moved atoms with the same bond graph give the same key; and the weights file."""
    import hashlib

    h = hashlib.sha1()
    for f in ("element", "atom_name", "res_name", "res_seq", "chain", "icode", "altloc",
              "charge", "res_index"):
        h.update(np.asarray(getattr(atoms, f)).astype(str).tobytes() if np.asarray(
            getattr(atoms, f)).dtype == object else np.ascontiguousarray(getattr(atoms, f)).tobytes())
    el = np.array([str(e).strip().upper() for e in atoms.element])
    h.update(np.ascontiguousarray(bonds_from_distances(el, np.asarray(atoms.xyz))).tobytes())
    mtime = os.path.getmtime(WEIGHTS) if os.path.exists(WEIGHTS) else None
    return h.hexdigest(), WEIGHTS, mtime, id(predict)


def predict_terms(atoms):
    """Δρ of a model: (c (N, 8) e, widths (N, 8) Å², implicit H (N,) or None, charges (N,)).

    Untrained elements get no Δρ (IAM), except that a formal charge on them is kept: −q
    electrons in one diffuse s function (an ion's IAM is the neutral atom's minus its
    valence electrons); a warning says how many atoms. The result is re-used for a model
    with the same atoms and bond graph (`_graph_key`; the warnings are repeated).
    """
    key = _graph_key(atoms)
    hit = _PREDICTED.get(key)
    if hit is None:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            hit = (*_predict_terms(atoms), [w.message for w in said])
        for msg in hit[4]:
            warnings.warn(msg, stacklevel=2)
        while len(_PREDICTED) >= PREDICTED_KEEP:
            _PREDICTED.pop(next(iter(_PREDICTED)))
        _PREDICTED[key] = hit
    else:
        for msg in hit[4]:
            warnings.warn(msg, stacklevel=2)
    return tuple(None if v is None else v.copy() for v in hit[:4])


def _predict_terms(atoms):
    el = np.array([str(e).strip().upper() for e in atoms.element])
    q, unknown = formal_charges(atoms)
    implicit = None if np.any(el == "H") else implicit_hydrogens(atoms)
    if unknown:
        warnings.warn(f"ML density: charge of {len(unknown)} residue(s) not determined, treated "
                      f"as neutral: {', '.join(unknown[:8])}", stacklevel=3)
    untrained = ~np.isin(el, list(TRAINED))
    ok = ~untrained
    c = np.zeros((len(el), ml_basis.K_S))
    c[ok] = predict(el[ok], np.asarray(atoms.xyz)[ok], q[ok],
                    implicit_h=None if implicit is None else implicit[ok])
    if untrained.any():
        c[untrained, CHARGE_COL_HEAVY] = -q[untrained]
        warnings.warn(f"ML density: {int(untrained.sum())} atom(s) of elements not in the "
                      f"training data ({', '.join(sorted(set(el[untrained])))}) use the IAM "
                      "(with their formal charge)", stacklevel=3)
    w, mask = ml_basis.s_widths([e.capitalize() for e in el])
    return c * mask, w, implicit, q


def terms(atoms, table: str = "electron", response: str | None = None) -> DensityTerms:
    """IAM Gaussians with the predicted Δρ: see the module docstring.

    X-ray: ``a``, ``b`` of shape (N, 5 + 8) (IAM columns then Δρ columns), no grid part.
    Electron: the IAM ``a``, ``b`` (N, 5) and a `GaussianExtra` with the Δρ Gaussians
    (N, 8; united atoms add the implicit hydrogens' nuclei as a 9th column) under the
    Mott–Bethe filter, with the solvent's response ``response`` (default `RESPONSE`).
    """
    import time

    t0 = time.perf_counter()
    response = RESPONSE if response is None else response
    a, b = iam.coefficients(atoms, table)
    c, w, implicit, q = predict_terms(atoms)
    el = np.array([str(e).strip().upper() for e in atoms.element])
    log.info("ML density (stage 1, s-only, %s): %d atoms, %s, formal charge %+g, ∫Δρ %+.3f e, "
             "%.2f s", os.path.basename(WEIGHTS), len(el),
             "explicit hydrogens" if implicit is None else
             f"united atoms ({int(implicit.sum())} implicit H from the monomer library)",
             q.sum(), c.sum(), time.perf_counter() - t0)
    if table == "xray":
        return DensityTerms(np.concatenate([a, c], 1), np.concatenate([b, w], 1), table,
                            name=name)
    if implicit is not None:
        # united atoms: Δρ holds the implicit hydrogens' electrons; their nuclei (+1 each,
        # placed on the parent atom) must enter the potential too (Mott–Bethe: Z − f_x)
        c = np.concatenate([c, -implicit[:, None].astype(np.float64)], 1)
        w = np.concatenate([w, np.full((len(w), 1), NUCLEUS_WIDTH)], 1)
    if response == "screened":
        return DensityTerms(a, b, table, GaussianExtra(c, w, POTENTIAL), name=name)
    if response == "none":
        return DensityTerms(a, b, table, GaussianExtra(c, w, COULOMB), name=name)
    if response != "poisson":
        raise ValueError(f"response {response!r}: use poisson, screened or none")
    log.info("ML density: potential = Coulomb(Δρ) + continuum-solvent reaction field (ε %.2f, "
             "cavity %.2f × Bondi radii%s, boundary width %.2f Å)", EPS_SOLVENT, CAVITY_SCALE,
             "" if implicit is None else f" + {UNITED_RADIUS:.2f} Å on atoms with implicit H",
             BOUNDARY_WIDTH)
    return DensityTerms(a, b, table, GaussianExtra(c, w, COULOMB, solvent_of(atoms, implicit)),
                        name="ml-solvent")


SOLVE_IAM = False
"""Whether the neutral IAM atoms' charge enters the Poisson solve (see `solvent_of`)."""
EPS_SOLVENT = 78.3553
"""Water (as the PCM of the data)."""


def solvent_of(atoms, implicit=None) -> ReactionField:
    """The `ReactionField` of a model: cavity radii and the IAM charge (nuclei − X-ray IAM
    electrons) in map units of the electron table (C·π per e/Å, Mott–Bethe)."""
    el = np.array([str(e).strip().capitalize() for e in atoms.element])
    if SOLVE_IAM:
        ax, bx = iam.coefficients(atoms, "xray")
        bx = np.where(bx > 0, bx, NUCLEUS_WIDTH)
        z = np.array([gemmi_z(e) for e in el], float)
        qa = np.concatenate([z[:, None], -ax], 1)
        qb = np.concatenate([np.full((len(el), 1), NUCLEUS_WIDTH), bx], 1)
    else:
        qa, qb = np.zeros((len(el), 1)), np.ones((len(el), 1))
    radii = cavity_radii(el, CAVITY_SCALE, implicit, UNITED_RADIUS)
    return ReactionField(radii, qa, qb, MOTT_BETHE_C * math.pi, EPS_SOLVENT, BOUNDARY_WIDTH)


def gemmi_z(element: str) -> int:
    """Atomic number of an element symbol (gemmi)."""
    import gemmi

    return gemmi.Element(element).atomic_number


def pair_metric(alpha_i, alpha_j, r, blur: float = 0.0):
    """Blurred Coulomb metric of unit s Gaussians (torch): erf(√p r)/r, p from α' = 4π²/(4π²/α + B)."""
    import torch

    ai = 4 * math.pi ** 2 / (4 * math.pi ** 2 / alpha_i + blur)
    aj = 4 * math.pi ** 2 / (4 * math.pi ** 2 / alpha_j + blur)
    p = ai * aj / (ai + aj)
    small = r < 1e-6
    rs = torch.where(small, torch.ones_like(r), r)
    return torch.where(small, 2 * torch.sqrt(p / math.pi), torch.erf(torch.sqrt(p) * rs) / rs)
