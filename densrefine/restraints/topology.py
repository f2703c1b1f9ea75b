"""Model → `RestraintSet` through gemmi's topology code and the CCP4 monomer library.

gemmi (`gemmi.prepare_topology`) applies monomers, modifications and links
(peptide, nucleic-acid backbone, disulfide, glycosidic and the other links in
``mon_lib_list.cif``, plus links named in LINK/struct_conn records).  Connections in
the file for which the library has no link are listed in a `DensrefineWarning`.
Residues without a dictionary raise `InputError` unless ``unknown="self"``, which
restrains them to their own input geometry (`densrefine.restraints.selfgeom`).

Hydrogens present in the model are restrained like any atom (riding is the refine
stage's choice); models without hydrogens get no hydrogens added (``NoChange``).
"""
from __future__ import annotations

import io
import logging
import time
import warnings

import numpy as np

from ..errors import DensrefineWarning, InputError, input_error
from ..io.model import structure_from_model
from ..types import Model
from .monlib import read_library
from .nonbonded import nonbonded_parameters
from .restraint_set import RestraintSet
from .selfgeom import self_restraints

log = logging.getLogger("densrefine")

LINK_MAX = 5.0
"""Å: consecutive residues of a chain whose backbone link atoms (C–N, O3′–P) are further
apart than gemmi links by distance (2.01 / 2.41 Å) but within this bound are linked anyway
(a start model after a domain moved); beyond it they are a chain break, with a warning."""
GAP_NEAR = 6.0
"""Å: link atoms (C, N; O3′, P) of the residues either side of a numbering gap (residues
missing between) closer than this are kept apart by `GAP_MIN` (`RestraintSet.gap_pairs`)."""
GAP_MIN = 3.3
"""Å: the least distance kept between the link atoms across a numbering gap (or their input
distance, if less). A C…N contact under ~3.25 Å is a van der Waals overlap (ener_lib radii
1.7 + 1.55 Å), and cctbx links consecutive residues of a file whose C–N is ≤ 3 Å
(mmtbx ``pdb_interpretation.link_distance_cutoff``), reporting a bond outlier: the map of
the missing residues otherwise pulls the two ends together."""
GEMMI_LINK = {"peptide": 1.341 * 1.5, "nucleic": 1.606 * 1.5}
"""Å: the distance below which gemmi's topology links consecutive residues itself
(gemmi ``in_peptide_bond_distance`` / ``in_nucleotide_bond_distance``)."""
CHIRAL_SIGMA = 0.2
"""Å³; Refmac/servalcat default chiral-volume sigma."""
RIGID_TORSION_SIGMA = 5.0
"""Degrees; period-1 torsions this tight (ω, CONST) make their central bond rigid."""
SKIP_TORSIONS = ("phi", "psi")
"""Link torsions not restrained by default (Refmac and servalcat leave φ/ψ free)."""


def _labels(at) -> np.ndarray:
    alt = np.char.add(np.where(at.altloc == "", "", "."), at.altloc)
    ic = np.char.strip(at.icode.astype(str))
    res = np.char.add(np.char.add(np.char.add(at.res_name.astype(str), " "),
                                  at.res_seq.astype(str)), ic)
    lab = np.char.add(np.char.add(np.char.add(at.chain.astype(str), "/"), res), "/")
    return np.char.add(np.char.add(lab, at.atom_name.astype(str)), alt)


def _residue_ids(at, names) -> list[str]:
    out = []
    sel = np.isin(at.res_name, list(names))
    seen = set()
    for i in np.flatnonzero(sel):
        key = (at.chain[i], at.res_name[i], int(at.res_seq[i]), at.icode[i].strip())
        if key not in seen:
            seen.add(key)
            out.append(f"{key[0]}/{key[1]} {key[2]}{key[3]}")
    return out


