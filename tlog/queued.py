"""A frontend's submissions on PostgreSQL: the durable queue in, LISTEN/NOTIFY back.

With several `tlog serve` instances (any number of workers and hosts) on one PostgreSQL, every
worker parses, authenticates and applies the registration policy; then, instead of integrating
(or talking to an integrator process of its own), it hands the checked statement to the one
integrator of the whole log (tlog.leader) through the database:

* an enqueuer thread takes everything submitted meanwhile and, in one transaction, looks the
  leaves up in the log (already there: answered at once as duplicates), inserts the others
  into the ``pending`` table and notifies the integrator (``NOTIFY tlog_pending:<schema>``).
  The commit does not wait for its WAL flush (``synchronous_commit = off`` for it): nothing is
  acknowledged on it alone. The 201 waits for the integrator's commit of the entry, synchronous
  and later in the WAL (flushing this one with it); the 303 waits for a synchronous enqueue of
  the row (the spill);
* a listener thread has ``LISTEN tlog_integrated:<schema>``; the integrator notifies in its
  commit transaction, so the notification arrives only once the entries are durable. On each
  notification the listener looks up the leaves it waits for (one query: index and the first
  tree head containing it), refreshes the worker's view of the tree and resolves their waits.
  Nobody polls the tree; a sweep every second covers a notification lost with a connection;
* the worker answers 201 with the receipt it makes from that head (one signature per head,
  shared by every worker), or, if the wait runs out, 303 (the submission is durably queued by
  then: the spill enqueues it synchronously, a no-op insert when the enqueuer had it already,
  whose commit flushes the WAL).

A failed enqueue (database unreachable, time limit) fails the waits with
:class:`tlog.storage.StorageUnavailable` (HTTP 503 + Retry-After).
"""

from __future__ import annotations

import logging
import threading
import time

from .log import SEALED, SEALED_REFUSAL, Log, LogSealed, Refused, refusal
from .pending import Entry, Pending, _check_item
from .storage import StorageUnavailable

log = logging.getLogger("tlog.queued")

__all__ = ["QueueClient"]


