"""SQLite backend: one database file (plus its WAL) in the data directory.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL``: every commit fsyncs the WAL
before it returns, so an acknowledged entry survives SIGKILL *and* power loss. (WAL with
``synchronous=NORMAL`` survives a process kill - the WAL is in the OS page cache - but may
lose the last commits on power loss, which would un-acknowledge entries and could let the log
re-sign a different tree at a size it already published; so FULL.) One group-committed batch
is one transaction and one WAL fsync.

Locking: integration is ``BEGIN IMMEDIATE`` (SQLite's single writer lock), so several
processes on one file integrate one at a time; the others wait (busy_timeout).

Dedup (LSM-style, two tiers): the key is ``k``, the leaf input's first 8 bytes (a blob, so
SQL derives it with ``substr(leaf, 1, 8)`` from the entry rows just inserted: no per-row
binding). ``dnew (k PRIMARY KEY, idx)`` takes the keys of the entries appended since the last
merge; it stays small (at most ``merge_every`` rows plus one batch), so the pages a batch of random keys
dirties are few and hot. When the tree size crosses a multiple of ``merge_every``, the same
integration transaction moves ``dnew`` into ``dmain`` in key order (each ``dmain`` page is
rewritten once per merge, not once per batch) and empties ``dnew``; a crash anywhere rolls the
whole batch back, merge included. Lookups check both tiers and always compare the full leaf
input (read from ``entries`` by index). The rare entry whose ``k`` is already taken by a
*different* leaf is recorded in ``dcoll (leaf, idx)`` instead. ``entries`` itself is keyed by
index only (appended in order). A random-keyed index that grows with the log (the old
``entries.k UNIQUE``) made WAL rewrite nearly every index page on every batch.
The schema is versioned (``meta.schema_version``); an older file is refused at open.

Tiles are rows keyed by ``index * 64 + level`` (a rowid: no separate key index; levels are
< 64), each blob up to 256 * 32 bytes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Iterable, Sequence

from ..tree import TILE_BYTES
from .base import HEAD_COLS as _HEAD_COLS
from .base import PendingRow, SQLReads, Storage, TreeHead, Txn, decode_attrs, encode_attrs
from .base import head_from_row as _head

SCHEMA_VERSION = "2"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL, root BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tiles (id INTEGER PRIMARY KEY, hashes BLOB NOT NULL, interior BLOB);
CREATE TABLE IF NOT EXISTS entries (idx INTEGER PRIMARY KEY, leaf BLOB NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS dnew (k BLOB PRIMARY KEY, idx INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dmain (k BLOB PRIMARY KEY, idx INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dcoll (leaf BLOB PRIMARY KEY, idx INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attrs (key TEXT NOT NULL, value TEXT NOT NULL, idx INTEGER NOT NULL,
    PRIMARY KEY (key, value, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS heads (size INTEGER PRIMARY KEY, root BLOB NOT NULL, checkpoint TEXT NOT NULL,
    extra BLOB, ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS pending (seq INTEGER PRIMARY KEY AUTOINCREMENT, leaf BLOB NOT NULL UNIQUE,
    data BLOB NOT NULL, attrs TEXT NOT NULL, ts REAL NOT NULL);
"""

DEFAULT_MERGE_EVERY = 1 << 17


def _key(leaf: bytes) -> bytes:
    return leaf[:8]  # == substr(leaf, 1, 8) in SQL


def _tid(level: int, index: int) -> int:
    return index * 64 + level





