"""Live mode with Coot's own engine (coot-headless-api), run in Coot's Python.

Usage: ``COOT_PYTHON coot_live_driver.py CONFIG.json`` with CONFIG keys ``model``, ``data``
(MTZ or map), ``resolution`` (maps), ``map`` (a map Coot reads, for the display check),
``chain``, ``resno``, ``shift``, ``outdir``, ``plugin_dir``. DENSREFINE_EXE names densrefine.

1. Coot reads the model (``read_pdb``); the plugin's live client starts ``densrefine
   serve`` on the file Coot wrote and primes its tracker from a Coot snapshot;
2. an edit through Coot's API: residue CHAIN/RESNO moved by ``shift`` Å
   (``new_positions_for_atoms_in_residues``), or with ``"edit": "rotamer"`` its next
   rotamer (``change_to_next_rotamer``), or with ``"edit": "refine"`` Coot's own
   real-space refinement of CHAIN/RESNO±1 into the map ``data``
   (``refine_residues_using_atom_cid``, TRIPLE);
3. the plugin's tick: Coot snapshot (``write_coordinates``) → changed atoms → update →
   the status-bar line; timed from the edit to the text;
4. the difference-map box is written and read back by Coot (``read_ccp4_map``);
5. X-ray: no further edit; the plugin's quiet ticks (``ScoreWatch``) until the status
   line shows the numbers of the session's idle refit (``refresh``: text, numbers, s);
6. Coot saves the model (``write_coordinates``) for the comparison with
   ``densrefine rfactor`` / ``score`` done by pytest;
7. with ``warm_calls`` (cryo-EM): the plugins' ordinary score and fit (exchange
   ``start_score`` / ``start_fit`` with Coot's writer) inside the live session, then the
   same calls in a new process after live mode is off; both results and wall times.

Prints ``RESULT {json}``.
"""
import json
import math
import os
import sys
import time


def snapshot(mc, imol, path, live):
    if mc.write_coordinates(imol, path) != 0:
        raise RuntimeError("write_coordinates failed")
    with open(path) as fh:
        return live.read_pdb_atoms(fh)