class QueueClient:
    """``submit`` like :meth:`tlog.log.Log.submit`, through the durable queue."""

    SWEEP = 1.0  # seconds: look up the waiting leaves even without a notification
    FORGET = 120.0  # seconds: a wait older than this (answered 303 long ago) is dropped

    def __init__(self, storage, log_: Log, *, max_batch: int = 4096) -> None:
        self._st = storage
        self._log = log_
        self._max_batch = max_batch
        self._cond = threading.Condition()
        self._queue: list[Pending] = []
        self._waiting: dict[bytes, list[Pending]] = {}
        self._enqueued: set[bytes] = set()  # waiting leaves whose enqueue committed (_find_refused)
        self._closed = False
        self._listening = threading.Event()
        self._wake = threading.Event()
        self.notifications = 0
        self._threads = [threading.Thread(target=self._listen_loop, name="tlog-queue-listener", daemon=True),
                         threading.Thread(target=self._enqueue_loop, name="tlog-queue-enqueuer", daemon=True)]
        for t in self._threads:
            t.start()
        self._listening.wait(10.0)

    # -- submissions -----------------------------------------------------------------------------
    def submit(self, leaf_input: bytes, data: bytes, attrs=(), key: bytes | None = None) -> Pending:
        leaf, data, attrs, key = _check_item(leaf_input, data, attrs, key)
        p = Pending(self, leaf, data, attrs, key)  # a wait that runs out calls self._spill
        with self._cond:
            if self._closed:
                raise RuntimeError("log is closed")
            self._queue.append(p)
            self._cond.notify()
        return p

    def _spill(self, p: Pending) -> None:
        """Before a 303: make sure the submission is durably queued (the enqueuer's commit
        does not wait for the WAL flush; this synchronous enqueue of the same row does, and
        inserts it if the enqueuer has not yet)."""
        if p.done():
            return
        self._st.enqueue([(p.leaf, p.data, p.attrs, p.key)])

    def _enqueue_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                batch = self._queue[:self._max_batch]
                del self._queue[:self._max_batch]
                # wait first, then queue: a notification can then never come before the waiter
                for p in batch:
                    self._waiting.setdefault(p.leaf, []).append(p)
            rows = {}
            for p in batch:
                rows.setdefault(p.leaf, (p.leaf, p.data, p.attrs, p.key))
            try:
                found = self._st.enqueue_new(rows.values())
            except Exception as e:  # noqa: BLE001 - the registrations fail (503 for StorageUnavailable)
                log.warning("enqueue of %d submissions failed: %s", len(batch), e)
                with self._cond:
                    for p in batch:
                        self._unwait(p)
                for p in batch:
                    p._fail(e)
                continue
            with self._cond:
                self._enqueued.update(leaf for leaf in rows if leaf not in found)
                dups = [p for p in batch if p.leaf in found]
                for p in dups:
                    self._unwait(p)
            for p in dups:
                idx, size = found[p.leaf]
                p._resolve(Entry(idx, size, True))

    def _unwait(self, p: Pending) -> None:
        lst = self._waiting.get(p.leaf)
        if lst is not None:
            try:
                lst.remove(p)
            except ValueError:
                pass
            if not lst:
                del self._waiting[p.leaf]

    # -- integration notices ------------------------------------------------------------------
    def _listen_loop(self) -> None:
        conn = None
        delay = 0.1
        while not self._closed:
            if conn is None:
                try:
                    conn = self._st.listen(self._st.channel_integrated)
                except (StorageUnavailable, RuntimeError) as e:
                    log.warning("LISTEN failed: %s; retrying", e)
                    self._listening.set()  # do not hold up the start; registrations get 503
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                delay = 0.1
                self._listening.set()
            else:
                try:
                    for _ in conn.notifies(timeout=self.SWEEP, stop_after=1):
                        self.notifications += 1
                except Exception as e:  # noqa: BLE001 - the connection is gone: reconnect, sweep
                    log.warning("LISTEN connection lost: %s", e)
                    self._st.unlisten(conn)
                    conn = None
            self._resolve_waiting()
        if conn is not None:
            self._st.unlisten(conn)

    def _resolve_waiting(self) -> None:
        with self._cond:
            if not self._waiting:
                return
            now = time.monotonic()
            for leaf in [lf for lf, ps in self._waiting.items() if all(now - p.t > self.FORGET for p in ps)]:
                del self._waiting[leaf]
            leaves = list(self._waiting)
            keys = {p.key: leaf for leaf, ps in self._waiting.items() for p in ps if p.key is not None}
        if not leaves:
            return
        try:
            found = self._st.resolve(leaves, keys)
            refused: dict = self._find_refused(leaves, found, keys)
            # refused because the log is sealed (a closed shard), not for a unique attribute
            for lf in self._refused([lf for lf in leaves if lf not in found], force=list(refused)):
                refused[lf] = LogSealed("the log recorded its final checkpoint (a closed shard): nothing appended")
        except Exception as e:  # noqa: BLE001 - the next notification or sweep tries again
            log.warning("looking up %d waiting entries failed: %s", len(leaves), e)
            return
        if not found and not refused:
            return
        if found:
            try:
                self._log.refresh()  # the worker's tree view at the new head, once for the batch
            except Exception as e:  # noqa: BLE001 - each registration refreshes on its own then
                log.warning("refresh after integration failed: %s", e)
        done = []
        with self._cond:
            for leaf, (idx, size) in found.items():
                for p in self._waiting.pop(leaf, ()):
                    done.append((p, Entry(idx, size, False)))
            for leaf, err in refused.items():
                for p in self._waiting.pop(leaf, ()):
                    done.append((p, err))
        for p, e in done:
            if isinstance(e, (Refused, LogSealed)):
                p._fail(e)
            else:
                p._resolve(e)

    def _find_refused(self, leaves, found, keys) -> dict[bytes, Refused]:
        """Enqueued waits carrying a unique attribute (tlog.log.Log.unique_attrs) that are
        neither integrated nor queued any more: the integrator's commit refused them (nothing
        stored; tlog.claims). The queue is read first, then the entries again: a row leaves the
        queue only in the commit that integrates or refuses it."""
        unique = self._log.unique_attrs
        if not unique:
            return {}
        with self._cond:
            self._enqueued &= self._waiting.keys()
            cand = {}
            for leaf in leaves:
                if leaf in found or leaf not in self._enqueued:
                    continue
                kv = next(((k, v) for p in self._waiting.get(leaf, ()) for k, v in p.attrs if k in unique), None)
                if kv is not None:
                    cand[leaf] = kv
        gone = [leaf for leaf in cand if not self._st.pending_contains(leaf)]
        if not gone:
            return {}
        again = self._st.resolve(gone, {k: lf for k, lf in keys.items() if lf in cand})
        found.update(again)
        return {leaf: Refused(*cand[leaf]) for leaf in gone if leaf not in again}

    _sealed_checked = 0.0

    def _refused(self, leaves: list[bytes], force=()) -> list[bytes]:
        """The waiting leaves the integrator refused because the log is sealed (tlog.log.SEALED):
        looked for at most once per SWEEP until the log is sealed, then for each unresolved wait;
        ``force``: leaves known to have left the queue unintegrated, looked for at once."""
        if not leaves:
            return []
        if self._sealed_checked >= 0:  # not seen sealed yet
            if force:
                leaves = list(force)
            else:
                now = time.monotonic()
                if now - self._sealed_checked < self.SWEEP:
                    return []
                self._sealed_checked = now
                if self._st.meta(SEALED) is None:
                    return []
                self._sealed_checked = -1.0  # sealed for good
        return [lf for lf in leaves if refusal(self._st, lf) == SEALED_REFUSAL]

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(5.0)
