"""Install the densrefine menu into Coot 1.x (one command, no Coot needed to run it).

Usage (with the Python that has densrefine installed)::

    python3 plugins/coot/install_coot_plugin.py [--dest DIR] [--exe "CMD"]

Writes ``DIR/densrefine_coot_plugin.py`` (default DIR: ``~/.coot-preferences``, whose
``*.py`` files Coot runs at start-up). That loader puts this checkout's
``plugins/coot`` and ``plugins/exchange`` on Coot's ``sys.path``, sets
``DENSREFINE_EXE`` (default: this Python with ``-m densrefine``, because Coot's own
Python has no torch) unless already set, and adds the "densrefine" menu. Instead of
installing, a one-off session can run ``coot --script DIR/densrefine_coot_plugin.py``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

LOADER = '''# densrefine menu for Coot (written by {installer}; delete this file to uninstall)
import os
import sys

for _p in ({coot_dir!r}, {exchange_dir!r}):
    if _p not in sys.path:
        sys.path.insert(0, _p)
os.environ.setdefault("DENSREFINE_EXE", {exe!r})
import densrefine_coot_gui

densrefine_coot_gui.install()
'''


def loader_text(exe: str) -> str:
    """Text of the start-up file Coot runs."""
    return LOADER.format(installer=os.path.abspath(__file__), coot_dir=HERE,
                         exchange_dir=os.path.join(os.path.dirname(HERE), "exchange"), exe=exe)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dest", default=os.path.expanduser("~/.coot-preferences"),
                   help="folder Coot reads start-up scripts from (default: %(default)s)")
    p.add_argument("--exe", default=f"{shlex.quote(sys.executable)} -m densrefine",
                   help="command that runs densrefine (default: %(default)s)")
    args = p.parse_args(argv)
    os.makedirs(args.dest, exist_ok=True)
    path = os.path.join(args.dest, "densrefine_coot_plugin.py")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(loader_text(args.exe))
    print(f"Wrote {path}; restart Coot and look for the 'densrefine' menu "
          f"(or: coot --script {path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
