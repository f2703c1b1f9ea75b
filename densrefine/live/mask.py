"""The flat bulk-solvent / molecular mask, kept up to date when a few atoms move.

The mask is gemmi's ``SolventMasker(AtomicRadiiSet.Cctbx)`` (the one
`densrefine.xtal.bulk` and `densrefine.scoring.masks.molecular_mask` build), rebuilt
here in numpy so that it can be redone inside a small box:

1. m₀(p) = 0 (molecule) when a grid point p is within r_vdW + r_probe of any symmetry
   image of an atom (gemmi ``set_points_around``: distance² ≤ r²), else 1;
2. the shrink step (gemmi ``set_margin_around``, r_shrink = 0.9 Å): a point with m₀ = 0
   becomes solvent when a solvent point q has it in its first stencil shell (distance²
   below the largest spacing², "stencil 1") or in the outer shell (≤ r_shrink², "stencil
   2") while q also has a molecule point in its stencil 1.

State: ``count`` (how many atoms, identity image only, cover each point) and ``mask``
(the final mask over the cell, 1 = solvent). m₀(p) = 0 iff count(o(p)) > 0 for some
operator o. After atoms move, the count is updated around their old and new positions,
the final mask is recomputed in the box B that can change (the atoms' reach plus the
shrink stencils) and written to every symmetry image of B's changed points.

`LocalMask.update` returns the change δ inside B with orbit weights w = 1/N(p),
N(p) = #{o : o(p) ∈ B}, so that Σ_o Σ_{p∈B} δw(p) e^{2πi h·o(p)} is the change of the
mask's structure factors over the whole cell, even where B overlaps its own images.
"""
from __future__ import annotations

import numpy as np

CCTBX_VDW = np.array([float(x) for x in ["1", "1.2", "1.4", "1.82", "0.63", "1.75", "1.775", "1.5", "1.45", "1.47", "1.54", "2.27", "1.73", "1.5", "2.1", "1.9", "1.8", "1.75", "1.88", "2.75", "1.95", "1.32", "1.95", "1.06", "1.13", "1.19", "1.26", "1.13", "1.63", "1.4", "1.39", "1.87", "1.48", "0.83", "1.9", "1.85", "2.02", "2.65", "2.02", "1.61", "1.42", "1.33", "1.75", "2", "1.2", "1.22", "1.63", "1.72", "1.58", "1.93", "2.17", "1.12", "1.26", "1.98", "2.16", "3.01", "2.41", "1.83", "1.86", "1.62", "1.79", "1.76", "1.74", "1.96", "1.69", "1.66", "1.63", "1.61", "1.59", "1.57", "1.54", "1.53", "1.4", "1.22", "1.26", "1.3", "1.58", "1.22", "1.72", "1.66", "1.55", "1.96", "2.02", "1.73", "1.21", "1.12", "2.3", "3.24", "2.57", "2.12", "1.84", "1.6", "1.75", "1.71", "1.67", "1.66", "1.65", "1.64", "1.63", "1.62", "1.61", "1.6", "1.59", "1.58", "1", "1", "1", "1", "1", "1", "1", "1", "1", "1", "1", "1", "1", "1", "1"]], np.float32)
"""cctbx van der Waals radii (Å) by atomic number, as gemmi's ``cctbx_vdw_radius`` (float32,
as gemmi stores them, so that r_vdW + r_probe is the same double)."""

R_PROBE = 1.1
R_SHRINK = 0.9


def mask_radii(elements, r_probe: float = R_PROBE) -> np.ndarray:
    """r_vdW (cctbx) + r_probe per atom, Å, float64 (N,)."""
    import gemmi

    z = np.array([gemmi.Element(str(e).strip() or "X").atomic_number for e in elements])
    return CCTBX_VDW[np.clip(z, 0, len(CCTBX_VDW) - 1)].astype(np.float64) + float(r_probe)


