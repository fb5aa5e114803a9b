"""Guards of the log core that once survived mutation testing (issue 16): no acknowledgement of
an entry whose commit failed (failure injected, no timing), no head signed over a rolled-back
store, and SQLite's durability settings on every connection the log opens."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from hashlib import sha256

import pytest

from tests.tlog_fixtures import *  # noqa: F401,F403 - fixtures
from tests.tlog_fixtures import ORIGIN
from tlog.log import Log
from verifier import VerificationError, merkle


def leaf(i: int) -> bytes:
    return sha256(b"guard-%d" % i).digest()


class CommitFailure(OSError):
    pass


def _fail_commits(storage, armed: threading.Event) -> None:
    """Make the storage's integration transactions fail at commit while ``armed`` is set: the
    body runs, then the transaction is rolled back and the error raised, as a commit that hits
    a full disk or a lost database connection does."""
    real = storage.integration

    @contextmanager
    def integration():
        with real() as tx:
            yield tx
            if armed.is_set():
                raise CommitFailure("injected: the commit failed")

    storage.integration = integration


class _FailingCommit:
    """A SQLite connection whose COMMIT fails (rolled back, then the error) while armed."""

    def __init__(self, db, armed):
        self._db, self._armed = db, armed

    def execute(self, sql, *a):
        if sql.strip().upper() == "COMMIT" and self._armed.is_set():
            self._db.execute("ROLLBACK")
            raise sqlite3.OperationalError("disk I/O error (injected)")
        return self._db.execute(sql, *a)

    def __getattr__(self, name):
        return getattr(self._db, name)


def _fail_sqlite_commits(storage, armed: threading.Event) -> None:
    """The failure at the bottom: the SQLite writer's own COMMIT statement fails."""
    storage._writer = _FailingCommit(storage._writer, armed)


@pytest.mark.parametrize("how,where", [("submit", "txn"), ("append", "txn"), ("submit", "sqlite-commit")])
def test_no_acknowledgement_for_a_failed_commit(storage_factory, signer, how, where):
    if where == "sqlite-commit" and storage_factory.backend != "sqlite":
        pytest.skip("the COMMIT statement is injected into the SQLite writer connection")
    st = storage_factory()
    log = Log.open(st, origin=ORIGIN, note_signer=signer, poll_interval=3600)
    try:
        log.append([(leaf(0), b"zero", ())])
        head, state = log.latest(), st.state()
        armed = threading.Event()
        armed.set()
        (_fail_commits if where == "txn" else _fail_sqlite_commits)(st, armed)
        failure = CommitFailure if where == "txn" else sqlite3.OperationalError
        if how == "submit":
            p = log.submit(leaf(1), b"one")
            with pytest.raises(failure):
                p.wait(30)  # the sequencer reports the failure: the entry is never acknowledged
            assert p.done()
        else:
            with pytest.raises(failure):
                log.append([(leaf(1), b"one", ())])
        # nothing of the failed batch is visible: not in memory, not stored, not signed
        assert log.size == 1 and log.latest() == head and st.state() == state
        assert log.status(leaf(1)) is None and log.find(leaf(1)) is None
        assert st.latest_head().size == 1
        armed.clear()
        e = log.submit(leaf(2), b"two").wait(60) if how == "submit" else log.append([(leaf(2), b"two", ())])[0]
        assert (e.index, e.tree_size) == (1, 2)  # the failed entry took no index
        assert log.latest().root == merkle.root_of([merkle.leaf_hash(leaf(0)), merkle.leaf_hash(leaf(2))])
    finally:
        log.close()
    # a restart sees the same: the failed entry does not exist
    log2 = Log.open(storage_factory(), origin=ORIGIN, note_signer=signer)
    try:
        assert log2.size == 2 and log2.find(leaf(1)) is None
    finally:
        log2.close()


def test_no_head_over_a_rolled_back_store(tmp_path, signer):
    """The tree state and entries of a SQLite file are rolled back to empty (a restored old
    copy) while the last signed head (size 3) survived. The log must refuse to sign a head of
    size 1 that does not extend the head of size 3 it already signed."""
    from tlog.storage import open_storage

    path = tmp_path / "log.sqlite"
    with Log.open(open_storage(path), origin=ORIGIN, note_signer=signer) as log:
        log.append([(leaf(i), b"x", ()) for i in range(3)])
        assert log.latest().size == 3
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in set(tables) - {"meta", "state", "heads", "sqlite_sequence"}:  # entries, tiles, dedup, ...
        db.execute(f"DELETE FROM {table}")
    db.execute("UPDATE state SET size = 0, root = ?", (merkle.EMPTY_ROOT,))
    db.execute("COMMIT")
    db.close()
    with Log.open(open_storage(path), origin=ORIGIN, note_signer=signer) as log:
        with pytest.raises(VerificationError) as e:
            log.append([(leaf(7), b"other", ())])
        assert e.value.check == "log.head"
        assert log.storage.latest_head().size == 3 and log.storage.head(1) is None


# --- SQLite durability on every connection ---------------------------------------------------


