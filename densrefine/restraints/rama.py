"""Ramachandran restraints: −log of a fitted φ/ψ density, for low-resolution refinement.

At 3.5 Å and worse the map barely fixes backbone torsions; a restraint on (φ, ψ)
keeps the backbone in the regions that well-refined structures populate.

Torsions (`find_residues`): φ = C(i−1)–N–CA–C and ψ = N–CA–C–N(i+1) (IUPAC sign),
only for residues with a peptide link (C–N ≤ 2.0 Å, same chain) to both neighbours;
first conformer (altloc "" or "A") only.

Classes (MolProbity's order of precedence, Lovell et al. 2003, Proteins 50, 437):
Gly → "gly"; Pro with trans ω(i−1) (|CA(i−1)–C(i−1)–N–CA| > 90°) → "pro"; cis-Pro is
not restrained (too few in the training data; counted in the summary as ``n_cispro``);
a residue followed by Pro → "prepro"; everything else → "general".

Density per class: a mixture of bivariate von Mises distributions of the sine model
(Singh, Hnizdo & Demchuk 2002, Biometrika 89, 719),

    f_k(φ, ψ) = exp(κ1 cos(φ−μ) + κ2 cos(ψ−ν) + λ sin(φ−μ) sin(ψ−ν)) / C_k,

p(φ, ψ) = Σ_k w_k f_k (per rad²), fitted by EM to φ/ψ of the shared well-refined
models as in Mardia, Taylor & Subramaniam (2007, Biometrics 63, 505), by
`densrefine.restraints.rama_fit` (parameters, provenance and log C_k in
``rama_params.json``; nothing is taken from another program's tables).

Energy (`RamaTerm`), in the χ² units of the other restraints (Σ((x−x0)/σ)², i.e.
−2 log-likelihood):

    E = w · Σ_res −2 log((p + p_floor) / (p_max + p_floor)),

0 at the class's mode; p_floor = the class's "allowed" density level, so an outlier
feels at most E_max = 2 log((p_max + p_floor)/p_floor) and a weak pull towards the
allowed region (the top-out idea of `densrefine.restraints.ss`).

Classification (`classify`): "favored" inside the region of highest density that
holds 98 % of the fitted distribution's mass, "allowed" inside 99.95 %, else
"outlier" (MolProbity's definitions, applied to our density).
"""
from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from importlib import resources

import numpy as np

from .chains import peptide_links, residue_atoms

log = logging.getLogger("densrefine")

CLASSES = ("general", "gly", "pro", "prepro")
RES_AUTO = 3.5        # Å, "auto" switches the restraints on at this resolution and worse
WEIGHT = 3.0          # default rama_weight (χ² units; see the FitConfig docstring)
PARAMS_FILE = "rama_params.json"


def wanted(mode: str, resolution) -> bool:
    """Whether ``mode`` ("auto" | "on" | "off") switches the restraints on at d (Å)."""
    if mode == "auto":
        return resolution is not None and float(resolution) >= RES_AUTO
    return mode == "on"


# ----------------------------------------------------------------------------- residues

def dihedrals(xyz, idx) -> np.ndarray:
    """Torsion angles (n,) in degrees of atom quadruples ``idx`` (n, 4), IUPAC sign.

    atan2(|b1| b0·(b1×b2), (b0×b1)·(b1×b2)) with b_k = x_{k+1} − x_k (as
    ``gemmi.calculate_dihedral``; α-helix φ ≈ −60°).
    """
    x = np.asarray(xyz, np.float64)[np.asarray(idx, np.int64).reshape(-1, 4)]
    b0, b1, b2 = x[:, 1] - x[:, 0], x[:, 2] - x[:, 1], x[:, 3] - x[:, 2]
    n2 = np.cross(b1, b2)
    y = np.linalg.norm(b1, axis=1) * (b0 * n2).sum(1)
    return np.degrees(np.arctan2(y, (np.cross(b0, b1) * n2).sum(1)))