def _unknown_error(model, missing) -> InputError:
    ids = _residue_ids(model.atoms, missing)
    more = f" (+{len(ids) - 8} more)" if len(ids) > 8 else ""
    return input_error(
        model.path or "model", f"no restraint dictionary for residue(s) {', '.join(missing)} "
        f"at {', '.join(ids[:8])}{more}",
        "give a CCP4 restraint file with --ligand FILE.cif (Python: ligands=[...]; make one "
        "with AceDRG/eLBOW/GRADE), or use --unknown-residues self (unknown='self') to restrain "
        "them to their input geometry")


def _topology(st, ml, path):
    import gemmi

    kw = dict(h_change=gemmi.HydrogenChange.NoChange, reorder=False)
    out = io.StringIO()
    unknown_links: list[str] = []
    try:
        topo = gemmi.prepare_topology(st, ml, warnings=out, ignore_unknown_links=False, **kw)
    except RuntimeError as exc:
        unknown_links.append(" ".join(str(exc).split()))
        out = io.StringIO()
        try:
            topo = gemmi.prepare_topology(st, ml, warnings=out, ignore_unknown_links=True, **kw)
        except RuntimeError as exc2:
            raise input_error(path, f"gemmi topology failed ({exc2})",
                              "check residue and atom names against the dictionaries") from None
    msgs = [m.strip() for m in out.getvalue().splitlines() if m.strip()]
    return topo, msgs, unknown_links


def _res_id(ch, res) -> str:
    return f"{ch.name}/{res.name} {res.seqid.num}{res.seqid.icode.strip()}"


def _first_atom(res, name):
    for a in res:
        if a.name == name and a.altloc in ("\0", "A"):
            return a
    return None


def _polymer_gaps(st) -> tuple[list, list, list]:
    """Consecutive residues of each chain (numbers i, i + 1 or an insertion code) whose link
    atoms (peptide C–N; nucleotide O3′–P) are too far apart for gemmi to link them.

    Those within `LINK_MAX` get a LINK-like `gemmi.Connection` (TRANS / CIS by ω, PTRANS /
    PCIS before Pro; "p" for nucleotides) appended to ``st.connections``, so gemmi applies
    the full link restraints; the others are chain breaks. Returns (added, breaks), lists of
    dicts with residue ids, atom serials and the distance (Å). Third: numbering gaps
    (residues missing between) whose link atoms are within `GAP_NEAR`, the same dicts.
    """
    import gemmi

    added, breaks, gaps = [], [], []
    for ch in st[0]:
        for r0, r1 in zip(ch, list(ch)[1:]):
            step = r1.seqid.num - r0.seqid.num
            kind = "peptide" if (r0.get_ca() and r1.get_ca() and _first_atom(r0, "C")
                                 and _first_atom(r1, "N")) else "nucleic"
            a0, a1 = (("C", "N") if kind == "peptide" else ("O3'", "P"))
            x0, x1 = _first_atom(r0, a0), _first_atom(r1, a1)
            if x0 is None or x1 is None:
                continue
            d = x0.pos.dist(x1.pos)
            row = {"res1": _res_id(ch, r0), "res2": _res_id(ch, r1), "atoms": f"{a0}-{a1}",
                   "serials": (x0.serial, x1.serial), "distance": round(float(d), 3)}
            if step not in (0, 1):                           # residues missing between
                if step > 1 and d < GAP_NEAR:
                    gaps.append(row)
                continue
            if d < GEMMI_LINK[kind]:
                continue
            if d > LINK_MAX:
                breaks.append(row)
                continue
            if kind == "peptide":
                ca0, ca1 = r0.get_ca(), r1.get_ca()
                omega = np.degrees(gemmi.calculate_dihedral(ca0.pos, x0.pos, x1.pos, ca1.pos))
                link = ("PCIS" if abs(omega) < 90 else "PTRANS") if r1.name == "PRO" else \
                    ("CIS" if abs(omega) < 90 else "TRANS")
            else:
                link = "p"
            con = gemmi.Connection()
            con.name, con.type, con.link_id = f"gap{len(added) + 1}", gemmi.ConnectionType.Covale, link
            con.partner1 = gemmi.AtomAddress(ch.name, r0.seqid, r0.name, a0, x0.altloc)
            con.partner2 = gemmi.AtomAddress(ch.name, r1.seqid, r1.name, a1, x1.altloc)
            st.connections.append(con)
            added.append({**row, "link": link})
    return added, breaks, gaps


