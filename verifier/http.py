"""Bounded HTTP for our clients: a size cap, a timeout, and no redirect to another origin.

:func:`get` (stdlib ``urllib``) is what the relying party's ``--fetch`` uses; :func:`read_capped`
bounds the body of any response object with a ``read(n)`` stream (``requests`` with
``stream=True``: the log's witness client, the issuer's log client). A redirect is followed
only to the same scheme, host and port (at most 5 times); anything else is an error, as is a
body over the cap (checked while reading: nothing larger is ever buffered).
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from typing import Callable

__all__ = ["HTTPLimitError", "capped_response", "get", "get_page", "next_link", "read_capped", "same_origin", "DEFAULT_MAX_BYTES",
           "DEFAULT_TIMEOUT"]

DEFAULT_MAX_BYTES = 8 << 20
DEFAULT_TIMEOUT = 10.0
MAX_REDIRECTS = 5


class HTTPLimitError(OSError):
    """A response broke a client limit (size, redirect, status); ``code``: the HTTP status of
    an answer other than 200, else None."""

    def __init__(self, msg: str, code: int | None = None) -> None:
        super().__init__(msg)
        self.code = code


def _origin(url: str) -> tuple[str, str, int | None]:
    u = urllib.parse.urlsplit(url)
    port = u.port or {"http": 80, "https": 443}.get(u.scheme)
    return u.scheme.lower(), (u.hostname or "").lower(), port


def same_origin(a: str, b: str) -> bool:
    return _origin(a) == _origin(b)


def read_capped(read: Callable[[int], bytes], limit: int, what: str = "response",
                deadline: float | None = None) -> bytes:
    """Read a body through ``read(n)`` until EOF; HTTPLimitError past ``limit`` bytes or, when
    ``deadline`` (time.monotonic()) is given, past it (a server trickling bytes)."""
    import time

    parts, n = [], 0
    while True:
        if deadline is not None and time.monotonic() > deadline:
            raise HTTPLimitError(f"{what} not complete in time")
        chunk = read(min(65536, limit + 1 - n))
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        n += len(chunk)
        if n > limit:
            raise HTTPLimitError(f"{what} larger than {limit} bytes")


def capped_response(resp, limit: int, timeout: float = DEFAULT_TIMEOUT):
    """A ``requests`` response made with ``stream=True``: read its body through
    :func:`read_capped` (at most ``limit`` bytes, within ``timeout`` seconds in all) and make it
    the response's ``content``. Returns ``resp``."""
    import time

    if getattr(resp, "raw", None) is None and isinstance(getattr(resp, "_content", None), bytes):
        # a response built in memory (an adapter or a test double): only the cap to check
        if len(resp._content) > limit:
            raise HTTPLimitError(f"{getattr(resp, 'url', '')[:200]}: response larger than {limit} bytes")
        return resp
    try:
        body = read_capped(lambda k: resp.raw.read(k, decode_content=True), limit,
                           f"{getattr(resp, 'url', '')[:200]}: response", time.monotonic() + timeout)
    finally:
        resp.close()
    resp._content = body
    resp._content_consumed = True
    return resp


class _SameOrigin(urllib.request.HTTPRedirectHandler):
    max_redirections = MAX_REDIRECTS

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        newurl = urllib.parse.urljoin(req.full_url, newurl)
        if not same_origin(req.full_url, newurl):
            raise HTTPLimitError(f"{req.full_url}: redirect to another origin ({newurl[:200]}) refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameOrigin)


def get(url: str, *, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES,
        headers: dict[str, str] | None = None) -> bytes:
    """GET ``url`` (http or https) and return the body of a 200 answer. OSError (HTTPLimitError
    for a broken limit) on anything else."""
    return get_page(url, timeout=timeout, max_bytes=max_bytes, headers=headers)[0]


def next_link(link_header: str | None, base: str) -> str | None:
    """The absolute URL of the ``rel="next"`` target of a Link header (RFC 8288), if any."""
    if not link_header:
        return None
    for part in link_header.split(","):
        target, _, params = part.partition(";")
        target = target.strip()
        if target.startswith("<") and target.endswith(">") and \
                any(p.strip().replace(" ", "") in ('rel="next"', "rel=next") for p in params.split(";")):
            return urllib.parse.urljoin(base, target[1:-1])
    return None


def get_page(url: str, *, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES,
             headers: dict[str, str] | None = None) -> tuple[bytes, str | None]:
    """Like :func:`get`; also returns the absolute URL of the answer's next page (Link
    rel="next"), or None."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise HTTPLimitError(f"{url[:200]}: not an http(s) URL")
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with _OPENER.open(req, timeout=timeout) as r:
            if r.status != 200:
                raise HTTPLimitError(f"GET {url[:200]}: HTTP {r.status}", r.status)
            length = r.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise HTTPLimitError(f"GET {url[:200]}: response larger than {max_bytes} bytes")
            import time

            body = read_capped(r.read, max_bytes, f"GET {url[:200]}: response", time.monotonic() + timeout)
            return body, next_link(r.headers.get("Link"), r.geturl())
    except urllib.error.HTTPError as e:
        raise HTTPLimitError(f"GET {url[:200]}: HTTP {e.code}", e.code) from None
