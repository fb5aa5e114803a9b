"""TileTree._load refuses a tile the storage serves shorter than the tree needs (issue 16: a
survivor of the final mutation run): a LookupError naming the tile, not an IndexError deep in
the proof code or a root computed from too few hashes."""

from __future__ import annotations

import pytest

from tlog.tree import TileTree
from verifier import merkle


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(b"short" + bytes([i])) for i in range(n)]


@pytest.mark.parametrize("served", [0, 1, 3])
def test_a_tile_shorter_than_needed_is_refused_as_storage_behind(served):
    leaves = _leaves(4)
    tree = TileTree(lambda keys: {k: b"".join(leaves[:served]) for k in keys})
    with pytest.raises(LookupError, match="storage is behind or corrupt"):
        tree.root(4)
    with pytest.raises(LookupError, match="storage is behind or corrupt"):
        tree.inclusion_proof(0, 4)  # leaf 1 and node (1, 1): all 4 hashes


def test_a_tile_cut_inside_a_hash_is_refused():
    leaves = _leaves(4)
    tree = TileTree(lambda keys: {k: b"".join(leaves)[:-1] for k in keys})
    with pytest.raises(LookupError, match="has 3 hashes, need 4"):
        tree.root(4)


def test_a_tile_that_is_long_enough_serves_the_root():
    leaves = _leaves(4)
    tree = TileTree(lambda keys: {k: b"".join(leaves) for k in keys})
    assert tree.root(4) == merkle.root_of(leaves)