def _report_gaps(added, breaks, gaps, keep) -> tuple[tuple, tuple, tuple]:
    """Log the stretched links, breaks and near numbering gaps; atom serials → model
    indices."""
    out = []
    for rows in (added, breaks, gaps):
        for r in rows:
            r["atoms_idx"] = tuple(int(keep[s - 1]) for s in r.pop("serials"))
        out.append(tuple(rows))
    if added:
        log.warning("%d stretched backbone link(s) restrained (consecutive residues %.3g–%.3g Å "
                    "apart, longer than a bond): %s", len(added), GEMMI_LINK["peptide"], LINK_MAX,
                    "; ".join(f"{r['res1']}–{r['res2']} {r['atoms']} {r['distance']:.2f} Å"
                              for r in added[:10]) + (" …" if len(added) > 10 else ""))
    for r in breaks:
        warnings.warn(f"chain break: {r['res1']} and {r['res2']} are consecutive but their "
                      f"{r['atoms']} atoms are {r['distance']:.2f} Å apart (> {LINK_MAX:g} Å): "
                      "not linked", DensrefineWarning, stacklevel=3)
    if gaps:
        log.info("%d numbering gap(s) with the ends within %.3g Å (residues missing between): "
                 "link atoms kept ≥ %.3g Å apart (or their input distance): %s", len(gaps),
                 GAP_NEAR, GAP_MIN, "; ".join(f"{r['res1']}…{r['res2']} {r['atoms']} "
                                              f"{r['distance']:.2f} Å" for r in gaps[:10])
                 + (" …" if len(gaps) > 10 else ""))
    return out[0], out[1], out[2]


def _gap_fields(added, breaks, gaps) -> dict:
    """RestraintSet fields from `_report_gaps`: the rows, and the gap-floor pairs."""
    pairs = np.array([r["atoms_idx"] for r in gaps], np.int64).reshape(-1, 2)
    floor = np.array([min(r["distance"], GAP_MIN) for r in gaps], float)
    return {"links_added": added, "chain_breaks": breaks, "numbering_gaps": gaps,
            "gap_pairs": pairs, "gap_min": floor}


def _check_connections(st, topo) -> list[str]:
    """Connections (LINK/SSBOND/struct_conn) between present atoms that got no link."""
    have = set()
    for ln in topo.extras:
        have.add(frozenset((id(ln.res1), id(ln.res2))))
        have.add(frozenset(((ln.res1.name, ln.res1.seqid.num), (ln.res2.name, ln.res2.seqid.num))))
    out = []
    for c in st.connections:
        cra1, cra2 = st[0].find_cra(c.partner1), st[0].find_cra(c.partner2)
        if cra1.atom is None or cra2.atom is None:
            continue
        key = frozenset(((cra1.residue.name, cra1.residue.seqid.num),
                         (cra2.residue.name, cra2.residue.seqid.num)))
        if key not in have:
            out.append(f"{c.name}: {c.partner1} - {c.partner2}")
    return out


