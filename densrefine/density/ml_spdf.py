"""Learned s,p,d,f deformation density ("ml-spdf", issue 6 stage 2): an E(3)-equivariant net.

Per atom the coefficients of the stage-2 basis of `densrefine.density.ml_basis` (section
"stage 2": φ = N_l(α) S_lm(r) e^{−αr²}, real solid harmonics, e3nn order), irreps
``8x0e+4x1o+3x2e+1x3o`` (42 numbers; hydrogen: the subset 4x0e+2x1o+1x2e), predicted by an
e3nn message-passing network (Geiger & Smidt 2022, arXiv:2207.09453; the NequIP pattern of
Batzner et al. 2022, Nat. Commun. 13, 2453) on the covalent-bond graph:

* node inputs: the stage-1 scalar features (`densrefine.density.ml.features`: element,
  2-bond formal charge, degree, n(H), united-atom flag);
* ``ROUNDS`` interaction blocks: for every bond j → i the tensor product of h_j with the
  spherical harmonics Y(r̂_ij) (l ≤ 3), path weights from an MLP of |r_ij| (Gaussian radial
  basis), summed over neighbours, a self-interaction, a gated nonlinearity (e3nn ``Gate``)
  and a residual connection;
* an equivariant linear read-out scaled per shell by the training targets' RMS.

Rotating the input coordinates rotates every output irrep by its Wigner matrix, so the
predicted Δρ(r) rotates with the molecule (tests/unit/test_ml_spdf.py checks it on points).
Exact charge: per connected component the s channel is shifted by learned positive weights on
one mid-range s function so that Σ c_s = −Q (+ implicit hydrogens' electrons), as stage 1.
"""
from __future__ import annotations

import json
import logging
import os

import numpy as np

from ..io.atomic import atomic_path
from . import iam, ml, ml_basis
from .charges import formal_charges
from .terms import DensityTerms, FieldExtra

log = logging.getLogger("densrefine")

name = "ml-spdf"
HIDDEN = "32x0e+8x1o+8x2e+4x3o"
SH = "1x0e+1x1o+1x2e+1x3o"
ROUNDS = 3
N_RBF = 8
R_MAX = 2.2
"""Å: radial basis centres span 0.8 … R_MAX (bonds only)."""
CHARGE_COL_HEAVY, CHARGE_COL_H = 5, 2
WEIGHTS = os.path.join(os.path.dirname(__file__), "weights", "ml_spdf_v1.npz")


def column_mask(is_h):
    """(N, 42) float mask of existing functions: heavy atoms all, H the 4x0e+2x1o+1x2e subset."""
    _, m_h = ml_basis.sph_table(["H"])
    _, m_x = ml_basis.sph_table(["C"])
    return np.where(np.asarray(is_h)[:, None], m_h, m_x).astype(np.float32)


