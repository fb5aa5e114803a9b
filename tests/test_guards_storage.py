"""Guards of the storage layer found unchecked by mutation testing (issue 16, tools/mutate.py)."""

from __future__ import annotations

import pytest

from tests.tlog_fixtures import pg_database  # noqa: F401 - fixture
from tlog.storage import open_storage


@pytest.mark.parametrize("url", ["", "mysql://db.example/log", "file:///tmp/x.sqlite", "sqlite://relative/path"])
def test_open_storage_refuses_what_it_cannot_open(tmp_path, monkeypatch, url):
    monkeypatch.chdir(tmp_path)  # a mistaken SQLite open would create its file here
    with pytest.raises(ValueError):
        open_storage(url)
    assert list(tmp_path.iterdir()) == []


def test_missing_heads_read_as_none(tmp_path):
    from hashlib import sha256

    from tests.tlog_fixtures import ORIGIN
    from tlog.log import Log
    from verifier.note import Signer

    with Log.open(tmp_path / "log.sqlite", origin=ORIGIN, note_signer=Signer.generate(ORIGIN), sequencer=False) as log:
        log.append([(sha256(b"%d" % i).digest(), b"x", ()) for i in range(2)])
        assert log.tree_head(5) is None and log.storage.head(1) is None and log.storage.head(2).size == 2
        assert log.storage.first_head_after(2) is None and log.storage.first_head_after(0) == 2


def test_a_dedup_run_is_written_only_from_int64_keys_and_uint32_offsets(tmp_path):
    import array

    from tlog.storage import druns

    q, i = array.array("q", [1, 2, 3]), array.array("I", [0, 1, 2])
    for keys, idxs in ((q, array.array("I", [0, 1])), (array.array("l", [1, 2, 3]), i),
                       (q, array.array("L", [0, 1, 2])), (q, array.array("i", [0, 1, 2])),
                       (array.array("d", [1.0, 2.0, 3.0]), i)):
        with pytest.raises(ValueError):
            druns.write_run(str(tmp_path / "runs"), 0, 3, keys, idxs)
    assert not (tmp_path / "runs").exists()
    path = druns.write_run(str(tmp_path / "runs"), 0, 3, q, i)
    assert path and (tmp_path / "runs").is_dir()


def test_remove_unlisted_keeps_listed_runs_young_temporaries_and_other_files(tmp_path):
    """Only unlisted run files, and temporaries/merge outputs older than tmp_age, are deleted: a
    younger one may be a merge still running in another process."""
    import os
    import time

    from tlog.storage import druns

    d = tmp_path / "runs"
    d.mkdir()
    names = {"a.dd": True, "b.dd": False, "c.dd.tmp-1": True, "d.dd.tmp-2": False,
             "e" + druns.MERGED: True, "f" + druns.MERGED: False, "notes.txt": True}
    old = time.time() - 7200
    for n in names:
        (d / n).write_bytes(b"x")
        if n in ("d.dd.tmp-2", "f" + druns.MERGED, "b.dd", "a.dd", "notes.txt"):  # old: age alone deletes nothing
            os.utime(d / n, (old, old))
    druns.remove_unlisted(str(d), {"a.dd"}, tmp_age=3600)
    assert sorted(os.listdir(d)) == sorted(n for n, keep in names.items() if keep)


def _attrs_shape(c, schema):
    cols = c.execute("SELECT column_name, is_nullable, data_type FROM information_schema.columns "
                     "WHERE table_schema = %s AND table_name = 'attrs' ORDER BY column_name", (schema,)).fetchall()
    cons = c.execute("SELECT contype FROM pg_constraint WHERE conrelid = %s::regclass ORDER BY contype",
                     (f"{schema}.attrs",)).fetchall()
    idx = c.execute("SELECT indexname, replace(indexdef, %s, 'S.') FROM pg_indexes WHERE schemaname = %s "
                    "AND tablename = 'attrs' ORDER BY indexname", (schema + ".", schema)).fetchall()
    return cols, cons, idx


def test_a_converted_attribute_table_has_the_shape_of_a_new_one(request):
    """A PostgreSQL log made with the wide (key, value, idx) primary key, or with the B-tree on
    (h, idx), converted at open, ends with the attrs table of a new log: h NOT NULL, no wide key,
    the GIN index on ARRAY[h] and no B-tree."""
    import uuid

    from tests.tlog_fixtures import PG_URL, pg_skip_reason

    if not PG_URL:
        pytest.skip(pg_skip_reason)
    import psycopg

    from tlog.storage.postgres import PostgresStorage

    url = request.getfixturevalue("pg_database")
    old, mid, new = "ov_" + uuid.uuid4().hex[:10], "mv_" + uuid.uuid4().hex[:10], "nv_" + uuid.uuid4().hex[:10]
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {old}")
        c.execute(f"CREATE TABLE {old}.attrs (key TEXT NOT NULL, value TEXT NOT NULL, idx BIGINT NOT NULL, "
                  "PRIMARY KEY (key, value, idx))")
        c.execute(f"INSERT INTO {old}.attrs VALUES ('iss', 'old', 1)")
        c.execute(f"CREATE SCHEMA {mid}")
        c.execute(f"CREATE TABLE {mid}.attrs (h BIGINT NOT NULL, idx BIGINT NOT NULL, key TEXT NOT NULL, "
                  "value TEXT NOT NULL)")
        c.execute(f"CREATE INDEX attrs_h_idx ON {mid}.attrs (h, idx)")
    for schema in (old, mid, new):
        PostgresStorage(url, schema=schema).close()
    with psycopg.connect(url, autocommit=True) as c:
        assert _attrs_shape(c, old) == _attrs_shape(c, new) == _attrs_shape(c, mid)
        cols, cons, idx = _attrs_shape(c, new)
        assert ("h", "NO", "bigint") in cols and [n for n, _ in idx] == ["attrs_hg"]
        assert "USING gin ((ARRAY[h]))" in idx[0][1] and "fastupdate='on'" in idx[0][1], idx
        for s in (old, mid, new):
            c.execute(f"DROP SCHEMA {s} CASCADE")


