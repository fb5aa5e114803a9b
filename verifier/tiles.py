"""Client side of C2SP tlog-tiles: paths, tile and entry-bundle decoding, and Merkle hashes
(subtree hashes, roots, consistency proofs) computed from a log's tiles.

Independent of the log's own tree code (``tlog`` is never imported): tiles are fetched over a
caller-supplied ``fetch(path) -> bytes`` and every hash above a tile's stored level is recomputed
here with :mod:`verifier.merkle`'s hash functions.

In this log every entry of an entry bundle is the 32-byte leaf input d(i) and the leaf hash is
SHA-256(0x00 || d(i)) (docs/ARCHITECTURE.md); :func:`parse_entry_bundle` accepts any uint16
length-prefixed entries.
"""

from __future__ import annotations

from collections import OrderedDict
from hashlib import sha256
from typing import Callable, Sequence

from .errors import VerificationError
from .merkle import HASH_SIZE

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # 256

__all__ = [
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "TileNotFound",
    "encode_index",
    "tile_path",
    "entries_path",
    "parse_hash_tile",
    "parse_entry_bundle",
    "encode_entry_bundle",
    "tile_widths",
    "TileHashReader",
    "hash_leaves",
    "subtree_root",
]


class TileNotFound(Exception):
    """Raised by a fetch function when the server has no such resource (HTTP 404)."""


