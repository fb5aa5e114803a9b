"""PostgreSQL backend (psycopg 3).

Durability: every commit runs with ``synchronous_commit = on`` (forced per connection), so
COMMIT returns only once the WAL record is flushed; an acknowledged batch survives a crash of
the server process or of the database host (given fsync=on on the server).

Locking: an integration transaction first takes ``pg_advisory_xact_lock`` on a key derived
from the schema name, so exactly one process integrates into a given log at a time; other
processes' integrations block there (their sequencers keep queueing submissions meanwhile)
and then reload the tree's right edge, which they detect from the state row.

Hot path: queue rows are moved into ``entries`` and ``attrs`` inside the database (one
``INSERT ... SELECT`` from ``pending``; their statement bytes and attributes never travel through
the integrator, which reads only seq, leaf and dedup key); entries given in memory go in with
binary ``COPY``; tiles with one pipelined ``executemany`` upsert, keyed ``index * 64 + level``.
Lookup attributes are indexed by a 64-bit hash of key and value under a fast-update GIN index
whose pending list a cleaner thread merges on its own connection (tlog.storage.pgattrs); a
lookup compares key and value too. The queue rows are deleted by the statement that moves them.

``schema``: keep the log's tables in that schema (created if missing); by default the
connection's current schema.

Faults (the database restarts, sessions are terminated, the server or the network pauses):

* every operation has a time limit. The server enforces ``statement_timeout`` and
  ``lock_timeout`` (settings ``db_statement_timeout``, ``db_lock_timeout``) and ends a session
  idle inside a transaction (a paused client) after ``idle_in_transaction_session_timeout``;
  connecting is bounded by ``connect_timeout`` (enforced by psycopg on the client). A paused
  server enforces nothing, so a watchdog thread on the client cuts (shuts down the socket of)
  any connection whose operation runs past its limit plus a margin; the operation then fails;
* a lost connection is dropped and a new one opened at the next use. A read that fails on a
  connection opened earlier (the server restarted since) is retried once on a new connection;
  an integration transaction whose lock statement fails that way is begun once more;
* what still fails raises :class:`tlog.storage.base.StorageUnavailable` (HTTP 503).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from contextlib import contextmanager

import psycopg

from .base import LeaseLost, SQLReads, Storage, StorageUnavailable
from . import pgsettings
from .pgattrs import ATTRS_MATCH, PENDING_INSERT, PendingListCleaner, migrate_attrs, needs_migration, pending_arrays
from .pgtxn import _PGTxn, _read_tiles
from .pgwatch import Watchdog


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (id INT PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL, root BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS tiles (id BIGINT PRIMARY KEY, hashes BYTEA NOT NULL, interior BYTEA);
ALTER TABLE tiles ALTER COLUMN hashes SET STORAGE EXTERNAL;
ALTER TABLE tiles ALTER COLUMN interior SET STORAGE EXTERNAL;
CREATE TABLE IF NOT EXISTS entries (idx BIGINT PRIMARY KEY, leaf BYTEA NOT NULL UNIQUE, dkey BYTEA NOT NULL UNIQUE,
    data BYTEA NOT NULL);
CREATE OR REPLACE FUNCTION tlog_attr_hash(k TEXT, v TEXT) RETURNS BIGINT LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ('x' || encode(substring(sha256(convert_to(k, 'UTF8') || decode('00', 'hex') || convert_to(v, 'UTF8'))
                                          FROM 1 FOR 8), 'hex'))::bit(64)::bigint $$;
CREATE TABLE IF NOT EXISTS attrs (h BIGINT NOT NULL, idx BIGINT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS heads (size BIGINT PRIMARY KEY, root BYTEA NOT NULL, checkpoint TEXT NOT NULL,
    extra BYTEA, ts DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS pending (seq BIGSERIAL PRIMARY KEY, leaf BYTEA NOT NULL UNIQUE,
    data BYTEA NOT NULL, attrs TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, dkey BYTEA);
CREATE TABLE IF NOT EXISTS aliases (leaf BYTEA PRIMARY KEY, idx BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS lease (id INT PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, token BIGINT NOT NULL,
    expires TIMESTAMPTZ NOT NULL);
INSERT INTO lease (id, holder, token, expires) VALUES (1, '', 0, '-infinity') ON CONFLICT (id) DO NOTHING;
ALTER TABLE lease ADD COLUMN IF NOT EXISTS backend INT;
ALTER TABLE pending ADD COLUMN IF NOT EXISTS ah BIGINT[], ADD COLUMN IF NOT EXISTS ak TEXT[],
    ADD COLUMN IF NOT EXISTS av TEXT[];
"""