def main():
    import coot_headless_api as coot

    with open(sys.argv[1]) as fh:
        cfg = json.load(fh)
    sys.path.insert(0, cfg["plugin_dir"])
    import densrefine_live as live

    out = cfg["outdir"]
    os.makedirs(out, exist_ok=True)
    mc = coot.molecules_container_t(False)
    mc.set_make_backups(False)
    imol = mc.read_pdb(cfg["model"])
    start = os.path.join(out, "start.pdb")
    atoms0 = snapshot(mc, imol, start, live)
    t0 = time.monotonic()
    client = live.LiveClient.start(start, cfg["data"], cfg.get("resolution"))
    t_start = time.monotonic() - t0
    tracker = live.AtomTracker(client.info()["atoms"])
    tracker.prime(atoms0)
    first = live.status_text(client.scores(), client.kind)

    # the edit, through Coot's own API
    chain, resno, shift = cfg["chain"], int(cfg["resno"]), float(cfg["shift"])
    mr = coot.moved_residue_t(chain, resno, "")
    u = shift / math.sqrt(3.0)
    n_moved = 0
    for (c, r, ins, name, alt), (x, y, z) in atoms0.items():
        if c == chain and r == resno:
            padded = name.ljust(4) if len(name) >= 4 else " " + name.ljust(3)
            mr.add_atom(coot.moved_atom_t(padded, alt, x + u, y + u, z + u))
            n_moved += 1
    edit = cfg.get("edit", "move")
    if edit == "refine":
        mc.set_imol_refinement_map(mc.read_ccp4_map(cfg["data"], False))
    t_edit = time.monotonic()
    if edit == "move":
        mc.new_positions_for_atoms_in_residues(imol, [mr])
    elif edit == "rotamer":
        mc.change_to_next_rotamer(imol, f"//{chain}/{resno}", "")
    else:
        mc.refine_residues_using_atom_cid(imol, f"//{chain}/{resno - 1}-{resno + 1}",
                                          "TRIPLE", 1000)
    edit_s = time.monotonic() - t_edit
    if edit != "move":      # Coot's own computation: the clock starts once it is done
        t_edit = time.monotonic()
    res = tracker.send(client, snapshot(mc, imol, os.path.join(out, "now.pdb"), live))
    text = live.status_text(res, client.kind)
    t_shown = time.monotonic() - t_edit
    # the difference map around the edit, as the Coot plugin re-reads it
    box = res["boxes"][0]
    centre = [(a + b) / 2 for a, b in zip(box["lo"], box["hi"])]
    maps = client.maps(centre, 20.0)
    name = "fofc" if client.kind == "xray" else "difference"
    path = live.write_ccp4_box(os.path.join(out, "diff.map"), maps["maps"][name], maps)
    imap = mc.read_ccp4_map(path, True)
    # a second, unchanged tick sends nothing
    again = tracker.send(client, snapshot(mc, imol, os.path.join(out, "now.pdb"), live))
    refresh = None
    if client.kind == "xray":       # quiet ticks until the idle refit shows
        watch = live.ScoreWatch()
        watch.shown(res)
        t_quiet = time.monotonic()
        while refresh is None and time.monotonic() - t_quiet < 60:
            time.sleep(0.25)                             # the plugin's tick period
            if tracker.send(client, snapshot(mc, imol, os.path.join(out, "now.pdb"),
                                             live)) is not None:
                raise RuntimeError("an atom moved without an edit")
            fresh = watch.poll(client)
            if fresh is not None:
                refresh = {"text": live.status_text(fresh, client.kind),
                           "r_work": fresh["r_work"], "r_free": fresh["r_free"],
                           "s": time.monotonic() - t_quiet}
    saved = os.path.join(out, "saved.pdb")
    mc.write_coordinates(imol, saved)
    scores = client.scores()
    warm = warm_calls(cfg, mc, imol, client, out) if cfg.get("warm_calls") else None
    client.close()
    if warm is not None:
        warm.update(cold_calls(cfg, mc, imol, out))
    print("RESULT " + json.dumps({
        "kind": client.kind, "start_s": t_start, "first_text": first, "text": text,
        "shown_s": t_shown, "edit_s": edit_s, "n_moved": res["n_moved"], "n_expected": n_moved,
        "update": {k: res.get(k) for k in ("r_work", "r_free", "d_r_work", "cc_mask",
                                           "d_cc_mask", "residues")},
        "scores": scores, "diff_map_valid": bool(mc.is_valid_map_molecule(imap)),
        "diff_map_rms": float(mc.get_map_rmsd_approx(imap)), "second_tick": again,
        "saved": saved, "refresh": refresh, "calls": warm}))


def _calls(cfg, mc, imol, out, tag, client):
    """The plugin's ordinary score and fit with Coot's model writer (exchange module)."""
    import densrefine_exchange as ex

    def write_model(path):
        if mc.write_coordinates(imol, path) != 0:
            raise RuntimeError("write_coordinates failed")

    d = float(cfg["resolution"])
    t0 = time.monotonic()
    sjob = ex.start_score(write_model, cfg["data"], d, workdir=os.path.join(out, "s_" + tag),
                          live=client)
    stats = sjob.wait(600)
    t1 = time.monotonic()
    fjob = ex.start_fit(write_model, cfg["data"], d, stages="xyz", cycles=2, select="A/3-8",
                        workdir=os.path.join(out, "f_" + tag), live=client)
    fit = fjob.wait(600)
    t2 = time.monotonic()
    with open(fit.model_path) as fh:
        model = fh.read()
    return {tag: {"via": [sjob.via, fjob.via], "why": [sjob.why if hasattr(sjob, "why")
                                                        else None, getattr(fjob, "why", None)],
                  "score": stats, "fit_stats": fit.stats, "fit_model": model,
                  "summary": fit.summary(), "score_s": t1 - t0, "fit_s": t2 - t1}}


def warm_calls(cfg, mc, imol, client, out):
    return _calls(cfg, mc, imol, out, "warm", client)


def cold_calls(cfg, mc, imol, out):
    return _calls(cfg, mc, imol, out, "cold", None)


if __name__ == "__main__":
    main()
