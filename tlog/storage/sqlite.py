"""SQLite backend: one database file (plus its WAL) in the data directory.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL``: every commit fsyncs the WAL
before it returns, so an acknowledged entry survives SIGKILL *and* power loss. (WAL with
``synchronous=NORMAL`` survives a process kill - the WAL is in the OS page cache - but may
lose the last commits on power loss, which would un-acknowledge entries and could let the log
re-sign a different tree at a size it already published; so FULL.) One group-committed batch
is one transaction and one WAL fsync.

Locking: integration is ``BEGIN IMMEDIATE`` (SQLite's single writer lock), so several
processes on one file integrate one at a time; the others wait (busy_timeout).

Entries (schema 3) are stored per *run*: one ``entries`` row holds consecutive entries
[start, start + n) that lie inside one 256-entry bundle (the C2SP entry-bundle unit) and were
appended by the same batch: ``leaves`` (n leaf inputs, 32 bytes each), ``ends`` (n
little-endian uint32 end offsets into ``data``) and ``data`` (the statements, concatenated).
A batch of 8,192 entries writes 32 or 33 rows instead of 8,192; rows are never updated. Reads
by index find the row with the largest ``start`` <= index (a rowid seek); a statement is read
with incremental blob I/O (only its bytes).

Each entry has two 32-byte values: its leaf input (``leaves``, looked up by ``find``: the
entry id) and its dedup key (``dkeys``, NULL when a run's keys are its leaves; unique; the log
service's key is the digest of the statement's signed content, looked up by ``find_key`` and by
dedup). Both go into the one index below, each hit compared in full with its own column, so a
leaf never matches a key. Cost: 32 bytes per entry in ``dkeys`` and twice the index rows of
schema 3 (docs/core-scaling.md).

Dedup (LSM-style, exact): the key ``k`` of a value is its first 8 bytes as a signed
big-endian int64. The *main* tier (schema 5) holds the keys of the entries below
``meta.dedup_merged`` in sorted, immutable run files listed in the ``druns`` table, merged
size-tiered with a bounded fan-in, each with a Bloom filter in front (tlog.storage.druns: the
bytes written per entry grow with log(N), not N). The *recent* tier - the keys of the entries from
``dedup_merged`` to the end - is not a table: it is an in-memory map rebuilt from those
entries' leaves and dedup keys (at most ``merge_every`` + one batch of them) when first needed
and kept up to date incrementally (also across processes: it catches up from the rows others
committed). When the tree size crosses a multiple of ``merge_every``, the same integration
transaction writes the recent keys as a new level-0 run (file fsynced before the commit that
lists it), merges runs as the fan-in requires and moves ``dedup_merged``; a crash anywhere
rolls back the whole batch, merge included (its new files are unlisted, removed later) (and a rolled-back transaction drops the writer's
in-memory tier, rebuilt from committed rows). Lookups always compare the full value. A value
whose ``k`` is already taken by a *different* value (an earlier entry's, or the other value of
its own entry) is recorded in ``dcoll (v PRIMARY KEY, idx)`` and is not in either tier. The
schema is versioned (``meta.schema_version``); a schema-4 file (main tier in a ``dmain``
table) is migrated at open (its rows become one run, the table is dropped); older ones are
refused.

Tiles are rows keyed by ``index * 64 + level`` (a rowid: no separate key index; levels are
< 64), each blob up to 256 * 32 bytes.
"""

from __future__ import annotations

import array
import math
import os
import sqlite3
import struct
import threading
import time
from contextlib import contextmanager
from itertools import accumulate
from typing import Sequence

from ..layout import TILE_WIDTH
from ..tree import RECORD_BYTES, TILE_BYTES
from . import druns
from .sqlite_tiles import L0File, _read_tiles, _read_tiles_at, _tid, read_marks, set_marks
from .base import SQLReads, SQLTxn, Storage, Txn, pending_values
from .sqlite_recent import _HS, DKEYS, LEAVES, _key, _leaf_blob, _lookup, _marks, _Recent, _values  # noqa: F401 (_marks: tests)

