"""Live mode: keep a model and its data loaded and answer edits over a local socket.

Loads MODEL and DATA (a cryo-EM map with -d, or X-ray reflections) once, then serves the
JSON protocol of docs/live.md on a Unix-domain socket (or 127.0.0.1 with --tcp), each
request carrying the session token. When listening it writes one JSON line to stdout:
{"ready": true, "address": ..., "token": ..., "pid": ..., "kind": "xray"|"em", ...}.
It exits when its parent process goes, when stdin closes (--watch-stdin), after
--heartbeat seconds without a request, or on a "shutdown" request.

examples:
  densrefine serve model.pdb data.mtz                 # X-ray: R-work/R-free per edit
  densrefine serve model.cif emd_1234.map -d 3.2      # cryo-EM: CC_mask per edit
  densrefine serve model.pdb data.mtz --tcp --heartbeat 60 --log live.log
"""
from __future__ import annotations

import logging

log = logging.getLogger("densrefine")


def add_args(p):
    p.add_argument("model", help="atomic model (.pdb/.cif, optionally .gz)")
    p.add_argument("data", help="cryo-EM map (.mrc/.map/.ccp4) or reflections (MTZ, mmCIF)")
    g = p.add_argument_group("the flags most users need")
    g.add_argument("-d", "--resolution", type=float, metavar="Å",
                   help="map resolution (required for maps); for reflections a "
                        "high-resolution cut")
    g.add_argument("--tcp", action="store_true",
                   help="listen on 127.0.0.1 (random port) instead of a Unix-domain socket")
    g.add_argument("--log", metavar="FILE", help="write the log to FILE")
    p.add_argument("--labin", metavar="COLS", help="reflection columns (as rfactor)")
    p.add_argument("--twin", default="auto", metavar="auto|off|on|LAW",
                   help="twin model of the R factors (as rfactor; default: %(default)s)")
    p.add_argument("--table", choices=["electron", "xray"], default="electron",
                   help="maps: scattering table of the model map (default: %(default)s)")
    p.add_argument("--parent-pid", type=int, metavar="PID",
                   help="exit when this process is gone (default: the parent process)")
    p.add_argument("--watch-stdin", action="store_true",
                   help="exit when stdin reaches end-of-file (the host holds the pipe)")
    p.add_argument("--heartbeat", type=float, metavar="S",
                   help="exit after S seconds without a request")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch CPU threads (default: %(default)s: one request at a time "
                        "gains little from more on a busy machine)")


def run_command(argv) -> int:
    """Run ``densrefine ARGV`` in this process (a live session's ``run`` request) and
    return its exit code, leaving the serving command's own CLI state as it was."""
    import warnings

    from . import _common
    from . import main as cli_main

    state, showwarning = dict(_common._state), warnings.showwarning
    try:
        return cli_main(list(argv))
    finally:
        _common._state.clear()
        _common._state.update(state)
        warnings.showwarning = showwarning


def main(args):
    import torch

    from ..live import Session
    from ..live.server import LiveServer
    from . import _common

    job_threads = torch.get_num_threads()   # `run` requests: as a fresh process has
    torch.set_num_threads(max(1, int(args.threads)))
    session = Session(args.model, args.data, args.resolution, labin=args.labin,
                      twin=args.twin, table=args.table)
    _common.commit(args.log)
    server = LiveServer(session, transport="tcp" if args.tcp else "unix",
                        parent_pid=args.parent_pid, watch_stdin=args.watch_stdin,
                        heartbeat=args.heartbeat, job_threads=job_threads,
                        runner=run_command)
    log.info("Live session (%s, %d atoms) on %s", session.kind, session.n_atoms, server.address)
    why = server.serve_forever()
    log.info("Stopped: %s", why)
    return 0
