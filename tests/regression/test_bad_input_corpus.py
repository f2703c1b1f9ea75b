"""The bad-input corpus (tests/regression/corpus.py) through the real CLI, in a subprocess.

For every refusal: exit code 2, exactly one line on stderr naming the file (or option)
and a fix, no traceback, no hang (60 s limit; named pipes included), every file of the
case's folder byte-identical afterwards and no file added (refused runs write nothing,
not even a log). For accepted-with-warning cases: exit 0, the warning as one
``warning: ...`` line and in the JSON ``"warnings"``, inputs unchanged, no temporary
files. Plus: an earlier good run's outputs survive a refused re-run under the same
prefix, and SIGINT / SIGTERM during ``fit`` leave complete files only.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_data
from tests.regression.corpus import CASES, base

TIMEOUT = 60


def snapshot(folder: Path) -> dict:
    """Relative path → sha256 (regular files), "dir", "fifo" or "link:<target>"."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            rel = str(p.relative_to(folder))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "link:" + os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            elif stat.S_ISFIFO(st.st_mode):
                out[rel] = "fifo"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _fill(arg: str, folder: Path) -> str:
    return arg.format(dir=folder, model=folder / "model.pdb", map=folder / "map.mrc",
                      mtz=folder / "data.mtz.gz", xmodel=folder / "xmodel.pdb.gz",
                      out=folder / "out")


def run_case(case, tmp: Path, mode: str = "subprocess"):
    """Build the case's folder under ``tmp`` and run it; returns a CompletedProcess-like
    object with ``folder`` and ``before`` (snapshot) attached.

    ``mode`` "subprocess": ``python -m densrefine`` (60 s limit: a hang fails);
    "inproc": `densrefine.cli.main` in this process with stdout/stderr captured (the
    same entry point, without 1-3 s of imports per case).
    """
    folder = tmp / "in"
    folder.mkdir()
    base(folder)
    if case.setup is not None:
        case.setup(folder)
    argv = [_fill(a, folder) for a in case.argv]
    before = snapshot(folder)
    if mode == "inproc":
        p = _inproc(argv, folder)
    else:
        env = dict(os.environ,
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        p = subprocess.run([sys.executable, "-m", "densrefine", *argv], capture_output=True,
                           text=True, cwd=folder, env=env, timeout=TIMEOUT)
    p.folder, p.before = folder, before
    return p


def _inproc(argv, folder):
    import contextlib
    import io
    import types
    import warnings

    from densrefine.cli import main

    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    old_argv = sys.argv
    try:
        os.chdir(folder)
        sys.argv = ["densrefine", *argv]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings():
            warnings.simplefilter("default")  # a fresh "once per location" as in a new process
            try:
                rc = main(argv)
            except SystemExit as exc:  # argparse
                rc = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.chdir(cwd)
        sys.argv = old_argv
    return types.SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())


def _subprocess_only(case) -> bool:
    """Cases that could hang (named pipes) or need a fresh process run as subprocesses."""
    return any("fifo" in str(getattr(case.setup, "__qualname__", "")) for _ in (0,)) \
        or "pipe" in case.what or case.extra.get("subprocess", False)


def _params(mode):
    out = []
    for c in CASES:
        if mode == "inproc" and _subprocess_only(c):
            continue
        marks = [pytest.mark.slow] if (c.slow or mode == "subprocess-all") else []
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


@pytest.mark.parametrize("case", _params("inproc"))
def test_corpus(case, tmp_path):
    """Every case but the named-pipe ones, through `densrefine.cli.main` in-process."""
    check_case(case, tmp_path, "inproc")


@pytest.mark.parametrize("case", [c for c in CASES if _subprocess_only(c)], ids=lambda c: c.id)
def test_corpus_pipes(case, tmp_path):
    """Named pipes: in a subprocess with a time limit (they used to hang)."""
    check_case(case, tmp_path, "subprocess")


@pytest.mark.parametrize("case", _params("subprocess-all"))
def test_corpus_subprocess(case, tmp_path):
    """The whole corpus again as users run it, `python -m densrefine` (slow: imports)."""
    check_case(case, tmp_path, "subprocess")


def check_case(case, tmp_path, mode):
    for rel in case.needs:
        require_data(*rel.split("/"))
    if case.extra.get("no_cuda"):
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA present")
    p = run_case(case, tmp_path, mode)
    out = p.stdout + p.stderr
    assert "Traceback" not in out, out[-3000:]
    assert p.returncode == case.rc, (p.returncode, out[-3000:])
    cmd = case.argv[0]
    if case.rc == 2:
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, p.stderr            # exactly one line on a refusal
        line = lines[0]
        assert line.startswith(f"densrefine {cmd}: error: "), line
        for s in case.names:
            assert s.lower() in line.lower(), (s, line)
        assert "; " in line and line.rsplit("; ", 1)[1].strip(), line  # a fix is given
        assert snapshot(p.folder) == p.before       # nothing changed, nothing added
        return
    after = snapshot(p.folder)
    for rel, h in p.before.items():                 # inputs unchanged
        assert after.get(rel) == h, rel
    assert not [r for r in after if ".tmp" in r], after  # no temporary files left
    warn_lines = [ln for ln in p.stderr.splitlines() if ln.startswith("warning: ")]
    for s in case.warns:
        assert any(s.lower() in ln.lower() for ln in warn_lines), (s, p.stderr)
    if case.json:
        doc = json.loads(Path(_fill(case.json, p.folder)).read_text())
        for s in case.warns:
            assert any(s.lower() in w.lower() for w in doc["warnings"]), (s, doc["warnings"])
    for s in case.extra.get("stdout", ()):
        assert s in p.stdout, (s, p.stdout)


