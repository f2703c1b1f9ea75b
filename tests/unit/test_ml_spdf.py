"""Stage-2 (s,p,d,f) deformation-density basis and e3nn network: normalisation, analytic blur,
Cartesian conversion, grid splat, equivariance and exact charge."""
import e3nn  # noqa: F401 - a hard dependency (pyproject): a broken install must fail, not skip
import numpy as np
import pytest
import torch

from densrefine.density import ml_basis

EL = ["C", "O", "N", "H", "H", "C", "H", "H", "H"]
XYZ = np.array([[0, 0, 0], [1.23, 0, 0], [-0.7, 1.2, 0], [-1.7, 1.2, 0.1], [-0.2, 2.1, 0],
                [-0.7, -1.3, 0.2], [-1.8, -1.3, 0.2], [-0.3, -1.9, 1.0], [-0.4, -1.8, -0.7]])


def _grid(n=80, order=41):
    from densrefine.ml.evaluate import becke_grid

    return becke_grid(np.zeros((1, 3)), n_rad=n, order=order)


def test_sph_layout_sizes():
    _, mask = ml_basis.sph_table(["C", "H"])
    assert ml_basis.K_SPH == 42 and mask[0].sum() == 42 and mask[1].sum() == 15
    ls, _, _ = ml_basis.sph_columns()
    assert list(np.bincount(ls)) == [8, 12, 15, 7]


@pytest.mark.parametrize("l", [0, 1, 2, 3])
def test_multipole_normalisation(l):
    """∫ S_lm φ_lm' = δ_mm' (l = 0: unit integral, i.e. the stage-1 s function)."""
    pts, w = _grid()
    a = 0.9
    s = ml_basis.solid_harmonics(l, pts)
    f = ml_basis.sph_norm(l, a) * s * np.exp(-a * (pts ** 2).sum(1))[:, None]
    np.testing.assert_allclose(np.einsum("p,pm,pn->mn", w, s, f), np.eye(2 * l + 1), atol=1e-8)
    if l == 0:
        np.testing.assert_allclose(f[:, 0], (a / np.pi) ** 1.5 * np.exp(-a * (pts ** 2).sum(1)))