# The integrator's lease (tlog.leader): one row; times are the database's clock, so the hosts'
# clocks do not matter. Taking it over needs it expired and bumps the fencing token; renewing
# needs the token and an unexpired lease. The renewal is also the fencing check inside every
# integration transaction (see PostgresStorage.integration).
_ACQUIRE = ("UPDATE lease SET holder = %s, token = token + 1, expires = clock_timestamp() + make_interval(secs => %s) "
            "WHERE id = 1 AND expires < clock_timestamp() RETURNING token")
_RENEW = ("UPDATE lease SET expires = clock_timestamp() + make_interval(secs => %s), backend = pg_backend_pid() "
          "WHERE id = 1 AND token = %s AND expires > clock_timestamp() RETURNING token")
# A holder paused inside its transaction keeps the lease row and the integration lock until its
# server session ends; a session blocked sending a result to the paused process is neither idle
# nor interruptible by a timeout. Its lease has expired by then (as committed), and it could not
# commit anyway (the renewal before COMMIT fails), so whoever takes over ends that session first.
_END_EXPIRED = ("SELECT pg_terminate_backend(a.pid) FROM lease l JOIN pg_stat_activity a ON a.pid = l.backend "
                "WHERE l.id = 1 AND l.expires < clock_timestamp() AND a.datname = current_database() "
                "AND a.application_name = 'tlog-integrator' AND a.pid <> pg_backend_pid() "
                "AND a.xact_start IS NOT NULL")

log = logging.getLogger(__name__)

_LOCK = "SELECT pg_advisory_xact_lock(hashtext('tlog:' || current_schema()))"
_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")


class _Rows:
    """A read's result, fetched inside the time limit."""

    __slots__ = ("rows",)

    def __init__(self, rows) -> None:
        self.rows = rows

    def fetchone(self):
        return self.rows[0] if self.rows else None

    def fetchall(self):
        return self.rows

    def __iter__(self):
        return iter(self.rows)


class _Reader:
    """What ``_reader()`` gives the shared read queries: ``execute`` with retry and deadline."""

    __slots__ = ("_s",)

    def __init__(self, storage: "PostgresStorage") -> None:
        self._s = storage

    def execute(self, sql, params=(), **kw):
        return _Rows(self._s._read(lambda c: c.execute(sql, params, **kw).fetchall()))



def _resolve(c, leaves, col: str = "leaf") -> dict[bytes, tuple[int, int]]:
    """Which of ``leaves`` (``col`` "dkey": dedup keys) are integrated: value -> (index, size
    of the first head with it)."""
    if not leaves:
        return {}
    assert col in ("leaf", "dkey")
    rows = c.execute(f"SELECT e.{col}, e.idx, (SELECT h.size FROM heads h WHERE h.size > e.idx ORDER BY h.size LIMIT 1) "
                     f"FROM entries e WHERE e.{col} = ANY(%s)", (leaves,)).fetchall()
    return {bytes(r[0]): (r[1], r[2]) for r in rows if r[2] is not None}


