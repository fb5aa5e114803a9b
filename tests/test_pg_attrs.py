"""PostgreSQL lookup attributes: a narrow index on (64-bit hash of key and value, idx), queue
rows moved into the log inside the database (statement bytes and attributes never leave it)."""

from __future__ import annotations

import hashlib
import uuid

import psycopg
import pytest

from tlog.log import Log

from .tlog_fixtures import ORIGIN, pg_database, signer  # noqa: F401 - fixtures

pytestmark = pytest.mark.postgres

ODD = [("iss", "https://issuer.example"), ("k\tey", "tab\there"), ("back\\slash", "a\\b\\\\c"),
       ("quote\"s", "it's \"quoted\""), ("newline", "a\nb\r\n"), ("unicode", "é ü 漢字 \U0001f600"),
       ("json-ish", '["x",{"y":1}]'), ("empty-value", "")]


@pytest.fixture
def storage(pg_database):  # noqa: F811
    from tlog.storage.postgres import PostgresStorage

    st = PostgresStorage(pg_database, schema="a_" + uuid.uuid4().hex[:12])
    yield st
    st.close()


def test_the_python_and_sql_hashes_agree(storage):
    from tlog.storage.pgattrs import attr_hash

    for k, v in ODD:
        got = storage._read(lambda c: c.execute("SELECT tlog_attr_hash(%s, %s)", (k, v)).fetchone()[0])
        assert got == attr_hash(k, v), (k, v)
    assert attr_hash("a", "bc") != attr_hash("ab", "c")  # the separator counts


def test_queued_rows_are_moved_with_their_attributes(storage, signer):  # noqa: F811
    lg = Log.open(storage, origin=ORIGIN, note_signer=signer, sequencer=False)
    try:
        rows = []
        for i in range(40):
            leaf = hashlib.sha256(b"moved %d" % i).digest()
            key = hashlib.sha256(b"key %d" % i).digest() if i % 2 else None  # half with a dedup key of their own
            rows.append((leaf, b"statement %d\x00\xff" % i, [ODD[i % len(ODD)], ("n", str(i))], key))
        rows.append((hashlib.sha256(b"dup").digest(), b"dup", [("n", "dup")], rows[1][3]))  # same key as row 1
        storage.enqueue(rows)
        assert lg.integrate_pending() == 41
        assert lg.size == 40 and not storage.has_pending()
        for i, (leaf, data, attrs, key) in enumerate(rows[:40]):
            idx = lg.find(leaf)
            assert idx == i and lg.entry_data(idx) == data
            assert lg.find_key(key if key is not None else leaf) == idx
            for k, v in attrs:
                assert idx in lg.lookup(k, v)
            assert lg.lookup("n", str(i)) == [idx]
        assert lg.lookup("n", "dup") == []  # a duplicate's attributes are not recorded
        # the tree holds the leaves the entries table holds
        from verifier.merkle import leaf_hash, verify_inclusion

        for i in (0, 17, 39):
            verify_inclusion(i, lg.size, leaf_hash(lg.leaf_input(i)), lg.inclusion_proof(i, lg.size), lg.root(lg.size))
    finally:
        lg.close()


def test_a_hash_collision_is_no_match(storage, signer):  # noqa: F811
    """The index finds rows by hash; the key and value are compared too."""
    from tlog.storage.pgattrs import attr_hash

    lg = Log.open(storage, origin=ORIGIN, note_signer=signer, sequencer=False)
    try:
        lg.append([(hashlib.sha256(b"x").digest(), b"x", [("iss", "a")])])
        with psycopg.connect(storage.url, autocommit=True) as c:
            c.execute(f"SET search_path = {storage.schema}")
            # another key/value filed under the same hash (what a collision would look like)
            c.execute("INSERT INTO attrs (h, idx, key, value) VALUES (%s, 7, 'iss', 'b'), (%s, 8, 'isz', 'a')",
                      (attr_hash("iss", "a"), attr_hash("iss", "a")))
        assert lg.lookup("iss", "a") == [0]
    finally:
        lg.close()


def test_a_log_with_the_wide_attribute_key_is_converted(pg_database, signer):  # noqa: F811
    from tlog.storage.postgres import PostgresStorage

    schema = "o_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_database, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
        c.execute(f"SET search_path = {schema}")
        c.execute("CREATE TABLE attrs (key TEXT NOT NULL, value TEXT NOT NULL, idx BIGINT NOT NULL, "
                  "PRIMARY KEY (key, value, idx))")
        c.execute("INSERT INTO attrs VALUES ('iss', 'old', 3), ('iss', 'old', 1), ('kind', 'policy', 2)")
    st = PostgresStorage(pg_database, schema=schema)
    try:
        assert st.lookup("iss", "old") == [1, 3]
        assert st.lookup("kind", "policy") == [2]
        assert st.lookup("iss", "new") == []
    finally:
        st.close()


