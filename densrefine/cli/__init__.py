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

COMMANDS = ["info", "simulate", "score", "fit", "rfactor", "validate"]


def _load(name):
    mod = importlib.import_module(f"{__name__}.{name}")
    for hook in ("add_args", "main"):
        if not hasattr(mod, hook):
            raise RuntimeError(f"densrefine.cli.{name} lacks {hook}(); every command module "
                               "must define add_args(parser) and main(args)")
    return mod


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="densrefine",
        description="Fit atomic models into cryo-EM maps and crystallographic data.")
    parser.add_argument("--version", action="version", version=f"densrefine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        mod = _load(name)
        doc = (mod.__doc__ or name).strip()
        p = sub.add_parser(name, help=doc.splitlines()[0], description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_args(p)
        _common.add_common_args(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``densrefine`` script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _common.setup_console_logging(args)
    try:
        rc = args._module.main(args)
        return int(rc or 0)
    except (InputError, DeviceError) as exc:
        msg = " ".join(str(exc).split())
        logging.getLogger("densrefine").debug("input error", exc_info=True)
        print(f"densrefine {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # output piped into e.g. `head`, which closed early: not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"densrefine {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - last-resort handler, traceback goes to the log
        path = _common.dump_traceback(args)
        print(f"densrefine {args.command}: unexpected error, see {path}", file=sys.stderr)
        return 1
    finally:
        _common.close_file_logging()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