def make_net(scale_heavy=None, scale_h=None):
    """The stage-2 network (torch.nn.Module); ``scale_*`` (42,) per-column output scales."""
    import torch
    from e3nn import o3
    from e3nn.nn import Gate
    from torch import nn

    hidden = o3.Irreps(HIDDEN)
    sh = o3.Irreps(SH)
    out_irreps = o3.Irreps(ml_basis.SPH_IRREPS + "+1x0e")
    scal = o3.Irreps([(m, ir) for m, ir in hidden if ir.l == 0])
    gated = o3.Irreps([(m, ir) for m, ir in hidden if ir.l > 0])
    n_gates = gated.num_irreps

    class Block(nn.Module):
        def __init__(self, irreps_in):
            super().__init__()
            self.gate = Gate(scal, [torch.nn.functional.silu], f"{n_gates}x0e", [torch.sigmoid],
                             gated)
            self.tp = o3.FullyConnectedTensorProduct(irreps_in, sh, self.gate.irreps_in,
                                                     shared_weights=False)
            self.radial = nn.Sequential(nn.Linear(N_RBF, 16), nn.SiLU(),
                                        nn.Linear(16, self.tp.weight_numel))
            self.self_int = o3.Linear(irreps_in, self.gate.irreps_in)
            self.res = o3.Linear(irreps_in, hidden)

        def forward(self, h, src, dst, y, rbf):
            m = self.tp(h[src], y, self.radial(rbf))
            agg = torch.zeros(len(h), m.shape[1], dtype=m.dtype, device=m.device)
            agg = agg.index_add(0, dst, m)
            return self.res(h) + self.gate(self.self_int(h) + agg / 2.0)

    class SpdfNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = o3.Linear(o3.Irreps(f"{ml.N_FEAT}x0e"), hidden)
            self.blocks = nn.ModuleList([Block(hidden) for _ in range(ROUNDS)])
            self.read = o3.Linear(hidden, out_irreps)
            sh_ = torch.ones(ml_basis.K_SPH) if scale_heavy is None else \
                torch.as_tensor(scale_heavy, dtype=torch.float32)
            shh = torch.ones(ml_basis.K_SPH) if scale_h is None else \
                torch.as_tensor(scale_h, dtype=torch.float32)
            self.register_buffer("scale_heavy", sh_.clone())
            self.register_buffer("scale_h", shh.clone())

        def forward(self, feat, xyz, bonds, comp, target_charge, mask):
            """Coefficients (N, 42); Σ of the s columns over each component = target_charge."""
            src = torch.cat([bonds[:, 0], bonds[:, 1]])
            dst = torch.cat([bonds[:, 1], bonds[:, 0]])
            vec = xyz[src] - xyz[dst]
            y = o3.spherical_harmonics(sh, vec, normalize=True, normalization="component")
            d = vec.norm(dim=1, keepdim=True)
            centres = torch.linspace(0.8, R_MAX, N_RBF, dtype=xyz.dtype, device=xyz.device)
            rbf = torch.exp(-((d - centres) / 0.2) ** 2)
            h = self.embed(feat.to(xyz.dtype))
            for b in self.blocks:
                h = b(h, src, dst, y, rbf)
            out = self.read(h)
            is_h = mask[:, -1] == 0            # the f column exists for heavy atoms only
            scale = torch.where(is_h[:, None], self.scale_h, self.scale_heavy).to(out.dtype)
            c = out[:, :-1] * scale * mask
            w = nn.functional.softplus(out[:, -1]) + 1e-3
            ncomp = int(comp.max()) + 1 if len(comp) else 0
            s_tot = torch.zeros(ncomp, dtype=c.dtype, device=c.device).index_add(
                0, comp, c[:, :8].sum(1))
            wsum = torch.zeros(ncomp, dtype=c.dtype, device=c.device).index_add(0, comp, w)
            delta = (target_charge.to(c.dtype) - s_tot)[comp] * w / wsum[comp]
            col = torch.where(is_h, CHARGE_COL_H, CHARGE_COL_HEAVY)
            return c + nn.functional.one_hot(col, ml_basis.K_SPH).to(c.dtype) * delta[:, None]

    return SpdfNet()


def save_net(net, path: str, meta: dict | None = None) -> None:
    """Weights as npz (flattened state dict, float arrays only) plus ``meta_json``, atomically."""

    arrays = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    arrays["meta_json"] = np.array(json.dumps(meta or {}, default=float))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def make_ensemble(nets):
    """Average of several stage-2 networks (torch.nn.Module): still equivariant, and each
    member's exact per-component charge makes the mean exact too."""
    from torch import nn

    class Ensemble(nn.Module):
        def __init__(self):
            super().__init__()
            self.members = nn.ModuleList(nets)

        def forward(self, *args):
            return sum(m(*args) for m in self.members) / len(self.members)

    return Ensemble()


