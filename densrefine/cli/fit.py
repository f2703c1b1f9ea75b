"""Refine a model into a cryo-EM map or X-ray data: rigid body, coordinates and B-factors.

Target = w · map term (least squares with a fitted scale over an atom mask, or −CC)
+ geometry (CCP4 monomer library via gemmi: bonds, angles, torsions, chirality, planes,
links, nonbonded repulsion). The map is cut to a box around the refined atoms; the blur
goes from coarse to fine over the macro cycles; w is adjusted so that bond RMSD lands
near --target-bond-rmsd and angle RMSD stays below --max-angle-rmsd. Without -d the
map's resolution is estimated (d_model: the best masked model-map CC over cut-offs).
Hydrogens stay in the geometry but not in the map term; zero-occupancy atoms too.

Outputs (never overwriting the inputs):
  PREFIX.pdb or PREFIX.cif   refined model, in the input model's format
  PREFIX_stats.json          before/after scores and geometry, per-cycle records
                             (rewritten atomically after every cycle)
  PREFIX.log                 log with versions, command line and per-cycle table
  PREFIX_config.yaml         resolved configuration (reusable with --config)
  PREFIX_report.html         per-residue CC before/after, FSC curve, CC per cycle

X-ray data (MTZ, or mmCIF structure factors) instead of a map: by default
(--xray-target ml) the model is refined against |F_obs| of the work reflections with the
amplitude likelihood (Read 1986; D and S per resolution bin from the work set) through
F_calc (FFT with the space-group symmetry, X-ray table) with bulk solvent, anisotropic
scaling and the twin model held fixed within a cycle and refitted between cycles;
--xray-target lsq uses least squares instead; --xray-target real-space refines in real
space against a 2mFo-DFc map on a P1 box around the model (the file's map coefficients
FWT/PHWT, 2FOFCWT/PH2FOFCWT when present, else computed with sigmaA weights; --xray-map).
-d defaults to the data's resolution. R-work/R-free are computed after every cycle,
logged and stored (stats "xray" block and per-cycle "r_work"/"r_free"), with a warning
when R-free rises while R-work falls.

--select syntax: CHAIN, CHAIN/N or CHAIN/FIRST-LAST, comma-separated, e.g.
"A/10-40,B"; unselected atoms stay fixed but count in the map and nonbonded terms.

--partition auto|chains|N refines a huge model in blocks in parallel on Dask (each with a
halo of fixed neighbours and its own map box; alternating shifted partitions; geometry
across the block boundaries checked at the end; docs/batch.md).

examples:
  densrefine fit example_maps/helix_start.pdb example_maps/helix_3A.mrc -d 3.0 -o helix_fit
  densrefine fit model.cif emd_3488.mrc -d 3.2 -o fit --select A/10-40 --stages xyz
  densrefine fit 3io0.pdb 3io0-sf.mtz -o 3io0_fit             # X-ray data
"""
from __future__ import annotations

import logging
import os
import sys
import warnings

import numpy as np

from ..errors import DensrefineWarning
from . import _partition

log = logging.getLogger("densrefine")


