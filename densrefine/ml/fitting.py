"""Coulomb-metric fit of Δρ = ρ_DFT − ρ_IAM onto atom-centred Gaussians (needs PySCF).

For fit functions φ_P the coefficients minimise the Coulomb (Hartree) norm of the residual
blurred by B = `B_FIT` Å² (reasons there),

    ‖(Δρ − Σ_P c_P φ_P) ∗ G_B‖²_J,   (f|g) = ∫∫ f(r) g(r') / |r − r'|,

i.e. the plain Coulomb fit with the kernel 1/r replaced by erf(ω r)/r (PySCF ``omega``),
under the exact charge constraint Σ_P c_P ∫φ_P = ∫Δρ = −Q (Lagrange multiplier λ):

    [J  n] [c]   [b ]
    [nᵀ 0] [λ] = [−Q],   J_PQ = (φ_P|φ_Q),  b_P = (φ_P|ρ_DFT) − (φ_P|ρ_IAM),  n_P = ∫φ_P

(Dunlap, Connolly & Sabin 1979, J. Chem. Phys. 71, 3396; Whitten 1973). A ridge
(``RIDGE`` × mean diag J) keeps the coefficients of the nearly dependent diffuse functions
bounded; its effect on the residual is reported (``resid``). Integrals are analytic, from
PySCF/libcint in atomic units: (φ_P|ρ_DFT) = Σ_μν D_μν (μν|P) (``int3c2e``), J from
``int2c2e``, (φ_P|ρ_IAM) with the IAM Gaussians as another set of s shells. Everything is
done with Cartesian functions (the spherical AO density matrix is transformed with
``cart2sph_coeff``) and converted at the end to the Å conventions of
`densrefine.density.ml_basis` (unit-integral s for stage 1; x^i y^j z^k exp(−α r²) in
e/Å³ for the rich basis).
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np

from ..density import ml_basis
from ..scattering import tables

log = logging.getLogger("densrefine")

BOHR = 0.52917721092
"""Å per bohr (CODATA 2010, as PySCF's ``param.BOHR``)."""
IAM_DELTA_B = 1e-3
"""Width (Å²) used for the IT92 constant (b = 0) term, numerically a delta."""
RIDGE = 1e-4
"""Ridge on the stage-1 fit, × mean diag J: shrinks the oscillating coefficients of nearly
dependent diffuse functions on neighbouring atoms (rms 1.3 → 0.4 e on a test fragment) at a
residual cost of < 0.01 (measured at B = 2, 16, 36 Å²); a smoother target to learn."""
RIDGE_RICH = 1e-5
B_FIT = 2.0
"""Blur (Å²) of the fit metric: the fit minimises ‖(Δρ − fit) ∗ G_B‖_J, i.e. uses the
attenuated kernel erf(ω r)/r with ω = 2π/√(2B) (Å⁻¹). The plain Coulomb norm is dominated
by core-shell mismatch between the all-electron def2-SVP density and the IT92 IAM (incl. its
constant "delta" term), which no valence basis can fit and which is invisible at any map
resolution; B = 2 Å² (a Gaussian of σ = 0.16 Å) removes it while keeping all valence detail."""
B_EVAL = (2.0, 16.0, 36.0)
"""Blurs (Å²) at which residuals are reported: the fit metric and B = 4d² for d = 2, 3 Å."""


def omega_of_blur(blur):
    """ω (1/bohr) of erf(ω r)/r = 1/r convolved with the unit Gaussian of width 2·blur Å²."""
    return 2 * np.pi / np.sqrt(2 * blur) * BOHR


def _gauss_moment(i: int, a: float) -> float:
    """∫ x^i exp(−a x²) dx over the real line."""
    return 0.0 if i % 2 else math.gamma((i + 1) / 2) / a ** ((i + 1) / 2)


def _shell_mol(elements, xyz, shells_of):
    """PySCF molecule (Cartesian) whose basis is ``shells_of(element) -> [(l, α_Å⁻²), ...]``."""
    from pyscf import gto

    basis = {}
    for e in set(map(str, elements)):
        basis[e] = [[l, [a * BOHR ** 2, 1.0]] for l, a in shells_of(e)]
    z = sum(gto.charge(str(e)) for e in elements)
    return gto.M(atom=[(str(e), tuple(map(float, p))) for e, p in zip(elements, xyz)],
                 basis=basis, cart=True, unit="Angstrom", charge=z % 2, spin=0, verbose=0)


def _norms(mol):
    """Per-function factors N_P: φ_P(r) = N_P · x^i y^j z^k exp(−α r²) in bohr units."""
    powers, alpha, atom = [], [], []
    for s in range(mol.nbas):
        l, a = mol.bas_angular(s), float(mol.bas_exp(s)[0])
        for p in ml_basis.cart_powers(l):
            powers.append(p)
            alpha.append(a)
            atom.append(mol.bas_atom(s))
    powers, alpha, atom = np.array(powers), np.array(alpha), np.array(atom)
    # a generic point off the centre, within ~one width of the function (bohr)
    d = np.array([0.61, 0.43, 0.29])[None] * np.minimum(1.0, 1 / np.sqrt(alpha))[:, None]
    pts = mol.atom_coords()[atom] + d
    val = np.einsum("ii->i", mol.eval_gto("GTOval_cart", pts))
    mono = np.prod(d ** powers, axis=1) * np.exp(-alpha * (d * d).sum(1))
    return val / mono, powers, alpha, atom


def _integrals(norm, powers, alpha):
    """∫φ_P d³r (bohr³ × norm), nonzero for all-even powers."""
    return np.array([n * np.prod([_gauss_moment(int(i), a) for i in p])
                     for n, p, a in zip(norm, powers, alpha)])


def _iam_shells(elements):
    """IAM of each element as (l=0, β Å⁻²) shells plus the unit-integral amplitudes."""
    a, b = tables.coefficients(list(elements), None, "xray")
    b = np.where(b > 0, b, IAM_DELTA_B)
    beta = 4 * np.pi ** 2 / b
    by_el = {str(e): [(0, float(x)) for x in beta[i]] for i, e in enumerate(elements)}
    return by_el, a.reshape(-1)


def reference_terms(mol, dm, elements, xyz):
    """Quantities shared by all fits of one fragment (no metric yet).

    Returns
    -------
    dict
        ``dm`` (spherical AO), ``mol``, ``dm_cart``, ``mol_cart``, ``iam_mol`` (IAM as s
        shells), ``iam_amp`` (n_iam,) amplitudes of its PySCF-normalised functions,
        ``n_electrons`` (∫ρ_DFT).
    """
    c2s = mol.cart2sph_coeff()
    mol_cart = mol.copy()
    mol_cart.cart = True
    mol_cart.build(False, False)
    by_el, amp = _iam_shells(elements)
    iam_mol = _shell_mol(elements, xyz, lambda e: by_el[e])
    n_iam, p_iam, a_iam, _ = _norms(iam_mol)
    ne = float(np.einsum("ij,ji->", dm, mol.intor("int1e_ovlp")))
    return {"dm": dm, "mol": mol, "dm_cart": c2s @ dm @ c2s.T, "mol_cart": mol_cart,
            "iam_mol": iam_mol, "iam_amp": amp / _integrals(n_iam, p_iam, a_iam),
            "n_electrons": ne}


def _set_omega(omega, *mols):
    for m in mols:
        m.omega = float(omega)


def metric_terms(ref, aux, omega):
    """J (M, M), b (M,) and ‖Δρ‖² in the erf(ω r)/r metric (Hartree units)."""
    from pyscf import df, gto, scf

    _set_omega(omega, ref["mol"], ref["mol_cart"], ref["iam_mol"], aux)
    try:
        shp = ref["dm_cart"].shape + (-1,)
        cache = ref.setdefault("_norm2", {})
        if omega not in cache:  # ‖Δρ‖² does not depend on the fit basis
            vj = scf.hf.get_jk(ref["mol"], ref["dm"], hermi=1, with_k=False)[0]
            dd = float(np.einsum("ij,ji->", ref["dm"], vj))
            v3 = df.incore.aux_e2(ref["mol_cart"], ref["iam_mol"], intor="int3c2e_cart",
                                  aosym="s1")
            di = float(np.einsum("ij,ijP,P->", ref["dm_cart"], v3.reshape(shp), ref["iam_amp"]))
            ii = float(ref["iam_amp"] @ ref["iam_mol"].intor("int2c2e_cart") @ ref["iam_amp"])
            cache[omega] = dd - 2 * di + ii
        v3 = df.incore.aux_e2(ref["mol_cart"], aux, intor="int3c2e_cart", aosym="s1")
        b = np.einsum("ij,ijP->P", ref["dm_cart"], v3.reshape(shp))
        b -= gto.intor_cross("int2c2e_cart", aux, ref["iam_mol"]) @ ref["iam_amp"]
        J = aux.intor("int2c2e_cart")
    finally:
        _set_omega(0.0, ref["mol"], ref["mol_cart"], ref["iam_mol"], aux)
    return J, b, cache[omega]


def fit_basis(ref, elements, xyz, shells_of, charge, ridge=RIDGE, blur=B_FIT,
              report=B_EVAL):
    """Constrained fit of Δρ onto the basis ``shells_of`` in the blurred Coulomb metric.

    Returns
    -------
    dict
        ``coef`` (M,) in PySCF normalisation, ``coef_A`` (M,) for x^i y^j z^k exp(−α r²) in
        e/Å³ (Å, Å⁻²), ``electrons`` (M,) = coef·∫φ (e), ``alpha`` (M,) Å⁻², ``powers``
        (M, 3), ``atom`` (M,), ``resid`` (len(report),) ‖(Δρ − fit)∗G_B‖_J / ‖Δρ∗G_B‖_J at
        each blur of ``report``, ``norm`` (len(report),) ‖Δρ∗G_B‖_J (e/√Å).
    """
    aux = _shell_mol(elements, xyz, shells_of)
    norm, powers, alpha_b, atom = _norms(aux)
    n = _integrals(norm, powers, alpha_b)
    J, b, dd = metric_terms(ref, aux, omega_of_blur(blur))
    m = len(b)
    A = np.zeros((m + 1, m + 1))
    A[:m, :m] = J + ridge * np.mean(np.diag(J)) * np.eye(m)
    A[:m, m] = A[m, :m] = n
    c = np.linalg.solve(A, np.concatenate([b, [-float(charge)]]))[:m]
    resid, dnorm = [], []
    for bl in report:
        if bl != blur:
            J, b, dd = metric_terms(ref, aux, omega_of_blur(bl))
        resid.append(np.sqrt(max(dd - 2 * c @ b + c @ J @ c, 0.0) / dd))
        dnorm.append(np.sqrt(dd / BOHR))
    lpow = powers.sum(1)
    return {"coef": c, "coef_A": c * norm / BOHR ** (lpow + 3), "electrons": c * n,
            "alpha": alpha_b / BOHR ** 2, "powers": powers, "atom": atom,
            "resid": np.array(resid), "norm": np.array(dnorm)}


def fit_fragment(elements, xyz, charge, dm, basis="def2-svp"):
    """Stage-1 (s) and rich fits of one fragment's Δρ.

    Parameters
    ----------
    elements : sequence of str, length N
    xyz : ndarray, shape (N, 3)
        Å.
    charge : int
        Total formal charge Q.
    dm : ndarray, shape (nao, nao)
        Spherical AO density matrix of the single point (`densrefine.ml.qm`).

    Returns
    -------
    dict
        ``c_s`` (N, 8) unit-integral coefficients (e; H: columns 4–7 zero), ``resid_s`` (3,)
        at the blurs `B_EVAL`, ``c_rich``, ``rich_atom``, ``rich_alpha``, ``rich_powers``
        (stage-2 Å convention), ``resid_rich`` (3,), ``dnorm`` (3,) ‖Δρ∗G_B‖_J (e/√Å),
        ``n_electrons``, ``seconds``.
    """
    from .qm import build_mol

    t0 = time.perf_counter()
    mol = build_mol(elements, xyz, charge, basis)
    ref = reference_terms(mol, dm, elements, xyz)
    fs = fit_basis(ref, elements, xyz,
                   lambda e: [(0, a) for a in ml_basis.s_exponents(e)], charge)
    fr = fit_basis(ref, elements, xyz,
                   lambda e: [(l, a) for l, ex in ml_basis.rich_shells(e) for a in ex], charge,
                   ridge=RIDGE_RICH)
    c_s = np.zeros((len(elements), ml_basis.K_S))
    for i in range(len(elements)):
        sel = fs["atom"] == i
        c_s[i, :sel.sum()] = fs["electrons"][sel]
    return {"c_s": c_s, "resid_s": fs["resid"], "c_rich": fr["coef_A"],
            "rich_atom": fr["atom"], "rich_alpha": fr["alpha"], "rich_powers": fr["powers"],
            "resid_rich": fr["resid"], "dnorm": fs["norm"], "n_electrons": ref["n_electrons"],
            "seconds": time.perf_counter() - t0}
