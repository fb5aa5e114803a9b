"""SQLite backend specifics: the two-tier (recent + main) dedup index and the schema check."""

import sqlite3
from hashlib import sha256

import pytest

from tests.tlog_fixtures import ORIGIN
from tlog.log import Entry, Log
from tlog.storage.sqlite import SQLiteStorage
from verifier.note import Signer


def leaf(i: int) -> bytes:
    return sha256(b"stmt-%d" % i).digest()


def counts(st):
    db = st._writer
    return tuple(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("dnew", "dmain", "dcoll"))


@pytest.fixture
def signer():
    return Signer.generate(ORIGIN)


def test_dedup_across_merge_boundaries(tmp_path, signer):
    st = SQLiteStorage(tmp_path / "l.sqlite", merge_every=10)
    log = Log.open(st, origin=ORIGIN, note_signer=signer)
    try:
        assert log.append([(leaf(i), b"%d" % i, ()) for i in range(7)])[-1] == Entry(6, 7, False)
        assert counts(st) == (7, 0, 0)
        # crosses 10: the batch lands in dnew, then all 12 move to dmain in key order
        assert log.append([(leaf(i), b"", ()) for i in range(7, 12)])[0] == Entry(7, 12, False)
        assert counts(st) == (0, 12, 0)
        log.append([(leaf(i), b"", ()) for i in range(12, 15)])
        assert counts(st) == (3, 12, 0)
        # duplicates from both tiers, mixed with new leaves, and a batch crossing 20 and 30
        res = log.append([(leaf(3), b"", ()), (leaf(13), b"", ()), (leaf(100), b"", ())]
                         + [(leaf(i), b"", ()) for i in range(15, 31)])
        assert res[:3] == [Entry(3, 7, True), Entry(13, 15, True), Entry(15, 32, False)]
        assert counts(st) == (0, 32, 0) and log.size == 32
        for i in list(range(31)):
            assert log.find(leaf(i)) == (i if i < 15 else i + 1)
        assert log.find(leaf(100)) == 15 and log.find(leaf(999)) is None
        # dedup survives a restart with a different merge interval
        log.close()
        st.close()
        st = SQLiteStorage(tmp_path / "l.sqlite", merge_every=1000)
        log = Log.open(st, origin=ORIGIN, note_signer=signer)
        assert log.append([(leaf(20), b"", ()), (leaf(200), b"", ())]) == [Entry(21, 32, True), Entry(32, 33, False)]
        assert counts(st) == (1, 32, 0)
    finally:
        log.close()
        st.close()


def test_key_collisions_across_tiers(tmp_path, signer):
    """Leaves sharing their 8-byte dedup key, one in dmain and one in dnew, stay distinct."""
    pre = b"\x07" * 8
    a, b, c = (pre + bytes([i]) * 24 for i in range(3))
    st = SQLiteStorage(tmp_path / "l.sqlite", merge_every=2)
    log = Log.open(st, origin=ORIGIN, note_signer=signer)
    try:
        log.append([(a, b"a", ()), (leaf(1), b"", ())])  # merged: a's key in dmain
        assert counts(st) == (0, 2, 0)
        assert log.append([(leaf(2), b"", ())]) == [Entry(2, 3, False)]
        assert log.append([(b, b"b", ())]) == [Entry(3, 4, False)]  # collides with a (dmain)
        assert counts(st) == (0, 3, 1)
        assert log.append([(c, b"c", ()), (b, b"", ()), (a, b"", ())]) == [
            Entry(4, 5, False), Entry(3, 4, True), Entry(0, 2, True)]
        assert [log.find(x) for x in (a, b, c)] == [0, 3, 4] and log.entry_data(3) == b"b"
        assert log.find(pre + b"\x09" * 24) is None
    finally:
        log.close()
        st.close()


def test_failed_batch_rolls_back_its_merge(tmp_path, signer):
    fail = [False]

    def hs(size, root):
        if fail[0]:
            raise RuntimeError("hsm down")
        return b""

    st = SQLiteStorage(tmp_path / "l.sqlite", merge_every=4)
    log = Log.open(st, origin=ORIGIN, note_signer=signer, head_signer=hs)
    try:
        log.append([(leaf(i), b"", ()) for i in range(3)])
        before = counts(st)
        fail[0] = True
        with pytest.raises(RuntimeError):
            log.append([(leaf(i), b"", ()) for i in range(3, 6)])  # would merge at 4
        assert counts(st) == before == (3, 0, 0) and log.find(leaf(4)) is None
        fail[0] = False
        assert log.append([(leaf(i), b"", ()) for i in range(2, 6)])[0] == Entry(2, 3, True)
        assert counts(st) == (0, 6, 0) and [log.find(leaf(i)) for i in range(6)] == list(range(6))
    finally:
        log.close()
        st.close()


def test_old_schema_refused(tmp_path):
    p = tmp_path / "old.sqlite"
    db = sqlite3.connect(p)
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "CREATE TABLE entries (idx INTEGER PRIMARY KEY, k INTEGER UNIQUE, leaf BLOB NOT NULL, "
                     "data BLOB NOT NULL);")
    db.close()
    with pytest.raises(RuntimeError, match="schema version"):
        SQLiteStorage(p)
    # untouched: no new tables were created in it
    db = sqlite3.connect(p)
    assert {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == {"meta", "entries"}
    db.close()
    SQLiteStorage(tmp_path / "new.sqlite").close()
    SQLiteStorage(tmp_path / "new.sqlite").close()  # reopening the current schema is fine
