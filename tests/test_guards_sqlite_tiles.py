"""Guards of tlog/storage/sqlite_tiles.py (the SQLite log's tile file) found by the discovery
mutation run (issue 16): record checks, durability of the file, the reader's no-SQL fast path,
and the copy of a migrated log's tile rows."""

from __future__ import annotations

import sqlite3
from hashlib import sha256

import pytest

from tlog.storage import sqlite_tiles
from tlog.storage.sqlite import SQLiteStorage
from tlog.storage.sqlite_tiles import copy_table_tiles
from tlog.tree import RECORD_BYTES, TILE_BYTES, tile_rows


def _blob(seed: bytes) -> bytes:
    return (sha256(seed).digest() * (RECORD_BYTES // 32 + 1))[:RECORD_BYTES]


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
