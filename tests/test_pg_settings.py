"""The PostgreSQL settings a log checks itself (tlog.storage.pgsettings): indexes that outgrow
shared_buffers, pglz WAL compression; read at open and again as the log grows, each piece of
advice logged once, and never an error for the caller."""

from __future__ import annotations

import hashlib
import logging
import uuid

import pytest

from tlog.log import Log
from tlog.storage import pgsettings
from tlog.storage.pgsettings import Reading, advice

from .tlog_fixtures import ORIGIN, pg_database, signer  # noqa: F401 - fixtures

MB = 1 << 20


def test_indexes_larger_than_shared_buffers_are_advised():
    assert set(advice(Reading(128 * MB, 128 * MB + 1, "lz4"))) == {"shared_buffers"}
    assert "129 MB" in advice(Reading(128 * MB, 129 * MB, "lz4"))["shared_buffers"]
    assert advice(Reading(128 * MB, 128 * MB, "lz4")) == {}  # they still fit
    assert advice(Reading(6144 * MB, 1500 * MB, "lz4")) == {}


def test_indexes_near_shared_buffers_are_advised_with_the_size_they_outgrow_it_at():
    n = 768 * MB // 128  # 128 B of index per entry
    soon = advice(Reading(1024 * MB, 768 * MB, "lz4"), n)
    assert set(soon) == {"shared_buffers_soon"}
    assert "8,388,608 entries" in soon["shared_buffers_soon"] and "75 %" in soon["shared_buffers_soon"]
    assert "128 B per entry at 6,291,456" in soon["shared_buffers_soon"]
    assert advice(Reading(1024 * MB, 768 * MB - 1, "lz4"), n) == {}  # below 75 %: nothing yet
    assert set(advice(Reading(1024 * MB, 1024 * MB, "lz4"), n)) == {"shared_buffers_soon"}  # full, not over
    assert set(advice(Reading(1024 * MB, 1024 * MB + 1, "lz4"), n)) == {"shared_buffers"}  # over: the other line
    assert advice(Reading(1024 * MB, 800 * MB, "lz4")) == {}  # no size (an empty log): no projection


@pytest.mark.parametrize("wc, advised", [("pglz", True), ("on", True), ("lz4", False), ("zstd", False),
                                         ("off", False)])
def test_pglz_wal_compression_is_advised(wc, advised):
    assert ("wal_compression" in advice(Reading(6144 * MB, MB, wc))) is advised


@pytest.fixture
def storage(pg_database):  # noqa: F811
    from tlog.storage.postgres import PostgresStorage

    st = PostgresStorage(pg_database, schema="s_" + uuid.uuid4().hex[:12])
    yield st
    st.close()


@pytest.mark.postgres
def test_the_reading_is_the_servers(storage):
    r = storage._read(pgsettings.read)
    sb, ib, wc = storage._read(lambda c: c.execute(
        "SELECT pg_size_bytes(current_setting('shared_buffers')), "
        "pg_indexes_size('entries') + pg_indexes_size('attrs'), current_setting('wal_compression')").fetchone())
    assert r == Reading(sb, ib, wc) and r.index_bytes > 0


def _leaves(lo, hi):
    return [(hashlib.sha256(b"adv %d" % i).digest(), b"statement %d" % i, ()) for i in range(lo, hi)]


@pytest.mark.postgres
def test_advice_logged_once_at_open_and_read_again_as_the_log_grows(pg_database, signer, monkeypatch,  # noqa: F811
                                                                      caplog):
    from tlog.storage.postgres import PostgresStorage

    said = {"shared_buffers": "ADVICE-ONE"}
    reads, sizes = [], []
    real = pgsettings.read
    monkeypatch.setattr(pgsettings, "advice", lambda r, size: sizes.append(size) or dict(said))
    monkeypatch.setattr(pgsettings, "read", lambda c: reads.append(1) or real(c))
    monkeypatch.setattr(pgsettings, "RECHECK_EVERY", 4)
    caplog.set_level(logging.WARNING, logger="tlog.storage.postgres")
    st = PostgresStorage(pg_database, schema="s_" + uuid.uuid4().hex[:12])
    try:
        assert len(reads) == 1 and caplog.text.count("ADVICE-ONE") == 1
        lg = Log.open(st, origin=ORIGIN, note_signer=signer, sequencer=False)
        lg.append(_leaves(0, 3))  # size 3: below the next check (4)
        assert len(reads) == 1
        lg.append(_leaves(3, 5))  # size 5: read again; the same advice is not repeated
        assert len(reads) == 2 and caplog.text.count("ADVICE-ONE") == 1
        said["wal_compression"] = "ADVICE-TWO"
        lg.append(_leaves(5, 7))  # size 7: below the next check (8)
        assert len(reads) == 2 and "ADVICE-TWO" not in caplog.text
        lg.append(_leaves(7, 9))  # size 9: a new kind of advice is logged, the old one is not
        assert len(reads) == 3
        assert caplog.text.count("ADVICE-TWO") == 1 and caplog.text.count("ADVICE-ONE") == 1
        assert sizes == [0, 5, 9]  # the log's size at each reading: what the projection divides by
        lg.close()
    finally:
        st.close()


@pytest.mark.postgres
def test_a_failed_reading_fails_nothing(pg_database, signer, monkeypatch):  # noqa: F811
    from tlog.storage.postgres import PostgresStorage

    tries = []

    def broken(c):
        tries.append(1)
        raise RuntimeError("no settings today")

    monkeypatch.setattr(pgsettings, "read", broken)
    monkeypatch.setattr(pgsettings, "RECHECK_EVERY", 4)
    st = PostgresStorage(pg_database, schema="s_" + uuid.uuid4().hex[:12])
    try:
        lg = Log.open(st, origin=ORIGIN, note_signer=signer, sequencer=False)
        entries = lg.append(_leaves(0, 3))
        assert [e.index for e in entries] == [0, 1, 2] and lg.size == 3 and st.state()[0] == 3
        assert len(tries) == 1  # at open
        lg.append(_leaves(3, 4))
        assert len(tries) == 2  # size 4: the next step
        lg.append(_leaves(4, 7))
        assert len(tries) == 2 and lg.size == 7  # the failed reading is not retried before size 8
        lg.close()
    finally:
        st.close()


@pytest.mark.postgres
def test_a_second_storage_of_the_same_log_does_not_repeat_it(pg_database, monkeypatch, caplog):  # noqa: F811
    from tlog.storage.postgres import PostgresStorage

    monkeypatch.setattr(pgsettings, "advice", lambda r, size: {"shared_buffers": "ADVICE-THREE"})
    caplog.set_level(logging.WARNING, logger="tlog.storage.postgres")
    schema = "s_" + uuid.uuid4().hex[:12]
    for _ in range(2):  # a server's restart inside one process, a benchmark's reopening
        PostgresStorage(pg_database, schema=schema).close()
    assert caplog.text.count("ADVICE-THREE") == 1
    PostgresStorage(pg_database, schema="s_" + uuid.uuid4().hex[:12]).close()  # another log: its own advice
    assert caplog.text.count("ADVICE-THREE") == 2
