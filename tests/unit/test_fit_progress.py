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
def console():
    """A console handler as the CLI installs it (cli._common.setup_console_logging)."""
    stream = io.StringIO()
    h = logging.StreamHandler(stream)
    h.setLevel(logging.INFO)
    h._densrefine_console = True
    old_level = log.level
    log.addHandler(h)
    log.setLevel(logging.DEBUG)
    yield h
    log.removeHandler(h)
    log.setLevel(old_level)


def _stats(n, status="running", ref=False):
    cyc = [{"stage": st, "cc_mask_term": 0.60 + 0.05 * i, "bond_rmsd": 0.1 / (i + 1)}
           for i, st in enumerate(["rigid", "sse", "xyz", "xyz"][:n])]
    if ref:
        for i, c in enumerate(cyc):
            c["cc_mask_ref"] = 0.80 + 0.01 * i
    return {"status": status, "cycles": cyc}


def test_progress_bar_on_a_terminal_shows_stage_cc_and_count(tmp_path, console):
    term, plain = FakeTerminal(), console.stream
    p = _Progress(str(tmp_path / "s.json"), 4, stream=term)
    p(_stats(0))
    for n in (1, 2, 3):
        p(_stats(n))
        log.info("a log line after call %d", n)
    out = term.getvalue()
    assert "fit: xyz" in out and "3/4 calls" in out
    assert "CC (map term) 0.7000, bond RMSD 0.0333 Å" in out
    assert "a log line after call 2" in out                    # printed above the bar
    assert plain.getvalue() == ""                              # not through the bar
    p(_stats(4, status="finished"))
    assert "4/4 calls" in term.getvalue() and p.bar is None
    assert json.loads((tmp_path / "s.json").read_text())["status"] == "finished"
    log.info("after the bar")
    assert console.stream is plain and "after the bar" in plain.getvalue()  # given back


def test_progress_bar_shows_fixed_reference_cc_when_recorded(tmp_path, console):
    term = FakeTerminal()
    p = _Progress(str(tmp_path / "s.json"), 4, stream=term)
    p(_stats(2, ref=True))
    assert "CC_mask 0.8100" in term.getvalue() and "map term" not in term.getvalue()
    p.close()


def test_progress_more_calls_than_expected_grow_the_total(tmp_path, console):
    term = FakeTerminal()
    p = _Progress(str(tmp_path / "s.json"), 2, stream=term)
    p(_stats(3))
    assert "3/3 calls" in term.getvalue()
    p.close()


def test_no_bar_on_a_pipe_or_with_quiet(tmp_path, console):
    pipe = io.StringIO()
    p = _Progress(str(tmp_path / "s.json"), 4, stream=pipe)
    p(_stats(2))
    assert pipe.getvalue() == "" and p.bar is None
    assert len(json.loads((tmp_path / "s.json").read_text())["cycles"]) == 2
    console.setLevel(logging.WARNING)                            # -q
    term = FakeTerminal()
    p = _Progress(str(tmp_path / "s.json"), 4, stream=term)
    p(_stats(2))
    assert term.getvalue() == "" and p.bar is None
