"""The registration front: ``POST /entries`` with a plain body, served at the WSGI level.

Registration is the log's hot path: every issuer calls it, and its cost per request decides
how many registrations one worker serves. Flask's request machinery (request context,
``Request``/``Response`` objects, URL matching, before/after hooks) costs about a quarter of a
millisecond per request on these machines, as much as verifying the statement. So the common
form of the request, ``POST /entries`` with a ``Content-Length`` body of an accepted media type,
is answered here, in front of the Flask application, with exactly the behaviour of the Flask
routes: the same rate limit, body limit (413), problem details, status codes, headers and
metrics. Everything else (multipart bodies with a detached payload, chunked bodies, other media
types, other methods and routes) passes through to Flask unchanged.

The logic stays in :class:`tlog.service.LogService`; this module only parses and answers.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable

from ..policy import Rejection
from ..storage import StorageUnavailable
from ..service import BadRequest, LogService, NotFound, Unavailable
from .problems import MEDIA_TYPE as PROBLEM_TYPE
from .problems import TITLES, problem_body
from .ratelimit import ClientLimits, RateLimiter

log = logging.getLogger("tlog.server")

ACCEPTED_TYPES = frozenset({
    "application/cose",
    "application/scitt-statement+cose",
    "application/cose-sign1",
    "application/octet-stream",
    "",
})

_REASONS = {
    201: "201 Created",
    303: "303 See Other",
    400: "400 Bad Request",
    404: "404 Not Found",
    413: "413 Payload Too Large",
    429: "429 Too Many Requests",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
}

StartResponse = Callable[..., object]


def _status(code: int) -> str:
    s = _REASONS.get(code)
    if s is None:
        from http import HTTPStatus

        try:
            s = f"{code} {HTTPStatus(code).phrase}"
        except ValueError:
            s = f"{code} Error"
    return s


class RegistrationFront:
    """WSGI middleware: serves plain ``POST /entries`` itself, passes anything else to ``app``."""

    def __init__(self, app: Callable, svc: LogService, *, max_body: int, limits: ClientLimits,
                 retry_after: str, location_prefix: str = "") -> None:
        self.app = app
        self.location_prefix = location_prefix
        self.svc = svc
        self.max_body = max_body
        self.limits = limits
        self.retry_after = retry_after

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if (
            environ.get("PATH_INFO") != "/entries"
            or environ.get("REQUEST_METHOD") != "POST"
            or not environ.get("CONTENT_LENGTH")
            or environ.get("HTTP_TRANSFER_ENCODING")
            or environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower() not in ACCEPTED_TYPES
        ):
            return self.app(environ, start_response)
        try:
            length = int(environ["CONTENT_LENGTH"])
        except ValueError:
            return self.app(environ, start_response)  # Flask answers the malformed header
        client = environ.get("REMOTE_ADDR") or "?"
        code, headers, body = self._register(environ, length, client)
        self.limits.answered(client, code)
        self.svc.metrics.response(code)
        headers.append(("Content-Length", str(len(body))))
        start_response(_status(code), headers)
        return [body]

    # -------------------------------------------------------------------------------------------
    def _problem(self, code: int, title: str | None, detail: str | None, *, retry_after: int | None = None):
        headers = [("Content-Type", PROBLEM_TYPE)]
        if retry_after is not None:
            headers.append(("Retry-After", str(int(retry_after))))
        return code, headers, problem_body(title or TITLES.get(code, "Error"), detail)

    def _register(self, environ: dict, length: int, client: str) -> tuple[int, list, bytes]:
        svc = self.svc
        wait, why = self.limits.registration(client)
        if wait > 0:
            svc.metrics.rejected("rate-limit")
            return self._problem(429, "Too Many Requests", why, retry_after=RateLimiter.retry_after_seconds(wait))
        if length < 0 or length > self.max_body:
            svc.metrics.rejected("too-large")
            return self._problem(413, "Payload Too Large", f"request body larger than {self.max_body} bytes")
        stream = environ["wsgi.input"]
        parts, n = [], 0
        while n < length:
            chunk = stream.read(length - n)
            if not chunk:
                break
            parts.append(chunk)
            n += len(chunk)
        if n != length:
            return self._problem(400, "Malformed request", f"request body ended after {n} of {length} bytes")
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        try:
            reg = svc.register(body)
        except Rejection as e:
            return self._problem(e.status, e.title, e.detail)
        except Unavailable as e:
            return self._problem(503, "Service Unavailable", e.detail, retry_after=max(1, e.retry_after))
        except StorageUnavailable:
            return self._problem(503, "Service Unavailable", "the log's database is unavailable; retry",
                                 retry_after=max(1, int(self.retry_after)))
        except BadRequest as e:
            return self._problem(400, e.title, e.detail)
        except NotFound as e:
            return self._problem(404, e.title, e.detail)
        except Exception:  # noqa: BLE001 - answered as the Flask app's 500 handler does
            log.exception("internal error on POST /entries")
            return self._problem(500, "Internal Server Error", "the log could not complete the request", retry_after=1)
        loc = f"{self.location_prefix}/entries/{reg.entry_id}"
        if reg.receipt is None:
            return 303, [("Location", loc), ("Retry-After", self.retry_after)], b""
        return 201, [("Content-Type", "application/cose"), ("Location", loc)], reg.receipt
