"""The frontends' durable queue on PostgreSQL (tlog.storage.postgres enqueue_new / enqueue):
rows without a dedup key, duplicates found by key whatever their order in the batch, and the
NOTIFY that wakes a waiting integrator (received on a second connection)."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from tlog.storage.base import TreeHead
from tlog.storage.postgres import PostgresStorage

from .tlog_fixtures import pg_database  # noqa: F401 - fixtures

pytestmark = pytest.mark.postgres


@pytest.fixture
def st(pg_database):  # noqa: F811
    s = PostgresStorage(pg_database, schema="gq_" + uuid.uuid4().hex[:12])
    yield s
    s.close()


def _leaf(name: bytes) -> bytes:
    return hashlib.sha256(name).digest()


def _integrate(st: PostgresStorage, leaf: bytes, key: bytes) -> None:
    """Entry 0 of the log, with a head of size 1."""
    root = hashlib.sha256(b"\0" + leaf).digest()
    with st.integration() as tx:
        tx.insert_entries(0, [leaf], [b"statement"], [key])
        tx.set_state(1, root)
        tx.put_head(TreeHead(1, root, "checkpoint", None, 0.0))


def test_rows_without_a_dedup_key_are_queued(st):
    """Rows (leaf, data, attrs): the dedup key is optional."""
    a, b = _leaf(b"a"), _leaf(b"b")
    assert st.enqueue_new([(a, b"statement a", [("k", "v")]), (b, b"statement b", [])]) == {}
    assert st.pending_contains(a) and st.pending_contains(b)


def test_a_duplicate_by_key_is_found_whatever_its_place_in_the_batch(st):
    """Two leaves with one dedup key (the same signed content, other unprotected headers), one of
    them integrated: both answered with the entry, neither queued, in either order."""
    key = hashlib.sha256(b"signed content").digest()
    old, new = _leaf(b"integrated"), _leaf(b"resubmitted")
    _integrate(st, old, key)
    for rows in ([(new, b"s2", [], key), (old, b"s1", [], key)], [(old, b"s1", [], key), (new, b"s2", [], key)]):
        assert st.enqueue_new(rows) == {old: (0, 1), new: (0, 1)}
        assert not st.pending_contains(new) and not st.has_pending()


@pytest.mark.parametrize("how", ["enqueue_new", "enqueue"])
def test_queueing_notifies_the_integrator(st, how):
    listener = st.listen(st.channel_pending)  # what a waiting integrator does (tlog.queued)
    try:
        getattr(st, how)([(_leaf(how.encode()), b"statement", [], None)])
        got = list(listener.notifies(timeout=5, stop_after=1))
        assert [n.channel for n in got] == [st.channel_pending]
    finally:
        st.unlisten(listener)


def test_only_an_integration_that_grows_the_log_notifies_the_frontends(st):
    """Frontends LISTEN on the integrated channel and sweep their waiting registrations on each
    notice: an integration that set no new size (an empty queue drained, a lease renewed) must
    not wake them. Ordered, no timing: notices arrive in commit order, so the first one heard
    after an empty integration and then a real one is the real one's, carrying its size."""
    listener = st.listen(st.channel_integrated)
    try:
        with st.integration():
            pass  # nothing integrated: no new size
        _integrate(st, _leaf(b"grown"), hashlib.sha256(b"k").digest())
        got = list(listener.notifies(timeout=5, stop_after=1))
        assert [(n.channel, n.payload) for n in got] == [(st.channel_integrated, "1")]
    finally:
        st.unlisten(listener)
