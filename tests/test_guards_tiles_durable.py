"""Durability and snapshot guards of the level-0 tile file in a running SQLite log
(tlog/storage/sqlite_tiles.py, issue 16): the tile file's name and a completed tile's record are
synced while the commit that acknowledges the entries is still to come; a copy of a migrated
log's tile rows syncs its records before the mark moves, without holding the log's writer lock;
a reader inside its own transaction gets that snapshot's tiles. (The unit-level guards of the
file are in tests/test_guards_sqlite_tiles.py.)"""

from __future__ import annotations

import os
import sqlite3
from hashlib import sha256

import pytest

from tests.test_sqlite_tiles import to_schema_5
from tests.tlog_fixtures import ORIGIN
from tlog.log import Log
from tlog.storage import sqlite_tiles
from tlog.storage.sqlite import SQLiteStorage
from tlog.tree import TILE_BYTES
from verifier import merkle
from verifier.note import Signer

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")


def leaf(i: int) -> bytes:
    return sha256(b"tiles-guard-%d" % i).digest()


def grow(log, a, b, step=256):
    for s in range(a, b, step):
        log.append([(leaf(i), b"x", ()) for i in range(s, min(b, s + step))])


def committed_marks(path) -> tuple[int, int]:
    """The marks as committed (a fresh connection: what a crash would leave)."""
    db = sqlite3.connect(path)
    try:
        return sqlite_tiles.read_marks(db)
    finally:
        db.close()


def spy_syncs(monkeypatch, db_path, on_call=None):
    """Record every os.fsync / os.fdatasync as (call, path, committed marks at that moment)."""
    calls = []
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name)

        def spy(fd, _real=real, _name=name):
            p = os.path.realpath(os.readlink(f"/proc/self/fd/{fd}"))
            calls.append((_name, p, committed_marks(db_path)) + ((on_call(),) if on_call else ()))
            return _real(fd)

        monkeypatch.setattr(os, name, spy)
    return calls


@pytest.fixture(scope="module")
def signer():
    return Signer.generate(ORIGIN)


def open_log(path, signer):
    st = SQLiteStorage(path)
    return st, Log.open(st, origin=ORIGIN, note_signer=signer)


# -- durability before the acknowledgement -------------------------------------------------------

def test_tile_file_name_and_record_durable_before_the_entry_is_acknowledged(tmp_path, signer, monkeypatch):
    """Every acknowledgement follows the fsync of its entry: a batch that completes a tile
    returns only after the new tile file's directory entry and the record were synced, and both
    syncs happen before the commit that lists the record (the committed marks, read by a fresh
    connection at each sync, have not moved yet)."""
    path = str(tmp_path / "l.sqlite")
    tiles = os.path.realpath(path + "-tiles")
    st, log = open_log(path, signer)
    try:
        grow(log, 0, 200)
        assert not os.path.exists(tiles)
        calls = spy_syncs(monkeypatch, path)
        log.append([(leaf(i), b"x", ()) for i in range(200, 300)])  # completes tile 0: the file is created
        assert committed_marks(path) == (0, 1)  # acknowledged: committed
        mine = [c for c in calls if c[1] in (tiles, os.path.realpath(str(tmp_path)))]
        # the directory (the new file's name), then the record, both while the commit that lists
        # the record was still to come
        assert mine == [("fsync", os.path.realpath(str(tmp_path)), (0, 0)), ("fdatasync", tiles, (0, 0))]
        calls.clear()
        grow(log, 300, 512)  # completes tile 1: the file exists, its record is synced before the commit
        assert [c for c in calls if c[1] == tiles] == [("fdatasync", tiles, (0, 1))]
        assert committed_marks(path) == (0, 2)
    finally:
        log.close()
        st.close()


def test_tiles_read_inside_a_callers_open_transaction(tmp_path, signer):
    """A reader whose connection is inside a transaction gets the tiles of that snapshot (not
    an error for a nested BEGIN, not a newer state)."""
    path = str(tmp_path / "l.sqlite")
    st, log = open_log(path, signer)
    other = SQLiteStorage(path)
    try:
        grow(log, 0, 200)
        db = other._reader()
        partial = b"".join(merkle.leaf_hash(leaf(i)) for i in range(200))
        with other._snapshot(db):
            db.execute("SELECT size FROM state").fetchone()  # the snapshot starts here
            grow(log, 200, 300)  # tile 0 completes meanwhile: its row leaves for the file
            assert committed_marks(path) == (0, 1)
            assert other.tiles([(0, 0)]) == {(0, 0): partial}
            assert db.in_transaction
        assert other.tiles([(0, 0)])[(0, 0)][:TILE_BYTES] == b"".join(merkle.leaf_hash(leaf(i)) for i in range(256))
    finally:
        other.close()
        log.close()
        st.close()


def test_copied_records_synced_before_the_mark_moves_and_outside_the_writer_lock(tmp_path, signer, monkeypatch):
    """copy_table_tiles makes its records durable before the transaction that moves l0_from,
    and does that (a long fdatasync: up to gigabytes of records) without holding the log's
    writer lock, so the log's appends go on meanwhile."""
    path = str(tmp_path / "l.sqlite")
    st, log = open_log(path, signer)
    try:
        grow(log, 0, 800)
    finally:
        log.close()
        st.close()
    to_schema_5(path)  # three full tiles as rows of a schema-5 file
    tiles = os.path.realpath(path + "-tiles")
    st = SQLiteStorage(path)
    try:
        calls = spy_syncs(monkeypatch, path, on_call=st._writer_lock.locked)
        assert sqlite_tiles.copy_table_tiles(st) == 3
        syncs = [c for c in calls if c[0] == "fdatasync" and c[1] == tiles]
        assert syncs and syncs[0][2:] == ((3, 3), False)  # marks not yet moved, writer lock free
        assert committed_marks(path) == (0, 3)
    finally:
        st.close()
