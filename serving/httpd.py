"""The production HTTP server: granian (a Rust HTTP/1.1 and HTTP/2 server) in front of our WSGI apps.

Why (issue 11, measured in tlog/server/README.md): gunicorn's gthread worker reads request
headers and bodies in Python threads without a read timeout, so 32 connections that trickle a
byte now and then take every thread and ``/health`` stops answering. granian parses HTTP in
Rust; it has a header read timeout but, with its WSGI interface, a request body is read by the
Python thread that runs the app, for as long as the client likes (600 trickling bodies stopped
``/health`` there too). So the apps run on granian's RSGI interface through
:class:`WSGIOverRSGI`:

* headers: read by granian in Rust, ``header_timeout`` (default 10 s) for a whole head;
* body: awaited in the worker's event loop (no thread held), at most ``max_body`` bytes
  (larger: the app answers 413 from ``Content-Length`` without the body being read) and within
  ``body_timeout`` seconds (default 30 s; then 408 and the connection is closed);
* a body larger than ``spool`` bytes (64 KiB) goes to an unlinked temporary file as it
  arrives, so the bodies waiting for a thread do not grow the process's memory with the number
  of concurrent large registrations (as nginx's client body buffering);
* only then does one of ``threads`` Python threads run the WSGI app, so a slow client never
  holds a Python thread, and at most ``threads`` large bodies are in memory at once;
* responses are handed to granian whole, which writes them (slow readers cost no thread);
* ``fast``: a request the application can answer without blocking (the log's plain
  ``POST /entries``: :meth:`tlog.server.front.RegistrationFront.rsgi`) is answered in the event
  loop once its body is there, with no thread and no WSGI environ.

``run(target, ...)`` starts granian's multi-process server: ``workers`` processes, each calling
the factory ``target`` (the log: its own Log and integrator process, as under gunicorn before;
the witness: one worker).
"""

from __future__ import annotations

import asyncio
import io
import logging
import queue
import sys
import tempfile
import threading
from typing import Any, Callable
from urllib.parse import unquote_to_bytes

log = logging.getLogger("tlog.httpd")
access_log = logging.getLogger("tlog.access")  # the same records as tlog.server.access

__all__ = ["WSGIOverRSGI", "run", "granian_settings"]

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0
_NO_BODY = b""
_TEXT = [("content-type", "text/plain; charset=utf-8")]

if sys.version_info >= (3, 11):
    _timeout = asyncio.timeout
else:  # pragma: no cover - Python 3.10: a task per body read instead
    _timeout = None


def _set_result(fut: asyncio.Future, value) -> None:
    if not fut.done():
        fut.set_result(value)