def _arrays(topo) -> dict:
    """Index arrays and ideals from a gemmi Topo (atom index = serial - 1)."""
    b = [(r.atoms[0].serial, r.atoms[1].serial, r.restr.value, r.restr.esd,
          r.restr.value_nucleus, r.restr.esd_nucleus) for r in topo.bonds if r.restr.esd > 0]
    a = [(r.atoms[0].serial, r.atoms[1].serial, r.atoms[2].serial, r.restr.value, r.restr.esd)
         for r in topo.angles if r.restr.esd > 0]
    t = [(*(x.serial for x in r.atoms), r.restr.value, r.restr.esd, max(1, r.restr.period),
          r.restr.label) for r in topo.torsions
         if r.restr.esd > 0 and r.restr.label not in SKIP_TORSIONS]
    rigid = [(r.atoms[1].serial, r.atoms[2].serial) for r in topo.torsions
             if r.restr.period <= 1 and r.restr.esd <= RIGID_TORSION_SIGMA]
    c = []
    for r in topo.chirs:
        sign = str(r.restr.sign).rsplit(".", 1)[-1]
        v = topo.ideal_chiral_abs_volume(r)
        c.append((*(x.serial for x in r.atoms), -v if sign == "Negative" else v, sign == "Both"))
    p = [(x.serial, k, r.restr.esd) for k, r in enumerate(topo.planes) for x in r.atoms]
    bnd = np.array(b, float).reshape(-1, 6)
    ang = np.array(a, float).reshape(-1, 5)
    tor = np.array([x[:7] for x in t], float).reshape(-1, 7)
    chi = np.array(c, float).reshape(-1, 6)
    pla = np.array(p, float).reshape(-1, 3)
    return dict(
        bonds=bnd[:, :2] - 1, bond_ideal=bnd[:, 2], bond_sigma=bnd[:, 3],
        bond_ideal_nucleus=bnd[:, 4], bond_sigma_nucleus=bnd[:, 5],
        angles=ang[:, :3] - 1, angle_ideal=ang[:, 3], angle_sigma=ang[:, 4],
        torsions=tor[:, :4] - 1, torsion_ideal=tor[:, 4], torsion_sigma=tor[:, 5],
        torsion_period=tor[:, 6], torsion_label=np.array([x[7] for x in t], "<U16"),
        chirals=chi[:, :4] - 1, chiral_ideal=chi[:, 4],
        chiral_sigma=np.full(len(chi), CHIRAL_SIGMA), chiral_both=chi[:, 5].astype(bool),
        plane_atoms=pla[:, 0] - 1, plane_id=pla[:, 1], plane_sigma=pla[:, 2],
        rigid_bonds=np.array(rigid, float).reshape(-1, 2) - 1)


def _choose_h_distances(arr, xyz, hydrogen, h_distance) -> str:
    """Use X–H ideals for electron clouds ("xray") or nuclei ("nucleus") in place."""
    bi = np.asarray(arr["bonds"], np.int64)
    nuc = arr.pop("bond_ideal_nucleus")
    nuc_sig = arr.pop("bond_sigma_nucleus")
    has_h = hydrogen[bi].any(1) & np.isfinite(nuc) & (nuc_sig > 0) if len(bi) else bi[:, 0] > 0
    if h_distance == "auto":
        if not has_h.any():
            return "xray"
        d = np.linalg.norm(xyz[bi[has_h, 0]] - xyz[bi[has_h, 1]], axis=1)
        closer = np.abs(d - nuc[has_h]) < np.abs(d - arr["bond_ideal"][has_h])
        h_distance = "nucleus" if closer.mean() > 0.5 else "xray"
    if h_distance == "nucleus":
        arr["bond_ideal"] = np.where(has_h, nuc, arr["bond_ideal"])
        arr["bond_sigma"] = np.where(has_h, nuc_sig, arr["bond_sigma"])
    return h_distance


PUCKERS = ("C2e-", "C3e-")
"""Label prefixes of the monomer library's alternative ribose restraints: every nucleotide
carries both a C2′-endo and a C3′-endo set of ring torsions (ν0–ν4) and glycosidic χ, which
cannot hold at once (on 6YYT's RNA both sets gave a torsion RMSZ of 12–19 and pulled the
deposited sugars 0.8 Å away)."""


