"""tlog.tree on its own: the RFC 9162 vectors through tiles, pymerkle cross-checks, hypothesis."""

import base64
import json
import random
from hashlib import sha256

import pymerkle
import pytest
from hypothesis import given, settings, strategies as st

from tests.conftest import vectors
from tlog.tree import TileTree, append_hashes
from verifier import merkle

# transparency-dev/merkle's 8-leaf reference tree (the one the rfc9162 vectors are built on)
REF_LEAVES = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f"]]


def build(leaf_hashes, splits=None):
    tiles, edge, size = {}, {}, 0
    pos = 0
    rnd = random.Random(splits)
    while pos < len(leaf_hashes):
        k = len(leaf_hashes) if splits is None else rnd.randint(1, 600)
        chunk = leaf_hashes[pos:pos + k]
        pos += len(chunk)
        size, dirty, edge = append_hashes(edge, size, b"".join(chunk))
        tiles.update(dirty)
    return TileTree(lambda keys: {k: tiles[k] for k in keys if k in tiles}), tiles


def _b(s):
    return base64.b64decode(s)


def _happy(kind):
    return [json.loads(p.read_text()) for p in vectors("rfc9162", kind, glob="*.json")
            if not json.loads(p.read_text())["wantErr"]]


def test_rfc9162_vectors_from_tiles():
    lh = [merkle.leaf_hash(d) for d in REF_LEAVES]
    tree, _ = build(lh)
    incl = _happy("inclusion")
    cons = _happy("consistency")
    checked = 0
    for v in incl:
        if v["treeSize"] > 8 or v["leafHash"] is None:
            continue
        if _b(v["leafHash"]) != lh[v["leafIdx"]]:
            continue
        assert tree.root(v["treeSize"]) == _b(v["root"])
        assert tree.inclusion_proof(v["leafIdx"], v["treeSize"]) == [_b(p) for p in v["proof"] or []]
        checked += 1
    for v in cons:
        if v["size2"] > 8 or v["size1"] == 0 or v["size1"] == v["size2"]:
            continue
        assert tree.root(v["size1"]) == _b(v["root1"]) and tree.root(v["size2"]) == _b(v["root2"])
        assert tree.consistency_proof(v["size1"], v["size2"]) == [_b(p) for p in v["proof"] or []]
        checked += 1
    assert checked >= 9, checked  # every happy-path vector on the reference tree


def _pm_tree(leaves):
    t = pymerkle.InmemoryTree(algorithm="sha256")
    for d in leaves:
        t.append_entry(d)
    return t


def test_against_pymerkle_every_size_to_300():
    rnd = random.Random(1)
    leaves = [rnd.randbytes(32) for _ in range(300)]
    pm = _pm_tree(leaves)
    tree, _ = build([merkle.leaf_hash(d) for d in leaves], splits=7)
    for n in range(1, 301):
        assert tree.root(n) == pm.get_root(n), n
        for i in {0, n - 1, rnd.randrange(n), rnd.randrange(n)}:
            want = [bytes.fromhex(h) if isinstance(h, str) else h for h in pm.prove_inclusion(i + 1, n).path[1:]]
            assert tree.inclusion_proof(i, n) == want, (i, n)


def test_against_pymerkle_random_large_sizes():
    rnd = random.Random(2)
    leaves = [rnd.randbytes(32) for _ in range(70000)]
    pm = _pm_tree(leaves)
    tree, tiles = build([merkle.leaf_hash(d) for d in leaves], splits=3)
    assert (2, 0) in tiles and len(tiles[(1, 1)]) == 17 * 32
    for n in [65536, 65537, 69999, 70000] + [rnd.randint(301, 70000) for _ in range(12)]:
        root = tree.root(n)
        assert root == pm.get_root(n)
        for _ in range(4):
            i = rnd.randrange(n)
            proof = tree.inclusion_proof(i, n)
            want = [bytes.fromhex(h) if isinstance(h, str) else h for h in pm.prove_inclusion(i + 1, n).path[1:]]
            assert proof == want
            merkle.verify_inclusion(i, n, merkle.leaf_hash(leaves[i]), proof, root)
        m = rnd.randint(1, n)
        merkle.verify_consistency(m, n, tree.consistency_proof(m, n), tree.root(m), root)


def test_consistency_all_pairs_small():
    leaves = [merkle.leaf_hash(bytes([i]) * 32) for i in range(70)]
    tree, _ = build(leaves, splits=5)
    for n in range(1, 71):
        for m in range(1, n + 1):
            p = tree.consistency_proof(m, n)
            assert p == (merkle.consistency_proof(leaves[:n], m) if m < n else [])
            merkle.verify_consistency(m, n, p, tree.root(m), tree.root(n))
            # the integration's one-load form: the same root, the same proof
            assert tree.root_and_consistency(m, n) == (merkle.root_of(leaves[:n]), p)
        assert tree.root_and_consistency(0, n) == (merkle.root_of(leaves[:n]), [])
    assert tree.root_and_consistency(0, 0) == (merkle.EMPTY_ROOT, [])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 1500), st.integers(0, 2**32))
def test_batch_splits_same_tree(n, seed):
    leaves = [sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    t1, tiles1 = build(leaves)
    t2, tiles2 = build(leaves, splits=seed)
    assert tiles1 == tiles2
    rnd = random.Random(seed)
    size = rnd.randint(1, n)
    root = t2.root(size)
    assert root == merkle.root_of(leaves[:size])
    i = rnd.randrange(size)
    merkle.verify_inclusion(i, size, leaves[i], t2.inclusion_proof(i, size), root)
    m = rnd.randint(1, size)
    merkle.verify_consistency(m, size, t2.consistency_proof(m, size), t2.root(m), root)


def test_edge_mismatch_refused():
    _, tiles = build([bytes(32)] * 3)
    with pytest.raises(ValueError):
        append_hashes({}, 3, bytes(32))  # edge does not hold the 3 level-0 hashes
    with pytest.raises(ValueError):
        append_hashes({}, 0, b"short")


def test_missing_tile_is_an_error():
    tree = TileTree(lambda keys: {})
    with pytest.raises(LookupError):
        tree.root(5)


def test_full_tile_records_carry_interior_rows():
    from tlog.tree import INNER_BYTES, TILE_BYTES, record_rows, tile_rows

    _, tiles = build([merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(600)], splits=11)
    full, partial = tiles[(0, 1)], tiles[(0, 2)]
    assert len(full) == TILE_BYTES + INNER_BYTES and len(partial) == (600 - 512) * 32
    assert record_rows(full) == tile_rows(full[:TILE_BYTES])[:8]
    assert record_rows(partial) == tile_rows(partial)
    from tlog.tree import subtree_root

    assert tiles[(1, 0)] == subtree_root(tiles[(0, 0)][:TILE_BYTES]) + subtree_root(full[:TILE_BYTES])


def test_consistency_nodes_sizes():
    """From size 0 only to size 0 (the empty proof); from 0 to a larger size, from a larger
    first size or from a negative one: ValueError, before any node is computed."""
    from tlog.tree import TileTree

    assert TileTree.consistency_nodes(0, 0) == [] and TileTree.consistency_nodes(3, 3) == []
    for s1, s2 in ((0, 5), (0, 1), (6, 5), (-1, 5)):
        with pytest.raises(ValueError):
            TileTree.consistency_nodes(s1, s2)