def _pragma(db: sqlite3.Connection, name: str):
    return db.execute(f"PRAGMA {name}").fetchone()[0]


def test_sqlite_durability_on_every_connection(tmp_path, signer, monkeypatch):
    """Every SQLite connection the log opens (writer, per-thread readers, the witnessing
    state) runs WAL with synchronous=FULL (2): a commit returns after the WAL is fsynced."""
    import tlog.storage.sqlite as sq
    from tlog.storage import open_storage

    opened: list[sqlite3.Connection] = []
    real_connect = sqlite3.connect

    def recording_connect(*a, **kw):
        db = real_connect(*a, **kw)
        opened.append(db)
        return db

    monkeypatch.setattr(sq.sqlite3, "connect", recording_connect)
    st = open_storage(tmp_path / "log.sqlite")
    with Log.open(st, origin=ORIGIN, note_signer=signer) as log:
        log.append([(leaf(i), b"x", (("k", "v"),)) for i in range(5)])
        log.submit(leaf(9), b"y").wait(60)

        def reads():
            log.refresh()
            st.lookup("k", "v")
            st.entry_data(0)
            st.find(leaf(3))

        for _ in range(3):
            t = threading.Thread(target=reads)
            t.start()
            t.join()
        assert len(opened) >= 4  # the writer and at least three readers
        for db in opened:
            assert _pragma(db, "synchronous") == 2, "synchronous must be FULL"
            assert _pragma(db, "journal_mode") == "wal"
    opened.clear()

    # the other SQLite state files: the log's witnessing client (tlog/), the witness server (witness/)
    from tlog import witnessing
    from verifier.note import CosignatureSigner
    from witness import core as witness

    monkeypatch.setattr(witnessing.sqlite3, "connect", recording_connect)
    monkeypatch.setattr(witness.sqlite3, "connect", recording_connect)
    witnessing.Witnessing(None, [], 0, tmp_path / "witnessing")
    w = witness.Witness(tmp_path / "witness.db", {}, [CosignatureSigner.generate("w.example")])
    w.latest("o")
    assert len(opened) == 2
    for db in opened:
        assert _pragma(db, "synchronous") == 2 and _pragma(db, "journal_mode") == "wal"


# --- the core's input checks (ValueError, nothing stored) ------------------------------------


@pytest.mark.parametrize("item", [
    (b"\x01" * 31, b"d", ()),
    (b"\x01" * 32, "text, not bytes", ()),
    (b"\x01" * 32, b"d", (("k", "v", "extra"),)),
    (b"\x01" * 32, b"d", (("k",),)),
    (b"\x01" * 32, b"d", ((1, "v"),)),
    (b"\x01" * 32, b"d", (("k", 2),)),
    (b"\x01" * 32, b"d", (("", "v"),)),
    (b"\x01" * 32, b"d", (("k\x00", "v"),)),
    (b"\x01" * 32, b"d", (("k", "v\x00"),)),
])
def test_bad_items_refused_and_nothing_stored(tmp_path, signer, item):
    with Log.open(tmp_path / "log.sqlite", origin=ORIGIN, note_signer=signer) as log:
        with pytest.raises(ValueError):
            log.append([item])
        with pytest.raises(ValueError):
            log.submit(*item)
        assert log.size == 0 and log.storage.state()[0] == 0


def test_sizes_and_indexes_are_non_negative_ints(tmp_path, signer):
    with Log.open(tmp_path / "log.sqlite", origin=ORIGIN, note_signer=signer) as log:
        log.append([(leaf(i), b"x", ()) for i in range(4)])
        for bad in (-1, True, 1.0, "1"):
            for call in (lambda v: log.root(v), lambda v: log.inclusion_proof(v, 4), lambda v: log.inclusion_proof(0, v),
                         lambda v: log.consistency_proof(v, 4), lambda v: log.tree_head(v), lambda v: log.leaf_input(v),
                         lambda v: log.entry_data(v), lambda v: log.tile(0, v)):
                with pytest.raises(ValueError):
                    call(bad)
        with pytest.raises(ValueError):
            log.inclusion_proof(4, 4)
        with pytest.raises(ValueError):
            log.consistency_proof(3, 2)
        with pytest.raises(ValueError):
            log.consistency_proof(0, 4)
        with pytest.raises(ValueError):
            log.root(5)
        assert log.inclusion_proof(3, 4) and log.consistency_proof(4, 4) == []


def test_open_arguments_checked(tmp_path, signer):
    from verifier.note import Signer

    p = tmp_path / "log.sqlite"
    for kw in ({"max_batch": 0}, {"max_batch": "8"}, {"max_wait": -0.1}, {"origin": ""},
               {"origin": "other.example/log"}, {"note_signer": "not a signer"},
               {"note_signer": Signer.generate("other.example/log")}):
        args = {"origin": ORIGIN, "note_signer": signer, **kw}
        with pytest.raises(ValueError):
            Log.open(p, **args)
    with Log.open(p, origin=ORIGIN, note_signer=signer, max_batch=1, max_wait=0) as log:
        assert [e.index for e in log.append([(leaf(0), b"a", ()), (leaf(1), b"b", ())])] == [0, 1]