def load_net(path: str = WEIGHTS):
    """The stage-2 network (or ensemble, keys ``members.<k>.…``) with its weights (npz read
    with ``allow_pickle=False``)."""
    what, fix = "ml-spdf density", "reinstall densrefine, or use --density iam / ml"
    state = ml.read_weights(path, what, fix)
    n = len({k.split(".")[1] for k in state if k.startswith("members.")})
    net = make_ensemble([make_net() for _ in range(n)]) if n else make_net()
    return ml.fill_net(net, state, path, what, fix)


def inputs(elements, xyz, charges, bonds=None, implicit_h=None):
    """Network inputs (torch) for one molecule: feat, bonds, comp, target charge, mask.

    ``xyz`` is not converted (pass a tensor to keep gradients); everything else is built
    from numpy. With ``implicit_h`` the per-component target is −Q + n(implicit H).
    """
    import torch

    el = np.array([str(e).strip().upper() for e in elements])
    xyz_np = np.asarray(xyz.detach().cpu().numpy() if hasattr(xyz, "detach") else xyz, float)
    bonds = ml.bonds_from_distances(el, xyz_np) if bonds is None else np.asarray(bonds)
    bonds = bonds.reshape(-1, 2)
    comp = ml.components_of(len(el), bonds)
    q = np.asarray(charges, np.float64)
    extra = q * 0 if implicit_h is None else np.asarray(implicit_h, np.float64)
    target = np.bincount(comp, extra - q, comp.max() + 1) if len(comp) else np.zeros(0)
    return (torch.from_numpy(ml.features(el, bonds, q, implicit_h)),
            torch.as_tensor(bonds, dtype=torch.long),
            torch.as_tensor(comp, dtype=torch.long),
            torch.as_tensor(target, dtype=torch.float64),
            torch.from_numpy(column_mask(el == "H")))


def predict(elements, xyz, charges, net=None, bonds=None, implicit_h=None) -> np.ndarray:
    """Stage-2 Δρ coefficients (N, 42) (e·Å^l) for one molecule (numpy, no gradients)."""
    import torch

    net = net or load_net()
    feat, b, comp, target, mask = inputs(elements, xyz, charges, bonds, implicit_h)
    with torch.no_grad():
        c = net(feat, torch.as_tensor(np.asarray(xyz, np.float32)), b, comp, target, mask)
    return c.double().numpy()


# ----------------------------------------------------------------------------- density model
TRAINED = ml.TRAINED
"""Elements in the training data; others get no Δρ (IAM) with a warning."""


def terms(atoms, table: str = "electron") -> DensityTerms:
    """IAM Gaussians (N, 5) plus the stage-2 Δρ as a `FieldExtra` evaluated on the grid.

    The stage-2 Δρ depends on the geometry (bond directions), so it is predicted inside
    the grid part from the coordinate tensor (differentiable), not here; the network's
    fixed inputs (elements, charges, bonds, implicit hydrogens) are taken now. Electron
    table: its screened Mott–Bethe potential (`densrefine.density.ml.POTENTIAL`).
    """
    import functools
    import warnings

    a, b = iam.coefficients(atoms, table)
    el = np.array([str(e).strip().upper() for e in atoms.element])
    q, unknown = formal_charges(atoms)
    implicit = None if np.any(el == "H") else ml.implicit_hydrogens(atoms)
    if unknown:
        warnings.warn(f"ML density: charge of {len(unknown)} residue(s) not determined, treated "
                      f"as neutral: {', '.join(unknown[:8])}", stacklevel=2)
    ok = np.isin(el, list(TRAINED))
    if not ok.all():
        warnings.warn(f"ML density: {int((~ok).sum())} atom(s) of elements not in the training "
                      f"data ({', '.join(sorted(set(el[~ok])))}) use the IAM", stacklevel=2)
    idx = np.flatnonzero(ok)
    bonds = ml.bonds_from_distances(el[ok], np.asarray(atoms.xyz, float)[ok])
    log.info("ML density (stage 2, s,p,d,f e3nn, %s): %d atoms, %s, formal charge %+g",
             os.path.basename(WEIGHTS), len(el), "explicit hydrogens" if implicit is None else
             f"united atoms ({int(implicit.sum())} implicit H)", q.sum())
    spdf = {"index": idx, "elements": el[ok], "charges": q[ok], "bonds": bonds,
            "implicit_h": None if implicit is None else implicit[ok]}
    electron = table != "xray"
    extra = FieldExtra(functools.partial(delta_density, spdf=spdf, electron=electron),
                       len(el), ml.POTENTIAL if electron else None)
    return DensityTerms(a, b, table, extra, name=name)


