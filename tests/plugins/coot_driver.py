"""Round trip Coot (coot-headless-api) -> densrefine -> Coot, run in Coot's own Python.

Usage: ``COOT_PYTHON coot_driver.py CONFIG.json`` with CONFIG keys
``model, map, resolution, chain, first, last, shift, outdir, plugin_dir`` (+ optional
``stages``, ``cycles``, ``pad``, ``map_via`` "coot" (write_map, default) or "file"). DENSREFINE_EXE in the environment names densrefine.

Steps (each with Coot's own engine, ``molecules_container_t``):

1. read the model (gunzipped here: Coot does not read .gz) and map;
2. perturb residues CHAIN/FIRST-LAST smoothly, max ``shift`` Å
   (``new_positions_for_atoms_in_residues``);
3. Coot's per-residue CC on the range (``density_correlation_analysis`` and ``mmrrcc``);
4. the exchange module exports through Coot's writers (``write_coordinates``,
   ``write_map``), runs ``densrefine fit --select``; the driver reads back with
   ``replace_molecule_by_model_from_file``;
5. Coot's CC again, the displacement of unselected atoms, the RMSD to the start;
6. a failing run (resolution -1): the one-line message and the unchanged model.

Prints one JSON line (prefixed ``RESULT ``) for pytest. Imports Coot inside ``main`` so
that pytest's doctest collection can import this file without Coot.
"""
import gzip
import json
import math
import os
import shutil
import sys


def pdb_atom_name(name, element):
    """PDB-padded atom name (Coot needs " CA ", not "CA")."""
    if len(name) >= 4 or len(element.strip()) == 2:
        return name.ljust(4)
    return " " + name.ljust(3)


def atoms(mc, imol, cid="//"):
    """{(chain, resno, ins, name, alt): (x, y, z, element)} from Coot's JSON dump."""
    out = {}
    for model in json.loads(mc.get_molecule_selection_as_json(imol, cid))["models"]:
        for ch in model["chains"]:
            for res in ch["residues"]:
                for a in res["atoms"]:
                    key = (ch["chain_id"], res["seqnum"], res["ins_code"], a["name"], a["altLoc"])
                    out[key] = (a["x"], a["y"], a["z"], a["element"])
    return out


def perturb(coot, mc, imol, chain, first, last, shift):
    """Smooth displacement: shift * sin(pi (i + 1/2) / n) along (1, 1, 1)/sqrt(3)."""
    n = last - first + 1
    u = 1.0 / math.sqrt(3.0)
    moved = []
    for i, resno in enumerate(range(first, last + 1)):
        amp = shift * math.sin(math.pi * (i + 0.5) / n) * u
        mr = coot.moved_residue_t(chain, resno, "")
        for (c, r, ins, name, alt), (x, y, z, el) in atoms(mc, imol, f"//{chain}/{resno}").items():
            mr.add_atom(coot.moved_atom_t(pdb_atom_name(name, el), alt, x + amp, y + amp, z + amp))
        moved.append(mr)
    return mc.new_positions_for_atoms_in_residues(imol, moved)


def coot_cc(mc, imol, imap, chain, first, last):
    """Coot's mean per-residue CC on the range: density_correlation_analysis and mmrrcc."""
    dca = mc.density_correlation_analysis(imol, imap)
    vals = [r.function_value for c in dca.cviv for r in c.rviv
            if r.residue_spec.chain_id == chain and first <= r.residue_spec.res_no <= last]
    all_atom, _side = mc.mmrrcc(imol, chain, imap)  # keys don't hash by value: iterate
    mm = [v.correlation() for k, v in all_atom.items() if first <= k.res_no <= last]
    return {"dca_mean": sum(vals) / len(vals), "dca": [round(v, 4) for v in vals],
            "mmrrcc_mean": sum(mm) / len(mm)}


def displacement(a, b, keep):
    """(max |dr| over atoms with keep(key), RMSD over them) between two atom dicts, Å."""
    d2 = [sum((a[k][i] - b[k][i]) ** 2 for i in range(3)) for k in a if k in b and keep(k)]
    return (math.sqrt(max(d2)) if d2 else 0.0), (math.sqrt(sum(d2) / len(d2)) if d2 else 0.0)