def test_corpus_size_and_docs_table():
    """≥ 80 cases, unique ids, every one listed in docs/bad_input.md."""
    ids = [c.id for c in CASES]
    assert len(ids) >= 80 and len(set(ids)) == len(ids)
    doc = (ROOT / "docs" / "bad_input.md").read_text()
    missing = [i for i in ids if f"`{i}`" not in doc]
    assert not missing, f"regenerate docs/bad_input.md (python3 -m tests.regression.corpus): {missing}"


# ------------------------------------------------ earlier outputs survive a refused re-run
def _cli(args, cwd, timeout=TIMEOUT):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "densrefine", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def test_refused_score_rerun_keeps_the_earlier_json_and_log(tmp_path):
    base(tmp_path)
    good = _cli(["score", "model.pdb", "map.mrc", "-d", "3", "--json", "s.json"], tmp_path)
    assert good.returncode == 0, good.stderr
    before = snapshot(tmp_path)
    assert "s.log" in before and "s.json" in before
    bad = _cli(["score", "model.pdb", "map.mrc", "-d", "0.1", "--json", "s.json"], tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert snapshot(tmp_path) == before


def test_refused_fit_rerun_keeps_the_earlier_log(tmp_path):
    """A bad --select under the prefix of a good run overwrote PREFIX.log; now the
    refused run writes nothing (its log stays in memory until the inputs are valid)."""
    base(tmp_path)
    args = ["fit", "model.pdb", "map.mrc", "-d", "3", "-o", "run", "--stages", "xyz",
            "--cycles", "1"]
    good = _cli(args, tmp_path, timeout=300)
    assert good.returncode == 0, good.stderr
    before = snapshot(tmp_path)
    for suffix in (".pdb", ".log", "_stats.json", "_config.yaml", "_report.html"):
        assert "run" + suffix in before
    bad = _cli(args + ["--select", "Z/1-9"], tmp_path)
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert "Z/1-9" in bad.stderr
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------- interrupts
def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(tmp_path, sig, wait_for_stats: bool, delay: float = 0.3):
    base(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    before = snapshot(tmp_path)
    # a terminal's Ctrl-C: SIGINT at its default in the child even when this test runs in
    # a background job (which starts with SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler: the signal was lost and the fit ran to the end)
    proc = subprocess.Popen([sys.executable, "-m", "densrefine", "fit", "model.pdb", "map.mrc",
                             "-d", "3", "-o", "run", "--cycles", "30"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    t0 = time.monotonic()
    if wait_for_stats:
        while not (tmp_path / "run_stats.json").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() - t0 < 120
            time.sleep(0.05)
    else:
        time.sleep(delay)  # still importing, or reading and checking the inputs
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err, before


@pytest.mark.parametrize("sig,rc", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_interrupt_during_fit_leaves_complete_files(tmp_path, sig, rc):
    code, out, err, before = _interrupt(tmp_path, sig, wait_for_stats=True)
    assert code == rc, (code, err[-2000:])
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("densrefine fit: ")]
    assert lines and lines[-1] in ("densrefine fit: interrupted",
                                   "densrefine fit: terminated (SIGTERM)")
    after = snapshot(tmp_path)
    for rel, h in before.items():
        assert after[rel] == h, rel                      # inputs unchanged
    assert not [r for r in after if ".tmp" in r], after  # no temporary file left behind
    assert "run.pdb" not in after                         # no half-finished model
    stats = json.loads((tmp_path / "run_stats.json").read_text())  # complete JSON
    assert stats["status"] in ("interrupted", "terminated (SIGTERM)"), stats["status"]
    assert "run.log" in after and "run_config.yaml" in after


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.8, 1.2, 2.0])  # after `import densrefine` (~0.2 s)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_before_the_inputs_are_read_writes_nothing(tmp_path, sig, delay):
    """Signals while importing or checking: at most one line, no traceback, and nothing
    written unless the run had passed its checks (then only complete files)."""
    code, out, err, before = _interrupt(tmp_path, sig, wait_for_stats=False, delay=delay)
    assert code in (130, 143, -sig), (code, err[-2000:])
    assert "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.startswith("densrefine")]) <= 1, err
    after = snapshot(tmp_path)
    assert not [r for r in after if ".tmp" in r], after
    for rel, h in before.items():
        assert after[rel] == h, rel
    if "run_stats.json" in after:
        json.loads((tmp_path / "run_stats.json").read_text())
    else:
        assert set(after) == set(before), sorted(set(after) - set(before))
