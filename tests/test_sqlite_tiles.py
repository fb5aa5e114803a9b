"""SQLite schema 6: full level-0 tiles in the flat tile file (tlog.storage.sqlite_tiles)."""

import os
import random
import sqlite3
from hashlib import sha256

import pytest

from tests.tlog_fixtures import ORIGIN
from tlog.log import Log
from tlog.storage import sqlite_tiles
from tlog.storage.sqlite import SCHEMA_VERSION, SQLiteStorage
from tlog.tree import RECORD_BYTES, TILE_BYTES
from verifier import merkle
from verifier.note import Signer


@pytest.fixture
def signer():
    return Signer.generate(ORIGIN)


def leaf(i: int, salt: bytes = b"") -> bytes:
    return sha256(b"stmt-%d" % i + salt).digest()


def grow(log, a, b, step=100, salt=b""):
    for s in range(a, b, step):
        log.append([(leaf(i, salt), b"x", ()) for i in range(s, min(b, s + step))])


def check_proofs(log, k=60, seed=1):
    """Inclusion proofs of random entries at random sizes and consistency proofs verify."""
    rnd = random.Random(seed)
    n = log.size
    for _ in range(k):
        i = rnd.randrange(n)
        size = rnd.randint(i + 1, n)
        merkle.verify_inclusion(i, size, merkle.leaf_hash(log.leaf_input(i)), log.inclusion_proof(i, size), log.root(size))
        a = rnd.randint(1, n)
        b = rnd.randint(a, n)
        merkle.verify_consistency(a, b, log.consistency_proof(a, b), log.root(a), log.root(b))


def reopen(path, signer):
    st = SQLiteStorage(path)
    return st, Log.open(st, origin=ORIGIN, note_signer=signer)


def marks(st):
    return sqlite_tiles.read_marks(st._writer)


def level0_rows(st):
    return sorted(i >> 6 for (i,) in st._writer.execute("SELECT id FROM tiles WHERE id & 63 = 0"))


def test_full_tiles_live_in_the_file(tmp_path, signer):
    path = tmp_path / "l.sqlite"
    st, log = reopen(path, signer)
    grow(log, 0, 1000)
    assert marks(st) == (0, 3)
    assert level0_rows(st) == [3]  # only the partial tile of the right edge stays a row
    assert os.path.getsize(str(path) + "-tiles") == 3 * sqlite_tiles.REC
    check_proofs(log)
    log.close()
    st.close()
    st, log = reopen(path, signer)  # cold: every level-0 tile comes from the file
    try:
        check_proofs(log, seed=2)
        assert st.bytes_used() >= 3 * sqlite_tiles.REC
    finally:
        log.close()
        st.close()


def test_damaged_or_missing_record_rebuilt_from_leaves(tmp_path, signer):
    path = tmp_path / "l.sqlite"
    st, log = reopen(path, signer)
    grow(log, 0, 800)
    log.close()
    st.close()
    with open(str(path) + "-tiles", "r+b") as f:  # one flipped bit in tile 1's top interior row
        f.seek(sqlite_tiles.REC + RECORD_BYTES - 10)
        b = f.read(1)
        f.seek(sqlite_tiles.REC + RECORD_BYTES - 10)
        f.write(bytes([b[0] ^ 1]))
    st, log = reopen(path, signer)
    try:
        for i in range(256, 512, 7):  # the damaged tile's own proofs
            merkle.verify_inclusion(i, 800, merkle.leaf_hash(log.leaf_input(i)), log.inclusion_proof(i, 800), log.root(800))
        check_proofs(log)
    finally:
        log.close()
        st.close()
    os.unlink(str(path) + "-tiles")  # restored without the file
    st, log = reopen(path, signer)
    try:
        check_proofs(log, seed=3)
        grow(log, 800, 1100)  # and the log goes on writing it
        check_proofs(log, seed=4)
    finally:
        log.close()
        st.close()


