"""tlog.tree.TileTree.warm and TileTree.leaf_hashes, which no other test ran in-process (issue 16)."""

from __future__ import annotations

from hashlib import sha256

from tlog.tree import TILE_BYTES, TileTree, append_hashes

LEAVES = [sha256(b"leaf %d" % i).digest() for i in range(512)]


def _tiles():
    _, tiles, _ = append_hashes({}, 0, b"".join(LEAVES))
    return tiles


def _counting(tiles):
    calls = []

    def fetch(keys):
        calls.append(list(keys))
        return {k: tiles[k] for k in keys if k in tiles}

    return fetch, calls


def test_warm_caches_a_full_tile_of_exactly_tile_bytes():
    tiles = _tiles()
    # a full level-0 tile stored as its 256 hashes only (no interior rows): exactly TILE_BYTES
    stored = {(0, 0): bytes(tiles[(0, 0)][:TILE_BYTES]), (0, 1): bytes(tiles[(0, 1)])}
    assert len(stored[(0, 0)]) == TILE_BYTES
    fetch, calls = _counting(stored)
    tree = TileTree(fetch)
    tree.warm([(0, 0)])
    assert len(calls) == 1 and tree.cache.peek((0, 0)) is not None
    # served from the cache: no further read
    assert tree.leaf_hashes(0, 256) == b"".join(LEAVES[:256])
    assert tree.leaf_hashes(10, 20) == b"".join(LEAVES[10:20])
    assert len(calls) == 1


def test_warm_leaves_a_partial_tile_uncached():
    partial = {(0, 0): b"".join(LEAVES[:100])}
    fetch, calls = _counting(partial)
    tree = TileTree(fetch)
    tree.warm([(0, 0)])
    assert tree.cache.peek((0, 0)) is None


def test_leaf_hashes_of_an_empty_range_reads_nothing():
    fetch, calls = _counting({})  # nothing stored: any read would find no tile
    tree = TileTree(fetch)
    assert tree.leaf_hashes(0, 0) == b""
    assert tree.leaf_hashes(300, 300) == b""
    assert tree.leaf_hashes(7, 3) == b""
    assert calls == []


def test_leaf_hashes_across_tiles():
    fetch, calls = _counting(_tiles())
    tree = TileTree(fetch)
    assert tree.leaf_hashes(250, 270) == b"".join(LEAVES[250:270])
    assert tree.leaf_hashes(0, 512) == b"".join(LEAVES)
