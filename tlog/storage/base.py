"""The storage interface of the log core: one small read side, one write transaction.

A backend stores five things (tlog.storage.sqlite and tlog.storage.postgres share the shape):

- ``tiles``: (level, index) -> blob of up to 256 hashes (32 bytes each), partial tiles updated
  in place (the blob only ever grows: a prefix is never rewritten); a full tile also keeps its
  interior rows 1..7 (254 hashes) in a second column. The Txn/Storage tile methods exchange
  "records": the hashes, followed by the interior rows when the tile is full
  (tlog.tree.record_rows); ``Log.tile`` serves only the hashes;
- ``entries``: index, leaf input (32 bytes, unique), statement data;
- ``attrs``: (key, value, index) lookup rows;
- ``heads``: size, root, signed checkpoint note, ``extra`` (opaque head-signer bytes), time;
- ``state``: one row (size, root) - the integrated tree; the lock point for integration;
- ``pending``: submissions accepted but not integrated yet (durable queue; see tlog.log).

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

__all__ = ["TreeHead", "PendingRow", "Storage", "Txn", "encode_attrs", "decode_attrs"]


@dataclass(frozen=True)
class TreeHead:
    size: int
    root: bytes
    checkpoint: str
    extra: bytes | None
    timestamp: float


@dataclass(frozen=True)
class PendingRow:
    seq: int
    leaf: bytes
    data: bytes
    attrs: tuple[tuple[str, str], ...]


def encode_attrs(attrs: Sequence[tuple[str, str]]) -> str:
    return json.dumps([[k, v] for k, v in attrs], separators=(",", ":"))


def decode_attrs(s: str | None) -> tuple[tuple[str, str], ...]:
    if not s:
        return ()
    return tuple((k, v) for k, v in json.loads(s))


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
    def existing(self, leaves: Sequence[bytes]) -> dict[bytes, int]:
        """Which of ``leaves`` are in the log already: leaf -> index."""

    @abstractmethod
    def insert_entries(self, start: int, leaves: Sequence[bytes], datas: Sequence[bytes]) -> None:
        """Insert entries start, start+1, ... whose leaves are known not to be in the log."""

    @abstractmethod
    def try_insert_entries(self, start: int, leaves: Sequence[bytes], datas: Sequence[bytes]) -> bool:
        """Optimistic insert (the hot path: no lookup first): insert and return True, or, if
        some leaf (or, on SQLite, its dedup key) is in the log already, insert nothing and
        return False (the caller then dedups with :meth:`existing`)."""

    @abstractmethod
    def insert_attrs(self, rows: Sequence[tuple[str, str, int]]) -> None: ...

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
    def lookup(self, key: str, value: str) -> list[int]: ...

    @abstractmethod
    def head(self, size: int) -> TreeHead | None: ...

    @abstractmethod
    def latest_head(self) -> TreeHead | None: ...

    @abstractmethod
    def first_head_after(self, index: int) -> int | None:
        """The smallest stored head size > index (the first head containing entry ``index``)."""

    @abstractmethod
    def has_pending(self) -> bool: ...

    @abstractmethod
    def pending_contains(self, leaf: bytes) -> bool: ...

    @abstractmethod
    def enqueue(self, rows: Iterable[tuple[bytes, bytes, Sequence[tuple[str, str]]]]) -> None:
        """Durably add submissions to the pending queue (one transaction; leaves already
        queued are ignored). Does not take the integration lock's turn on PostgreSQL."""

    @abstractmethod
    def bytes_used(self) -> int:
        """Bytes of storage the log occupies (files or relations)."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
