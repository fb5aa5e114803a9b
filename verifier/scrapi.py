"""SCRAPI client: register Signed Statements, return Transparent Statements.

``POST /entries`` (application/cose) -> 201 + receipt, or 303 + Location, then poll
``GET /entries/<id>`` (302/202 + Retry-After while pending, 200 + receipt when done).
5xx, 429 and connection errors are retried honouring Retry-After (else exponential
backoff with jitter), bounded by ``max_attempts`` and ``deadline`` seconds. Other 4xx are
final; their concise problem details (RFC 9290 ``{-1: title, -2: detail}``) become the
:class:`ScrapiError` detail. The receipt is verified against the log's keys before the
transparent statement is returned.

It serves issuers (``issuer.client`` raises the issuer's error type through it) and relying
parties and the log's own ``tlog register`` alike, so it lives in the verifier library, which
depends on nothing of ours.
"""

from __future__ import annotations

import random
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable

import requests

from . import cbor as vcbor
from . import keys as vkeys
from . import receipt as vreceipt
from . import transparent as vtransparent
from .errors import VerificationError
from .http import capped_response
from .statement import SignedStatement



class ScrapiError(VerificationError):
    """The log refused the registration, or could not be reached or followed, or its answer
    did not verify. ``check``: ``client.unavailable``, ``client.rejected``, ``client.receipt``,
    ``client.timeout``, ``client.protocol``, ``client.keys``, ``client.lookup``, ``client.entry``."""


@dataclass
class Registered:
    entry_id: str
    entry_url: str                  # absolute URL of the entry (<log>/entries/<id>)
    receipt: bytes
    transparent_statement: bytes
    leaf_input: bytes
    index: int | None = None


def _problem(resp: requests.Response) -> str:
    ctype = resp.headers.get("Content-Type", "")
    if "concise-problem-details+cbor" in ctype and resp.content:
        try:
            pd = vcbor.loads(resp.content, max_depth=4)
            if isinstance(pd, dict):
                return " - ".join(str(pd[k]) for k in (-1, -2) if k in pd) or repr(pd)
        except VerificationError:
            pass
    return resp.text[:200] if resp.content else resp.reason or ""