def _one_pucker(arr: dict, atoms) -> dict:
    """Keep, per residue, only the sugar-pucker torsion set the input is closer to.

    The alternative sets (`PUCKERS`) are scored by Σ z² of their torsions at the input
    coordinates; the other set of that residue is dropped (the pucker does not change in a
    refinement: a conformational change of that size needs rebuilding).
    """
    import torch  # lazy: building restraints must not pull torch into CLI start-up

    from .energy import dihedrals_deg, torsion_deviation

    labels = np.asarray(arr["torsion_label"]).astype(str)
    alt = np.array([lab[:4] if lab.startswith(PUCKERS) else "" for lab in labels])
    if not (alt != "").any():
        return arr
    idx = np.asarray(arr["torsions"], np.int64)
    with torch.no_grad():
        th = dihedrals_deg(torch.tensor(np.asarray(atoms.xyz, np.float64)),
                           torch.as_tensor(idx))
        dev = torsion_deviation(th, torch.as_tensor(np.asarray(arr["torsion_ideal"], float)),
                                torch.as_tensor(np.asarray(arr["torsion_period"], float)))
    z2 = (dev.numpy() / np.asarray(arr["torsion_sigma"], float)) ** 2
    res = np.asarray(atoms.res_index)[idx[:, 1]]
    drop = np.zeros(len(labels), bool)
    chosen = {}
    for r in np.unique(res[alt != ""]):
        here = (res == r) & (alt != "")
        score = {p: z2[here & (alt == p)].sum() for p in PUCKERS if (here & (alt == p)).any()}
        if len(score) < 2:
            continue
        best = min(score, key=score.get)
        chosen[best] = chosen.get(best, 0) + 1
        drop |= here & (alt != best)
    if drop.any():
        for k in ("torsions", "torsion_ideal", "torsion_sigma", "torsion_period", "torsion_label"):
            arr[k] = np.asarray(arr[k])[~drop]
        log.info("Sugar puckers: %s (the library's other alternative set of ring torsions "
                 "left out per residue)", ", ".join(f"{n} {p[:2]}′-endo" for p, n in
                                                    sorted(chosen.items())))
    return arr


def _chem_types(topo, n) -> np.ndarray:
    """Energy type (ener_lib) of each atom from the final (modified) monomer."""
    types = np.full(n, "", dtype=object)
    for ch in topo.chain_infos:
        for ri in ch.res_infos:
            for fcc in ri.chemcomps:
                cc_types = {a.id: a.chem_type for a in fcc.cc.atoms}
                for atom in ri.res:
                    if fcc.altloc in ("\0", atom.altloc) and atom.name in cc_types:
                        types[atom.serial - 1] = cc_types[atom.name]
    return types


def _known_part(model, missing):
    """Model without the residues in ``missing``; chains are split where one was cut
    (new chain labels), so gemmi makes no polymer link across the gap.

    Returns the sub-model and the original index of each of its atoms.
    """

    at = model.atoms
    unk = np.isin(at.res_name, list(missing))
    first = np.r_[True, at.res_index[1:] != at.res_index[:-1]]
    seg = np.cumsum(unk & first)
    chain = np.where(seg > 0, np.char.add(np.char.add(at.chain.astype(str), "~"),
                                          seg.astype(str)), at.chain)
    keep = np.flatnonzero(~unk)
    sub = at.replace(chain=chain.astype("<U8")).select(keep)
    return Model(atoms=sub, cell=model.cell, space_group=model.space_group), keep


def _remap(arr: dict, keep) -> dict:
    for k in ("bonds", "angles", "torsions", "chirals", "plane_atoms", "rigid_bonds"):
        arr[k] = keep[np.asarray(arr[k], np.int64)]
    return arr


def _merge(base: dict, extra: dict) -> dict:
    for k, v in extra.items():
        base[k] = np.concatenate([base[k], v]) if k != "plane_id" else np.concatenate(
            [base[k], v + (base[k].max() + 1 if len(base[k]) else 0)])
    return base


