"""Stage-2 ("sph") fit of Δρ onto pure solid-harmonic Gaussians, and their Coulomb metric.

Same functional as `densrefine.ml.fitting` (blurred Coulomb norm, B = ``fitting.B_FIT``,
exact charge constraint Σ c_s = −Q by a Lagrange multiplier, ridge × mean diag J), with the
basis of `densrefine.density.ml_basis` (section "stage 2": φ = N_l(α) S_lm(r) e^{−αr²},
Racah-normalised real solid harmonics in e3nn order, multipole-normalised). The integrals
come from PySCF/libcint with spherical GTOs (``cart=False``); libcint's functions differ
from ours by a (2l+1) × (2l+1) matrix per shell (component order, sign and normalisation),
which `_shell_transforms` obtains numerically by evaluating both on points around the atom
(least squares, exact to rounding) instead of relying on conventions. The solve is done in
libcint's normalisation (so the ridge means the same as in the rich fit) and the
coefficients are transformed at the end.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from ..density import ml_basis
from . import fitting

log = logging.getLogger("densrefine")

BOHR = fitting.BOHR
RIDGE_SPH = 1e-4
"""Ridge of the stage-2 fit × mean diag J (as the stage-1 fit: a smoother target to learn;
the residual cost is in ``resid``)."""
B_TRAIN = (2.0, 16.0)
"""Blurs (Å²) of the training metric (`sph_metric`)."""


def _sph_mol(elements, xyz, shells_by_atom):
    """PySCF molecule with spherical GTOs, one uncontracted shell per (l, α Å⁻²) entry."""
    from pyscf import gto

    # one basis label per atom (its own shell list), via ghost-free per-atom labels
    atom, basis = [], {}
    for i, (e, p) in enumerate(zip(elements, xyz)):
        lab = f"{e}{i + 1}" if e.isalpha() else e
        atom.append((lab, tuple(map(float, p))))
        basis[lab] = [[l, [a * BOHR ** 2, 1.0]] for l, a in shells_by_atom[i]]
    z = sum(gto.charge(str(e)) for e in elements)
    return gto.M(atom=atom, basis=basis, cart=False, unit="Angstrom", charge=z % 2, spin=0,
                 verbose=0)


def _shell_transforms(mol, xyz):
    """Block-diagonal T (M, M) with c_ours = T @ c_libcint, and per-function (atom, l, α, m).

    Per shell, f_libcint(r/bohr)/bohr³ = Σ_m' g_m'(r) T_m'm for our functions g (Å units).
    Shells are read from ``mol`` (PySCF may reorder them), α in Å⁻².
    """
    rng = np.random.default_rng(7)
    loc = mol.ao_loc_nr()
    T = np.zeros((loc[-1], loc[-1]))
    info = np.zeros((loc[-1], 4))
    for sh in range(mol.nbas):
        i, l = mol.bas_atom(sh), mol.bas_angular(sh)
        a = float(mol.bas_exp(sh)[0]) / BOHR ** 2
        o0, o1 = loc[sh], loc[sh + 1]
        n = 2 * l + 1
        d = rng.normal(size=(4 * n + 8, 3)) * 0.8 / np.sqrt(a)
        f = mol.eval_gto("GTOval_sph", (xyz[i] + d) / BOHR)[:, o0:o1] / BOHR ** 3
        g = ml_basis.sph_norm(l, a) * ml_basis.solid_harmonics(l, d) \
            * np.exp(-a * (d * d).sum(1))[:, None]
        blk, *_ = np.linalg.lstsq(g, f, rcond=None)
        assert np.allclose(g @ blk, f, rtol=1e-7, atol=1e-9 * np.abs(f).max())
        T[o0:o1, o0:o1] = blk
        info[o0:o1] = [(i, l, a, m) for m in range(n)]
    return T, info


def _order(info, wanted):
    """Indices into ``info`` rows (atom, l, α, m) for each wanted (atom, l, α, m), in order;
    repeated identical entries are matched in order of occurrence."""
    used = np.zeros(len(info), bool)
    out = []
    for i, l, a, m in wanted:
        hit = np.flatnonzero((info[:, 0] == i) & (info[:, 1] == l) & (info[:, 3] == m)
                             & np.isclose(info[:, 2], a, rtol=1e-9) & ~used)
        used[hit[0]] = True
        out.append(hit[0])
    return np.array(out, int)


def _wanted(shells_by_atom):
    return [(i, l, a, m) for i, sh in enumerate(shells_by_atom) for l, a in sh
            for m in range(2 * l + 1)]


def _atom_shells(elements):
    """Per atom, the stage-2 shells in per-atom layout order (all l = 0, then l = 1, …)."""
    return [[(l, float(a)) for l, ex in ml_basis.sph_shells(str(e)) for a in ex]
            for e in elements]


def _metric(ref, aux, omega):
    """J (M, M), b (M,), ‖Δρ‖² in the erf(ω r)/r metric, libcint spherical functions."""
    from pyscf import df, gto, scf

    if "_iam_sph" not in ref:  # the IAM s shells as a spherical molecule (s: same functions)
        iam = ref["iam_mol"].copy()
        iam.cart = False
        iam.build(False, False)
        ref["_iam_sph"] = iam
    iam = ref["_iam_sph"]
    mols = (ref["mol"], iam, aux)
    for m in mols:
        m.omega = float(omega)
    try:
        cache = ref.setdefault("_norm2", {})
        if omega not in cache:  # ‖Δρ‖², as in `fitting.metric_terms`
            vj = scf.hf.get_jk(ref["mol"], ref["dm"], hermi=1, with_k=False)[0]
            dd = float(np.einsum("ij,ji->", ref["dm"], vj))
            v3 = df.incore.aux_e2(ref["mol"], iam, intor="int3c2e_sph", aosym="s1")
            di = float(np.einsum("ij,ijP,P->", ref["dm"], v3.reshape(ref["dm"].shape + (-1,)),
                                 ref["iam_amp"]))
            ii = float(ref["iam_amp"] @ iam.intor("int2c2e_sph") @ ref["iam_amp"])
            cache[omega] = dd - 2 * di + ii
        v3 = df.incore.aux_e2(ref["mol"], aux, intor="int3c2e_sph", aosym="s1")
        b = np.einsum("ij,ijP->P", ref["dm"], v3.reshape(ref["dm"].shape + (-1,)))
        b -= gto.intor_cross("int2c2e_sph", aux, iam) @ ref["iam_amp"]
        J = aux.intor("int2c2e_sph")
    finally:
        for m in mols:
            m.omega = 0.0
    return J, b, cache[omega]


def fit_sph(ref, elements, xyz, charge, ridge=RIDGE_SPH, blur=fitting.B_FIT,
            report=fitting.B_EVAL):
    """Constrained stage-2 fit of one fragment (``ref`` from `fitting.reference_terms`).

    Returns
    -------
    dict
        ``c_sph`` (N, 42) coefficients in the per-atom layout (masked columns 0), e·Å^l;
        ``resid_sph`` (len(report),) ‖(Δρ − fit)∗G_B‖_J / ‖Δρ∗G_B‖_J; ``seconds``.
    """
    t0 = time.perf_counter()
    xyz = np.asarray(xyz, float)
    shells = _atom_shells(elements)
    aux = _sph_mol(elements, xyz, shells)
    T, info = _shell_transforms(aux, xyz)
    n = np.where(info[:, 1] == 0, np.diag(T), 0.0)    # ∫f_P (e per unit libcint coefficient)
    J, b, dd = _metric(ref, aux, fitting.omega_of_blur(blur))
    m = len(b)
    A = np.zeros((m + 1, m + 1))
    A[:m, :m] = J + ridge * np.mean(np.diag(J)) * np.eye(m)
    A[:m, m] = A[m, :m] = n
    c = np.linalg.solve(A, np.concatenate([b, [-float(charge)]]))[:m]
    resid = []
    for bl in report:
        if bl != blur:
            J, b, dd = _metric(ref, aux, fitting.omega_of_blur(bl))
        resid.append(np.sqrt(max(dd - 2 * c @ b + c @ J @ c, 0.0) / dd))
    ours = (T @ c)[_order(info, _wanted(shells))]       # atom-major per-atom layout
    _, mask = ml_basis.sph_table(elements)
    c_sph = np.zeros(mask.shape)
    c_sph[mask] = ours
    return {"c_sph": c_sph, "resid_sph": np.array(resid), "seconds": time.perf_counter() - t0}


def fit_fragment_sph(elements, xyz, charge, dm, basis="def2-svp"):
    """`fit_sph` from a raw single point (spherical AO density matrix ``dm``)."""
    from .qm import build_mol

    el = [str(e) for e in elements]
    mol = build_mol(el, xyz, charge, basis)
    ref = fitting.reference_terms(mol, dm, el, np.asarray(xyz, float))
    return fit_sph(ref, el, xyz, charge)


def sph_metric(elements, xyz, blurs=B_TRAIN, extra=()):
    """Blurred Coulomb metric of the stage-2 functions (our normalisation), for training.

    Parameters
    ----------
    elements, xyz
        The fragment (Å).
    extra : sequence of (atom, α) pairs
        Additional unit-integral s functions appended after the stage-2 functions (the IAM
        Gaussians of hydrogens in the united-atom samples).

    Returns
    -------
    list of ndarray (M, M), one per blur, e²/Å; functions ordered atom by atom in the per-atom
    layout (mask of `ml_basis.sph_table` applied), then ``extra``.
    """
    xyz = np.asarray(xyz, float)
    shells = _atom_shells(elements)
    for i, a in extra:
        shells[i] = shells[i] + [(0, float(a))]
    aux = _sph_mol([str(e) for e in elements], xyz, shells)
    T, info = _shell_transforms(aux, xyz)
    Ti = np.linalg.inv(T)
    reg = _wanted(_atom_shells(elements))
    order = _order(info, reg + [(i, 0, float(a), 0) for i, a in extra])
    out = []
    for bl in blurs:
        aux.omega = float(fitting.omega_of_blur(bl))
        J = aux.intor("int2c2e_sph") / BOHR       # Hartree·bohr → e²/Å per unit coefficient
        aux.omega = 0.0
        Jo = Ti.T @ J @ Ti
        out.append(Jo[np.ix_(order, order)])
    return out