def test_a_queue_row_gone_before_the_move_fails_the_integration(storage, signer):  # noqa: F811
    lg = Log.open(storage, origin=ORIGIN, note_signer=signer, sequencer=False)
    try:
        leaves = [hashlib.sha256(b"gone %d" % i).digest() for i in range(3)]
        storage.enqueue([(leaf, b"s", [("n", "1")]) for leaf in leaves])
        with pytest.raises(RuntimeError, match="moved 2 of 3"):
            with storage.integration() as tx:
                rows = tx.pending(10)
                assert [r.data for r in rows] == [None] * 3  # the bytes stay in the database
                tx.c.execute("DELETE FROM pending WHERE seq = %s", (rows[1].seq,))
                tx.insert_entries(0, [r.leaf for r in rows], [None] * 3, [r.key for r in rows])
        assert storage.has_pending() and lg.find(leaves[0]) is None  # rolled back
    finally:
        lg.close()


def test_a_queue_row_without_hashes_gets_them_in_the_move(storage, signer):  # noqa: F811
    """Rows queued by a frontend that did not compute the index hashes (JSON [key, value] pairs)."""
    from tlog.storage.base import encode_attrs

    lg = Log.open(storage, origin=ORIGIN, note_signer=signer, sequencer=False)
    try:
        leaf = hashlib.sha256(b"old frontend").digest()
        with psycopg.connect(storage.url, autocommit=True) as c:
            c.execute(f"SET search_path = {storage.schema}")
            c.execute("INSERT INTO pending (leaf, data, attrs, ts) VALUES (%s, 'x', %s, 0)",
                      (leaf, encode_attrs(ODD)))
        assert lg.integrate_pending() == 1
        for k, v in ODD:
            assert lg.lookup(k, v) == [0], (k, v)
    finally:
        lg.close()


def test_queue_rows_out_of_their_order_are_refused(storage, signer):  # noqa: F811
    """The move numbers queue rows by their rank in seq order: given otherwise, it refuses."""
    lg = Log.open(storage, origin=ORIGIN, note_signer=signer, sequencer=False)
    try:
        storage.enqueue([(hashlib.sha256(b"order %d" % i).digest(), b"s", []) for i in range(3)])
        with pytest.raises(ValueError, match="consecutive"):
            with storage.integration() as tx:
                rows = tx.pending(10)
                rows = [rows[1], rows[0], rows[2]]
                tx.insert_entries(0, [r.leaf for r in rows], [None] * 3, [r.key for r in rows])
        with pytest.raises(ValueError, match="consecutive"):
            with storage.integration() as tx:
                rows = tx.pending(10)
                # rows 0 and 2 only, with an in-memory entry between them
                tx.insert_entries(0, [rows[0].leaf, b"m" * 32, rows[2].leaf], [None, b"mine", None],
                                  [rows[0].key, b"m" * 32, rows[2].key])
        assert lg.integrate_pending() == 3 and [lg.find(r.leaf) for r in rows] == [0, 1, 2]
    finally:
        lg.close()


def _plan(url, schema, sql, params):
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"SET search_path = {schema}")
        c.execute("SET enable_seqscan = off")  # tiny tables: ask whether the index can serve it
        return "\n".join(r[0] for r in c.execute("EXPLAIN " + sql, params).fetchall())


def test_a_log_with_the_btree_attribute_index_is_migrated_and_lookups_use_the_gin_index(pg_database, signer):  # noqa: F811
    """A log made by the schema before the GIN index (B-tree on (h, idx)) is migrated when
    opened: same lookups, served by the GIN index (on the pending list and after its merge)."""
    from tlog.storage.pgattrs import ATTRS_MATCH
    from tlog.storage.postgres import PostgresStorage

    schema = "g_" + uuid.uuid4().hex[:12]
    st = PostgresStorage(pg_database, schema=schema)
    lg = Log.open(st, origin=ORIGIN, note_signer=signer, sequencer=False)
    rows = [(hashlib.sha256(b"m %d" % i).digest(), b"s %d" % i, [("iss", "x"), ("n", str(i)), ODD[i % len(ODD)]])
            for i in range(30)]
    lg.append(rows[:10])
    lg.close()
    st.close()
    with psycopg.connect(pg_database, autocommit=True) as c:  # back to the layout before
        c.execute(f"SET search_path = {schema}")
        c.execute("DROP INDEX attrs_hg")
        c.execute("CREATE INDEX attrs_h_idx ON attrs (h, idx)")
    st = PostgresStorage(pg_database, schema=schema)
    try:
        lg = Log.open(st, origin=ORIGIN, note_signer=signer, sequencer=False)
        st.enqueue(rows[10:])
        assert lg.integrate_pending() == 20
        for i, (leaf, _, attrs) in enumerate(rows):
            assert lg.find(leaf) == i
            for k, v in attrs[1:]:
                assert lg.lookup(k, v) == ([i] if k == "n" else [j for j in range(30) if j % len(ODD) == i % len(ODD)])
        assert lg.lookup("iss", "x") == list(range(30))
        plan = _plan(pg_database, schema, f"SELECT idx FROM attrs WHERE {ATTRS_MATCH}", ("n", "3", "n", "3"))
        assert "attrs_hg" in plan, plan
        with psycopg.connect(pg_database, autocommit=True) as c:
            c.execute(f"SET search_path = {schema}")
            idx = [r[0] for r in c.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s "
                                           "AND tablename = 'attrs'", (schema,))]
            assert idx == ["attrs_hg"]
            c.execute("SELECT gin_clean_pending_list('attrs_hg'::regclass)")  # merged: found the same
        assert lg.lookup("n", "25") == [25] and lg.lookup("iss", "x") == list(range(30))
        lg.close()
    finally:
        st.close()