SCHEMA_VERSION = "6"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL, root BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tiles (id INTEGER PRIMARY KEY, hashes BLOB NOT NULL, interior BLOB);
CREATE TABLE IF NOT EXISTS entries (start INTEGER PRIMARY KEY, leaves BLOB NOT NULL, ends BLOB NOT NULL,
    data BLOB NOT NULL, dkeys BLOB);
CREATE TABLE IF NOT EXISTS druns (a INTEGER PRIMARY KEY, b INTEGER NOT NULL, n INTEGER NOT NULL,
    level INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dcoll (v BLOB PRIMARY KEY, idx INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dcoll_idx ON dcoll (idx);
CREATE TABLE IF NOT EXISTS attrs (key TEXT NOT NULL, value TEXT NOT NULL, idx INTEGER NOT NULL,
    PRIMARY KEY (key, value, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS heads (size INTEGER PRIMARY KEY, root BLOB NOT NULL, checkpoint TEXT NOT NULL,
    extra BLOB, ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS pending (seq INTEGER PRIMARY KEY AUTOINCREMENT, leaf BLOB NOT NULL UNIQUE,
    data BLOB NOT NULL, attrs TEXT NOT NULL, ts REAL NOT NULL, dkey BLOB);
CREATE TABLE IF NOT EXISTS aliases (leaf BLOB PRIMARY KEY, idx INTEGER NOT NULL) WITHOUT ROWID;
"""

DEFAULT_MERGE_EVERY = 1 << 18  # recent tier: <= 262,144 + one batch of keys in memory (~30 MB)
MERGE_INLINE_MAX = 1 << 20  # merges of more keys run in a child process, outside the write lock


class _SQLiteTxn(SQLTxn, Txn):
    def __init__(self, db: sqlite3.Connection, st: "SQLiteStorage") -> None:
        self.db = db
        self.st = st
        self.merge_every = st.merge_every

    def _conn(self):
        return self.db

    def tiles(self, keys):
        return _read_tiles_at(self.db, list(keys), self.st, read_marks(self.db))

    def put_tiles(self, tiles):
        rows = dict(tiles)
        full = sorted(n for (l, n), b in tiles.items() if l == 0 and len(b) == RECORD_BYTES)
        if full:  # full level-0 tiles go to the tile file (tlog.storage.sqlite_tiles)
            l0_from, upto = read_marks(self.db)
            new = [n for n in full if n >= upto]
            if new and new != list(range(upto, upto + len(new))):
                raise RuntimeError(f"full level-0 tiles {new[0]}.. do not continue the tile file at {upto}")
            for n in full:
                if n >= l0_from:
                    self.st._l0.write(n, rows.pop((0, n)))
            if new:
                set_marks(self.db, l0_from, new[-1] + 1)
                self.db.executemany("DELETE FROM tiles WHERE id = ?", [(_tid(0, n),) for n in new])
        self.db.executemany("INSERT INTO tiles (id, hashes, interior) VALUES (?, ?, ?) "
                            "ON CONFLICT (id) DO UPDATE SET hashes = excluded.hashes, interior = excluded.interior",
                            [(_tid(l, n), b[:TILE_BYTES], b[TILE_BYTES:] or None) for (l, n), b in rows.items()])

    def delete_pending(self, seqs):
        self.db.executemany("DELETE FROM pending WHERE seq = ?", [(s,) for s in seqs])

    # -- dedup ------------------------------------------------------------------------------
    def _recent(self) -> _Recent:
        """The writer's recent tier, in step with this transaction's view of the entries."""
        merged, count = _marks(self.db)
        rec = self.st._wrec
        if rec is None or rec.merged != merged or rec.upto > count:
            rec = _Recent.load(self.db, merged, count)
        else:
            rec.catch_up(self.db, count)
        self.st._wrec = rec
        return rec

    def _runs(self):
        return self.st._runs(self.db, rebuild=True)

    def existing(self, keys):
        rec = self._recent()
        runs = self._runs()
        return {v: i for v in set(keys) if (i := _lookup(self.db, rec, runs, v, DKEYS)) is not None}

    def try_insert_entries(self, start, leaves, datas, keys):
        rec = self._recent()
        blob, kblob, ks = _values(leaves, keys)
        # any 8-byte key already taken (in the batch, the recent tier or a run): let the caller dedup
        if len(set(ks)) != len(ks) or not rec.keys.keys().isdisjoint(ks) or druns.probe(self._runs(), ks):
            return False
        self._write(rec, start, blob, kblob, datas, ())
        return True

    def insert_entries(self, start, leaves, datas, keys):
        rec = self._recent()
        blob, kblob, ks = _values(leaves, keys)
        taken = set(druns.probe(self._runs(), set(ks)))
        coll = {}
        seen = set()
        for i, (leaf, key) in enumerate(zip(leaves, keys)):
            for v in ((leaf,) if key == leaf else (leaf, key)):
                k = _key(v)
                if k in seen or k in taken or k in rec.keys:
                    coll[v] = start + i  # a different, earlier value holds this key
                seen.add(k)
        if coll:
            self.db.executemany("INSERT INTO dcoll (v, idx) VALUES (?, ?)", coll.items())
        self._write(rec, start, blob, kblob, datas, set(coll))

    def _write(self, rec, start, blob, kblob, datas, coll):
        end = start + len(blob) // _HS
        rows = []
        a = start
        same = kblob == blob
        while a < end:
            b = min(end, (a // TILE_WIDTH + 1) * TILE_WIDTH)  # runs never cross a bundle boundary
            ds = datas[a - start:b - start]
            lo, hi = (a - start) * _HS, (b - start) * _HS
            rows.append((a, blob[lo:hi], struct.pack("<%dI" % len(ds), *accumulate(map(len, ds))), b"".join(ds),
                         None if same or kblob[lo:hi] == blob[lo:hi] else kblob[lo:hi]))
            a = b
        self.db.executemany("INSERT INTO entries (start, leaves, ends, data, dkeys) VALUES (?, ?, ?, ?, ?)", rows)
        rec.add(start, blob, kblob, coll)
        if self.st._jobs:
            self.st._merges(self.db)  # list the background merges that finished
        m = self.merge_every
        if end // m > start // m:
            # the recent tier becomes a level-0 run, then runs merge as the fan-in requires,
            # all in this transaction (the files are durable before it commits)
            self.st._new_run(self.db, rec.merged, end, 0, *druns.from_map(rec.merged, rec.keys))
            self.st._merges(self.db)
            self.db.execute("INSERT INTO meta (key, value) VALUES ('dedup_merged', ?) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(end),))
            self.st._wrec = _Recent(end)

    def insert_attrs(self, rows):
        self.db.executemany("INSERT OR IGNORE INTO attrs (key, value, idx) VALUES (?, ?, ?)", rows)

    def leaf_at(self, index):
        return _leaf_blob(self.db, index, index + 1, LEAVES) or None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class SQLiteStorage(SQLReads, Storage):
    def __init__(self, path: str | os.PathLike, *, busy_timeout: float = 120.0, cache_mb: int = 64,
                 merge_every: int = DEFAULT_MERGE_EVERY, merge_inline_max: int = MERGE_INLINE_MAX) -> None:
        if merge_every < 1:
            raise ValueError("merge_every must be >= 1")
        self.merge_every = merge_every
        self.merge_inline_max = merge_inline_max
        self._jobs: dict[int, tuple] = {}  # background merges: first run's a -> (process, runs)
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
        self._wrec: _Recent | None = None  # the writer's recent dedup tier (under _writer_lock)
        self._rrec: _Recent | None = None  # the readers' one (under _rrec_lock)
        self._rrec_lock = threading.Lock()
        self.rundir = self.path + "-dedup"  # the dedup runs (tlog.storage.druns)
        self._l0 = L0File(self.path + "-tiles")  # full level-0 tiles (tlog.storage.sqlite_tiles)
        self._runcache: dict[tuple[int, int], druns.Run] = {}
        self._runs_lock = threading.Lock()
        self._created: list[str] = []  # run files written by the current integration
        self._doomed: list[str] = []  # run files it unlisted (deleted once it committed)
        self._writer = self._connect(writer=True)
        self._writer_lock = threading.Lock()
        # WAL mode is persistent in the file; setting it needs no other open transaction.
        mode = self._writer.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"could not switch {self.path} to WAL mode (got {mode})")
        self._writer.execute("BEGIN IMMEDIATE")
        try:
            version = self._check_schema()
            for stmt in SCHEMA.split(";"):
                if stmt.strip():
                    self._writer.execute(stmt)
            if version == "4":
                self._migrate_4()
            if version in ("4", "5"):
                self._migrate_5()
            elif version is None:
                set_marks(self._writer, 0, 0)
            self._writer.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                                 (SCHEMA_VERSION,))
            # run files no committed manifest lists: a crashed or rolled-back merge's (we hold
            # the writer lock: no other integration is writing one now)
            druns.remove_unlisted(self.rundir, {druns.run_name(a, b) for a, b in
                                                self._writer.execute("SELECT a, b FROM druns")})
        except BaseException:
            self._writer.execute("ROLLBACK")
            self.close()
            raise
        self._writer.execute("COMMIT")

    def _check_schema(self) -> str | None:
        """The file's schema version (None: a new file); raises for one this code cannot open."""
        db = self._writer
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return None
        version = None
        if "meta" in tables:
            r = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = r and r[0]
        if version not in ("4", "5", SCHEMA_VERSION):
            raise RuntimeError(
                f"{self.path}: unsupported tlog SQLite schema version {version or '1 (unversioned)'}; "
                f"this code needs version {SCHEMA_VERSION}, 5 or 4 (entries stored per bundle run with dedup keys, "
                "in-memory recent dedup tier). Data directories older than version 4 are not migrated: "
                "re-create the log or use the matching older release")
        return version

    def _migrate_4(self) -> None:
        """Schema 4 -> 5 (in the open transaction): the ``dmain`` rows (keys of the entries
        [0, dedup_merged), in key order) become one run; the table is dropped."""
        db = self._writer
        r = db.execute("SELECT value FROM meta WHERE key = 'dedup_merged'").fetchone()
        merged = int(r[0]) if r else 0
        if merged:
            ks, ids = array.array("q"), array.array("I")
            cur = db.execute("SELECT k, idx FROM dmain ORDER BY k")
            while rows := cur.fetchmany(65536):
                ks.extend([k for k, _ in rows])
                ids.extend([i for _, i in rows])
            level = max(0, round(math.log(merged / self.merge_every, druns.FANIN))) if merged > self.merge_every else 0
            self._new_run(db, 0, merged, level, ks, ids)
        db.execute("DROP TABLE IF EXISTS dmain")

    def _migrate_5(self) -> None:
        """Schema 5 -> 6 (in the open transaction): the full level-0 tiles written so far stay
        rows of ``tiles`` (below ``l0_from``; :func:`sqlite_tiles.copy_table_tiles` moves them
        into the file when convenient), the ones completed from now on go to the tile file."""
        db = self._writer
        r = db.execute("SELECT size FROM state").fetchone()
        full = (r[0] if r else 0) // TILE_WIDTH
        set_marks(db, full, full)
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))

    # -- dedup runs -------------------------------------------------------------------------
    def _new_run(self, db, a: int, b: int, level: int, ks, ids) -> None:
        """Write a run's file durably and list it (in db's open transaction)."""
        path = druns.write_run(self.rundir, a, b, ks, ids)
        self._created.append(path)
        db.execute("INSERT INTO druns (a, b, n, level) VALUES (?, ?, ?, ?)", (a, b, len(ks), level))

    def _merges(self, db) -> None:
        """In db's integration transaction: list the runs of the background merges that
        finished (if their inputs are still listed as they were), then start (or, up to
        ``merge_inline_max`` keys, do here) the merges the fan-in calls for."""
        for a, (proc, grp) in list(self._jobs.items()):
            if proc.poll() is None:
                continue
            del self._jobs[a]
            out = os.path.join(self.rundir, druns.run_name(grp[0].a, grp[-1].b))
            rows = db.execute("SELECT a, b, n FROM druns WHERE a >= ? AND a < ? ORDER BY a",
                              (grp[0].a, grp[-1].b)).fetchall()
            if proc.returncode == 0 and rows == [(r.a, r.b, r.n) for r in grp]:
                try:
                    druns.Run(out + druns.MERGED, grp[0].a, grp[-1].b, sum(r.n for r in grp), 0)
                except druns.RunMissing:
                    continue  # not what it should be: merged again below
                os.replace(out + druns.MERGED, out)
                druns.fsync_dir(self.rundir)
                self._swap(db, grp, None)
            else:  # failed, or another process merged these runs first
                _unlink(out + druns.MERGED)
        runs = self._runs(db, rebuild=True)
        while (grp := druns.mergeable(runs, self._jobs)) is not None:
            if sum(r.n for r in grp) > self.merge_inline_max:
                self._jobs[grp[0].a] = (druns.spawn_merge(self.rundir, grp), grp)
                continue  # the next group (a lower level) may be mergeable too
            self._swap(db, grp, druns.merge(grp))
            runs = self._runs(db, rebuild=True)

    def _swap(self, db, grp, arrays) -> None:
        """Replace the runs ``grp`` by their merge (``arrays``, or the file a child wrote)."""
        db.execute("DELETE FROM druns WHERE a >= ? AND a < ?", (grp[0].a, grp[-1].b))
        a, b, level = grp[0].a, grp[-1].b, grp[0].level + 1
        if arrays is not None:
            self._new_run(db, a, b, level, *arrays)
        else:
            self._created.append(os.path.join(self.rundir, druns.run_name(a, b)))
            db.execute("INSERT INTO druns (a, b, n, level) VALUES (?, ?, ?, ?)", (a, b, sum(r.n for r in grp), level))
        self._doomed += [r.path for r in grp]

    def _stop_merges(self) -> None:
        for proc, _ in self._jobs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self._jobs.clear()

    def _runs(self, db, rebuild: bool) -> list[druns.Run]:
        """The runs db's transaction lists, oldest first, mapped. A listed file that is missing
        or damaged raises RunMissing, or (``rebuild``) is written again from the entries: a
        run is a function of the entries it covers."""
        rows = db.execute("SELECT a, b, n, level FROM druns ORDER BY a").fetchall()
        out = []
        with self._runs_lock:
            for a, b, n, level in rows:
                r = self._runcache.get((a, b))
                if r is None or r.n != n:
                    path = os.path.join(self.rundir, druns.run_name(a, b))
                    try:
                        r = druns.Run(path, a, b, n, level)
                    except druns.RunMissing:
                        if not rebuild:
                            raise
                        rec = _Recent(a)
                        rec.catch_up(db, b)
                        if len(rec.keys) != n:
                            raise RuntimeError(f"dedup run [{a}, {b}) lists {n} keys, the entries have {len(rec.keys)}")
                        druns.write_run(self.rundir, a, b, *druns.from_map(a, rec.keys))
                        r = druns.Run(path, a, b, n, level)
                    self._runcache[(a, b)] = r
                out.append(r)
            if len(self._runcache) > len(out):
                keep = {(r.a, r.b) for r in out}
                for k in [k for k in self._runcache if k not in keep]:
                    del self._runcache[k]
        return out

    # -- connections ------------------------------------------------------------------------
    def _connect(self, writer: bool = False) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                             timeout=self._busy_ms / 1000)
        db.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(f"PRAGMA cache_size=-{self._cache_kb if writer else 16384}")
        if writer:
            # checkpoint the WAL into the database every ~256 MiB rather than every 4 MiB:
            # fewer database-file fsyncs on the append path (the WAL fsync per commit stays),
            # and a page rewritten by several batches (dedup merges, the right edge's tiles) is
            # copied to the database once (203 instead of 334 bytes written per entry at 10^6).
            # Recovery after a crash reads the WAL once (~0.2 s for 256 MiB here).
            db.execute("PRAGMA wal_autocheckpoint=65536")
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

    @contextmanager
    def _snapshot(self, db):
        """One read transaction (a consistent snapshot) for several statements."""
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    def integration(self):
        @contextmanager
        def cm():
            with self._writer_lock:
                if self._closed:
                    raise RuntimeError("storage is closed")
                self._created, self._doomed = [], []
                try:
                    with self._tx(self._writer) as db:
                        yield _SQLiteTxn(db, self)
                        self._l0.sync()  # tile records durable before the commit that lists them
                except BaseException:
                    self._wrec = None  # it may hold the rolled-back batch: rebuild when needed
                    for p in self._created:  # written for a manifest that did not commit
                        _unlink(p)
                    raise
                for p in self._doomed:  # merged into a committed run
                    _unlink(p)
        return cm()

    # -- reads ------------------------------------------------------------------------------

    def tiles(self, keys):
        return _read_tiles(self._reader(), keys, self)

    def leaf_inputs(self, start, end):
        db = self._reader()
        with self._snapshot(db):
            _, count = _marks(db)
            blob = _leaf_blob(db, start, min(end, count))
        return [blob[i:i + _HS] for i in range(0, len(blob), _HS)]

    def entry_data(self, index):
        db = self._reader()
        r = db.execute("SELECT start, ends FROM entries WHERE start <= ? ORDER BY start DESC LIMIT 1",
                       (index,)).fetchone()
        if r is None:
            return None
        start, ends = r
        j = index - start
        if j >= len(ends) // 4:
            return None
        a = 0 if j == 0 else struct.unpack_from("<I", ends, 4 * (j - 1))[0]
        b = struct.unpack_from("<I", ends, 4 * j)[0]
        if a == b:
            return b""
        with db.blobopen("entries", "data", start, readonly=True) as blob:  # rows are never updated
            blob.seek(a)
            return blob.read(b - a)

    def find(self, leaf):
        return self._find(leaf, LEAVES)

    def find_key(self, key):
        return self._find(key, DKEYS)

    def _find(self, v, col):
        db = self._reader()
        for attempt in range(2):
            with self._rrec_lock, self._snapshot(db):
                merged, count = _marks(db)
                rec = self._rrec
                if rec is None or rec.merged != merged or rec.upto > count:
                    rec = _Recent.load(db, merged, count)
                else:
                    rec.catch_up(db, count)
                self._rrec = rec
                try:
                    # a file missing in this snapshot may have been merged away since: rebuild
                    # it only if a fresh snapshot still lists it
                    runs = self._runs(db, rebuild=attempt == 1)
                except druns.RunMissing:
                    continue
                return _lookup(db, rec, runs, v, col)
        raise AssertionError("unreachable")

    def enqueue(self, rows):
        vals = pending_values(rows, time.time())
        db = self._reader()
        with self._tx(db):
            db.executemany("INSERT OR IGNORE INTO pending (leaf, data, attrs, ts, dkey) VALUES (?, ?, ?, ?, ?)", vals)

    def bytes_used(self):
        total = 0
        paths = [self.path + suffix for suffix in ("", "-wal", "-tiles")]
        try:
            paths += [os.path.join(self.rundir, n) for n in os.listdir(self.rundir)]
        except FileNotFoundError:
            pass
        for p in paths:
            try:
                total += os.path.getsize(p)
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
            self._stop_merges()  # an unfinished merge is done again by the next writer
            with self._conns_lock:
                conns, self._conns = self._conns, []
            for c in conns:
                try:
                    c.close()
                except sqlite3.Error:
                    pass
            self._l0.close()
