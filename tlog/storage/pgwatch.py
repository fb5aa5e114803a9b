"""Client-side deadlines for PostgreSQL operations (tlog.storage.postgres).

A paused server enforces none of its own time limits, so an operation registers (connection,
deadline) with the storage's :class:`Watchdog`; past the deadline the connection's socket is shut
down from the watchdog's thread and the blocked operation fails.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time

import psycopg

log = logging.getLogger("tlog.storage.postgres")

__all__ = ["Watchdog"]


def _cut(conn: psycopg.Connection) -> None:
    """Shut down the connection's socket (from another thread): its blocked operation fails."""
    try:
        fd = conn.pgconn.socket
        s = socket.socket(fileno=os.dup(fd))
    except (psycopg.Error, OSError, ValueError):
        return
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        s.close()


class Watchdog:
    """Client-side deadlines: an operation registers (connection, deadline); past the deadline
    the connection is cut. One daemon thread per storage, started at the first operation."""

    TICK = 0.05

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: dict[int, tuple[float, psycopg.Connection]] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def start(self, conn: psycopg.Connection, seconds: float) -> int:
        with self._lock:
            op = next(self._ids)
            self._ops[op] = (time.monotonic() + seconds, conn)
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name="tlog-pg-watchdog", daemon=True)
                self._thread.start()
        return op

    def end(self, op: int) -> bool:
        """Unregister; False if the watchdog cut the connection (the operation timed out)."""
        with self._lock:
            return self._ops.pop(op, None) is not None

    def stop(self) -> None:
        with self._lock:
            self._stopped = True

    def _run(self) -> None:
        while True:
            time.sleep(self.TICK)
            with self._lock:
                if self._stopped:
                    return
                now = time.monotonic()
                late = [op for op, (d, _) in self._ops.items() if d <= now]
                for op in late:
                    _, conn = self._ops.pop(op)
                    log.warning("database operation past its time limit: cutting its connection")
                    _cut(conn)
