"""Geometry restraints: CCP4 monomer library → `RestraintSet` → torch energy.

* `find_monlib` locates the library (explicit option, ``$CLIBD_MON``, or the copy in
  the PyPI package coot-headless-api, the default provider).
* `build_restraints` runs gemmi's topology code (monomers, modifications, links) and
  returns a frozen `RestraintSet` of numpy index/ideal/sigma arrays; residues without
  a dictionary raise `InputError` unless ``unknown="self"``; ``ligands=`` adds CCP4
  restraint dictionaries.
* `GeometryTerm` is the differentiable energy (bonds, angles, torsions, chirals,
  planes, nonbonded repulsion with an O(N) neighbour list, fixed-atom mask).
* `geometry_stats` reports RMSDs, worst outliers and clashes.

Hydrogens: restrained like other atoms when present (riding or excluding them from
the map term is the refine stage's choice); models without them get none added.
"""
from __future__ import annotations

from .._lazy import lazy_attributes
from .monlib import find_monlib, read_library
from .restraint_set import RestraintSet
from .topology import build_restraints

# torch-using parts are imported lazily
__getattr__, __dir__ = lazy_attributes(__name__, {
    "GeometryTerm": ".energy", "TERMS": ".energy", "geometry_stats": ".stats",
    "NeighbourList": ".nonbonded"})


__all__ = ["find_monlib", "read_library", "RestraintSet", "build_restraints", "GeometryTerm",
           "TERMS", "geometry_stats", "NeighbourList"]
