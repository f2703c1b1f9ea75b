"""ML density data pipeline (issue 6): basis, metric, fragments, evaluation, committed data.

PySCF is an optional extra (``.[mldata]``); the tests that run it skip without it. The
committed data set (ml_data/) is checked with numpy alone.
"""
from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest
from scipy.integrate import quad

from densrefine.density import ml_basis
from densrefine.ml import evaluate, fragments

from ..conftest import require_data

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "ml_data"
BOHR = 0.52917721092


def _has_pyscf():
    import importlib.util

    return importlib.util.find_spec("pyscf") is not None


needs_pyscf = pytest.mark.skipif(not _has_pyscf(), reason="pyscf not installed (optional "
                                 "extra .[mldata]; only needed to regenerate ml_data)")


# ---------------------------------------------------------------- basis and metric
def test_s_basis_shapes_and_unit_integral():
    alpha, mask = ml_basis.s_exponent_table(["C", "H", "O"])
    assert alpha.shape == (3, 8) and mask.sum(1).tolist() == [8, 4, 8]
    assert np.all(np.diff(ml_basis.S_HEAVY) < 0) and np.all(np.diff(ml_basis.S_H) < 0)
    for a in (ml_basis.S_HEAVY[0], ml_basis.S_H[-1]):
        val = quad(lambda r: 4 * np.pi * r ** 2 * (a / np.pi) ** 1.5 * np.exp(-a * r * r),
                   0, 50 / math.sqrt(a))[0]
        assert val == pytest.approx(1.0, rel=1e-8)
    w, _ = ml_basis.s_widths(["N"])
    assert w[0, 0] == pytest.approx(4 * np.pi ** 2 / ml_basis.S_HEAVY[0])


def test_rich_function_counts():
    atom, alpha, powers = ml_basis.rich_functions(["C", "H"])
    assert (atom == 0).sum() == 48 and (atom == 1).sum() == 16
    assert set(powers[atom == 0].sum(1)) == {0, 1, 2, 3}
    assert ml_basis.cart_powers(2) == [(2, 0, 0), (1, 1, 0), (1, 0, 1), (0, 2, 0), (0, 1, 1),
                                       (0, 0, 2)]


@pytest.mark.parametrize("alpha,beta,r", [(1.0, 2.0, 0.0), (1.0, 2.0, 1.3), (40.0, 0.25, 2.0)])
def test_coulomb_ss_matches_fourier_integral(alpha, beta, r):
    # (g_a|g_b) = (2/pi) ∫ exp(-q²/4p) sin(qR)/(qR) dq, p = ab/(a+b)
    p = alpha * beta / (alpha + beta)

    def f(q):
        return np.exp(-q * q / (4 * p)) * (np.sinc(q * r / np.pi) if r else 1.0)
    num = 2 / np.pi * quad(f, 0, 60 * math.sqrt(p), limit=200)[0]
    assert float(ml_basis.coulomb_ss(alpha, beta, r)) == pytest.approx(num, rel=1e-6)


@needs_pyscf
def test_coulomb_ss_matches_pyscf_int2c2e():
    from densrefine.ml import fitting

    xyz = np.array([[0.0, 0, 0], [0.0, 0, 1.7]])
    mol = fitting._shell_mol(["H", "H"], xyz, lambda e: [(0, 0.8)])
    norm, powers, alpha, _ = fitting._norms(mol)
    n = fitting._integrals(norm, powers, alpha)
    J = mol.intor("int2c2e_cart") / np.outer(n, n) / BOHR  # unit-integral, e²/Å
    assert J[0, 1] == pytest.approx(float(ml_basis.coulomb_ss(0.8, 0.8, 1.7)), rel=1e-8)
    assert J[0, 0] == pytest.approx(float(ml_basis.coulomb_ss(0.8, 0.8, 0.0)), rel=1e-8)


@needs_pyscf
def test_water_fit_conserves_charge():
    from densrefine.ml import fitting, qm

    el = ["O", "H", "H"]
    xyz = np.array([[0.0, 0, 0], [0.7572, 0.5865, 0], [-0.7572, 0.5865, 0]])
    cheap = dict(qm.SETTINGS, grids_level=1, lebedev_order=11, conv_tol=1e-7)
    res = qm.run_single_point(el, xyz, 0, cheap)
    assert res["converged"]
    fit = fitting.fit_fragment(el, xyz, 0, res["dm"])
    assert fit["n_electrons"] == pytest.approx(10.0, abs=1e-6)
    assert fit["c_s"].sum() == pytest.approx(0.0, abs=1e-6)
    assert np.all(fit["c_s"][1:, 4:] == 0)
    assert np.all(fit["resid_rich"] < fit["resid_s"]) and np.all(fit["resid_rich"] < 0.2)


