"""`RestraintSet`: geometry restraints as frozen numpy arrays (no torch, no gemmi).

All indices point into ``model.atoms`` order (0-based).  Units: Å, degrees, Å³.

===================  ===========  ==========================================================
field                shape/dtype  meaning
===================  ===========  ==========================================================
bonds                (nb, 2) i8   atom pairs; ``bond_ideal`` Å, ``bond_sigma`` Å
angles               (na, 3) i8   (a1, centre, a3); ``angle_ideal``/``angle_sigma`` degrees
torsions             (nt, 4) i8   ``torsion_ideal``/``torsion_sigma`` deg, ``torsion_period``
chirals              (nc, 4) i8   (centre, a1, a2, a3); ``chiral_ideal`` signed volume Å³
                                  ``(a1-c)·((a2-c)×(a3-c))``; ``chiral_both`` restrains |V|
plane_atoms          (np,) i8     atoms of all planes, ``plane_id`` (np,) plane of each row,
                                  ``plane_sigma`` (np,) Å
vdw_radius           (N,) f8      vdW radius Å (ener_lib, by energy type; united-atom
                                  ``vdwh_radius`` when the model has no hydrogens)
clash_radius         (N,) f8      explicit-atom ``vdw_radius`` Å (1-4 pairs, clash counts)
ion_radius           (N,) f8      ionic radius Å (NaN when none)
hb_type              (N,) <U1     ener_lib H-bond type D/A/B/N/H (H: polar hydrogen)
tors_inc             (N,) f8      Refmac 1-4 distance increment per atom (O/N −0.1, else −0.15)
exclusions           (ne, 2) i8   1-2, 1-3 and in-plane 1-4 pairs (i < j, sorted): no
                                  nonbonded term
pairs14              (n4, 2) i8   1-4 pairs (i < j, sorted): reduced nonbonded minimum
metal                (N,) bool    metal element
altloc               (N,) <U1     alternate location ("" none): different altlocs never clash
hydrogen             (N,) bool    H or D
labels               (N,) str     "A/ALA 12/CA" (chain/res seq/atom, altloc appended)
links_added          tuple        stretched polymer links restrained although longer than gemmi
                                  links by distance: dicts res1, res2, atoms (i, j), link id,
                                  distance (Å, in the input), ideal (Å)
chain_breaks         tuple        consecutive residues left unlinked (too far apart): dicts
                                  res1, res2, atoms, distance (Å)
numbering_gaps       tuple        residues either side of missing ones with their link atoms
                                  near each other: the same dicts
gap_pairs            (ng, 2) i8   their link atoms; ``gap_min`` (ng,) Å the least distance
                                  kept between them (one-sided, `restraints.energy`)
===================  ===========  ==========================================================
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

_INT = ("bonds", "angles", "torsions", "torsion_period", "chirals", "plane_atoms", "plane_id",
        "exclusions", "pairs14", "gap_pairs")
_SHAPES = {"bonds": 2, "angles": 3, "torsions": 4, "chirals": 4, "exclusions": 2, "pairs14": 2,
           "gap_pairs": 2}


@dataclass(frozen=True, eq=False)
class RestraintSet:
    """Geometry restraints of one model; see the module docstring for the field table."""

    n_atoms: int
    bonds: np.ndarray
    bond_ideal: np.ndarray
    bond_sigma: np.ndarray
    angles: np.ndarray
    angle_ideal: np.ndarray
    angle_sigma: np.ndarray
    torsions: np.ndarray
    torsion_ideal: np.ndarray
    torsion_sigma: np.ndarray
    torsion_period: np.ndarray
    chirals: np.ndarray
    chiral_ideal: np.ndarray
    chiral_sigma: np.ndarray
    chiral_both: np.ndarray
    plane_atoms: np.ndarray
    plane_id: np.ndarray
    plane_sigma: np.ndarray
    vdw_radius: np.ndarray
    clash_radius: np.ndarray
    ion_radius: np.ndarray
    hb_type: np.ndarray
    tors_inc: np.ndarray
    exclusions: np.ndarray
    pairs14: np.ndarray
    metal: np.ndarray
    altloc: np.ndarray
    hydrogen: np.ndarray
    labels: np.ndarray
    torsion_label: np.ndarray = field(default_factory=lambda: np.zeros(0, "<U16"))
    unknown_residues: tuple = ()
    unknown_links: tuple = ()
    monlib: str = ""
    links_added: tuple = ()
    chain_breaks: tuple = ()
    numbering_gaps: tuple = ()
    gap_pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    gap_min: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, np.ndarray) and f.name not in _SHAPES and f.name not in _INT:
                continue
            dt = np.int64 if f.name in _INT else None
            arr = np.array(v, dtype=dt, copy=True)
            if f.name in _SHAPES:
                arr = arr.reshape(-1, _SHAPES[f.name])
            arr.setflags(write=False)
            object.__setattr__(self, f.name, arr)

    @property
    def n_planes(self) -> int:
        return int(self.plane_id.max()) + 1 if len(self.plane_id) else 0

    def counts(self) -> dict:
        """Numbers of restraints per kind."""
        return {"bonds": len(self.bonds), "angles": len(self.angles),
                "torsions": len(self.torsions), "chirals": len(self.chirals),
                "planes": self.n_planes, "plane_atoms": len(self.plane_atoms)}

    def replace(self, **changes) -> "RestraintSet":
        """Copy with some fields replaced."""
        return dataclasses.replace(self, **changes)
