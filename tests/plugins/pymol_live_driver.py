"""PyMOL (headless) with ``densrefine_live``: on, an edit through PyMOL's API, update.

Usage: ``PYMOL_PYTHON pymol_live_driver.py MODEL DATA RESOLUTION PLUGIN OUT [RESI]``
(RESOLUTION "" for reflections; RESI the residue moved, default 5). Reflections: after
the edit, ``densrefine_live update`` with nothing moved until it shows the numbers of the
session's idle refit (``refresh``). A map DATA is also loaded as the map object ``emap``, and
``densrefine_score`` / ``densrefine_fit`` run while live mode is on (inside the session)
and again after ``off`` (a new process), from the same coordinates.
Prints ``RESULT {json}``.
"""
import contextlib
import io
import json
import sys
import time


def main():
    import pymol

    pymol.finish_launching(["pymol", "-cq"])
    from pymol import cmd

    model, data, d, plugin, out = sys.argv[1:6]
    resi = sys.argv[6] if len(sys.argv) > 6 else "5"
    cmd.load(model, "mol")
    cmd.run(plugin)
    from pymol import cmd as c
    live = c.keyword["densrefine_live"][0]               # what "densrefine_live" runs
    state = live.__globals__["_LIVE"]
    first = live("on", "mol", data, d)
    nothing = live("update")
    t0 = time.monotonic()
    c.translate([0.3, 0.3, 0.3], f"mol and resi {resi}", camera=0)   # the edit, PyMOL's API
    res = live("update")
    shown = time.monotonic() - t0
    refresh = None
    if not d:                         # X-ray: quiet updates until the idle refit shows
        t_quiet = time.monotonic()
        while refresh is None and time.monotonic() - t_quiet < 60:
            time.sleep(0.25)
            r = live("update")
            if r is not None and r.get("refit"):
                refresh = {"text": r["text"], "r_work": r["r_work"], "r_free": r["r_free"],
                           "s": time.monotonic() - t_quiet}
            elif r is not None:
                raise RuntimeError("an atom moved without an edit")
    saved = out + "/saved.pdb"
    c.save(saved, "mol")
    scores = state["client"].scores()
    diff = "densrefine_diff" in c.get_names("objects")
    calls = {}
    if d:
        c.load(data, "emap")
        xyz0 = c.get_coords("mol")
        for tag in ("warm", "cold"):
            if tag == "cold":
                live("off")
            c.load_coords(xyz0, "mol")
            calls[tag] = ordinary_calls(c, d)
    else:
        live("off")
    print("RESULT " + json.dumps({"first": first, "nothing": nothing, "text": res["text"],
                                  "n_moved": res["n_moved"], "shown_s": shown,
                                  "scores": scores, "diff_loaded": diff, "saved": saved,
                                  "calls": calls, "refresh": refresh}))


def ordinary_calls(c, d):
    fit, score = c.keyword["densrefine_fit"][0], c.keyword["densrefine_score"][0]
    buf = io.StringIO()
    t0 = time.monotonic()
    with contextlib.redirect_stdout(buf):
        sc = score("mol", "emap", d)
        t1 = time.monotonic()
        ft = fit("mol and resi 3-8", "emap", d, stages="xyz", cycles="2")
    t2 = time.monotonic()
    return {"score": sc, "fit": ft, "xyz": c.get_coords("mol").tolist(),
            "where": [ln.strip() for ln in buf.getvalue().splitlines()
                      if "densrefine: running in" in ln],
            "score_s": t1 - t0, "fit_s": t2 - t1}


if __name__ == "__main__":
    main()
