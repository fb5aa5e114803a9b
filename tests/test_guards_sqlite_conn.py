"""Guards of the SQLite backend's connections, arguments and plain reads (issue 16, tools/mutate.py):
durability settings on every connection, a closed storage refusing use, bad arguments refused."""

from __future__ import annotations

import sqlite3
import threading
from hashlib import sha256

import pytest

from tlog.storage import open_storage
from tlog.storage.sqlite import SQLiteStorage


def _leaf(i: int) -> bytes:
    return sha256(b"guard-%d" % i).digest()


def _append(st: SQLiteStorage, start: int, datas: list[bytes]) -> list[bytes]:
    leaves = [_leaf(start + i) for i in range(len(datas))]
    with st.integration() as tx:
        tx.insert_entries(start, leaves, datas, leaves)
    return leaves


def _settings(db: sqlite3.Connection) -> dict:
    return {p: db.execute(f"PRAGMA {p}").fetchone()[0]
            for p in ("journal_mode", "synchronous", "cache_size", "mmap_size", "wal_autocheckpoint", "busy_timeout")}


def test_every_connection_has_the_durability_settings(tmp_path, monkeypatch):
    """synchronous=FULL (2), WAL, the cache and mmap sizes and the WAL checkpoint interval are set by
    the log itself on the writer and on every reader, whatever the SQLite build's defaults are:
    connections here start from other values (as a build with other defaults would give)."""
    real = sqlite3.connect

    def connect(*a, **kw):
        db = real(*a, **kw)
        for p in ("synchronous=OFF", "cache_size=-100", "mmap_size=0", "wal_autocheckpoint=10", "busy_timeout=0"):
            db.execute("PRAGMA " + p)
        return db

    monkeypatch.setattr(sqlite3, "connect", connect)
    st = SQLiteStorage(tmp_path / "log.sqlite", cache_mb=8, busy_timeout=7.5)
    try:
        _append(st, 0, [b"a", b"b"])
        assert st.entry_data(1) == b"b"  # opens this thread's reader
        other = []
        t = threading.Thread(target=lambda: other.append(st._reader()))
        t.start()
        t.join()
        readers = [st._reader(), other[0]]
        assert len({id(c) for c in readers + [st._writer]}) == 3 and len(st._conns) == 3
        want = {"journal_mode": "wal", "synchronous": 2, "mmap_size": 268435456, "busy_timeout": 7500}
        assert _settings(st._writer) == dict(want, cache_size=-8 * 1024, wal_autocheckpoint=65536)
        for db in readers:
            s = _settings(db)
            assert {k: s[k] for k in want} == want and s["cache_size"] == -16384
    finally:
        st.close()


def test_a_closed_storage_refuses_reads_and_integrations(tmp_path):
    st = SQLiteStorage(tmp_path / "log.sqlite")
    _append(st, 0, [b"a"])
    assert st.entry_data(0) == b"a"
    st.close()
    with pytest.raises(RuntimeError, match="closed"):
        st.entry_data(0)
    with pytest.raises(RuntimeError, match="closed"):
        st.leaf_inputs(0, 1)
    with pytest.raises(RuntimeError, match="closed"):
        with st.integration():
            pass
    out = []

    def other_thread():  # a thread that never read before gets no new connection either
        try:
            st.find(_leaf(0))
        except RuntimeError as e:
            out.append(str(e))

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert out and "closed" in out[0]
    st.close()  # closing again is harmless


@pytest.mark.parametrize("every", [0, -1])
def test_merge_every_below_one_refused(tmp_path, every):
    with pytest.raises(ValueError, match="merge_every"):
        SQLiteStorage(tmp_path / "log.sqlite", merge_every=every)
    assert list(tmp_path.iterdir()) == []


def test_merge_every_one_accepted(tmp_path):
    st = SQLiteStorage(tmp_path / "log.sqlite", merge_every=1)
    try:
        leaves = _append(st, 0, [b"a", b"b", b"c"])
        assert [st.find(x) for x in leaves] == [0, 1, 2]
    finally:
        st.close()


def test_empty_path_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="empty"):
        SQLiteStorage("")
    assert list(tmp_path.iterdir()) == []


def test_an_in_memory_database_is_refused(tmp_path, monkeypatch):
    """":memory:" cannot be put in WAL mode (nothing would be durable): refused at open."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match="WAL"):
        SQLiteStorage(":memory:")
    assert list(tmp_path.iterdir()) == []


def test_open_storage_refuses_an_unknown_scheme_even_when_it_would_name_a_directory(tmp_path, monkeypatch):
    """"mysql://db.example/log" read as a path names tmp/mysql:/db.example/log: with that directory
    present a mistaken SQLite open would succeed and create the file; it must be refused."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mysql:" / "db.example").mkdir(parents=True)
    with pytest.raises(ValueError, match="scheme"):
        open_storage("mysql://db.example/log")
    assert list((tmp_path / "mysql:" / "db.example").iterdir()) == []


def test_entry_data_of_absent_and_empty_entries(tmp_path):
    st = SQLiteStorage(tmp_path / "log.sqlite")
    try:
        assert st.entry_data(0) is None  # nothing stored yet
        _append(st, 0, [b"", b"xy", b""])
        assert st.entry_data(-1) is None  # before the first run
        assert [st.entry_data(i) for i in range(4)] == [b"", b"xy", b"", None]
        _append(st, 3, [b"", b""])  # a run whose data is empty
        assert [st.entry_data(i) for i in range(3, 6)] == [b"", b"", None]
    finally:
        st.close()


def test_leaf_inputs_beyond_the_end_are_empty(tmp_path):
    st = SQLiteStorage(tmp_path / "log.sqlite")
    try:
        leaves = _append(st, 0, [b"a", b"b", b"c"])
        assert st.leaf_inputs(1, 10) == leaves[1:]
        assert st.leaf_inputs(3, 10) == [] and st.leaf_inputs(5, 10) == [] and st.leaf_inputs(2, 2) == []
    finally:
        st.close()


def test_leaf_at_reads_the_stored_leaf(tmp_path):
    st = SQLiteStorage(tmp_path / "log.sqlite")
    try:
        leaves = _append(st, 0, [b"a", b"b"])
        with st.integration() as tx:
            assert [tx.leaf_at(0), tx.leaf_at(1)] == leaves
    finally:
        st.close()
