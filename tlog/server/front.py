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

Under granian (:mod:`serving.httpd`) the same request is served one step earlier still, in
the worker's event loop (:meth:`RegistrationFront.rsgi`): no WSGI environ, no thread of the
pool. Checking the statement (parse, verify, policy) runs in the loop, as it would in a thread
(the work is the same, there is one interpreter lock); the wait for the integrator's commit is
an asyncio future woken by the integrator's answer (one wake-up of the loop per batch), so no
thread is held and none is switched to. A wait that runs out (``register_wait``) finishes in a
thread, because it writes the submission to the durable queue before the 303. On PostgreSQL
the request goes the WSGI way (its checks and receipts read the database, which must not
block the loop).

The logic stays in :class:`tlog.service.LogService`; this module only parses and answers.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from typing import Callable, Iterable

from ..policy import Rejection
from ..storage import StorageUnavailable
from ..errors import BadRequest, NotFound, Unavailable
from ..service import LogService
from .problems import MEDIA_TYPE as PROBLEM_TYPE
from .problems import TITLES, problem_body
from .access import record as access_record
from .access import request_id
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
        self.observe = None  # the request latency Histogram (the access log's) for rsgi()
        self._in_loop = svc.config.database_url is None  # see the module doc
        self._wake: _LoopWaker | None = None

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI way (threads; any WSGI server)."""
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

    def _precheck(self, length: int, client: str):
        """429 (rate limits) or 413 (Content-Length over max_body) before the body is looked at."""
        wait, why = self.limits.registration(client)
        if wait > 0:
            self.svc.metrics.rejected("rate-limit")
            return self._problem(429, "Too Many Requests", why, retry_after=RateLimiter.retry_after_seconds(wait))
        if length < 0 or length > self.max_body:
            self.svc.metrics.rejected("too-large")
            return self._problem(413, "Payload Too Large", f"request body larger than {self.max_body} bytes")
        return None

    def _register(self, environ: dict, length: int, client: str) -> tuple[int, list, bytes]:
        refused = self._precheck(length, client)
        if refused is not None:
            return refused
        stream = environ["wsgi.input"]
        parts, n = [], 0
        while n < length:
            chunk = stream.read(length - n)
            if not chunk:
                break
            parts.append(chunk)
            n += len(chunk)
        if n != length:
            return self._short(n, length)
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        return self._answer(self.svc.register, body)

    def _short(self, n: int, length: int):
        return self._problem(400, "Malformed request", f"request body ended after {n} of {length} bytes")

    def _answer(self, fn, *args) -> tuple[int, list, bytes]:
        """``fn(*args)`` -> Registration, answered: 201, 303 or a problem."""
        reg = self._call(fn, *args)
        if type(reg) is tuple:
            return reg
        loc = f"{self.location_prefix}/entries/{reg.entry_id}"
        if reg.receipt is None:
            return 303, [("Location", loc), ("Retry-After", self.retry_after)], b""
        return 201, [("Content-Type", "application/cose"), ("Location", loc)], reg.receipt

    def _call(self, fn, *args):
        """``fn(*args)``, or the problem answer (a tuple) of the exception it raised."""
        try:
            return fn(*args)
        except Rejection as e:
            code, headers, body = self._problem(e.status, e.title, e.detail)
            return code, headers + list(getattr(e, "headers", {}).items()), body  # a closed shard's Link
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

    # ---- in the event loop (granian: serving.httpd) ------------------------------------------
    def rsgi(self, method: str, path: str, headers, body, client: str):
        """For :class:`serving.httpd.WSGIOverRSGI`: an awaitable answering the plain
        registration ``(status, headers, body)`` in the event loop, or None for the WSGI app.
        ``headers`` (lower-case names) has ``get``; ``body`` is bytes (small bodies) or a file."""
        if (
            not self._in_loop
            or path != "/entries"
            or method != "POST"
            or type(body) is not bytes
            or "transfer-encoding" in headers
            or (headers.get("content-type") or "").split(";", 1)[0].strip().lower() not in ACCEPTED_TYPES
        ):
            return None
        try:
            length = int(headers.get("content-length") or "")
        except ValueError:
            return None  # Flask answers a missing or malformed header
        return self._rsgi(length, body, client, headers.get("x-request-id"))

    async def _rsgi(self, length: int, body: bytes, client: str, given_id: str | None):
        t0 = time.perf_counter()
        rid = request_id(given_id)
        answer = self._precheck(length, client)
        if answer is None and len(body) != length:
            answer = self._short(len(body), length)
        if answer is None:
            answer = self._call(self.svc.register_submit, body)
        if type(answer) is not tuple:  # a Submission: wait for the integrator's commit
            sub = answer
            if not sub.pending.done():
                loop = asyncio.get_running_loop()
                if self._wake is None:
                    self._wake = _LoopWaker(loop)
                    self.svc.answers_in_loop(loop)  # the integrator's answers read in this loop
                fut = loop.create_future()
                timer = loop.call_later(self.svc.config.register_wait, _set_none, fut)
                sub.pending.on_done(self._wake.wake(fut))
                try:
                    await fut
                except asyncio.CancelledError:
                    # the request was given up: its submission still ends (accounting, and the
                    # durable spill if it is not integrated yet), off the loop
                    loop.run_in_executor(None, self._call, self.svc.register_result, sub, 0)
                    raise
                finally:
                    timer.cancel()
            if sub.pending.done():
                answer = self._answer(self.svc.register_result, sub, 0)
            else:  # the wait ran out: the durable spill (a storage write) runs in a thread
                answer = await asyncio.get_running_loop().run_in_executor(
                    None, self._answer, self.svc.register_result, sub, 0)
        code, headers, out = answer
        self.limits.answered(client, code)
        self.svc.metrics.response(code)
        headers.append(("Content-Length", str(len(out))))
        headers.append(("X-Request-Id", rid))
        access_record(rid, "POST", "/entries", code, time.perf_counter() - t0,
                      out if code >= 400 else None, None, self.observe)
        return code, headers, out


def _set_none(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class _LoopWaker:
    """Wakes futures of one event loop from other threads with one loop wake-up per burst (the
    integrator answers a whole batch at once), instead of one ``call_soon_threadsafe`` each."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ready: collections.deque = collections.deque()
        self.lock = threading.Lock()
        self.armed = False

    def wake(self, fut: asyncio.Future) -> Callable[[], None]:
        def fn() -> None:
            self.ready.append(fut)
            with self.lock:
                if self.armed:
                    return
                self.armed = True
            try:
                self.loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed (shutting down)
                pass

        return fn

    def _drain(self) -> None:
        with self.lock:
            self.armed = False
        ready = self.ready
        while ready:
            _set_none(ready.popleft())
