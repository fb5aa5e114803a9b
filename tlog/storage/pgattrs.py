"""PostgreSQL lookup attributes and the integrator's move of queue rows (tlog.storage.postgres).

``attrs`` is ``(h, idx, key, value)``; ``h`` is a 64-bit hash of key and value (:func:`attr_hash`,
the SQL function ``tlog_attr_hash``: both must agree), computed by the frontends when they queue
a registration. The integrator moves queue rows into ``entries`` and ``attrs`` inside the
database (:data:`MOVE_RUN`).

The index on ``h`` is a GIN index (on ``ARRAY[h]``, core ``array_ops``: no extension) with fast
update, not a B-tree: a B-tree insert of a random 64-bit key into a 10^7-entry log's index (two
of the four attributes of a registration have unique values) touches a random page, ~10 us of
the integration transaction's backend per row. A fast-update GIN insert appends to the index's
pending list; :class:`PendingListCleaner` merges the list into the index in sorted bulk on
another connection (another backend, another core) after each integration. Lookups stay exact
and immediate: an index scan reads the pending list too, and key and value are compared.
"""

from __future__ import annotations

import logging
import threading
from hashlib import sha256

from .base import own_key

__all__ = ["attr_hash", "pending_arrays", "migrate_attrs", "needs_migration",
           "PendingListCleaner", "ATTRS_MATCH", "MOVE_RUN", "PENDING_INSERT"]

log = logging.getLogger(__name__)

ATTRS_INDEX = "attrs_hg"
# the pending list's limit (kB): the cleaner keeps it well below; past it an inserting backend
# merges the list itself (unless the cleaner is at it), so it bounds that work and a lookup's scan
# of the list (8 MB: about 1,000 pages)
_CREATE_INDEX = (f"CREATE INDEX IF NOT EXISTS {ATTRS_INDEX} ON attrs USING gin ((ARRAY[h])) "
                 "WITH (fastupdate = on, gin_pending_list_limit = 8192)")
# rows of attrs with key and value (two parameters each: the hash is computed from them once)
ATTRS_MATCH = "ARRAY[h] @> ARRAY[tlog_attr_hash(%s, %s)] AND key = %s AND value = %s"


def attr_hash(key: str, value: str) -> int:
    """The attrs index key: the first 8 bytes of SHA-256(key || 0x00 || value) as a signed
    big-endian int64 (SQL: ``tlog_attr_hash``; both must agree, tested)."""
    return int.from_bytes(sha256(key.encode() + b"\x00" + value.encode()).digest()[:8], "big", signed=True)


# A queue row's attributes as three arrays (hashes, keys, values): the move unnests them, where
# parsing JSON cost more than their heap rows (4-15 us per entry at 10^7). Rows with JSON in
# ``attrs`` and NULL arrays (queued by an older frontend) are moved too. An array row's ``attrs``
# is '' on purpose, not JSON: an older integrator (a rolling upgrade) fails on it and rolls its
# batch back, where '[]' would have let it integrate the entry without its attributes.
PENDING_INSERT = ("INSERT INTO pending (leaf, data, attrs, ts, dkey, ah, ak, av) "
                  "VALUES (%s, %s, '', %s, %s, %s::bigint[], %s::text[], %s::text[]) ON CONFLICT (leaf) DO NOTHING")


def pending_arrays(rows, now: float) -> list[tuple]:
    """Parameters of :data:`PENDING_INSERT` for submissions ``(leaf, data, attrs[, dedup key])``:
    the frontends compute the index hashes (they scale out), the move only copies them."""
    return [(r[0], r[1], now, own_key(r), [attr_hash(k, v) for k, v in r[2]], [k for k, _ in r[2]],
             [v for _, v in r[2]]) for r in rows]


def needs_migration(c) -> bool:
    """Whether the log's attrs table lacks the hash column or the GIN index."""
    return c.execute("SELECT (SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() "
                     "AND table_name = 'attrs' AND column_name = 'h') = 0 OR to_regclass(%s) IS NULL",
                     (ATTRS_INDEX,)).fetchone()[0]


