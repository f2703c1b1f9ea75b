"""Ordinary ``densrefine fit`` / ``score`` / ``rfactor`` runs inside the warm session.

The host plugins' ordinary calls used to start a new ``densrefine`` process each time,
paying the start-up (importing torch alone is 2.8–3.0 s on the shared 2-core VM) on every
call. A running ``densrefine serve`` has paid it once: the ``run`` request hands it the
same command line the process would get, and it runs the very same code
(`densrefine.cli.main`, handed over by ``densrefine serve``: the CLI sits above this
package) in a background thread, so the outputs (model file, stats JSON,
log) are those of the process, and the session keeps answering edits meanwhile.

One run at a time; ``job`` reports its state, exit code and console output, ``cancel_job``
interrupts it (a ``KeyboardInterrupt`` raised in the thread: the command marks its stats
JSON "interrupted" and returns 130, as on Ctrl-C).
"""
from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import sys
import threading
import time
import warnings

log = logging.getLogger("densrefine")

COMMANDS = ("fit", "score", "rfactor")
"""Subcommands a session runs on request (the others serve, batch or print only)."""
MAX_OUTPUT = 64 * 1024
"""Console output kept per run (characters, the tail)."""


class CommandJob:
    """One ``densrefine ARGV`` run in a thread of the serving process.

    Parameters
    ----------
    argv : list of str
        The arguments after ``densrefine`` (e.g. ``["score", "m.pdb", "m.mrc", "-d",
        "3.0", "--json", "s.json"]``).
    runner : callable(argv) -> int
        Runs one command and returns its exit code (``densrefine serve`` passes
        `densrefine.cli.serve.run_command`).
    threads : int, optional
        torch CPU threads during the run (the process default, so that the numbers are
        those of a fresh process); the session's own setting is restored afterwards.
    """

    def __init__(self, argv, runner, threads=None):
        self.argv, self.runner = [str(a) for a in argv], runner
        self.threads = threads
        self.state, self.returncode, self.output = "running", None, ""
        self.t0, self.t1 = time.monotonic(), None
        self.cancelled = False
        self.thread = threading.Thread(target=self._run, daemon=True, name="densrefine-job")
        self.thread.start()

    def _run(self):
        buf = io.StringIO()
        saved = (list(log.handlers), log.level, log.propagate, sys.argv, warnings.showwarning)
        torch_threads = None
        try:
            if self.threads:
                import torch

                torch_threads = torch.get_num_threads()
                torch.set_num_threads(int(self.threads))
            sys.argv = ["densrefine", *self.argv]     # the log header's command line
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                try:
                    rc = self.runner(self.argv)
                except SystemExit as exc:           # argparse refusals
                    rc = exc.code if isinstance(exc.code, int) else 2
                except KeyboardInterrupt:           # cancelled before main's own handler
                    print(f"densrefine {self.argv[0]}: interrupted", file=sys.stderr)
                    rc = 130
        except BaseException as exc:  # noqa: BLE001 - the session keeps serving
            buf.write(f"densrefine {self.argv[0]}: unexpected error in the live session: "
                      f"{type(exc).__name__}: {exc}\n")
            rc = 1
        finally:
            handlers, level, propagate, argv, showwarning = saved
            for h in list(log.handlers):
                log.removeHandler(h)
            for h in handlers:
                log.addHandler(h)
            log.setLevel(level)
            log.propagate = propagate
            sys.argv = argv
            warnings.showwarning = showwarning
            if torch_threads is not None:
                import torch

                torch.set_num_threads(torch_threads)
        self.output = buf.getvalue()[-MAX_OUTPUT:]
        self.returncode = int(rc)
        self.t1 = time.monotonic()
        self.state = "finished"

    def status(self) -> dict:
        """``state`` ("running" or "finished"), ``returncode``, ``output``, ``elapsed_s``."""
        if self.state == "running" and not self.thread.is_alive():
            # a cancel that landed after the command returned, in the clean-up
            self.returncode, self.t1, self.state = 130, time.monotonic(), "finished"
            self.output = f"densrefine {self.argv[0]}: interrupted\n"
        end = self.t1 if self.t1 is not None else time.monotonic()
        return {"state": self.state, "returncode": self.returncode,
                "output": self.output if self.state == "finished" else "",
                "elapsed_s": end - self.t0, "cancelled": self.cancelled,
                "argv": self.argv}

    def cancel(self) -> bool:
        """Interrupt the run (KeyboardInterrupt in its thread); False if it had ended."""
        if self.state != "running" or not self.thread.is_alive():
            return False
        self.cancelled = True
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread.ident),
                                                   ctypes.py_object(KeyboardInterrupt))
        return True