_NET = {}


def _net():
    if "net" not in _NET:   # shipped weights, frozen: gradients flow to the inputs only
        _NET["net"] = load_net().requires_grad_(False)
    return _NET["net"]


def splat_sph(xyz, c, alpha, lcol, frame, cutoff=1e-5):
    """Grid values Σ_a Σ_k c_ak N_l(α_ak) S_lm(r − x_a) exp(−α_ak |r − x_a|²) (torch).

    Parameters
    ----------
    xyz : tensor (N, 3)
        Å.
    c, alpha : tensor (N, K)
        Coefficients and (blurred) exponents (Å⁻²; equal within a shell).
    lcol : ndarray (K,) int
        l of each column; the 2l+1 columns of a shell are consecutive, in e3nn m order.
    frame : `densrefine.types.GridFrame`
        Periodic frames wrap, others drop what falls outside.

    Each atom's sphere reaches where exp(−α_min r²) < ``cutoff`` (plus one voxel).
    Differentiable in xyz, c and alpha.
    """
    import torch
    from e3nn import o3

    dt, dev = xyz.dtype, xyz.device
    lcol = np.asarray(lcol)
    m = _m_index(lcol)
    start = np.flatnonzero(m == 0)
    shell = np.cumsum(m == 0) - 1
    sh_off = np.cumsum([0] + [2 * l + 1 for l in range(4)])
    col = torch.as_tensor(shell * 16 + sh_off[lcol] + m, device=dev)
    n1 = torch.as_tensor(ml_basis.sph_norm(lcol, 1.0), dtype=dt, device=dev)
    nrm = n1 * alpha ** (torch.as_tensor(lcol, dtype=dt, device=dev) + 1.5)   # N_l(α)
    cs = torch.zeros(len(xyz), len(start) * 16, dtype=dt, device=dev)
    cs[:, col] = c * nrm
    cs = cs.reshape(len(xyz), len(start), 16)                         # (N, shells, 16)
    a_sh = alpha[:, start]                                             # (N, shells)
    steps = torch.as_tensor(frame.steps, dtype=dt, device=dev)
    inv = torch.as_tensor(np.linalg.inv(frame.steps), dtype=dt, device=dev)
    origin = torch.as_tensor(frame.origin, dtype=dt, device=dev)
    shape = torch.as_tensor(frame.shape_xyz, device=dev)
    irreps = o3.Irreps("1x0e+1x1o+1x2e+1x3o")
    out = torch.zeros(int(np.prod(frame.shape)), dtype=dt, device=dev)
    # atoms sorted by their widest function; each chunk gets the sphere its widest one needs
    amin = alpha.detach().min(1).values.cpu().numpy() if alpha.numel() else np.ones(len(xyz))
    order = np.argsort(amin)                      # widest first: a chunk's first atom sets it
    vmax = float(frame.voxel_size.max())
    s = 0
    while s < len(order):
        radius = np.sqrt(np.log(1.0 / cutoff) / amin[order[s]]) + vmax
        off = _sphere_offsets(frame, radius, dev)
        sel = torch.as_tensor(order[s:s + max(1, int(2e5 // len(off)))], device=dev)
        s += len(sel)
        x = xyz[sel]
        idx = torch.round((x - origin) @ inv.T).long()[:, None, :] + off[None]   # (B, P, 3)
        d = origin + idx.to(dt) @ steps.T - x[:, None, :]
        if frame.periodic:
            idx = torch.remainder(idx, shape)
            ok = torch.ones(idx.shape[:2], dtype=torch.bool, device=dev)
        else:
            ok = ((idx >= 0) & (idx < shape)).all(-1)
            idx = torch.minimum(torch.clamp(idx, min=0), shape - 1)
        y = o3.spherical_harmonics(irreps, d, normalize=False, normalization="norm")
        rad = torch.exp(-a_sh[sel][:, None, :] * (d * d).sum(-1)[..., None])
        val = torch.einsum("bpm,bkm,bpk->bp", y, cs[sel], rad) * ok
        flat = (idx[..., 2] * shape[1] + idx[..., 1]) * shape[0] + idx[..., 0]
        out = out.index_add(0, flat.reshape(-1), val.reshape(-1))
    return out.reshape(frame.shape)


def _sphere_offsets(frame, radius, dev):
    """Integer grid offsets (P, 3) (x, y, z) within ``radius`` Å (+ one voxel) of a voxel."""
    import torch

    half = np.ceil(radius / frame.plane_spacing).astype(int)
    g = np.stack(np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij"), -1)
    g = g.reshape(-1, 3)
    g = g[np.linalg.norm(g @ frame.steps.T, axis=1) <= radius + frame.voxel_size.max()]
    return torch.as_tensor(g, device=dev)


def _m_index(lcol):
    """m index (0 … 2l) of each column of consecutive (2l+1)-blocks of equal l."""
    m, prev, k = [], None, 0
    for l in lcol:
        k = k + 1 if (l == prev and k < 2 * l) else 0
        m.append(k)
        prev = l
    return np.array(m, int)


def delta_density(xyz, b_iso, occ, frame, blur, cutoff, *, spdf, electron=True):
    """The predicted Δρ on ``frame`` (tensor), from all atoms' tensors (N, 3), (N,), (N,).

    The network runs on ``xyz`` (so the result is differentiable in the coordinates, the B
    factors and occupancies); each function is blurred analytically, α → 4π²/(4π²/α + B + blur)
    (`ml_basis.sph_blur`). ``electron``: in united-atom mode the implicit hydrogens' nuclei
    (+1 each on the parent) are added, as the potential needs them (the caller applies the
    Mott–Bethe filter). ``spdf``: the network inputs `terms` took.
    """
    import torch

    if len(spdf["index"]) == 0:
        return torch.zeros(tuple(frame.shape), dtype=xyz.dtype, device=xyz.device)
    idx = torch.as_tensor(spdf["index"], device=xyz.device)
    x, b, o = xyz[idx], b_iso[idx], occ[idx]
    c = delta_coefficients(x, spdf).to(xyz.dtype) * o[:, None]
    a0, _ = ml_basis.sph_table([e.capitalize() for e in spdf["elements"]])
    a0 = torch.as_tensor(a0, dtype=xyz.dtype, device=xyz.device)
    alpha = 4 * np.pi ** 2 / (4 * np.pi ** 2 / a0 + b[:, None] + blur)
    lcol = ml_basis.sph_columns()[0]
    if electron and spdf["implicit_h"] is not None:
        nuc = torch.as_tensor(spdf["implicit_h"], dtype=xyz.dtype, device=xyz.device)
        c = torch.cat([c, -(nuc * o)[:, None]], 1)
        alpha = torch.cat([alpha, (4 * np.pi ** 2 / (ml.NUCLEUS_WIDTH + b + blur))[:, None]], 1)
        lcol = np.concatenate([lcol, [0]])
    return splat_sph(x, c, alpha, lcol, frame, cutoff)


def delta_coefficients(xyz, spdf, net=None):
    """Stage-2 coefficients (N, 42) (torch, differentiable in ``xyz``) from `coefficients`'s
    ``.spdf`` inputs."""
    net = net or _net()
    feat, b, comp, target, mask = inputs(spdf["elements"], xyz, spdf["charges"], spdf["bonds"],
                                         spdf["implicit_h"])
    dt = next(net.parameters()).dtype
    return net(feat, xyz.to(dt), b.to(xyz.device), comp, target, mask)
