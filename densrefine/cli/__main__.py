import sys

try:
    from . import main
except KeyboardInterrupt:  # Ctrl-C while importing: one line, no traceback
    sys.stderr.write("densrefine: interrupted\n")
    sys.exit(130)

sys.exit(main())
