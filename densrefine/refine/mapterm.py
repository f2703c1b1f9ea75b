"""The map data term of ``fit``: −CC (or normalised least squares) over an atom mask.

A `MapTerm` owns a sub-box of the experimental map around the refined atoms (plus a
margin), the density terms of the atoms that contribute to the map term, and the current
blur level and mask. It implements the data-term interface of `densrefine.refine.data`
(`~densrefine.refine.data.DataTerm`): the optimiser only calls `MapTerm.target`;
`MapTerm.prepare` is called between macro cycles (servalcat ``LL_SPA`` pattern:
``update_fc`` / ``calc_target`` behind a generic loop), `MapTerm.cycle_stats` after each.

Which atoms count: hydrogens are excluded from the map term (at cryo-EM resolutions
their density is not resolved and they move with their parents through the
geometry restraints), and so are zero-occupancy atoms; both stay in the geometry.
"""
from __future__ import annotations

import logging

import numpy as np

from ..errors import input_error
from ..grid import bounding_corners, crop_spectrum, fft_frame, fourier_resample, inside, \
    reciprocal_s2, sub_box
from ..scoring.cc import cc_torch
from ..scoring.masks import atom_radius, sites_mask
from ..density.terms import DensityTerms
from ..simulate import default_blur, grid_extra, simulate_tensor
from ..simulate.api import atom_radii
from ..simulate.fourier import fourier_truncate, refmac_blur
from ..types import Grid, GridFrame

log = logging.getLogger("densrefine")

CUTOFF = 1e-3
"""Density level (table units) where each atom's cube ends in the map term's blurred model
map (coordinate stages). On 5NI1 at 3.2 Å (blur 41 Å²) 1e-3 instead of 1e-5 changes the
model map by ≤ 0.2 % of its peak (correlation 0.9999996) and cuts forward + backward
time by ~35 % (smaller windows)."""
CUTOFF_FOURIER = 1e-3
"""The same for the Fourier-truncated model map of the B stage (splatted with gemmi's
Refmac-compatible blur, then unblurred). On 5NI1 in EMD-3488 1e-3 instead of 1e-4, with
the B stage on the d/2.5 grid instead of the map's own 1.05 Å grid, took 61 instead of
96 ms per evaluation and gave the same cctbx CC_mask after a full fit (0.8905 deposited
start, 0.8893 from 1 Å errors)."""
EXTRA_FIXED = True
"""Hold a density model's grid part (the Coulomb potential of the ML Δρ by FFT, "ml", plus
the Poisson reaction field, "ml-solvent") as a fixed field between refreshes, so that an
evaluation costs what the IAM's does (issue 21: `fit --density ml` ≤ 1.5× the IAM fit; made
at every evaluation, the screened Δρ potential took 50–55 ms of forward + backward against
13–19 ms for the whole IAM target on 5NI1). The coordinate and B gradients then come from
the atoms' own (IAM) Gaussians and leave out the motion of Δρ and of the field; the
differentiable alternative leaves out the field's motion only. On a perturbed peptide
(0.3 Å) both miss the true directional slope by 5–70 % along random directions, and both
point downhill (the held one's slope along −g is 1.3× its prediction;
tests/unit/test_refine_mapterm.py). The objective steps a little at each refresh, which can
fall inside an optimiser call. False: made at every evaluation, differentiable."""
EXTRA_HOLD_SCREENED = True
"""With `EXTRA_FIXED`, hold the screened "ml" potential too (not only fields with a solvent
reaction field). Measured on 5NI1 (benchmarks/RESULTS.md, issue 21, third session)."""
EXTRA_REFRESH = 0.2
"""Å (rms over the map-term atoms): the fixed grid part is made again after this much motion."""
EXTRA_REFRESH_MAX = 0.5
"""Å: ... or once any one map-term atom has moved this far (a side chain flipping while the
rest stays put)."""
EXTRA_REFRESH_B = 5.0
"""Å² (rms over the map-term atoms): ... or after this much change of B (the B stage)."""
EXTRA_KEEP = 4
"""Held fields kept per map term, one per frame and blur (the blurred and the
Fourier-truncated model maps alternate in the B stage)."""
GAUSS_TOL = 1e-3
"""Largest relative error of a compressed form factor for s ≤ 1/d (see `compress_gaussians`)."""


