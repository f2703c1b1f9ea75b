"""Smooth, realistic model errors for refinement benchmarks (radius-of-convergence tests).

A benchmark and test tool, not part of the refinement library: nothing in the packages of
densrefine imports it (`tests/unit/test_architecture.py`).

`perturb` moves a model the way real starting models are wrong, not by independent
per-atom noise (which wrecks geometry and is trivially undone by restraints):

1. **Rigid secondary-structure moves.** Helices and strands are found from the Cα
   trace alone (`densrefine.restraints.chains.secondary_structure`), and the remaining
   residues form loop segments of at most 8 residues. Nucleic-acid chains use P (else
   C4′) as the trace atom and are all loop segments. Each segment
   gets a random rotation about its centroid (angle ~ N(0, 1)/R_g rad, so the typical
   displacement is the same as the translation's) and translation ~ N(0, 1) per axis.
   Segment membership is smoothed along the chain with a Gaussian of σ = 1.5 residues
   (closed form with the normal CDF), so segment cores move exactly rigidly and the
   junctions blend: no chain breaks.
2. **Low-frequency displacement field**: a sum of 8 plane-wave modes
   ``a_k sin(q_k·x + φ_k)`` with wavelength 2π/|q_k| uniform in 15–30 Å, random
   directions, amplitudes a_k ~ N(0, 1)³ and phases.
3. **Side-chain flips**: a fraction of the amino acids with a γ atom (not Gly, Ala,
   Pro; no altlocs) get χ1 changed by ±120°: every side-chain atom except Cβ (Cγ and
   beyond, and the Cβ hydrogens) is rotated rigidly about the Cα→Cβ axis, so all
   bond lengths and angles are kept exactly.

Components 1 and 2 are normalised to mean squares 0.8 and 0.2 Å² (when both are on:
the 15–30 Å waves vary within a residue and stretch bonds, ~0.12 Å bond RMS change
per Å of wave RMS, while segment-rigid moves keep them), summed, scaled by s and applied;
the flips are applied afterwards about the moved Cα→Cβ axes; s is solved for
(bisection) so the RMS displacement over all atoms is ``rms``. Flips may use at most
half of the mean-square budget (``rms²/2``); flips beyond it are dropped with a
`DensrefineWarning`. Deterministic: each component draws from its own stream of
``numpy.random.SeedSequence(seed)``.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy.special import ndtr
from scipy.spatial import cKDTree

from .errors import DensrefineWarning
from .restraints.chains import flip_groups, label_runs, secondary_structure, trace, \
    trace_fragments
from .types import Model

log = logging.getLogger("densrefine")

MAX_LOOP = 8            # residues per loop segment
SIGMA_BLEND = 1.5       # residues, Gaussian blending of segment membership
N_MODES = 8
WAVELENGTH = (15.0, 30.0)
FLIP_BUDGET = 0.5       # fraction of rms² the flips may use
WEIGHT_RIGID, WEIGHT_WAVE = 0.8, 0.2   # share of the mean-square smooth displacement


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _rotate(x, centre, axis, angle):
    """Rodrigues rotation of points x (n, 3) about a line (centre, unit axis), angle rad.

    ``axis`` and ``angle`` may be per point ((n, 3), (n,)) or single.
    """
    v = x - centre
    axis = np.broadcast_to(axis, v.shape)
    c, s = np.cos(angle)[..., None], np.sin(angle)[..., None]
    dot = (v * axis).sum(-1, keepdims=True)
    return centre + v * c + np.cross(axis, v) * s + axis * dot * (1 - c)


def _segments(pos, kind, frags):
    """List of (fragment id, start, stop) in fragment coordinates, covering all of it."""
    segs = []
    for f, idx in enumerate(frags):
        ss = secondary_structure(pos[idx]) if kind[idx[0]] == 1 else np.full(len(idx), "C")
        for lab in "HEC":
            for a, b in ((a, b) for a, b, x in label_runs(ss) if x == lab):
                step = MAX_LOOP if lab == "C" else b - a
                segs.extend((f, s, min(s + step, b)) for s in range(a, b, step))
    return sorted(segs)


def _hosts(model, pos, frags):
    """Per atom: (fragment id, position in fragment); residues without a trace atom
    (ligands, waters, ions) take the position of the residue nearest to them."""
    at = model.atoms
    n_res = len(pos)
    frag_of = np.full(n_res, -1)
    pos_of = np.zeros(n_res)
    for f, idx in enumerate(frags):
        frag_of[idx], pos_of[idx] = f, np.arange(len(idx))
    orphan = frag_of[at.res_index] < 0
    if orphan.any():
        has = np.flatnonzero(frag_of >= 0)
        _, j = cKDTree(pos[has]).query(at.xyz[orphan])
        frag_of_atom, pos_atom = frag_of[at.res_index], pos_of[at.res_index]
        frag_of_atom[orphan], pos_atom[orphan] = frag_of[has[j]], pos_of[has[j]]
        return frag_of_atom, pos_atom
    return frag_of[at.res_index], pos_of[at.res_index]


def _rigid_field(model, rng):
    """Blended rigid segment displacements (N, 3) Å (unnormalised); and segment count."""
    at = model.atoms
    xyz = at.xyz
    pos, kind = trace(at)
    chain_of_res = np.zeros(len(pos), dtype=at.chain.dtype)
    chain_of_res[at.res_index] = at.chain
    frags = trace_fragments(pos, kind, chain_of_res)
    if not frags:                                   # no polymer: one rigid body
        frags, segs = [np.array([0])], [(0, 0, 1)]
        frag_atom, pos_atom = np.zeros(len(at), int), np.zeros(len(at))
    else:
        segs = _segments(pos, kind, frags)
        frag_atom, pos_atom = _hosts(model, pos, frags)
    disp = np.zeros_like(xyz)
    n_frag = np.array([len(f) for f in frags])
    for f, a, b in segs:
        sel = np.flatnonzero((frag_atom == f) & (pos_atom >= a - 6 * SIGMA_BLEND)
                             & (pos_atom < b + 6 * SIGMA_BLEND))
        core = (frag_atom[sel] == f) & (pos_atom[sel] >= a) & (pos_atom[sel] < b)
        pts = xyz[sel[core]] if core.any() else xyz[sel]
        centre = pts.mean(0)
        rg = max(np.sqrt(((pts - centre) ** 2).sum(1).mean()), 3.0)
        axis = _unit(rng.normal(size=3))
        angle = rng.normal() / rg
        shift = rng.normal(size=3)
        p = pos_atom[sel]
        w = ndtr((b - 0.5 - p) / SIGMA_BLEND) - ndtr((a - 0.5 - p) / SIGMA_BLEND)
        moved = _rotate(xyz[sel], centre, axis, np.full(len(sel), angle)) + shift
        disp[sel] += w[:, None] * (moved - xyz[sel])
    fa = np.clip(frag_atom, 0, None)
    norm = ndtr((n_frag[fa] - 0.5 - pos_atom) / SIGMA_BLEND) - ndtr((-0.5 - pos_atom) / SIGMA_BLEND)
    return disp / np.maximum(norm, 1e-12)[:, None], len(segs)


def _wave_field(xyz, rng, n_modes=N_MODES):
    """Sum of random plane-wave displacement modes (N, 3) Å (unnormalised)."""
    disp = np.zeros_like(xyz)
    for _ in range(n_modes):
        lam = rng.uniform(*WAVELENGTH)
        q = _unit(rng.normal(size=3)) * (2 * np.pi / lam)
        amp = rng.normal(size=3)
        disp += np.sin(xyz @ q + rng.uniform(0, 2 * np.pi))[:, None] * amp
    return disp


def _apply_flips(xyz, flips):
    """Rotate each group (ca, cb, atoms, angle) rigidly about its Cα→Cβ axis."""
    out = xyz.copy()
    for ca, cb, atoms, angle in flips:
        axis = _unit(xyz[cb] - xyz[ca])
        out[atoms] = _rotate(xyz[atoms], xyz[cb], axis, np.full(len(atoms), angle))
    return out


def _choose_flips(xyz, groups, fraction, rms, rng):
    """Pick flips (ca, cb, atoms, ±2π/3) within the flip budget; warn when capped."""
    n_want = int(round(fraction * len(groups)))
    if n_want == 0:
        return []
    pick = rng.permutation(len(groups))[:n_want]
    signs = rng.choice([-1.0, 1.0], size=n_want)
    budget = FLIP_BUDGET * rms**2 * len(xyz)        # Å², sum of squared displacements
    chosen, used = [], 0.0
    for k, s in zip(pick, signs):
        ca, cb, atoms = groups[k]
        f = (ca, cb, atoms, s * 2 * np.pi / 3)
        axis = _unit(xyz[cb] - xyz[ca])
        moved = _rotate(xyz[atoms], xyz[cb], axis, np.full(len(atoms), f[3]))
        cost = ((moved - xyz[atoms]) ** 2).sum()
        if used + cost > budget:
            continue
        chosen.append(f)
        used += cost
    if len(chosen) < n_want:
        warnings.warn(f"perturb: {len(chosen)} of {n_want} requested side-chain flips fit in "
                      f"half of the {rms:g} Å RMS budget; use a larger rms or fewer flips",
                      DensrefineWarning, stacklevel=3)
    return chosen


def _solve_scale(xyz, field, flips, rms):
    """Scale s ≥ 0 so that RMS(flips(xyz + s·field) − xyz) = rms (bisection)."""
    def rms_at(s):
        new = _apply_flips(xyz + s * field, flips)
        return np.sqrt(((new - xyz) ** 2).sum(1).mean())
    lo, hi = 0.0, rms
    while rms_at(hi) < rms:
        hi *= 2
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if rms_at(mid) < rms else (lo, mid)
    return 0.5 * (lo + hi)


def perturb(model: Model, *, rms: float = 1.0, seed: int = 0, rigid_sse: bool = True,
            low_freq: bool = True, rotamer_flips: float = 0.1) -> Model:
    """Return a copy of ``model`` with smooth, realistic coordinate errors.

    Parameters
    ----------
    model : Model
        Input model; its atoms, chains and order are kept (only xyz changes).
    rms : float
        Target RMS displacement over all atoms, Å (> 0). Not enforced when both
        smooth components are off (flips only).
    seed : int
        Seed; the same seed and input give identical output.
    rigid_sse : bool
        Rigid random moves of helices, strands and loop segments (module docstring).
    low_freq : bool
        Random plane-wave displacement field, wavelengths 15–30 Å.
    rotamer_flips : float
        Fraction (0–1) of eligible side chains whose χ1 changes by ±120°.

    Returns
    -------
    Model
        Same atoms with new ``xyz`` (N, 3) float64, Å.
    """
    if not rms > 0:
        raise ValueError(f"perturb: rms must be > 0 Å, got {rms}")
    if not 0.0 <= rotamer_flips <= 1.0:
        raise ValueError(f"perturb: rotamer_flips must be in 0..1, got {rotamer_flips}")
    rng_rigid, rng_wave, rng_flip = (np.random.default_rng(s)
                                     for s in np.random.SeedSequence(seed).spawn(3))
    xyz = np.asarray(model.atoms.xyz, dtype=np.float64)
    field, n_seg = np.zeros_like(xyz), 0
    both = rigid_sse and low_freq
    for on, w, make in ((rigid_sse, WEIGHT_RIGID, lambda: _rigid_field(model, rng_rigid)),
                        (low_freq, WEIGHT_WAVE, lambda: (_wave_field(xyz, rng_wave), 0))):
        if on and len(xyz):
            comp, n = make()
            n_seg += n
            w = np.sqrt(w if both else 1.0)
            field += w * comp / max(np.sqrt((comp ** 2).sum(1).mean()), 1e-12)
    flips = _choose_flips(xyz, flip_groups(model), rotamer_flips,
                          rms if field.any() else np.inf, rng_flip)
    scale = _solve_scale(xyz, field, flips, rms) if field.any() else 0.0
    new = _apply_flips(xyz + scale * field, flips)
    got = np.sqrt(((new - xyz) ** 2).sum(1).mean()) if len(xyz) else 0.0
    log.info("perturb: rigid_sse=%s (%d segments), low_freq=%s (%d modes, %g-%g Å), "
             "%d side-chain flips, seed %d -> RMS %.3f Å", rigid_sse, n_seg, low_freq,
             N_MODES, *WAVELENGTH, len(flips), seed, got)
    return model.with_atoms(model.atoms.replace(xyz=new))