def test_records_durable_before_commit(tmp_path, signer, monkeypatch):
    """A batch whose tile records cannot be made durable does not commit; a record it wrote
    past the committed mark is never read, and the next batch overwrites it."""
    path = tmp_path / "l.sqlite"
    st, log = reopen(path, signer)
    grow(log, 0, 200)

    def fail():
        raise OSError("fdatasync failed")

    monkeypatch.setattr(st._l0, "sync", fail)
    with pytest.raises(OSError):
        log.append([(leaf(i, b"lost"), b"x", ()) for i in range(200, 300)])  # completes tile 0
    monkeypatch.undo()
    assert log.size == 200 and marks(st) == (0, 0)
    assert os.path.getsize(str(path) + "-tiles") == sqlite_tiles.REC  # the uncommitted record
    other = SQLiteStorage(path)  # a reader of the committed state: tile 0 is still partial
    try:
        assert other.tiles([(0, 0)])[(0, 0)] == b"".join(merkle.leaf_hash(leaf(i)) for i in range(200))
    finally:
        other.close()
    grow(log, 200, 600, salt=b"kept")
    assert marks(st) == (0, 2)
    log.close()
    st.close()
    st, log = reopen(path, signer)
    try:
        want = [merkle.leaf_hash(leaf(i)) for i in range(200)] + [merkle.leaf_hash(leaf(i, b"kept")) for i in range(200, 256)]
        assert st.tiles([(0, 0)])[(0, 0)][:TILE_BYTES] == b"".join(want)
        check_proofs(log)
    finally:
        log.close()
        st.close()


def to_schema_5(path):
    """What schema 5 wrote: every tile a row of ``tiles``, no tile file, no marks."""
    db = sqlite3.connect(path)
    l0_from, upto = (int(v) for (v,) in db.execute("SELECT value FROM meta WHERE key IN ('l0_from', 'l0_upto') ORDER BY key"))
    with open(str(path) + "-tiles", "rb") as f:
        for n in range(l0_from, upto):
            f.seek(n * sqlite_tiles.REC)
            rec = f.read(RECORD_BYTES)
            db.execute("INSERT INTO tiles (id, hashes, interior) VALUES (?, ?, ?)", (n * 64, rec[:TILE_BYTES], rec[TILE_BYTES:]))
    db.execute("DELETE FROM meta WHERE key IN ('l0_from', 'l0_upto')")
    db.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    os.unlink(str(path) + "-tiles")


def test_schema_5_file_migrated_then_tiles_copied(tmp_path, signer):
    path = tmp_path / "l.sqlite"
    st, log = reopen(path, signer)
    grow(log, 0, 1000)
    root = log.root(1000)
    log.close()
    st.close()
    to_schema_5(path)
    st, log = reopen(path, signer)
    try:
        assert st._writer.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
        assert marks(st) == (3, 3) and level0_rows(st) == [0, 1, 2, 3]
        assert log.root(1000) == root
        check_proofs(log)
        grow(log, 1000, 1600)  # tiles 3..5 complete: into the file
        assert marks(st) == (3, 6) and level0_rows(st) == [0, 1, 2, 6]
        check_proofs(log, seed=5)
        assert sqlite_tiles.copy_table_tiles(st, chunk=2) == 3
        assert marks(st) == (0, 6)
        with open(str(path) + "-tiles", "rb") as f:
            for n in range(6):
                f.seek(n * sqlite_tiles.REC)
                assert sqlite_tiles.unpack(n, f.read(sqlite_tiles.REC)) is not None
    finally:
        log.close()
        st.close()
    st, log = reopen(path, signer)
    try:
        check_proofs(log, seed=6)
    finally:
        log.close()
        st.close()


def test_copy_tiles_command(tmp_path, signer):
    """``python -m tlog.storage.copy_tiles DB`` moves a migrated log's tile rows into the file."""
    import subprocess
    import sys

    path = tmp_path / "l.sqlite"
    st, log = reopen(path, signer)
    grow(log, 0, 800)
    root = log.root(800)
    log.close()
    st.close()
    to_schema_5(path)
    st, log = reopen(path, signer)  # migrated: the three full tiles stay rows
    assert marks(st) == (3, 3)
    log.close()
    st.close()
    out = subprocess.run([sys.executable, "-m", "tlog.storage.copy_tiles", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("3 tiles copied")
    st, log = reopen(path, signer)
    try:
        assert marks(st) == (0, 3)
        assert log.root(800) == root
        check_proofs(log, seed=7)
    finally:
        log.close()
        st.close()
