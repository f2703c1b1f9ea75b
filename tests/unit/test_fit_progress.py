"""fit's progress callback (`densrefine.cli.fit._Progress`): a tqdm bar on a terminal only.

The bar runs over the expected optimisation calls and shows the stage, the CC and the
bond RMSD; the console log prints above it while it runs; nothing is drawn on a pipe or
with -q, where the log table is the progress. Every call rewrites the stats JSON.
"""
from __future__ import annotations

import io
import json
import logging

import pytest

from densrefine.cli.fit import _Progress

log = logging.getLogger("densrefine")


class FakeTerminal(io.StringIO):
    """A text stream that says it is a terminal (of unknown size, as a bare pty)."""

    def isatty(self):
        return True


@pytest.fixture
def term():
    return FakeTerminal()


@pytest.fixture
def console(term):
    """A console handler as the CLI installs it (cli._common.setup_console_logging): on the
    same stream as the bar (stderr)."""
    h = logging.StreamHandler(term)
    h.setLevel(logging.INFO)
    h._densrefine_console = True
    old_level = log.level
    log.addHandler(h)
    log.setLevel(logging.DEBUG)
    yield h
    log.removeHandler(h)
    log.setLevel(old_level)


def _progress(tmp_path, total, stream):
    """`_Progress` as `densrefine fit` makes it (no log file: the console only)."""
    out = {"stats": str(tmp_path / "s.json"), "log": None, "config": str(tmp_path / "c.yaml")}
    return _Progress(out, "# config\n", total, stream=stream)


def _stats(n, status="running", ref=False):
    cyc = [{"stage": st, "cc_mask_term": 0.60 + 0.05 * i, "bond_rmsd": 0.1 / (i + 1)}
           for i, st in enumerate(["rigid", "sse", "xyz", "xyz"][:n])]
    if ref:
        for i, c in enumerate(cyc):
            c["cc_mask_ref"] = 0.80 + 0.01 * i
    return {"status": status, "cycles": cyc}


def test_progress_bar_on_a_terminal_shows_stage_cc_and_count(tmp_path, term, console):
    p = _progress(tmp_path, 4, term)
    p(_stats(0))
    for n in (1, 2, 3):
        p(_stats(n))
        log.info("a log line after call %d", n)
    out = term.getvalue()
    assert "fit: xyz" in out and "3/4 calls" in out
    assert "CC (map term) 0.7000, bond RMSD 0.0333 Å" in out
    # log lines go through tqdm.write: the bar is cleared, the line printed, the bar redrawn
    assert console.stream is not term
    line = out.index("a log line after call 2")
    assert "2/4 calls" in out[:line] and "3/4 calls" in out[line:]
    p(_stats(4, status="finished"))
    assert "4/4 calls" in term.getvalue() and p.bar is None
    assert json.loads((tmp_path / "s.json").read_text())["status"] == "finished"
    log.info("after the bar")
    assert console.stream is term and term.getvalue().endswith("after the bar\n")  # given back


def test_progress_bar_shows_fixed_reference_cc_when_recorded(tmp_path, term, console):
    p = _progress(tmp_path, 4, term)
    p(_stats(2, ref=True))
    assert "CC_mask 0.8100" in term.getvalue() and "map term" not in term.getvalue()
    p.close()


def test_progress_more_calls_than_expected_grow_the_total(tmp_path, term, console):
    p = _progress(tmp_path, 2, term)
    p(_stats(3))
    assert "3/3 calls" in term.getvalue()
    p.close()


def test_no_bar_on_a_pipe_or_with_quiet(tmp_path, term, console):
    pipe = io.StringIO()
    p = _progress(tmp_path, 4, pipe)
    p(_stats(2))
    assert pipe.getvalue() == "" and p.bar is None
    assert len(json.loads((tmp_path / "s.json").read_text())["cycles"]) == 2
    console.setLevel(logging.WARNING)                            # -q
    p = _progress(tmp_path, 4, term)
    p(_stats(2))
    assert term.getvalue() == "" and p.bar is None


def test_stale_console_handler_on_another_stream_is_left_alone(tmp_path, term, console):
    """A console handler of an earlier run (closed stream) neither breaks nor gets swapped."""
    old = io.StringIO()
    stale = logging.StreamHandler(old)
    stale._densrefine_console = True
    old.close()
    log.addHandler(stale)
    try:
        p = _progress(tmp_path, 4, term)
        p(_stats(1))
        assert "1/4 calls" in term.getvalue() and stale.stream is old
        p.close()
    finally:
        log.removeHandler(stale)
