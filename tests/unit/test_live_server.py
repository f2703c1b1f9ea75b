"""The live server (`densrefine serve`): local channel only, token, refusals, lifetime.

One real server process (the CLI, as hosts start it) on 5E5Z serves the request tests;
the lifetime tests start their own.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, require_data

EXCHANGE = ROOT / "plugins" / "exchange"


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["DENSREFINE_EXE"] = f"{sys.executable} -m densrefine"
    return env


def _client():
    sys.path.insert(0, str(EXCHANGE))
    import densrefine_live

    return densrefine_live


@pytest.fixture(scope="module")
def live():
    paths = (require_data("5e5z", "5e5z.pdb.gz"), require_data("5e5z", "5e5z.mtz.gz"))
    os.environ.update({k: v for k, v in _env().items() if k in ("DENSREFINE_EXE",)})
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = _env()["PYTHONPATH"]
    try:
        c = _client().LiveClient.start(str(paths[0]), str(paths[1]))
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    yield c
    c.close()


def _raw(client, data: bytes) -> dict:
    client.sock.sendall(data)
    while b"\n" not in client._buf:
        client._buf += client.sock.recv(1 << 16)
    line, client._buf = client._buf.split(b"\n", 1)
    return json.loads(line)


def test_unix_socket_is_private(live):
    path = live.ready["address"]
    assert live.ready["transport"] == "unix"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert len(live.token) >= 32


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_another_user_cannot_connect(live):
    pid = os.fork()
    if pid == 0:  # child: become nobody, try to connect
        code = 3
        try:
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(live.ready["address"])
                code = 1
            except PermissionError:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


def test_refusals_keep_the_last_good_state(live):
    before = live.scores()
    tok = live.token
    cases = [
        (b"garbage\n", "bad_json"),
        (b"[1, 2]\n", "bad_json"),
        (json.dumps({"op": "scores"}).encode() + b"\n", "bad_token"),
        (json.dumps({"token": "x" * 43, "op": "scores"}).encode() + b"\n", "bad_token"),
        (json.dumps({"token": tok, "op": "rm -rf"}).encode() + b"\n", "unknown_op"),
        (json.dumps({"token": tok, "op": "update", "args": {"atoms": [10 ** 9],
                                                            "xyz": [[0, 0, 0]]}}).encode()
         + b"\n", "input"),
        (json.dumps({"token": tok, "op": "update", "args": {"atoms": [0],
                                                            "xyz": [[1e300, 0, 0]]}}).encode()
         + b"\n", "input"),
        (b'{"token": "%s", "op": "update", "args": {"atoms": [0], "xyz": [[NaN, 0, 0]]}}\n'
         % tok.encode(), "bad_json"),
        (json.dumps({"token": tok, "op": "update", "args": {"atoms": [0], "evil": 1}}).encode()
         + b"\n", "bad_request"),
        (json.dumps({"token": tok, "op": "maps", "args": {"center": [0, 0, 0],
                                                          "size": 1e6}}).encode() + b"\n",
         "input"),
        (json.dumps({"token": tok, "op": "refine", "args": {"selection": 5}}).encode()
         + b"\n", "bad_request"),
    ]
    for data, code in cases:
        rep = _raw(live, data)
        assert rep["ok"] is False and rep["error"]["code"] == code, (data[:60], rep)
    assert live.scores() == before


def test_oversized_request_is_refused(live):
    from densrefine.live.protocol import MAX_REQUEST_BYTES

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(live.ready["address"])
    s.sendall(b"x" * (MAX_REQUEST_BYTES + 10))
    rep = json.loads(s.makefile("rb").readline())
    assert rep["error"]["code"] == "too_large"
    s.close()
    assert live.request("ping")["pong"] is True          # the session keeps serving


def test_update_and_maps_over_the_socket(live):
    mod = _client()
    r = live.update([0, 1], [[1.0, 2.0, 3.0], [2.0, 2.5, 3.0]])
    assert 0.0 < r["r_work"] < 1.0 and r["d_r_work"] != 0.0
    assert "R-work" in mod.status_text(r, live.kind)
    m = live.maps([1.0, 2.0, 3.0], 8.0)
    assert m["maps"]["2fofc"].shape == tuple(m["shape"])
    assert live.scores()["version"] >= 1


def test_tcp_binds_loopback_only(tmp_path):
    paths = (require_data("5e5z", "5e5z.pdb.gz"), require_data("5e5z", "5e5z.mtz.gz"))
    from densrefine.live import Session
    from densrefine.live.server import LiveServer

    srv = LiveServer(Session(str(paths[0]), str(paths[1])), transport="tcp")
    try:
        host, port = srv.sock.getsockname()
        assert host == "127.0.0.1"
        ip = _non_loopback_ip()
        if ip is not None:
            with pytest.raises(OSError):
                socket.create_connection((ip, port), timeout=2)
        assert json.loads(srv.handle(json.dumps({"token": srv.token, "op": "ping"}).encode()))[
            "ok"] is True
    finally:
        srv.close()


def _non_loopback_ip():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.255.255.255", 1))
        ip = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if ip.startswith("127.") else ip


HOST = """
import os, subprocess, sys, time
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
line = p.stdout.readline()
print(p.pid, flush=True)
time.sleep(600)
"""


def test_killing_the_host_ends_the_session(tmp_path):
    paths = (require_data("5e5z", "5e5z.pdb.gz"), require_data("5e5z", "5e5z.mtz.gz"))
    host = subprocess.Popen([sys.executable, "-c", HOST, sys.executable, "-m", "densrefine",
                             "serve", str(paths[0]), str(paths[1]), "--watch-stdin", "-q"],
                            stdout=subprocess.PIPE, env=_env())
    server_pid = int(host.stdout.readline())
    assert _alive(server_pid)
    os.kill(host.pid, signal.SIGKILL)
    host.wait()
    t0 = time.monotonic()
    while _alive(server_pid) and time.monotonic() - t0 < 15:
        time.sleep(0.1)
    assert not _alive(server_pid), "the server outlived its host"


def test_heartbeat_ends_an_idle_session():
    paths = (require_data("5e5z", "5e5z.pdb.gz"), require_data("5e5z", "5e5z.mtz.gz"))
    p = subprocess.Popen([sys.executable, "-m", "densrefine", "serve", str(paths[0]),
                          str(paths[1]), "--heartbeat", "1", "-q"], stdout=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, env=_env())
    ready = json.loads(p.stdout.readline())
    assert p.wait(30) == 0
    assert not os.path.exists(ready["address"])          # the socket is cleaned up


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (not yet reaped by a dead parent's init) counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return True