def migrate_attrs(c) -> None:
    """Bring a log's attrs to the hash column under the GIN index: a log created with the
    (key, value, idx) primary key gets the hash column; one with the B-tree on (h, idx) (before
    the GIN index) gets the GIN index instead of it. Runs without a statement time limit (at
    10^7 entries, 4 x 10^7 rows: minutes), under the integration lock, in one transaction."""
    if c.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
                 "AND table_name = 'attrs' AND column_name = 'h'").fetchone() is None:
        c.execute("ALTER TABLE attrs ADD COLUMN h BIGINT")
        c.execute("UPDATE attrs SET h = tlog_attr_hash(key, value)")
        c.execute("ALTER TABLE attrs ALTER COLUMN h SET NOT NULL")
        c.execute("ALTER TABLE attrs DROP CONSTRAINT IF EXISTS attrs_pkey")
    c.execute(_CREATE_INDEX)
    c.execute("DROP INDEX IF EXISTS attrs_h_idx")


class PendingListCleaner:
    """Merges the attrs GIN index's pending list into the index (``gin_clean_pending_list``) on
    a connection of its own thread, woken after each integration that added attributes: the work
    runs in another PostgreSQL backend than the integration's (on another core), between and
    during integrations. Index changes are not transactional: the merged part of the list stays
    merged whatever becomes of the cleaner's statement, so a failed run loses nothing; the next
    wake-up continues."""

    def __init__(self, read) -> None:
        self._read = read  # PostgresStorage._read: this thread's connection, time limit, reconnects
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.runs = 0

    def poke(self) -> None:
        with self._lock:
            if self._stop:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="tlog-gin-cleaner", daemon=True)
                self._thread.start()
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            try:
                self._read(lambda c: c.execute("SELECT gin_clean_pending_list(%s::regclass)", (ATTRS_INDEX,)))
                self.runs += 1
            except Exception as e:  # noqa: BLE001 - the next wake-up (or an insert) merges the rest
                if self._stop:
                    return
                log.warning("attrs index pending list not merged: %s", e)
                self._wake.wait(1.0)

    def stop(self) -> None:
        """No more runs; one under way ends with the storage's connections (closed next)."""
        with self._lock:
            self._stop = True
        self._wake.set()


# Moves queued rows into the log inside the database (their statement bytes and attributes
# never travel through the integrator). The rows are found with ``seq = ANY(...)`` (an index
# scan of the queue's key whatever the planner believes the queue's size to be: a join with
# the list of seqs made it scan the whole queue per row when its statistics were from an
# empty queue); the rows get consecutive indexes in seq order, given by their rank (the log
# assigns them so: queue rows after the batch's in-memory ones, duplicates taking no index).
# The queue rows are deleted by the same statement (their one index scan); parameters: the
# seqs, then the first index.
MOVE_RUN = """
WITH d AS (DELETE FROM pending p WHERE p.seq = ANY(%s::bigint[])
           RETURNING p.seq, p.leaf, p.dkey, p.data, p.attrs, p.ah, p.ak, p.av),
     q AS MATERIALIZED (SELECT %s::bigint + row_number() OVER (ORDER BY d.seq) - 1 AS idx, d.leaf, d.dkey, d.data,
                               d.attrs, d.ah, d.ak, d.av FROM d),
     e AS (INSERT INTO entries (idx, leaf, dkey, data) SELECT idx, leaf, coalesce(dkey, leaf), data FROM q RETURNING 1),
     a AS (INSERT INTO attrs (h, idx, key, value)
           SELECT x.h, q.idx, x.k, x.v FROM q, unnest(q.ah, q.ak, q.av) x(h, k, v) WHERE q.ah IS NOT NULL
           UNION ALL
           SELECT coalesce(x.h::bigint, tlog_attr_hash(x.k, x.v)), q.idx, x.k, x.v
           FROM q, jsonb_array_elements(CASE WHEN q.ah IS NULL THEN q.attrs::jsonb END) j,
                LATERAL (SELECT j->>0, j->>1, j->>2) x(k, v, h)
           RETURNING 1)
SELECT (SELECT count(*) FROM e), (SELECT count(*) FROM a)
"""
