"""Entry points of the log's HTTP app for servers.

* ``tlog.server.wsgi:rsgi_app`` (a factory): the production server, granian, as ``tlog serve``
  runs it (:mod:`serving.httpd`): ``granian --interface rsgi --factory 'tlog.server.wsgi:rsgi_app'``.
* ``tlog.server.wsgi:app``: the plain WSGI app, for any WSGI server (e.g. for comparisons:
  ``gunicorn -k gthread --workers 2 --threads 16 'tlog.server.wsgi:app'``; gunicorn has no read
  timeout, so it is not the production setup, see tlog/server/README.md).

Settings come from the environment (``TLOG_DATA_DIR``, ``TLOG_ISSUER_KEYS`` (comma-separated or a
JSON list), ``TLOG_TRUST_ANCHORS``, ``TLOG_DATABASE_URL``, ``TLOG_CONFIG`` (a TOML/JSON file), ...;
every field of :class:`tlog.config.Config` as ``TLOG_<NAME>``). Every worker process must open its
own Log (the core serialises integration across processes): no preloading.
"""

from __future__ import annotations

import os
import sys

from ..config import Config

# The sequencer thread releases the GIL around every SQLite call and fsync; with the request
# threads busy (parse, verify, receipts) it then waits up to the switch interval (5 ms by
# default) for each reacquisition, which stretched every integration transaction to 10-20 ms.
# A short interval lets it get back in promptly. TLOG_SWITCH_INTERVAL (seconds) overrides.
sys.setswitchinterval(float(os.environ.get("TLOG_SWITCH_INTERVAL", "0.0005")))


def _create(config: Config):
    from serving.logs import setup_logging
    from . import create_app

    setup_logging(config.log_format)
    # a server process: group commit in a separate integrator process unless configured otherwise
    return create_app(config, integrator="process" if config.integrator == "auto" else None)


def rsgi_app():
    """Factory for granian's RSGI interface (one call per worker process)."""
    from serving.httpd import WSGIOverRSGI
    from .problems import problem_body, MEDIA_TYPE

    config = Config.load()
    flask_app = _create(config)
    svc = flask_app.extensions["tlog.service"]

    def timeout_response():
        return 408, [("content-type", MEDIA_TYPE)], problem_body(
            "Request Timeout", f"the request body did not arrive within {config.body_timeout:g} s")

    return WSGIOverRSGI(flask_app, threads=config.threads, max_body=config.max_body,
                        body_timeout=config.body_timeout, on_close=svc.close, timeout_response=timeout_response,
                        fast=flask_app.extensions["tlog.front"].rsgi)


def __getattr__(name: str):
    # ``app`` is made on first access (a WSGI server's import), not when the factory is imported
    if name == "app":
        a = _create(Config.load())
        globals()["app"] = a
        return a
    raise AttributeError(name)
