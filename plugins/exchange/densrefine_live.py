"""Live mode for host plugins: start ``densrefine serve``, send edits, show R or CC.

Standard library only (numpy is used for maps when the host has it), so it runs inside
Coot's, PyMOL's and ChimeraX's own Python. The protocol is docs/live.md: one JSON line
per request and reply over a Unix-domain socket (or 127.0.0.1), with the session token
the server printed on its stdout. The server's stdin stays a pipe held by the host, so
the server exits when the host exits or is killed.

Typical use in a plugin::

    live = LiveClient.start(model_path, data_path, resolution)   # seconds, once
    tracker = AtomTracker(live.info()["atoms"])
    ...after each edit, with the host's atoms {(chain, resno, ins, name, alt): (x, y, z)}:
    res = tracker.send(live, host_atoms)          # None when nothing moved
    status_bar(status_text(res, live.kind))

Examples
--------
>>> status_text({"r_work": 0.2153, "r_free": 0.2517, "d_r_work": -0.0012,
...              "d_r_free": 0.0003}, "xray")
'densrefine live: R-work 0.2153 (-0.0012), R-free 0.2517 (+0.0003)'
>>> read_pdb_atoms(["ATOM      1  CA  ALA A  10      1.000   2.000   3.000  1.00 20.00           C"])
{('A', 10, '', 'CA', ''): (1.0, 2.0, 3.0)}
"""
from __future__ import annotations

import base64
import json
import os
import select
import socket
import struct
import subprocess
import time

try:  # the exchange module sits next to this file (Coot, PyMOL)
    from densrefine_exchange import DensrefineError, densrefine_command
except ImportError:  # a copy inside a host bundle (ChimeraX): stand-alone
    import shlex
    import shutil

    class DensrefineError(RuntimeError):
        """densrefine failed; ``str(err)`` is one line for a status bar or dialog."""

    def densrefine_command(exe=None):
        """argv prefix of densrefine: ``exe``, $DENSREFINE_EXE, ``densrefine`` on PATH,
        else ``python3 -m densrefine``."""
        if exe is None:
            exe = os.environ.get("DENSREFINE_EXE", "").strip() or None
        if exe is None:
            found = shutil.which("densrefine")
            return [found] if found else ["python3", "-m", "densrefine"]
        return shlex.split(exe) if isinstance(exe, str) else [str(x) for x in exe]

__all__ = [
    "AtomTracker",
    "LiveClient",
    "LiveError",
    "ScoreWatch",
    "decode_array",
    "read_pdb_atoms",
    "status_text",
    "write_ccp4_box",
]

#: seconds to wait for the server to load the model and data
START_TIMEOUT = 300.0


class LiveError(DensrefineError):
    """The live session refused a request or is gone; ``code`` as in docs/live.md."""

    def __init__(self, code, message):
        super().__init__(f"densrefine live: {message}")
        self.code = code


