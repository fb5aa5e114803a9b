"""The fault guards of tlog.storage.postgres, each with a fault injected deterministically.

* a read whose connection was lost since its last use is retried once on a new connection, but
  not when the connection was new (the server refuses us: no loop of new connections), not
  when the connection survived the error (a statement that failed is not run twice) and not when
  the client's watchdog cut it (a paused server: the caller gets the time limit at once);
* the same for beginning an integration (BEGIN and the integration lock);
* an integration cut by the watchdog reports its time limit;
* a refused connection at open is our StorageUnavailable, not a psycopg error.

Connections are lost for real (``pg_terminate_backend`` from a second connection) and the
watchdog cuts for real (a limit of 0.5 s against ``pg_sleep``, standing in for a paused
server, whose own statement_timeout would never fire); no test waits on a timing race.
"""

from __future__ import annotations

import socket
import uuid

import psycopg
import pytest

from tlog.storage.base import StorageUnavailable
from tlog.storage.postgres import PostgresStorage

from .tlog_fixtures import pg_database  # noqa: F401 - fixtures

pg = pytest.mark.postgres
LIMIT = 0.5  # the watchdog's limit in the cut tests (the server's own limits stay at 10 s)


@pytest.fixture
def st(pg_database):  # noqa: F811
    s = PostgresStorage(pg_database, schema="g_" + uuid.uuid4().hex[:12])
    yield s
    s.close()


def _terminate(url: str, pid: int) -> None:
    with psycopg.connect(url, autocommit=True) as k:
        assert k.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


def _count_connects(s: PostgresStorage, monkeypatch, kill_first: int = 0) -> list:
    """Record each connection ``s`` opens; the first ``kill_first`` of them are terminated by the
    server right after they are opened (they fail at their first use)."""
    opened: list = []
    real = PostgresStorage._connect

    def connect():
        c = real(s)
        opened.append(c)
        if len(opened) <= kill_first:
            _terminate(s.url, c.info.backend_pid)
        return c
    monkeypatch.setattr(s, "_connect", connect)
    return opened


# ---- reads ------------------------------------------------------------------------------------

@pg
def test_a_read_on_a_connection_lost_since_its_last_use_is_retried_once(st, monkeypatch):
    assert st.find(b"\1" * 32) is None  # this thread's reader connection, used once
    _terminate(st.url, st._local.c.info.backend_pid)  # the server restarted since, say
    opened = _count_connects(st, monkeypatch)
    assert st.find(b"\1" * 32) is None  # retried on a new connection
    assert len(opened) == 1


@pg
def test_a_read_on_a_new_connection_that_fails_is_not_retried(st, monkeypatch):
    """A new connection lost at its first use: the server is refusing us; no second try."""
    runs = []

    def fn(c):
        runs.append(c)
        return c.execute("SELECT 1").fetchone()
    opened = _count_connects(st, monkeypatch, kill_first=1)
    with pytest.raises(StorageUnavailable):
        st._read(fn)  # this thread has no reader connection yet: a new one, lost at once
    assert len(runs) == 1 and len(opened) == 1
    assert st._read(fn) == (1,)  # the next read opens another one


@pg
def test_a_read_whose_connection_survived_the_error_is_not_retried(st, monkeypatch):
    """A statement that failed without losing its connection (here: cancelled by the server's
    statement_timeout) is not run a second time."""
    assert st.find(b"\1" * 32) is None
    c0 = st._local.c
    runs = []

    def fn(c):
        runs.append(c)
        c.execute("SELECT 1")
        raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
    opened = _count_connects(st, monkeypatch)
    with pytest.raises(StorageUnavailable, match="statement timeout"):
        st._read(fn)
    assert runs == [c0] and opened == []
    assert st._local.c is c0 and not c0.closed  # kept: it is fine


@pg
def test_a_read_cut_by_the_watchdog_is_not_retried(st, monkeypatch):
    """A paused server: the watchdog cuts the read past its limit; the caller learns it at once
    (a retry would only wait as long again)."""
    assert st.find(b"\1" * 32) is None  # an established connection: a loss would be retried
    st._read_limit = LIMIT
    runs = []

    def fn(c):
        runs.append(c)
        return c.execute("SELECT pg_sleep(3)").fetchone()
    opened = _count_connects(st, monkeypatch)
    with pytest.raises(StorageUnavailable, match="no answer within 0.5 s"):
        st._read(fn)
    assert len(runs) == 1 and opened == []


# ---- beginning an integration -----------------------------------------------------------------

def _hold_lock(st: PostgresStorage):
    """Another process's integration of the same log: holds the integration lock."""
    other = PostgresStorage(st.url, schema=st.schema)
    cm = other.integration()
    cm.__enter__()

    def release():
        cm.__exit__(None, None, None)
        other.close()
    return release


