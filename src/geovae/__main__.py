"""``python -m geovae``: the geovae command line (see :mod:`geovae.cli`)."""

import sys

from geovae.cli import main

sys.exit(main())
