"""The storage interface of the log core: one small read side, one write transaction.

A backend stores these tables (tlog.storage.sqlite and tlog.storage.postgres share the shape):

- ``tiles``: (level, index) -> blob of up to 256 hashes (32 bytes each), partial tiles updated
  in place (the blob only ever grows: a prefix is never rewritten); a full tile also keeps its
  interior rows 1..7 (254 hashes) in a second column. The Txn/Storage tile methods exchange
  "records": the hashes, followed by the interior rows when the tile is full
  (tlog.tree.record_rows); ``Log.tile`` serves only the hashes;
- ``entries``: index -> leaf input (32 bytes, found by :meth:`Storage.find`), dedup key (32
  bytes, unique: dedup, found by :meth:`Storage.find_key`; the log service's key is the digest
  of the statement's signed content) and statement data (SQLite keeps them per run of
  consecutive entries inside one 256-entry bundle, PostgreSQL one row each);
- ``attrs``: (key, value, index) lookup rows;
- ``heads``: size, root, signed checkpoint note, ``extra`` (opaque head-signer bytes), time;
- ``state``: one row (size, root) - the integrated tree; the lock point for integration;
- ``pending``: submissions accepted but not integrated yet (durable queue; see tlog.log);
- ``aliases``: leaf -> index of queued submissions deduplicated onto an entry with another leaf
  (a re-encoding of a claim that was pending; tlog.claims), so their entry id resolves.

All integration happens inside :meth:`Storage.integration`, a transaction that holds the
log-wide writer lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: SELECT ... FOR UPDATE on the state
row), so that exactly one process integrates at a time; the others block there in turn.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Iterable, Sequence

__all__ = ["TreeHead", "PendingRow", "Storage", "Txn", "StorageUnavailable", "LeaseLost", "encode_attrs",
           "own_key", "pending_values"]


class StorageUnavailable(Exception):
    """The database cannot be reached, or an operation ran past its time limit (connect,
    statement, lock). Nothing was committed by the failed operation, except that a commit whose
    answer was lost may have committed (the log reloads its state from storage before the next
    integration, and a retried registration finds its entry again by dedup). The HTTP layer
    answers 503 with Retry-After."""


class LeaseLost(StorageUnavailable):
    """The integrator's lease expired or was taken over: its transaction was rolled back."""


@dataclass(frozen=True)
class TreeHead:
    size: int
    root: bytes
    checkpoint: str
    extra: bytes | None
    timestamp: float


@dataclass(frozen=True)
class PendingRow:
    """A row of the durable queue. ``data`` None (PostgreSQL): the statement bytes and the
    attributes (then ``()``) stay in the database; the transaction's ``insert_entries`` moves
    them when given None as the row's data."""

    seq: int
    leaf: bytes
    data: bytes | None
    attrs: tuple[tuple[str, str], ...]
    key: bytes  # the dedup key (the leaf when none was given)


def encode_attrs(attrs: Sequence[tuple[str, str]]) -> str:
    return json.dumps([[k, v] for k, v in attrs], separators=(",", ":"))


def own_key(row) -> bytes | None:
    """A submission ``(leaf, data, attrs[, dedup key])``'s dedup key as the queue stores it: None
    (NULL) when it has none or it is the leaf itself; both backends read NULL back as the leaf."""
    return row[3] if len(row) > 3 and row[3] != row[0] else None


def pending_values(rows, now: float) -> list[tuple]:
    """Rows for the pending table: (leaf, data, attrs JSON, ts, dedup key or None)."""
    return [(r[0], r[1], encode_attrs(r[2]), now, own_key(r)) for r in rows]