class LiveClient:
    """A connection to a running ``densrefine serve`` (use `LiveClient.start`)."""

    def __init__(self, proc, ready, timeout=120.0):
        self.proc, self.ready = proc, ready
        self.kind, self.token = ready["kind"], ready["token"]
        self.timeout = timeout
        self._id = 0
        if ready["transport"] == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(ready["address"])
        else:
            host, port = ready["address"].rsplit(":", 1)
            self.sock = socket.create_connection((host, int(port)))
        self.sock.settimeout(timeout)
        self._buf = b""

    @classmethod
    def start(cls, model, data, resolution=None, exe=None, tcp=False, extra=(),
              timeout=START_TIMEOUT, log=None):
        """Start ``densrefine serve MODEL DATA`` and connect (blocks until it is ready).

        Parameters
        ----------
        model, data : str
            Model file and map or reflection file.
        resolution : float, optional
            Map resolution, Å (required for maps).
        exe : str or list, optional
            densrefine command (see ``densrefine_exchange.densrefine_command``).
        tcp : bool
            127.0.0.1 instead of a Unix-domain socket.
        """
        cmd = densrefine_command(exe) + ["serve", str(model), str(data), "--watch-stdin", "-q"]
        if resolution is not None:
            cmd += ["-d", repr(float(resolution))]
        if tcp:
            cmd.append("--tcp")
        if log:
            cmd += ["--log", str(log)]
        cmd += [str(x) for x in extra]
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        except OSError as err:
            raise LiveError("start", f"cannot start {cmd[0]!r} ({err.strerror}); set "
                            "DENSREFINE_EXE") from None
        t0, line = time.monotonic(), b""
        while not line.endswith(b"\n"):
            left = timeout - (time.monotonic() - t0)
            r, _, _ = select.select([proc.stdout], [], [], max(0.0, left))
            if not r:
                proc.kill()
                raise LiveError("start", f"no answer from densrefine serve after {timeout:g} s")
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                err = proc.stderr.read().decode("utf-8", "replace")
                lines = [ln for ln in err.splitlines() if ln.strip()]
                raise LiveError("start", lines[-1] if lines else
                                f"densrefine serve exited with code {proc.wait()}")
            line += chunk
        ready = json.loads(line.decode("utf-8").splitlines()[0])
        return cls(proc, ready)

    def request(self, op, **args):
        """Send one request; return its result or raise `LiveError`."""
        self._id += 1
        msg = json.dumps({"id": self._id, "token": self.token, "op": op, "args": args})
        try:
            self.sock.sendall(msg.encode("utf-8") + b"\n")
            while b"\n" not in self._buf:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    raise LiveError("gone", "the session closed the connection")
                self._buf += chunk
        except (TimeoutError, OSError) as err:
            raise LiveError("gone", f"the session is not answering ({err})") from None
        line, self._buf = self._buf.split(b"\n", 1)
        rep = json.loads(line.decode("utf-8"))
        if not rep.get("ok"):
            e = rep.get("error") or {}
            raise LiveError(e.get("code", "?"), e.get("message", "request refused"))
        return rep["result"]

    def info(self):
        return self.request("info")

    def scores(self, settle=True):
        """The numbers; ``settle=False``: as they are now (no refit is waited for)."""
        return self.request("scores") if settle else self.request("scores", settle=False)

    def update(self, atoms, xyz=None, b_iso=None, occ=None):
        args = {"atoms": list(atoms)}
        for k, v in (("xyz", xyz), ("b_iso", b_iso), ("occ", occ)):
            if v is not None:
                args[k] = v
        return self.request("update", **args)

    def maps(self, center, size=20.0):
        """Maps over a box; each map decoded (numpy array if numpy is there)."""
        res = self.request("maps", center=list(center), size=float(size))
        res["maps"] = {k: decode_array(v) for k, v in res["maps"].items()}
        return res

    def refine(self, selection, cycles=2):
        return self.request("refine", selection=selection, cycles=int(cycles))

    def write_model(self, path):
        return self.request("write_model", path=str(path))

    def run(self, argv):
        """Start ``densrefine ARGV`` (fit, score, rfactor) inside the warm session; returns
        the job number. `LiveError` code ``unknown_op`` from a session that cannot."""
        return self.request("run", argv=[str(a) for a in argv])["job"]

    def job(self, number):
        """``state`` ("running"/"finished"), ``returncode``, ``output``, ``elapsed_s``."""
        return self.request("job", job=int(number))

    def cancel_job(self, number):
        return self.request("cancel_job", job=int(number))["cancelling"]

    def alive(self):
        """Whether the session process is still there."""
        return self.proc.poll() is None

    def close(self):
        """Stop the session (shutdown request, then the pipe closes)."""
        try:
            self.request("shutdown")
        except LiveError:
            pass
        for f in (self.sock, self.proc.stdin):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class AtomTracker:
    """Map the host's atoms to session indices and send only what moved.

    Parameters
    ----------
    rows : list of [chain, res_seq, icode, atom_name, altloc]
        ``info()["atoms"]`` (the session's file order).
    tol : float
        Smallest coordinate change (Å) that counts as a move (PDB files hold 0.001 Å).
    """

    def __init__(self, rows, tol=5e-4):
        self.index = {(str(c), int(r), str(i), str(n), str(a)): k
                      for k, (c, r, i, n, a) in enumerate(rows)}
        self.last = {}
        self.tol = tol

    def changes(self, host_atoms):
        """(indices, xyz) of atoms whose position differs from the last sent one."""
        idx, xyz = [], []
        for key, pos in host_atoms.items():
            k = self.index.get(_key(key))
            if k is None:
                continue
            old = self.last.get(k)
            if old is None or max(abs(a - b) for a, b in zip(pos, old)) > self.tol:
                idx.append(k)
                xyz.append([float(v) for v in pos[:3]])
        return idx, xyz

    def prime(self, host_atoms):
        """Remember the host's positions as what the session has (no request)."""
        for key, pos in host_atoms.items():
            k = self.index.get(_key(key))
            if k is not None:
                self.last[k] = tuple(float(v) for v in pos[:3])

    def send(self, client, host_atoms):
        """Send the atoms that moved; returns the update result, or None if none moved."""
        idx, xyz = self.changes(host_atoms)
        if not idx:
            return None
        res = client.update(idx, xyz)
        for k, p in zip(idx, xyz):
            self.last[k] = tuple(p)
        res["n_moved"] = len(idx)
        return res


class ScoreWatch:
    """Bring the status line up to date after the session's idle refit (X-ray).

    ``update`` replies use the scales as they are; once the host stops editing, the
    session refits them in the background (docs/live.md) and R-work/R-free move by up
    to ~1e-3. Call `shown` with each update result the host displays, and `poll` on the
    host's quiet ticks: it asks the session's state counter (a ``ping``) and, when the
    refit has changed the numbers, returns them (``scores`` without settling) with the
    change since before the edit, ``refit`` True. Cryo-EM numbers are exact at once.
    """

    #: the server's IDLE_RESCALE_CHANGE: below it no refit is coming
    SETTLED = 0.005

    def __init__(self):
        self.version, self.base = None, {}

    def shown(self, res):
        """Remember the version and the pre-edit numbers of a displayed update result."""
        if res is None:
            return
        self.version = res.get("version")
        for k in ("r_work", "r_free", "cc_mask"):
            if res.get(k) is not None and res.get("d_" + k) is not None:
                self.base[k] = res[k] - res["d_" + k]

    def poll(self, client):
        """Refreshed numbers (dict, ``refit`` True) or None when nothing changed."""
        if self.version is None or client.kind != "xray":
            return None
        if client.request("ping").get("version") == self.version:
            return None
        out = client.scores(settle=False)
        # settled: no further refit comes until the next edit, so stop asking
        self.version = (None if (out.get("change_since_scale_fit") or 0.0) <= self.SETTLED
                        else out.get("version"))
        for k, v in self.base.items():
            if out.get(k) is not None:
                out["d_" + k] = out[k] - v
        out["refit"] = True
        return out


