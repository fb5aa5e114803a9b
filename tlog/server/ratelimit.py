"""Per-client token buckets (SCRAPI: without authentication, rate limiting MUST be implemented).

On by default (:class:`ClientLimits`), on what costs the log without being admitted:

* ``refusal_rate`` / ``refusal_burst``: a client's refused registrations (4xx: malformed, untrusted
  issuer, too large, wrong media type, record-id conflict...). Each refusal takes a token after the
  fact; with none left the client's next registrations get 429 before anything is parsed or
  verified. A valid registration takes no token, so a trusted issuer's valid registrations are
  never throttled (only the log's capacity bounds them: the queue limit, 503).
* ``lookup_rate`` / ``lookup_burst``: lookups (``GET /entries?...``, ``GET /twi/v1/cpr``), which
  read indexes and statements for whoever asks. Reads by entry id, tiles and checkpoints are not
  limited: they are immutable and cacheable (a cache in front serves them), and monitors and
  auditors read them in bulk.
* ``rate_limit`` / ``rate_burst`` (default off): every request on ``/entries*``, valid
  registrations included, for deployments that want a hard per-client ceiling.

Slow and greedy connections are the production HTTP server's business (read timeouts, request
buffering; see tlog/server/README.md).

Keyed by the client address as the WSGI server reports it (REMOTE_ADDR; a proxy in front must
be configured to rate-limit itself or pass the real address). Buckets live in the worker process:
with N gunicorn workers a client gets at most N times the configured rate. Memory is bounded:
at most ``max_clients`` buckets, idle (full) buckets are evicted first.
"""

from __future__ import annotations

import math
import threading
import time


class RateLimiter:
    def __init__(self, rate: float, burst: int = 0, *, max_clients: int = 65536, clock=time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = float(burst if burst > 0 else max(1, int(2 * rate)))
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: dict[str, list[float]] = {}  # client -> [tokens, last refill time]
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def check(self, client: str) -> float:
        """Take one token for ``client``. Returns 0 if allowed, else seconds until a token is due."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            b = self._bucket(client, self.clock())
            if b[0] >= 1.0:
                b[0] -= 1.0
                return 0.0
            return (1.0 - b[0]) / self.rate

    def _bucket(self, client: str, now: float) -> list[float]:
        b = self._buckets.get(client)
        if b is None:
            if len(self._buckets) >= self.max_clients:
                self._evict(now)
            b = self._buckets[client] = [self.burst, now]
        else:
            b[0] = min(self.burst, b[0] + (now - b[1]) * self.rate)
            b[1] = now
        return b

    def blocked(self, client: str) -> float:
        """0 if ``client`` has a token (none is taken), else seconds until one is due."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            b = self._bucket(client, self.clock())
            return 0.0 if b[0] >= 1.0 else (1.0 - b[0]) / self.rate

    def charge(self, client: str) -> None:
        """Take one token from ``client`` (after the fact; never below zero)."""
        if self.rate <= 0:
            return
        with self._lock:
            b = self._bucket(client, self.clock())
            b[0] = max(0.0, b[0] - 1.0)

    def _evict(self, now: float) -> None:
        full_after = self.burst / self.rate
        stale = [c for c, (_, t) in self._buckets.items() if now - t >= full_after]
        for c in stale:
            del self._buckets[c]
        if len(self._buckets) >= self.max_clients:  # still full: drop the oldest half
            for c, _ in sorted(self._buckets.items(), key=lambda kv: kv[1][1])[: len(self._buckets) // 2]:
                del self._buckets[c]

    @staticmethod
    def retry_after_seconds(wait: float) -> int:
        return max(1, math.ceil(wait))


REFUSED = frozenset({400, 401, 403, 404, 405, 409, 411, 413, 415, 422})


class ClientLimits:
    """The log's per-client limits (see the module doc), one object per worker process."""

    def __init__(self, config, clock=time.monotonic) -> None:
        self.all = RateLimiter(config.rate_limit, config.rate_burst, clock=clock)
        self.refusals = RateLimiter(config.refusal_rate, config.refusal_burst, clock=clock)
        self.lookups = RateLimiter(config.lookup_rate, config.lookup_burst, clock=clock)

    def registration(self, client: str) -> tuple[float, str]:
        """Before a registration: (seconds to wait, why) or (0, "")."""
        wait = self.all.check(client)
        if wait > 0:
            return wait, f"Only {self.all.rate:g} requests per second are allowed."
        wait = self.refusals.blocked(client)
        if wait > 0:
            return wait, (f"Too many refused registrations from this client (at most {self.refusals.rate:g} "
                          "per second); valid registrations are not limited.")
        return 0.0, ""

    def answered(self, client: str, status: int) -> None:
        """After a registration: a refusal takes a token."""
        if status in REFUSED:
            self.refusals.charge(client)

    def read(self, client: str, lookup: bool, entries: bool) -> tuple[float, str]:
        """Before a GET: ``lookup`` (a query), ``entries`` (under /entries)."""
        if entries:
            wait = self.all.check(client)
            if wait > 0:
                return wait, f"Only {self.all.rate:g} requests per second are allowed."
        if lookup:
            wait = self.lookups.check(client)
            if wait > 0:
                return wait, f"Only {self.lookups.rate:g} lookups per second are allowed."
        return 0.0, ""