def _retry_after(resp: requests.Response | None) -> float | None:
    if resp is None:
        return None
    v = resp.headers.get("Retry-After")
    if v is None:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        from email.utils import parsedate_to_datetime
        try:
            return max(0.0, parsedate_to_datetime(v).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


MAX_SUCCESSORS = 4  # closed shards followed to their successor in one registration


def successor_of(resp: requests.Response) -> str | None:
    """The successor a closed log names in its 410 answer (``Link: <URL>; rel="successor-version"``,
    RFC 5829), if it is an http(s) URL."""
    import re

    m = re.search(r'<([^>]+)>\s*;\s*rel="?successor-version"?', resp.headers.get("Link", ""))
    if m is None:
        return None
    u = urllib.parse.urlsplit(m.group(1))
    if u.scheme not in ("http", "https") or not u.netloc or u.query or u.fragment:
        return None
    return m.group(1).rstrip("/")


class ScrapiClient:
    """A bounded, retrying SCRAPI client for one log. Its failures raise :attr:`error` (a
    subclass may name its own type, with the same ``(check, detail)`` arguments)."""

    error: type[Exception] = ScrapiError

    def __init__(self, base_url: str, *, log_keys: dict[bytes, Any] | None = None, timeout: float = 10.0,
                 max_attempts: int = 8, deadline: float = 60.0, backoff: float = 0.1, max_backoff: float = 5.0,
                 session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep,
                 max_response: int = 4 << 20):
        self.base = base_url.rstrip("/")
        self.log_keys = log_keys
        self.timeout = timeout
        self.max_response = max_response  # bytes of one answer (a receipt, the key set, a problem)
        self.max_attempts = max_attempts
        self.deadline = deadline
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.session = session or requests.Session()
        self.sleep = sleep
        self._fetched: dict[bytes, Any] | None = None

    # -- plumbing
    def _delay(self, attempt: int, resp: requests.Response | None) -> float:
        ra = _retry_after(resp)
        if ra is not None:
            return min(ra, self.max_backoff * 4)
        return min(self.max_backoff, self.backoff * (2 ** attempt)) * (0.5 + random.random() / 2)

    def _request(self, method: str, url: str, t_end: float, **kw) -> requests.Response:
        attempt = 0
        while True:
            resp = None
            try:
                # bounded: a timeout, no redirects, at most max_response bytes read
                resp = capped_response(self.session.request(method, url, timeout=self.timeout, allow_redirects=False,
                                                            stream=True, **kw), self.max_response, 3 * self.timeout)
                if resp.status_code < 500 and resp.status_code != 429:
                    return resp
                why = f"HTTP {resp.status_code} {_problem(resp)}"
            except (requests.RequestException, OSError) as e:
                why = f"{type(e).__name__}: {e}"
            attempt += 1
            delay = self._delay(attempt - 1, resp)
            if attempt >= self.max_attempts or time.monotonic() + delay > t_end:
                raise self.error("client.unavailable", f"{method} {url} failed after {attempt} attempts ({why})")
            self.sleep(delay)

    def _abs(self, loc: str) -> str:
        return urllib.parse.urljoin(self.base + "/", loc)

    # -- API
    def keys(self) -> dict[bytes, Any]:
        """The log's keys from /.well-known/scitt-keys (kid -> key)."""
        resp = self._request("GET", f"{self.base}/.well-known/scitt-keys", time.monotonic() + self.deadline,
                             headers={"Accept": "application/cbor"})
        if resp.status_code != 200:
            raise self.error("client.keys", f"HTTP {resp.status_code} {_problem(resp)}")
        try:
            return vkeys.parse_public_keys(resp.content)
        except VerificationError as e:
            raise self.error("client.keys", str(e)) from None

    def lookup(self, **query: str) -> list[bytes]:
        """``GET /twi/v1/cpr?<query>``: the transparent statements the log returns (records, then
        their status statements); [] when none matches."""
        url = f"{self.base}/twi/v1/cpr?{urllib.parse.urlencode(query)}"
        resp = self._request("GET", url, time.monotonic() + self.deadline, headers={"Accept": "application/cbor"})
        if resp.status_code == 404:
            return []
        if resp.status_code != 200:
            raise self.error("client.lookup", f"HTTP {resp.status_code} {_problem(resp)}")
        try:
            arr = vcbor.loads(resp.content)
        except VerificationError as e:
            raise self.error("client.lookup", f"lookup answer is not CBOR: {e}") from None
        if not isinstance(arr, list) or not all(isinstance(x, bytes) for x in arr):
            raise self.error("client.lookup", "lookup answer is not an array of statements")
        return arr

    def statement(self, entry_url: str) -> bytes:
        """The transparent statement of an entry of this log (``<entry URL>/statement``)."""
        if not entry_url.startswith(self.base + "/entries/"):
            raise self.error("client.entry", f"{entry_url} is not an entry of {self.base}")
        resp = self._request("GET", entry_url + "/statement", time.monotonic() + self.deadline,
                             headers={"Accept": "application/cose"})
        if resp.status_code != 200:
            raise self.error("client.entry", f"{entry_url}: HTTP {resp.status_code} {_problem(resp)}")
        return resp.content

    def register(self, statement: bytes) -> Registered:
        """Register and wait for the receipt; returns the verified transparent statement."""
        t_end = time.monotonic() + self.deadline
        st = SignedStatement.parse(statement)
        for _ in range(MAX_SUCCESSORS + 1):
            resp = self._request("POST", f"{self.base}/entries", t_end, data=statement,
                                 headers={"Content-Type": "application/cose", "Accept": "application/cose"})
            succ = successor_of(resp) if resp.status_code == 410 else None
            if succ is None:
                break
            # a closed shard names its successor (tlog.shard): register there; its receipts are
            # verified with its own keys (fetched from it unless pinned)
            self.base, self._fetched = succ, None
        if resp.status_code == 201:
            receipt = resp.content
            loc = resp.headers.get("Location")
        elif resp.status_code in (202, 302, 303):
            loc = resp.headers.get("Location")
            if not loc:
                raise self.error("client.protocol", f"HTTP {resp.status_code} without Location")
            receipt = self._poll(self._abs(loc), resp, t_end)
        elif 400 <= resp.status_code < 500:
            raise self.error("client.rejected", f"HTTP {resp.status_code} {_problem(resp)}")
        else:
            raise self.error("client.protocol", f"unexpected HTTP {resp.status_code}")
        eid = st.leaf_input.hex()
        entry_url = self._abs(loc) if loc else f"{self.base}/entries/{eid}"
        return self._finish(statement, st, receipt, entry_url, eid)

    def _poll(self, url: str, first: requests.Response, t_end: float) -> bytes:
        resp = first
        attempt = 0
        while True:
            delay = self._delay(attempt, resp) if _retry_after(resp) is None else _retry_after(resp)
            delay = min(delay, self.max_backoff)
            if time.monotonic() + delay > t_end:
                raise self.error("client.timeout", f"registration still pending at {url}")
            self.sleep(delay)
            attempt += 1
            resp = self._request("GET", url, t_end, headers={"Accept": "application/cose"})
            if resp.status_code == 200:
                return resp.content
            if resp.status_code in (202, 302, 303):
                nxt = resp.headers.get("Location")
                if nxt:
                    url = self._abs(nxt)
                continue
            raise self.error("client.rejected", f"polling {url}: HTTP {resp.status_code} {_problem(resp)}")

    def _finish(self, statement: bytes, st: SignedStatement, receipt: bytes, entry_url: str, eid: str) -> Registered:
        pinned = self.log_keys is not None
        keys = self.log_keys if pinned else (self._fetched or self.keys())
        try:
            info = vreceipt.verify_inclusion_receipt(receipt, st.leaf_input, keys)
        except VerificationError as e:
            if pinned or self._fetched is None:
                raise self.error("client.receipt", f"the log's receipt does not verify: {e}") from None
            self._fetched = None  # the log may have rotated its key: fetch once more
            return self._finish(statement, st, receipt, entry_url, eid)
        if not pinned:
            self._fetched = keys
        ts = vtransparent.attach_receipts(statement, [receipt])
        return Registered(entry_id=eid, entry_url=entry_url, receipt=receipt, transparent_statement=ts,
                          leaf_input=st.leaf_input, index=info.index)