class Txn(ABC):
    """An integration transaction (lock held). Reads see the transaction's own writes."""

    @abstractmethod
    def state(self) -> tuple[int, bytes] | None: ...

    @abstractmethod
    def set_state(self, size: int, root: bytes) -> None: ...

    @abstractmethod
    def tiles(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]: ...

    @abstractmethod
    def put_tiles(self, tiles: dict[tuple[int, int], bytes]) -> None: ...

    @abstractmethod
    def pending(self, limit: int) -> list[PendingRow]: ...

    @abstractmethod
    def delete_pending(self, seqs: Sequence[int]) -> None: ...

    @abstractmethod
    def existing(self, keys: Sequence[bytes]) -> dict[bytes, int]:
        """Which of the dedup ``keys`` are in the log already: key -> index."""

    @abstractmethod
    def insert_entries(self, start: int, leaves: Sequence[bytes], datas: Sequence[bytes],
                       keys: Sequence[bytes]) -> None:
        """Insert entries start, start+1, ... whose dedup keys are known not to be in the log."""

    @abstractmethod
    def try_insert_entries(self, start: int, leaves: Sequence[bytes], datas: Sequence[bytes],
                           keys: Sequence[bytes]) -> bool:
        """Optimistic insert (the hot path: no lookup first): insert and return True, or, if
        some key or leaf (or, on SQLite, its 8-byte prefix) is in the log already, insert
        nothing and return False (the caller then dedups with :meth:`existing`)."""

    @abstractmethod
    def insert_attrs(self, rows: Sequence[tuple[str, str, int]]) -> None: ...

    def attrs_held(self, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (key, value) attribute pairs some entry holds (in this transaction's view)."""
        raise NotImplementedError

    def queued_attrs(self, leaves: Sequence[bytes], keys: Iterable[str]) -> dict[bytes, list[tuple[str, str]]]:
        """The attributes named ``keys`` of queue rows taken by :meth:`pending` without their
        attributes (data None): leaf -> [(key, value)]."""
        return {}

    def leaf_at(self, index: int) -> bytes | None:
        """The leaf input of entry ``index`` (in this transaction's view)."""
        raise NotImplementedError

    def insert_aliases(self, rows: Sequence[tuple[bytes, int]]) -> None:
        """Record leaves (of queued submissions deduplicated onto another entry) -> entry index."""
        raise NotImplementedError

    @abstractmethod
    def latest_head(self) -> TreeHead | None: ...

    @abstractmethod
    def put_head(self, head: TreeHead) -> None: ...

    @abstractmethod
    def get_meta(self, key: str) -> str | None: ...

    @abstractmethod
    def set_meta(self, key: str, value: str) -> None: ...


class Storage(ABC):
    """Read side: thread-safe, sees committed data only."""

    url: str

    @abstractmethod
    def integration(self) -> AbstractContextManager[Txn]:
        """Begin a write transaction holding the writer lock; commit on normal exit (durably:
        the commit returns only after it is on stable storage), roll back on exception."""

    @abstractmethod
    def state(self) -> tuple[int, bytes] | None: ...

    @abstractmethod
    def tiles(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]: ...

    def tile(self, level: int, index: int) -> bytes | None:
        return self.tiles([(level, index)]).get((level, index))

    @abstractmethod
    def leaf_inputs(self, start: int, end: int) -> list[bytes]:
        """Leaf inputs of entries [start, end) in index order."""

    @abstractmethod
    def entry_data(self, index: int) -> bytes | None: ...

    @abstractmethod
    def find(self, leaf: bytes) -> int | None: ...

    @abstractmethod
    def find_key(self, key: bytes) -> int | None:
        """Index of the entry whose dedup key is ``key``."""

    def find_alias(self, leaf: bytes) -> int | None:
        """Index of the entry a queued submission with this leaf was deduplicated onto."""
        return None

    @abstractmethod
    def lookup(self, key: str, value: str) -> list[int]: ...

    @abstractmethod
    def head(self, size: int) -> TreeHead | None: ...

    @abstractmethod
    def latest_head(self) -> TreeHead | None: ...

    @abstractmethod
    def first_head_after(self, index: int) -> int | None:
        """The smallest stored head size > index (the first head containing entry ``index``)."""

    @abstractmethod
    def meta(self, key: str) -> str | None:
        """A committed row of the log-wide ``meta`` table (tlog.logstate), read without a lock."""

    @abstractmethod
    def has_pending(self) -> bool: ...

    @abstractmethod
    def pending_contains(self, leaf: bytes) -> bool: ...

    @abstractmethod
    def enqueue(self, rows: Iterable[tuple]) -> None:
        """Durably add submissions ``(leaf, data, attrs[, key])`` to the pending queue (one
        transaction; leaves already queued are ignored). Does not take the integration lock's turn on PostgreSQL."""

    @abstractmethod
    def bytes_used(self) -> int:
        """Bytes of storage the log occupies (files or relations)."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


HEAD_COLS = "size, root, checkpoint, extra, ts"


def head_from_row(row) -> TreeHead | None:
    """A ``heads`` row (columns :data:`HEAD_COLS`) as a TreeHead."""
    if row is None:
        return None
    return TreeHead(row[0], bytes(row[1]), row[2], None if row[3] is None else bytes(row[3]), row[4])


class SQLReads:
    """The read queries both SQL backends share, written once; ``_P`` is the driver's
    parameter placeholder and ``_reader()`` the connection reads go through."""

    _P = "?"

    def _one(self, sql: str, params: tuple = ()):
        return self._reader().execute(sql.replace("?", self._P), params).fetchone()

    def state(self):
        r = self._one("SELECT size, root FROM state WHERE id = 1")
        return None if r is None else (r[0], bytes(r[1]))

    def leaf_inputs(self, start, end):
        return [bytes(r[0]) for r in self._reader().execute(
            "SELECT leaf FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx".replace("?", self._P), (start, end))]

    def entry_data(self, index):
        r = self._one("SELECT data FROM entries WHERE idx = ?", (index,))
        return None if r is None else bytes(r[0])

    def lookup(self, key, value):
        return [r[0] for r in self._reader().execute(
            "SELECT idx FROM attrs WHERE key = ? AND value = ? ORDER BY idx".replace("?", self._P), (key, value))]

    def head(self, size):
        return head_from_row(self._one(f"SELECT {HEAD_COLS} FROM heads WHERE size = ?", (size,)))

    def latest_head(self):
        return head_from_row(self._one(f"SELECT {HEAD_COLS} FROM heads ORDER BY size DESC LIMIT 1"))

    def first_head_after(self, index):
        r = self._one("SELECT size FROM heads WHERE size > ? ORDER BY size LIMIT 1", (index,))
        return None if r is None else r[0]

    def has_pending(self):
        return bool(self._one("SELECT EXISTS (SELECT 1 FROM pending)")[0])

    def pending_contains(self, leaf):
        return self._one("SELECT 1 FROM pending WHERE leaf = ?", (leaf,)) is not None

    def meta(self, key):
        r = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if r is None else r[0]

    def find_alias(self, leaf):
        r = self._one("SELECT idx FROM aliases WHERE leaf = ?", (leaf,))
        return None if r is None else r[0]


class SQLTxn:
    """The integration-transaction statements both SQL backends share, written once;
    ``_P`` is the driver's parameter placeholder and ``_conn()`` the transaction's connection."""

    _P = "?"

    def _x(self, sql: str, params: tuple = ()):
        return self._conn().execute(sql.replace("?", self._P), params)

    def state(self):
        r = self._x("SELECT size, root FROM state WHERE id = 1").fetchone()
        return None if r is None else (r[0], bytes(r[1]))

    def set_state(self, size, root):
        self._x("INSERT INTO state (id, size, root) VALUES (1, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET size = excluded.size, root = excluded.root", (size, root))

    def pending(self, limit):
        rows = self._x("SELECT seq, leaf, data, attrs, dkey FROM pending ORDER BY seq LIMIT ?", (limit,)).fetchall()
        if not rows:
            return []
        # the attributes of all rows decoded in one JSON parse (one call per row cost more
        # than the rest of reading the queue)
        attrs = json.loads("[" + ",".join([r[3] or "[]" for r in rows]) + "]")
        return [PendingRow(r[0], bytes(r[1]), bytes(r[2]), tuple(map(tuple, a)), bytes(r[4] if r[4] is not None else r[1]))
                for r, a in zip(rows, attrs)]

    def latest_head(self):
        return head_from_row(self._x(f"SELECT {HEAD_COLS} FROM heads ORDER BY size DESC LIMIT 1").fetchone())

    def put_head(self, head):
        self._x("INSERT INTO heads (size, root, checkpoint, extra, ts) VALUES (?, ?, ?, ?, ?)",
                (head.size, head.root, head.checkpoint, head.extra, head.timestamp))

    def get_meta(self, key):
        r = self._x("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if r is None else r[0]

    def set_meta(self, key, value):
        self._x("INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def attrs_held(self, pairs):
        return {(k, v) for k, v in pairs
                if self._x("SELECT 1 FROM attrs WHERE key = ? AND value = ? LIMIT 1", (k, v)).fetchone()}

    def insert_aliases(self, rows):
        for leaf, idx in rows:
            self._x("INSERT INTO aliases (leaf, idx) VALUES (?, ?) ON CONFLICT (leaf) DO NOTHING", (leaf, idx))