def test_the_pending_list_is_merged_by_the_cleaner_after_an_integration(storage, signer):  # noqa: F811
    """Integrations that add attributes wake the cleaner (gin_clean_pending_list on its own
    connection); the list is then empty: pending list pages are counted in the metapage."""
    import time

    lg = Log.open(storage, origin=ORIGIN, note_signer=signer, sequencer=False)
    try:
        assert storage._cleaner.runs == 0
        storage.enqueue([(hashlib.sha256(b"c %d" % i).digest(), b"s", [("n", str(i))]) for i in range(50)])
        assert lg.integrate_pending() == 50
        deadline = time.monotonic() + 10
        while storage._cleaner.runs == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert storage._cleaner.runs >= 1
        # nothing left to merge: a clean now finds no pending list entries (returns 0 pages)
        assert storage._read(lambda c: c.execute(
            "SELECT gin_clean_pending_list('attrs_hg'::regclass)").fetchone()[0]) == 0
        assert lg.lookup("n", "7") == [7]
    finally:
        lg.close()


def test_queue_rows_with_arrays_and_with_json_are_moved_and_read_alike(storage, signer):  # noqa: F811
    """Frontends queue the attributes as arrays (hashes, keys, values); rows queued as JSON by
    an older frontend (with or without the hashes) are moved, and read by queued_attrs, alike."""
    import json

    from tlog.storage.base import encode_attrs
    from tlog.storage.pgattrs import attr_hash

    def encode_attrs_hashed(attrs):  # the JSON of the frontends before the arrays: [[k, v, hash], ...]
        return json.dumps([[k, v, attr_hash(k, v)] for k, v in attrs], separators=(",", ":"))

    lg = Log.open(storage, origin=ORIGIN, note_signer=signer, sequencer=False)
    try:
        leaves = [hashlib.sha256(b"mixed %d" % i).digest() for i in range(6)]
        attrs = [[ODD[i % len(ODD)], ("n", str(i))] for i in range(6)]
        with psycopg.connect(storage.url, autocommit=True) as c:
            c.execute(f"SET search_path = {storage.schema}")
            for i in (0, 3):
                c.execute("INSERT INTO pending (leaf, data, attrs, ts) VALUES (%s, 'j', %s, 0)",
                          (leaves[i], (encode_attrs_hashed if i else encode_attrs)(attrs[i])))
        storage.enqueue([(leaves[i], b"a", attrs[i]) for i in (1, 2, 4, 5)])
        with psycopg.connect(storage.url, autocommit=True) as c:
            c.execute(f"SET search_path = {storage.schema}")
            forms = dict(c.execute("SELECT leaf, ak IS NULL FROM pending").fetchall())
            assert sum(forms.values()) == 2 and len(forms) == 6
            # an array row's attrs is not JSON: an older integrator's move (json_array_elements of
            # attrs::json) fails on it instead of integrating the entry without its attributes
            with pytest.raises(psycopg.errors.InvalidTextRepresentation):
                c.execute("SELECT count(*) FROM pending p, json_array_elements(p.attrs::json) j")
        with pytest.raises(LookupError):  # read only: rolled back, the queue left as it is
            with storage.integration() as tx:
                rows = tx.pending(10)
                got = tx.queued_attrs([r.leaf for r in rows], {"n", ODD[1][0]})
                assert {lf: sorted(v) for lf, v in got.items()} == {
                    leaves[i]: sorted([("n", str(i))] + ([ODD[1]] if i % len(ODD) == 1 else [])) for i in range(6)}
                raise LookupError
        assert lg.integrate_pending() == 6
        order = {lg.find(leaf): i for i, leaf in enumerate(leaves)}
        for idx, i in order.items():
            for k, v in attrs[i]:
                assert idx in lg.lookup(k, v), (i, k, v)
            assert lg.lookup("n", str(i)) == [idx]
    finally:
        lg.close()
