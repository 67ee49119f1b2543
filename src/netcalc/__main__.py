"""``python -m netcalc``: the ``netcalc`` command (Ctrl-C while it starts: exit 130 too)."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:  # before main() can take it: quietly, as main() would
    sys.exit(130)  # cli.EXIT_INTERRUPTED, which is not imported yet

main()