# ---------------------------------------------------------------- fragments
def test_place_atom_geometry():
    a, b, c = np.array([1.0, 1, 0]), np.array([0.0, 1, 0]), np.array([0.0, 0, 0])
    d = fragments.place_atom(a, b, c, 1.1, 109.5, 180.0)
    assert np.linalg.norm(d - c) == pytest.approx(1.1)
    cosang = np.dot(b - c, d - c) / (np.linalg.norm(b - c) * 1.1)
    assert math.degrees(math.acos(cosang)) == pytest.approx(109.5)


def test_fragment_builder_hydrogen_counts():
    path = require_data("5e5z", "5e5z.pdb.gz")  # peptide LVHSSN
    st = fragments.load_hydrogenated(str(path))
    frags = [f for ch in st[0] for f in fragments._protein_fragments("5e5z", ch)]
    side = {f["resname"]: f for f in frags if f["kind"] == "side"}
    n_h = {k: int((v["elements"] == "H").sum()) for k, v in side.items()}
    # CB capped to methyl: Leu C4H10, Val C3H8, Ser CH3OH, Asn CH3CONH2, His+ 4-methylimidazolium
    assert n_h["LEU"] == 10 and n_h["VAL"] == 8 and n_h["SER"] == 4
    his = side["HIS"]
    states = {s: fragments.set_state(dict(his), s) for s in ("+1", "0d", "0e")}
    assert [int((states[s]["elements"] == "H").sum()) for s in ("+1", "0d", "0e")] == [7, 6, 6]
    assert int(states["+1"]["charges"].sum()) == 1 and int(states["0d"]["charges"].sum()) == 0
    assert "HE2" not in states["0d"]["names"] and "HD1" not in states["0e"]["names"]
    for f in frags:  # closed shell in every protonation state
        for s in (fragments.STATES.get(f["resname"], ("0",)) if f["kind"] in ("side", "capped")
                  else ("0",)):
            g = fragments.set_state(dict(f), s) if s != "0" or f["resname"] in \
                fragments.STATES else f
            z = sum(evaluate.atomic_number(str(e)) for e in g["elements"])
            assert (z - int(g["charges"].sum())) % 2 == 0, (g["source"], s)


def test_set_state_carboxylate_and_amine():
    # acetate-like Asp side chain (CB methyl) built by hand
    el = np.array(["C", "C", "O", "O", "H", "H", "H"])
    nm = np.array(["CB", "CG", "OD1", "OD2", "HB2", "HB3", "HLCB"])
    xyz = np.array([[0, 0, 0], [1.52, 0, 0], [2.1, 1.1, 0], [2.1, -1.1, 0],
                    [-0.4, 1.0, 0], [-0.4, -0.5, 0.9], [-0.4, -0.5, -0.9]], float)
    base = {"elements": el, "names": nm, "xyz": xyz, "resname": "ASP"}
    neg = fragments.set_state(dict(base), "-1")
    neu = fragments.set_state(dict(base), "0")
    assert int(neg["charges"].sum()) == -1 and len(neg["elements"]) == 7
    assert int(neu["charges"].sum()) == 0 and len(neu["elements"]) == 8
    assert np.linalg.norm(neu["xyz"][-1] - xyz[3]) == pytest.approx(0.97)


# ---------------------------------------------------------------- evaluation maths
def _one_s_frag(c_rich, alpha=1.5):
    return {"elements": np.array(["C"]), "xyz": np.zeros((1, 3)), "charge": 0,
            "formal_charge": np.zeros(1, int), "rich_atom": np.zeros(1, int),
            "rich_alpha": np.array([alpha]), "rich_powers": np.zeros((1, 3), int),
            "c_rich": np.array([c_rich])}


def test_fft_potential_of_gaussian_matches_erf():
    from scipy.special import erf

    alpha, blur, amp = 1.5, 16.0, 0.3
    frag = _one_s_frag(amp * (alpha / np.pi) ** 1.5, alpha)  # 0.3 e in one Gaussian
    lo, h, V = evaluate.blurred_potentials(frag, blur, spacing=0.4, pad=12.0)
    dv = V["ref"] - V["iam"]  # potential of −Δρ
    n = dv.shape[0]
    x = lo[0] + h * np.arange(n)
    line = dv[:, np.argmin(np.abs(x)), np.argmin(np.abs(x))]
    r = np.abs(x)
    ab = 1 / (1 / alpha + blur / (4 * np.pi ** 2))  # blurred exponent
    exact = -amp * np.where(r > 1e-9, erf(np.sqrt(ab) * r) / np.where(r > 0, r, 1),
                            2 * np.sqrt(ab / np.pi))
    near = r < 6.0
    off = np.mean(line[near] - exact[near])  # k = 0 term dropped: a constant shift
    # what remains is the parabola of the periodic neutralising background (~0.3 % here)
    assert np.max(np.abs(line[near] - exact[near] - off)) < 5e-3 * np.max(np.abs(exact))


