"""Q-score: how well each atom's map neighbourhood looks like a Gaussian.

Pintilie et al. 2020 (Nat Methods 17, 328), as in the reference implementation (MapQ,
github.com/gregdp/mapq) and jqscore: for each non-hydrogen atom,

* the map value at the atom (r = 0) counts ``num_pts`` times;
* on shells r = d_rad, 2 d_rad, …, to_rad (0.1 … 2.0 Å for σ < 1 Å), ``num_pts`` points
  of a Saff–Kuijlaars spiral are placed; points closer than 0.9 r to another
  non-hydrogen atom are dropped, and the shell is retried with num_pts + 2, + 4, … points
  (up to ``max_retries`` tries) until at least ``num_pts`` remain; the remaining points of
  the accepted (or last) try are used;
* the reference profile is g(r) = A exp(−r² / 2σ²) + B with A = maxD − minD, B = minD,
  maxD = min(mean + 10 sd, max) and minD = max(mean − sd, min) of the whole map;
* Q = Pearson correlation of all map values with their g(r).

Map values are trilinear interpolations (0 outside the box). Per residue: the mean Q of
its heavy atoms; overall: the mean over atoms. σ = 0.6 Å is the paper's value (the EMDB
reports now use 0.4 Å; pass ``sigma``). MapQ shifts the map origin to its own rounding
(jqscore's ``mapq_compat``); this implementation does not.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("densrefine")

SIGMA = 0.6
"""Å, width of the reference Gaussian (Pintilie et al. 2020)."""


@dataclass(frozen=True)
class QScoreResult:
    """Per-atom and per-residue Q-scores.

    Attributes
    ----------
    atom_index : ndarray (n,) int64
        Indices (into the model's atoms) of the scored heavy atoms.
    q : ndarray (n,) float64
        Q-score per atom, in [−1, 1].
    residues : list of (chain, res_seq, icode, res_name)
    q_residue : ndarray (n_res,) float64
        Mean Q of each residue's heavy atoms.
    sigma : float
        Å.
    """

    atom_index: np.ndarray
    q: np.ndarray
    residues: list
    q_residue: np.ndarray
    sigma: float

    def summary(self, n_worst: int = 10) -> dict:
        """Mean Q over atoms, per chain, and the lowest residues (see `ValidationReport`)."""
        order = np.argsort(self.q_residue)[:n_worst]
        chains: dict = {}
        for key, q in zip(self.residues, self.q_residue):
            chains.setdefault(key[0], []).append(q)
        return {"q_mean": round(float(np.mean(self.q)), 4) if len(self.q) else None,
                "sigma": self.sigma, "n_atoms": int(len(self.q)),
                "chains": {c: round(float(np.mean(v)), 4) for c, v in chains.items()},
                "lowest": [f"{c} {rn} {s}{i} {q:.3f}" for (c, s, i, rn), q
                           in zip([self.residues[k] for k in order], self.q_residue[order])]}


def sphere_directions(n: int) -> np.ndarray:
    """(n, 3) unit vectors on the Saff–Kuijlaars spiral (as MapQ's ``SpherePts``)."""
    if n == 1:
        return np.array([[0.0, 0.0, 1.0]])
    k = np.arange(1, n + 1, dtype=np.float64)
    h = np.clip(-1.0 + 2.0 * (k - 1) / (n - 1), -1.0, 1.0)
    den = np.sqrt(np.maximum(0.0, n * (1.0 - h * h)))
    inc = np.where(den > 0, 3.6 / np.where(den > 0, den, 1.0), 0.0)
    inc[0] = 0.0
    theta = np.cumsum(inc) % (2.0 * np.pi)
    theta[-1] = 0.0
    s = np.sin(np.arccos(h))
    return np.stack([s * np.cos(theta), s * np.sin(theta), h], 1)


def _sampler(emap):
    from scipy.ndimage import map_coordinates

    v = np.asarray(emap.values, np.float64)
    frame = emap.frame

    def sample(xyz):
        idx = frame.xyz_to_index(np.asarray(xyz, np.float64).reshape(-1, 3))
        return map_coordinates(v, idx[:, ::-1].T, order=1, mode="constant", cval=0.0)
    return sample


def _neighbours(xyz, reach):
    """(n, K) indices of the other atoms within ``reach`` Å, nearest first, and their
    distances (padding: index n, distance inf)."""
    from scipy.spatial import cKDTree

    lists = cKDTree(xyz).query_ball_point(xyz, reach)
    k = max(max((len(x) for x in lists), default=1) - 1, 1)
    idx = np.full((len(xyz), k), len(xyz), np.int64)
    dist = np.full((len(xyz), k), np.inf)
    for i, x in enumerate(lists):
        x = np.array([j for j in x if j != i], np.int64)
        d = np.linalg.norm(xyz[x] - xyz[i], axis=1) if len(x) else np.zeros(0)
        o = np.argsort(d)
        idx[i, :len(x)], dist[i, :len(x)] = x[o], d[o]
    return idx, dist


def _shell_sums(xyz_pad, nbr, sample, r, v0, num_pts, max_retries):
    """Count, Σ(d − d0), Σ(d − d0)² per atom of one shell of radius r (retry scheme)."""
    import torch

    nbr, ndist = nbr
    n = len(nbr)
    cnt, s1, s2 = np.zeros(n), np.zeros(n), np.zeros(n)
    todo = np.arange(n)
    lim2 = (0.9 * r) ** 2
    kr = int((ndist < 1.9 * r).sum(1).max())   # only atoms within 1.9 r can come within 0.9 r
    nbr = nbr[:, :max(kr, 1)]
    for k in range(max_retries):
        if len(todo) == 0:
            break
        m = num_pts + 2 * k
        pts = xyz_pad[todo, None, :] + r * sphere_directions(m)[None]          # (u, m, 3)
        if kr == 0:
            ok = np.ones(pts.shape[:2], bool)
        else:
            d = torch.cdist(torch.from_numpy(pts.astype(np.float32)),
                            torch.from_numpy(xyz_pad[nbr[todo]].astype(np.float32)))
            ok = (d.amin(2) ** 2 >= lim2).numpy()                              # (u, m)
        done = (ok.sum(1) >= num_pts) | (k == max_retries - 1)
        a, p = np.nonzero(ok & done[:, None])
        if len(a):
            vals = sample(pts[a, p]) - v0[todo[a]]
            cnt += np.bincount(todo[a], minlength=n)
            s1 += np.bincount(todo[a], vals, minlength=n)
            s2 += np.bincount(todo[a], vals * vals, minlength=n)
        todo = todo[~done]
    return cnt, s1, s2


def qscore(model, emap, sigma: float = SIGMA, num_pts: int = 8, to_rad=None, d_rad=None,
           max_retries: int = 50) -> QScoreResult:
    """Q-scores of the heavy atoms of ``model`` in ``emap`` (module docstring).

    Parameters
    ----------
    model : densrefine.Model
    emap : densrefine.Grid
        The map (values in any units; A and B follow the map's own statistics).
    sigma : float
        Width of the reference Gaussian, Å.
    num_pts : int
        Points per shell.
    to_rad, d_rad : float, optional
        Outer shell radius and shell step, Å (default 2.0 / 0.1 for σ < 1 Å, else 6.0 / 0.5).
    max_retries : int
        Tries per shell.

    Returns
    -------
    QScoreResult
    """
    to_rad = to_rad or (2.0 if sigma < 1.0 else 6.0)
    d_rad = d_rad or (0.1 if sigma < 1.0 else 0.5)
    at = model.atoms
    heavy = np.flatnonzero(~np.asarray(at.is_hydrogen))
    xyz = np.asarray(at.xyz, np.float64)[heavy]
    vals = np.asarray(emap.values, np.float64)
    mean, sd = vals.mean(), vals.std()
    max_d, min_d = min(mean + 10 * sd, vals.max()), max(mean - sd, vals.min())
    a_amp, b_off = max_d - min_d, min_d
    sample = _sampler(emap)
    nbr = _neighbours(xyz, 1.9 * to_rad)
    xyz_pad = np.vstack([xyz, [[1e6, 1e6, 1e6]]])
    v0 = sample(xyz)
    radii = np.arange(d_rad, to_rad + 1e-6, d_rad)
    g = a_amp * np.exp(-0.5 * (radii / sigma) ** 2) + b_off - (a_amp + b_off)   # relative to g(0)
    n_tot = np.full(len(xyz), float(num_pts))
    sum_d, sum_dd = np.zeros(len(xyz)), np.zeros(len(xyz))
    sum_h, sum_hh, sum_dh = np.zeros(len(xyz)), np.zeros(len(xyz)), np.zeros(len(xyz))
    for r, h in zip(radii, g):
        c, s1, s2 = _shell_sums(xyz_pad, nbr, sample, r, v0, num_pts, max_retries)
        n_tot += c
        sum_d += s1
        sum_dd += s2
        sum_h += c * h
        sum_hh += c * h * h
        sum_dh += s1 * h
    cov = sum_dh - sum_d * sum_h / n_tot
    var = (sum_dd - sum_d**2 / n_tot) * (sum_hh - sum_h**2 / n_tot)
    q = np.clip(np.where(var > 0, cov / np.sqrt(np.maximum(var, 1e-300)), 0.0), -1.0, 1.0)
    res = np.asarray(at.res_index)[heavy]
    uniq, inv = np.unique(res, return_inverse=True)
    q_res = np.bincount(inv, q) / np.bincount(inv)
    first = heavy[np.searchsorted(res, uniq)]
    keys = [(str(at.chain[i]), int(at.res_seq[i]), str(at.icode[i]).strip(), str(at.res_name[i]))
            for i in first]
    log.info("Q-score (Pintilie et al. 2020; σ = %.2f Å, shells %.1f–%.1f Å, %d points): "
             "mean %.3f over %d atoms", sigma, d_rad, to_rad, num_pts,
             float(q.mean()) if len(q) else float("nan"), len(q))
    return QScoreResult(heavy, q, keys, q_res, float(sigma))