class PostgresStorage(SQLReads, Storage):
    _P = "%s"
    MARGIN = 1.0  # seconds the client waits past a server-side limit before cutting

    def __init__(self, url: str, *, schema: str | None = None, connect_timeout: float = 10,
                 statement_timeout: float = 10.0, lock_timeout: float = 10.0,
                 idle_in_transaction_timeout: float | None = None, application_name: str = "tlog") -> None:
        """``idle_in_transaction_timeout``: the server ends a session of this storage that sits
        inside a transaction without a statement for that long (a paused client), releasing its
        locks; default the time limit of a whole integration."""
        if schema is not None and not _IDENT.match(schema):
            raise ValueError(f"schema name {schema!r} must match {_IDENT.pattern}")
        for name, v in (("connect_timeout", connect_timeout), ("statement_timeout", statement_timeout),
                        ("lock_timeout", lock_timeout)):
            if not v > 0:
                raise ValueError(f"{name} must be positive")
        self.url = url
        self.schema = schema
        self.statement_timeout = float(statement_timeout)
        self.lock_timeout = float(lock_timeout)
        # a read: one statement; an integration: the lock wait plus its statements
        self._read_limit = self.statement_timeout + self.MARGIN
        self._txn_limit = self.lock_timeout + 2 * self.statement_timeout + self.MARGIN
        ms = lambda s: max(1, int(s * 1000))  # noqa: E731
        idle = self._txn_limit if idle_in_transaction_timeout is None else idle_in_transaction_timeout
        # jit off: every statement of the log is a short one (a JIT compilation of the
        # integrator's move, misled by the row estimate of json_array_elements, cost ~40 ms)
        opts = (f"-c synchronous_commit=on -c jit=off -c statement_timeout={ms(statement_timeout)} "
                f"-c lock_timeout={ms(lock_timeout)} "
                f"-c idle_in_transaction_session_timeout={ms(idle)}")
        if schema:
            opts += f" -c search_path={schema}"
        # libpq's connect_timeout is whole seconds (psycopg enforces it on the client)
        self._kw = {"options": opts, "connect_timeout": max(1, round(connect_timeout)),
                    "application_name": application_name}
        self._local = threading.local()
        self._conns: set[psycopg.Connection] = set()
        self._conns_lock = threading.Lock()
        self._writer_lock = threading.Lock()
        self._watchdog = Watchdog()
        self._reader_proxy = _Reader(self)
        self._closed = False
        self._writer: psycopg.Connection | None = None
        # (token, seconds): integrations check and renew the lease (fencing); None: no check
        self.fence: tuple[int, float] | None = None
        self._cleaner = PendingListCleaner(self._read)
        self._recheck_at = 0  # the tree size at which the settings are read again
        try:
            if schema:
                with psycopg.connect(url, autocommit=True, connect_timeout=self._kw["connect_timeout"]) as c:
                    c.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            with self.integration() as tx:
                tx.c.execute(SCHEMA)
                for table in ("entries", "pending"):
                    if tx.c.execute(
                            "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
                            "AND table_name = %s AND column_name = 'dkey'", (table,)).fetchone() is None:
                        raise RuntimeError(
                            f"{url}: the log's {table} table predates dedup keys (the signed content of each "
                            "statement, issue 11); old databases are not migrated: re-create the log")
                migrate = needs_migration(tx.c)
                ns = tx.c.execute("SELECT current_schema()").fetchone()[0]
                size = (tx.state() or (0, b""))[0]
            if migrate:
                self._migrate()
            with self._writer_lock:  # on the writer's connection: no reader connection for this thread
                self._advise(self._writer, size)
            # LISTEN/NOTIFY channels of this log (tlog.queued, tlog.leader)
            self.channel_integrated = f"tlog_integrated:{ns}"
            self.channel_pending = f"tlog_pending:{ns}"
        except BaseException as e:
            self.close()
            if isinstance(e, psycopg.OperationalError):
                raise StorageUnavailable(f"PostgreSQL: {e}") from None
            raise

    def _migrate(self) -> None:
        """Migrate the log's attrs (pgattrs.migrate_attrs) on a connection of its own: no statement
        time limit (it may take minutes) and no watchdog; the integration lock is waited for as
        long as an integration may hold it."""
        opts = f"-c synchronous_commit=on -c statement_timeout=0 -c lock_timeout={max(1, int(self._txn_limit * 1000))}"
        if self.schema:
            opts += f" -c search_path={self.schema}"
        with psycopg.connect(self.url, autocommit=True, options=opts,
                             connect_timeout=self._kw["connect_timeout"]) as c:
            with c.transaction():
                c.execute(_LOCK)
                migrate_attrs(c)

    # ---- connections ----------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        if self._closed:
            raise RuntimeError("storage is closed")
        try:
            c = psycopg.connect(self.url, autocommit=True, **self._kw)
        except psycopg.OperationalError as e:
            raise StorageUnavailable(f"PostgreSQL: cannot connect: {e}") from None
        with self._conns_lock:
            # close() may have run while this one was connecting: it sets _closed before it
            # takes the connections under this lock, so either it closes c or this sees it
            if not self._closed:
                self._conns.add(c)
                return c
        c.close()
        raise RuntimeError("storage is closed")

    def _drop(self, c: psycopg.Connection) -> None:
        with self._conns_lock:
            self._conns.discard(c)
        try:
            c.close()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close cleanly
            pass

    def _reader(self):
        if self._closed:
            raise RuntimeError("storage is closed")
        return self._reader_proxy

    def _read(self, fn):
        """Run ``fn(connection)`` on this thread's reader connection within the read time limit;
        a connection lost since its last use is replaced and ``fn`` run once more."""
        for attempt in (0, 1):
            c = getattr(self._local, "c", None)
            fresh = c is None or c.closed or c.broken
            if fresh:
                if c is not None:
                    self._drop(c)
                self._local.c = None
                c = self._local.c = self._connect()
            op = self._watchdog.start(c, self._read_limit)
            try:
                return fn(c)
            except psycopg.OperationalError as e:
                cut = not self._watchdog.end(op)
                lost = c.closed or c.broken
                if lost:
                    self._drop(c)
                    self._local.c = None
                if cut:
                    raise StorageUnavailable(f"PostgreSQL: no answer within {self._read_limit:g} s") from None
                if lost and not fresh and attempt == 0:
                    continue
                raise StorageUnavailable(f"PostgreSQL: {e}") from None
            finally:
                self._watchdog.end(op)
        raise AssertionError("unreachable")

    # ---- integration ----------------------------------------------------------------------
    def _begin(self) -> tuple[psycopg.Connection, int]:
        """BEGIN and take the integration lock on the writer connection, within the time limit
        of the whole transaction (returned: the watchdog's operation)."""
        for attempt in (0, 1):
            w = self._writer
            fresh = w is None or w.closed or w.broken
            if fresh:
                if w is not None:
                    self._drop(w)
                self._writer = None
                w = self._writer = self._connect()
            op = self._watchdog.start(w, self._txn_limit)
            try:
                w.execute("BEGIN")
                w.execute(_LOCK)
                return w, op
            except psycopg.OperationalError as e:
                cut = not self._watchdog.end(op)
                self._abort(w)
                if cut:
                    raise StorageUnavailable(f"PostgreSQL: no answer within {self._txn_limit:g} s") from None
                if self._writer is None and not fresh and attempt == 0:
                    continue  # the connection was lost since its last use: once more
                raise StorageUnavailable(f"PostgreSQL: {e}") from None
        raise AssertionError("unreachable")

    def _abort(self, w: psycopg.Connection) -> None:
        """Roll back the writer's transaction, or drop the writer if the connection is gone."""
        if not (w.closed or w.broken):
            try:
                w.execute("ROLLBACK")
                return
            except psycopg.Error:
                pass
        self._drop(w)
        if self._writer is w:
            self._writer = None

    def integration(self):
        @contextmanager
        def cm():
            with self._writer_lock:
                if self._closed:
                    raise RuntimeError("storage is closed")
                w, op = self._begin()
                done = False
                fence = self.fence
                try:
                    if fence is not None:
                        self._fence(w, fence)  # also locks the lease row until the commit
                    tx = _PGTxn(w)
                    yield tx
                    if tx.new_size is not None and hasattr(self, "channel_integrated"):
                        # delivered at the commit, to every frontend that waits (tlog.queued)
                        w.execute("SELECT pg_notify(%s, %s)", (self.channel_integrated, str(tx.new_size)))
                    if fence is not None:
                        # the lease must still be ours, unexpired, as the last thing before the
                        # commit (the process may have been paused inside the transaction); the
                        # row lock taken above keeps any other integrator from taking it over
                        # until this commit is done
                        self._fence(w, fence)
                    w.execute("COMMIT")
                    done = True
                    if tx.attrs_added:
                        self._cleaner.poke()  # merge the attrs index's pending list, elsewhere
                    if tx.new_size is not None and tx.new_size >= self._recheck_at:
                        self._advise(w, tx.new_size)  # committed: outside the transaction
                except psycopg.OperationalError as e:
                    cut = not self._watchdog.end(op)
                    self._abort(w)
                    done = True
                    if cut:
                        raise StorageUnavailable(
                            f"PostgreSQL: integration not finished within {self._txn_limit:g} s") from None
                    raise StorageUnavailable(f"PostgreSQL: {e}") from None
                finally:
                    if not done:
                        self._abort(w)
                    self._watchdog.end(op)
        return cm()

    def _advise(self, conn: psycopg.Connection, size: int) -> None:
        """Log, once per process, log and kind, what the server's settings cost this log
        (tlog.storage.pgsettings), read on ``conn`` (the writer's, outside a transaction); read
        again once the log has grown past the next multiple of RECHECK_EVERY entries. Never fails
        the caller: the advice is not worth an error (a lost connection is replaced at its next use)."""
        # the next reading's size first: a reading that keeps failing is tried once per step
        self._recheck_at = (size // pgsettings.RECHECK_EVERY + 1) * pgsettings.RECHECK_EVERY
        try:
            reading = pgsettings.read(conn)
        except Exception as e:  # noqa: BLE001 - advice only: whatever failed, the caller goes on
            log.debug("PostgreSQL settings not read: %s", e)
            return
        for kind, line in pgsettings.advice(reading, size).items():
            if pgsettings.first_time((self.url, self.schema, kind)):
                log.warning("PostgreSQL: %s", line)

    @staticmethod
    def _fence(w: psycopg.Connection, fence: tuple[int, float]) -> None:
        token, ttl = fence
        if w.execute(_RENEW, (ttl, token)).fetchone() is None:
            raise LeaseLost(f"the integrator lease (token {token}) expired or was taken over")

    # ---- the integrator's lease (tlog.leader) ---------------------------------------------
    def acquire_lease(self, holder: str, ttl: float) -> int | None:
        """Take the lease if it has expired: the new fencing token, or None (held by another)."""
        def run(c):
            c.execute(_END_EXPIRED)
            return c.execute(_ACQUIRE, (holder, ttl)).fetchone()
        r = self._read(run)
        return None if r is None else r[0]

    def renew_lease(self, token: int, ttl: float) -> bool:
        return self._read(lambda c: c.execute(_RENEW, (ttl, token)).fetchone()) is not None

    def release_lease(self, token: int) -> None:
        """Give the lease up (a clean shutdown): another integrator may take it at once."""
        self._read(lambda c: c.execute("UPDATE lease SET expires = '-infinity' WHERE id = 1 AND token = %s",
                                       (token,)))

    def lease(self) -> tuple[str, int, float]:
        """(holder, token, seconds until it expires; negative: expired)."""
        r = self._read(lambda c: c.execute(
            "SELECT holder, token, extract(epoch FROM expires - clock_timestamp())::float8 FROM lease WHERE id = 1"
        ).fetchone())
        return r[0], r[1], r[2] if r[2] is not None else float("-inf")

    # ---- the durable queue of frontends (tlog.queued) ---------------------------------------
    def listen(self, channel: str) -> psycopg.Connection:
        """A new connection listening on ``channel`` (close it with :meth:`unlisten`)."""
        c = self._connect()
        try:
            c.execute(f'LISTEN "{channel}"')
        except psycopg.OperationalError as e:
            self._drop(c)
            raise StorageUnavailable(f"PostgreSQL: {e}") from None
        return c

    def unlisten(self, c: psycopg.Connection) -> None:
        self._drop(c)

    def enqueue_new(self, rows) -> dict[bytes, tuple[int, int]]:
        """One transaction: the rows ``(leaf, data, attrs[, dedup key])`` whose leaf or key is
        in the log already are not queued (returned, leaf -> (index of the entry, tree size));
        the others are added to the pending queue durably and the integrator is woken (NOTIFY)."""
        now = time.time()
        rows = list(rows)

        def run(c):
            with c.transaction():
                # committed without waiting for the WAL flush: nothing is acknowledged on this
                # commit alone. A 201 follows the integrator's commit of the entry, which is
                # synchronous and later in the WAL (so it flushes this one too); a 303 follows
                # :meth:`enqueue` of the row, synchronous and writing a commit record.
                c.execute("SET LOCAL synchronous_commit = off")
                found = _resolve(c, [r[0] for r in rows])
                by_key = {r[3]: r[0] for r in rows if len(r) > 3 and r[3] is not None and r[0] not in found}
                if by_key:
                    for k, (idx, size) in _resolve(c, list(by_key), "dkey").items():
                        found[by_key[k]] = (idx, size)
                vals = pending_arrays([r for r in rows if r[0] not in found], now)
                if vals:
                    with c.cursor() as cur:
                        cur.executemany(PENDING_INSERT, vals)
                    c.execute("SELECT pg_notify(%s, '')", (self.channel_pending,))
                return found
        return self._read(run)

    def resolve(self, leaves, keys=None) -> dict[bytes, tuple[int, int]]:
        """Which of ``leaves`` are integrated: leaf -> (index, size of the first head with it).
        ``keys``: {dedup key: leaf} of leaves that may have been integrated as another entry
        with the same signed content (found by key when not by leaf)."""
        leaves = list(leaves)

        def run(c):
            found = _resolve(c, leaves)
            rest = {k: lf for k, lf in (keys or {}).items() if lf not in found}
            for k, hit in _resolve(c, list(rest), "dkey").items():
                found[rest[k]] = hit
            return found
        return self._read(run)

    # ---- reads ------------------------------------------------------------------------------
    def tiles(self, keys):
        keys = list(keys)
        return self._read(lambda c: _read_tiles(c, keys))

    def find(self, leaf):
        r = self._reader().execute("SELECT idx FROM entries WHERE leaf = %s", (leaf,)).fetchone()
        return None if r is None else r[0]

    def lookup(self, key, value):
        # the index is on the hash; key and value compared too (a collision is no match)
        return [r[0] for r in self._reader().execute(
            f"SELECT DISTINCT idx FROM attrs WHERE {ATTRS_MATCH} ORDER BY idx", (key, value, key, value))]

    def find_key(self, key):
        r = self._reader().execute("SELECT idx FROM entries WHERE dkey = %s", (key,)).fetchone()
        return None if r is None else r[0]

    def enqueue(self, rows):
        vals = pending_arrays(rows, time.time())

        def run(c):
            with c.transaction():
                with c.cursor() as cur:
                    cur.executemany(PENDING_INSERT, vals)
                if hasattr(self, "channel_pending"):
                    c.execute("SELECT pg_notify(%s, '')", (self.channel_pending,))
                # a transaction id, so that the commit writes a record and waits for its WAL
                # flush even when every row was queued already (by enqueue_new, whose commit
                # did not wait for it; an in-progress insert of the same leaf is waited for by
                # the unique index): the row is durable when this returns
                c.execute("SELECT txid_current()")
        # retried on a new connection only if the old one was lost (then nothing was committed
        # or the rows are there already: ON CONFLICT DO NOTHING)
        self._read(run)

    def bytes_used(self):
        r = self._reader().execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r'").fetchone()
        return int(r[0])

    def close(self):
        if self._closed:
            return
        self._cleaner.stop()
        with self._writer_lock:
            self._closed = True
            self._watchdog.stop()
            with self._conns_lock:
                conns, self._conns = self._conns, set()
            for c in conns:
                try:
                    c.close()
                except psycopg.Error:
                    pass
