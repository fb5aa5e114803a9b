"""Incremental tile rows and the overlay cache that keeps uncommitted tiles out of the log's cache."""

from __future__ import annotations

from hashlib import sha256

from hypothesis import given, settings
from hypothesis import strategies as st

from tlog.tree import TILE_BYTES, OverlayCache, TileCache, TileTree, extend_rows, tile_rows
from verifier import merkle


def _hashes(n: int, salt: int = 0) -> bytes:
    return b"".join(sha256(b"%d/%d" % (salt, i)).digest() for i in range(n))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 256), st.integers(0, 256))
def test_extend_rows_equals_recomputing_the_tile(a, b):
    a, b = min(a, b), max(a, b)
    full = _hashes(b)
    assert extend_rows(tile_rows(full[:a * 32]), full) == tile_rows(full)
    # shorter prior row lists (a full tile's stored record has rows 0..7) extend too
    assert extend_rows(tile_rows(full[:a * 32])[:8], full) == tile_rows(full)


def test_tree_reads_a_grown_partial_tile_by_extending_the_cached_rows():
    leaves = [merkle.leaf_hash(b"leaf %d" % i) for i in range(300)]
    store: dict = {}

    def fetch(keys):
        return {k: store[k] for k in keys if k in store}

    tree = TileTree(fetch)
    for size in (5, 77, 200, 256, 300):
        store[(0, 0)] = b"".join(leaves[:min(size, 256)])
        if size >= 256:
            store[(1, 0)] = tile_rows(store[(0, 0)])[8]
        if size > 256:
            store[(0, 1)] = b"".join(leaves[256:size])
        assert tree.root(size) == merkle.root_of(leaves[:size])
        for i in (0, size // 2, size - 1):
            proof = tree.inclusion_proof(i, size)
            assert merkle.root_from_inclusion_proof(i, size, leaves[i], proof) == merkle.root_of(leaves[:size])
    assert len(store[(0, 0)]) == TILE_BYTES


def test_overlay_keeps_uncommitted_tiles_out_of_the_base_until_published():
    base = TileCache()
    base.put((0, 0), tile_rows(_hashes(10)))
    ov = OverlayCache(base)
    assert ov.get((0, 0), 10) is not None and ov.get((0, 0), 11) is None
    ov.put((0, 0), tile_rows(_hashes(20)))
    assert ov.get((0, 0), 20) is not None
    assert base.get((0, 0), 20) is None  # a rollback now would leave base as it was
    ov.publish()
    assert base.get((0, 0), 20) == tile_rows(_hashes(20))