def test_one_watchdog_thread_per_storage_and_none_after_stop():
    import threading

    from tlog.storage.pgwatch import Watchdog

    def watchdogs():
        return {t for t in threading.enumerate() if t.name == "tlog-pg-watchdog"}

    before = watchdogs()
    w = Watchdog()
    ops = [w.start(object(), 600) for _ in range(3)]
    assert len(watchdogs() - before) == 1
    assert all(w.end(op) for op in ops)  # ended in time: not cut
    w.stop()
    w._thread.join(10)
    assert not w._thread.is_alive(), "a stopped watchdog's thread kept running"
    w2 = Watchdog()
    w2.stop()
    w2.start(object(), 600)
    assert len(watchdogs() - before) <= 1 and w2._thread is None


def test_the_same_queue_row_twice_is_refused(request):
    """The move takes each queue row once: a batch naming one row twice is refused like rows out
    of their order (ValueError), before any SQL, and nothing is moved."""
    import hashlib
    import uuid

    from tests.tlog_fixtures import ORIGIN, PG_URL, pg_skip_reason

    if not PG_URL:
        pytest.skip(pg_skip_reason)
    from tlog.log import Log
    from tlog.storage.postgres import PostgresStorage
    from verifier.note import Signer

    st = PostgresStorage(request.getfixturevalue("pg_database"), schema="d_" + uuid.uuid4().hex[:10])
    lg = Log.open(st, origin=ORIGIN, note_signer=Signer.generate(ORIGIN), sequencer=False)
    try:
        st.enqueue([(hashlib.sha256(b"twice %d" % i).digest(), b"s", []) for i in range(2)])
        with pytest.raises(ValueError, match="consecutive"):
            with st.integration() as tx:
                r = tx.pending(10)[0]
                tx.insert_entries(0, [r.leaf, r.leaf], [None, None], [r.key, r.key])
        assert lg.integrate_pending() == 2 and lg.size == 2
    finally:
        lg.close()
        st.close()


@pytest.mark.parametrize("schema", ["x; DROP TABLE entries", "Upper", "1st", "a" * 64, "", "tlog-x", 'x"y'])
def test_a_postgres_schema_name_is_an_identifier_checked_before_any_sql(schema):
    """The schema name is put into SQL text (it cannot be a parameter): anything but a plain
    lower-case identifier is refused before connecting."""
    from tlog.storage.postgres import PostgresStorage

    with pytest.raises(ValueError, match="schema name"):
        PostgresStorage("postgresql://nobody@127.0.0.1:9/none", schema=schema)


def test_an_unreachable_postgres_is_storage_unavailable():
    from tlog.storage import StorageUnavailable
    from tlog.storage.postgres import PostgresStorage

    with pytest.raises(StorageUnavailable):
        PostgresStorage("postgresql://nobody@127.0.0.1:9/none", connect_timeout=2)


def test_a_postgres_log_from_before_dedup_keys_is_refused_not_migrated(request):
    import uuid

    from tests.tlog_fixtures import PG_URL, pg_skip_reason

    if not PG_URL:
        pytest.skip(pg_skip_reason)
    import psycopg

    from tlog.storage.postgres import PostgresStorage

    url = request.getfixturevalue("pg_database")
    schema = "old_" + uuid.uuid4().hex[:10]
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
        c.execute(f"CREATE TABLE {schema}.entries (idx BIGINT PRIMARY KEY, leaf BYTEA NOT NULL UNIQUE, data BYTEA NOT NULL)")
    try:
        with pytest.raises(RuntimeError, match="predates dedup keys"):
            PostgresStorage(url, schema=schema)
    finally:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")


def test_a_closed_postgres_storage_opens_no_connection(request):
    """After close, a read from a thread that never had a connection is refused (no connection
    is opened that nothing would ever close)."""
    import threading
    import uuid

    from tests.tlog_fixtures import PG_URL, pg_skip_reason

    if not PG_URL:
        pytest.skip(pg_skip_reason)
    from tlog.storage.postgres import PostgresStorage

    st = PostgresStorage(request.getfixturevalue("pg_database"), schema="c_" + uuid.uuid4().hex[:10])
    st.state()  # a connection of this thread, closed by close()
    st.close()
    got = []

    def read():
        try:
            st.state()
            got.append("read")
        except Exception as e:  # noqa: BLE001 - the refusal is what is checked
            got.append(e)
    t = threading.Thread(target=read)
    t.start()
    t.join(30)
    assert len(got) == 1 and isinstance(got[0], RuntimeError) and "closed" in str(got[0])
    with pytest.raises(RuntimeError, match="closed"):
        st.listen("tlog_test")  # the queue's listener connection: none after close either
    assert not st._conns

