"""The PostgreSQL server settings that decide what a log costs, checked by the log itself.

A wrong setting here breaks nothing a relying party can see, but it multiplies the bytes the
server writes and the integration's CPU without telling anyone (docs/core-scaling.md,
"PostgreSQL bytes written per entry": with the default 128 MB of ``shared_buffers`` a log's
random-keyed indexes outgrow the buffers after a few million entries and the bytes written per
entry grow from ~1.7 KB to 23.5 KB at 10^7; with 6 GB they stay at 1.6-2.9 KB until the indexes,
~176 B per entry, outgrow those at ~3.6 x 10^7, and grow to 15 KB at 10^8. docs/scale-out.md:
``wal_compression`` = pglz made compressing the full-page images most of the integration's CPU).
:class:`tlog.storage.postgres.PostgresStorage` reads them when it opens and again each time the
log has grown by :data:`RECHECK_EVERY` entries, and logs each piece of advice once per process;
once the indexes fill :data:`SOON` of the buffers it says at what size they will outgrow them, so
that the operator can raise them or close the shard first.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

RECHECK_EVERY = 1 << 20  # entries between two checks by one process
SOON = 0.75  # the indexes fill this share of shared_buffers: say when they will outgrow it

# the log's tables are found as its connections' search_path finds them (its schema)
_QUERY = ("SELECT pg_size_bytes(current_setting('shared_buffers')), "
          "pg_indexes_size('entries') + pg_indexes_size('attrs'), current_setting('wal_compression')")


class Reading(NamedTuple):
    shared_buffers: int  # bytes
    index_bytes: int  # the log's indexes on entries and attrs, bytes
    wal_compression: str


def read(conn) -> Reading:
    """The settings and sizes :func:`advice` needs, from the log's schema on ``conn``."""
    sb, ib, wc = conn.execute(_QUERY).fetchone()
    return Reading(int(sb), int(ib), str(wc))


def _mb(n: int) -> str:
    return f"{n / (1 << 20):,.0f} MB"


def advice(r: Reading, size: int = 0) -> dict[str, str]:
    """What to change, by kind ("shared_buffers", "shared_buffers_soon", "wal_compression"): one
    line each. ``size``: the log's entries, for the size at which the indexes, growing as they
    have so far, will outgrow shared_buffers (said once they fill :data:`SOON` of it, early
    enough to raise it or close the shard before the bytes written per entry start to grow)."""
    out = {}
    if size > 0 and SOON * r.shared_buffers <= r.index_bytes <= r.shared_buffers:
        per_entry = r.index_bytes / size
        out["shared_buffers_soon"] = (
            f"the log's indexes ({_mb(r.index_bytes)}, {per_entry:,.0f} B per entry at {size:,} entries) fill "
            f"{100 * r.index_bytes / r.shared_buffers:.0f} % of shared_buffers ({_mb(r.shared_buffers)}) and will "
            f"outgrow it at about {int(r.shared_buffers / per_entry):,} entries: raise shared_buffers, or close "
            "this shard before then (shard_close_size; README: Rotating to a new shard)")
    if r.index_bytes > r.shared_buffers:
        out["shared_buffers"] = (
            f"the log's indexes ({_mb(r.index_bytes)}) no longer fit in shared_buffers ({_mb(r.shared_buffers)}): "
            "each new entry now writes back index pages, and the bytes written per entry grow with the log; "
            "raise shared_buffers above the indexes' size (README: PostgreSQL server settings), or close this "
            "shard (README: Rotating to a new shard)")
    if r.wal_compression in ("on", "pglz"):
        out["wal_compression"] = (
            f"wal_compression = {r.wal_compression} (pglz): compressing full-page images costs the integration "
            "most of its CPU after each checkpoint; use lz4 (README: PostgreSQL server settings)")
    return out


_said: set = set()
_said_lock = threading.Lock()


def first_time(what) -> bool:
    """True the first time this process asks about ``what`` (a log's advice of one kind: it is
    logged once per process, however many storages of the log the process opens)."""
    with _said_lock:
        if what in _said:
            return False
        _said.add(what)
        return True
