"""Command-line interface: ``densrefine <subcommand>``.

One module per subcommand, each exposing ``add_args(parser)`` and ``main(args)``; the
module docstring's first line is the help text (cryodrgn/servalcat pattern). ``main``
orchestrates: errors the user can fix (`InputError`, `DeviceError`) become a one-line
message and exit code 2; anything else is "unexpected error, see <log>" and exit 1
with the traceback in the log.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from ..errors import DeviceError, InputError
from . import _common

COMMANDS = ["info", "simulate", "score", "fit", "rfactor", "validate", "batch", "serve"]


def _load(name):
    mod = importlib.import_module(f"{__name__}.{name}")
    for hook in ("add_args", "main"):
        if not hasattr(mod, hook):
            raise RuntimeError(f"densrefine.cli.{name} lacks {hook}(); every command module "
                               "must define add_args(parser) and main(args)")
    return mod


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``densrefine CMD: error: ...; see --help`` (exit 2)."""

    def error(self, message):
        msg = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {msg}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(
        prog="densrefine",
        description="Fit atomic models into cryo-EM maps and crystallographic data.")
    parser.add_argument("--version", action="version", version=f"densrefine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        mod = _load(name)
        doc = (mod.__doc__ or name).strip()
        p = sub.add_parser(name, help=doc.splitlines()[0], description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_args(p)
        _common.add_common_args(p)
        p.set_defaults(_module=mod, _parser=p)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``densrefine`` script; returns the exit code.

    Exit codes: 0 success, 1 unexpected error (traceback in the log), 2 bad input
    (one line on stderr naming the file or option and the fix), 130 interrupted
    (SIGINT), 143 terminated (SIGTERM).
    """
    try:  # building the parser imports every command module (~1 s): Ctrl-C there too
        parser = build_parser()
        args, rest = parser.parse_known_args(argv)
    except KeyboardInterrupt:
        print("densrefine: interrupted", file=sys.stderr)
        return 130
    if rest:  # named by the subcommand's parser: "densrefine score: error: ..."
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(rest)}")
    _common.setup_logging(args)
    try:
        rc = args._module.main(args)
        _common.commit()  # a command that wrote nothing still shows its log
        return int(rc or 0)
    except (InputError, DeviceError) as exc:
        msg = " ".join(str(exc).split())
        _common.log_to_file(logging.ERROR, msg)  # the console gets the line below
        print(f"densrefine {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # output piped into e.g. `head`, which closed early: not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt as exc:
        term = isinstance(exc, _common.Terminated)
        what = "terminated (SIGTERM)" if term else "interrupted"
        _common.log_to_file(logging.WARNING, what)
        print(f"densrefine {args.command}: {what}", file=sys.stderr)
        return 143 if term else 130
    except Exception:  # noqa: BLE001 - last-resort handler, traceback goes to the log
        path = _common.dump_traceback(args)
        print(f"densrefine {args.command}: unexpected error, see {path}", file=sys.stderr)
        return 1
    finally:
        _common.close_logging()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
