"""The read side of the log core: tree heads (following the heads other processes integrate),
roots, inclusion and consistency proofs (from the tiles, never rehashing the tree), entries,
lookups, C2SP tiles and entry bundles.

:class:`LogReads` is a part of :class:`tlog.log.Log` (it uses the log's ``storage``, its tile
tree and the state the sequencer keeps: ``_size``, ``_sr``, ``_latest``; ``refresh`` takes the
integration lock and checks a new head's checkpoint and right edge as :meth:`Log.open` does).
"""

from __future__ import annotations

from verifier.errors import VerificationError

from .layout import TILE_WIDTH, tile_width
from .storage import TreeHead
from .tree import HS

__all__ = ["LogReads"]


def _check_nonneg(v, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ValueError(f"{what} must be a non-negative int, got {v!r}")
    return v


class LogReads:
    """The read part of :class:`tlog.log.Log`."""

    @property
    def size(self) -> int:
        return self._size

    def refresh(self) -> None:
        """Pick up tree heads integrated by other processes (every frontend, once per batch).

        The latest stored head is taken when its checkpoint verifies under the log's key (it
        never moves backwards) and the tiles of its right edge are there; the root is not
        recomputed from the tiles here (:meth:`open` does that): the signed checkpoint is what
        receipts and proofs are checked against, by the log itself when it integrates next
        (consistency proof from the tiles) and by every verifier."""
        head = self.storage.latest_head()
        if head is None or (head.size, head.root) == (self._size, self._root):
            return
        with self._int_lock:
            if head.size <= self._size:
                return  # read before this process's own integration moved past it
            self._open_checkpoint(head)
            edge = self._load_edge(head.size, self.storage.tiles)
            self._sr = (head.size, head.root)
            self._root, self._edge, self._latest, self._size = head.root, edge, head, head.size

    def latest(self) -> TreeHead:
        return self._latest

    def tree_head(self, size: int) -> TreeHead | None:
        return self.storage.head(_check_nonneg(size, "tree size"))

    def _check_size(self, size: int) -> int:
        _check_nonneg(size, "tree size")
        if size > self._size:
            self.refresh()
            if size > self._size:
                raise ValueError(f"tree size {size} exceeds the log size {self._size}")
        return size

    def root(self, size: int) -> bytes:
        self._check_size(size)
        cur_size, cur_root = self._sr
        if size == cur_size:
            return cur_root
        return self._tree.root(size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        self._check_size(size)
        _check_nonneg(index, "index")
        if index >= size:
            raise ValueError(f"index {index} not in a tree of size {size}")
        return self._tree.inclusion_proof(index, size)

    def inclusion_proofs(self, indexes, size: int) -> list[list[bytes]]:
        """:meth:`inclusion_proof` of each of ``indexes`` at ``size``, sharing one tile load."""
        self._check_size(size)
        for index in indexes:
            _check_nonneg(index, "index")
            if index >= size:
                raise ValueError(f"index {index} not in a tree of size {size}")
        return self._tree.inclusion_proofs(list(indexes), size)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        self._check_size(size2)
        _check_nonneg(size1, "size1")
        if size1 > size2:
            raise ValueError(f"size1 {size1} > size2 {size2}")
        if size1 == 0:
            raise ValueError("no consistency proof from the empty tree")
        return self._tree.consistency_proof(size1, size2)

    def leaf_input(self, index: int) -> bytes | None:
        r = self.storage.leaf_inputs(_check_nonneg(index, "index"), index + 1)
        return r[0] if r else None

    def entry_data(self, index: int) -> bytes | None:
        return self.storage.entry_data(_check_nonneg(index, "index"))

    def find(self, leaf_input: bytes) -> int | None:
        if not isinstance(leaf_input, (bytes, bytearray)) or len(leaf_input) != HS:
            raise ValueError("leaf input must be 32 bytes")
        return self.storage.find(bytes(leaf_input))

    def lookup(self, key: str, value: str) -> list[int]:
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError("key and value must be strings")
        return self.storage.lookup(key, value)

    def _width(self, level: int | None, index: int, width: int | None) -> int:
        _check_nonneg(index, "tile index")
        if width is not None and (not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= TILE_WIDTH):
            raise ValueError(f"tile width {width!r} not in 1..256")
        have = tile_width(level or 0, index, self._size)
        if width is not None and have < width:
            self.refresh()
            have = tile_width(level or 0, index, self._size)
        if width is None:
            return have
        return width if have >= width else 0

    def tile(self, level: int, index: int, width: int | None = None) -> bytes | None:
        """Tile (level, index) at ``width`` hashes (None: its width at the current size); None
        when the log does not have it. A partial width of a tile since completed is served
        as the prefix (stored hashes never change)."""
        if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 63:
            raise ValueError(f"tile level {level!r} not in 0..63")
        w = self._width(level, index, width)
        if w == 0:
            return None
        blob = self.storage.tile(level, index)
        if blob is None or len(blob) < w * HS:
            raise VerificationError("log.tiles", f"tile {level}/{index} missing or short")
        return bytes(blob[:w * HS])

    def entry_bundle(self, index: int, width: int | None = None) -> bytes | None:
        """C2SP entry bundle: each leaf input with its big-endian uint16 length (0x0020)."""
        w = self._width(None, index, width)
        if w == 0:
            return None
        leaves = self.storage.leaf_inputs(index * TILE_WIDTH, index * TILE_WIDTH + w)
        if len(leaves) != w:
            raise VerificationError("log.entries", f"entry bundle {index} is short")
        return b"".join([b"\x00\x20" + leaf for leaf in leaves])
