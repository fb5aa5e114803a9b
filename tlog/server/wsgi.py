"""WSGI entry point for gunicorn: ``gunicorn 'tlog.server.wsgi:app'``.

Settings come from the environment (``TLOG_DATA_DIR``, ``TLOG_ISSUER_KEYS`` (comma-separated or a
JSON list), ``TLOG_TRUST_ANCHORS``, ``TLOG_DATABASE_URL``, ``TLOG_CONFIG`` (a TOML/JSON file), ...;
every field of :class:`tlog.config.Config` as ``TLOG_<NAME>``). Do not use ``--preload``: every
worker process must open its own Log (the core serialises integration across processes), and
use threaded workers so that concurrent registrations share a group commit::

    gunicorn -k gthread --workers 2 --threads 16 -b 127.0.0.1:8000 'tlog.server.wsgi:app'
"""

from __future__ import annotations

import logging
import os
import sys

from ..config import Config
from . import create_app

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")

# The sequencer thread releases the GIL around every SQLite call and fsync; with the request
# threads busy (parse, verify, receipts) it then waits up to the switch interval (5 ms by
# default) for each reacquisition, which stretched every integration transaction to 10-20 ms.
# A short interval lets it get back in promptly. TLOG_SWITCH_INTERVAL (seconds) overrides.
sys.setswitchinterval(float(os.environ.get("TLOG_SWITCH_INTERVAL", "0.0005")))

_config = Config.load()
# a server process: group commit in a separate integrator process unless configured otherwise
app = create_app(_config, integrator="process" if _config.integrator == "auto" else None)
