"""Per-client token buckets (SCRAPI: without authentication, rate limiting MUST be implemented).

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
        now = self.clock()
        with self._lock:
            b = self._buckets.get(client)
            if b is None:
                if len(self._buckets) >= self.max_clients:
                    self._evict(now)
                b = self._buckets[client] = [self.burst, now]
            else:
                b[0] = min(self.burst, b[0] + (now - b[1]) * self.rate)
                b[1] = now
            if b[0] >= 1.0:
                b[0] -= 1.0
                return 0.0
            return (1.0 - b[0]) / self.rate

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
