"""Guards of the PostgreSQL attribute index's upkeep (tlog.storage.pgattrs, tlog.storage.postgres):
the pending-list cleaner stops for good when told, and the migration of an older attribute index
runs under the integration lock."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid

import psycopg
import pytest

from tlog.log import Log
from tlog.storage.pgattrs import PendingListCleaner

from .tlog_fixtures import ORIGIN, pg_database, signer  # noqa: F401 - fixtures


def _wait(cond, limit=5.0):
    deadline = time.monotonic() + limit
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.005)
    return cond()


def test_a_stopped_cleaner_starts_no_thread():
    calls = []
    cl = PendingListCleaner(lambda fn: calls.append(fn))
    cl.stop()
    cl.poke()
    assert cl._thread is None
    time.sleep(0.05)
    assert calls == []


def test_the_cleaner_thread_ends_when_stopped_and_runs_no_more():
    calls = []
    cl = PendingListCleaner(lambda fn: calls.append(fn))
    cl.poke()
    assert _wait(lambda: cl.runs == 1)
    cl.stop()  # wakes the thread: it must end without another run
    cl._thread.join(2.0)
    assert not cl._thread.is_alive()
    assert len(calls) == 1 and cl.runs == 1


def test_a_run_that_fails_because_the_cleaner_stopped_ends_it_quietly(caplog):
    holder = {}

    def read(fn):
        holder["cl"].stop()  # the storage closes its connections while a run is under way
        raise psycopg.OperationalError("connection closed")

    cl = holder["cl"] = PendingListCleaner(read)
    with caplog.at_level(logging.WARNING, logger="tlog.storage.pgattrs"):
        cl.poke()
        assert _wait(lambda: cl._thread is not None and not cl._thread.is_alive())
    assert not [r for r in caplog.records if "not merged" in r.getMessage()]


def test_a_failed_run_is_reported_and_the_next_wake_up_merges(caplog):
    fail = [True]

    def read(fn):
        if fail[0]:
            fail[0] = False
            raise psycopg.OperationalError("server closed the connection")

    cl = PendingListCleaner(read)
    try:
        with caplog.at_level(logging.WARNING, logger="tlog.storage.pgattrs"):
            cl.poke()
            assert _wait(lambda: any("not merged" in r.getMessage() for r in caplog.records))
        cl.poke()
        assert _wait(lambda: cl.runs == 1)
    finally:
        cl.stop()


@pytest.mark.postgres
def test_the_attribute_index_migration_holds_the_integration_lock(pg_database, signer, monkeypatch):  # noqa: F811
    """A log with the B-tree attribute index is migrated at open under the integration lock (an
    integrator of another host must not move entries while the index is rebuilt)."""
    from tlog.storage import postgres
    from tlog.storage.postgres import PostgresStorage

    schema = "m_" + uuid.uuid4().hex[:12]
    st = PostgresStorage(pg_database, schema=schema)
    lg = Log.open(st, origin=ORIGIN, note_signer=signer, sequencer=False)
    lg.append([(hashlib.sha256(b"m %d" % i).digest(), b"s", [("n", str(i))]) for i in range(3)])
    lg.close()
    st.close()
    with psycopg.connect(pg_database, autocommit=True) as c:  # back to the layout before the GIN index
        c.execute(f"SET search_path = {schema}")
        c.execute("DROP INDEX attrs_hg")
        c.execute("CREATE INDEX attrs_h_idx ON attrs (h, idx)")

    held = []
    real = postgres.migrate_attrs

    def spy(c):
        held.append(c.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                              "AND pid = pg_backend_pid()").fetchone()[0])
        real(c)

    monkeypatch.setattr(postgres, "migrate_attrs", spy)
    st = PostgresStorage(pg_database, schema=schema)
    try:
        assert held == [1]
        lg = Log.open(st, origin=ORIGIN, note_signer=signer, sequencer=False)
        assert lg.lookup("n", "2") == [2]
        lg.close()
    finally:
        st.close()
