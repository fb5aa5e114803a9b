"""One log format for every process of the server (issue 10): the granian master and workers, the
integrator processes and the witness.

``plain`` (default): one line per record, ``key=value`` pairs, values quoted when they hold
spaces, quotes or ``=``::

    ts=2026-11-30T12:00:00.123Z level=info pid=4242 logger=tlog.access msg=request id=6f1c... method=POST path=/entries status=201 ms=3.1

``json``: one JSON object per line with the same keys. Structured fields are passed as
``log.info("request", extra={"fields": {...}})``; the message of other records is formatted as
usual. The format is chosen by the setting ``log_format`` (``TLOG_LOG_FORMAT``), which the
server's processes inherit through the environment.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import re
import sys
import time

__all__ = ["PlainFormatter", "JSONFormatter", "setup_logging", "dictconfig", "fields"]

_FORMAT_ENV = "TLOG_LOG_FORMAT"


_QUOTE = re.compile(r'[\s"=\\]')
_sec = [-1, ""]  # the formatted second last used (records of one second share it)


def _ts(record: logging.LogRecord) -> str:
    s = int(record.created)
    if s != _sec[0]:
        _sec[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
        _sec[0] = s
    return "%s.%03dZ" % (_sec[1], record.msecs)


def _base(record: logging.LogRecord) -> dict:
    out = {
        "ts": _ts(record),
        "level": record.levelname.lower(),
        "pid": record.process,
        "logger": record.name,
        "msg": record.getMessage(),
    }
    f = getattr(record, "fields", None)
    if f:
        out.update(f)
    if record.exc_info:
        out["exc"] = logging.Formatter().formatException(record.exc_info)
    return out


def _plain_value(v) -> str:
    t = type(v)
    if t is int or t is float:
        return str(v)
    if v is None:
        return "-"
    if t is bool:
        return "true" if v else "false"
    if isinstance(v, (dict, list, tuple)):
        v = json.dumps(v, default=str, separators=(",", ":"))
    s = v if isinstance(v, str) else str(v)
    if not s or _QUOTE.search(s):
        return json.dumps(s)
    return s


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # (one record per HTTP request: the plain strings are passed through without a call)
        out = []
        for k, v in _base(record).items():
            if type(v) is str and v and _QUOTE.search(v) is None:
                out.append(f"{k}={v}")
            else:
                out.append(f"{k}={_plain_value(v)}")
        return " ".join(out)


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_base(record), default=str, separators=(",", ":"))


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when the record is emitted (not the stream of the
    moment the handler was made: tests and embedding programs replace it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _formatter_class(fmt: str) -> str:
    return "serving.logs.JSONFormatter" if fmt == "json" else "serving.logs.PlainFormatter"


def dictconfig(fmt: str = "plain", level: str = "INFO") -> dict:
    """A logging dict config: every logger (granian's too) writes to stderr in ``fmt``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"tlog": {"()": _formatter_class(fmt)}},
        "handlers": {"stderr": {"class": "serving.logs.StderrHandler", "formatter": "tlog"}},
        "root": {"handlers": ["stderr"], "level": level},
        # granian's own loggers (master, workers, access log) in the same format
        "loggers": {
            "_granian": {"handlers": ["stderr"], "level": level, "propagate": False},
            "granian.access": {"handlers": ["stderr"], "level": level, "propagate": False},
        },
    }


def setup_logging(fmt: str | None = None, level: str = "INFO", *, if_unconfigured: bool = False) -> None:
    """Configure this process (and, through the environment, the processes it starts);
    ``if_unconfigured``: only when the root logger has no handler yet (a command run inside
    another program keeps that program's logging)."""
    if if_unconfigured and logging.getLogger().handlers:
        return
    fmt = fmt or os.environ.get(_FORMAT_ENV) or "plain"
    if fmt not in ("plain", "json"):
        fmt = "plain"
    os.environ[_FORMAT_ENV] = fmt
    logging.config.dictConfig(dictconfig(fmt, level))
    _route_python_stderr()
    # The records carry what the formats print (ts, level, pid, logger, msg, fields, exc), not
    # the caller's file and line or the thread's and process's names: finding and filling
    # those was a third of the cost of the access record every HTTP request writes.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False


_hooks = logging.getLogger("python")


def _route_python_stderr() -> None:
    """What Python itself writes to stderr outside logging goes through it too, so that every
    line is in the format: warnings (``logging.captureWarnings``), an exception no code caught
    in the main thread (``sys.excepthook``) or in another thread (``threading.excepthook``), and
    the ones Python can only report ("Exception ignored in ...": ``sys.unraisablehook``)."""
    import threading

    logging.captureWarnings(True)

    def main_thread(tp, value, tb):
        if issubclass(tp, KeyboardInterrupt):  # Ctrl-C at a prompt: as Python says it
            return sys.__excepthook__(tp, value, tb)
        _hooks.error("uncaught exception", exc_info=(tp, value, tb))

    def other_thread(a):
        if a.exc_type is SystemExit:
            return
        name = a.thread.name if a.thread is not None else "?"
        _hooks.error("uncaught exception in thread %s", name, exc_info=(a.exc_type, a.exc_value, a.exc_traceback))

    def unraisable(u):
        what = u.err_msg or "Exception ignored in"
        _hooks.error("%s: %r", what, u.object,
                     exc_info=(u.exc_type, u.exc_value, u.exc_traceback) if u.exc_type else None)

    sys.excepthook = main_thread
    threading.excepthook = other_thread
    sys.unraisablehook = unraisable


def fields(**kw) -> dict:
    """``extra=`` for a structured record: ``log.info("startup", extra=fields(origin=o))``."""
    return {"fields": kw}
