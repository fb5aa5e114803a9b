"""Merkle proof checks named by the check they fail with (issue 16, mutation testing): a proof
with a bad index, size, hash type or length is refused with its own stable ``check``, never with a
TypeError from hashing or a root computed from numbers that name no leaf."""

from __future__ import annotations

import pytest

from verifier import VerificationError, merkle

LEAVES = [merkle.leaf_hash(bytes([i])) for i in range(8)]


def _check(fn, *args) -> str:
    with pytest.raises(VerificationError) as e:
        fn(*args)
    return e.value.check


@pytest.mark.parametrize("index,size,proof_len", [(-1, 4, 4), (-1, 4, 2), (-2, 3, 2), (0, 0, 0), (0, -1, 0), (4, 4, 2)])
def test_inclusion_index_outside_the_tree(index, size, proof_len):
    """Index -1 of size 4 with 4 hashes fits the RFC 9162 length formula for that index (bit
    arithmetic on a negative number), so without the range check a root comes out."""
    proof = [bytes([7]) * 32] * proof_len
    assert _check(merkle.root_from_inclusion_proof, index, size, LEAVES[0], proof) == "inclusion.range"


@pytest.mark.parametrize("bad", ["a" * 32, memoryview(bytes(32)), [0] * 32, b"\x00" * 31, b"\x00" * 33, None])
def test_inclusion_hashes_must_be_32_bytes(bad):
    """A 32-character str or a 32-item list has the right length but is no hash; a memoryview of
    32 bytes would even hash: all refused with merkle.hash-size, as leaf, path element and root."""
    root = merkle.root_of(LEAVES[:4])
    good = merkle.inclusion_proof(LEAVES[:4], 1)
    assert merkle.root_from_inclusion_proof(1, 4, LEAVES[1], good) == root
    assert _check(merkle.root_from_inclusion_proof, 1, 4, bad, good) == "merkle.hash-size"
    assert _check(merkle.root_from_inclusion_proof, 1, 4, LEAVES[1], [bad, good[1]]) == "merkle.hash-size"
    # the border part of the path (index 4 of size 5: no inner hashes, one border hash)
    p5 = merkle.inclusion_proof(LEAVES[:5], 4)
    assert len(p5) == 1 and merkle.root_from_inclusion_proof(4, 5, LEAVES[4], p5) == merkle.root_of(LEAVES[:5])
    assert _check(merkle.root_from_inclusion_proof, 4, 5, LEAVES[4], [bad]) == "merkle.hash-size"
    assert _check(merkle.verify_inclusion, 1, 4, LEAVES[1], good, bad) == "merkle.hash-size"


@pytest.mark.parametrize("bad", ["a" * 32, memoryview(bytes(32)), b"\x00" * 31])
def test_consistency_hashes_must_be_32_bytes(bad):
    root4, root8 = merkle.root_of(LEAVES[:4]), merkle.root_of(LEAVES)
    root3 = merkle.root_of(LEAVES[:3])
    proof = merkle.consistency_proof(LEAVES, 4)
    merkle.verify_consistency(4, 8, proof, root4, root8)
    assert _check(merkle.verify_consistency, 4, 8, proof, bad, root8) == "merkle.hash-size"
    assert _check(merkle.verify_consistency, 4, 8, proof, root4, bad) == "merkle.hash-size"
    assert _check(merkle.verify_consistency, 4, 8, [bad] + proof[1:], root4, root8) == "merkle.hash-size"
    p3 = merkle.consistency_proof(LEAVES, 3)  # size1 not a power of two: the seed is proof[0]
    merkle.verify_consistency(3, 8, p3, root3, root8)
    assert _check(merkle.verify_consistency, 3, 8, [bad] + p3[1:], root3, root8) == "merkle.hash-size"
    # equal sizes: the roots are compared as given, no hash-size check needed for a match
    assert _check(merkle.verify_consistency, 4, 4, [], root4, bad) == "consistency.root2-mismatch"


def test_consistency_ranges_and_proof_sizes():
    root3, root4, root8 = (merkle.root_of(LEAVES[:n]) for n in (3, 4, 8))
    p3 = merkle.consistency_proof(LEAVES, 3)
    assert _check(merkle.root_from_consistency_proof, 8, 3, p3, root8) == "consistency.range"
    assert merkle.root_from_consistency_proof(4, 4, [], root4) == root4
    assert merkle.root_from_consistency_proof(0, 0, [], merkle.EMPTY_ROOT) == merkle.EMPTY_ROOT
    assert _check(merkle.root_from_consistency_proof, 0, 0, [], root4) == "consistency.root1-mismatch"
    assert _check(merkle.root_from_consistency_proof, 4, 4, [root4], root4) == "consistency.proof-size"
    assert _check(merkle.root_from_consistency_proof, 0, 8, p3, merkle.EMPTY_ROOT) == "consistency.range"
    # an empty proof where one is needed: refused by name, also where the seed would be proof[0]
    assert _check(merkle.root_from_consistency_proof, 3, 8, [], root3) == "consistency.proof-size"
    assert _check(merkle.root_from_consistency_proof, 4, 8, [], root4) == "consistency.proof-size"
    # one hash too many or too few
    assert _check(merkle.root_from_consistency_proof, 3, 8, p3 + [root8], root3) == "consistency.proof-size"
    assert _check(merkle.root_from_consistency_proof, 3, 8, p3[:-1], root3) == "consistency.proof-size"
    assert _check(merkle.root_from_consistency_proof, 3, 8, p3, root4) == "consistency.root1-mismatch"
    assert _check(merkle.verify_consistency, 3, 8, p3, root3, root4) == "consistency.root2-mismatch"


def test_reference_proofs_refuse_out_of_range():
    """The rehashing oracles the tests compare the log against refuse what names no leaf."""
    for i in (-1, 8, 9):
        with pytest.raises(ValueError):
            merkle.inclusion_proof(LEAVES, i)
    for m in (0, -1, 9):
        with pytest.raises(ValueError):
            merkle.consistency_proof(LEAVES, m)
    assert merkle.consistency_proof(LEAVES, 8) == []
    assert merkle.inclusion_proof(LEAVES[:1], 0) == []
    assert merkle.root_of([]) == merkle.EMPTY_ROOT
    assert merkle.root_of(LEAVES[:1]) == LEAVES[0]
