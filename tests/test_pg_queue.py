"""The frontends' durable queue on PostgreSQL (tlog.queued): the enqueue commits without
waiting for its WAL flush; a 303 follows a synchronous enqueue of the row that flushes it."""

from __future__ import annotations

import hashlib
import time
import uuid

import pytest

from tlog.log import Log

from .tlog_fixtures import ORIGIN, pg_database, signer  # noqa: F401 - fixtures

pytestmark = pytest.mark.postgres


class _Recorder:
    """A psycopg connection that records the SQL it runs."""

    def __init__(self, c, seen):
        self._c, self._seen = c, seen

    def __getattr__(self, name):
        return getattr(self._c, name)

    def execute(self, q, *a, **kw):
        self._seen.append(str(q))
        return self._c.execute(q, *a, **kw)


@pytest.fixture
def storage(pg_database, monkeypatch):  # noqa: F811
    from tlog.storage.postgres import PostgresStorage

    st = PostgresStorage(pg_database, schema="q_" + uuid.uuid4().hex[:12])
    st.seen = []
    real = st._read
    monkeypatch.setattr(st, "_read", lambda fn: real(lambda c: fn(_Recorder(c, st.seen))))
    yield st
    st.close()


def _row(i):
    return (hashlib.sha256(b"queued %d" % i).digest(), b"statement %d" % i, [("n", str(i))], None)


def test_the_enqueue_does_not_wait_for_the_flush_and_the_spill_does(storage):
    storage.enqueue_new([_row(1)])
    assert any("synchronous_commit = off" in q for q in storage.seen)
    storage.seen.clear()
    storage.enqueue([_row(1)])  # the row is queued already: the insert does nothing ...
    assert storage.pending_contains(_row(1)[0])
    assert not any("synchronous_commit" in q for q in storage.seen)
    # ... and the commit still writes a record and waits for the WAL flush up to it
    assert any("txid_current()" in q for q in storage.seen)


def test_a_303_follows_a_synchronous_enqueue_of_the_row(storage, signer, monkeypatch):  # noqa: F811
    """No integrator runs: the wait runs out after the enqueuer queued the row (without waiting
    for the flush); the spill enqueues it again, synchronously, before the 303."""
    from tlog.queued import QueueClient

    lg = Log.open(storage, origin=ORIGIN, note_signer=signer, sequencer=False)
    q = QueueClient(storage, lg)
    spilled = []
    real = storage.enqueue
    monkeypatch.setattr(storage, "enqueue", lambda rows: (spilled.append(list(rows)), real(rows))[1])
    try:
        leaf, data, attrs, _ = _row(2)
        p = q.submit(leaf, data, attrs)
        deadline = time.monotonic() + 10
        while not storage.pending_contains(leaf) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert storage.pending_contains(leaf)  # queued by the enqueuer
        assert p.wait(0.01) is None  # the 303 path
        assert [r[0] for r in spilled[0]] == [leaf]
    finally:
        q.close()
        lg.close()
