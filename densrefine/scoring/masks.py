"""Masks for map–model scores: the molecular (bulk-solvent style) mask, voxels around
atom sites, and the automatic atom radius of cctbx.

All masks are boolean arrays on the map's grid, shape (nz, ny, nx) like `Grid.values`.
The map box is treated as a P1 unit cell of its own (what cctbx's map_model_manager
does after shifting the box origin to 0), so the molecular mask is periodic across the
box faces; the atom-radius masks are not periodic by default (a voxel on the far side
of the box is not near the atom), see `site_voxels`.

References
----------
Afonine, P. V. et al. (2018). New tools for the analysis and validation of cryo-EM maps
and atomic models. Acta Cryst. D74, 814–840 (CC_mask, atom radius).
Jiang, J.-S. & Brünger, A. T. (1994). J. Mol. Biol. 243, 100–115 (flat solvent mask with
probe and shrink radii, as in cctbx ``mmtbx.masks``).
"""
from __future__ import annotations

import logging

import numpy as np

from ..grid import box_cell
from ..types import Grid

log = logging.getLogger("densrefine")

SOLVENT_RADIUS = 1.1
"""Probe radius (Å) of the molecular mask, cctbx ``mmtbx.masks`` default."""
SHRINK_RADIUS = 0.9
"""Shrink-truncation radius (Å) of the molecular mask, cctbx default."""


# ------------------------------------------------------------------ molecular mask
def molecular_mask(xyz, element, grid: Grid, *, solvent_radius: float = SOLVENT_RADIUS,
                   shrink_radius: float = SHRINK_RADIUS) -> np.ndarray:
    """Molecular (bulk-solvent style) mask of a model on the map's box.

    The mask cctbx's ``mmtbx.maps.correlation.five_cc`` uses for CC_mask
    (``mmtbx.masks.mask_from_xray_structure``): a voxel is inside when it is within
    ``r_vdW + solvent_radius`` of an atom and not within ``shrink_radius`` of a voxel
    outside all such spheres. Radii are cctbx's van der Waals radii
    (``cctbx.eltbx.van_der_waals_radii``); all atoms count, hydrogens and zero-occupancy
    atoms included (as in cctbx). The box is its own periodic P1 cell. Computed with
    ``gemmi.SolventMasker(gemmi.AtomicRadiiSet.Cctbx)``, which reproduces cctbx's mask
    voxel for voxel on the test maps.

    Parameters
    ----------
    xyz : array_like, shape (N, 3), float
        Atom positions in the model frame, Å.
    element : array_like, shape (N,), str
        Element symbols.
    grid : Grid
        The map whose box and sampling the mask follows.
    solvent_radius, shrink_radius : float
        Probe and shrink-truncation radii, Å (cctbx defaults 1.1 and 0.9).

    Returns
    -------
    ndarray, shape (nz, ny, nx), bool
        True inside the molecule.
    """
    import gemmi

    xyz = np.asarray(xyz, float).reshape(-1, 3)
    cell = box_cell(grid)
    nx, ny, nz = grid.shape_xyz
    g = gemmi.FloatGrid(int(nx), int(ny), int(nz))
    g.set_unit_cell(gemmi.UnitCell(*cell.parameters))
    g.spacegroup = gemmi.SpaceGroup("P 1")
    masker = gemmi.SolventMasker(gemmi.AtomicRadiiSet.Cctbx)
    masker.rprobe, masker.rshrink = float(solvent_radius), float(shrink_radius)
    masker.ignore_hydrogen = False
    masker.ignore_zero_occupancy_atoms = False
    masker.island_min_volume = 0.0
    masker.put_mask_on_float_grid(g, _gemmi_model(xyz - grid.origin, element))
    return np.array(g, copy=False).transpose(2, 1, 0) < 0.5  # gemmi: 0 = molecule


