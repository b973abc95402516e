"""``python -m xrd_strain_plugin.cli`` (the ``xrd-strain`` command; ``make demo`` runs it this way)."""

import sys

# Under ``python -m`` this file runs as __main__ and the package is imported as itself, so the
# command modules and ``main`` share one CommandError class.
from xrd_strain_plugin.cli import main

sys.exit(main())
