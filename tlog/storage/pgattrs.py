"""PostgreSQL lookup attributes and the integrator's move of queue rows (tlog.storage.postgres).

``attrs`` is ``(h, idx, key, value)`` with a B-tree on ``(h, idx)``; ``h`` is a 64-bit hash of
key and value (:func:`attr_hash`, the SQL function ``tlog_attr_hash``: both must agree), computed
by the frontends when they queue a registration. The integrator moves queue rows into
``entries`` and ``attrs`` inside the database (:data:`MOVE_RUN`).
"""

from __future__ import annotations

import json
from hashlib import sha256

__all__ = ["attr_hash", "encode_attrs_hashed", "migrate_attrs", "MOVE_RUN"]


def attr_hash(key: str, value: str) -> int:
    """The attrs index key: the first 8 bytes of SHA-256(key || 0x00 || value) as a signed
    big-endian int64 (SQL: ``tlog_attr_hash``; both must agree, tested)."""
    return int.from_bytes(sha256(key.encode() + b"\x00" + value.encode()).digest()[:8], "big", signed=True)


def encode_attrs_hashed(attrs) -> str:
    """A queue row's attributes as JSON ``[[key, value, hash], ...]``: the frontends compute the
    index hashes (they scale out), the integrator's move only copies them (a row without the
    hash, queued by an older frontend, gets it computed by ``tlog_attr_hash``)."""
    return json.dumps([[k, v, attr_hash(k, v)] for k, v in attrs], separators=(",", ":"))


def migrate_attrs(c) -> None:
    """The attrs index is (64-bit hash of key and value, idx): 16 bytes per row instead of the
    key and value text (a log created with the (key, value, idx) primary key is converted)."""
    if c.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
                 "AND table_name = 'attrs' AND column_name = 'h'").fetchone() is None:
        c.execute("ALTER TABLE attrs ADD COLUMN h BIGINT")
        c.execute("UPDATE attrs SET h = tlog_attr_hash(key, value)")
        c.execute("ALTER TABLE attrs ALTER COLUMN h SET NOT NULL")
        c.execute("ALTER TABLE attrs DROP CONSTRAINT IF EXISTS attrs_pkey")
    c.execute("CREATE INDEX IF NOT EXISTS attrs_h_idx ON attrs (h, idx)")


# Moves queued rows into the log inside the database (their statement bytes and attributes
# never travel through the integrator). The rows are found with ``seq = ANY(...)`` (an index
# scan of the queue's key whatever the planner believes the queue's size to be: a join with
# the list of seqs made it scan the whole queue per row when its statistics were from an
# empty queue); the rows get consecutive indexes in seq order, given by their rank (the log
# assigns them so: queue rows after the batch's in-memory ones, duplicates taking no index).
_MOVE_TAIL = """,
     e AS (INSERT INTO entries (idx, leaf, dkey, data) SELECT idx, leaf, coalesce(dkey, leaf), data FROM q RETURNING 1),
     a AS (INSERT INTO attrs (h, idx, key, value)
           SELECT coalesce(x.h::bigint, tlog_attr_hash(x.k, x.v)), q.idx, x.k, x.v
           FROM q, json_array_elements(q.attrs::json) j, LATERAL (SELECT j->>0, j->>1, j->>2) x(k, v, h)
           RETURNING 1)
SELECT (SELECT count(*) FROM e), (SELECT count(*) FROM a)
"""
MOVE_RUN = """
WITH q AS MATERIALIZED (SELECT %s::bigint + row_number() OVER (ORDER BY p.seq) - 1 AS idx, p.leaf, p.dkey, p.data, p.attrs
                        FROM pending p WHERE p.seq = ANY(%s::bigint[]))""" + _MOVE_TAIL
