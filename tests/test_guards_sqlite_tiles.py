"""Guards of tlog/storage/sqlite_tiles.py (the SQLite log's tile file) found by the discovery
mutation run (issue 16): record checks, durability of the file, the reader's no-SQL fast path,
and the copy of a migrated log's tile rows."""

from __future__ import annotations

import os
import sqlite3
import stat
from hashlib import sha256

import pytest

from tests.tlog_fixtures import ORIGIN
from tlog.log import Log
from tlog.storage import sqlite_tiles
from tlog.storage.sqlite import SQLiteStorage
from tlog.storage.sqlite_tiles import MAGIC, REC, _TAIL, L0File, copy_table_tiles, pack, record_from_leaves, unpack
from tlog.tree import RECORD_BYTES, TILE_BYTES, tile_rows
from verifier.note import Signer


def _blob(seed: bytes) -> bytes:
    return (sha256(seed).digest() * (RECORD_BYTES // 32 + 1))[:RECORD_BYTES]


def test_a_record_must_carry_the_magic_and_its_own_index():
    blob = _blob(b"t")
    assert unpack(7, pack(7, blob)) == blob and unpack(8, pack(7, blob)) is None
    digest = sha256(blob + (7).to_bytes(8, "big")).digest()
    other_magic = blob + _TAIL.pack(b"tlogXXXX", 7, digest)
    assert len(other_magic) == REC and unpack(7, other_magic) is None
    # the digest of tile 7 but another index in the tail: not tile 7's record
    assert unpack(7, blob + _TAIL.pack(MAGIC, 9, digest)) is None


def test_a_tile_record_needs_exactly_256_leaves():
    leaves = b"".join(sha256(b"%d" % i).digest() for i in range(256))
    assert len(record_from_leaves(leaves)) == RECORD_BYTES
    for n in (255, 257, 128):
        with pytest.raises(ValueError, match="256 leaves"):
            record_from_leaves(b"".join(sha256(b"%d" % i).digest() for i in range(n)))


def test_only_full_records_are_written(tmp_path):
    f = L0File(str(tmp_path / "x-tiles"))
    try:
        for blob in (b"", _blob(b"a")[:TILE_BYTES], _blob(b"a") + b"x"):
            with pytest.raises(ValueError, match="only full tiles"):
                f.write(0, blob)
        assert not os.path.exists(f.path)  # refused before the file is even created
    finally:
        f.close()


def test_the_new_file_and_its_records_are_made_durable(tmp_path, monkeypatch):
    """Creating the file fsyncs its directory (the name survives a power loss); sync() fdatasyncs
    the records written (and only when there are some)."""
    fsynced, datasynced = [], []
    real_fsync, real_fdatasync = os.fsync, os.fdatasync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsynced.append(stat.S_ISDIR(os.fstat(fd).st_mode)), real_fsync(fd))[1])
    monkeypatch.setattr(os, "fdatasync", lambda fd: (datasynced.append(fd), real_fdatasync(fd))[1])
    f = L0File(str(tmp_path / "x-tiles"))
    try:
        f.write(0, _blob(b"a"))
        assert fsynced == [True]
        assert datasynced == []
        f.sync()
        assert datasynced == [f._fd]
        f.sync()  # nothing new
        assert datasynced == [f._fd]
        f.close()
        f.write(1, _blob(b"b"))  # reopened: the file exists, its name is durable already
        assert fsynced == [True]
    finally:
        f.close()


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise on this platform")
def test_readahead_hints_only_for_several_records_and_only_where_supported(tmp_path, monkeypatch):
    f = L0File(str(tmp_path / "x-tiles"))
    try:
        f.write(0, _blob(b"a"))
        f.write(1, _blob(b"b"))
        hints = []
        real = os.posix_fadvise
        monkeypatch.setattr(os, "posix_fadvise", lambda fd, off, n, adv: (hints.append((off, adv)), real(fd, off, n, adv))[1])
        assert f.read([1]) == {1: _blob(b"b")} and hints == []  # one record: one pread, no hint
        assert f.read([0, 1]) == {0: _blob(b"a"), 1: _blob(b"b")}
        assert hints == [(0, os.POSIX_FADV_WILLNEED), (REC, os.POSIX_FADV_WILLNEED)]
        monkeypatch.delattr(os, "posix_fadvise")  # a platform without it (macOS)
        assert f.read([0, 1]) == {0: _blob(b"a"), 1: _blob(b"b")}
    finally:
        f.close()