def main():
    import coot_headless_api as coot

    cfg = json.load(open(sys.argv[1]))
    sys.path.insert(0, cfg["plugin_dir"])
    import densrefine_exchange as ex

    out = cfg["outdir"]
    os.makedirs(out, exist_ok=True)
    model = cfg["model"]
    if model.endswith(".gz"):
        plain = os.path.join(out, os.path.basename(model)[:-3])
        with gzip.open(model, "rb") as src, open(plain, "wb") as dst:
            shutil.copyfileobj(src, dst)
        model = plain
    chain, first, last = cfg["chain"], int(cfg["first"]), int(cfg["last"])
    mc = coot.molecules_container_t(False)
    mc.set_max_number_of_threads(2)
    mc.set_make_backups(False)
    imol = mc.read_pdb(model)
    imap = mc.read_ccp4_map(cfg["map"], False)
    mc.set_imol_refinement_map(imap)
    ref = atoms(mc, imol)
    cc_ref = coot_cc(mc, imol, imap, chain, first, last)
    perturb(coot, mc, imol, chain, first, last, float(cfg["shift"]))
    start = atoms(mc, imol)
    cc_before = coot_cc(mc, imol, imap, chain, first, last)

    def in_range(k):
        return k[0] == chain and first <= k[1] <= last

    def write_model(path):
        if mc.write_coordinates(imol, path) != 0:  # 0 = success for write_coordinates
            raise RuntimeError(f"write_coordinates failed for {path}")

    def coot_write_map(path):
        if mc.write_map(imap, path) != 1:  # ... but 1 = success for write_map
            raise RuntimeError(f"write_map failed for {path}")

    # "coot": Coot writes the map (clipper writes one P1 cell from the origin, fine for
    # maps whose box starts at 0); "file": the map file Coot read, as the GUI plugin does
    write_map = coot_write_map if cfg.get("map_via", "coot") == "coot" else cfg["map"]

    pad = int(cfg.get("pad", 0))
    select = ex.selection_for_range(chain, first - pad, last + pad)
    res = ex.run_fit(write_model, write_map, cfg["resolution"], select=select,
                     stages=cfg.get("stages", "xyz"), cycles=cfg.get("cycles", 2),
                     workdir=os.path.join(out, "fit"), timeout=600)
    mc.replace_molecule_by_model_from_file(imol, res.model_path)
    after = atoms(mc, imol)
    cc_after = coot_cc(mc, imol, imap, chain, first, last)

    def outside(k):
        return not (k[0] == chain and first - pad <= k[1] <= last + pad)

    # a failing run: densrefine's one-line error, model untouched
    try:
        ex.run_fit(write_model, write_map, -1.0, select=select, stages="xyz", cycles=1,
                   workdir=os.path.join(out, "bad"), timeout=300)
        bad_msg = None
    except ex.DensrefineError as err:
        bad_msg = str(err)
    after_bad = atoms(mc, imol)
    worst = res.worst()
    result = {
        "n_atoms": len(ref), "n_atoms_after": len(after), "select": select,
        "cc_reference": cc_ref, "cc_before": cc_before, "cc_after": cc_after,
        "rmsd_start_vs_reference": displacement(start, ref, in_range)[1],
        "rmsd_after_vs_reference": displacement(after, ref, in_range)[1],
        "max_shift_unselected": displacement(after, start, outside)[0],
        "densrefine_cc_mask": [res.stats["before"]["cc_mask"], res.stats["after"]["cc_mask"]],
        "summary": res.summary(), "worst_first": [w["cc"] for w in worst][:5],
        "worst_label": worst[0]["label"] if worst else None,
        "worst_in_selection": all(in_range((w["chain"], w["res_seq"])) or pad for w in worst),
        "bad_message": bad_msg,
        "bad_changed_model": displacement(after_bad, after, lambda k: True)[0],
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