def _take(sel, *tensors):
    """``t.index_select(0, sel)`` of each tensor: its backward is an ``index_add_``, far
    cheaper on CPU than advanced indexing's accumulating ``index_put_``."""
    return tuple(t.index_select(0, sel) for t in tensors)


def gauss_nodes(a, b, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n-node Gauss quadrature of the discrete measure Σ_k a_k δ(w − b_k), a_k > 0.

    Golub–Welsch: the Jacobi matrix of the measure's monic orthogonal polynomials
    (Stieltjes recurrence, exact for a discrete measure) has the nodes as eigenvalues
    and the weights as a_tot × (first eigenvector component)². The n Gaussians
    (weights, nodes) reproduce the moments Σ a_k b_k^m for m < 2n, so
    Σ_k a_k exp(−(b_k + B) s²/4) is matched up to a term of order (s²/4)^{2n}
    for any B (Golub & Welsch 1969, Math. Comp. 23, 221).

    Returns
    -------
    weights, nodes : ndarray, shape (n,)
        Amplitudes and widths (Å²).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mean = np.average(b, weights=a)
    scale = float(np.sqrt(np.average((b - mean) ** 2, weights=a))) or 1.0
    x = (b - mean) / scale
    p_prev, p, nrm_prev = np.zeros_like(x), np.ones_like(x), 1.0
    alpha, beta = [], []
    for j in range(n):
        nrm = float(np.sum(a * p * p))
        alpha.append(float(np.sum(a * x * p * p)) / nrm)
        beta.append(nrm / nrm_prev)
        p_prev, p, nrm_prev = p, (x - alpha[-1]) * p - (beta[-1] if j else 0.0) * p_prev, nrm
    off = np.sqrt(beta[1:])
    nodes, vec = np.linalg.eigh(np.diag(alpha) + np.diag(off, 1) + np.diag(off, -1))
    return a.sum() * vec[0] ** 2, nodes * scale + mean


def compress_gaussians(a, b, d: float, tol: float = GAUSS_TOL):
    """Fewer Gaussians per atom type, as sites of 2 Gaussians each.

    Each distinct row (a, b) of K table Gaussians is replaced by the fewest Gauss
    quadrature nodes (`gauss_nodes`) whose form factor Σ a exp(−b s²/4) stays within
    ``tol`` (relative) of the table's for s ≤ 1/d — the band the map term sees; rows
    with a non-positive amplitude, or needing all K, keep the table's Gaussians. The
    nodes are split over ⌈n/2⌉ sites of 2 Gaussians at the atom's position (a
    zero-amplitude pad fills an odd n). At 3.2 Å C, N, O, S take 2 nodes (one site:
    errors ≤ 7e-4) and Fe 3 (two sites), against 5 Gaussians per atom; on 5NI1 the
    map term's forward + backward took ~20 % less time (the window scatter/gather, which
    does not depend on the number of Gaussians, is the rest).

    Parameters
    ----------
    a, b : ndarray, shape (N, K)
        Table amplitudes and widths (Å²).
    d : float
        Resolution (Å).

    Returns
    -------
    site_atom : ndarray, shape (S,), int64
        Row of ``a`` each site belongs to.
    a2, b2 : ndarray, shape (S, 2)
        Site amplitudes and widths (Å²).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rows, inverse = np.unique(np.concatenate([a, b], 1), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    s2 = np.linspace(0.0, 1.0 / d**2, 64) / 4.0
    per_row = [_compress_row(r[:a.shape[1]], r[a.shape[1]:], s2, tol) for r in rows]
    site_atom, a2, b2 = [], [], []
    for i, (ra, rb) in enumerate(per_row):
        atoms = np.flatnonzero(inverse == i)
        for k in range(0, len(ra), 2):
            pa, pb = np.zeros(2), np.full(2, float(rb[k]))
            pa[:len(ra[k:k + 2])], pb[:len(rb[k:k + 2])] = ra[k:k + 2], rb[k:k + 2]
            site_atom.append(atoms)
            a2.append(np.repeat(pa[None], len(atoms), 0))
            b2.append(np.repeat(pb[None], len(atoms), 0))
    order = np.argsort(np.concatenate(site_atom), kind="stable")
    return (np.concatenate(site_atom)[order], np.concatenate(a2)[order],
            np.concatenate(b2)[order])


def _compress_row(a, b, s2, tol):
    ref = np.exp(-np.outer(s2, b)) @ a
    if np.all(a > 0):
        for n in range(1, len(a)):
            w, x = gauss_nodes(a, b, n)
            if np.max(np.abs(np.exp(-np.outer(s2, x)) @ w - ref) / np.abs(ref)) <= tol:
                return w, x  # nodes lie within [min b, max b]: widths stay valid
    return a, b


def site_surrogate(extra, site, b2, d: float):
    """Amplitudes on the sites' own Gaussians that stand in for a held grid part.

    For the screened Mott–Bethe potential of a per-atom Δρ ("ml": `GaussianExtra` with a
    `ScreenedCoulomb` filter) each atom's potential has the form factor
    ΔV_j(s) = K(s²) Σ_k c_jk exp(−w_k s²/4); it is fitted, by weighted least squares over
    s ≤ 1/d (weight s² exp(−B s²/2), B = `default_blur`), by the two Gaussians of the
    atom's first site (widths ``b2``, unchanged), both blurred by B_j + blur in the map as
    ΔV_j is. The map term adds these amplitudes to the sites while the grid part is held,
    so the coordinate and B gradients see (this smooth stand-in of) Δρ's potential move
    with the atoms at no extra cost; the held field takes the difference, so the map is
    exact whenever the field is made. None when there is nothing to stand in for
    (no grid part, no filter, or a solvent reaction field, whose bare kernel diverges at
    s = 0).

    Parameters
    ----------
    extra : GaussianExtra or None
        The grid part, rows as the map-term atoms.
    site : ndarray, shape (S,), int
        Row of ``extra`` each site belongs to (`compress_gaussians`).
    b2 : ndarray, shape (S, 2)
        Site widths (Å²).
    d : float
        Resolution (Å).

    Returns
    -------
    ndarray, shape (S, 2) or None
        Amplitudes (the table's units), zero on every site but each atom's first.
    """
    if extra is None or getattr(extra, "filter", None) is None or getattr(
            extra, "solvent", None) is not None or not hasattr(extra, "c"):
        return None
    c, w = np.asarray(extra.c, np.float64), np.asarray(extra.w, np.float64)
    site = np.asarray(site)
    first = np.flatnonzero(np.r_[True, site[1:] != site[:-1]])   # sites sorted by atom
    s2 = np.linspace(0.0, 1.0 / d**2, 64)
    sw = np.sqrt(s2 * np.exp(-default_blur(d) * s2 / 2))
    kern = np.asarray(extra.filter.kernel(s2), np.float64)
    out = np.zeros(np.shape(b2))
    keys = np.concatenate([np.asarray(b2, np.float64)[first], w[site[first]]], 1)
    rows, inverse = np.unique(keys, axis=0, return_inverse=True)
    for i, key in enumerate(rows):
        pick = first[inverse.reshape(-1) == i]
        basis = np.exp(-np.outer(s2, key[:2]) / 4) * sw[:, None]          # (64, 2)
        g = kern[:, None] * np.exp(-np.outer(s2, key[2:]) / 4) * sw[:, None]  # (64, K)
        proj = np.linalg.lstsq(basis, g, rcond=1e-10)[0]                  # (2, K)
        out[pick] = c[site[pick]] @ proj.T
    return out


class MapTerm:
    """−CC_mask (or LSQ) between the experimental sub-map and a simulated model map.

    Parameters
    ----------
    emap : Grid
        Experimental map (model frame, Å).
    resolution : float
        d (Å).
    xyz : ndarray, shape (N, 3)
        Starting positions of all atoms (Å).
    in_map : ndarray, shape (N,), bool
        Atoms that contribute to the map term (no H, occupancy > 0).
    moving : ndarray, shape (N,), bool
        Atoms being refined; the box is cut around them.
    terms : DensityTerms
        What the density model gives for all N atoms (`densrefine.density`); a pair
        (a, b) of scattering-factor Gaussians (N, K) is taken as IAM terms.
    cfg : MapConfig
    device, dtype : torch device and dtype
    d_atom : ndarray, shape (N,), optional
        Resolution (Å, ≥ ``resolution``) the map supports around each atom
        (`densrefine.scoring.local_resolution`); the blurred model map of the coordinate
        stages then gives each atom the blur of its own resolution, 4 d_atom² · factor
        instead of 4 d² · factor, so atoms in poorly resolved density are matched to
        smooth density and pulled gently. None: one resolution for all.
    """

    name = "map"

    def __init__(self, emap, resolution, xyz, in_map, moving, terms, cfg, device, dtype,
                 d_atom=None):
        import torch

        self.d, self.cfg, self.device, self.dtype = float(resolution), cfg, device, dtype
        core = xyz[moving & in_map] if (moving & in_map).any() else xyz[moving]
        self.grid, _ = sub_box(emap, core, cfg.margin + 2.0)
        spd = cfg.samples_per_d
        if spd and emap.is_orthogonal and np.prod(np.array(emap.voxel_size) * spd / self.d) < 0.8:
            v0, pad = self.grid.voxel_size.copy(), 2.0 * self.d
            if inside(bounding_corners(core, cfg.margin + 2.0 + pad), emap, pad=0.0).all():
                # taper a rim outside the box
                big = fourier_resample(sub_box(emap, core, cfg.margin + 2.0 + pad)[0],
                                       self.d / spd, pad)
            elif emap.covers_cell:                            # periodic: the whole cell
                big = fourier_resample(emap, self.d / spd, 0.0)
            else:
                big = None
            if big is not None:
                self.grid, _ = sub_box(big, core, cfg.margin + 2.0)
                log.info("Map term: map Fourier-resampled from %.3g to %.3g Å voxels (d/%.3g; "
                         "terms to 1/(2·spacing) kept), %d×%d×%d voxels", v0.max(),
                         self.grid.voxel_size.max(), spd, *self.grid.shape_xyz)
        if self.grid.values.size < np.asarray(emap.values).size:
            log.info("Map term: map cut to %d×%d×%d voxels around the refined atoms (margin "
                     "%.1f Å + 2 Å pad) out of %d×%d×%d", *self.grid.shape_xyz, cfg.margin,
                     *emap.shape_xyz)
        self.frame = GridFrame.from_grid(self.grid, periodic=False)
        near = inside(xyz, self.frame, pad=8.0 / float(self.frame.voxel_size.min()))
        self.atoms = np.flatnonzero(in_map & near)  # indices into the model
        if len(self.atoms) == 0:
            raise input_error(emap.path, "no atom with occupancy > 0 lies inside the map",
                              "check that model and map belong together")
        kw = {"device": device, "dtype": dtype}
        terms = DensityTerms.of(terms).select(self.atoms)
        self.extra = terms.extra             # grid part (ML density), or None
        self.atoms_t = torch.as_tensor(self.atoms, device=device)
        a, b = terms.a, terms.b
        site, a2, b2 = compress_gaussians(a, b, self.d)
        self.sites = torch.as_tensor(self.atoms[site], device=device)  # model index per site
        scale = None if d_atom is None else (np.maximum(np.asarray(d_atom, float), self.d)
                                             / self.d) ** 2
        self.site_scale = None if scale is None or np.all(scale[self.atoms[site]] == 1.0) else \
            torch.as_tensor(scale[self.atoms[site]][:, None], **kw)
        self.site_terms = DensityTerms(a2, b2, terms.table, name=terms.name)
        # the held grid part's stand-in on the sites' own Gaussians (`site_surrogate`)
        delta = site_surrogate(self.extra, site, b2, self.d)
        self.site_delta = None if delta is None else DensityTerms(delta, b2, terms.table,
                                                                  name=terms.name)
        self.site_terms_held = None if delta is None else DensityTerms(
            a2 + delta, b2, terms.table, name=terms.name)
        self.exp0 = torch.as_tensor(np.array(self.grid.values), **kw)
        self.exp0 = self.exp0 - self.exp0.mean()
        self.exp, self.mask, self.blur = self.exp0, None, default_blur(self.d)
        self.mask_full = None
        self.grid_full, self.table = emap, terms.table
        self.cur_frame = self.frame
        # the B stage's Fourier-truncated model map: its box is a P1 cell grown to FFT-friendly
        # sizes (67×68×58 → 72×72×60 on 5NI1 at d/2.5), cropped back before the target
        self.fft_frame = fft_frame(self.frame)
        self._all = (self.atoms, self.sites, self.site_terms, self.site_scale)
        log.info("Map term: target %s over an atom-radius mask, %d of %d atoms (no H, occ > 0); "
                 "%d×%d table Gaussians compressed to %d sites × 2 (Gauss quadrature, form "
                 "factors within %.0e to 1/d)",
                 "-CC" if cfg.target == "cc" else "normalised least squares with fitted scale",
                 len(self.atoms), len(xyz), len(a), a.shape[1], len(site), GAUSS_TOL)

    def restrict(self, subset=None) -> bool:
        """Limit the map term to the atoms in ``subset`` (bool, one per model atom).

        None restores all atoms. Returns False, changing nothing, when no map-term atom
        is in ``subset`` or the density model has per-atom extras (``--density ml``).
        Call `prepare` afterwards (the mask follows the atoms).
        """
        atoms, sites, site_terms, site_scale = self._all
        if subset is None:
            self.atoms, self.sites, self.site_terms, self.site_scale = self._all
            return True
        subset = np.asarray(subset, bool)
        if self.extra is not None or not subset[atoms].any():
            return False
        keep = np.flatnonzero(subset[sites.cpu().numpy()])
        self.atoms = atoms[subset[atoms]]
        self.sites = sites[keep]
        self.site_terms = site_terms.select(keep)
        self.site_scale = None if site_scale is None else site_scale[keep]
        return True

    def prepare(self, xyz, b_iso, factor: float) -> None:
        """Set blur B = 4 d² · ``factor`` (Å²), blur the experimental map by B − 4 d², new mask.

        A blurred map is band-limited near d·√factor: it is resampled (orthogonal grids:
        spectrum cropped, `crop_spectrum`; else every k-th voxel) so that 3 samples per
        d·√factor remain (1.6x fewer voxels than the d/2.5 grid at factor 2, 4.6x at
        factor 4; with 2.5 the factor-4 gradient lost accuracy on a small peptide,
        cosine 0.93 to the native grid's, `tests/unit/test_refine_mapterm.py`).
        """
        import torch

        base = default_blur(self.d)
        self.blur = base * float(factor)
        extra = self.blur - base
        sel = self.atoms
        r = self.cfg.mask_radius or atom_radius(self.d, float(np.mean(b_iso[sel])))
        r = max(r, float(np.sqrt((self.blur + float(np.mean(b_iso[sel]))) / (8 * np.pi**2)) * 2.5))
        self.mask_full = torch.as_tensor(sites_mask(xyz[sel], self.grid, r), device=self.device)
        self.radius = r
        fr = self.frame
        per_d = self.cfg.samples_per_d if factor <= 1.0 and self.cfg.samples_per_d else 3.0
        spacing = self.d * np.sqrt(factor) / per_d
        n = fr.shape_xyz
        m = np.minimum(n, np.ceil(n * fr.voxel_size / spacing - 1e-9).astype(int))
        if not fr.is_orthogonal:                       # integer stride
            k = max(1, int(spacing / fr.voxel_size.max()))
            m = -(-n // k)
        if extra > 0 or np.any(m < n):
            cell = fr.steps * n[None, :]
            f = torch.fft.rfftn(self.exp0)
            if extra > 0:
                f = f * torch.exp(-extra * reciprocal_s2(self.exp0.shape, cell, like=self.exp0) / 4)
            if fr.is_orthogonal:
                mzyx = tuple(int(v) for v in m[::-1])
                self.exp = torch.fft.irfftn(crop_spectrum(f, mzyx), s=mzyx) * float(
                    np.prod(m) / np.prod(n))
            else:
                self.exp = torch.fft.irfftn(f, s=self.exp0.shape)[::k, ::k, ::k].contiguous()
        else:
            self.exp = self.exp0
        if not fr.is_orthogonal:
            self.cur_frame = GridFrame(tuple(int(v) for v in m[::-1]), fr.origin, fr.steps * k,
                                       periodic=False)
            self.mask = self.mask_full[::k, ::k, ::k].contiguous()
        elif np.any(m < n):
            self.cur_frame = GridFrame(tuple(int(v) for v in m[::-1]), fr.origin,
                                       fr.steps * (n / m)[None, :], periodic=False)
            box = Grid.box(self.cur_frame.shape, self.cur_frame.voxel_size, fr.origin)
            self.mask = torch.as_tensor(sites_mask(xyz[sel], box, r), device=self.device)
        else:
            self.cur_frame, self.mask = fr, self.mask_full
        log.debug("map term: blur B=%.1f Å² (exp. map +%.1f Å²), mask radius %.2f Å, %d voxels, "
                  "grid %s (%.2f Å)", self.blur, extra, r, int(self.mask.sum()),
                  "×".join(str(int(v)) for v in m), float(self.cur_frame.voxel_size.max()))

    def model_map(self, xyz, b_iso, occ, fourier: bool = False):
        """Model map on the sub-box from full-model tensors (N, 3), (N,), (N,).

        ``fourier``: the Fourier-truncated map (terms with d > ``self.d``) on the map-term
        grid (`frame`), else the blurred map on the current (blur-dependent) grid.
        """
        sel = self.sites
        terms = self._terms()
        if fourier:
            fr = self.fft_frame
            nb = refmac_blur(float(b_iso[sel].detach().min()), float(fr.voxel_size.max()))

            def sites(t, *a):
                return simulate_tensor(*_take(sel, *a), t, fr, blur=nb, method="fourier",
                                       d_min=self.d, cutoff=CUTOFF_FOURIER)

            m = sites(terms, xyz, b_iso, occ)
            if self.extra is not None:
                m = m + self._extra_map(xyz, b_iso, occ, fr, nb, sites, lambda dv: (
                    fourier_truncate(dv, fr, self.d, unblur=nb)))
            nz, ny, nx = self.frame.shape
            return m[:nz, :ny, :nx]

        def sites(t, *a):
            return simulate_tensor(*_take(sel, *a), t, self.cur_frame, blur=self._site_blur(),
                                   method="blur", cutoff=CUTOFF, radius=self._radii(*a, t))

        m = sites(terms, xyz, b_iso, occ)
        if self.extra is not None:
            m = m + self._extra_map(xyz, b_iso, occ, self.cur_frame, self.blur, sites)
        return m

    def _extra_map(self, xyz, b_iso, occ, frame, blur, sites, post=None):
        """The density model's grid part (through ``post``, e.g. a Fourier truncation).

        A filtered one ("ml": the screened Δρ potential; "ml-solvent": the Δρ potential and
        the reaction field) is held as a fixed field per frame and blur (`EXTRA_FIXED`,
        `EXTRA_HOLD_SCREENED`), made again once the atoms have moved `EXTRA_REFRESH` Å rms
        or one of them `EXTRA_REFRESH_MAX` Å, or their B (rms) plus the blur changed
        `EXTRA_REFRESH_B` Å² since it was made. While held, the sites carry a differentiable stand-in of it
        (`site_surrogate`, added to their Gaussians by `_terms`), and the held field is the
        grid part minus that stand-in at the atoms' positions when made: the sum is exact
        when made, and the gradient sees the stand-in move with the atoms. ``sites(terms,
        xyz, b_iso, occ)`` makes the sites' map. Else differentiable, made at every
        evaluation.
        """
        import torch

        post = post or (lambda v: v)
        args = _take(self.atoms_t, xyz, b_iso, occ)
        if not self._holds_extra():
            return post(grid_extra(self.extra, *args, frame, blur, CUTOFF))
        x, b = args[0].detach(), args[1].detach()
        # the B stage's Fourier-truncated map splats with a blur that follows min(B) and
        # removes it again: a blur change counts like a change of every B
        key = (tuple(frame.shape), tuple(np.round(frame.origin, 4)),
               tuple(np.round(frame.voxel_size, 5)), post is None)
        cache = getattr(self, "_extra_cache", None)
        if cache is None:                        # None: nothing held (tests reset it so)
            cache = self._extra_cache = {}
        hit = cache.get(key)
        if hit is not None and hit[0].shape == x.shape:
            d2 = ((hit[0] - x) ** 2).sum(1)
            db = float(((hit[1] - b) ** 2).mean().sqrt()) + abs(hit[3] - float(blur))
            if (float(d2.mean().sqrt()) < EXTRA_REFRESH
                    and float(d2.max().sqrt()) < EXTRA_REFRESH_MAX and db < EXTRA_REFRESH_B):
                return hit[2]
        with torch.no_grad():
            v = post(grid_extra(self.extra, x, b, args[2].detach(), frame, blur, CUTOFF))
            if self.site_terms_held is not None:       # minus the stand-in, as the sites make it
                a = (xyz.detach(), b_iso.detach(), occ.detach())
                v = v - sites(self.site_terms_held, *a) + sites(self.site_terms, *a)
        cache.pop(key, None)
        while len(cache) >= EXTRA_KEEP:
            cache.pop(next(iter(cache)))
        cache[key] = (x.clone(), b.clone(), v, float(blur))
        return v

    def _holds_extra(self) -> bool:
        """Whether the grid part is held as a fixed field (`EXTRA_FIXED`)."""
        if not EXTRA_FIXED:
            return False
        return getattr(self.extra, "solvent", None) is not None or (
            EXTRA_HOLD_SCREENED and getattr(self.extra, "filter", None) is not None)

    def _site_blur(self):
        """Blur (Å²) of the coordinate stages' model map: one value, or per site (S, 1) at
        each atom's local resolution (``d_atom``)."""
        return self.blur if self.site_scale is None else self.blur * self.site_scale

    def _radii(self, xyz, b_iso, occ, terms=None):
        """Cutoff radii of the sites (``terms``, default `_terms`) at the current blur, cached
        while B stays the same tensor, unmodified (the coordinate stages: ~1 ms per
        evaluation on 5NI1)."""
        # the cache holds the B tensor and the sites themselves (not their addresses, which
        # a new tensor could reuse once the old one is freed)
        hit = getattr(self, "_radii_for", None)
        terms = self._terms() if terms is None else terms
        if hit is None or not (hit[0] is b_iso and hit[1] == b_iso._version
                               and hit[2] == self.blur and hit[3] is self.sites
                               and hit[4] is terms):
            sel = self.sites
            _, _, width = terms.components(xyz[sel], b_iso[sel], occ[sel], self._site_blur())
            self._radii_for = (b_iso, b_iso._version, self.blur, self.sites, terms)
            self._radii_val = atom_radii(terms.a, width, CUTOFF)
        return self._radii_val

    def _terms(self):
        """The sites' Gaussians: the density model's, plus the surrogate of the grid part
        while that is held (`site_surrogate`)."""
        if self.site_terms_held is not None and self._holds_extra():
            return self.site_terms_held
        return self.site_terms

    def target(self, xyz, b_iso, occ, fourier: bool = False, kind: str | None = None):
        """Map target (0-d tensor): −CC over the mask, or Σ(e − k m)²/Σe² (k fitted).

        ``kind`` ("cc" or "lsq") overrides ``cfg.target`` for this call.
        """
        m = self.model_map(xyz, b_iso, occ, fourier)
        e = self.exp0 if fourier else self.exp
        w = (self.mask_full if fourier else self.mask).to(m.dtype)
        if (kind or self.cfg.target) == "lsq":
            k = (w * e * m).sum() / ((w * m * m).sum() + 1e-30)
            return ((w * (e - k * m) ** 2).sum() / (w * e * e).sum()) - 1.0
        return -cc_torch(e, m, w)

    # ----------------------------------------------------------- data-term interface
    def cycle_stats(self, xyz, b_iso, occ, fourier: bool = False) -> dict:
        """Per-cycle record items: the blur and the CC of the map term being minimised."""
        import torch

        with torch.no_grad():
            cc = -float(self.target(xyz, b_iso, occ, fourier, kind="cc"))
        return {"blur": self.blur, "cc_mask_term": cc}

    def rotamer_view(self):
        """(values (nz, ny, nx), frame, mask) of the unblurred map box, for the χ1 scan."""
        return (self.exp0.detach().cpu().numpy(), self.frame,
                None if self.mask_full is None else self.mask_full.cpu().numpy())

    def mask_volume(self) -> float:
        """Volume (Å³) of the current full-grid mask."""
        return float(self.mask_full.sum()) * abs(float(np.linalg.det(self.frame.steps)))

    def finish(self, model) -> dict:
        """Extra stats blocks for the refined ``model`` (none for a single map)."""
        return {}


class WrappedMapTerm:
    """A data term built on a `MapTerm` (``self.map``): everything but what a subclass adds
    (per-cycle stats, the final stats blocks) is the map term's."""

    name = "map"

    def __init__(self, map_term: MapTerm):
        self.map = map_term
        self.d, self.table, self.grid_full = map_term.d, map_term.table, map_term.grid_full

    @property
    def atoms(self):
        return self.map.atoms

    @property
    def blur(self):
        return self.map.blur

    def prepare(self, xyz, b_iso, factor: float) -> None:
        self.map.prepare(xyz, b_iso, factor)

    def target(self, xyz, b_iso, occ, fourier: bool = False, kind: str | None = None):
        return self.map.target(xyz, b_iso, occ, fourier, kind)

    def restrict(self, subset=None) -> bool:
        return self.map.restrict(subset)

    def cycle_stats(self, xyz, b_iso, occ, fourier: bool = False) -> dict:
        return self.map.cycle_stats(xyz, b_iso, occ, fourier)

    def rotamer_view(self):
        return self.map.rotamer_view()

    def mask_volume(self) -> float:
        return self.map.mask_volume()

    def finish(self, model) -> dict:
        return self.map.finish(model)
