"""The session in its own process: a local socket, a token, and an exit when the host goes.

Transport: a Unix-domain socket in a fresh private directory (mode 0700, socket 0600,
peer uid checked with SO_PEERCRED where the OS has it), or TCP bound to 127.0.0.1 only
on a random port. Every request carries the session token (`secrets.token_urlsafe`,
handed to the host on the server's stdout, never on a command line). One request per
line, answered in order (`densrefine.live.protocol`).

Lifetime: the server exits when the parent process goes (its pid disappears or the
server is re-parented), when its stdin reaches end-of-file (the host's end of the pipe
closed: the host exited or was killed), after ``heartbeat`` seconds without a request
(when set), or on ``shutdown``. Refused requests get an error reply and change nothing.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import selectors
import shutil
import socket
import struct
import sys
import tempfile
import time
import traceback

from ..errors import InputError
from .protocol import (
    MAX_REQUEST_BYTES,
    MAX_UPDATE_ATOMS,
    PROTOCOL_VERSION,
    ProtocolError,
    parse_request,
    reply,
)

log = logging.getLogger("densrefine")

QUIET_OPS = ("ping", "scores", "job")
"""Requests that do not count as activity for the idle refit (a host may poll them)."""
WATCH_S = 0.25
"""Seconds between checks of the parent process."""
IDLE_RESCALE_S = 0.5
"""X-ray: idle seconds after which the scales are refitted (in a background thread; edits
are answered meanwhile) when the model has changed."""
IDLE_RESCALE_CHANGE = 0.005
"""X-ray: refit in idle time when ‖ΔF‖/‖F‖ since the last fit exceeds this."""


class LiveServer:
    """Serve one `Session` on a local socket (see the module docstring).

    Parameters
    ----------
    session : densrefine.live.Session
    transport : {"unix", "tcp"}
    token : str, optional
        Default: a new random token (or ``DENSREFINE_LIVE_TOKEN`` from the environment).
    parent_pid : int, optional
        Exit when this process is gone (default: the parent at start).
    watch_stdin : bool
        Exit at end-of-file on stdin (the host keeps a pipe open).
    heartbeat : float, optional
        Exit after this many seconds without a request.
    job_threads : int, optional
        torch CPU threads of the ``run`` requests (`densrefine.live.jobs`): the process
        default, so that their numbers are those of a fresh ``densrefine`` process.
    runner : callable(argv) -> int, optional
        What runs a ``run`` request's command (``densrefine serve`` passes the CLI's);
        without it ``run`` is refused as an unknown op, and hosts start a process.
    """

    def __init__(self, session, *, transport: str = "unix", token=None, parent_pid=None,
                 watch_stdin: bool = False, heartbeat=None, job_threads=None, runner=None):
        self.session, self.runner = session, runner
        self.job_threads, self.jobs, self._next_job = job_threads, {}, 0
        self.token = token or os.environ.get("DENSREFINE_LIVE_TOKEN") or secrets.token_urlsafe(32)
        self.parent_pid = os.getppid() if parent_pid is None else int(parent_pid)
        self.watch_stdin, self.heartbeat = watch_stdin, heartbeat
        self.sel = selectors.DefaultSelector()
        self.conns = {}
        self.running = False
        self.last_request = self.last_edit = time.monotonic()
        self.dir = None
        if transport == "unix":
            self.dir = tempfile.mkdtemp(prefix="densrefine-live-")
            os.chmod(self.dir, 0o700)
            self.address = os.path.join(self.dir, "session.sock")
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)
            try:
                self.sock.bind(self.address)
            finally:
                os.umask(old)
            os.chmod(self.address, 0o600)
        elif transport == "tcp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        else:
            raise ValueError(f"transport must be 'unix' or 'tcp', got {transport!r}")
        self.transport = transport
        if session.kind == "xray":   # refits run in the background, never inside an edit
            session.core.rescale_change = float("inf")
        self.sock.listen(4)
        self.sock.setblocking(False)
        self.sel.register(self.sock, selectors.EVENT_READ, "listen")

    # ------------------------------------------------------------------ life
    def ready_line(self) -> str:
        """The one JSON line written to stdout once the server listens."""
        return json.dumps({"ready": True, "protocol": PROTOCOL_VERSION,
                           "transport": self.transport, "address": self.address,
                           "token": self.token, "pid": os.getpid(),
                           "kind": self.session.kind, "n_atoms": self.session.n_atoms,
                           "start_s": round(self.session.start_s, 3)})

    def serve_forever(self, ready=None) -> str:
        """Run until a stop condition; returns why it stopped."""
        out = sys.stdout if ready is None else ready
        out.write(self.ready_line() + "\n")
        out.flush()
        if self.watch_stdin:
            self.sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
        self.running, why = True, "shutdown"
        try:
            while self.running:
                events = self.sel.select(timeout=WATCH_S)
                for key, _ in events:
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "stdin":
                        if not os.read(sys.stdin.fileno(), 4096):
                            why = "the host closed the pipe"
                            self.running = False
                    else:
                        self._read(key.fileobj)
                core = getattr(self.session, "core", None)
                if hasattr(core, "poll_rescale"):
                    core.poll_rescale()
                stop = self._should_stop()
                if stop:
                    why, self.running = stop, False
                else:   # also between requests that do not count as edits (pings)
                    self._idle()
        finally:
            self.close()
        log.info("Live session stopped: %s", why)
        return why

    def _should_stop(self):
        if self.parent_pid and (os.getppid() != self.parent_pid
                                or not _alive(self.parent_pid)):
            return f"the parent process {self.parent_pid} is gone"
        if self.heartbeat and time.monotonic() - self.last_request > float(self.heartbeat):
            return f"no request for {self.heartbeat:g} s"
        return None

    def _idle(self):
        core = getattr(self.session, "core", None)
        if (self.session.kind == "xray" and time.monotonic() - self.last_edit > IDLE_RESCALE_S
                and getattr(core, "_thread", None) is None
                and core.change() > IDLE_RESCALE_CHANGE):
            core.rescale_async()

    def close(self):
        for c in list(self.conns):
            self._drop(c)
        try:
            self.sel.close()
            self.sock.close()
        finally:
            if self.dir:
                shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ sockets
    def _accept(self):
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        if self.transport == "unix" and not _same_user(conn):
            conn.close()
            return
        conn.setblocking(False)
        self.conns[conn] = bytearray()
        self.sel.register(conn, selectors.EVENT_READ, "conn")

    def _drop(self, conn):
        self.conns.pop(conn, None)
        try:
            self.sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()

    def _read(self, conn):
        try:
            data = conn.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        buf = self.conns[conn]
        buf += data
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > MAX_REQUEST_BYTES:
                    self._send(conn, reply(None, error=ProtocolError(
                        "too_large", f"request longer than {MAX_REQUEST_BYTES} bytes")))
                    self._drop(conn)
                return
            line = bytes(buf[:nl])
            del buf[:nl + 1]
            if line.strip():
                self._send(conn, self.handle(line))
                if not self.running:
                    return

    def _send(self, conn, data: bytes):
        conn.setblocking(True)
        try:
            conn.sendall(data)
        except OSError:
            self._drop(conn)
        else:
            conn.setblocking(False)

    # ------------------------------------------------------------------ requests
    def handle(self, line: bytes) -> bytes:
        """Answer one request line (never raises)."""
        rid = None
        try:
            req = parse_request(line, self.token)
            rid = req["id"]
            self.last_request = time.monotonic()
            if req["op"] not in QUIET_OPS:   # a host polling for refreshed numbers must
                self.last_edit = self.last_request   # not hold off the idle refit
            return reply(rid, getattr(self, "op_" + req["op"])(req["args"]))
        except ProtocolError as err:
            return reply(rid, error=err)
        except InputError as err:
            return reply(rid, error=ProtocolError("input", " ".join(str(err).split())))
        except Exception as err:  # noqa: BLE001 - the session keeps serving
            log.error("live request failed:\n%s", traceback.format_exc())
            return reply(rid, error=ProtocolError("internal", f"{type(err).__name__}: {err}"))

    def op_hello(self, args):
        return {"protocol": PROTOCOL_VERSION, "kind": self.session.kind,
                "n_atoms": self.session.n_atoms, "pid": os.getpid(),
                "scores": self.session.scores()}

    def op_ping(self, args):
        return {"pong": True, "version": self.session.core.version}

    def op_info(self, args):
        at = self.session.model0.atoms
        rows = [[str(c), int(r), str(i).strip(), str(n).strip(), str(a).strip()]
                for c, r, i, n, a in zip(at.chain, at.res_seq, at.icode, at.atom_name,
                                         at.altloc)]
        return {"kind": self.session.kind, "n_atoms": self.session.n_atoms, "atoms": rows,
                "columns": ["chain", "res_seq", "icode", "atom_name", "altloc"],
                "scores": self.session.scores()}

    def op_scores(self, args):
        _only(args, ("settle",))
        settle = args.get("settle", True)
        if not isinstance(settle, bool):
            raise ProtocolError("bad_request", "settle must be true or false")
        if settle:
            self._settle()
        return self.session.scores()

    def _settle(self):
        """X-ray: the numbers asked for outright (``scores``, ``write_model``) are the
        settled ones, as ``densrefine rfactor`` gives them on the saved model: a running
        background refit is waited for, and a model changed by more than
        `IDLE_RESCALE_CHANGE` since the last fit is refitted now (``update`` replies stay
        fast and use the scales as they are)."""
        if self.session.kind != "xray":
            return
        core = self.session.core
        t = getattr(core, "_thread", None)
        if t is not None:
            t.join()
            core.poll_rescale()
        if core.change() > IDLE_RESCALE_CHANGE:
            core.rescale()

    def op_update(self, args):
        _only(args, ("atoms", "xyz", "b_iso", "occ"))
        atoms = args.get("atoms")
        if not isinstance(atoms, list):
            raise ProtocolError("bad_request", "update needs atoms: a list of indices")
        if len(atoms) > MAX_UPDATE_ATOMS:
            raise ProtocolError("too_large", f"{len(atoms)} atoms in one update (limit "
                                f"{MAX_UPDATE_ATOMS})")
        return self.session.update(atoms, args.get("xyz"), args.get("b_iso"), args.get("occ"))

    def op_maps(self, args):
        _only(args, ("center", "size", "lo", "hi"))
        size = args.get("size", 20.0)
        if not isinstance(size, (int, float)) or isinstance(size, bool):
            raise ProtocolError("bad_request", "size must be a number (Å)")
        return self.session.maps(args.get("center"), size, args.get("lo"), args.get("hi"))

    def op_refine(self, args):
        _only(args, ("selection", "cycles"))
        sel, cycles = args.get("selection"), args.get("cycles", 2)
        if not isinstance(sel, str) or not sel or len(sel) > 200:
            raise ProtocolError("bad_request", "refine needs selection, e.g. \"A/10-12\"")
        if not isinstance(cycles, int) or not 1 <= cycles <= 10:
            raise ProtocolError("bad_request", "cycles must be an integer 1..10")
        return self.session.refine(sel, cycles=cycles)

    def op_rescale(self, args):
        return self.session.rescale()

    def op_write_model(self, args):
        _only(args, ("path",))
        path = args.get("path")
        if not isinstance(path, str) or not path.lower().endswith(
                (".pdb", ".cif", ".pdb.gz", ".cif.gz", ".ent")):
            raise ProtocolError("bad_request", "write_model needs path ending .pdb or .cif")
        self._settle()
        return {"path": self.session.write_model(path), "scores": self.session.scores()}

    # ------------------------------------------------------------------ commands
    def op_run(self, args):
        """Start ``densrefine ARGV`` (fit, score, rfactor) in this warm process."""
        from .jobs import COMMANDS, CommandJob

        if self.runner is None:
            raise ProtocolError("unknown_op", "run is not available in this session (it was "
                                "not started by densrefine serve); start densrefine instead")
        _only(args, ("argv",))
        argv = args.get("argv")
        if not (isinstance(argv, list) and argv and len(argv) <= 200
                and all(isinstance(a, str) and len(a) <= 4096 for a in argv)):
            raise ProtocolError("bad_request", "run needs argv: the densrefine arguments as "
                                "strings, e.g. [\"score\", \"m.pdb\", \"m.mrc\", \"-d\", \"3\"]")
        if argv[0] not in COMMANDS:
            raise ProtocolError("bad_request", f"run: command {argv[0][:40]!r} is not run by a "
                                f"session; one of {', '.join(COMMANDS)}")
        busy = [k for k, j in self.jobs.items() if j.state == "running"]
        if busy:
            raise ProtocolError("busy", f"job {busy[0]} is still running; wait for it or "
                                "cancel it (cancel_job)")
        jid = self._next_job = self._next_job + 1
        self.jobs = {k: j for k, j in self.jobs.items() if k > jid - 8}   # keep the last few
        self.jobs[jid] = CommandJob(argv, self.runner, threads=self.job_threads)
        return {"job": jid}

    def _job(self, args):
        _only(args, ("job",))
        job = self.jobs.get(args.get("job")) if isinstance(args.get("job"), int) else None
        if job is None:
            raise ProtocolError("input", f"job: no job {str(args.get('job'))[:20]!r} in this "
                                "session; give the number run returned")
        return job

    def op_job(self, args):
        return self._job(args).status()

    def op_cancel_job(self, args):
        job = self._job(args)
        return {"cancelling": job.cancel()}

    def op_shutdown(self, args):
        self.running = False
        return {"stopping": True}


def _only(args, allowed):
    extra = sorted(set(args) - set(allowed))
    if extra:
        raise ProtocolError("bad_request", f"unknown argument(s) {', '.join(extra)[:100]}; "
                            f"allowed: {', '.join(allowed)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _same_user(conn) -> bool:
    """The peer of a Unix socket runs as this user (Linux SO_PEERCRED; elsewhere the
    socket's 0600 mode in a 0700 directory is the check)."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return True
    try:
        cred = conn.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i"))
    except OSError:
        return False
    _, uid, _ = struct.unpack("3i", cred)
    return uid == os.getuid()
