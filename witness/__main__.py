"""``python -m witness``: the same as ``twi-witness``."""

import sys

from .cli import main

sys.exit(main())