def dihedrals_torch(xyz, idx):
    """Torsion angles (n,) in radians, IUPAC sign (as `dihedrals`); torch, differentiable."""
    from .energy import dihedrals_deg

    return dihedrals_deg(xyz, idx) * (np.pi / 180.0)


@dataclass(frozen=True)
class RamaSet:
    """Residues with a defined (φ, ψ).

    Attributes
    ----------
    idx : ndarray (n, 5) int64
        Atom indices C(i−1), N, CA, C, N(i+1).
    cls : ndarray (n,) int64
        Index into `CLASSES`.
    keys : list of (chain, res_seq, icode, res_name)
    n_cispro : int
        cis-Pro residues left out.
    """

    idx: np.ndarray
    cls: np.ndarray
    keys: list
    n_cispro: int = 0

    def __len__(self) -> int:
        return len(self.idx)

    def phi_psi(self, xyz) -> np.ndarray:
        """(n, 2) φ, ψ in degrees at coordinates ``xyz`` (N, 3) Å."""
        if not len(self):
            return np.zeros((0, 2))
        return np.stack([dihedrals(xyz, self.idx[:, :4]), dihedrals(xyz, self.idx[:, 1:])], 1)

    def subset(self, keep) -> "RamaSet":
        keep = np.asarray(keep, bool)
        return RamaSet(self.idx[keep], self.cls[keep],
                       [k for k, f in zip(self.keys, keep) if f], self.n_cispro)

    def summary(self, xyz, params=None) -> dict:
        """Counts per class and favored/allowed/outlier (by `classify`) at ``xyz``."""
        params = params or load_params()
        out = {"n": len(self), "n_cispro": self.n_cispro}
        out.update({f"n_{c}": int(np.sum(self.cls == k)) for k, c in enumerate(CLASSES)})
        pp = self.phi_psi(xyz)
        lab = classify(pp, self.cls, params)
        for name in ("favored", "allowed", "outlier"):
            out[name] = int(np.sum(lab == name))
        out["favored_pct"] = 100.0 * out["favored"] / max(len(self), 1)
        out["outlier_pct"] = 100.0 * out["outlier"] / max(len(self), 1)
        out["energy"] = float(np.sum(residue_energy(pp, self.cls, params)))
        return out


def find_residues(model, moving=None) -> RamaSet:
    """Residues of ``model`` with φ and ψ, their atoms and class.

    Parameters
    ----------
    model : densrefine.Model
    moving : ndarray (N,) bool, optional
        Residues whose five atoms are all fixed are left out.

    Returns
    -------
    RamaSet

    Examples
    --------
    >>> from densrefine.build import ideal_peptide
    >>> rs = find_residues(ideal_peptide("AGAAA"))
    >>> len(rs), [CLASSES[c] for c in rs.cls]
    (3, ['gly', 'general', 'general'])
    """
    at = model.atoms
    rows = [(r, a) for r, a in residue_atoms(at, ("N", "CA", "C")) if len(a) == 3]
    if len(rows) < 3:
        return RamaSet(np.zeros((0, 5), np.int64), np.zeros(0, np.int64), [])
    n, ca, c = (np.array([a[k] for _, a in rows], np.int64) for k in ("N", "CA", "C"))
    xyz = np.asarray(at.xyz, np.float64)
    chain = np.asarray(at.chain).astype(str)[n]
    name = np.asarray(at.res_name).astype(str)[n]
    link = peptide_links(xyz, c, n, chain)                 # link[k]: residue k → k + 1
    mid = np.flatnonzero(link[:-1] & link[1:]) + 1
    idx = np.stack([c[mid - 1], n[mid], ca[mid], c[mid], n[mid + 1]], 1)
    omega = dihedrals(xyz, np.stack([ca[mid - 1], c[mid - 1], n[mid], ca[mid]], 1))
    cls = np.zeros(len(mid), np.int64)
    cls[name[mid + 1] == "PRO"] = CLASSES.index("prepro")
    cls[name[mid] == "PRO"] = CLASSES.index("pro")
    cls[name[mid] == "GLY"] = CLASSES.index("gly")
    keep = ~((name[mid] == "PRO") & (np.abs(omega) < 90.0))
    if moving is not None:
        keep &= np.asarray(moving, bool)[idx].any(1)
    keys = [(chain[k], int(at.res_seq[n[k]]), str(at.icode[n[k]]).strip(), name[k]) for k in mid]
    full = RamaSet(idx, cls, keys, int(np.sum((name[mid] == "PRO") & (np.abs(omega) < 90.0))))
    return full.subset(keep)


