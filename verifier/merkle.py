"""RFC 9162 (and RFC 6962) Merkle tree hashing and proof verification, SHA-256.

The API follows transparency-dev/merkle's ``proof`` package: small, exact, and strict
about edge cases (every hash exactly 32 bytes; a consistency proof from the empty tree is
refused; equal sizes need an empty proof and equal roots).

Also here, for tests, oracles and offline audits: :func:`root_of` computes MTH over a list
of leaf hashes, and :func:`inclusion_proof` / :func:`consistency_proof` compute proofs by
rehashing (the log itself never uses these: it reads stored interior hashes).
"""

from __future__ import annotations

from hashlib import sha256
from typing import Sequence

from .errors import VerificationError

HASH_SIZE = 32
EMPTY_ROOT = sha256(b"").digest()

__all__ = [
    "HASH_SIZE",
    "EMPTY_ROOT",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "verify_inclusion",
    "verify_consistency",
    "root_from_consistency_proof",
    "root_of",
    "inclusion_proof",
    "consistency_proof",
]


def leaf_hash(leaf_input: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d)."""
    return sha256(b"\x00" + leaf_input).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return sha256(b"\x01" + left + right).digest()


def _check_hash(h: bytes, what: str) -> None:
    if not isinstance(h, (bytes, bytearray)) or len(h) != HASH_SIZE:
        raise VerificationError("merkle.hash-size", f"{what} is not a {HASH_SIZE}-byte hash")


def _inner_proof_size(index: int, size: int) -> int:
    # Number of proof nodes below the point where the paths to index and size-1 diverge.
    return (index ^ (size - 1)).bit_length()


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """Compute the root implied by an inclusion proof (RFC 9162 2.1.3.2).

    ``leaf`` is the leaf *hash*. Raises VerificationError when the proof is malformed for
    the given index and size (wrong length, index out of range, bad hash sizes).
    """
    if size <= 0 or index < 0:
        raise VerificationError("inclusion.range", f"index {index} not in a tree of size {size}")
    if index >= size:
        raise VerificationError("inclusion.range", f"index {index} >= tree size {size}")
    _check_hash(leaf, "leaf hash")
    inner = _inner_proof_size(index, size)
    border = bin(index >> inner).count("1")
    if len(proof) != inner + border:
        raise VerificationError(
            "inclusion.proof-size",
            f"proof has {len(proof)} hashes, want {inner + border} for index {index} in size {size}",
        )
    r = leaf
    for i in range(inner):
        p = proof[i]
        _check_hash(p, "proof hash")
        if (index >> i) & 1:
            r = sha256(b"\x01" + p + r).digest()
        else:
            r = sha256(b"\x01" + r + p).digest()
    for i in range(inner, inner + border):
        p = proof[i]
        _check_hash(p, "proof hash")
        r = sha256(b"\x01" + p + r).digest()
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise VerificationError unless ``proof`` proves leaf hash ``leaf`` at ``index`` under ``root``."""
    _check_hash(root, "root")
    calc = root_from_inclusion_proof(index, size, leaf, proof)
    if calc != root:
        raise VerificationError("inclusion.root-mismatch", "the proof leads to a different root")