class _SQLiteTxn(Txn):
    def __init__(self, db: sqlite3.Connection, merge_every: int = DEFAULT_MERGE_EVERY) -> None:
        self.db = db
        self.merge_every = merge_every

    def state(self):
        r = self.db.execute("SELECT size, root FROM state WHERE id = 1").fetchone()
        return None if r is None else (r[0], bytes(r[1]))

    def set_state(self, size, root):
        self.db.execute("INSERT INTO state (id, size, root) VALUES (1, ?, ?) "
                        "ON CONFLICT (id) DO UPDATE SET size = excluded.size, root = excluded.root", (size, root))

    def tiles(self, keys):
        return _read_tiles(self.db, keys)

    def put_tiles(self, tiles):
        self.db.executemany("INSERT INTO tiles (id, hashes, interior) VALUES (?, ?, ?) "
                            "ON CONFLICT (id) DO UPDATE SET hashes = excluded.hashes, interior = excluded.interior",
                            [(_tid(l, n), b[:TILE_BYTES], b[TILE_BYTES:] or None) for (l, n), b in tiles.items()])

    def pending(self, limit):
        rows = self.db.execute("SELECT seq, leaf, data, attrs FROM pending ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [PendingRow(r[0], bytes(r[1]), bytes(r[2]), decode_attrs(r[3])) for r in rows]

    def delete_pending(self, seqs):
        self.db.executemany("DELETE FROM pending WHERE seq = ?", [(s,) for s in seqs])

    def _by_k(self, ks):
        """(k, leaf, idx) rows of both dedup tiers for the given keys (the entry holding k)."""
        return _by_k(self.db, ks)

    def existing(self, leaves):
        want = set(leaves)
        out = {}
        for _, leaf, idx in self._by_k({_key(l) for l in want}):
            if leaf in want:
                out[leaf] = idx
        rest = [l for l in want if l not in out]
        for i in range(0, len(rest), 500):
            chunk = rest[i:i + 500]
            q = "SELECT leaf, idx FROM dcoll WHERE leaf IN (%s)" % ",".join("?" * len(chunk))
            for leaf, idx in self.db.execute(q, chunk):
                out[bytes(leaf)] = idx
        return out

    def _after_insert(self, start, n):
        m = self.merge_every
        if (start + n) // m > start // m:
            # one sorted merge of the recent tier into the main one, in this transaction
            self.db.execute("INSERT INTO dmain (k, idx) SELECT k, idx FROM dnew ORDER BY k")
            self.db.execute("DELETE FROM dnew")

    def try_insert_entries(self, start, leaves, datas):
        end = start + len(leaves)
        self.db.execute("SAVEPOINT ins")
        try:
            self.db.executemany("INSERT INTO entries (idx, leaf, data) VALUES (?, ?, ?)",
                                zip(range(start, end), leaves, datas))
            # the dedup keys are derived in SQL from the rows just written (no per-row binding)
            taken = self.db.execute(
                "SELECT EXISTS (SELECT 1 FROM entries e JOIN dmain d ON d.k = substr(e.leaf, 1, 8) "
                "WHERE e.idx >= ? AND e.idx < ?)", (start, end)).fetchone()[0]
            if taken:
                raise sqlite3.IntegrityError("dedup key in dmain")
            self.db.execute("INSERT INTO dnew (k, idx) SELECT substr(leaf, 1, 8), idx FROM entries "
                            "WHERE idx >= ? AND idx < ?", (start, end))
        except sqlite3.IntegrityError:
            self.db.execute("ROLLBACK TO ins")
            self.db.execute("RELEASE ins")
            return False
        self.db.execute("RELEASE ins")
        self._after_insert(start, len(leaves))
        return True

    def insert_entries(self, start, leaves, datas):
        ks = [_key(l) for l in leaves]
        taken = {r[0] for r in self._by_k(set(ks))}
        new, coll = [], []
        for i, k in enumerate(ks):
            if k in taken:
                coll.append((leaves[i], start + i))  # a different leaf holds this key
            else:
                taken.add(k)
                new.append((k, start + i))
        self.db.executemany("INSERT INTO entries (idx, leaf, data) VALUES (?, ?, ?)",
                            zip(range(start, start + len(leaves)), leaves, datas))
        self.db.executemany("INSERT INTO dnew (k, idx) VALUES (?, ?)", new)
        if coll:
            self.db.executemany("INSERT INTO dcoll (leaf, idx) VALUES (?, ?)", coll)
        self._after_insert(start, len(leaves))

    def insert_attrs(self, rows):
        self.db.executemany("INSERT OR IGNORE INTO attrs (key, value, idx) VALUES (?, ?, ?)", rows)

    def latest_head(self):
        return _head(self.db.execute(f"SELECT {_HEAD_COLS} FROM heads ORDER BY size DESC LIMIT 1").fetchone())

    def put_head(self, head):
        self.db.execute("INSERT INTO heads (size, root, checkpoint, extra, ts) VALUES (?, ?, ?, ?, ?)",
                        (head.size, head.root, head.checkpoint, head.extra, head.timestamp))

    def get_meta(self, key):
        r = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if r is None else r[0]

    def set_meta(self, key, value):
        self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))


def _by_k(db, ks):
    out = []
    ks = list(ks)
    for i in range(0, len(ks), 250):
        chunk = ks[i:i + 250]
        ph = ",".join("?" * len(chunk))
        q = (f"SELECT d.k, e.leaf, e.idx FROM dnew d JOIN entries e ON e.idx = d.idx WHERE d.k IN ({ph}) "
             f"UNION ALL SELECT d.k, e.leaf, e.idx FROM dmain d JOIN entries e ON e.idx = d.idx WHERE d.k IN ({ph})")
        out.extend((k, bytes(leaf), idx) for k, leaf, idx in db.execute(q, chunk + chunk))
    return out


