"""C2SP tlog-tiles layout: tile paths, index encoding, partial widths.

Paths (tlog-tiles v0.1.0, as in transparency-dev/tessera ``api/layout``)::

    tile/<L>/<N>[.p/<W>]        hash tile at level L (0..63), index N, partial width W (1..255)
    tile/entries/<N>[.p/<W>]    entry bundle N

N is written in zero-padded 3-digit groups, all but the last prefixed with ``x``
(0 -> ``000``, 67 -> ``067``, 1234067 -> ``x001/x234/067``).

A hash tile (L, N) holds up to 256 hashes at tree height 8*L: hash i is the root of the
complete subtree over leaves [(N*256+i) * 256**L, (N*256+i+1) * 256**L). At tree size s the
tile count of level L is floor(s / 256**(L+1)) full tiles plus, when
w = floor(s / 256**L) mod 256 > 0, one partial tile of width w.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from verifier.tiles import encode_index as _encode_index

__all__ = [
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "HASH_SIZE",
    "MAX_LEVEL",
    "TileRef",
    "encode_index",
    "parse_index",
    "tile_path",
    "entries_path",
    "parse_tile_path",
    "partial_width",
    "tile_width",
    "tiles_for_size",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # 256
HASH_SIZE = 32
MAX_LEVEL = 63


class TileRef(NamedTuple):
    """A parsed tile path. ``level`` is None for an entry bundle; ``width`` is 256 for a full tile."""

    level: int | None
    index: int
    width: int

    @property
    def is_entries(self) -> bool:
        return self.level is None

    @property
    def is_partial(self) -> bool:
        return self.width < TILE_WIDTH

    def path(self) -> str:
        if self.level is None:
            return entries_path(self.index, self.width)
        return tile_path(self.level, self.index, self.width)


def _check_int(v: object, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError(f"{what} must be an int, got {type(v).__name__}")
    return v


def encode_index(n: int) -> str:
    """Encode a tile index as 3-digit path elements: 1234067 -> ``x001/x234/067``."""
    return _encode_index(_check_int(n, "tile index"))  # the verifier's client-side encoder


_GROUP = re.compile(r"[0-9]{3}\Z")


def parse_index(s: str) -> int:
    """Strict inverse of :func:`encode_index` (canonical form only)."""
    if not isinstance(s, str) or not s:
        raise ValueError("empty tile index")
    parts = s.split("/")
    value = 0
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        if not last:
            if not p.startswith("x"):
                raise ValueError(f"tile index element {p!r} must start with 'x'")
            p = p[1:]
        if not _GROUP.match(p):
            raise ValueError(f"tile index element {parts[i]!r} is not three digits")
        if i == 0 and len(parts) > 1 and p == "000":
            raise ValueError(f"tile index {s!r} is not canonical (leading zero group)")
        value = value * 1000 + int(p)
    return value


def _check_width(width: int | None) -> int:
    if width is None:
        return TILE_WIDTH
    width = _check_int(width, "tile width")
    if not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"tile width {width} not in 1..{TILE_WIDTH}")
    return width


def _suffix(width: int) -> str:
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(level: int, index: int, width: int | None = None) -> str:
    """``tile/<L>/<N>[.p/<W>]``; width None or 256 means a full tile."""
    level = _check_int(level, "tile level")
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"tile level {level} not in 0..{MAX_LEVEL}")
    return f"tile/{level}/{encode_index(index)}{_suffix(_check_width(width))}"


def entries_path(index: int, width: int | None = None) -> str:
    """``tile/entries/<N>[.p/<W>]``."""
    return f"tile/entries/{encode_index(index)}{_suffix(_check_width(width))}"


_LEVEL = re.compile(r"(0|[1-9][0-9]?)\Z")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}\Z")


def parse_tile_path(path: str) -> TileRef:
    """Parse ``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]`` strictly (a leading '/'
    is tolerated). Raises ValueError for anything not in canonical form."""
    if not isinstance(path, str):
        raise ValueError("tile path must be a string")
    p = path[1:] if path.startswith("/") else path
    if not p.startswith("tile/"):
        raise ValueError(f"{path!r} is not a tile path")
    rest = p[5:]
    kind, sep, rest = rest.partition("/")
    if not sep:
        raise ValueError(f"{path!r}: missing tile index")
    if kind == "entries":
        level = None
    elif _LEVEL.match(kind) and int(kind) <= MAX_LEVEL:
        level = int(kind)
    else:
        raise ValueError(f"{path!r}: bad tile level {kind!r}")
    width = TILE_WIDTH
    if ".p/" in rest:
        idx_s, _, w_s = rest.partition(".p/")
        if not _WIDTH.match(w_s) or not 1 <= int(w_s) < TILE_WIDTH:
            raise ValueError(f"{path!r}: partial width {w_s!r} not in 1..255")
        width = int(w_s)
    else:
        idx_s = rest
    index = parse_index(idx_s)
    return TileRef(level, index, width)


def partial_width(level: int, size: int) -> int:
    """Width of the partial tile of ``level`` at tree size ``size`` (0: there is none)."""
    return (size >> (TILE_HEIGHT * level)) & (TILE_WIDTH - 1)


def tile_width(level: int, index: int, size: int) -> int:
    """Width of tile (level, index) in a tree of ``size`` leaves: 256 full, 1..255 partial,
    0 when the tile does not exist (yet)."""
    n = size >> (TILE_HEIGHT * level)  # hashes stored at this level
    start = index * TILE_WIDTH
    if n <= start:
        return 0
    return min(TILE_WIDTH, n - start)


def tiles_for_size(size: int) -> list[tuple[int, int, int]]:
    """Every tile a tree of ``size`` has, as (level, index, width), level by level."""
    size = _check_int(size, "tree size")
    if size < 0:
        raise ValueError("tree size is negative")
    out = []
    level = 0
    while True:
        n = size >> (TILE_HEIGHT * level)
        if n == 0:
            break
        full = n >> TILE_HEIGHT
        out.extend((level, i, TILE_WIDTH) for i in range(full))
        w = n & (TILE_WIDTH - 1)
        if w:
            out.append((level, full, w))
        level += 1
    return out
