"""Full level-0 tiles of a SQLite log in a flat file beside it (schema 6).

Why: a full level-0 tile record (256 hashes + 254 interior hashes, 16,320 bytes) stored as a
SQLite row spans a leaf page and three overflow pages, which SQLite reads one after the other
(the leaf page first: it holds the pointer to the chain). When the log is larger than the page
cache, a cold proof waited for three random disk reads in a row (~0.3-1 ms each here: 1.5-4 ms
per proof at 10^8). Here tile ``n`` is the 16 KiB record at offset ``n * 16384`` of
``<db>-tiles``: one ``pread`` of four contiguous pages, i.e. one disk request, and no B-tree
pages to walk. Bytes written per entry drop too: a tile is written once (not into the WAL and
again at the checkpoint).

Record: the tile's 16,320 bytes, then 64 bytes: ``MAGIC``, the tile index (uint64 big-endian)
and SHA-256 of the 16,320 bytes and the index. A record that fails the check (damaged, or
missing: a data directory restored without the file) is rebuilt from the entries' leaf inputs
(511 SHA-256, ~0.5 ms) - a tile is a function of its leaves - so reads stay correct.

Durability and visibility (meta rows, in the same transaction as the entries):
``l0_from`` - tiles below it are still rows of the ``tiles`` table (a file migrated from
schema 5 until :func:`copy_table_tiles` moves them); ``l0_upto`` - tiles in [l0_from, l0_upto)
are in the file and committed. The integration writes a new full tile's record with
``pwrite``, moves ``l0_upto`` and deletes the tile's partial row in its transaction, and the
file is fsynced before that transaction commits (:meth:`L0File.sync`). A record beyond the
committed ``l0_upto`` (a batch that rolled back or crashed) is never read and is overwritten by
the batch that completes the tile. Full tiles are immutable, so a reader may keep the marks it
saw (they only grow) and read below them without any SQL.
"""

from __future__ import annotations

import os
import struct
import threading
from hashlib import sha256

from ..layout import TILE_WIDTH
from ..tree import RECORD_BYTES, TILE_BYTES, tile_rows
from .sqlite_recent import _HS, _leaf_blob

REC = 16384
MAGIC = b"tlogL0T1"
_TAIL = struct.Struct(">8sQ32s16x")
assert RECORD_BYTES + _TAIL.size == REC


def pack(n: int, blob: bytes) -> bytes:
    return blob + _TAIL.pack(MAGIC, n, sha256(blob + n.to_bytes(8, "big")).digest())


def unpack(n: int, rec: bytes) -> bytes | None:
    """The tile record if ``rec`` is tile n's intact record, else None."""
    if len(rec) != REC:
        return None
    blob = rec[:RECORD_BYTES]
    magic, idx, digest = _TAIL.unpack_from(rec, RECORD_BYTES)
    if magic != MAGIC or idx != n or sha256(blob + n.to_bytes(8, "big")).digest() != digest:
        return None
    return blob


def record_from_hashes(hashes: bytes) -> bytes:
    """A full level-0 tile's record from its 256 leaf hashes: rows 0..7 (the tile's root, row 8,
    is a node of the level above and is not stored)."""
    if len(hashes) != TILE_BYTES:
        raise ValueError("a full tile needs 256 leaves")
    return b"".join(tile_rows(hashes)[:8])


def record_from_leaves(leaf_inputs: bytes) -> bytes:
    """A full level-0 tile's record computed from its 256 leaf inputs (32 bytes each)."""
    h = sha256
    return record_from_hashes(b"".join([h(b"\x00" + leaf_inputs[i:i + 32]).digest()
                                        for i in range(0, len(leaf_inputs), 32)]))