def _key(key):
    c, r, i, n, a = key
    return (str(c), int(r), str(i).strip(), str(n).strip(), str(a).strip())


def status_text(res, kind):
    """One status-bar line from an update (or scores) result."""
    def sgn(x):
        return "" if x is None else f" ({x:+.4f})"

    if kind == "xray":
        rf = res.get("r_free")
        return (f"densrefine live: R-work {res['r_work']:.4f}{sgn(res.get('d_r_work'))}, "
                + (f"R-free {rf:.4f}{sgn(res.get('d_r_free'))}" if rf is not None
                   else "R-free n/a") + ("; scales refitted" if res.get("refit") else ""))
    text = f"densrefine live: CC_mask {res['cc_mask']:.4f}{sgn(res.get('d_cc_mask'))}"
    for r in (res.get("residues") or [])[:3]:
        if r.get("cc") is not None:
            text += f"; {r['chain']} {r['res_seq']} {r['res_name']} CC {r['cc']:.3f}"
    return text


def read_pdb_atoms(lines):
    """{(chain, resno, icode, name, altloc): (x, y, z)} from PDB ATOM/HETATM lines."""
    out = {}
    for ln in lines:
        if ln.startswith(("ATOM  ", "HETATM")):
            key = (ln[21].strip(), int(ln[22:26]), ln[26].strip(), ln[12:16].strip(),
                   ln[16].strip())
            out[key] = (float(ln[30:38]), float(ln[38:46]), float(ln[46:54]))
        elif ln.startswith("ENDMDL"):
            break
    return out


def decode_array(d):
    """A protocol array: numpy (nz, ny, nx) float32 when numpy exists, else (flat list,
    shape)."""
    raw = base64.b64decode(d["data"])
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return list(struct.unpack(f"<{len(raw) // 4}f", raw)), d["shape"]
    return np.frombuffer(raw, "<f4").reshape(d["shape"])


def write_ccp4_box(path, values, box):
    """Write a map box (from `LiveClient.maps`) as a CCP4/MRC file hosts can read.

    The box is written as a section of its full grid, the way crystallographic programs
    write map sections: MX, MY, MZ and the cell are those of the whole grid (the crystal
    cell, or the cryo-EM map's box), NXSTART… the box's first grid index, ORIGIN the
    map's own origin (0 for crystals).

    Parameters
    ----------
    path : str
    values : numpy array (nz, ny, nx) or (flat list, shape)
    box : dict
        The maps reply (``cell``, ``start``, ``grid``, optional ``map_origin``).

    Returns
    -------
    str
        ``path``.
    """
    if isinstance(values, tuple):
        flat, shape = values
    else:
        shape = list(values.shape)
        flat = [float(v) for v in values.reshape(-1)]
    nz, ny, nx = (int(s) for s in shape)
    cell = [float(c) for c in box["cell"]]
    grid, start = [int(g) for g in box["grid"]], [int(v) for v in box["start"]]
    mean = sum(flat) / len(flat)
    rms = (sum((v - mean) ** 2 for v in flat) / len(flat)) ** 0.5
    raw = bytearray(1024)
    struct.pack_into("<3i", raw, 0, nx, ny, nz)
    struct.pack_into("<i", raw, 12, 2)                                   # MODE 2: float32
    struct.pack_into("<3i", raw, 16, *start)                             # NXSTART…
    struct.pack_into("<3i", raw, 28, *grid)                              # MX, MY, MZ
    struct.pack_into("<6f", raw, 40, *cell)
    struct.pack_into("<3i", raw, 64, 1, 2, 3)                            # MAPC, MAPR, MAPS
    struct.pack_into("<3f", raw, 76, min(flat), max(flat), mean)
    struct.pack_into("<2i", raw, 88, 1, 0)                               # ISPG, NSYMBT
    struct.pack_into("<3f", raw, 196, *[float(v) for v in box.get("map_origin", (0, 0, 0))])
    raw[208:212] = b"MAP "
    raw[212:216] = bytes([0x44, 0x44, 0, 0])                             # little-endian
    struct.pack_into("<f", raw, 216, rms)
    struct.pack_into("<i", raw, 220, 1)                                  # NLABL
    label = b"densrefine live map box"
    raw[224:224 + len(label)] = label
    with open(path + ".tmp", "wb") as fh:
        fh.write(bytes(raw))
        fh.write(struct.pack(f"<{len(flat)}f", *flat))
    os.replace(path + ".tmp", path)
    return path
