"""The one integrator of a log on PostgreSQL: a lease with a fencing token.

Every worker of every `tlog serve` instance on PostgreSQL starts one integrator *candidate*
process (:class:`Candidate`); the candidates compete for the log's lease (table ``lease``, one
row: holder, fencing token, expiry on the database's clock). The holder is the only process
that integrates: it takes the durable pending queue (filled by the frontends, tlog.queued)
up to ``max_batch`` rows per transaction, appends them (one transaction, one signed
checkpoint, one receipt signature) and notifies the frontends in the commit.

Fencing: every integration transaction renews the lease under the holder's token as its first
statement (which also locks the lease row until the commit) and again as its last statement
before COMMIT; if the lease expired or a newer token took it, the transaction rolls back
(:class:`tlog.storage.LeaseLost`). A paused or partitioned former integrator therefore never
commits after losing the lease: whoever takes the lease over must first see it expired, which
needs the row lock, which a running transaction of the old holder keeps until its commit (and
the server ends that session once it is idle inside the transaction for ``lease_ttl``).

Takeover: the holder renews at least every ``lease_ttl / 3`` (each integration renews; an idle
holder runs an empty one); the others try to take it every ``lease_ttl / 3``, so a dead or
paused holder is replaced within about ``4/3 lease_ttl`` (default 3 s: about 4 s). A holder
that shuts down cleanly releases the lease at once.

Waking up: the holder LISTENs on ``tlog_pending:<schema>`` (the frontends notify with each
enqueue) and also integrates every ``lease_ttl / 3`` without one.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import subprocess
import threading
import time
from multiprocessing.connection import Connection

from .childproc import spawn
from .storage import LeaseLost, StorageUnavailable

log = logging.getLogger("tlog.leader")

__all__ = ["Candidate", "Leader"]


class Leader:
    """The lease loop over one LogService opened with ``role="integrator"``."""

    def __init__(self, svc, *, ttl: float, holder: str | None = None) -> None:
        self.svc = svc
        self.storage = svc._storage
        self.log = svc.log
        self.ttl = ttl
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.token: int | None = None
        self.stopped = threading.Event()
        self.batches = 0
        self.entries = 0

    def step_interval(self) -> float:
        return self.ttl / 3

    def _acquire(self) -> bool:
        tok = self.storage.acquire_lease(self.holder, self.ttl)
        if tok is None:
            return False
        self.token = tok
        self.storage.fence = (tok, self.ttl)
        self.log.refresh()  # another integrator may have advanced the tree
        log.info("integrator lease acquired by %s, fencing token %d", self.holder, tok)
        return True

    def _lost(self, why: str) -> None:
        log.warning("integrator lease lost (token %s): %s", self.token, why)
        self.token = None
        self.storage.fence = None

    def run(self, should_stop=lambda: False) -> None:
        listen = None
        step = self.step_interval()
        try:
            while not should_stop() and not self.stopped.is_set():
                if self.token is None:
                    try:
                        if not self._acquire():
                            self.stopped.wait(step)
                            continue
                    except StorageUnavailable as e:
                        log.warning("lease: %s", e)
                        self.stopped.wait(step)
                        continue
                if listen is None:
                    try:
                        listen = self.storage.listen(self.storage.channel_pending)
                    except StorageUnavailable:
                        pass
                try:
                    t0 = time.monotonic()
                    n = self.log.integrate_pending()  # renews the lease (fencing) even when empty
                    if n:
                        self.batches += 1
                        self.entries += n
                        log.debug("integrated %d queued entries in %.3f s", n, time.monotonic() - t0)
                        if n >= self.log.max_batch:
                            continue  # more queued
                except LeaseLost as e:
                    self._lost(str(e))
                    continue
                except StorageUnavailable as e:
                    log.warning("integration failed: %s", e)
                    self.stopped.wait(min(step, 0.5))
                    continue
                # wait for a frontend's notification (or renew after `step`)
                if listen is not None:
                    try:
                        for _ in listen.notifies(timeout=step, stop_after=1):
                            pass
                    except Exception:  # noqa: BLE001 - reconnect at the next round
                        self.storage.unlisten(listen)
                        listen = None
                else:
                    self.stopped.wait(min(step, 0.2))
        finally:
            if listen is not None:
                self.storage.unlisten(listen)
            if self.token is not None:
                try:
                    self.storage.release_lease(self.token)
                    log.info("integrator lease released (token %d)", self.token)
                except Exception:  # noqa: BLE001 - it expires on its own
                    pass


# ---------------------------------------------------------------------------- the process


class Candidate:
    """A worker's integrator candidate process, restarted when it dies, closed with the worker."""

    def __init__(self, config, *, start_timeout: float = 120.0) -> None:
        """Starts the candidate in the background: a worker's start never waits for it (nor
        fails because the database is down at that moment); it is retried until it runs."""
        self._config = config
        self._start_timeout = start_timeout
        self._closed = False
        self._lock = threading.Lock()
        self.restarts = 0
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self.started = threading.Event()
        threading.Thread(target=self._watch, name="tlog-leader-watch", daemon=True).start()

    def _start(self):
        proc, conn = spawn("candidate_main", self._config, self._start_timeout, "integrator candidate")
        log.info("integrator candidate process %d started", proc.pid)
        return proc, conn

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _watch(self) -> None:
        first = True
        while True:
            delay = 0.1
            while True:  # (re)start
                with self._lock:
                    if self._closed:
                        return
                try:
                    proc, conn = self._start()
                except Exception as e:  # noqa: BLE001 - keep trying; the other candidates integrate
                    log.error("integrator candidate start failed: %s", e)
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                with self._lock:
                    if self._closed:
                        try:
                            conn.send_bytes(pickle.dumps(None))
                        except (OSError, ValueError):
                            pass
                        self._proc, self._conn = proc, conn
                        self.started.set()
                        return
                    self._proc, self._conn = proc, conn
                    if not first:
                        self.restarts += 1
                first = False
                self.started.set()
                break
            proc.wait()
            with self._lock:
                if self._closed:
                    return
            log.warning("integrator candidate %d exited with %s; starting a new one", proc.pid, proc.returncode)
            conn.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            proc, conn = self._proc, self._conn
        if proc is None:
            return  # never started (a start in progress is stopped by _watch)
        try:
            conn.send_bytes(pickle.dumps(None))  # stop: release the lease and exit
        except (OSError, ValueError):
            pass
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        conn.close()
