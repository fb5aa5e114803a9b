"""The SQLite dedup index's recent tier and lookups (tlog.storage.sqlite, schema 5): the
8-byte keys, reading leaf inputs and dedup keys from the entry runs, the in-memory recent tier,
and a lookup through the recent tier, the runs (tlog.storage.druns) and ``dcoll``."""

from __future__ import annotations

import struct

from . import druns

_HS = 32


def _key(leaf: bytes) -> int:
    return int.from_bytes(leaf[:8], "big", signed=True)


def _keys(blob: bytes) -> tuple[int, ...]:
    """The dedup keys of concatenated leaf inputs, in one C call."""
    return struct.unpack(">" + "q24x" * (len(blob) // _HS), blob)


def _marks(db) -> tuple[int, int]:
    """(dedup_merged, number of entries) as committed / as seen by the current transaction."""
    r = db.execute("SELECT value FROM meta WHERE key = 'dedup_merged'").fetchone()
    merged = int(r[0]) if r else 0
    r = db.execute("SELECT start, length(leaves) FROM entries ORDER BY start DESC LIMIT 1").fetchone()
    return merged, (0 if r is None else r[0] + r[1] // _HS)


LEAVES, DKEYS = "leaves", "coalesce(dkeys, leaves)"


def _leaf_blob(db, start: int, end: int, col: str = LEAVES) -> bytes:
    """Leaf inputs (``col`` DKEYS: dedup keys) of entries [start, end), concatenated."""
    if start >= end:
        return b""
    out = []
    for s, leaves in db.execute(
            f"SELECT start, {col} FROM entries WHERE start >= coalesce((SELECT max(start) FROM entries "
            "WHERE start <= ?), 0) AND start < ? ORDER BY start", (start, end)):
        a = max(start - s, 0) * _HS
        b = min(end - s, len(leaves) // _HS) * _HS
        if a < b:
            out.append(leaves[a:b])
    blob = b"".join(out)
    if len(blob) != (end - start) * _HS:
        raise LookupError(f"entries [{start}, {end}) are not all stored")
    return blob


class _Recent:
    """The recent dedup tier: key -> index of entries [merged, upto) (values not in dcoll),
    with their leaf inputs and dedup keys for the full comparison."""

    __slots__ = ("merged", "upto", "keys", "leaves", "dkeys")

    def __init__(self, merged: int) -> None:
        self.merged = self.upto = merged
        self.keys: dict[int, int] = {}
        self.leaves = bytearray()
        self.dkeys = bytearray()

    @classmethod
    def load(cls, db, merged: int, count: int) -> "_Recent":
        rec = cls(merged)
        rec.catch_up(db, count)
        return rec

    def catch_up(self, db, count: int) -> None:
        """Add the committed entries [upto, count) (read in db's transaction)."""
        if count <= self.upto:
            return
        blob = _leaf_blob(db, self.upto, count)
        kblob = _leaf_blob(db, self.upto, count, DKEYS)
        coll = {bytes(r[0]) for r in db.execute("SELECT v FROM dcoll WHERE idx >= ? AND idx < ?", (self.upto, count))}
        self.add(self.upto, blob, kblob, coll)

    def add(self, start: int, blob: bytes, kblob: bytes, skip=()) -> None:
        """Entries from ``start``: leaves ``blob``, dedup keys ``kblob``; values in ``skip``
        (recorded in dcoll) stay out of the map."""
        if start != self.upto:
            raise AssertionError("recent dedup tier out of step")
        kl = _keys(blob)
        n = len(kl)
        if skip:
            for i in range(n):
                o = i * _HS
                for b in (blob, kblob):
                    v = bytes(b[o:o + _HS])
                    if v not in skip:
                        self.keys[_key(v)] = start + i
        else:
            self.keys.update(zip(kl, range(start, start + n)))
            if kblob != blob:
                self.keys.update(zip(_keys(kblob), range(start, start + n)))
        self.leaves += blob
        self.dkeys += kblob
        self.upto = start + n

    def value(self, idx: int, col: str) -> bytes:
        o = (idx - self.merged) * _HS
        return bytes((self.leaves if col == LEAVES else self.dkeys)[o:o + _HS])

    def index_of(self, k: int, v: bytes, col: str = LEAVES) -> int | None:
        i = self.keys.get(k)
        return i if i is not None and self.value(i, col) == v else None


def _values(leaves, keys) -> tuple[bytes, bytes, list[int]]:
    """(leaf blob, key blob, the 8-byte keys of every distinct value of the entries)."""
    blob = b"".join(leaves)
    kblob = b"".join(keys)
    ks = list(_keys(blob))
    if kblob != blob:
        ks += [_key(k) for k, leaf in zip(keys, leaves) if k != leaf]
    return blob, kblob, ks


def _lookup(db, rec: _Recent, runs, v: bytes, col: str) -> int | None:
    """Index of the entry whose ``col`` value is ``v``: the recent tier, the runs, then dcoll,
    each hit compared in full with that column (read in db's transaction)."""
    k = _key(v)
    i = rec.index_of(k, v, col)
    if i is not None:
        return i
    i = druns.lookup(runs, k)
    if i is not None and _leaf_blob(db, i, i + 1, col) == v:
        return i
    r = db.execute("SELECT idx FROM dcoll WHERE v = ?", (v,)).fetchone()
    if r is not None and _leaf_blob(db, r[0], r[0] + 1, col) == v:
        return r[0]
    return None