# ----------------------------------------------------------------------------- density

def load_params(path=None) -> dict:
    """Fitted parameters: {class: {"w", "mu", "nu", "k1", "k2", "lam", "log_norm" (K,) arrays,
    "log_p_max", "log_p_favored", "log_p_allowed" floats}, "meta": {...}} (angles in rad).

    Parameters
    ----------
    path : str, optional
        A file written by `densrefine.restraints.rama_fit`; default: the shipped
        ``rama_params.json`` (read once, then cached; treat the result as read-only).
    """
    if path is None:
        return _shipped_params()
    return _read_params(path)


@functools.lru_cache(maxsize=1)
def _shipped_params() -> dict:
    return _read_params(None)


def _read_params(path) -> dict:
    if path is None:
        text = resources.files("densrefine.restraints").joinpath(PARAMS_FILE).read_text()
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    raw = json.loads(text)
    where = path or resources.files("densrefine.restraints").joinpath(PARAMS_FILE)
    out = {"meta": raw.get("meta", {}), "path": str(where)}
    for c in CLASSES:
        p = raw["classes"][c]
        out[c] = {k: (np.asarray(v, np.float64) if isinstance(v, list) else float(v))
                  for k, v in p.items() if k != "n_train"}
        out[c]["n_train"] = p.get("n_train")
    return out


def log_density_np(phi, psi, comp) -> np.ndarray:
    """log p(φ, ψ) (per rad²) of one class's mixture ``comp`` at angles in radians (numpy)."""
    phi, psi = np.asarray(phi, np.float64)[..., None], np.asarray(psi, np.float64)[..., None]
    a, b = phi - comp["mu"], psi - comp["nu"]
    e = (np.log(comp["w"]) - comp["log_norm"] + comp["k1"] * np.cos(a) + comp["k2"] * np.cos(b)
         + comp["lam"] * np.sin(a) * np.sin(b))
    m = e.max(-1, keepdims=True)
    return (m + np.log(np.exp(e - m).sum(-1, keepdims=True)))[..., 0]


def residue_energy(phi_psi_deg, cls, params) -> np.ndarray:
    """Unweighted energy (n,) −2 log((p + p_floor)/(p_max + p_floor)) per residue (numpy)."""
    pp = np.radians(np.asarray(phi_psi_deg, np.float64).reshape(-1, 2))
    out = np.zeros(len(pp))
    for k, c in enumerate(CLASSES):
        m = np.asarray(cls) == k
        if m.any():
            p = params[c]
            lp = np.logaddexp(log_density_np(pp[m, 0], pp[m, 1], p), p["log_p_allowed"])
            out[m] = -2.0 * (lp - np.logaddexp(p["log_p_max"], p["log_p_allowed"]))
    return out


def classify(phi_psi_deg, cls, params=None) -> np.ndarray:
    """"favored" / "allowed" / "outlier" (n,) of (φ, ψ) degrees (n, 2) in classes ``cls`` (n,)."""
    params = params or load_params()
    pp = np.radians(np.asarray(phi_psi_deg, np.float64).reshape(-1, 2))
    out = np.full(len(pp), "outlier", dtype="<U8")
    for k, c in enumerate(CLASSES):
        m = np.asarray(cls) == k
        if m.any():
            lp = log_density_np(pp[m, 0], pp[m, 1], params[c])
            out[m] = np.where(lp >= params[c]["log_p_favored"], "favored",
                              np.where(lp >= params[c]["log_p_allowed"], "allowed", "outlier"))
    return out


# ----------------------------------------------------------------------------- energy

