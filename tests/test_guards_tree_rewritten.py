"""TileTree._load extends a cached partial tile only when the stored tile still starts with it
(tlog/tree.py, issue 16 mutation testing). Stored hashes are immutable, but a storage that
serves a tile rewritten under it (a restore, a rolled-back writer, another log's data) must not
get the new hashes folded with interior nodes cached from the old ones: the wider tile is
computed afresh, so roots and proofs match the hashes the storage now holds."""

from __future__ import annotations

from hashlib import sha256

from tlog.tree import TileTree
from verifier import merkle


def _leaves(tag: bytes, n: int) -> list[bytes]:
    return [merkle.leaf_hash(tag + bytes([i])) for i in range(n)]


class RewritingStorage:
    """A fake tile store: serves level-0 tile 0 from ``hashes``, which the test replaces."""

    def __init__(self, hashes: list[bytes]) -> None:
        self.hashes = hashes
        self.fetched: list[list[tuple[int, int]]] = []

    def fetch(self, keys):
        self.fetched.append(list(keys))
        return {k: b"".join(self.hashes) for k in keys if k == (0, 0)}


def test_a_rewritten_tile_is_not_extended_from_the_cached_one():
    old = _leaves(b"old", 2)
    store = RewritingStorage(old)
    tree = TileTree(store.fetch)
    assert tree.root(2) == merkle.root_of(old)  # tile (0, 0) with 2 hashes is now cached
    new = _leaves(b"new", 4)  # the tile rewritten: it does not start with the cached hashes
    store.hashes = new
    assert tree.root(4) == merkle.root_of(new)
    assert tree.inclusion_proof(0, 4) == merkle.inclusion_proof(new, 0)
    assert len(store.fetched) == 2  # the wider tile was read once more, then served from the cache


def test_a_grown_tile_is_extended_from_the_cached_one():
    """The common case beside it: the stored tile grew, the cached nodes are reused."""
    leaves = _leaves(b"x", 6)
    store = RewritingStorage(leaves[:2])
    tree = TileTree(store.fetch)
    assert tree.root(2) == merkle.root_of(leaves[:2])
    store.hashes = leaves
    assert tree.root(6) == merkle.root_of(leaves)
    assert tree.root(4) == sha256(b"\x01" + merkle.root_of(leaves[:2]) + merkle.root_of(leaves[2:4])).digest()
