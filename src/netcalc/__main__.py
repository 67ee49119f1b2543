"""``python -m netcalc``: the ``netcalc`` command."""

from .cli import main

main()