def add_args(p) -> None:
    p.add_argument("model", help="atomic model (.pdb/.cif, optionally .gz)")
    p.add_argument("map", nargs="?", help="map (.mrc/.map/.ccp4) in the model's frame, or X-ray "
                   "data (.mtz, mmCIF structure factors); optional with --half-maps")
    g = p.add_argument_group("the flags most users need")
    g.add_argument("-d", "--resolution", type=float,
                   help="map resolution in Å (default for maps: estimated from the map and "
                        "the starting model as d_model, said in the log; for X-ray data: the "
                        "data's high-resolution limit)")
    g.add_argument("-o", "--output-prefix", required=True, metavar="PREFIX",
                   help="output prefix (PREFIX.pdb/.cif, PREFIX_stats.json, PREFIX.log, ...)")
    g.add_argument("--select", metavar="SEL", help='atoms to refine, e.g. "A/10-40,B" '
                   "(default: all)")
    g.add_argument("--stages", metavar="LIST", help="comma-separated subset of "
                   "rigid,sse,chi1,xyz,b: rigid body (model, chains), rigid secondary-structure "
                   "elements, chi1 rotamer scan, coordinates, B (default: all)")
    g.add_argument("--cycles", type=int, metavar="N", help="macro cycles of the xyz stage "
                   "(default: 4)")
    g.add_argument("--weight", type=float, metavar="W", help="fixed map weight (default: "
                   "automatic)")
    g.add_argument("--target-bond-rmsd", type=float, metavar="Å",
                   help="bond RMSD the automatic weight aims at (default: 0.01)")
    g.add_argument("--max-angle-rmsd", type=float, metavar="DEG",
                   help="the automatic weight also keeps angle RMSD below this; often the "
                        "limit that binds first (default: 1.5)")
    r = p.add_argument_group("restraints")
    r.add_argument("--monlib", metavar="DIR", help="CCP4 monomer library (default: "
                   "$CLIBD_MON, else the copy in the coot-headless-api package)")
    r.add_argument("--ligand", action="append", default=[], metavar="F.cif",
                   help="restraint dictionary for a residue missing from the library "
                        "(repeatable)")
    r.add_argument("--reference-restraints", type=float, metavar="SIGMA",
                   help="restrain every refined atom to its starting position (after the "
                        "rigid-body stages) with sigma in Å, e.g. 0.2; for low resolution "
                        "(default: off)")
    r.add_argument("--ss-restraints", choices=["auto", "on", "off"],
                   help="secondary-structure O-N H-bond restraints from the model's HELIX/SHEET "
                        "records, else detected (DSSP-like); auto: on at 3.5 Å or worse "
                        "(default: auto)")
    r.add_argument("--rama-restraints", choices=["auto", "on", "off"],
                   help="Ramachandran restraints (-2 log p(phi, psi), von Mises mixtures fitted "
                        "to well-refined models); auto: on at 3.5 Å or worse (default: auto)")
    r.add_argument("--unknown-residues", choices=["error", "self"], default="error",
                   help="residues missing from the library: stop, or restrain them to their "
                        "own input geometry (default: %(default)s)")
    p.add_argument("--config", metavar="Y", help="YAML configuration (see PREFIX_config.yaml)")
    p.add_argument("--target", choices=["cc", "lsq"], help="map term of the rigid-body and "
                   "coordinate stages: -CC or least squares with a fitted scale (default: "
                   "lsq, measured to converge further)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--density", choices=["iam", "ml"],
                   help="density model of the model map: independent atoms, or IAM plus the "
                        "learned deformation density (default: iam)")
    h = p.add_argument_group("half maps")
    h.add_argument("--half-maps", nargs=2, metavar=("H1", "H2"),
                   help="the two independent half maps: refine against H1 (or their average, "
                        "--half-map-work average) and cross-validate with H2 (CC_free per "
                        "cycle, FSC_work/FSC_free in the stats); MAP, if given, is checked "
                        "against them")
    h.add_argument("--half-map-work", choices=["half1", "average"], default="half1",
                   help="what to refine against (default: %(default)s; with 'average' the "
                        "free half is part of the work map)")
    x = p.add_argument_group("X-ray data")
    x.add_argument("--labin", metavar="COLS", help='reflection columns, e.g. "FP,SIGFP,FreeR_flag" '
                   "(default: chosen automatically)")
    x.add_argument("--twin", default="auto", metavar="auto|off|on|LAW",
                   help="twin model of the R factors (see densrefine rfactor --help; "
                        "default: %(default)s)")
    x.add_argument("--xray-target", choices=["auto", "ml", "lsq", "real-space"], default="auto",
                   help="X-ray data term: ml (amplitude likelihood with sigmaA-type D and S per "
                        "resolution bin from the work set), lsq (least squares on |F_obs|), both "
                        "through F_calc with bulk solvent and scales; or real-space (the map "
                        "term on the 2mFo-DFc map); auto = ml (default: %(default)s)")
    x.add_argument("--xray-map", choices=["auto", "file", "compute"], default="auto",
                   help="2mFo-DFc map from the file's coefficients (file), computed with "
                        "sigmaA from F_obs and the model (compute), or the file's when present "
                        "(auto, default)")
    _partition.add_args(p)


