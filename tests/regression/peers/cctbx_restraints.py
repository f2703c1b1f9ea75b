"""Every bond and angle restraint cctbx builds for a model: atoms, ideal, sigma, RMSDs.

Usage: ``PEER_PYTHON cctbx_angle_proxies.py MODEL OUT.json [--no-cdl]`` (coot's monomer
library from coot-headless-api, as ../shared/tools/peers/cctbx_geometry.py uses).
``--no-cdl`` turns off cctbx's default Conformation-Dependent Library (Moriarty et al.
2014), whose backbone angle ideals depend on (φ, ψ). Imports happen in ``main`` so
that pytest's doctest collection can import this file without cctbx.
"""
import json
import os
import sys


def main():
    import importlib.util

    model, out = sys.argv[1:3]
    cdl = "--no-cdl" not in sys.argv
    if not (os.environ.get("MMTBX_CCP4_MONOMER_LIB") or os.environ.get("CLIBD_MON")):
        spec = importlib.util.find_spec("coot_headless_api")
        os.environ["MMTBX_CCP4_MONOMER_LIB"] = os.path.join(
            list(spec.submodule_search_locations)[0], "share", "coot", "lib", "data",
            "monomers")
    import iotbx.pdb
    import mmtbx.model
    from cctbx import geometry_restraints
    from libtbx.utils import null_out

    m = mmtbx.model.manager(model_input=iotbx.pdb.input(file_name=model), log=null_out())
    p = mmtbx.model.manager.get_default_pdb_interpretation_params()
    p.pdb_interpretation.restraints_library.cdl = cdl
    m.process(make_restraints=True, pdb_interpretation_params=p)
    grm = m.get_restraints_manager().geometry
    sites = m.get_sites_cart()
    labels = []
    for a in m.get_hierarchy().atoms():
        ag = a.parent()
        rg = ag.parent()
        labels.append([rg.parent().id.strip(), rg.resseq_as_int(), rg.icode.strip(),
                       ag.resname.strip(), a.name.strip(), ag.altloc.strip()])
    deltas = geometry_restraints.angle_deltas(sites_cart=sites, proxies=grm.angle_proxies)
    angles = [{"i": list(pr.i_seqs), "ideal": pr.angle_ideal, "sigma": pr.weight ** -0.5,
               "delta": d} for pr, d in zip(grm.angle_proxies, deltas)]
    bonds = []
    for pr in grm.pair_proxies(sites_cart=sites).bond_proxies.simple:
        bonds.append({"i": list(pr.i_seqs), "ideal": pr.distance_ideal,
                      "sigma": pr.weight ** -0.5})
    es = grm.energies_sites(sites_cart=sites, compute_gradients=False)
    with open(out, "w") as f:
        json.dump({"cdl": cdl, "labels": labels, "angles": angles, "bonds": bonds,
                   "angle_rmsd": es.angle_deviations()[2],
                   "bond_rmsd": es.bond_deviations()[2],
                   "n_bonds": es.n_bond_proxies, "n_angles": es.n_angle_proxies}, f)
    print(json.dumps({"n_angles": len(angles), "cdl": cdl}))


if __name__ == "__main__":
    main()
