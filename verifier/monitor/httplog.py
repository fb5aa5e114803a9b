"""The HTTP client of a tlog-tiles log the monitor and the audit use (stdlib only)."""

from __future__ import annotations

import threading
import urllib.parse

from ..tiles import TileNotFound
from .alerts import Unreachable

MAX_CHECKPOINT_BYTES = 64 * 1024
MAX_TILE_BYTES = 1 << 20


class HttpLog:
    """A tlog-tiles log over HTTP(S): stdlib ``http.client`` with one keep-alive connection per
    thread (no proxy support), ``gzip`` content encoding accepted, bounded response sizes."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._local = threading.local()

    def _conn(self, scheme: str, netloc: str):
        import http.client

        key = (scheme, netloc)
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        c = conns.get(key)
        if c is None:
            cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            c = conns[key] = cls(netloc, timeout=self.timeout)
        return c

    def _drop(self, scheme: str, netloc: str) -> None:
        c = getattr(self._local, "conns", {}).pop((scheme, netloc), None)
        if c is not None:
            c.close()

    def get(self, path: str, limit: int = MAX_TILE_BYTES, url: str | None = None) -> bytes:
        import http.client
        import zlib

        target = url if url is not None else f"{self.url}/{path.lstrip('/')}"
        u = urllib.parse.urlsplit(target)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise Unreachable(f"GET {target}: not an http(s) URL")
        req = (u.path or "/") + (f"?{u.query}" if u.query else "")
        for attempt in (0, 1):  # one retry on a stale keep-alive connection
            c = self._conn(u.scheme, u.netloc)
            try:
                c.request("GET", req, headers={"Accept-Encoding": "gzip", "User-Agent": "twi-verify-monitor"})
                r = c.getresponse()
                body = r.read(limit + 1)
                if len(body) > limit or (r.length or 0) > 0:
                    self._drop(u.scheme, u.netloc)
                    raise Unreachable(f"GET {target}: response larger than {limit} bytes")
                break
            except (OSError, http.client.HTTPException) as e:
                self._drop(u.scheme, u.netloc)
                if attempt == 1 or isinstance(e, TimeoutError):
                    raise Unreachable(f"GET {target}: {e}") from None
        if r.getheader("Content-Encoding", "identity").lower() == "gzip":
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                body = d.decompress(body, limit + 1)
            except zlib.error as e:
                raise Unreachable(f"GET {target}: bad gzip body: {e}") from None
            if len(body) > limit or d.unconsumed_tail:
                raise Unreachable(f"GET {target}: response larger than {limit} bytes")
        if r.status == 404:
            raise TileNotFound(target)
        if r.status != 200:
            raise Unreachable(f"GET {target}: HTTP {r.status}")
        return body

    def fetch(self, path: str) -> bytes:
        return self.get(path)

    def checkpoint(self) -> str:
        data = self.get("checkpoint", MAX_CHECKPOINT_BYTES)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("utf-8", "replace")