def root_from_consistency_proof(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes
) -> bytes:
    """Check ``proof`` against ``root1`` and return the root at ``size2`` it implies.

    Raises VerificationError if the proof does not match ``root1`` or is malformed.
    """
    if size2 < size1:
        raise VerificationError("consistency.range", f"size2 {size2} < size1 {size1}")
    if size1 == size2:
        # As transparency-dev/merkle: equal sizes need an empty proof; roots compared as given.
        if proof:
            raise VerificationError("consistency.proof-size", "sizes are equal but the proof is not empty")
        if size1 == 0 and root1 != EMPTY_ROOT:
            raise VerificationError("consistency.root1-mismatch", "the root of the empty tree is SHA-256 of nothing")
        return root1
    _check_hash(root1, "first root")
    if size1 == 0:
        raise VerificationError("consistency.range", "consistency proof from the empty tree is meaningless")
    if not proof:
        raise VerificationError("consistency.proof-size", "empty consistency proof")
    for p in proof:
        _check_hash(p, "proof hash")

    inner = _inner_proof_size(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1  # trailing zeros of size1
    inner -= shift
    # size1 a power of two (after shifting, the node at level `shift` is a complete subtree
    # whose root is root1 itself): the seed is root1 and not part of the proof.
    if size1 == 1 << shift:
        seed, start = root1, 0
    else:
        seed, start = proof[0], 1
    border = bin((size1 - 1) >> (inner + shift)).count("1") if inner >= 0 else 0
    if inner < 0 or len(proof) != start + inner + border:
        raise VerificationError(
            "consistency.proof-size",
            f"proof has {len(proof)} hashes, want {start + max(inner, 0) + border}",
        )
    rest = proof[start:]
    mask = (size1 - 1) >> shift

    # Root at size1 from the seed.
    h1 = seed
    for i in range(inner):
        if (mask >> i) & 1:
            h1 = sha256(b"\x01" + rest[i] + h1).digest()
    for i in range(inner, inner + border):
        h1 = sha256(b"\x01" + rest[i] + h1).digest()
    if h1 != root1:
        raise VerificationError("consistency.root1-mismatch", "the proof does not lead to the first root")

    # Root at size2 from the seed.
    h2 = seed
    for i in range(inner):
        if (mask >> i) & 1:
            h2 = sha256(b"\x01" + rest[i] + h2).digest()
        else:
            h2 = sha256(b"\x01" + h2 + rest[i]).digest()
    for i in range(inner, inner + border):
        h2 = sha256(b"\x01" + rest[i] + h2).digest()
    return h2


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Raise VerificationError unless ``proof`` shows the tree at size1 (root1) is a prefix of size2 (root2)."""
    calc = root_from_consistency_proof(size1, size2, proof, root1)
    if size1 != size2:
        _check_hash(root2, "second root")
    if calc != root2:
        raise VerificationError("consistency.root2-mismatch", "the proof does not lead to the second root")


# --- reference computations by rehashing (tests, oracles, audits) -----------------------

def _k(n: int) -> int:
    """Largest power of two strictly smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH over a list of leaf hashes, computed bottom-up in O(n)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    # Right-edge stack (compact range): O(log n) memory.
    stack: list[tuple[int, bytes]] = []  # (height, hash)
    for h in leaves:
        height = 0
        while stack and stack[-1][0] == height:
            _, left = stack.pop()
            h = sha256(b"\x01" + left + h).digest()
            height += 1
        stack.append((height, h))
    r = stack[-1][1]
    for _, left in reversed(stack[:-1]):
        r = sha256(b"\x01" + left + r).digest()
    return r


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D_n) of RFC 9162 2.1.3.1 over leaf hashes (rehashes; for tests)."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError("index out of range")
    if n == 1:
        return []
    k = _k(n)
    if index < k:
        return inclusion_proof(leaves[:k], index) + [root_of(leaves[k:])]
    return inclusion_proof(leaves[k:], index - k) + [root_of(leaves[:k])]


def consistency_proof(leaves: Sequence[bytes], size1: int) -> list[bytes]:
    """PROOF(m, D_n) of RFC 9162 2.1.4.1 over leaf hashes (rehashes; for tests)."""
    n = len(leaves)
    if not 0 < size1 <= n:
        raise ValueError("size out of range")

    def sub(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
        if m == len(d):
            return [] if b else [root_of(d)]
        k = _k(len(d))
        if m <= k:
            return sub(m, d[:k], b) + [root_of(d[k:])]
        return sub(m - k, d[k:], False) + [root_of(d[:k])]

    return sub(size1, leaves, True)