def _read_tiles(db, keys):
    keys = list(keys)
    out = {}
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        ids = {_tid(l, n): (l, n) for l, n in chunk}
        q = "SELECT id, hashes, interior FROM tiles WHERE id IN (%s)" % ",".join("?" * len(ids))
        for tid, blob, interior in db.execute(q, list(ids)):
            out[ids[tid]] = blob + interior if interior else blob
    return out


class SQLiteStorage(SQLReads, Storage):
    def __init__(self, path: str | os.PathLike, *, busy_timeout: float = 120.0, cache_mb: int = 256,
                 merge_every: int = DEFAULT_MERGE_EVERY) -> None:
        if merge_every < 1:
            raise ValueError("merge_every must be >= 1")
        self.merge_every = merge_every
        self.path = os.fspath(path)
        if not self.path:
            raise ValueError("empty SQLite path")
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise ValueError(f"directory {parent} does not exist")
        self.url = "sqlite://" + os.path.abspath(self.path)
        self._busy_ms = int(busy_timeout * 1000)
        self._cache_kb = cache_mb * 1024
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        self._writer = self._connect(writer=True)
        self._writer_lock = threading.Lock()
        # WAL mode is persistent in the file; setting it needs no other open transaction.
        mode = self._writer.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"could not switch {self.path} to WAL mode (got {mode})")
        self._writer.execute("BEGIN IMMEDIATE")
        try:
            self._check_schema()
            for stmt in SCHEMA.split(";"):
                if stmt.strip():
                    self._writer.execute(stmt)
            self._writer.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                                 (SCHEMA_VERSION,))
        except BaseException:
            self._writer.execute("ROLLBACK")
            self.close()
            raise
        self._writer.execute("COMMIT")

    def _check_schema(self) -> None:
        db = self._writer
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return
        version = None
        if "meta" in tables:
            r = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = r and r[0]
        if version != SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path}: unsupported tlog SQLite schema version {version or '1 (unversioned)'}; "
                f"this code needs version {SCHEMA_VERSION} (two-tier dedup). Old data directories are "
                "not migrated: re-create the log or use the matching older release")

    # -- connections ------------------------------------------------------------------------
    def _connect(self, writer: bool = False) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                             timeout=self._busy_ms / 1000)
        db.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(f"PRAGMA cache_size=-{self._cache_kb if writer else 16384}")
        if writer:
            # checkpoint the WAL into the database every ~64 MiB rather than every 4 MiB:
            # fewer database-file fsyncs on the append path (the WAL fsync per commit stays)
            db.execute("PRAGMA wal_autocheckpoint=16384")
        db.execute("PRAGMA mmap_size=268435456")
        with self._conns_lock:
            self._conns.append(db)
        return db

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("storage is closed")
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    @contextmanager
    def _tx(self, db):
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")

    def integration(self):
        @contextmanager
        def cm():
            with self._writer_lock:
                if self._closed:
                    raise RuntimeError("storage is closed")
                with self._tx(self._writer) as db:
                    yield _SQLiteTxn(db, self.merge_every)
        return cm()

    # -- reads ------------------------------------------------------------------------------

    def tiles(self, keys):
        return _read_tiles(self._reader(), keys)



    def find(self, leaf):
        db = self._reader()
        rows = _by_k(db, [_key(leaf)])
        if not rows:
            return None  # no entry has this key, so no colliding one has this leaf either
        for _, l, idx in rows:
            if l == leaf:
                return idx
        r = db.execute("SELECT idx FROM dcoll WHERE leaf = ?", (leaf,)).fetchone()
        return None if r is None else r[0]







    def enqueue(self, rows):
        now = time.time()
        vals = [(leaf, data, encode_attrs(attrs), now) for leaf, data, attrs in rows]
        db = self._reader()
        with self._tx(db):
            db.executemany("INSERT OR IGNORE INTO pending (leaf, data, attrs, ts) VALUES (?, ?, ?, ?)", vals)

    def bytes_used(self):
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(self.path + suffix)
            except FileNotFoundError:
                pass
        return total

    def checkpoint_wal(self) -> None:
        """Fold the WAL into the database file (admin/benchmark helper)."""
        self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")

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
                except sqlite3.Error:
                    pass
