"""PyMOL (headless) with ``densrefine_live``: on, an edit through PyMOL's API, update.

Usage: ``PYMOL_PYTHON pymol_live_driver.py MODEL DATA RESOLUTION PLUGIN OUT`` (RESOLUTION
"" for reflections). Prints ``RESULT {json}``.
"""
import json
import sys
import time


def main():
    import pymol

    pymol.finish_launching(["pymol", "-cq"])
    from pymol import cmd

    model, data, d, plugin, out = sys.argv[1:6]
    cmd.load(model, "mol")
    cmd.run(plugin)
    from pymol import cmd as c
    live = c.keyword["densrefine_live"][0]               # what "densrefine_live" runs
    state = live.__globals__["_LIVE"]
    first = live("on", "mol", data, d)
    nothing = live("update")
    t0 = time.monotonic()
    c.translate([0.3, 0.3, 0.3], "mol and resi 5", camera=0)    # the edit, PyMOL's API
    res = live("update")
    shown = time.monotonic() - t0
    saved = out + "/saved.pdb"
    c.save(saved, "mol")
    scores = state["client"].scores()
    diff = "densrefine_diff" in c.get_names("objects")
    live("off")
    print("RESULT " + json.dumps({"first": first, "nothing": nothing, "text": res["text"],
                                  "n_moved": res["n_moved"], "shown_s": shown,
                                  "scores": scores, "diff_loaded": diff, "saved": saved}))


if __name__ == "__main__":
    main()
