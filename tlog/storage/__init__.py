"""Storage backends for the log core: SQLite (default) and PostgreSQL."""

from __future__ import annotations

import os

from .base import LeaseLost, PendingRow, Storage, StorageUnavailable, TreeHead, Txn

__all__ = ["Storage", "StorageUnavailable", "LeaseLost", "Txn", "TreeHead", "PendingRow", "open_storage"]


def open_storage(url_or_path: str | os.PathLike, **kw) -> Storage:
    """A path or ``sqlite:///path`` -> SQLite; ``postgresql://...`` / ``postgres://...`` -> PostgreSQL.

    Extra keyword arguments go to the backend's constructor.
    """
    s = os.fspath(url_or_path)
    if not s:
        raise ValueError("empty storage URL")
    if s.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStorage

        return PostgresStorage(s, **kw)
    if s.startswith("sqlite://"):
        path = s[len("sqlite://"):]
        if not path.startswith("/"):
            raise ValueError(f"sqlite URL must be sqlite:///absolute/path, got {s!r}")
        s = path
    elif "://" in s:
        raise ValueError(f"unsupported storage URL scheme: {s!r}")
    from .sqlite import SQLiteStorage

    return SQLiteStorage(s, **kw)
