"""Request ids and the access log (issue 10): the outermost WSGI layer of the log's app.

Every request gets an id: the client's ``X-Request-Id`` when it is 1-128 visible ASCII
characters, else 16 random hex digits; it is echoed in the response's ``X-Request-Id`` and is
``environ["tlog.request_id"]`` for the layers below. One log record per request (logger
``tlog.access``, level INFO, in the process-wide format of :mod:`serving.logs`) with ``id``,
``method``, ``path``, ``status``, ``ms`` (time until the app returned its answer) and, for every
4xx/5xx, ``reason``: the problem details' title and detail (RFC 9290 CBOR body), so the log says
why each request was refused.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable, Iterable

log = logging.getLogger("tlog.access")

_PROBLEM = "application/concise-problem-details+cbor"
_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"})
_OK_ID = frozenset(map(chr, range(0x21, 0x7F)))


def request_id(given: str | None) -> str:
    if given and len(given) <= 128 and all(c in _OK_ID for c in given):
        return given
    return os.urandom(8).hex()


def problem_reason(body: bytes) -> str | None:
    """"title: detail" of a concise problem details body (None if it is not one)."""
    from verifier import cbor as vcbor

    try:
        doc = vcbor.loads(body, max_depth=4, max_size=len(body))
    except Exception:  # noqa: BLE001 - not ours to judge, the body is logged as absent
        return None
    if not isinstance(doc, dict):
        return None
    title, detail = doc.get(-1), doc.get(-2)
    if detail:
        return f"{title}: {detail}"[:500]
    return str(title)[:500] if title is not None else None


class AccessLog:
    """WSGI middleware: request id in and out, one access record per request."""

    def __init__(self, app: Callable, observe=None) -> None:
        self.app = app
        self.observe = observe  # a Histogram labelled by method: the request's latency

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        t0 = time.perf_counter()
        rid = request_id(environ.get("HTTP_X_REQUEST_ID"))
        environ["tlog.request_id"] = rid
        seen: list = []

        def sr(status, headers, exc_info=None):
            headers.append(("X-Request-Id", rid))
            seen[:] = (status, headers)
            return start_response(status, headers, exc_info)

        body = self.app(environ, sr)
        status = int(seen[0][:3]) if seen else 500
        problem = None
        if status >= 400 and seen:
            ctype = next((v for k, v in seen[1] if k.lower() == "content-type"), "")
            if ctype.startswith(_PROBLEM):
                chunks = list(body)
                close = getattr(body, "close", None)
                if close is not None:
                    close()
                body = chunks
                problem = b"".join(chunks)
        record(rid, environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"), status, time.perf_counter() - t0,
               problem, environ.get("tlog.reason"), self.observe)
        return body


def record(rid: str, method, path, status: int, dt: float, problem: bytes | None = None,
           reason: str | None = None, observe=None) -> None:
    """The access record of one request (and its latency in ``observe``, a Histogram labelled
    by method); ``problem``: the problem details body of a 4xx/5xx answer, if it has one."""
    if observe is not None:
        observe.labels(method if method in _METHODS else "other").observe(dt)
    fields = {"id": rid, "method": method, "path": path, "status": status, "ms": round(1000 * dt, 2)}
    if status >= 400:
        fields["reason"] = (problem_reason(problem) if problem is not None else None) or reason or "-"
        log.log(logging.WARNING if status >= 500 else logging.INFO, "request", extra={"fields": fields})
    else:
        log.info("request", extra={"fields": fields})