def grid_ops(spacegroup, shape):
    """Symmetry operators acting on grid indices (x, y, z order): (rot (n_ops, 3, 3) int,
    tran (n_ops, 3) int); identity first. ``spacegroup`` None: P1."""
    nz, ny, nx = shape
    n = np.array([nx, ny, nz], np.int64)
    if spacegroup is None:
        return np.eye(3, dtype=np.int64)[None], np.zeros((1, 3), np.int64)
    rots, trans = [], []
    for op in spacegroup.operations():
        r = np.array(op.rot, np.int64)
        t = np.array(op.tran, np.int64)
        den = op.DEN
        rs = r * n[:, None]
        tn = t * n
        if np.any(rs % (den * n[None, :])) or np.any(tn % den):
            raise ValueError(f"grid {nx}x{ny}x{nz} is not compatible with operator {op.triplet()}")
        rots.append(rs // (den * n[None, :]))
        trans.append(tn // den)
    order = np.argsort([0 if (np.array_equal(r, np.eye(3)) and not t.any()) else 1
                        for r, t in zip(rots, trans)], kind="stable")
    return np.array(rots)[order], np.array(trans)[order]


class LocalMask:
    """Bulk-solvent mask over a periodic grid, updated in a box when atoms move.

    Parameters
    ----------
    orth : ndarray, shape (3, 3)
        Cell matrix: columns are the cell edges a, b, c in Å.
    shape : tuple (nz, ny, nx)
        Grid over the cell (multiples of the space group's grid factors).
    spacegroup : gemmi.SpaceGroup or None
        None for a P1 box (cryo-EM).
    frac : ndarray, shape (N, 3)
        Fractional coordinates of the atoms (any lattice translate).
    radius : ndarray, shape (N,)
        r_vdW + r_probe (Å); atoms with radius ≤ 0 are ignored (hydrogens, occupancy 0).
    r_shrink : float
        Shrink radius, Å.
    mask : ndarray, shape (nz, ny, nx), optional
        The mask of these atoms if already made (gemmi's, 1 = solvent); default: made
        here (slow for large cells: every point × every operator).
    """

    def __init__(self, orth, shape, spacegroup, frac, radius, r_shrink: float = R_SHRINK,
                 mask=None):
        self.orth = np.asarray(orth, np.float64)
        self.shape = tuple(int(s) for s in shape)
        nz, ny, nx = self.shape
        self.n = np.array([nx, ny, nz], np.int64)
        self.orth_n = self.orth / self.n[None, :]
        self.rot, self.tran = grid_ops(spacegroup, self.shape)
        self.spacing = 1.0 / np.linalg.norm(np.linalg.inv(self.orth_n), axis=1)
        self._stencils(r_shrink)
        self.count = np.zeros(self.shape, np.int16)
        self._cover(np.asarray(frac, np.float64), np.asarray(radius, np.float64), +1)
        self.mask = self._final_full() if mask is None else np.array(mask, np.float32)

    # ------------------------------------------------------------------ stencils
    def _stencils(self, r):
        d = np.floor(r / self.spacing).astype(int)
        edge = np.linalg.norm(self.orth, axis=0) / self.n
        max_sp2 = float(np.max(edge)) ** 2 + 1e-6
        s1, s2 = [], []
        for w in range(-d[2], d[2] + 1):
            for v in range(-d[1], d[1] + 1):
                for u in range(-d[0], d[0] + 1):
                    f = np.array([u / self.n[0], v / self.n[1], w / self.n[2]])
                    r2 = float(np.sum((self.orth @ f) ** 2))
                    if r2 <= r * r and r2 != 0.0:
                        (s1 if r2 < max_sp2 else s2).append((u, v, w))
        self.s1 = np.array(s1, np.int64).reshape(-1, 3)
        self.s2 = np.array(s2, np.int64).reshape(-1, 3)
        self.reach = np.abs(np.concatenate([self.s1, self.s2])).max(0) if len(s1) + len(s2) \
            else np.zeros(3, np.int64)

    # ------------------------------------------------------------------ counts
    def _points(self, frac, radius):
        """Flat indices of the points within ``radius`` of each atom (gemmi's rule)."""
        keep = radius > 0
        frac, radius = frac[keep], radius[keep]
        if not len(frac):
            return np.zeros(0, np.int64)
        out = []
        rmax = float(radius.max())
        d = np.ceil(rmax / self.spacing).astype(int)
        off = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in d], indexing="ij"),
                       -1).reshape(-1, 3)
        step = max(1, 2_000_000 // len(off))
        for lo in range(0, len(frac), step):
            nctr = frac[lo:lo + step] * self.n                      # (m, 3)
            u0 = np.floor(nctr + 0.5).astype(np.int64)              # gemmi iround
            pts = u0[:, None, :] + off[None]                        # (m, o, 3)
            delta = (nctr[:, None, :] - pts) @ self.orth_n.T
            ok = (delta * delta).sum(-1) <= (radius[lo:lo + step, None] ** 2)
            p = pts[ok] % self.n
            out.append((p[:, 2] * self.n[1] + p[:, 1]) * self.n[0] + p[:, 0])
        return np.concatenate(out)

    def _cover(self, frac, radius, sign):
        idx = self._points(frac, radius)
        if len(idx):
            u, c = np.unique(idx, return_counts=True)
            flat = self.count.reshape(-1)
            flat[u] += (sign * c).astype(np.int16)

    # ------------------------------------------------------------------ mask values
    def _op_flat(self, lo, size, r, t):
        """Flat cell indices of o(p) for the points p of a box (bz, by, bx)."""
        stride = np.array([1, self.n[0], self.n[0] * self.n[1]], np.int64)
        ax = [np.arange(lo[j], lo[j] + size[j], dtype=np.int64) for j in range(3)]
        if np.all((r != 0).sum(1) == 1):        # a signed permutation: separable per axis
            parts = [np.zeros(1, np.int64)] * 3
            for i in range(3):
                j = int(np.flatnonzero(r[i])[0])
                parts[j] = parts[j] + ((r[i, j] * ax[j] + t[i]) % self.n[i]) * stride[i]
            return (parts[2][:, None, None] + parts[1][None, :, None]
                    + parts[0][None, None, :])
        pts = self._box_points(lo, size)
        q = (pts @ r.T + t) % self.n
        return (q[..., 2] * self.n[1] + q[..., 1]) * self.n[0] + q[..., 0]

    def _m0(self, lo, size):
        """m₀ (1 = solvent before shrinking) on a box, shape (bz, by, bx), int8."""
        covered = None
        flat = self.count.reshape(-1)
        for r, t in zip(self.rot, self.tran):
            c = flat[self._op_flat(lo, size, r, t)] > 0
            covered = c if covered is None else covered | c
        return (~covered).astype(np.int8)

    def _final(self, m0, pad):
        """Final mask of the interior of a padded box of m₀ values (zyx array)."""
        pz, py, px = (int(p) for p in pad[::-1])
        core = m0[pz:m0.shape[0] - pz, py:m0.shape[1] - py, px:m0.shape[2] - px]

        def sh(a, s, extra=(0, 0, 0)):
            u, v, w = s
            ez, ey, ex = extra
            return a[pz + w - ez:a.shape[0] - pz + w + ez, py + v - ey:a.shape[1] - py + v + ey,
                     px + u - ex:a.shape[2] - px + u + ex]

        solvent = core == 1
        margin = np.zeros(core.shape, bool)
        for s in self.s1:                        # a solvent point within stencil 1
            margin |= sh(m0, s) == 1
        if len(self.s2):
            # q (solvent) with a molecule point in its stencil 1 marks its stencil 2 too
            one = tuple(int(x) for x in np.abs(self.s2).max(0)[::-1])
            big = m0[pz - one[0]:m0.shape[0] - pz + one[0], py - one[1]:m0.shape[1] - py + one[1],
                     px - one[2]:m0.shape[2] - px + one[2]]
            hasmol = np.zeros(big.shape, bool)
            bz, by, bx = big.shape
            oz, oy, ox = pz - one[0], py - one[1], px - one[2]
            for s in self.s1:
                u, v, w = s
                hasmol |= m0[oz + w:oz + w + bz, oy + v:oy + v + by, ox + u:ox + u + bx] == 0
            active = (big == 1) & hasmol
            for s in self.s2:
                u, v, w = s
                margin |= active[one[0] + w:one[0] + w + core.shape[0],
                                 one[1] + v:one[1] + v + core.shape[1],
                                 one[2] + u:one[2] + u + core.shape[2]]
        return (solvent | margin).astype(np.float32)

    def _pad(self):
        return self.reach + np.abs(self.s1).max(0) if len(self.s1) else self.reach

    def _box_points(self, lo, size):
        g = np.meshgrid(*[np.arange(lo[i], lo[i] + size[i]) for i in (2, 1, 0)], indexing="ij")
        return np.stack([g[2], g[1], g[0]], -1)                    # (bz, by, bx, 3) xyz

    def _final_full(self):
        nz, ny, nx = self.shape
        pad = self._pad()
        out = np.empty(self.shape, np.float32)
        step = 8
        for z0 in range(0, nz, step):
            bz = min(step, nz - z0)
            lo = np.array([-pad[0], -pad[1], z0 - pad[2]])
            size = np.array([nx + 2 * pad[0], ny + 2 * pad[1], bz + 2 * pad[2]])
            out[z0:z0 + bz] = self._final(self._m0(lo, size), pad)
        return out

    # ------------------------------------------------------------------ update
    def update(self, old_frac, new_frac, old_radius, new_radius):
        """Move atoms; return the change of the mask inside the box that can change.

        Parameters
        ----------
        old_frac, new_frac : ndarray, shape (k, 3)
            Fractional coordinates before and after.
        old_radius, new_radius : ndarray, shape (k,)
            Mask radii before and after (≤ 0: the atom does not count).

        Returns
        -------
        delta : ndarray, shape (bz, by, bx), float64 or None
            New minus old mask times the orbit weight 1/N(p) (None when nothing changed).
        lo : ndarray, shape (3,), int
            Absolute (x, y, z) grid index of the box's first voxel.
        n_changed : int
            Points of the box whose value changed.
        """
        self._cover(old_frac, old_radius, -1)
        self._cover(new_frac, new_radius, +1)
        pts = np.concatenate([old_frac[old_radius > 0], new_frac[new_radius > 0]])
        if not len(pts):
            return None, np.zeros(3, np.int64), 0
        rmax = float(max(np.max(old_radius, initial=0), np.max(new_radius, initial=0)))
        reach = np.ceil(rmax / self.spacing).astype(np.int64) + 1 + self._pad()
        u = pts * self.n
        ref = np.floor(u[0])
        u = u - np.round((u - ref) / self.n) * self.n                 # one lattice copy
        lo = np.floor(u.min(0)).astype(np.int64) - reach
        hi = np.ceil(u.max(0)).astype(np.int64) + reach
        size = np.minimum(hi - lo + 1, self.n)
        pad = self._pad()
        m0 = self._m0(lo - pad, size + 2 * pad)
        new = self._final(m0, pad)
        box = self._box_points(lo, size)
        old = self.mask.reshape(-1)[self._op_flat(lo, size, self.rot[0], self.tran[0])]
        diff = new.astype(np.float64) - old
        ch = np.nonzero(diff)
        if not len(ch[0]):
            return None, lo, 0
        p = box[ch]                                                   # (c, 3)
        mult = np.zeros(len(p))
        flat = self.mask.reshape(-1)
        vals = new[ch]
        for r, t in zip(self.rot, self.tran):
            img = p @ r.T + t
            rel = (img - lo) % self.n
            mult += np.all(rel < size, axis=1)
            qi = img % self.n
            flat[(qi[:, 2] * self.n[1] + qi[:, 1]) * self.n[0] + qi[:, 0]] = vals
        delta = np.zeros(diff.shape)
        delta[ch] = diff[ch] / mult
        return delta, lo, len(p)