def _overrides(args) -> dict:
    cfg: dict = {}
    if args.stages is not None:
        cfg["stages"] = args.stages
    if args.cycles is not None:
        cfg["cycles"] = args.cycles
    if getattr(args, "reference_restraints", None) is not None:
        cfg["reference_sigma"] = args.reference_restraints
    if getattr(args, "ss_restraints", None) is not None:
        cfg["ss_restraints"] = args.ss_restraints
    if getattr(args, "rama_restraints", None) is not None:
        cfg["rama_restraints"] = args.rama_restraints
    w = {k: v for k, v in (("weight", args.weight),
                           ("target_bond_rmsd", args.target_bond_rmsd),
                           ("max_angle_rmsd", args.max_angle_rmsd)) if v is not None}
    if w:
        cfg["weights"] = w
    if args.target:
        cfg.setdefault("map", {})["target"] = args.target
    if getattr(args, "density", None):
        cfg.setdefault("map", {})["density"] = args.density
    return cfg


def outputs(args) -> dict:
    """Every file ``densrefine fit`` writes, by role (checked before anything runs)."""
    from ..errors import input_error

    pre = args.output_prefix
    if not pre or pre.endswith(("/", os.sep)) or os.path.isdir(pre) \
            or os.path.basename(pre) in (".", ".."):
        raise input_error(pre or "-o", "the output prefix is a folder, not a file-name prefix",
                          f"give a prefix inside it, e.g. -o {os.path.join(pre or '.', 'fit')}")
    low = args.model.lower().removesuffix(".gz")
    ext = ".cif" if low.endswith((".cif", ".mmcif")) else ".pdb"
    return {"model": pre + ext, "stats": pre + "_stats.json", "log": pre + ".log",
            "config": pre + "_config.yaml", "report": pre + "_report.html"}


def _inputs(args) -> list:
    return [args.model, args.map, args.config, *args.ligand, *(args.half_maps or ())]


def _load_config(args):
    """The resolved config; errors in the --config file name the file."""
    from ..errors import InputError, check_readable
    from ..refine import load_config

    if args.config:
        check_readable(args.config, "a YAML config", "give the YAML written as PREFIX_config.yaml")
        try:
            load_config(path=args.config)
        except InputError as exc:
            msg = str(exc)
            if not msg.startswith(str(args.config)):
                raise InputError(f"{args.config}: {msg}") from None
            raise
    return load_config(_overrides(args), path=args.config)


def _check_ligands(paths, model) -> None:
    """Each --ligand file must hold at least one restraint dictionary (data_comp_XXX
    with _chem_comp_atom rows); one only for residues absent from the model is a warning."""
    import gemmi

    from ..errors import check_readable, input_error

    names = set(np.asarray(model.atoms.res_name).astype(str).tolist())
    for path in paths:
        check_readable(path, "a restraint dictionary", "give a CCP4 monomer-library .cif")
        try:
            doc = gemmi.cif.read(path)
        except (RuntimeError, ValueError, OSError) as exc:
            msg = " ".join(str(exc).split())[:150]
            raise input_error(path, f"cannot be read as mmCIF ({msg})",
                              "give a CCP4 restraint dictionary (data_comp_XXX blocks)") from None
        comps = [b.name[5:] for b in doc if b.name.startswith("comp_")
                 and b.name != "comp_list" and len(b.find_values("_chem_comp_atom.atom_id"))]
        if not comps:
            raise input_error(path, "holds no restraint dictionary (no data_comp_XXX block "
                              "with _chem_comp_atom rows)", "give the dictionary written by "
                              "AceDRG, eLBOW or GRADE for the ligand")
        if not set(comps) & names:
            warnings.warn(f"{path}: defines {', '.join(sorted(comps))}, which the model "
                          "does not contain; the dictionary is not used",
                          DensrefineWarning, stacklevel=2)