def encode_index(n: int) -> str:
    """tlog-tiles index encoding: 1234067 -> 'x001/x234/067', 0 -> '000'."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"bad tile index {n!r}")
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def _width_suffix(width: int | None) -> str:
    if width is None or width == TILE_WIDTH:
        return ""
    if not 1 <= width < TILE_WIDTH:
        raise ValueError(f"bad partial tile width {width}")
    return f".p/{width}"


def tile_path(level: int, index: int, width: int | None = None) -> str:
    """``tile/<L>/<N>[.p/<W>]`` (no leading slash)."""
    if not 0 <= level <= 63:
        raise ValueError(f"bad tile level {level}")
    return f"tile/{level}/{encode_index(index)}{_width_suffix(width)}"


def entries_path(index: int, width: int | None = None) -> str:
    """``tile/entries/<N>[.p/<W>]`` (no leading slash)."""
    return f"tile/entries/{encode_index(index)}{_width_suffix(width)}"


def tile_widths(level: int, size: int) -> tuple[int, int]:
    """(number of full tiles, width of the partial tile or 0) at ``level`` for tree ``size``."""
    n = size >> (TILE_HEIGHT * level)
    return n >> TILE_HEIGHT, n & (TILE_WIDTH - 1)


def parse_hash_tile(data: bytes, width: int) -> list[bytes]:
    if len(data) != width * HASH_SIZE:
        raise VerificationError("tile.size", f"tile has {len(data)} bytes, want {width * HASH_SIZE}")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def parse_entry_bundle(data: bytes, count: int) -> list[bytes]:
    """Split a bundle of big-endian uint16 length-prefixed entries; exactly ``count`` of them."""
    out = []
    i, n = 0, len(data)
    mv = memoryview(data)
    while i < n:
        if i + 2 > n:
            raise VerificationError("tile.entries", "truncated length prefix in entry bundle")
        ln = (data[i] << 8) | data[i + 1]
        i += 2
        if i + ln > n:
            raise VerificationError("tile.entries", "truncated entry in entry bundle")
        out.append(bytes(mv[i : i + ln]))
        i += ln
        if len(out) > count:
            break
    if len(out) != count:
        raise VerificationError("tile.entries", f"entry bundle holds {len(out)}+ entries, want {count}")
    return out


def encode_entry_bundle(entries: Sequence[bytes]) -> bytes:
    return b"".join(len(e).to_bytes(2, "big") + e for e in entries)


def hash_leaves(entries: Sequence[bytes]) -> list[bytes]:
    """Leaf hashes SHA-256(0x00 || entry)."""
    return [sha256(b"\x00" + e).digest() for e in entries]


def subtree_root(hashes: Sequence[bytes]) -> bytes:
    """RFC 9162 MTH over a list of node hashes of equal level (any count >= 1)."""
    if not hashes:
        raise ValueError("no hashes")
    # right-to-left fold of the perfect subtrees of the binary decomposition
    level = list(hashes)
    while len(level) > 1:
        nxt = [sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            nxt.append(level[-1])
        level = nxt
    return level[0]


Fetch = Callable[[str], bytes]


class TileHashReader:
    """Merkle hashes of the tree of ``size`` leaves, read from its tiles.

    ``fetch(path)`` returns the bytes of a tile path (raise :class:`TileNotFound` for 404).
    A partial tile that is gone (the log grew) is replaced by the full one, truncated.
    """

    def __init__(self, fetch: Fetch, size: int, cache_tiles: int = 256) -> None:
        self.fetch = fetch
        self.size = size
        self._cache: OrderedDict[tuple[int, int], list[bytes]] = OrderedDict()
        self._cache_max = cache_tiles
        self.fetched = 0

    def _tile(self, level: int, index: int, need: int) -> list[bytes]:
        """The hashes of tile (level, index) as of ``self.size``, at least ``need`` of them."""
        key = (level, index)
        t = self._cache.get(key)
        if t is not None and len(t) >= need:
            self._cache.move_to_end(key)
            return t
        full, partial = tile_widths(level, self.size)
        if index < full:
            width = TILE_WIDTH
        elif index == full and partial > 0:
            width = partial
        else:
            raise VerificationError("tile.range", f"tile {level}/{index} is beyond tree size {self.size}")
        if width < need:
            raise VerificationError("tile.range", f"tile {level}/{index} has {width} < {need} hashes")
        self.fetched += 1
        try:
            data = self.fetch(tile_path(level, index, width))
            hashes = parse_hash_tile(data, width)
        except TileNotFound:
            if width == TILE_WIDTH:
                raise
            data = self.fetch(tile_path(level, index))  # the log grew; full tile, prefix
            hashes = parse_hash_tile(data, TILE_WIDTH)[:width]
        self._cache[key] = hashes
        if len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)
        return hashes

    def node(self, height: int, k: int) -> bytes:
        """Hash of the perfect subtree of 2**height leaves starting at leaf k * 2**height."""
        if (k + 1) << height > self.size:
            raise VerificationError("tile.range", f"node ({height}, {k}) is not complete in size {self.size}")
        level, r = divmod(height, TILE_HEIGHT)
        first = k << r  # index of the first node at merkle level level*8
        count = 1 << r
        tile_index, off = divmod(first, TILE_WIDTH)
        hashes = self._tile(level, tile_index, off + count)[off : off + count]
        return subtree_root(hashes)

    def range_hash(self, lo: int, hi: int) -> bytes:
        """MTH of leaves [lo, hi) where the range is a node of the RFC 9162 tree of size hi-lo
        aligned as the recursion produces it (lo a multiple of the largest power of two < hi-lo)."""
        n = hi - lo
        if n <= 0:
            raise ValueError("empty range")
        if n & (n - 1) == 0 and lo % n == 0:
            return self.node(n.bit_length() - 1, lo // n)
        k = 1 << ((n - 1).bit_length() - 1)
        return sha256(b"\x01" + self.range_hash(lo, lo + k) + self.range_hash(lo + k, hi)).digest()

    def root(self) -> bytes:
        if self.size == 0:
            return sha256(b"").digest()
        return self.range_hash(0, self.size)

    def consistency_proof(self, m: int) -> list[bytes]:
        """RFC 9162 2.1.4.1 PROOF(m, D[0:size]) for 0 < m <= size."""
        n = self.size
        if not 0 < m <= n:
            raise VerificationError("consistency.range", f"no consistency proof from {m} to {n}")
        out: list[bytes] = []

        def sub(m: int, lo: int, hi: int, b: bool) -> None:
            n = hi - lo
            if m == n:
                if not b:
                    out.append(self.range_hash(lo, hi))
                return
            k = 1 << ((n - 1).bit_length() - 1)
            if m <= k:
                sub(m, lo, lo + k, b)
                out.append(self.range_hash(lo + k, hi))
            else:
                sub(m - k, lo + k, hi, False)
                out.append(self.range_hash(lo, lo + k))

        sub(m, 0, n, True)
        return out

    def inclusion_proof(self, index: int) -> list[bytes]:
        """RFC 9162 2.1.3.1 PATH(index, D[0:size])."""
        n = self.size
        if not 0 <= index < n:
            raise VerificationError("inclusion.range", f"index {index} not in size {n}")
        out: list[bytes] = []

        def path(i: int, lo: int, hi: int) -> None:
            n = hi - lo
            if n == 1:
                return
            k = 1 << ((n - 1).bit_length() - 1)
            if i < k:
                path(i, lo, lo + k)
                out.append(self.range_hash(lo + k, hi))
            else:
                path(i - k, lo + k, hi)
                out.append(self.range_hash(lo, lo + k))

        path(index, 0, n)
        return out


# ---------------------------------------------------------------------------- an in-memory tile set
# For tests, benchmarks and static mirrors: computes the tiles of a tree from its entries with the
# hash functions above (no server code involved) and serves them from memory.


class MemoryTiles:
    """All hash tiles and entry bundles of a growing tree, kept in memory.

    ``levels[L]`` holds every complete node hash at Merkle level 8*L; any tile (full, or
    partial of any width that exists) is sliced from them, so every historical size is served.
    """

    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self.levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        return len(self.entries)

    def append(self, entries: Sequence[bytes]) -> None:
        for e in entries:
            if len(e) > 0xFFFF:
                raise ValueError("entry longer than 65535 bytes")
            self.entries.append(bytes(e))
            self.levels[0].append(sha256(b"\x00" + e).digest())
            level = 0
            while len(self.levels[level]) % TILE_WIDTH == 0:
                group = self.levels[level][-TILE_WIDTH:]
                if level + 1 == len(self.levels):
                    self.levels.append([])
                self.levels[level + 1].append(subtree_root(group))
                level += 1

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if size == 0:
            return sha256(b"").digest()
        return TileHashReader(self.get, size).root()

    def get(self, path: str) -> bytes:
        """The bytes of ``path`` (``tile/...``); raises TileNotFound."""
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[0] != "tile":
            raise TileNotFound(path)
        kind = parts[1]
        rest = parts[2:]
        width = TILE_WIDTH
        if len(rest) >= 2 and rest[-2].endswith(".p"):
            try:
                width = int(rest[-1])
            except ValueError:
                raise TileNotFound(path) from None
            if not 1 <= width < TILE_WIDTH or rest[-1] != str(width):
                raise TileNotFound(path)
            rest = rest[:-2] + [rest[-2][:-2]]
        try:
            index = 0
            for i, g in enumerate(rest):
                if i < len(rest) - 1:
                    if not g.startswith("x"):
                        raise ValueError
                    g = g[1:]
                if len(g) != 3 or not g.isdigit():
                    raise ValueError
                index = index * 1000 + int(g)
        except ValueError:
            raise TileNotFound(path) from None
        if encode_index(index) != "/".join(rest):
            raise TileNotFound(path)
        start, end = index * TILE_WIDTH, index * TILE_WIDTH + width
        if kind == "entries":
            if end > len(self.entries):
                raise TileNotFound(path)
            return encode_entry_bundle(self.entries[start:end])
        if not kind.isdigit() or str(int(kind)) != kind:
            raise TileNotFound(path)
        level = int(kind)
        if level >= len(self.levels) or end > len(self.levels[level]):
            raise TileNotFound(path)
        return b"".join(self.levels[level][start:end])
