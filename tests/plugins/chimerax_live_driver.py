"""``densrefine live`` inside a real no-GUI ChimeraX session (run with ChimeraX's Python).

Usage: ``CX_PYTHON chimerax_live_driver.py '{"model": ..., "map": ... | "data": ...,
"resolution": ..., "chain": "A", "resno": 5, "shift": 0.5, "out": DIR}'``.

Builds the session (`chimerax_driver.build_session`), registers the bundle's commands,
opens the inputs, runs ``densrefine live on``, moves one residue with ChimeraX's own API
(``Atoms.coords``), runs ``densrefine live update`` and times edit → status line; then
saves the model (``save_pdb``) for the comparison with ``densrefine rfactor``/``score``.
X-ray: then ``densrefine live update`` with nothing moved until the status line shows the
numbers of the session's idle refit (``refresh``). With ``"warm_calls": true`` (cryo-EM):
``densrefine score`` and ``densrefine fit`` while live mode runs (inside the session),
then the same after ``densrefine live off`` (a new process) from the same coordinates.
Prints ``DRIVER_JSON {...}``.
"""
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import chimerax_driver as cxd


def main():
    a = json.loads(sys.argv[1])
    session = cxd.build_session()
    cxd.load_plugin()
    from chimerax_densrefine import cmd
    cmd.register_commands(session)
    from chimerax.core.commands import run

    out = pathlib.Path(a["out"])
    out.mkdir(parents=True, exist_ok=True)
    if "map" in a:
        model, vol = cxd.open_inputs(session, a["model"], a["map"], str(out))
        cmdline = f"densrefine live on #{model.id_string} inMap #{vol.id_string} " \
                  f"resolution {a['resolution']:g}"
    else:
        from chimerax.pdb import open_pdb
        models, _ = open_pdb(session, a["model"], log_info=False)
        session.models.add(models)
        model, vol = models[0], None
        cmdline = f"densrefine live on #{model.id_string} data {a['data']}"
    statuses = []
    orig = session.logger.status

    def status(msg, *args, **kw):
        statuses.append(msg)
        return orig(msg, *args, **kw)
    session.logger.status = status
    t0 = time.monotonic()
    state = run(session, cmdline, log=False)
    t_start = time.monotonic() - t0
    first = statuses[-1]
    nothing = run(session, "densrefine live update", log=False)
    atoms = model.atoms
    res = atoms.residues
    sel = (res.chain_ids == a["chain"]) & (res.numbers == int(a["resno"]))
    xyz = atoms.coords.copy()
    xyz[sel] += float(a["shift"]) / 3 ** 0.5
    t_edit = time.monotonic()
    atoms.coords = xyz                                   # the edit, ChimeraX's own API
    result = run(session, "densrefine live update", log=False)
    t_shown = time.monotonic() - t_edit
    vols = {n: v for n, v in state.volumes.items()}
    m0 = {n: float(abs(v.full_matrix()).max()) for n, v in vols.items()}
    # a second edit refreshes the same volumes in place
    xyz[sel] -= 0.2
    atoms.coords = xyz
    again = run(session, "densrefine live update", log=False)
    same = all(state.volumes[n] is v for n, v in vols.items())
    refresh = None
    if state.client.kind == "xray":
        t_quiet = time.monotonic()
        while refresh is None and time.monotonic() - t_quiet < 60:
            time.sleep(0.25)
            r = run(session, "densrefine live update", log=False)
            if r is not None and r.get("refit"):
                refresh = {"text": r["text"], "r_work": r["r_work"], "r_free": r["r_free"],
                           "status": statuses[-1], "s": time.monotonic() - t_quiet}
            elif r is not None:
                raise RuntimeError("an atom moved without an edit")
    from chimerax.pdb import save_pdb
    saved = str(out / "saved.pdb")
    save_pdb(session, saved, models=[model], rel_model=vol)
    scores = state.client.scores()
    calls = warm_calls(session, run, model, vol, a) if a.get("warm_calls") else None
    print("DRIVER_JSON " + json.dumps({
        "kind": state.client.kind, "start_s": t_start, "first": first,
        "text": result["text"], "shown_s": t_shown, "n_moved": result["n_moved"],
        "n_selected": int(sel.sum()), "nothing": nothing, "residues": result.get("residues"),
        "volumes": sorted(vols), "volume_max": m0, "same_volumes": same,
        "second_text": again["text"], "scores": scores, "saved": saved,
        "refresh": refresh, "calls": calls,
        "off": getattr(session, "_densrefine_live", "missing") is None}))


def warm_calls(session, run, model, vol, a):
    """score and fit inside the live session, then (live off) in a new process."""
    infos = []
    orig = session.logger.info

    def info(msg, *args, **kw):
        infos.append(str(msg))
        return orig(msg, *args, **kw)
    session.logger.info = info
    xyz0 = model.atoms.coords.copy()
    base = f"#{model.id_string} inMap #{vol.id_string} resolution {a['resolution']:g}"
    out = {}
    for tag in ("warm", "cold"):
        if tag == "cold":
            run(session, "densrefine live off", log=False)
        model.atoms.coords = xyz0
        n0 = len(infos)
        t0 = time.monotonic()
        sc = run(session, f"densrefine score {base} wait true", log=False)
        t1 = time.monotonic()
        ft = run(session, f"densrefine fit {base} stages xyz cycles 2 wait true", log=False)
        t2 = time.monotonic()
        out[tag] = {"score": sc["before"], "fit_before": ft["before"], "fit_after": ft["after"],
                    "n_moved": ft["n_moved"], "xyz": model.atoms.coords.tolist(),
                    "running": [m for m in infos[n0:] if ": running " in m],
                    "score_s": t1 - t0, "fit_s": t2 - t1}
    return out


if __name__ == "__main__":
    main()
