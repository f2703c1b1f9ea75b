"""`FitConfig`: the typed configuration tree of ``densrefine fit`` (servalcat ``RefineConfig``).

Precedence: dataclass defaults < ``--config`` YAML < command-line flags. `load_config`
merges a YAML mapping into the defaults and validates it once; `dump_config` writes
the resolved tree back (``<prefix>_config.yaml``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import InputError, input_error

STAGES = ("rigid", "sse", "chi1", "xyz", "b")
AUTO_REFERENCE_SIGMA = 0.2
"""Å: σ of ``reference_sigma: auto`` at low resolution (benchmarks/RESULTS.md, "fit on
imperfect maps")."""


@dataclass
class MapConfig:
    """Map term.

    Attributes
    ----------
    target : {"cc", "lsq"}
        Map term of the rigid-body and coordinate stages: −CC over the mask, or least
        squares with a fitted scale (normalised by the map variance over the mask so its
        scale matches 1 − CC). Default "lsq" (converged further in the recovery benchmark).
    b_target : {"cc", "lsq"}
        Map term of the B-factor stage. Default "cc".
    blur_factors : list of float
        Blur schedule of the xyz macro cycles: cycle i uses B_extra = 4 d² ·
        blur_factors[min(i, len − 1)] (Å²), the last cycle always the last factor; the
        experimental map is blurred by B_extra − 4 d² so both maps stay comparable.
        Coarse → fine widens the radius of convergence.
    margin : float
        Å added around the (selected) model's bounding box when the map is cut.
    mask_radius : float or None
        Atom-radius mask radius (Å); None: cctbx's automatic radius
        (`densrefine.scoring.masks.atom_radius`).
    table : {"electron", "xray"}
        Scattering table of the model map (X-ray data impose "xray").
    density : {"iam", "ml", "ml-solvent"}
        Density model of the model map (`densrefine.density`): independent atoms, or IAM
        plus the learned deformation density (predicted once from the starting model;
        "ml-solvent" with a continuum solvent's reaction field, issue 21).
    samples_per_d : float or None
        Grid of the coordinate stages: a map sampled finer than d / ``samples_per_d``
        is Fourier-resampled to that spacing (nothing beyond the new Nyquist frequency
        1/(2·spacing) > 1/d is lost; blurred cycles use 3 samples per d·√factor, see
        `MapTerm.prepare`). None keeps the map's own grid. The B stage runs on it too.

    Measurements behind the defaults: benchmarks/RESULTS.md, "Why the fit defaults".
    """

    target: str = "lsq"
    b_target: str = "cc"
    blur_factors: list = field(default_factory=lambda: [4.0, 2.0, 1.0])
    margin: float = 6.0
    mask_radius: float | None = None
    table: str = "electron"
    density: str = "iam"
    samples_per_d: float | None = 2.5


@dataclass
class WeightConfig:
    """Weight w of the data term in ``w · data + geometry``.

    Attributes
    ----------
    weight : float or None
        Fixed weight; None: automatic (gradient-norm ratio, then adjusted between
        macro cycles towards ``target_bond_rmsd``).
    target_bond_rmsd : float
        Å. The automatic weight aims at bond RMSD ≈ this value.
    max_angle_rmsd : float
        Degrees. The automatic weight is lowered while angle RMSD exceeds it.
    scale : float
        Multiplies the initial gradient-norm ratio.
    likelihood_cap : float or None
        The automatic weight never exceeds this multiple of the Gaussian-likelihood weight
        of the map, N_ind/(1 − CC²) (N_ind = mask volume · 4π/(3 d³) independent map
        values, CC at the final blur; `densrefine.refine.geometry.b_data_weight`), so a
        noisier or coarser map (lower CC, fewer independent values) gets less weight
        than the bond-RMSD target alone would give it. None: no cap.
    likelihood_cap_final : float or None
        The same multiple for the macro cycles at the finest blur (and the polish
        cycles), where the model is near the map's optimum and a strong map pull fits
        noise; the coarse-blur cycles, which bring far atoms in, keep ``likelihood_cap``.
        None: ``likelihood_cap`` throughout.
    nonbonded : float
        Multiplies the nonbonded (van der Waals) term of the geometry (1: σ 0.2 Å as in
        Refmac; 4: σ 0.1 Å).
    nonbonded_final : float or "auto" or None
        The same for the finest-blur and polish cycles; "auto" (default): 4 against maps
        (8 lost 0.03 Å on 5NI1), ``nonbonded`` against X-ray data. None: ``nonbonded``
        throughout.
    polish_cycles : int
        With the automatic weight, at most this many extra finest-blur cycles after the
        last macro cycle while angle RMSD > ``max_angle_rmsd`` (+ 2 %) or bond RMSD
        > 1.3 × ``target_bond_rmsd``, each with the weight lowered first (the per-cycle
        adjustment never sees the last cycle's geometry).
    """

    weight: float | None = None
    target_bond_rmsd: float = 0.01
    max_angle_rmsd: float = 1.5
    scale: float = 1.0
    polish_cycles: int = 2
    likelihood_cap: float | None = 100.0
    likelihood_cap_final: float | None = 30.0
    nonbonded: float = 1.0
    nonbonded_final: float | str | None = "auto"


@dataclass
class FitConfig:
    """Everything ``densrefine fit`` can be told.

    Attributes
    ----------
    stages : list of str
        Subset of ("rigid", "sse", "chi1", "xyz", "b"), run in that order: rigid body
        (whole model, then per chain), rigid body per secondary-structure element
        (`densrefine.refine.sse`), χ1 rotamer scan (`densrefine.refine.rotamer`),
        all-atom coordinates, B-factors.
    cycles : int
        Macro cycles of the xyz stage (the blur schedule runs over them).
    rigid_iterations, xyz_iterations, b_iterations : int
        L-BFGS iterations per call (rigid: per group level; xyz: per macro cycle; the B
        stage runs its iterations in 2 rounds, re-estimating its data weight between them).
    rigid_chains : bool
        After the whole model, always refine each chain (base-paired strands together) as
        its own rigid group. Default False: the chain level runs only when the whole-model
        move lowers some chain's CC (the chains disagree; `densrefine.refine.stages.rigid_stage`).
        On the shared maps with correctly placed chains the chain level moved well-fitted
        chains off (6YYT 0.5 / 1.0 Å starts: 0.56 / 0.97 Å with it, 0.41 / 0.70 without;
        benchmarks/RESULTS.md).
    rigid_side_chains : bool
        Include amino-acid side chains beyond Cβ in the map term of the ``rigid`` and
        ``sse`` passes when an ``xyz`` stage follows. Default False: those passes run
        before the χ1 scan, when side chains may sit in wrong rotamers and pull their
        element off the density, so the rigid groups are placed by main chain + Cβ (and
        every atom of non-amino-acid residues), and the all-atom stage finishes. Without
        an ``xyz`` stage (e.g. ``--stages rigid`` to dock) all atoms are used.
    rigid_blur_factors : list of float
        Blur factors (× 4 d²) of the rigid-body passes.
    rotamer_chi2 : bool
        The ``chi1`` stage also tries χ2 rotations (`densrefine.refine.rotamer`).
    rotamer_margin : float or None
        Map σ (over the molecular mask) by which a new rotamer's mean map value must beat
        the current one's, for a side chain of 6 heavy atoms (`densrefine.refine.rotamer.
        scan_chi1`). Default 0.3: with 0.1 the scan changed 8 of 133 side chains of the
        deposited 3J6B chain 9 (B ≈ 130 Å², side chains weak) and moved it 0.54 Å; with 0.3,
        2 and 0.43 Å (benchmarks/RESULTS.md). None: 0.1 (χ1 only) or 0.2 (with χ2).
    riding_hydrogens : bool or "auto"
        "auto" (default): on against maps, off against X-ray data. Models without
        hydrogens get riding hydrogens in the nonbonded term (placed by
        gemmi from the monomer library, explicit-atom radii; `densrefine.restraints.riding`),
        as Refmac and servalcat do; they add no density and are not written out. Against
        maps, with ``weights.nonbonded_final`` 4 the clashscore (H placed) of the outputs on
        the shared maps fell from 6–46 to 0.7–9 and the mean RMSD to the deposited models of
        36 perturbed starts from 0.569 to 0.562 Å; against X-ray data (3IO0 from a 1.0 Å
        start) R-free rose 0.1821 → 0.1888, hence off there (benchmarks/RESULTS.md).
    sse_iterations : int
        L-BFGS iterations per blur factor of the ``sse`` stage.
    sse_blur_factors : list of float
        Blur factors (× 4 d²) of the ``sse`` passes, coarse to fine.
    reference_sigma : float or "auto" or None
        Å. Reference-model restraints: Σ |x − x_ref|²/σ² over the refined atoms is added
        to the target in the ``xyz`` stage, with x_ref the coordinates at the start of that
        stage (the input after the rigid-body stages, so whole-element moves stay free).
        "auto" (default): `AUTO_REFERENCE_SIGMA` when the resolution the map supports is
        ``low_resolution`` or worse, else off. None: off.
    reference_kind : {"auto", "position", "torsion"}
        What the reference restraints hold: atom positions (σ ``reference_sigma`` Å), or
        the start model's torsions (phenix's reference-model restraints, Headd et al. 2012,
        Acta Cryst D68, 381): every library torsion and φ/ψ with an atom held, top-out
        (l/σ)²(1 − exp(−(Δ/l)²)) with σ ``reference_torsion_sigma`` and l
        ``reference_torsion_limit`` (degrees), so segments may still move as bodies.
        "auto" (default): torsions against maps with ``reference_sigma: auto`` (36 perturbed starts on the shared maps:
        mean RMSD to the deposited models 0.562 → 0.552 Å, every 1.0 Å start closer by
        0.03–0.04 Å, 0.5 Å starts within 0.006; benchmarks/RESULTS.md), positions against
        X-ray data (not measured there) or with a σ given.
    reference_torsion_sigma, reference_torsion_limit : float
        Degrees; see ``reference_kind``.
    resolution_check : bool
        With a given resolution, also estimate what the map supports (d_model,
        `densrefine.scoring.estimate_resolution`) and refine at d_model when it is more
        than 10 % worse than the stated one (the stated resolution is an upper bound; a
        flexible or noisy map supports less).
    low_resolution : float
        Å. At this resolution (as the map supports it) or worse, the χ1 scan and the
        secondary-structure rigid bodies are skipped (side chains and small elements are
        not resolved; they moved the deposited models of the shared low-resolution and
        noisy maps away from their positions) and ``reference_sigma: auto`` switches on.
    ss_restraints : {"auto", "on", "off"}
        Secondary-structure O…N H-bond restraints (`densrefine.restraints.ss`: the
        model's HELIX/SHEET annotation, else DSSP-like detection) in every stage.
        "auto": on when the resolution is 3.5 Å or worse.
    ss_sigma : float
        Å. σ of the H-bond restraints (ideal O…N 2.9 Å, top-out beyond ~1 Å).
    rama_restraints : {"auto", "on", "off"}
        Ramachandran restraints (`densrefine.restraints.rama`: −2 log p(φ, ψ) of von Mises
        mixtures, Gly / Pro / pre-Pro / general) in every stage. "auto": on when the
        resolution is 3.5 Å or worse.
    rama_weight : float
        w of the Ramachandran energy w · Σ −2 log p(φ, ψ), in the χ² units of the other
        restraints (w = 1: a residue 1σ from a mode costs as much as a bond 1σ off its
        ideal).
    b_sigma : float
        Å². σ of the B-similarity prior ½ Σ (ΔB/σ)² between bonded atoms; 1-3 (angle)
        pairs use 1.5 σ (servalcat's ratio, `densrefine.refine.geometry.b_restraint_pairs`).
    b_weight_scale : float
        Multiplies the data weight of the B stage, which is the Gaussian log-likelihood
        weight N_ind / (2 (1 − CC²)) (`densrefine.refine.geometry.b_data_weight`); > 1
        trusts the map more.
    b_overall : bool
        B stage: the data term sees B + g with one free offset g (Å²) for the map's
        overall sharpening, and the mean refined B is held at the input's (servalcat's
        SPA likelihood likewise absorbs an overall B in its scale). Off by default: for
        sharpened maps with a meaningful input B scale.
    b_range : list of float
        [min, max] Å² of refined B.
    max_bond_z : float or None
        After the coordinate stage, while some refined bond deviates more than this many σ
        from its ideal, up to ``guard_cycles`` more finest-blur cycles run, each with the
        map weight halved (the output should carry no bond beyond 4σ). None: off.
    guard_cycles : int
        See ``max_bond_z``.
    threads : int or None
        CPU threads during `fit` (None: 1 below `densrefine.refine.engine.SMALL_MODEL`
        atoms, else the idle cores); restored afterwards.
    map : MapConfig
    weights : WeightConfig

    Measurements behind the defaults: benchmarks/RESULTS.md, "Why the fit defaults".
    """

    stages: list = field(default_factory=lambda: list(STAGES))
    cycles: int = 4
    rigid_iterations: int = 15
    rigid_chains: bool = False
    rigid_side_chains: bool = False
    rigid_blur_factors: list = field(default_factory=lambda: [1.0])
    xyz_iterations: int = 15
    b_iterations: int = 24
    rotamer_chi2: bool = False
    rotamer_margin: float | None = 0.3
    riding_hydrogens: bool | str = "auto"
    sse_iterations: int = 20
    sse_blur_factors: list = field(default_factory=lambda: [1.0])
    reference_sigma: float | str | None = "auto"
    reference_kind: str = "auto"
    reference_torsion_sigma: float = 3.0
    reference_torsion_limit: float = 15.0
    resolution_check: bool = True
    low_resolution: float = 3.5
    ss_restraints: str = "auto"
    ss_sigma: float = 0.05
    rama_restraints: str = "auto"
    rama_weight: float = 3.0
    b_sigma: float = 20.0
    b_weight_scale: float = 1.0
    b_overall: bool = False
    b_range: list = field(default_factory=lambda: [2.0, 300.0])
    max_bond_z: float | None = 4.0
    guard_cycles: int = 3
    threads: int | None = None
    map: MapConfig = field(default_factory=MapConfig)
    weights: WeightConfig = field(default_factory=WeightConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _merge(obj, data: dict, where: str):
    if not isinstance(data, dict):
        raise input_error(where, f"expected a mapping, got {type(data).__name__}",
                          "write key: value pairs")
    names = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in data.items():
        if key not in names:
            raise input_error(where, f"unknown key {key!r}",
                              f"use one of {', '.join(sorted(names))}")
        cur = getattr(obj, key)
        if dataclasses.is_dataclass(cur):
            _merge(cur, value, f"{where}.{key}")
        else:
            setattr(obj, key, value)
    return obj


def load_config(data=None, path=None) -> FitConfig:
    """Defaults merged with a mapping or a YAML file, validated.

    Parameters
    ----------
    data : dict or FitConfig, optional
        Overrides (nested dicts for ``map`` and ``weights``).
    path : str, optional
        YAML file (read first; ``data`` overrides it).

    Raises
    ------
    InputError
        Unreadable YAML, unknown keys or invalid values (one line naming the key).
    """
    cfg = FitConfig()
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                loaded = _parse_yaml(f.read()) or {}
        except (OSError, ValueError) as exc:
            raise input_error(path, f"cannot read the YAML config ({exc})".replace("\n", " "),
                              "fix the file or drop --config") from None
        _merge(cfg, loaded, str(path))
        try:
            validate(cfg)
        except InputError as exc:               # a bad value in the file: name the file
            raise InputError(f"{path}: {exc}") from None
    if isinstance(data, FitConfig):
        data = data.to_dict()
    if data:
        _merge(cfg, data, "config")
    return validate(cfg)


def _mode(value, flag: str) -> str:
    """An auto/on/off switch; YAML 1.1 reads a bare on/off as a boolean."""
    if isinstance(value, bool):
        value = "on" if value else "off"
    if value not in ("auto", "on", "off"):
        raise input_error(flag, f"unknown mode {value!r}", "use auto, on or off")
    return value


def validate(cfg: FitConfig) -> FitConfig:
    """Check types and ranges; return ``cfg`` with normalised values."""
    if cfg.map.density not in ("iam", "ml", "ml-solvent"):
        raise input_error("density", f"unknown density model {cfg.map.density!r}",
                          "use iam, ml or ml-solvent")
    if isinstance(cfg.stages, str):
        cfg.stages = [s.strip() for s in cfg.stages.split(",") if s.strip()]
    bad = [s for s in cfg.stages if s not in STAGES]
    if bad or not cfg.stages:
        raise input_error("stages", f"unknown or empty stage list {cfg.stages}",
                          f"use a comma-separated subset of {','.join(STAGES)}")
    cfg.stages = [s for s in STAGES if s in cfg.stages]
    for key in ("cycles", "rigid_iterations", "sse_iterations", "xyz_iterations",
                "b_iterations"):
        v = getattr(cfg, key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise input_error(key, f"{v!r} is not a non-negative integer", "give e.g. 5")
    for key in ("target", "b_target"):
        if getattr(cfg.map, key) not in ("cc", "lsq"):
            raise input_error(f"map.{key}", f"unknown target {getattr(cfg.map, key)!r}",
                              "use cc or lsq")
    if not cfg.map.blur_factors or any(float(f) <= 0 for f in cfg.map.blur_factors):
        raise input_error("map.blur_factors", f"{cfg.map.blur_factors} must be positive",
                          "use e.g. [4, 2, 1]")
    cfg.map.blur_factors = [float(f) for f in cfg.map.blur_factors]
    spd = cfg.map.samples_per_d
    if spd is not None:
        if isinstance(spd, bool) or not isinstance(spd, (int, float)) or not 2.0 <= spd <= 10:
            raise input_error("map.samples_per_d", f"{spd!r} is not a number in [2, 10]",
                              "use e.g. 2.5, or null to keep the map's own grid")
        cfg.map.samples_per_d = float(spd)
    if not cfg.rigid_blur_factors or any(float(f) <= 0 for f in cfg.rigid_blur_factors):
        raise input_error("rigid_blur_factors", f"{cfg.rigid_blur_factors} must be positive",
                          "use e.g. [1.0]")
    cfg.rigid_blur_factors = [float(f) for f in cfg.rigid_blur_factors]
    if not cfg.sse_blur_factors or any(float(f) <= 0 for f in cfg.sse_blur_factors):
        raise input_error("sse_blur_factors", f"{cfg.sse_blur_factors} must be positive",
                          "use e.g. [2.0, 1.0]")
    cfg.sse_blur_factors = [float(f) for f in cfg.sse_blur_factors]
    if cfg.reference_sigma is not None and cfg.reference_sigma != "auto":
        if isinstance(cfg.reference_sigma, bool) or not isinstance(cfg.reference_sigma,
                                                                   (int, float)) \
                or not float(cfg.reference_sigma) > 0:
            raise input_error("reference-restraints", f"σ = {cfg.reference_sigma!r} Å must be "
                              "a positive number, auto or null", "give e.g. 0.2 (Å)")
        cfg.reference_sigma = float(cfg.reference_sigma)
    for name in ("ss_restraints", "rama_restraints"):
        setattr(cfg, name, _mode(getattr(cfg, name), name.replace("_", "-")))
    if isinstance(cfg.ss_sigma, bool) or not float(cfg.ss_sigma) > 0:
        raise input_error("ss_sigma", f"σ = {cfg.ss_sigma} Å must be positive", "give e.g. 0.05")
    cfg.ss_sigma = float(cfg.ss_sigma)
    if isinstance(cfg.rama_weight, bool) or not isinstance(cfg.rama_weight, (int, float)) \
            or not cfg.rama_weight >= 0:
        raise input_error("rama_weight", f"{cfg.rama_weight!r} must be a number ≥ 0",
                          "give e.g. 1.0")
    cfg.rama_weight = float(cfg.rama_weight)
    if cfg.max_bond_z is not None:
        if isinstance(cfg.max_bond_z, bool) or not isinstance(cfg.max_bond_z, (int, float)) \
                or not cfg.max_bond_z > 0:
            raise input_error("max_bond_z", f"{cfg.max_bond_z!r} must be a positive number or "
                              "null", "give e.g. 4 (σ), or null to switch the guard off")
        cfg.max_bond_z = float(cfg.max_bond_z)
    for key in ("resolution_check",):
        if not isinstance(getattr(cfg, key), bool):
            raise input_error(key, f"{getattr(cfg, key)!r} is not true/false",
                              f"write {key}: true (or false)")
    if isinstance(cfg.low_resolution, bool) or not isinstance(cfg.low_resolution, (int, float)) \
            or not cfg.low_resolution > 0:
        raise input_error("low_resolution", f"{cfg.low_resolution!r} must be a positive number",
                          "give e.g. 3.5 (Å)")
    cfg.low_resolution = float(cfg.low_resolution)
    for key in ("nonbonded", "nonbonded_final"):
        v = getattr(cfg.weights, key)
        if key == "nonbonded_final" and (v is None or v == "auto"):
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise input_error(key, f"{v!r} must be a number > 0", "use e.g. 1 or 4")
    for key in ("likelihood_cap", "likelihood_cap_final"):
        cap = getattr(cfg.weights, key)
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float))
                                or not cap > 0):
            raise input_error(key, f"{cap!r} must be a positive number or null",
                              "give e.g. 100, or null for no cap")
    if isinstance(cfg.guard_cycles, bool) or not isinstance(cfg.guard_cycles, int) \
            or not 0 <= cfg.guard_cycles <= 10:
        raise input_error("guard_cycles", f"{cfg.guard_cycles!r} is not an integer in [0, 10]",
                          "use e.g. 3")
    if cfg.threads is not None and (not isinstance(cfg.threads, int) or cfg.threads < 1):
        raise input_error("threads", f"{cfg.threads!r} is not a positive integer",
                          "give e.g. 4, or leave it unset")
    w = cfg.weights
    if w.weight is not None and not float(w.weight) > 0:
        raise input_error("weight", f"{w.weight} must be positive", "give e.g. --weight 50")
    if not 0 < float(w.max_angle_rmsd) < 10:
        raise input_error("max-angle-rmsd", f"{w.max_angle_rmsd}° is outside (0, 10)",
                          "use e.g. 1.5")
    if not 0 < float(w.target_bond_rmsd) < 0.1:
        raise input_error("target-bond-rmsd", f"{w.target_bond_rmsd} Å is outside (0, 0.1)",
                          "use e.g. 0.01")
    if isinstance(w.polish_cycles, bool) or not isinstance(w.polish_cycles, int) \
            or not 0 <= w.polish_cycles <= 10:
        raise input_error("polish_cycles", f"{w.polish_cycles!r} is not an integer in [0, 10]",
                          "use e.g. 2 (0 turns the extra geometry cycles off)")
    m = cfg.rotamer_margin
    if m is not None and (isinstance(m, bool) or not isinstance(m, (int, float)) or not m >= 0):
        raise input_error("rotamer_margin", f"{m!r} must be a number >= 0 or null",
                          "give e.g. 0.3 (map σ)")
    if cfg.reference_kind not in ("auto", "position", "torsion"):
        raise input_error("reference_kind", f"{cfg.reference_kind!r} is not known",
                          "use auto, position or torsion")
    for key in ("reference_torsion_sigma", "reference_torsion_limit"):
        v = getattr(cfg, key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise input_error(key, f"{v!r} must be a number > 0", "give degrees, e.g. 3")
    if cfg.riding_hydrogens != "auto" and not isinstance(cfg.riding_hydrogens, bool):
        raise input_error("riding_hydrogens", f"{cfg.riding_hydrogens!r} is not true/false/auto",
                          "write riding_hydrogens: auto (or true, false)")
    for key in ("rotamer_chi2", "rigid_chains", "rigid_side_chains"):
        if not isinstance(getattr(cfg, key), bool):
            raise input_error(key, f"{getattr(cfg, key)!r} is not true/false",
                              f"write {key}: true (or false)")
    lo, hi = (float(x) for x in cfg.b_range)
    if not 0 <= lo < hi:
        raise input_error("b_range", f"{cfg.b_range} is not [min, max]", "use e.g. [2, 300]")
    cfg.b_range = [lo, hi]
    if not isinstance(cfg.b_overall, bool):
        raise input_error("b_overall", f"{cfg.b_overall!r} is not true/false",
                          "write b_overall: true (or false)")
    for key in ("b_sigma", "b_weight_scale"):
        v = getattr(cfg, key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise input_error(key, f"{v!r} must be a positive number", "give e.g. 20 (b_sigma, "
                              "Å²) or 1 (b_weight_scale)")
        setattr(cfg, key, float(v))
    return cfg


def dump_config(cfg: FitConfig) -> str:
    """The resolved config as YAML text."""
    import yaml

    head = "# densrefine fit: resolved configuration (use with --config)\n"
    return head + yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def _parse_yaml(text: str):
    """YAML via PyYAML (ValueError if bad)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None