class L0File:
    """The file of one storage handle (one descriptor, positioned reads and writes)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._lock = threading.Lock()
        self.dirty = False
        self.marks: tuple[int, int] | None = None  # committed (l0_from, l0_upto) last seen

    def _open(self) -> int:
        with self._lock:
            if self._fd is None:
                new = not os.path.exists(self.path)
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                if hasattr(os, "posix_fadvise"):  # reads are single records: no readahead
                    os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_RANDOM)
                if new:  # the file's name durable before any commit relies on it
                    dfd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
                    try:
                        os.fsync(dfd)
                    finally:
                        os.close(dfd)
            return self._fd

    def write(self, n: int, blob: bytes) -> None:
        if len(blob) != RECORD_BYTES:
            raise ValueError("only full tiles with their interior rows go to the tile file")
        rec = pack(n, blob)
        if os.pwrite(self._open(), rec, n * REC) != REC:
            raise OSError(f"short write to {self.path}")
        self.dirty = True

    def sync(self) -> None:
        """Make the records written so far durable (before the commit that lists them)."""
        if self.dirty:
            os.fdatasync(self._open())
            self.dirty = False

    def read(self, ns: list[int]) -> dict[int, bytes | None]:
        """Records of tiles ``ns`` (None for one that is missing or fails its check)."""
        fd = self._open()
        if len(ns) > 1 and hasattr(os, "posix_fadvise"):  # let the disk fetch them in parallel
            for n in ns:
                os.posix_fadvise(fd, n * REC, REC, os.POSIX_FADV_WILLNEED)
        return {n: unpack(n, os.pread(fd, REC, n * REC)) for n in ns}

    def size(self) -> int:
        try:
            return os.path.getsize(self.path)
        except FileNotFoundError:
            return 0

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _tid(level: int, index: int) -> int:
    return index * 64 + level


def _read_tiles(db, keys, st):
    """Tiles for a reader connection (outside an integration). Level-0 tiles below the marks
    it saw last are read from the tile file with no SQL (full tiles never change); otherwise
    the marks and the rows are read in one snapshot (a tile completed by a commit in between
    leaves the table for the file)."""
    keys = list(keys)
    m = st._l0.marks
    if m is not None and all(l or m[0] <= n < m[1] for l, n in keys):
        return _read_tiles_at(db, keys, st, m)
    if db.in_transaction:
        return _read_tiles_at(db, keys, st, read_marks(db))
    with st._snapshot(db):
        m = read_marks(db)
        out = _read_tiles_at(db, keys, st, m)
    st._l0.marks = m  # committed: valid for good (rows below l0_from are kept, records below l0_upto fixed)
    return out


def _read_tiles_at(db, keys, st, m):
    """Tiles with the tile file's marks ``m`` (as db's transaction sees them)."""
    ns = [n for l, n in keys if not l and m[0] <= n < m[1]]
    out = _read_table_tiles(db, [k for k in keys if k[0] or not m[0] <= k[1] < m[1]]) if len(ns) < len(keys) else {}
    for n, blob in st._l0.read(ns).items() if ns else ():
        if blob is None:  # missing or damaged record: a tile is a function of its leaves
            leaves = _leaf_blob(db, n * TILE_WIDTH, (n + 1) * TILE_WIDTH)
            if len(leaves) != TILE_WIDTH * _HS:
                raise LookupError(f"tile 0/{n}: its record in {st._l0.path} is missing or damaged and the entries are short")
            blob = record_from_leaves(leaves)
        out[(0, n)] = blob
    return out


def _read_table_tiles(db, keys):
    out = {}
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        ids = {_tid(l, n): (l, n) for l, n in chunk}
        q = "SELECT id, hashes, interior FROM tiles WHERE id IN (%s)" % ",".join("?" * len(ids))
        for tid, blob, interior in db.execute(q, list(ids)):
            out[ids[tid]] = blob + interior if interior else blob
    return out


def read_marks(db) -> tuple[int, int]:
    rows = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('l0_from', 'l0_upto')").fetchall())
    return int(rows.get("l0_from", 0)), int(rows.get("l0_upto", 0))


def set_marks(db, l0_from: int, l0_upto: int) -> None:
    db.executemany("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                   [("l0_from", str(l0_from)), ("l0_upto", str(l0_upto))])


def copy_table_tiles(st, chunk: int = 1024, progress=None) -> int:
    """Move the full level-0 tiles a schema-5 file kept as ``tiles`` rows (below ``l0_from``)
    into the tile file, then set ``l0_from`` to 0; returns how many were copied. Safe while the
    log runs: those tiles never change and no writer touches their records; the records are
    durable before the transaction that moves the mark commits. The rows stay (reclaiming
    their pages needs a VACUUM)."""
    db = st._connect()
    try:
        l0_from, _ = read_marks(db)
        for a in range(0, l0_from, chunk):
            b = min(l0_from, a + chunk)
            got = {tid >> 6: h + (i or b"") for tid, h, i in db.execute(
                "SELECT id, hashes, interior FROM tiles WHERE id >= ? AND id < ?", (_tid(0, a), _tid(0, b)))
                if tid & 63 == 0}
            for n in range(a, b):
                blob = got.get(n)
                if blob is None or len(blob) < TILE_BYTES:
                    raise LookupError(f"tile 0/{n} is not a full tile in {st.path}")
                if len(blob) != RECORD_BYTES:  # stored without its interior rows
                    blob = record_from_hashes(blob[:TILE_BYTES])
                st._l0.write(n, blob)
            if progress:
                progress(b, l0_from)
        st._l0.sync()
        with st.integration() as tx:
            f, upto = read_marks(tx.db)
            if f != l0_from:
                raise RuntimeError(f"l0_from moved from {l0_from} to {f} during the copy")
            set_marks(tx.db, 0, upto)
        return l0_from
    finally:
        db.close()
