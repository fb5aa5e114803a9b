"""``python -m verifier.monitor``: the ``monitor`` and ``audit`` subcommands."""

import sys

from .cli import main

sys.exit(main())
