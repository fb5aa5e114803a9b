"""PostgreSQL backend (psycopg 3).

Durability: every commit runs with ``synchronous_commit = on`` (forced per connection), so
COMMIT returns only once the WAL record is flushed; an acknowledged batch survives a crash of
the server process or of the database host (given fsync=on on the server).

Locking: an integration transaction first takes ``pg_advisory_xact_lock`` on a key derived
from the schema name, so exactly one process integrates into a given log at a time; other
processes' integrations block there (their sequencers keep queueing submissions meanwhile)
and then reload the tree's right edge, which they detect from the state row.

Hot path: entries and attributes go in with binary ``COPY``, tiles with one pipelined
``executemany`` upsert; tiles are keyed ``index * 64 + level``.

``schema``: keep the log's tables in that schema (created if missing); by default the
connection's current schema.
"""

from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager

import psycopg

from ..tree import TILE_BYTES
from .base import SQLReads, SQLTxn, Storage, Txn, encode_attrs

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (id INT PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL, root BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS tiles (id BIGINT PRIMARY KEY, hashes BYTEA NOT NULL, interior BYTEA);
ALTER TABLE tiles ALTER COLUMN hashes SET STORAGE EXTERNAL;
ALTER TABLE tiles ALTER COLUMN interior SET STORAGE EXTERNAL;
CREATE TABLE IF NOT EXISTS entries (idx BIGINT PRIMARY KEY, leaf BYTEA NOT NULL UNIQUE, data BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS attrs (key TEXT NOT NULL, value TEXT NOT NULL, idx BIGINT NOT NULL,
    PRIMARY KEY (key, value, idx));
CREATE TABLE IF NOT EXISTS heads (size BIGINT PRIMARY KEY, root BYTEA NOT NULL, checkpoint TEXT NOT NULL,
    extra BYTEA, ts DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS pending (seq BIGSERIAL PRIMARY KEY, leaf BYTEA NOT NULL UNIQUE,
    data BYTEA NOT NULL, attrs TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL);
"""

_LOCK = "SELECT pg_advisory_xact_lock(hashtext('tlog:' || current_schema()))"
_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")


def _tid(level: int, index: int) -> int:
    return index * 64 + level



def _read_tiles(conn, keys):
    ids = {_tid(l, n): (l, n) for l, n in keys}
    if not ids:
        return {}
    # binary results: the 16 KB of a full tile travel as bytes, not as 32 KB of hex text;
    # prepared; one id (a cold proof's usual fetch) without an array parameter to adapt
    if len(ids) == 1:
        q, p = "SELECT id, hashes, interior FROM tiles WHERE id = %s", tuple(ids)
    else:
        q, p = "SELECT id, hashes, interior FROM tiles WHERE id = ANY(%s)", (list(ids),)
    rows = conn.execute(q, p, binary=True, prepare=True).fetchall()
    return {ids[r[0]]: r[1] + r[2] if r[2] else r[1] for r in rows}


class _PGTxn(SQLTxn, Txn):
    _P = "%s"

    def __init__(self, conn: psycopg.Connection) -> None:
        self.c = conn

    def _conn(self):
        return self.c

    def tiles(self, keys):
        return _read_tiles(self.c, keys)

    def put_tiles(self, tiles):
        with self.c.cursor() as cur:
            cur.executemany("INSERT INTO tiles (id, hashes, interior) VALUES (%s, %s, %s) "
                            "ON CONFLICT (id) DO UPDATE SET hashes = EXCLUDED.hashes, interior = EXCLUDED.interior",
                            [(_tid(l, n), b[:TILE_BYTES], b[TILE_BYTES:] or None) for (l, n), b in tiles.items()])

    def delete_pending(self, seqs):
        self.c.execute("DELETE FROM pending WHERE seq = ANY(%s)", (list(seqs),))

    def existing(self, leaves):
        rows = self.c.execute("SELECT leaf, idx FROM entries WHERE leaf = ANY(%s)", (list(leaves),)).fetchall()
        return {bytes(r[0]): r[1] for r in rows}

    def try_insert_entries(self, start, leaves, datas):
        try:
            with self.c.transaction():  # a savepoint
                self.insert_entries(start, leaves, datas)
        except psycopg.errors.UniqueViolation:
            return False
        return True

    def insert_entries(self, start, leaves, datas):
        with self.c.cursor() as cur:
            with cur.copy("COPY entries (idx, leaf, data) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["int8", "bytea", "bytea"])
                w = cp.write_row
                for row in zip(range(start, start + len(leaves)), leaves, datas):
                    w(row)

    def insert_attrs(self, rows):
        with self.c.cursor() as cur:
            with cur.copy("COPY attrs (key, value, idx) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["text", "text", "int8"])
                for row in rows:
                    cp.write_row(row)


class PostgresStorage(SQLReads, Storage):
    _P = "%s"

    def __init__(self, url: str, *, schema: str | None = None, connect_timeout: int = 10) -> None:
        if schema is not None and not _IDENT.match(schema):
            raise ValueError(f"schema name {schema!r} must match {_IDENT.pattern}")
        self.url = url
        self.schema = schema
        opts = "-c synchronous_commit=on"
        if schema:
            opts += f" -c search_path={schema}"
        self._kw = {"options": opts, "connect_timeout": connect_timeout}
        self._local = threading.local()
        self._conns: list[psycopg.Connection] = []
        self._conns_lock = threading.Lock()
        self._writer_lock = threading.Lock()
        self._closed = False
        if schema:
            with psycopg.connect(url, autocommit=True, connect_timeout=connect_timeout) as c:
                c.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        self._writer = self._connect()
        with self._writer.transaction():
            self._writer.execute(_LOCK)
            self._writer.execute(SCHEMA)

    def _connect(self) -> psycopg.Connection:
        c = psycopg.connect(self.url, autocommit=True, **self._kw)
        with self._conns_lock:
            self._conns.append(c)
        return c

    def _reader(self) -> psycopg.Connection:
        if self._closed:
            raise RuntimeError("storage is closed")
        c = getattr(self._local, "c", None)
        if c is None or c.closed:
            c = self._local.c = self._connect()
        return c

    def integration(self):
        @contextmanager
        def cm():
            with self._writer_lock:
                if self._closed:
                    raise RuntimeError("storage is closed")
                with self._writer.transaction():
                    self._writer.execute(_LOCK)
                    yield _PGTxn(self._writer)
        return cm()


    def tiles(self, keys):
        return _read_tiles(self._reader(), list(keys))



    def find(self, leaf):
        r = self._reader().execute("SELECT idx FROM entries WHERE leaf = %s", (leaf,)).fetchone()
        return None if r is None else r[0]







    def enqueue(self, rows):
        now = time.time()
        vals = [(leaf, data, encode_attrs(attrs), now) for leaf, data, attrs in rows]
        c = self._reader()
        with c.transaction():
            with c.cursor() as cur:
                cur.executemany("INSERT INTO pending (leaf, data, attrs, ts) VALUES (%s, %s, %s, %s) "
                                "ON CONFLICT (leaf) DO NOTHING", vals)

    def bytes_used(self):
        r = self._reader().execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r'").fetchone()
        return int(r[0])

    def close(self):
        if self._closed:
            return
        with self._writer_lock:
            self._closed = True
            with self._conns_lock:
                conns, self._conns = self._conns, []
            for c in conns:
                try:
                    c.close()
                except psycopg.Error:
                    pass