class WSGIOverRSGI:
    """An RSGI application (granian) that runs a WSGI app on a bounded pool of threads.

    The body is read in the event loop before a thread is taken (see the module doc).
    ``timeout_response`` makes the 408 answer: ``() -> (status, headers, body)``.
    ``on_close`` runs when the worker stops (closes the log service)."""

    def __init__(self, app: Callable, *, threads: int = 16, max_body: int = 1 << 20,
                 body_timeout: float = DEFAULT_BODY_TIMEOUT, spool: int = 64 << 10,
                 on_close: Callable[[], Any] | None = None,
                 timeout_response: Callable[[], tuple[int, list, bytes]] | None = None,
                 fast: Callable[..., Any] | None = None) -> None:
        self.app = app
        # (method, path, headers, body, client address) -> an awaitable of (status, headers,
        # body), or None for the WSGI app; called in the event loop after the body is read
        self.fast = fast
        self.threads = max(1, int(threads))
        self.max_body = int(max_body)
        self.body_timeout = float(body_timeout)
        self.spool = int(spool)
        self.on_close = on_close
        self.timeout_response = timeout_response or (lambda: (408, list(_TEXT), b"request body not received in time\n"))
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: list[threading.Thread] = []
        self._base = {
            "SCRIPT_NAME": "",
            "wsgi.version": (1, 0),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "SERVER_SOFTWARE": "granian (tlog WSGIOverRSGI)",
        }

    # -- lifecycle (granian calls these in each worker process) ------------------------------
    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for i in range(self.threads):
            t = threading.Thread(target=self._work, name=f"tlog-wsgi-{i}", daemon=True)
            t.start()
            self._pool.append(t)

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        import time

        for _ in self._pool:
            self._q.put(None)
        deadline = time.monotonic() + 5  # requests still running get 5 s in all
        for t in self._pool:
            t.join(max(0.0, deadline - time.monotonic()))
        self._pool = []
        if self.on_close is not None:
            try:
                self.on_close()
            except Exception:  # noqa: BLE001 - shutting down anyway
                log.exception("closing the application")

    # -- the thread pool ------------------------------------------------------------------------
    def _work(self) -> None:
        q, loop = self._q, self._loop
        while True:
            item = q.get()
            if item is None:
                return
            fut, environ = item
            try:
                res = self._call(environ)
            except BaseException:  # noqa: BLE001 - the app's own handlers answer everything else
                log.exception("WSGI application failed on %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
                res = (500, list(_TEXT), b"internal server error\n")
            finally:
                environ["wsgi.input"].close()  # a spooled body's file goes away
            loop.call_soon_threadsafe(_set_result, fut, res)

    def _call(self, environ: dict) -> tuple[int, list, bytes]:
        out: list = []

        def start_response(status: str, headers: list, exc_info=None):
            out[:] = [status, headers]
            return _no_write

        it = self.app(environ, start_response)
        try:
            if isinstance(it, list):
                body = it[0] if len(it) == 1 else b"".join(it)
            else:
                body = b"".join(it)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        status, headers = out
        return int(status[:3]), headers, body

    # -- requests ---------------------------------------------------------------------------------
    async def __rsgi__(self, scope, proto) -> None:
        if scope.proto != "http":
            return
        headers = scope.headers
        cl = headers.get("content-length")
        body = _NO_BODY
        too_large = False
        if cl is not None:
            try:
                n = int(cl)
            except ValueError:
                n = -1
            if n > self.max_body:
                too_large = True  # the app answers 413 from Content-Length; nothing is read
            elif n > 0:
                body = await self._read(proto, n)
        elif "transfer-encoding" in headers:
            body = await self._read(proto, None)
        if body is None:
            access_log.info("request", extra={"fields": {
                "id": headers.get("x-request-id") or "-", "method": scope.method, "path": scope.path,
                "status": 408, "reason": f"request body not received within {self.body_timeout:g} s"}})
            status, hdrs, out = self.timeout_response()
            hdrs = list(hdrs) + [("connection", "close")]
            proto.response_bytes(status, hdrs, out)
            return
        if self.fast is not None:
            aw = self.fast(scope.method, scope.path, headers, body, scope.client.rpartition(":")[0].strip("[]"))
            if aw is not None:
                try:
                    status, hdrs, out = await aw
                except Exception:  # noqa: BLE001 - as for the WSGI app
                    log.exception("application failed on %s %s", scope.method, scope.path)
                    status, hdrs, out = 500, list(_TEXT), b"internal server error\n"
                if too_large:
                    hdrs = list(hdrs) + [("connection", "close")]
                proto.response_bytes(status, hdrs, out)
                return
        environ = self._environ(scope, headers, body)
        fut = self._loop.create_future()
        self._q.put((fut, environ))
        status, hdrs, out = await fut
        if too_large:
            hdrs = list(hdrs) + [("connection", "close")]
        proto.response_bytes(status, hdrs, out)

    async def _read(self, proto, length: int | None):
        """The body (bytes, or a file for one over ``spool`` bytes), or None if it did not arrive
        within body_timeout. A chunked body is read up to max_body + 1 bytes (the app then
        answers 413)."""
        try:
            if _timeout is not None:
                async with _timeout(self.body_timeout):
                    return await self._body(proto, length)
            return await asyncio.wait_for(self._body(proto, length), self.body_timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return None
        except Exception:  # noqa: BLE001 - the client went away or sent a broken body
            return None

    async def _body(self, proto, length: int | None):
        if length is not None and length <= self.spool:
            return await proto()  # granian stops at Content-Length
        parts, n, f = [], 0, None
        try:
            async for chunk in proto:
                n += len(chunk)
                if f is not None:
                    f.write(chunk)
                elif n > self.spool:
                    f = tempfile.TemporaryFile()
                    f.writelines(parts)
                    f.write(chunk)
                    parts = []
                else:
                    parts.append(chunk)
                if n > self.max_body:
                    break
        except BaseException:
            if f is not None:
                f.close()
            raise
        if f is None:
            return b"".join(parts)
        f.seek(0)
        return f

    def _environ(self, scope, headers, body: bytes) -> dict:
        path = scope.path
        qs = scope.query_string
        server_host, _, server_port = scope.server.rpartition(":")
        client_host, _, client_port = scope.client.rpartition(":")
        env = dict(self._base)
        env.update({
            "REQUEST_METHOD": scope.method,
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1") if "%" in path else path,
            "QUERY_STRING": qs,
            "RAW_URI": path + ("?" + qs if qs else ""),
            "SERVER_NAME": server_host.strip("[]"),
            "SERVER_PORT": server_port,
            "REMOTE_ADDR": client_host.strip("[]"),
            "REMOTE_PORT": client_port,
            "SERVER_PROTOCOL": "HTTP/" + scope.http_version,
            "wsgi.url_scheme": scope.scheme,
            "wsgi.input": io.BytesIO(body) if isinstance(body, bytes) else body,
        })
        env["REQUEST_URI"] = env["RAW_URI"]
        for k, v in headers.items():
            if k == "content-type":
                env["CONTENT_TYPE"] = v
            elif k == "content-length":
                env["CONTENT_LENGTH"] = v
            else:
                key = "HTTP_" + k.upper().replace("-", "_")
                if key in env:
                    env[key] += "," + v
                else:
                    env[key] = v
        if "HTTP_HOST" not in env and getattr(scope, "authority", None):
            env["HTTP_HOST"] = scope.authority
        return env


def _no_write(data: bytes) -> None:
    raise RuntimeError("the write() callable of WSGI is not supported; return the body")


# ---------------------------------------------------------------------------- running granian


def granian_settings(*, header_timeout: float, backpressure: int | None = None) -> dict:
    from granian.http import HTTP1Settings

    ms = int(max(1.0, min(60.0, header_timeout)) * 1000)
    out = {"http1_settings": HTTP1Settings(header_read_timeout=ms)}
    if backpressure:
        out["backpressure"] = backpressure
    return out


def run(target: str, *, host: str, port: int, workers: int, header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        backpressure: int | None = None, log_dictconfig: dict | None = None, access_log: bool = False,
        on_startup: Callable[[], Any] | None = None) -> None:
    """Serve ``target`` (``"module:factory"`` returning a :class:`WSGIOverRSGI`) with granian,
    ``workers`` processes. ``on_startup`` runs in this process once the socket is bound, before
    the workers are forked. Blocks until SIGINT/SIGTERM."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces

    kw: dict = dict(
        address=host, port=port, interface=Interfaces.RSGI, workers=max(1, workers), factory=True,
        http=HTTPModes.http1, websockets=False, respawn_failed_workers=True, respawn_interval=1.0,
        workers_kill_timeout=10,  # a worker that has not stopped 10 s after SIGTERM is killed
        log_access=access_log, **granian_settings(header_timeout=header_timeout, backpressure=backpressure),
    )
    if log_dictconfig is not None:
        kw["log_dictconfig"] = log_dictconfig
    server = Granian(target, **kw)
    if on_startup is not None:
        server.on_startup(on_startup)
    server.serve()