def test_analytic_blur_matches_fft_convolution():
    """A Gaussian × solid harmonic blurred by an isotropic Gaussian: α → 4π²/(4π²/α + B)."""
    n, h, blur = 64, 0.15, 2.0
    x = (np.arange(n) - n // 2) * h
    pts = np.stack(np.meshgrid(x, x, x, indexing="ij"), -1).reshape(-1, 3)
    c = np.zeros((1, 42))
    c[0, 20:25] = [0.3, -0.2, 0.5, 0.1, 0.4]          # the first (α = 4) d shell
    c[0, 35:42] = np.linspace(-0.3, 0.3, 7)            # the f shell (α = 1.5)
    f = ml_basis.sph_density(np.zeros((1, 3)), c, ["C"], pts).reshape(n, n, n)
    k = np.fft.fftfreq(n, h)
    k2 = k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2
    conv = np.real(np.fft.ifftn(np.fft.fftn(f) * np.exp(-blur * k2 / 4)))  # width B, splat conv.
    ref = ml_basis.sph_density(np.zeros((1, 3)), c, ["C"], pts, blur=blur).reshape(n, n, n)
    assert np.abs(conv - ref).max() < 1e-6 * np.abs(ref).max() + 1e-9


def test_cartesian_terms_equal_solid_harmonics():
    from densrefine.ml.evaluate import rich_density

    rng = np.random.default_rng(0)
    _, mask = ml_basis.sph_table(EL)
    c = rng.normal(size=(len(EL), 42)) * mask
    pts = rng.normal(size=(300, 3)) * 1.5
    at, al, pw, co = ml_basis.sph_to_cartesian(EL, c)
    ref = rich_density(XYZ, {"rich_atom": at, "rich_alpha": al, "rich_powers": pw,
                             "c_rich": co}, pts)
    np.testing.assert_allclose(ml_basis.sph_density(XYZ, c, EL, pts), ref, atol=1e-10)


def test_grid_splat_matches_point_evaluation():
    from densrefine.density.ml_spdf import splat_sph
    from densrefine.grid import GridFrame

    el, xyz = EL[:4], XYZ[:4]
    rng = np.random.default_rng(1)
    a0, mask = ml_basis.sph_table(el)
    c = rng.normal(size=(4, 42)) * mask
    b = np.array([1.0, 2.0, 1.5, 0.5])
    alpha = ml_basis.sph_blur(a0, b[:, None])
    fr = GridFrame.box((24, 24, 24), 0.5, origin=(-6, -6, -6), periodic=False)
    g = splat_sph(torch.tensor(xyz), torch.tensor(c), torch.tensor(alpha),
                  ml_basis.sph_columns()[0], fr, 1e-8).numpy()
    k, j, i = np.meshgrid(*[np.arange(24)] * 3, indexing="ij")
    pts = np.stack([i, j, k], -1).reshape(-1, 3) * 0.5 - 6
    ref = sum(ml_basis.sph_density(xyz[[a]], c[[a]], [el[a]], pts, blur=b[a]) for a in range(4))
    np.testing.assert_allclose(g.ravel(), ref, atol=1e-6 * np.abs(ref).max())


@pytest.fixture(scope="module")
def random_net():
    from densrefine.density import ml_spdf

    torch.manual_seed(0)
    net = ml_spdf.make_net().double()
    with torch.no_grad():                      # non-trivial outputs in every channel
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


def test_equivariance_rotated_input_gives_rotated_density(random_net):
    from e3nn import o3

    from densrefine.density import ml_spdf

    net = random_net
    q = np.zeros(len(EL))
    feat, b, comp, t, mask = ml_spdf.inputs(EL, XYZ, q)
    torch.manual_seed(3)
    R = o3.rand_matrix().double().numpy()
    shift = np.array([3.0, -1.0, 2.0])
    xyz2 = XYZ @ R.T + shift
    c1 = net(feat, torch.tensor(XYZ), b, comp, t, mask.double()).detach().numpy()
    c2 = net(feat, torch.tensor(xyz2), b, comp, t, mask.double()).detach().numpy()
    pts = np.random.default_rng(0).normal(size=(400, 3)) * 1.5
    d1 = ml_basis.sph_density(XYZ, c1, EL, pts)
    d2 = ml_basis.sph_density(xyz2, c2, EL, pts @ R.T + shift)
    assert np.abs(d1).max() > 1e-2                       # the test density is not trivial
    assert np.abs(c1[:, 8:]).max() > 1e-3                 # p, d, f are predicted
    np.testing.assert_allclose(d2, d1, atol=1e-5)


def test_charge_is_exact_per_component(random_net):
    from densrefine.density import ml_spdf

    net = random_net
    el = EL + ["NA"]
    xyz = np.vstack([XYZ, [[8.0, 0, 0]]])
    q = np.zeros(len(el))
    q[2], q[-1] = -1, 1
    feat, b, comp, t, mask = ml_spdf.inputs(el, xyz, q)
    c = net(feat, torch.tensor(xyz), b, comp, t, mask.double()).detach().numpy()
    tot = np.bincount(comp.numpy(), c[:, :8].sum(1))
    np.testing.assert_allclose(tot, [1.0, -1.0], atol=1e-10)
    assert np.all(c[np.array(el) == "H"][:, ~ml_basis.sph_table(["H"])[1][0]] == 0)


def test_gradient_flows_to_coordinates(random_net):
    from densrefine.density import ml_spdf
    from densrefine.grid import GridFrame

    x = torch.tensor(XYZ, requires_grad=True)
    sp = {"elements": np.array([e.upper() for e in EL]), "charges": np.zeros(len(EL)),
          "bonds": None, "implicit_h": None}
    c = ml_spdf.delta_coefficients(x, sp, random_net)
    a0, _ = ml_basis.sph_table(EL)
    fr = GridFrame.box((20, 20, 20), 0.6, origin=(-6, -6, -6), periodic=True)
    g = ml_spdf.splat_sph(x, c, torch.tensor(ml_basis.sph_blur(a0, 2.0)),
                          ml_basis.sph_columns()[0], fr, 1e-3)
    (g ** 2).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().max() > 0


def test_sph_fit_reproduces_charge_and_stage1_convention():
    """PySCF (optional): the stage-2 fit conserves charge and its s block is a unit-integral
    Gaussian fit (the libcint ↔ solid-harmonic transforms are exact)."""
    pytest.importorskip("pyscf")
    from pyscf import dft

    from densrefine.ml import fitting, fitting_sph
    from densrefine.ml.qm import build_mol

    el = ["O", "H", "H"]
    xyz = np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    mol = build_mol(el, xyz, 0, "sto-3g")
    mf = dft.RKS(mol, xc="lda,vwn")
    mf.verbose = 0
    mf.kernel()
    ref = fitting.reference_terms(mol, mf.make_rdm1(), el, xyz)
    r = fitting_sph.fit_sph(ref, el, xyz, 0)
    assert abs(r["c_sph"][:, :8].sum()) < 1e-10
    assert np.all(r["resid_sph"] < 0.5)
    aux = fitting_sph._sph_mol(el, xyz, fitting_sph._atom_shells(el))
    T, info = fitting_sph._shell_transforms(aux, xyz)
    s = info[:, 1] == 0
    # an s function of libcint is our unit-integral Gaussian times ∫f (its T entry)
    pts = xyz[0] + np.random.default_rng(0).normal(size=(5, 3)) * 0.3
    f = aux.eval_gto("GTOval_sph", pts / fitting.BOHR)[:, s] / fitting.BOHR ** 3
    a = info[s, 2]
    g = (a / np.pi) ** 1.5 * np.exp(-a * ((pts[:, None] - xyz[info[s, 0].astype(int)]) ** 2)
                                    .sum(-1))
    np.testing.assert_allclose(f, g * np.diag(T)[s], rtol=1e-8)


def test_shipped_weights_predict_with_exact_charge():
    from densrefine.density import get_density_model, ml_spdf

    assert get_density_model("ml-spdf") is ml_spdf
    q = np.zeros(len(EL))
    q[1] = -1
    c = ml_spdf.predict(EL, XYZ, q)
    assert c.shape == (len(EL), 42)
    assert abs(c[:, :8].sum() - 1.0) < 1e-5            # ∫Δρ = −Q
    assert np.all(np.isfinite(c)) and np.abs(c[:, 8:]).max() > 1e-4


def test_missing_or_corrupt_weights_give_input_error(tmp_path):
    from densrefine.density import ml_spdf
    from densrefine.errors import InputError

    with pytest.raises(InputError, match="missing"):
        ml_spdf.load_net(str(tmp_path / "none.npz"))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(InputError, match="cannot be read"):
        ml_spdf.load_net(str(bad))


@pytest.mark.parametrize("charge", [0, -1])
def test_grid_part_xray_integrates_to_minus_charge(charge):
    from densrefine.density import ml_spdf
    from densrefine.grid import GridFrame

    q = np.zeros(len(EL))
    q[1] = charge
    spdf = {"index": np.arange(len(EL)), "elements": np.array([e.upper() for e in EL]),
            "charges": q, "bonds": None, "implicit_h": None}
    fr = GridFrame.box((40, 40, 40), 0.5, origin=(-10, -10, -10), periodic=True)
    x = torch.tensor(XYZ)
    out = ml_spdf.delta_density(x, torch.full((len(EL),), 20.0, dtype=torch.float64),
                                torch.ones(len(EL), dtype=torch.float64), fr, 10.0, 1e-6,
                                spdf=spdf, electron=False)
    out = out.detach()
    assert abs(float(out.sum()) * 0.125 + charge) < 2e-3
    assert float(out.abs().max()) > 1e-3


def test_ensemble_keeps_charge_and_round_trips(random_net, tmp_path):
    from densrefine.density import ml_spdf

    torch.manual_seed(5)
    other = ml_spdf.make_net().double()
    ens = ml_spdf.make_ensemble([random_net, other])
    q = np.zeros(len(EL))
    q[1] = -1
    feat, b, comp, t, mask = ml_spdf.inputs(EL, XYZ, q)
    args = (feat, torch.tensor(XYZ), b, comp, t, mask.double())
    c = ens(*args).detach().numpy()
    np.testing.assert_allclose(c[:, :8].sum(), 1.0, atol=1e-10)
    np.testing.assert_allclose(c, 0.5 * (random_net(*args) + other(*args)).detach().numpy())
    path = str(tmp_path / "ens.npz")
    ml_spdf.save_net(ens, path)
    back = ml_spdf.load_net(path).double()
    np.testing.assert_allclose(back(*args).detach().numpy(), c, atol=1e-6)
