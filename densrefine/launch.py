"""Console-script entry point of ``densrefine``.

Importing the CLI takes about a second (numpy, gemmi, matplotlib); a Ctrl-C in that window
ends with one line and exit code 130, as it does once a command runs (`densrefine.cli.main`).
"""
import sys


def main() -> int:
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("densrefine: interrupted\n")
        return 130
    return cli_main()
