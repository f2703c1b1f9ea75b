"""The stats dict of ``fit`` (``<prefix>_stats.json``); the HTML report is `densrefine.report.html`.

Stats layout (a stable contract; keys only get added)::

    program, version, versions, device, status ("running" | "finished" | "stopped: ...")
    input: model, map, resolution, selection, n_atoms, n_moving, unknown_residues
        (names restrained to their input geometry), resolution_estimate (when -d is absent)
    config: the resolved FitConfig
    before / after: every `densrefine.scoring.score` field (cc_mask, cc_box, cc_volume,
        cc_peaks, rsr, fsc, d_fsc05, residues (each with "ss": H/E/C from the Cα trace),
        ...) + "geometry" (bond_rmsd, angle_rmsd, outliers, clashes: whatever
        `densrefine.restraints.geometry_stats` gives) + "validation" (Ramachandran,
        rotamers, clashscore with H placed: `densrefine.validation.validate`, no map)
    cycles: one record per optimisation call (stage, cycle, blur, weight, target,
        cc_mask_term, bond_rmsd, angle_rmsd, time_s; r_work/r_free for X-ray data,
        cc_work/cc_free for half maps)
    chain: stretched_links (consecutive residues 2–5 Å apart that were linked and
        restrained) and breaks (> 5 Å, left unlinked), each with res1, res2, atoms,
        distance at the start and distance_after (Å)
    xray / half_maps: the data term's own blocks (R before/after; FSC_work/FSC_free)
    timings: setup_s, total_s;  rmsd_moved: RMSD (Å) between start and final positions
"""
from __future__ import annotations

import logging

import numpy as np

from .. import __version__
from ..device import describe_device
from ..report.provenance import versions_str
from ..errors import DensrefineError
from ..restraints.chains import secondary_structure, trace, trace_fragments
from ..scoring import score
from ..validation import validate

log = logging.getLogger("densrefine")


def _score_block(model, emap, d, dev, geom, table="electron", density="iam"):
    rep = score(model, emap, d, device=dev, table=table, density=density).to_dict()
    rep["geometry"] = geom.stats(np.asarray(model.atoms.xyz, np.float64))
    _add_secondary_structure(rep["residues"], model.atoms)
    try:
        rep["validation"] = validate(model, resolution=d, residues=False).to_dict()
    except DensrefineError as exc:          # e.g. no residue the validation knows
        log.info("Validation skipped: %s", exc)
    return rep


def _add_secondary_structure(residues, atoms) -> None:
    """Per-residue ``ss`` ("H", "E", "C") from the Cα trace (`restraints.chains`), for the
    report's strip; residues without a trace atom (ligands, waters) get none."""
    pos, kind = trace(atoms)
    if not len(pos):
        return
    chain = np.empty(len(pos), object)
    chain[atoms.res_index] = atoms.chain
    ss = np.full(len(pos), "", dtype="<U1")
    for frag in trace_fragments(pos, kind, chain):
        ss[frag] = secondary_structure(pos[frag]) if kind[frag[0]] == 1 else "C"
    by_key = {(c, int(n), i.strip()): ss[k] for k, c, n, i in
              zip(atoms.res_index, atoms.chain, atoms.res_seq, atoms.icode)}
    for r in residues:
        label = by_key.get((r.get("chain"), r.get("res_seq"), (r.get("icode") or "").strip()))
        if label:
            r["ss"] = str(label)


def start_stats(model, emap, d, cfg, select, moving, dev, geom) -> dict:
    """Stats dict with the "before" block, before any refinement."""
    before = _score_block(model, emap, d, dev, geom, cfg.map.table, cfg.map.density)
    g = before["geometry"]
    log.info("Before: CC_mask %.4f, CC_box %.4f, bond RMSD %.4f Å, angle RMSD %.3f°",
             before["cc_mask"], before["cc_box"], g.get("bond_rmsd", float("nan")),
             g.get("angle_rmsd", float("nan")))
    return {"program": "densrefine fit", "version": __version__, "versions": versions_str(),
            "device": describe_device(dev), "status": "running",
            "input": {"model": model.path, "map": emap.path, "resolution": d,
                      "selection": select if isinstance(select, str) else None,
                      "n_atoms": len(model), "n_moving": int(moving.sum()),
                      "unknown_residues": list(getattr(geom.restraints,
                                                       "unknown_residues", ()) or ())},
            "config": cfg.to_dict(), "before": before, "cycles": [], "after": None,
            "chain": _chain_block(geom.restraints, model.atoms.xyz), "timings": {}}


def _chain_block(rs, xyz) -> dict:
    """Stretched polymer links restrained and chain breaks found in the start model."""
    rows = {"stretched_links": [dict(r) for r in getattr(rs, "links_added", ())],
            "breaks": [dict(r) for r in getattr(rs, "chain_breaks", ())],
            "numbering_gaps": [dict(r) for r in getattr(rs, "numbering_gaps", ())]}
    for r in rows["stretched_links"] + rows["breaks"] + rows["numbering_gaps"]:
        r["atoms_idx"] = [int(i) for i in r["atoms_idx"]]
    return rows


def _finish_chain(stats, xyz) -> None:
    """Each stretched link, break and near numbering gap of the start with its distance in
    the result (Å)."""
    chain = stats.get("chain") or {}
    for r in (chain.get("stretched_links", []) + chain.get("breaks", [])
              + chain.get("numbering_gaps", [])):
        i, j = r["atoms_idx"]
        r["distance_after"] = round(float(np.linalg.norm(xyz[i] - xyz[j])), 3)
    if chain.get("stretched_links"):
        log.info("Stretched links: %s", "; ".join(
            f"{r['res1']}–{r['res2']} {r['atoms']} {r['distance']:.2f} → "
            f"{r['distance_after']:.2f} Å" for r in chain["stretched_links"]))


def finish_stats(stats, start, new, emap, d, dev, geom, elapsed) -> None:
    """Fill "after", the timings and the start→final RMSD ("rmsd_moved", Å)."""
    mc = (stats.get("config") or {}).get("map", {})
    after = _score_block(new, emap, d, dev, geom, mc.get("table", "electron"),
                         mc.get("density", "iam"))
    stats["after"] = after
    stats["timings"]["total_s"] = elapsed
    dx = new.atoms.xyz - start.atoms.xyz
    stats["rmsd_moved"] = float(np.sqrt((dx ** 2).sum(1).mean()))
    _finish_chain(stats, np.asarray(new.atoms.xyz))
    g = after["geometry"]
    log.info("After:  CC_mask %.4f, CC_box %.4f, bond RMSD %.4f Å, angle RMSD %.3f° "
             "(%.1f s)", after["cc_mask"], after["cc_box"], g.get("bond_rmsd", float("nan")),
             g.get("angle_rmsd", float("nan")), elapsed)