def build_restraints(model, *, monlib=None, ligands=(), unknown="error",
                     h_distance="auto") -> RestraintSet:
    """Geometry restraints of a model from the CCP4 monomer library (via gemmi).

    Parameters
    ----------
    model : Model
        Atoms in any order; indices of the result refer to ``model.atoms``.
    monlib : str, optional
        Monomer library directory (default: `find_monlib` search order).
    ligands : sequence of str
        Extra CCP4 restraint dictionaries (``--ligand FILE.cif``).
    unknown : {"error", "self"}
        What to do with residues that have no dictionary: raise `InputError`
        listing them, or restrain them to their own input geometry (warning).
    h_distance : {"auto", "xray", "nucleus"}
        X–H bond ideals: electron-cloud ("xray", shorter, the library's ``value``),
        nuclear positions ("nucleus", ``value_nucleus``), or "auto": whichever the
        input's hydrogens are closer to (models differ: 3J6B uses electron-cloud,
        3IO0 nuclear distances).

    Returns
    -------
    RestraintSet

    Raises
    ------
    InputError
        Unknown residues with ``unknown="error"``, bad library/ligand files.

    Examples
    --------
    >>> from densrefine.build import ideal_peptide
    >>> rs = build_restraints(ideal_peptide("AKE"))
    >>> rs.counts()["bonds"]
    22
    """

    if unknown not in ("error", "self"):
        raise input_error("unknown", f"invalid value {unknown!r}", "use 'error' or 'self'")
    if h_distance not in ("auto", "xray", "nucleus"):
        raise input_error("h_distance", f"invalid value {h_distance!r}",
                          "use 'auto', 'xray' or 'nucleus'")
    t0 = time.perf_counter()
    at = model.atoms
    ml, missing = read_library(np.unique(at.res_name).tolist(), monlib=monlib, ligands=ligands)
    if missing and unknown == "error":
        raise _unknown_error(model, missing)
    sub, keep = _known_part(model, missing) if missing else (model, np.arange(len(at)))
    st = structure_from_model(sub)
    if model.handle is not None:  # LINK/SSBOND/struct_conn records address atoms by name
        st.connections = model.handle.connections
    gaps = _polymer_gaps(st)
    topo, msgs, unknown_links = _topology(st, ml, model.path)
    unknown_links += _check_connections(st, topo)
    arr = _one_pucker(_remap(_arrays(topo), keep), at)
    h_mode = _choose_h_distances(arr, at.xyz, at.is_hydrogen, h_distance)
    if missing:
        sel = np.isin(at.res_name, missing)
        warnings.warn(f"restraining {len(_residue_ids(at, missing))} residue(s) without a "
                      f"dictionary ({', '.join(missing)}) to their input geometry",
                      DensrefineWarning, stacklevel=2)
        arr = _merge(arr, self_restraints(at, sel))
    if unknown_links:
        warnings.warn("no library link for: " + "; ".join(unknown_links[:10]) +
                      " (not restrained)", DensrefineWarning, stacklevel=2)
    if msgs:
        log.debug("gemmi topology warnings:\n%s", "\n".join(msgs))
    types = np.full(len(at), "", dtype=object)
    types[keep] = _chem_types(topo, len(keep))
    nb = nonbonded_parameters(at, types, arr["bonds"], ml.ener_lib, arr["plane_atoms"],
                              arr["plane_id"], arr.pop("rigid_bonds"))
    rs = RestraintSet(n_atoms=len(at), **arr, **nb, altloc=at.altloc, hydrogen=at.is_hydrogen,
                      labels=_labels(at), unknown_residues=tuple(missing),
                      unknown_links=tuple(unknown_links), monlib=str(ml.monomer_dir),
                      **_gap_fields(*_report_gaps(*gaps, keep)))
    c = rs.counts()
    log.info("Restraints from the CCP4 monomer library via gemmi topology: %d bonds, %d angles, "
             "%d torsions, %d chirals, %d planes, %d links without dictionary, %d unknown "
             "residue type(s), X-H ideals %s (%.2f s)", c["bonds"], c["angles"], c["torsions"],
             c["chirals"], c["planes"], len(unknown_links), len(missing), h_mode,
             time.perf_counter() - t0)
    return rs
