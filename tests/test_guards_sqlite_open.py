"""A refused or failed open of the SQLite backend changes nothing and holds no lock (issue 16)."""

from __future__ import annotations

import sqlite3

import pytest

from tlog.storage import druns
from tlog.storage.sqlite import SQLiteStorage


def _unlocked_tables(path) -> set[str]:
    db = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")  # raises "database is locked" if the failed open still holds it
        db.execute("ROLLBACK")
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()


def test_a_failed_open_rolls_back_its_schema(tmp_path, monkeypatch):
    def boom(*a, **kw):
        raise OSError("disk trouble")

    monkeypatch.setattr(druns, "remove_unlisted", boom)
    path = tmp_path / "log.sqlite"
    with pytest.raises(OSError, match="disk trouble"):
        SQLiteStorage(path)
    assert _unlocked_tables(path) == set()


def test_an_unsupported_schema_is_refused_unchanged(tmp_path):
    path = tmp_path / "log.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('schema_version', '2'), ('a', 'b'), ('c', 'd')")
    db.close()
    with pytest.raises(RuntimeError, match="unsupported"):
        SQLiteStorage(path)
    assert _unlocked_tables(path) == {"meta"}


def test_a_migration_failing_mid_read_releases_the_file(tmp_path):
    """A schema-4 migration that fails while its read of ``dmain`` is still open (the exception,
    and with it the open cursor, kept alive by the caller) must still roll back and unlock the file:
    closing a connection with a statement in use leaves it open (a zombie) until the statement is
    finalized, so only the explicit ROLLBACK releases the write lock."""
    path = tmp_path / "log.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('schema_version', '4'), ('dedup_merged', '70000')")
    db.execute("CREATE TABLE dmain (k INTEGER PRIMARY KEY, idx INTEGER NOT NULL)")
    db.execute("BEGIN")
    # more rows than one fetch reads; the first one's index cannot be stored: the read stops mid-way
    db.executemany("INSERT INTO dmain VALUES (?, ?)", [(k, -1 if k == 0 else k) for k in range(70000)])
    db.execute("COMMIT")
    db.close()
    with pytest.raises(OverflowError) as failed:
        SQLiteStorage(path)
    assert failed.traceback  # the failed open's frames (and its cursor) are still alive here
    assert _unlocked_tables(path) == {"meta", "dmain"}