# -- reads through the storage ---------------------------------------------------------------

@pytest.fixture
def log256(tmp_path):
    st = SQLiteStorage(tmp_path / "log.sqlite")
    log = Log.open(st, origin=ORIGIN, note_signer=Signer.generate(ORIGIN), sequencer=False)
    log.append([(sha256(b"tile-%d" % i).digest(), b"x", ()) for i in range(260)])
    yield st
    log.close()
    st.close()


def test_full_tiles_below_the_known_marks_are_read_without_sql(log256):
    st = log256
    keys = [(0, 0), (1, 5)]  # a full level-0 tile in the file and a (missing) level-1 tile
    first = st.tiles(keys)  # learns the committed marks
    assert sqlite_tiles.read_marks(st._writer) == (0, 1) and st._l0.marks == (0, 1)
    sql = []
    st._reader().set_trace_callback(sql.append)
    try:
        assert st.tiles([(0, 0)]) == {(0, 0): first[(0, 0)]} and sql == []
        assert st.tiles(keys) == first
        assert len(sql) == 1 and "FROM tiles" in sql[0]  # the level-1 row only: no snapshot, no marks
    finally:
        st._reader().set_trace_callback(None)


def test_tiles_read_inside_an_open_read_transaction(log256):
    st = log256
    db = st._reader()
    with st._snapshot(db):  # a caller's snapshot: the tiles are read in it, not in a new one
        got = st.tiles([(0, 0), (0, 1)])
    assert len(got[(0, 0)]) == RECORD_BYTES and len(got[(0, 1)]) == 4 * 32


# -- copying a migrated log's tile rows into the file ----------------------------------------

def _migrated(tmp_path, rows: dict[int, tuple[bytes, bytes | None]], l0_from: int) -> SQLiteStorage:
    """A log whose level-0 tiles below l0_from are still table rows (a migrated schema-5 file)."""
    st = SQLiteStorage(tmp_path / "log.sqlite")
    db = sqlite3.connect(st.path, isolation_level=None)
    db.executemany("INSERT INTO tiles (id, hashes, interior) VALUES (?, ?, ?)",
                   [(n * 64, h, i) for n, (h, i) in rows.items()])
    sqlite_tiles.set_marks(db, l0_from, l0_from)
    db.close()
    return st


def test_copy_moves_full_and_bare_rows(tmp_path):
    full, bare = _blob(b"full"), _blob(b"bare")[:TILE_BYTES]
    st = _migrated(tmp_path, {0: (full[:TILE_BYTES], full[TILE_BYTES:]), 1: (bare, None), 2: (full[:TILE_BYTES], full[TILE_BYTES:])}, 3)
    try:
        assert copy_table_tiles(st, chunk=2) == 3
        assert sqlite_tiles.read_marks(st._writer) == (0, 3)
        assert st._l0.read([0, 1, 2]) == {0: full, 1: b"".join(tile_rows(bare)[:8]), 2: full}
    finally:
        st.close()


@pytest.mark.parametrize("rows", [{0: (_blob(b"a")[:TILE_BYTES], None)},  # tile 1 missing
                                  {0: (_blob(b"a")[:TILE_BYTES], None), 1: (_blob(b"b")[:TILE_BYTES - 32], None)}])
def test_copy_refuses_a_missing_or_partial_tile(tmp_path, rows):
    st = _migrated(tmp_path, rows, 2)
    try:
        with pytest.raises(LookupError, match="tile 0/1 is not a full tile"):
            copy_table_tiles(st)
        assert sqlite_tiles.read_marks(st._writer) == (2, 2)
    finally:
        st.close()


def test_copy_refuses_when_the_mark_moved_meanwhile(tmp_path):
    st = _migrated(tmp_path, {n: (_blob(b"%d" % n)[:TILE_BYTES], None) for n in range(4)}, 4)
    try:
        def moved(done, total):
            db = sqlite3.connect(st.path, isolation_level=None)
            sqlite_tiles.set_marks(db, 2, 4)  # another copy finished part of the work first
            db.close()

        with pytest.raises(RuntimeError, match="moved from 4 to 2"):
            copy_table_tiles(st, progress=moved)
        assert sqlite_tiles.read_marks(st._writer) == (2, 4)
    finally:
        st.close()
