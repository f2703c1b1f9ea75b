"""Scripts run by the peer venv's Python (cctbx, ...) in a separate process; each
prints one JSON object. Never imported next to densrefine (gemmi and cctbx in one
process have crashed)."""