class RamaTerm:
    """Differentiable Ramachandran energy of a `RamaSet` (torch, see the module docstring).

    Parameters
    ----------
    rama : RamaSet
    device, dtype : torch device and dtype (float32 default)
    fixed : ndarray (N,) bool, optional
        Atoms held fixed (no gradient).
    weight : float
        w, multiplies the −2 log-density sum.
    params : dict, optional
        `load_params` output (default: the shipped file).

    Examples
    --------
    >>> import torch
    >>> from densrefine.build import ideal_peptide, STRAND
    >>> m = ideal_peptide("A" * 6)                       # α-helix
    >>> t = RamaTerm(find_residues(m), "cpu", torch.float64, weight=1.0)
    >>> bool(t.energy(torch.tensor(m.atoms.xyz)) < 4.0)   # 4 residues near the α mode
    True
    >>> s = ideal_peptide("A" * 6, phi_psi=(60.0, -120.0))  # a disallowed region
    >>> bool(t.energy(torch.tensor(s.atoms.xyz)) > 20.0)
    True
    """

    def __init__(self, rama: RamaSet, device="cpu", dtype=None, *, fixed=None,
                 weight: float = WEIGHT, params=None):
        import torch

        self.rama, self.weight = rama, float(weight)
        self.params = params or load_params()
        self.dtype = dtype or torch.float32
        t = lambda a, dt=self.dtype: torch.as_tensor(np.asarray(a), dtype=dt,  # noqa: E731
                                                     device=device)
        self.idx = t(np.asarray(rama.idx, np.int64).reshape(-1, 5), torch.int64)
        cls = np.asarray(rama.cls, np.int64)
        # one padded (n_classes, K_max) table; residue r uses row cls[r]
        kmax = max(len(self.params[c]["w"]) for c in CLASSES)
        tab = {k: np.zeros((len(CLASSES), kmax)) for k in ("mu", "nu", "k1", "k2", "lam")}
        tab["logc"] = np.full((len(CLASSES), kmax), -np.inf)
        for j, c in enumerate(CLASSES):
            p, nk = self.params[c], len(self.params[c]["w"])
            for k in ("mu", "nu", "k1", "k2", "lam"):
                tab[k][j, :nk] = p[k]
            tab["logc"][j, :nk] = np.log(p["w"]) - p["log_norm"]
        self.tab = {k: t(v[cls]) for k, v in tab.items()}          # (n, K_max) each
        lf = np.array([self.params[c]["log_p_allowed"] for c in CLASSES])[cls]
        lm = np.array([self.params[c]["log_p_max"] for c in CLASSES])[cls]
        self.log_floor, self.log_top = t(lf), t(np.logaddexp(lm, lf))
        self.fixed = None if fixed is None else torch.as_tensor(np.asarray(fixed, bool),
                                                                device=device)

    def phi_psi(self, xyz):
        """(n, 2) φ, ψ in radians (torch, differentiable)."""
        import torch

        return torch.stack([dihedrals_torch(xyz, self.idx[:, :4]),
                            dihedrals_torch(xyz, self.idx[:, 1:])], 1)

    def residue_energies(self, xyz):
        """(n,) unweighted −2 log((p + p_floor)/(p_max + p_floor)) per residue."""
        import torch

        pp = self.phi_psi(xyz)
        tb = self.tab
        a, b = pp[:, :1] - tb["mu"], pp[:, 1:] - tb["nu"]
        e = tb["logc"] + tb["k1"] * torch.cos(a) + tb["k2"] * torch.cos(b) \
            + tb["lam"] * torch.sin(a) * torch.sin(b)
        lp = torch.logaddexp(torch.logsumexp(e, 1), self.log_floor)
        return -2.0 * (lp - self.log_top)

    def energy(self, xyz):
        """w · Σ residue energies; a 0-d tensor of ``xyz``'s dtype."""
        import torch

        if len(self.idx) == 0:
            return xyz.sum() * 0.0
        x = xyz if self.fixed is None else torch.where(self.fixed[:, None], xyz.detach(), xyz)
        return self.weight * self.residue_energies(x).sum()
