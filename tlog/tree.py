"""The Merkle tree kept as C2SP tiles: appends on the right edge, proofs from tiles.

Tiles are 256-hash blobs (``bytes``, 32 bytes per hash) per (level, index); a partial tile is
the prefix of the full tile it will become, so every stored hash is immutable once written.
A complete subtree of height h = 8*L + r is row r of the 8-row subtree a tile spans; the rows
above row 0 are recomputed inside one tile (at most 255 hashes, cached for full tiles). A
proof or root at any size reads only the O(log n) tiles on its path and never rehashes
leaves: see :meth:`TileTree.inclusion_proof`, :meth:`TileTree.consistency_proof`.

The append side (:func:`append_hashes`) is a pure function over the right edge: the partial
tile of every level (what transparency-dev/merkle's compact range holds, stored tile-wise).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from hashlib import sha256
from typing import Callable, Iterable

from verifier.merkle import EMPTY_ROOT

from .layout import TILE_HEIGHT, TILE_WIDTH

HS = 32
TILE_BYTES = TILE_WIDTH * HS
# A full tile is stored with its interior rows 1..7 (128 + 64 + ... + 2 = 254 hashes) after
# its 256 hashes: computed anyway when the tile completes (to get the hash for the level
# above), they make a proof from a cold full tile a matter of slicing, with no hashing.
INNER_BYTES = (TILE_WIDTH - 2) * HS
RECORD_BYTES = TILE_BYTES + INNER_BYTES

__all__ = ["TILE_BYTES", "INNER_BYTES", "Edge", "append_hashes", "tile_rows", "record_rows", "extend_rows", "TileTree",
           "TileCache", "OverlayCache", "subtree_root"]

# Edge: level -> bytes of the partial tile of that level (absent or b"" when none).
Edge = dict


def _next_row(row: bytes) -> bytes:
    """Hash adjacent pairs of a row of 32-byte hashes (an odd last one is dropped)."""
    n = len(row) // 64
    h = sha256
    return b"".join([h(b"\x01" + row[i:i + 64]).digest() for i in range(0, n * 64, 64)])


def subtree_root(row: bytes) -> bytes:
    """MTH over a power-of-two number of hashes."""
    while len(row) > HS:
        row = _next_row(row)
    return row


def tile_rows(blob: bytes) -> list[bytes]:
    """Rows 0..8 of the subtree spanned by a tile (row r holds complete nodes of height r)."""
    rows = [blob]
    for _ in range(TILE_HEIGHT):
        blob = _next_row(blob)
        rows.append(blob)
    return rows


def extend_rows(old: list[bytes], row0: bytes) -> list[bytes]:
    """Rows of a tile whose hashes ``row0`` extend the tile that had rows ``old``.

    Every stored hash is immutable and a partial tile is a prefix of what it becomes, so the
    nodes already in ``old`` stay; only nodes over the new hashes are computed (about as
    many hashes as were added, instead of up to 255 for the whole tile). Returns as many rows
    as :func:`tile_rows` (9)."""
    h = sha256
    rows = [row0]
    for r in range(1, TILE_HEIGHT + 1):
        prev = rows[-1]
        have = old[r] if r < len(old) else b""
        a, n = len(have) // HS, len(prev) // 64
        if a >= n:
            rows.append(have[:n * HS])
        else:
            rows.append(have + b"".join([h(b"\x01" + prev[i:i + 64]).digest() for i in range(a * 64, n * 64, 64)]))
    return rows


def record_rows(rec: bytes) -> list[bytes]:
    """The rows of a stored tile record: rows 0..7 sliced from a full tile's record (hashes and
    interior rows), or :func:`tile_rows` (rows 0..8, at most 255 hashes computed) for a partial
    tile or a full one stored without its interior rows."""
    if len(rec) == RECORD_BYTES:
        rows = [rec[:TILE_BYTES]]
        off = TILE_BYTES
        n = TILE_WIDTH // 2
        while n >= 2:
            rows.append(rec[off:off + n * HS])
            off += n * HS
            n //= 2
        return rows
    return tile_rows(rec[:min(len(rec), TILE_BYTES)])


def append_hashes(edge: dict[int, bytes], size: int, leaf_hashes: bytes) -> tuple[int, dict[tuple[int, int], bytes], dict[int, bytes]]:
    """Append concatenated leaf hashes to a tree of ``size`` whose right edge is ``edge``.

    Returns (new size, tiles to write {(level, index): record}, new edge). ``edge`` is not
    modified. Every touched tile appears once, in its final state for this batch; a record is
    the tile's hashes, followed for a full tile by its interior rows 1..7 (see INNER_BYTES).
    """
    if len(leaf_hashes) % HS:
        raise ValueError("leaf hashes must be a multiple of 32 bytes")
    new_edge = dict(edge)
    dirty: dict[tuple[int, int], bytes] = {}
    items = leaf_hashes
    level = 0
    while items:
        stored = size >> (TILE_HEIGHT * level)  # hashes at this level before the batch
        w = stored & (TILE_WIDTH - 1)
        n = stored >> TILE_HEIGHT
        buf = new_edge.get(level, b"")
        if len(buf) != w * HS:
            raise ValueError(f"right edge of level {level} has {len(buf) // HS} hashes, want {w}")
        combined = buf + items if buf else items
        up = []
        k = 0
        for off in range(0, len(combined), TILE_BYTES):
            tile = combined[off:off + TILE_BYTES]
            k += 1
            if len(tile) == TILE_BYTES:
                rows = tile_rows(tile)
                up.append(rows[TILE_HEIGHT])
                dirty[(level, n + k - 1)] = b"".join(rows[:TILE_HEIGHT])
                last = b""
            else:
                dirty[(level, n + k - 1)] = tile
                last = tile
        new_edge[level] = last
        items = b"".join(up)
        level += 1
    new_size = size + len(leaf_hashes) // HS
    return new_size, dirty, {k: v for k, v in new_edge.items() if v}


# height h -> (level, row) of the tile holding its nodes, as shifts and masks
assert TILE_HEIGHT == 8, "C2SP tiles are 8 levels high"
_LEVEL_SHIFT, _ROW_MASK = 3, 7


def _tiles_of_node(h: int, idx: int) -> tuple[int, int, int]:
    """(level, tile index, required width) holding complete node (height h, index idx)."""
    level, r = divmod(h, TILE_HEIGHT)
    start = idx << r
    n = start >> TILE_HEIGHT
    return level, n, ((idx + 1) << r) - n * TILE_WIDTH


def _decompose(a: int, b: int) -> list[tuple[int, int]]:
    """Complete subtrees covering [a, b), left to right; a must be aligned to a power of two
    >= b - a (true for every range of a right-edge subtree)."""
    out = []
    while a < b:
        h = (b - a).bit_length() - 1
        while a & ((1 << h) - 1):
            h -= 1
        out.append((h, a >> h))
        a += 1 << h
    return out


FetchFn = Callable[[list[tuple[int, int]]], dict[tuple[int, int], bytes]]


class TileCache:
    """Tile rows cache: an LRU for level-0 tiles and a separate one for the upper levels
    (1/256 as many tiles, on every proof's path), so random level-0 traffic never evicts
    the top of the tree. Every stored hash is immutable, so a cached (possibly partial) tile
    serves any request within its width; a wider request re-reads it."""

    def __init__(self, max_tiles: int = 1024, max_upper: int = 2048) -> None:
        self._lru = (OrderedDict(), OrderedDict())
        self._max = (max_tiles, max_upper)
        self._lock = threading.Lock()

    def get(self, key, width: int):
        d = self._lru[key[0] > 0]
        with self._lock:
            rows = d.get(key)
            if rows is None or len(rows[0]) < width * HS:
                return None
            d.move_to_end(key)
            return rows

    def put(self, key, rows: list[bytes]) -> None:
        up = key[0] > 0
        d = self._lru[up]
        with self._lock:
            old = d.get(key)
            if old is not None and len(old[0]) > len(rows[0]):
                return
            d[key] = rows
            d.move_to_end(key)
            while len(d) > self._max[up]:
                d.popitem(last=False)

    def peek(self, key):
        """The cached rows of ``key`` at whatever width they have (None if not cached)."""
        with self._lock:
            return self._lru[key[0] > 0].get(key)

    def clear(self) -> None:
        with self._lock:
            for d in self._lru:
                d.clear()


class OverlayCache(TileCache):
    """A cache for tiles of an uncommitted transaction: reads fall through to ``base`` (the
    log's cache of committed tiles), writes stay here until :meth:`publish` (after the commit)
    copies them into ``base``; a rolled-back batch leaves ``base`` untouched."""

    def __init__(self, base: TileCache) -> None:
        super().__init__(1 << 30, 1 << 30)
        self.base = base

    def get(self, key, width: int):
        rows = super().get(key, width)
        return rows if rows is not None else self.base.get(key, width)

    def peek(self, key):
        rows = super().peek(key)
        return rows if rows is not None else self.base.peek(key)

    def publish(self) -> None:
        with self._lock:
            items = [it for d in self._lru for it in d.items()]
        for key, rows in items:
            self.base.put(key, rows)


class TileTree:
    """Roots and proofs for any size up to what the tile source holds.

    ``fetch(keys)`` returns the stored blobs of the requested (level, index) tiles (missing
    ones absent). All tiles a request needs are fetched in one call.
    """

    def __init__(self, fetch: FetchFn, cache: TileCache | None = None) -> None:
        self._fetch = fetch
        self.cache = cache if cache is not None else TileCache()

    # -- node access ---------------------------------------------------------------------
    def _load(self, nodes: Iterable[tuple[int, int]]) -> dict[tuple[int, int], list[bytes]]:
        need: dict[tuple[int, int], int] = {}
        get = need.get
        for h, idx in nodes:  # _tiles_of_node, inlined (proof hot path)
            r = h & _ROW_MASK
            start = idx << r
            key = (h >> _LEVEL_SHIFT, start >> TILE_HEIGHT)
            w = ((idx + 1) << r) - (key[1] << TILE_HEIGHT)
            if w > get(key, 0):
                need[key] = w
        got: dict[tuple[int, int], list[bytes]] = {}
        missing = []
        for key, w in need.items():
            rows = self.cache.get(key, w)
            if rows is None:
                missing.append(key)
            else:
                got[key] = rows
        if missing:
            blobs = self._fetch(missing)
            for key in missing:
                blob = blobs.get(key)
                if blob is None or len(blob) < need[key] * HS:
                    have = 0 if blob is None else len(blob) // HS
                    raise LookupError(f"tile {key} has {have} hashes, need {need[key]}: storage is behind or corrupt")
                blob = bytes(blob)
                prior = self.cache.peek(key) if len(blob) <= TILE_BYTES else None
                if prior is not None and blob.startswith(prior[0]):
                    rows = extend_rows(prior, blob)
                else:
                    rows = record_rows(blob)
                self.cache.put(key, rows)
                got[key] = rows
        return got

    def warm(self, keys: list[tuple[int, int]]) -> None:
        """Fetch and cache (expanded) the given full tiles."""
        for i in range(0, len(keys), 256):
            blobs = self._fetch(keys[i:i + 256])
            for key, blob in blobs.items():
                if len(blob) >= TILE_BYTES:
                    self.cache.put(key, record_rows(bytes(blob)))

    @staticmethod
    def _node(tiles, h: int, idx: int) -> bytes:
        level, r = divmod(h, TILE_HEIGHT)
        start = idx << r
        rows = tiles[(level, start >> TILE_HEIGHT)]
        pos = (start & (TILE_WIDTH - 1)) >> r
        return rows[r][pos * HS:(pos + 1) * HS]

    def _fold(self, tiles, parts: list[tuple[int, int]]) -> bytes:
        r = self._node(tiles, *parts[-1])
        for h, idx in reversed(parts[:-1]):
            r = sha256(b"\x01" + self._node(tiles, h, idx) + r).digest()
        return r

    def _compute(self, groups: list[list[tuple[int, int]]]) -> list[bytes]:
        """Each group's nodes folded right to left (:meth:`_fold`, with :meth:`_node` inlined:
        a proof is ~25 nodes, and this loop is most of its Python time)."""
        tiles = self._load([n for g in groups for n in g])
        out = []
        h256 = sha256
        for g in groups:
            acc = None
            for h, idx in reversed(g):
                r = h & _ROW_MASK
                start = idx << r
                o = ((start & (TILE_WIDTH - 1)) >> r) * HS
                v = tiles[(h >> _LEVEL_SHIFT, start >> TILE_HEIGHT)][r][o:o + HS]
                acc = v if acc is None else h256(b"\x01" + v + acc).digest()
            out.append(acc)
        return out

    # -- public --------------------------------------------------------------------------
    def root(self, size: int) -> bytes:
        if size == 0:
            return EMPTY_ROOT
        return self._compute([_decompose(0, size)])[0]

    def leaf_hashes(self, start: int, end: int) -> bytes:
        """Stored leaf hashes [start, end), concatenated."""
        if start >= end:
            return b""
        tiles = self._load([(0, start), (0, end - 1)] + [(0, i) for i in range(start & ~255, end, 256)])
        out = []
        for n in range(start >> 8, ((end - 1) >> 8) + 1):
            row = tiles[(0, n)][0]
            a = max(start - n * 256, 0)
            b = min(end - n * 256, 256)
            out.append(row[a * HS:b * HS])
        return b"".join(out)

    @staticmethod
    def inclusion_nodes(index: int, size: int) -> list[list[tuple[int, int]]]:
        if not 0 <= index < size:
            raise ValueError(f"index {index} not in a tree of size {size}")
        inner = (index ^ (size - 1)).bit_length()
        groups = []
        for h in range(inner):
            sib = (index >> h) ^ 1
            end = (sib + 1) << h
            # a sibling subtree that is complete at this size is one node; else decompose it
            groups.append([(h, sib)] if end <= size else _decompose(sib << h, size))
        for h in range(inner, index.bit_length()):
            if (index >> h) & 1:
                groups.append([(h, ((index >> h) ^ 1))])
        return groups

    @staticmethod
    def consistency_nodes(size1: int, size2: int) -> list[list[tuple[int, int]]]:
        if not 0 <= size1 <= size2:
            raise ValueError(f"need 0 <= size1 <= size2, got {size1}, {size2}")
        if size1 == size2:
            return []
        if size1 == 0:
            raise ValueError("no consistency proof from the empty tree")
        shift = (size1 & -size1).bit_length() - 1
        last = size1 - 1
        idx = last >> shift
        groups = [] if idx == 0 else [[(shift, idx)]]
        inner = (last ^ (size2 - 1)).bit_length()
        for h in range(shift, inner):
            sib = (last >> h) ^ 1
            end = (sib + 1) << h
            groups.append([(h, sib)] if end <= size2 else _decompose(sib << h, size2))
        for h in range(inner, last.bit_length()):
            if (last >> h) & 1:
                groups.append([(h, (last >> h) ^ 1)])
        return groups

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self._compute(self.inclusion_nodes(index, size))

    def inclusion_proofs(self, indexes: list[int], size: int) -> list[list[bytes]]:
        """The inclusion proofs of several entries in the tree of ``size`` with one tile load
        (a batch's receipts: their paths share most nodes and tiles)."""
        groups = [self.inclusion_nodes(i, size) for i in indexes]
        flat = self._compute([g for gs in groups for g in gs])
        out, k = [], 0
        for gs in groups:
            out.append(flat[k:k + len(gs)])
            k += len(gs)
        return out

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        return self._compute(self.consistency_nodes(size1, size2))

    def root_and_consistency(self, size1: int, size2: int) -> tuple[bytes, list[bytes]]:
        """(:meth:`root` of ``size2``, :meth:`consistency_proof` from ``size1``; [] when
        ``size1`` is 0) with one tile load: an integration's new root and its self-check."""
        if size2 == 0:
            return EMPTY_ROOT, []
        groups = self.consistency_nodes(size1, size2) if size1 else []
        out = self._compute([_decompose(0, size2)] + groups)
        return out[0], out[1:]
