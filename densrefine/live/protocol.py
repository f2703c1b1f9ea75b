"""The live protocol: one JSON object per line each way (see docs/live.md).

Request: ``{"id": 7, "token": "...", "op": "update", "args": {...}}``.
Reply: ``{"id": 7, "ok": true, "result": {...}}`` or
``{"id": 7, "ok": false, "error": {"code": "...", "message": "..."}}``.
Arrays travel as ``{"dtype": "float32", "shape": [nz, ny, nx], "data": BASE64}``
(little-endian). This module has no torch and no densrefine imports beyond the errors,
so that host plugins can copy its rules; `plugins/exchange/densrefine_live.py` is the
stdlib client.
"""
from __future__ import annotations

import base64
import hmac
import json
import math

import numpy as np

PROTOCOL_VERSION = 1
MAX_REQUEST_BYTES = 4 << 20
"""Longest request line accepted (bytes); longer ones are refused with ``too_large``."""
MAX_UPDATE_ATOMS = 20000
"""Most atoms one ``update`` may move."""
OPS = ("hello", "ping", "info", "scores", "update", "maps", "refine", "rescale",
       "write_model", "run", "job", "cancel_job", "shutdown")
ERROR_CODES = ("bad_json", "bad_request", "bad_token", "too_large", "unknown_op",
               "input", "busy", "internal")


class ProtocolError(Exception):
    """A request the session refuses; ``code`` is one of `ERROR_CODES`."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def parse_request(line: bytes, token: str) -> dict:
    """Decode and check one request line; `ProtocolError` when it is refused.

    Parameters
    ----------
    line : bytes
        One line without its newline.
    token : str
        The session token; compared in constant time.

    Returns
    -------
    dict
        ``id`` (int, str or None), ``op`` (str), ``args`` (dict).
    """
    if len(line) > MAX_REQUEST_BYTES:
        raise ProtocolError("too_large", f"request of {len(line)} bytes exceeds "
                            f"{MAX_REQUEST_BYTES}")
    try:
        req = json.loads(line.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as err:
        raise ProtocolError("bad_json", f"not a JSON object: {str(err)[:200]}") from None
    if not isinstance(req, dict):
        raise ProtocolError("bad_json", "a request must be a JSON object")
    tok = req.get("token")
    if not isinstance(tok, str) or not hmac.compare_digest(tok.encode(), token.encode()):
        raise ProtocolError("bad_token", "missing or wrong session token")
    op = req.get("op")
    if op not in OPS:
        raise ProtocolError("unknown_op", f"unknown op {str(op)[:40]!r}; one of {', '.join(OPS)}")
    args = req.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError("bad_request", "args must be a JSON object")
    rid = req.get("id")
    if rid is not None and not isinstance(rid, (int, str)):
        raise ProtocolError("bad_request", "id must be an integer or a string")
    return {"id": rid, "op": op, "args": args}


def _no_constant(name):
    raise ValueError(f"{name} is not allowed")


def encode_array(a) -> dict:
    """float32 array → JSON-ready dict (little-endian, base64)."""
    a = np.ascontiguousarray(np.asarray(a, "<f4"))
    return {"dtype": "float32", "shape": list(a.shape),
            "data": base64.b64encode(a.tobytes()).decode("ascii")}


def decode_array(d: dict) -> np.ndarray:
    """Inverse of `encode_array`."""
    return np.frombuffer(base64.b64decode(d["data"]), "<f4").reshape(d["shape"])


def clean(obj):
    """JSON-safe copy: numpy scalars → Python, arrays → `encode_array`, NaN/inf → None."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        if obj.ndim >= 2 or obj.dtype.kind == "f" and obj.size > 64:
            return encode_array(obj)
        return clean(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def reply(rid, result=None, error: ProtocolError | None = None) -> bytes:
    """One reply line (bytes, with the newline)."""
    if error is None:
        msg = {"id": rid, "ok": True, "result": clean(result)}
    else:
        msg = {"id": rid, "ok": False, "error": {"code": error.code, "message": str(error)}}
    return (json.dumps(msg, allow_nan=False) + "\n").encode("utf-8")