def test_density_nmae_and_integrals_on_becke_grid():
    xyz = np.array([[0.0, 0, 0], [1.2, 0, 0]])
    pts, w = evaluate.becke_grid(xyz)
    g = (2.0 / np.pi) ** 1.5 * np.exp(-2.0 * ((pts - xyz[1]) ** 2).sum(1))
    assert np.sum(w * g) == pytest.approx(1.0, abs=1e-5)
    c_s = np.zeros((1, 8))
    c_s[0, 3] = 0.5
    frag = _one_s_frag(0.5 * (ml_basis.S_HEAVY[3] / np.pi) ** 1.5, ml_basis.S_HEAVY[3])
    assert evaluate.density_nmae(frag, c_s) == pytest.approx(0.0, abs=1e-10)
    assert evaluate.density_nmae(frag, None) == pytest.approx(0.5 / 6, rel=1e-4)
    r = evaluate.potential_r({**frag, "formal_charge": np.zeros(1)}, 3.0, [c_s])
    assert r["pred0"] < 1e-8 and r["iam"] > 0.01


# ---------------------------------------------------------------- committed data set
def _chunks():
    files = sorted(DATA.glob("chunk_*.npz"))
    if not files:
        pytest.skip("ml_data/ has no chunk files")
    return files


def test_committed_chunks_shapes_and_charge():
    n_frag = 0
    for path in _chunks():
        z = np.load(path, allow_pickle=False)
        f = len(z["frag_id"])
        n_frag += f
        ao, ro, bo = z["atom_offset"], z["rich_offset"], z["bond_offset"]
        assert len(ao) == len(ro) == len(bo) == f + 1
        assert z["xyz"].shape == (ao[-1], 3) and z["c_s"].shape == (ao[-1], 8)
        assert len(z["c_rich"]) == len(z["rich_alpha"]) == ro[-1]
        assert z["resid_s"].shape == (f, 3)
        for i in range(f):
            sl = slice(ao[i], ao[i + 1])
            q = int(z["formal_charge"][sl].sum())
            assert q == z["charge"][i]
            assert z["c_s"][sl].sum() == pytest.approx(-q, abs=1e-6)
            assert np.all(z["c_s"][sl][z["elements"][sl] == "H", 4:] == 0)
            z_tot = sum(evaluate.atomic_number(str(e)) for e in z["elements"][sl])
            assert z["n_electrons"][i] == pytest.approx(z_tot - q, abs=1e-4)
            rs = slice(ro[i], ro[i + 1])  # analytic ∫ of the Cartesian rich functions
            a, p, c = z["rich_alpha"][rs], z["rich_powers"][rs], z["c_rich"][rs]
            even = np.all(p % 2 == 0, axis=1)
            mom = np.prod([[math.gamma((k + 1) / 2) / ai ** ((k + 1) / 2) for k in pp]
                           for ai, pp in zip(a[even], p[even])], axis=1)
            assert np.sum(c[even] * mom) == pytest.approx(-q, abs=1e-5)
    assert n_frag > 0


def test_committed_split_holds_out_residues():
    _chunks()
    index = json.loads((DATA / "index.json").read_text())
    by = {}
    for row in index:
        by.setdefault(row["split"], set()).add((row["kind"], row["resname"], row["state"]))
    train = {(r, s) for k, r, s in by.get("train", ()) if k in ("side", "capped")}
    test = {(r, s) for k, r, s in by.get("test", ())}
    assert test and not (train & test)
    assert ("GLU", "-1") in test and ("GLU", "-1") not in train


def test_sample_plan_is_balanced_and_jitters():
    def frag(kind, res, state, k):
        return {"elements": np.array(["C", "H"]), "xyz": np.array([[0.0, 0, 0], [1.09, 0, 0]]),
                "kind": kind, "resname": res, "state": state, "source": f"s{k}"}
    frs = [frag("side", "ASP", "-1", k) for k in range(10)] + \
          [frag("side", "LYS", "+1", k) for k in range(2)] + \
          [frag("capped", "ALA", "0", k) for k in range(10)]
    plan = fragments.sample_plan(frs, seed=1)
    first = [p["resname"] for p in plan[:2]]
    assert sorted(first) == ["ASP", "LYS"]  # round 0: one of each cheap group
    assert plan[2]["kind"] == "capped"  # costly kinds start in round 1
    assert len({p["id"] for p in plan}) == len(plan)
    jit = [p for p in plan if p["jitter"] > 0]
    assert jit and all(p["jitter"] == pytest.approx(0.04) for p in jit)


def test_split_of_holds_out_glu_and_hip():
    from densrefine.ml.pack import split_of

    assert split_of("side", "GLU", "-1") == "test" and split_of("capped", "HIS", "+1") == "test"
    assert split_of("side", "HIS", "0d") == "train" and split_of("side", "THR", "0") == "val"
    assert split_of("backbone", "GLU", "0") == "train" and split_of("ion", "NA", "+1") == "train"