def _lock_attempts(monkeypatch) -> list:
    """The integration-lock statements run (by any connection of this process)."""
    seen: list = []
    real = psycopg.Connection.execute

    def execute(self, query, *a, **kw):
        if "pg_advisory_xact_lock" in str(query):
            seen.append(self)
        return real(self, query, *a, **kw)
    monkeypatch.setattr(psycopg.Connection, "execute", execute)
    return seen


@pg
def test_an_integration_whose_writer_was_lost_since_its_last_use_begins_once_more(st, monkeypatch):
    _terminate(st.url, st._writer.info.backend_pid)
    opened = _count_connects(st, monkeypatch)
    with st.integration() as tx:
        assert tx.state() is None
    assert len(opened) == 1


@pg
def test_an_integration_on_a_new_writer_that_fails_is_not_begun_again(st, monkeypatch):
    # lose the writer inside an integration: it is dropped, the next one opens a new writer
    with pytest.raises(StorageUnavailable):
        with st.integration() as tx:
            _terminate(st.url, tx.c.info.backend_pid)
            tx.state()
    assert st._writer is None
    opened = _count_connects(st, monkeypatch, kill_first=1)
    with pytest.raises(StorageUnavailable):
        with st.integration():
            pytest.fail("begun on a lost connection")
    assert len(opened) == 1 and st._writer is None
    with st.integration() as tx:  # the next integration opens another writer
        assert tx.state() is None
    assert len(opened) == 2


@pg
def test_an_integration_lock_wait_that_times_out_is_not_begun_again(pg_database, monkeypatch):  # noqa: F811
    """lock_timeout: the writer survives (rolled back, kept), and the lock is not waited for twice."""
    st = PostgresStorage(pg_database, schema="g_" + uuid.uuid4().hex[:12], lock_timeout=0.2)
    release = _hold_lock(st)
    try:
        w = st._writer
        seen = _lock_attempts(monkeypatch)
        opened = _count_connects(st, monkeypatch)
        with pytest.raises(StorageUnavailable, match="lock timeout"):
            with st.integration():
                pytest.fail("begun without the lock")
        assert seen == [w] and opened == [] and st._writer is w and not w.closed
    finally:
        release()
        st.close()


@pg
def test_an_integration_lock_wait_cut_by_the_watchdog_is_not_begun_again(st, monkeypatch):
    release = _hold_lock(st)
    try:
        st._txn_limit = LIMIT
        seen = _lock_attempts(monkeypatch)
        opened = _count_connects(st, monkeypatch)
        with pytest.raises(StorageUnavailable, match="no answer within 0.5 s"):
            with st.integration():
                pytest.fail("begun without the lock")
        # no second begin on a new connection (the lock statement ran once, or BEGIN itself was cut)
        assert len(seen) <= 1 and opened == [] and st._writer is None  # the cut writer is dropped
    finally:
        release()


@pg
def test_an_integration_cut_by_the_watchdog_reports_its_time_limit(st):
    st._txn_limit = LIMIT
    with pytest.raises(StorageUnavailable, match="integration not finished within 0.5 s"):
        with st.integration() as tx:
            tx.c.execute("SELECT pg_sleep(3)")
    assert st._writer is None  # dropped: the next integration opens a new one


# ---- opening ----------------------------------------------------------------------------------

@pytest.fixture
def refused_url():
    """A loopback port that refuses connections (bound, not listening)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    yield f"postgresql://tlog@127.0.0.1:{s.getsockname()[1]}/postgres"
    s.close()


@pytest.mark.parametrize("schema", [None, "tlog_x"])
def test_opening_a_database_that_refuses_connections_is_storage_unavailable(refused_url, schema):
    with pytest.raises(StorageUnavailable, match="PostgreSQL: .*(refused|connect)"):
        PostgresStorage(refused_url, schema=schema, connect_timeout=1)


@pg
def test_a_closed_storage_refuses_integrations_and_reads_and_closes_twice(st, monkeypatch):
    st.close()
    connects = []
    monkeypatch.setattr(psycopg, "connect", lambda *a, **kw: connects.append(a))
    with pytest.raises(RuntimeError, match="storage is closed"):
        with st.integration():
            pass
    with pytest.raises(RuntimeError, match="storage is closed"):
        st.find(b"\1" * 32)
    with pytest.raises(RuntimeError, match="storage is closed"):
        st.lease()  # a read that does not go through _reader()
    st.close()  # harmless
    assert connects == []  # refused before connecting: no session opened on the server


@pg
def test_a_connection_opened_while_the_storage_closes_is_closed_too(st, monkeypatch):
    """close() on one thread while another opens a connection (a read's first use): the new
    connection must not outlive the storage (it was left open, held by the reading thread)."""
    real = psycopg.connect
    opened = []

    def connect(*a, **kw):
        c = real(*a, **kw)
        opened.append(c)
        st.close()  # lands between the open check and the bookkeeping of the new connection
        return c
    monkeypatch.setattr(psycopg, "connect", connect)
    with pytest.raises(RuntimeError, match="storage is closed"):
        st.find(b"\1" * 32)  # this thread's first read: opens its connection
    assert len(opened) == 1 and opened[0].closed