class _Progress:
    """Per-call callback of ``fit``: the first call commits the run (inputs validated: log
    file, config), then the stats JSON is rewritten atomically; a bar on a terminal.

    On a terminal (``stream.isatty()``, console log at INFO or more verbose), one tqdm bar
    over the expected optimisation calls shows the stage, the CC (at the fixed reference
    ``cc_mask_ref`` when the records carry it, else the map term) and the bond RMSD; the
    console log lines go through ``tqdm.write`` meanwhile, so they print above the bar.
    Elsewhere (a pipe, a file, ``-q``) there is no bar and the log table stays as it is.

    Parameters
    ----------
    out : dict
        The command's outputs by role (`outputs`).
    cfg_text : str
        The resolved config, written when the run is committed.
    total : int
        Expected number of optimisation calls (`_n_calls`); grows if exceeded.
    stream : file-like, optional
        Where the bar goes (default: ``sys.stderr`` at call time).
    """

    def __init__(self, out, cfg_text, total, stream=None):
        self.out, self.cfg_text, self.total = out, cfg_text, total
        self.stream = stream if stream is not None else sys.stderr
        self.stats, self.bar, self._swapped = None, None, []

    def __call__(self, stats):
        from ..io.atomic import write_text_atomic
        from ..report import write_json_atomic
        from ._common import commit

        if self.stats is None:
            commit(self.out["log"])
            write_text_atomic(self.out["config"], self.cfg_text)
        self.stats = stats
        # one line while running (C encoder: ~10x faster than indented JSON); the final
        # file is written indented by main()
        write_json_atomic(self.out["stats"], stats, indent=None)
        if self.bar is None and self.wants_bar():
            self._open()
        if self.bar is not None:
            self._update(stats)

    def wants_bar(self) -> bool:
        """A terminal, and a console log that is not quieted (-q)."""
        isatty = getattr(self.stream, "isatty", None)
        if not (isatty and isatty()):
            return False
        levels = [h.level for h in self._console()]
        return not levels or min(levels) <= logging.INFO

    def _console(self):
        """The CLI's console log handlers that write where the bar goes."""
        return [h for h in log.handlers if getattr(h, "_densrefine_console", False)
                and getattr(h, "stream", None) is self.stream]

    def _open(self):
        from tqdm import tqdm

        try:   # a terminal that reports no size (0 columns) would get an empty bar
            cols = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            cols = 0
        width = {"dynamic_ncols": True} if cols else {"ncols": 100, "nrows": 24}
        self.bar = tqdm(total=self.total, desc="fit", unit="call", file=self.stream,
                        leave=True, mininterval=0, **width,
                        bar_format="{desc} {bar} {n_fmt}/{total_fmt} calls "
                                   "[{elapsed}<{remaining}{postfix}]")
        writer = _TqdmWriter(self.stream)
        for h in self._console():   # console lines print above the bar, not through it
            self._swapped.append((h, h.setStream(writer)))

    def _update(self, stats):
        cyc = stats.get("cycles") or []
        if len(cyc) > self.bar.n:
            c = cyc[-1]
            if len(cyc) > self.bar.total:
                self.bar.total = len(cyc)
            ref = c.get("cc_mask_ref")
            cc = ref if ref is not None else c.get("cc_mask_term")
            what = "CC_mask" if ref is not None else "CC (map term)"
            bond = c.get("bond_rmsd")
            self.bar.set_description_str(f"fit: {c.get('stage', '?')}", refresh=False)
            self.bar.set_postfix_str(
                (f"{what} {cc:.4f}" if cc is not None else f"{what} n/a")
                + (f", bond RMSD {bond:.4f} Å" if bond is not None else ""), refresh=False)
            self.bar.update(len(cyc) - self.bar.n)
            if self.bar.n >= self.bar.total:
                self.bar.set_description_str("fit: scoring the refined model")
        if stats.get("status") != "running":
            self.close(stats.get("status", ""))

    def close(self, status: str = "") -> None:
        """Finish the bar and give the console log its stream back."""
        if self.bar is None:
            return
        self.bar.set_description_str(f"fit: {status}" if status else "fit", refresh=False)
        self.bar.close()
        for h, old in self._swapped:
            h.setStream(old)
        self.bar, self._swapped = None, []


    def interrupted(self, what: str) -> None:
        """Mark the stats JSON of an interrupted run (the file stays complete JSON)."""
        from ..report import write_json_atomic

        self.close(what)
        if self.stats is not None:
            self.stats["status"] = what
            self.stats["warnings"] = _warnings()
            write_json_atomic(self.out["stats"], self.stats)