@pytest.mark.parametrize("check,title,reason", [
    ("cose.alg", "Bad Signature Algorithm", "alg"),
    ("statement.unsupported-algorithm", "Bad Signature Algorithm", "alg"),
    ("cose.payload-missing", "Payload Missing", "payload-missing"),
    ("statement.payload-detached", "Payload Missing", "payload-missing"),
    ("statement.payload", "Malformed request", "malformed"),
    ("statement.signature", "Rejected", "signature"),
    ("x509.chain", "Rejected", "x509"),
    ("statement.x5chain", "Rejected", "x509"),
    ("key.cose", "Rejected", "issuer-key"),
    ("cbor.key-type", "Malformed request", "malformed"),
    ("cbor.depth", "Malformed request", "malformed"),
])
def test_rejections_classified(check, title, reason):
    """The verifier's check names map to the SCRAPI problem titles the HTTP contract lists."""
    from tlog.policy import classify

    r = classify(VerificationError(check, "why"))
    assert (r.title, r.reason) == (title, reason)


def test_open_storage_by_url(tmp_path, request):
    from tlog.storage import open_storage
    from tlog.storage.sqlite import SQLiteStorage

    for bad in ("", "sqlite://relative/path"):
        with pytest.raises(ValueError):
            open_storage(bad)
    s = open_storage(f"sqlite://{tmp_path}/a.sqlite")
    try:
        assert isinstance(s, SQLiteStorage)
    finally:
        s.close()
    from tests.tlog_fixtures import PG_URL

    if PG_URL:
        from tlog.storage.postgres import PostgresStorage

        url = request.getfixturevalue("pg_database")
        for u in (url, url.replace("postgresql://", "postgres://", 1)):
            s = open_storage(u, schema="t_open_" + str(abs(hash(u)) % 10**8))
            try:
                assert isinstance(s, PostgresStorage)
            finally:
                s.close()


def test_leaves_sharing_a_dedup_key_in_one_batch(storage_factory, signer):
    """Two different leaf inputs with the same first 8 bytes (the dedup key) in one batch: both
    get their own index, both are found, and a resubmission of either is a duplicate."""
    a, b = b"\x01" * 8 + b"\xaa" * 24, b"\x01" * 8 + b"\xbb" * 24
    log = Log.open(storage_factory(), origin=ORIGIN, note_signer=signer)
    try:
        assert [e.index for e in log.append([(a, b"a", ()), (b, b"b", ())])] == [0, 1]
        assert (log.find(a), log.find(b)) == (0, 1)
        again = log.append([(b, b"b", ()), (a, b"a", ())])
        assert [(e.index, e.duplicate) for e in again] == [(1, True), (0, True)] and log.size == 2
    finally:
        log.close()
    log2 = Log.open(storage_factory(), origin=ORIGIN, note_signer=signer)
    try:
        assert (log2.find(a), log2.find(b)) == (0, 1)
    finally:
        log2.close()


def test_postgres_durability_and_limits(storage_factory, signer):
    """PostgreSQL counterpart of the SQLite check: every connection the storage opens commits
    with synchronous_commit=on; time limits must be positive."""
    if storage_factory.backend != "postgres":
        pytest.skip("PostgreSQL only")
    from tlog.storage.postgres import PostgresStorage

    st = storage_factory()
    with Log.open(st, origin=ORIGIN, note_signer=signer) as log:
        log.append([(leaf(0), b"x", ())])
        t = threading.Thread(target=lambda: (st.find(leaf(0)), st.entry_data(0)))
        t.start()
        t.join()
        conns = list(st._conns)
        assert len(conns) >= 2
        for c in conns:
            assert c.execute("SHOW synchronous_commit").fetchone()[0] == "on"
    for name in ("connect_timeout", "statement_timeout", "lock_timeout"):
        with pytest.raises(ValueError):
            PostgresStorage(storage_factory.url, **{name: 0})


def test_batched_inclusion_proofs_check_like_single_ones(tmp_path, signer):
    """inclusion_proofs (one tile load for many indexes) refuses what inclusion_proof refuses,
    with the same ValueError and its words: a bad or out-of-tree index, a bad or unknown size."""
    with Log.open(tmp_path / "log.sqlite", origin=ORIGIN, note_signer=signer) as log:
        log.append([(leaf(i), b"x", ()) for i in range(4)])
        assert log.inclusion_proofs([0, 3], 4) == [log.inclusion_proof(0, 4), log.inclusion_proof(3, 4)]
        for idxs, size, words in (([0, 4], 4, "not in a tree of size 4"), ([5], 4, "not in a tree of size 4"),
                                  ([-1], 4, "non-negative"), ([True], 4, "non-negative"), (["1"], 4, "non-negative"),
                                  ([0], 5, "exceeds the log size"), ([0], -1, "non-negative"),
                                  ([0], 1.0, "non-negative")):
            with pytest.raises(ValueError, match=words):
                log.inclusion_proofs(idxs, size)
