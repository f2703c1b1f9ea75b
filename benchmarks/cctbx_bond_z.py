#!/usr/bin/env python3
"""Bond z-scores of a model with cctbx restraints (run in the peer venv); one JSON object.

usage: /tmp/peers/venv/bin/python benchmarks/cctbx_bond_z.py MODEL [--monlib DIR]

Does what ../shared/tools/peers/cctbx_geometry.py does (cctbx restraints with
coot-headless-api's CCP4 monomer library; bond/angle RMSD and max deviation from
energies_sites, the same numbers) and adds z = (d_model − d_ideal) / σ for every bond
proxy (σ = 1/√weight): the largest |z| (with its two atoms) and how many bonds are beyond
4σ, also over bonds between non-HETATM atoms only (ligand dictionaries such as HEM's
disagree with deposited geometry by up to 10σ). One process instead of two (each spends ~8 s setting up restraints).
"""
import argparse
import importlib.util
import json
import math
import os
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model"); ap.add_argument("--monlib")
    a = ap.parse_args()
    if a.monlib or not (os.environ.get("MMTBX_CCP4_MONOMER_LIB") or os.environ.get("CLIBD_MON")):
        spec = importlib.util.find_spec("coot_headless_api")     # (no gemmi import: segfault)
        lib = a.monlib or os.path.join(list(spec.submodule_search_locations)[0],
                                       "share", "coot", "lib", "data", "monomers")
        os.environ["MMTBX_CCP4_MONOMER_LIB"] = os.path.abspath(lib)
    import iotbx.pdb
    import mmtbx.model
    from cctbx import geometry_restraints
    from libtbx.utils import null_out
    t0 = time.perf_counter()
    m = mmtbx.model.manager(model_input=iotbx.pdb.input(file_name=a.model), log=null_out())
    fallback = None
    try:
        m.process(make_restraints=True)             # exactly cctbx_geometry.py
    except Exception as e:  # noqa: BLE001
        # RNA with coot's library: cctbx's sugar-pucker analysis asks for cctbx's own
        # modifications (KeyError 'rna3p_pyr'), and coot's nucleotide dictionaries then give
        # conflicting torsion definitions, on which cctbx's error path itself crashes. Retry with
        # the pucker analysis off and conflicting restraints (torsions) left as first
        # registered, and cctbx's RNA links rna2p/rna3p (not in coot's library) = coot's "p";
        # bonds and angles come from the dictionaries unchanged.
        from mmtbx.monomer_library import pdb_interpretation as pi
        fallback = "%s: %s; pucker analysis off, conflicts ignored, rna2p/rna3p link = coot's p" % (type(e).__name__, e)
        pi.evaluate_registry_process_result = lambda *args, **kw: None
        from mmtbx.monomer_library import server as mls
        init = mls.server.__init__

        def init_with_alias(self, *args, **kw):   # cctbx's RNA links rna2p/rna3p = coot's "p"
            init(self, *args, **kw)
            for k in ("rna2p", "rna3p"):
                if k not in self.link_link_id_dict and "p" in self.link_link_id_dict:
                    self.link_link_id_dict[k] = self.link_link_id_dict["p"]
        mls.server.__init__ = init_with_alias
        params = mmtbx.model.manager.get_default_pdb_interpretation_params()
        params.pdb_interpretation.rna_sugar_pucker_analysis.enable = False
        m = mmtbx.model.manager(model_input=iotbx.pdb.input(file_name=a.model),
                                log=null_out())
        m.process(make_restraints=True, pdb_interpretation_params=params)
    grm = m.get_restraints_manager().geometry
    sites = m.get_sites_cart()
    simple = grm.pair_proxies(sites_cart=sites).bond_proxies.simple
    deltas = geometry_restraints.bond_deltas(sites_cart=sites, proxies=simple)
    weights = [p.weight for p in simple]
    es = grm.energies_sites(sites_cart=sites, compute_gradients=False)
    b, an = es.bond_deviations(), es.angle_deviations()   # (min, max, rmsd)
    atoms = m.get_hierarchy().atoms()
    labels = [atom.id_str().replace("pdb=", "").replace('"', "").strip() for atom in atoms]
    het = [atom.hetero for atom in atoms]
    z = [-dl * math.sqrt(w) for dl, w in zip(deltas, weights)]   # cctbx delta = ideal − model
    i = max(range(len(z)), key=lambda k: abs(z[k])) if z else None
    worst = None
    if i is not None:
        s0, s1 = simple[i].i_seqs
        worst = "%s – %s, d−ideal %.3f Å, z %.1f" % (labels[s0], labels[s1], -deltas[i], z[i])
    n = len(deltas)
    zpoly = [abs(v) for v, p in zip(z, simple) if not (het[p.i_seqs[0]] or het[p.i_seqs[1]])]
    print(json.dumps({
        "tool": "cctbx restraints", "n_atoms": m.get_number_of_atoms(),
        "bond_rmsd": round(b[2], 4), "bond_max": round(b[1], 4),
        "angle_rmsd": round(an[2], 3), "angle_max": round(an[1], 2),
        "n_bonds": es.n_bond_proxies, "n_angles": es.n_angle_proxies,
        "n_bond_simple": n,
        "bond_rmsd_simple": round(math.sqrt(sum(d * d for d in deltas) / n), 4) if n else None,
        "max_bond_z": round(abs(z[i]), 2) if i is not None else None,
        "n_bond_z_gt4": sum(abs(v) > 4 for v in z), "worst_bond": worst,
        "max_bond_z_nonhet": round(max(zpoly), 2) if zpoly else None,
        "n_bond_z_gt4_nonhet": sum(v > 4 for v in zpoly),
        "fallback": fallback, "monlib": os.environ["MMTBX_CCP4_MONOMER_LIB"], "seconds": round(time.perf_counter() - t0, 2)}))


if __name__ == "__main__":
    main()