def _gemmi_model(xyz, element):
    """A throw-away gemmi.Model holding bare atoms (position + element) for masking."""
    import gemmi

    res = gemmi.Residue()
    res.name = "UNK"
    atom = gemmi.Atom()
    atom.occ = 1.0
    for p, e in zip(xyz, element):
        atom.pos = gemmi.Position(*p)
        atom.element = gemmi.Element(str(e) or "X")
        res.add_atom(atom)
    chain = gemmi.Chain("A")
    chain.add_residue(res)
    model = gemmi.Model(1)
    model.add_chain(chain)
    return model


# -------------------------------------------------------------- voxels around sites
def site_voxels(xyz, grid: Grid, radius: float, *, periodic: bool = False,
                chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Voxels within ``radius`` of each site, as (site, voxel) index pairs.

    The same test as cctbx ``maptbx.grid_indices_around_sites``: a voxel belongs to a
    site when its centre is at distance <= ``radius`` (Å).

    Parameters
    ----------
    xyz : array_like, shape (N, 3), float
        Site positions in the model frame, Å.
    grid : Grid
        Map whose voxels are enumerated.
    radius : float
        Sphere radius, Å.
    periodic : bool
        Wrap voxel indices around the box as cctbx does (the box as a P1 cell). The
        default False drops voxels that fall outside the box instead.
    chunk : int
        Sites per vectorised batch (memory ~ chunk × (2r/voxel + 2)² × 64 bytes on
        orthogonal grids, chunk × (2r/voxel + 2)³ × 64 bytes otherwise).

    Returns
    -------
    site : ndarray, shape (M,), int64
        Index of the site of each pair, non-decreasing.
    voxel : ndarray, shape (M,), int64
        Flat C-order index into ``grid.values`` ((k·ny + j)·nx + i). On orthogonal
        grids the pairs of a site come as runs of consecutive voxels along x (rows in
        increasing (k, j) offset order); callers should treat them as a set.
    """
    xyz = np.asarray(xyz, float).reshape(-1, 3)
    sites, voxels = [], []
    for s0, u, steps, rng, n in _site_batches(xyz, grid, radius, chunk):
        find = _near_diagonal if _is_diagonal(steps) else _near_general
        ci, flat = find(u, steps, rng, n, radius, periodic)
        sites.append(ci + s0)
        voxels.append(flat)
    if not sites:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(sites).astype(np.int64), np.concatenate(voxels).astype(np.int64)


def _is_diagonal(steps: np.ndarray) -> bool:
    return bool(np.allclose(steps, np.diag(np.diag(steps)), rtol=0, atol=1e-12))


def _site_batches(xyz, grid: Grid, radius: float, chunk: int):
    """Yield (first site, fractional grid indices (c, 3), steps, offset ranges, shape_xyz)."""
    steps = grid.frame.steps
    inv = np.linalg.inv(steps)
    half = np.ceil(radius * np.linalg.norm(inv, axis=1)).astype(int) + 1
    rng = [np.arange(-h + 1, h + 1) for h in half]
    n = np.asarray(grid.shape_xyz, np.int64)
    for s0 in range(0, len(xyz), chunk):
        yield s0, (xyz[s0:s0 + chunk] - grid.origin) @ inv.T, steps, rng, n


def _row_intervals(u, steps, rng, n, radius, periodic):
    """Orthogonal grid: per site and (z, y) row, the x-interval of voxels within radius.

    The distance test is evaluated exactly as ``(dz² + dy²) + dx² <= radius²`` with
    ``d = step · (g − u)`` in float64 (the order of the brute-force broadcast). It is
    monotone in |g − u|, so the accepted x of a row form one interval, whose ends are
    estimated with a square root and then corrected with that exact test: the voxel set
    is bit-for-bit the brute-force one.

    Returns
    -------
    ci : ndarray (R,), int64
        Site (within ``u``) of each row, non-decreasing.
    row, lo, hi : ndarray (R,), float64 (integer-valued)
        Row index ``k·ny + j`` and inclusive x range with 0 <= lo <= nx and
        lo − 1 <= hi < nx: rows with no voxel have ``hi = lo − 1`` (periodic intervals
        that cross the box face are split in two).
    """
    rr = radius * radius
    gy, d2y = _axis_candidates(u[:, 1], steps[1, 1], rng[1], n[1], radius, periodic)
    gz, d2z = _axis_candidates(u[:, 2], steps[2, 2], rng[2], n[2], radius, periodic)
    lz, ly = gz.shape[1], gy.shape[1]
    a2 = d2z[:, :, None] + d2y[:, None, :]  # (c, Lz, Ly): dz² + dy² per row
    idx = np.flatnonzero(a2 <= rr)
    a2 = a2.ravel()[idx]
    ci, cz = idx // (lz * ly), idx // ly  # cz = ci·Lz + kz
    row = (gz * n[1]).ravel()[cz] + gy.ravel()[ci * ly + (idx - cz * ly)]
    ux = np.ascontiguousarray(u[:, 0])[ci]
    sx = steps[0, 0]

    def ok(x, i):
        if i is None:
            return a2 + (sx * (x - ux)) ** 2 <= rr
        return a2[i] + (sx * (x - ux[i])) ** 2 <= rr

    centre = np.floor(ux + 0.5)  # the nearest voxel has the smallest dx²
    t = np.sqrt(rr - a2) / sx
    lo = _fix_end(ok, np.minimum(np.ceil(ux - t), centre), -1.0, centre)
    hi = _fix_end(ok, np.maximum(np.floor(ux + t), centre), 1.0, centre)
    x0 = np.floor(ux)  # the brute force checks only x0 + rng[0]
    lo, hi = np.maximum(lo, x0 + rng[0][0]), np.minimum(hi, x0 + rng[0][-1])
    if periodic:
        hi = np.maximum(hi, lo - 1)
        return _wrap_rows(ci, row, lo, hi, n[0])
    lo = np.clip(lo, 0, n[0])
    return ci, row, lo, np.maximum(np.minimum(hi, n[0] - 1), lo - 1)


def _axis_candidates(u, step, rng, n, radius, periodic):
    """Voxel indices g (c, L) along one axis that can be within ``radius``, and (step·(g−u))².

    Only the L = floor(2r/step) + 2 indices from floor(u − r/step) can be (a 1e-9 voxel
    guard covers rounding); those outside the brute force's candidates ``floor(u) + rng``
    (or, not periodic, outside the box) get an infinite distance. Periodic: g is wrapped.
    """
    w = radius / step
    first = np.floor(u - w - 1e-9)
    g = first[:, None] + np.arange(int(np.floor(2 * w + 2e-9)) + 2)[None, :]
    d2 = (step * (g - u[:, None])) ** 2  # integer-valued float g: as with int64 g
    off = g - np.floor(u)[:, None]
    out = (off < rng[0]) | (off > rng[-1])
    if periodic:
        g = np.mod(g, n)
    else:
        out |= (g < 0) | (g >= n)
    d2[out] = np.inf
    return g, d2


def _fix_end(ok, x, step, centre):
    """Move an interval end ``x`` outwards (``step``) while accepted, inwards while not.

    ``x`` starts on the outer side of (or at) ``centre``, the voxel nearest the site;
    a row whose centre is rejected ends with ``x`` one step past the centre (empty).
    ``ok(x, i)`` tests the rows ``i`` (all rows for ``i=None``). The square-root estimate
    is almost always right, so only the few rows that move are re-tested.
    """
    x = x.copy()
    out = ok(x + step, None)
    inside = out | ok(x, None)  # rows whose end is accepted (or must move out)
    i = np.flatnonzero(out)
    while i.size:
        x[i] += step
        i = i[ok(x[i] + step, i)]
    i = np.flatnonzero(~inside & (step * (x - centre) >= 0))
    while i.size:
        x[i] -= step
        i = i[~ok(x[i], i) & (step * (x[i] - centre[i]) >= 0)]
    return x


def _wrap_rows(ci, row, lo, hi, nx):
    """Periodic x: map [lo, hi] into [0, nx), splitting intervals that cross the face."""
    full = hi - lo + 1 >= nx
    lo_w = np.where(full, 0, np.mod(lo, nx))
    hi_w = np.where(full, nx - 1, lo_w + (hi - lo))
    cross = hi_w >= nx
    ci2, row2 = ci[cross], row[cross]
    lo2, hi2 = np.zeros(len(ci2)), hi_w[cross] - nx
    hi_w = np.where(cross, nx - 1, hi_w)
    return (np.concatenate([ci, ci2]), np.concatenate([row, row2]),
            np.concatenate([lo_w, lo2]), np.concatenate([hi_w, hi2]))


def _near_diagonal(u, steps, rng, n, radius, periodic):
    """Orthogonal grid: (site, flat voxel) pairs from the row intervals, expanded."""
    ci, row, lo, hi = _row_intervals(u, steps, rng, n, radius, periodic)
    flat, length = _runs_to_flat(row, lo, hi, n[0])
    return np.repeat(ci, length), flat


def _runs_to_flat(row, lo, hi, nx):
    """Flat voxel indices ``row·nx + x`` of the runs lo <= x <= hi, run by run; lengths."""
    length = (hi - lo + 1).astype(np.int64)
    first = (row * nx + lo).astype(np.int64)  # flat index of each run's first voxel
    run_start = np.cumsum(length) - length
    flat = np.repeat(first - run_start, length) + np.arange(int(length.sum()), dtype=np.int64)
    return flat, length


def _near_general(u, steps, rng, n, radius, periodic):
    """Any grid: explicit offsets and Cartesian differences."""
    off = np.stack(np.meshgrid(*rng, indexing="ij"), axis=-1).reshape(-1, 3)
    base = np.floor(u).astype(np.int64)
    g = base[:, None, :] + off[None, :, :]  # (c, m, 3)
    d = (g - u[:, None, :]) @ steps.T
    keep = np.einsum("cmx,cmx->cm", d, d) <= radius * radius
    if periodic:
        g = np.mod(g, n)
    else:
        keep &= np.all((g >= 0) & (g < n), axis=-1)
    ci, mi = np.nonzero(keep)
    gi = g[ci, mi]
    return ci, (gi[:, 2] * n[1] + gi[:, 1]) * n[0] + gi[:, 0]


def sites_mask(xyz, grid: Grid, radius: float, *, periodic: bool = False) -> np.ndarray:
    """Boolean mask (nz, ny, nx) of voxels within ``radius`` Å of any site.

    See `site_voxels` for the distance test and ``periodic``. On orthogonal grids the
    per-row x-intervals of every site are either marked in a difference array (+1 at
    the start, −1 past the end of each run; a cumulative sum along x gives the cover),
    or, when the grid is much larger than the runs, expanded to voxel indices.
    """
    xyz = np.asarray(xyz, float).reshape(-1, 3)
    nz, ny, nx = grid.shape
    if not _is_diagonal(grid.frame.steps):
        _, vox = site_voxels(xyz, grid, radius, periodic=periodic)
        mask = np.zeros(grid.values.size, bool)
        mask[vox] = True
        return mask.reshape(grid.shape)
    runs = [_row_intervals(u, steps, rng, n, radius, periodic)[1:]
            for _, u, steps, rng, n in _site_batches(xyz, grid, radius, 8192)]
    n_vox = sum(float((hi - lo + 1).sum()) for _, lo, hi in runs)
    if nz * ny * nx > 2 * n_vox:  # sparse: memory and time ~ voxels listed, not the grid
        mask = np.zeros(nz * ny * nx, bool)
        for row, lo, hi in runs:
            mask[_runs_to_flat(row, lo, hi, nx)[0]] = True
        return mask.reshape(grid.shape)
    size = nz * ny * (nx + 1)  # one spare column per row takes the run ends
    ends = [e for row, lo, hi in runs for e in (row * (nx + 1) + lo, row * (nx + 1) + hi + 1)]
    sign = np.concatenate([np.full(len(e), 1.0 - 2.0 * (k % 2)) for k, e in enumerate(ends)])
    # empty rows put +1 and −1 on the same voxel; weighted bincount is numpy's fast one
    diff = np.bincount(np.concatenate(ends).astype(np.int64), sign, minlength=size)
    cover = np.cumsum(diff.astype(np.int32))  # each row sums to 0: a flat cumsum restarts
    return cover.reshape(nz, ny, nx + 1)[:, :, :nx] > 0


# ------------------------------------------------------------------- atom radius
def image_radius(d_min: float, b_iso: float, *, radius_step: float = 0.1,
                 radius_max: float | None = None, n_integration_steps: int = 2000) -> float:
    """Twice the first inflection point of the Fourier image of a carbon atom.

    A numpy re-implementation of cctbx ``maptbx.atom_curves(scattering_type="C",
    scattering_table="electron").image(...).radius``: the 1-D radial density of one C
    atom (electron form factor of International Tables Vol. C Table 4.3.2.2, Peng et al.
    1996, Acta Cryst. A52, 257; gemmi ``Element('C').c4322``) with isotropic B,
    Fourier-truncated at ``d_min``:
    ``ρ(r) = (2/r) ∫_0^{1/d_min} s f(s) exp(−B s²/4) sin(2π r s) ds``,
    sampled at r = 0, step, 2·step, ... < radius_max, integrated with cctbx's
    ``scitbx.math.simpson`` (whose weights give 4 to even and 2 to odd interior
    points; kept as is for agreement). The inflection point is where the discrete
    second difference first turns positive (midpoint of the two samples).

    Parameters
    ----------
    d_min : float
        Resolution, Å.
    b_iso : float
        Isotropic B of the atom, Å².
    radius_step : float
        Radial sampling, Å (cctbx mtriage: 0.1).
    radius_max : float, optional
        Largest radius sampled, Å (default max(15, d_min) as in mtriage).
    n_integration_steps : int
        Simpson intervals (even), cctbx default 2000.

    Returns
    -------
    float
        Radius in Å (a multiple of ``radius_step`` up to rounding).
    """
    import gemmi

    if radius_max is None:
        radius_max = max(15.0, d_min)
    c = gemmi.Element("C").c4322
    a_k, b_k = np.array(c.a, float), np.array(c.b, float)
    h = (1.0 / d_min) / n_integration_steps
    s = np.arange(n_integration_steps + 1) * h
    w = np.where(np.arange(n_integration_steps + 1) % 2 == 0, 4.0, 2.0)
    w[0] = w[-1] = 1.0
    f = (a_k[None, :] * np.exp(-np.outer(s * s, b_k) / 4.0)).sum(1) * np.exp(-b_iso * s * s / 4)
    radii = []
    r = 0.0
    while r < radius_max:  # accumulate like cctbx so the sampled radii match bit for bit
        radii.append(r)
        r += radius_step
    radii = np.array(radii)
    with np.errstate(divide="ignore", invalid="ignore"):
        integrand = np.where(np.abs(radii)[:, None] > 1e-9,
                             2.0 / radii[:, None] * s * f * np.sin(2 * np.pi * np.outer(radii, s)),
                             4 * np.pi * s * s * f)
    image = integrand @ w * h / 3.0
    return 2.0 * _first_inflection(radii, image)


def _first_inflection(radii: np.ndarray, image: np.ndarray) -> float:
    dxx = np.empty_like(image)
    dxx[1:-1] = image[:-2] + image[2:] - 2 * image[1:-1]
    dxx[0] = 2 * image[1] - 2 * image[0]
    dxx[-1] = dxx[-2]  # cctbx: previous second derivative (scaled back by step²)
    hits = np.nonzero(dxx > 0)[0]
    if len(hits) == 0:
        raise ValueError("the atom image has no inflection point; increase radius_max")
    i = int(hits[0])
    return float((radii[i - 1] + radii[i]) / 2.0)


def atom_radius(d_min: float, b_mean: float) -> float:
    """cctbx's automatic atom radius for per-chain / per-residue CC (Å).

    ``max(3, min(10, max(d_min, image_radius(d_min, b_mean))))`` as in
    ``mmtbx.maps.mtriage.get_atom_radius``, with ``b_mean`` the mean isotropic (or
    equivalent) B of the model, Å².

    Examples
    --------
    >>> atom_radius(3.2, 80.0)
    3.2
    >>> round(atom_radius(2.5, 300.0), 6)
    3.9
    """
    return float(max(3.0, min(10.0, max(d_min, image_radius(d_min, b_mean)))))