class _TqdmWriter:
    """A stream for the console log handler that writes around the tqdm bar."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        from tqdm import tqdm

        tqdm.write(text, file=self.stream, end="")

    def flush(self):
        self.stream.flush()


def _warnings() -> list:
    from ._common import warnings_seen

    return warnings_seen()


def main(args) -> int:
    from ..device import resolve_device
    from ..io import looks_like_map, read_map, read_model, write_model
    from ..io.atomic import write_text_atomic
    from ..refine import dump_config
    from ..report import write_json_atomic
    from ..report.html import report_html
    from ..simulate.params import check_params
    from . import _common

    if args.resolution is not None:      # fit's own check and message, before torch
        check_params(args.resolution)
    if args.partition:
        return _partition.main(args)
    if args.map is not None:
        _common.check_order(args.model, args.map, "map or reflection",
                            "densrefine fit MODEL MAP -o PREFIX")
    out = _common.plan_outputs(outputs(args), _inputs(args))
    cfg = _load_config(args)
    model = read_model(args.model)  # inputs before the device: refusals need no torch
    _check_ligands(args.ligand, model)
    data = args.map          # X-ray data (or nothing beside half maps) are read by fit
    if data is not None and looks_like_map(data):
        data = read_map(data)
    halves = None if not args.half_maps else tuple(read_map(h) for h in args.half_maps)
    dev = resolve_device(args.device)
    _common.log_device(dev)
    progress = _Progress(out, dump_config(cfg), _n_calls(cfg, model))
    from ..refine import fit  # the engine imports torch: inputs are read by now

    try:
        res = fit(model, data, args.resolution, config=cfg, select=args.select, device=dev,
                  seed=args.seed, monlib=args.monlib, ligands=tuple(args.ligand),
                  unknown=args.unknown_residues, callback=progress, labin=args.labin,
                  xray_map=args.xray_map, twin=args.twin, xray_target=args.xray_target,
                  half_maps=halves,
                  half_map_work=args.half_map_work)
    except KeyboardInterrupt as exc:
        progress.interrupted("terminated (SIGTERM)" if isinstance(exc, _common.Terminated)
                             else "interrupted")
        raise
    _common.commit(out["log"])
    unk = res.stats.get("input", {}).get("unknown_residues") or []
    if unk:
        log.warning("%s: residue(s) %s have no restraint dictionary and were restrained to "
                    "their own input geometry; give --ligand DICT.cif for real restraints",
                    args.model, ", ".join(unk))
    write_model(res.model, out["model"], inputs=_inputs(args))
    res.stats["outputs"] = {k: os.path.abspath(v) for k, v in out.items()}
    res.stats["warnings"] = res.stats.get("warnings", []) + _warnings()
    write_json_atomic(out["stats"], res.stats)
    write_text_atomic(out["report"], report_html(res.stats))
    for key in ("stats", "config", "report", "log"):
        log.info("Wrote %s", out[key])
    return 0


def _n_calls(cfg, model) -> int:
    import numpy as np

    n = 0
    if "rigid" in cfg.stages:
        chains = len(set(np.asarray(model.atoms.chain).tolist()))
        n += len(set(cfg.rigid_blur_factors)) * (2 if cfg.rigid_chains and chains > 1 else 1)
    n += len(set(cfg.sse_blur_factors)) if "sse" in cfg.stages else 0
    return n + ("chi1" in cfg.stages) + (cfg.cycles if "xyz" in cfg.stages else 0) \
        + ("b" in cfg.stages)
