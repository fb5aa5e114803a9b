"""RFC 9162 proof verification: the 196 transparency-dev/merkle vectors and reference trees."""

import base64
import json
from hashlib import sha256

import pytest
from hypothesis import given, settings, strategies as st

from verifier import VerificationError
from verifier import merkle
from tests.conftest import VECTORS, vectors


def _b(s):
    return base64.b64decode(s) if s is not None else None


# transparency-dev/merkle testdata: 98 inclusion + 98 consistency cases (a missing file fails collection
# with what to do)
INCLUSION = vectors("rfc9162", "inclusion", glob="*.json", expect=98)
CONSISTENCY = vectors("rfc9162", "consistency", glob="*.json", expect=98)


@pytest.mark.parametrize("path", INCLUSION, ids=lambda p: str(p.relative_to(VECTORS)))
def test_inclusion_vectors(path):
    v = json.loads(path.read_text())
    proof = [_b(h) for h in (v.get("proof") or [])]
    args = (v["leafIdx"], v["treeSize"], _b(v["leafHash"]), proof, _b(v["root"]))
    if v["wantErr"]:
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY, ids=lambda p: str(p.relative_to(VECTORS)))
def test_consistency_vectors(path):
    v = json.loads(path.read_text())
    proof = [_b(h) for h in (v.get("proof") or [])]
    args = (v["size1"], v["size2"], proof, _b(v["root1"]), _b(v["root2"]))
    if v["wantErr"]:
        with pytest.raises(VerificationError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)


REF_LEAVES = [bytes.fromhex(h) for h in
              ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
               "606162636465666768696a6b6c6d6e6f"]]
REF_ROOT_PREFIXES = ["6e340b9c", "fac54203", "aeb6bcfe", "d37ee418", "4e3bbb1f", "76e67dad", "ddb89be4", "5dc9da79"]


def test_reference_tree_roots():
    hashes = [merkle.leaf_hash(x) for x in REF_LEAVES]
    assert merkle.root_of([]) == merkle.EMPTY_ROOT == sha256(b"").digest()
    for n in range(1, 9):
        assert merkle.root_of(hashes[:n]).hex().startswith(REF_ROOT_PREFIXES[n - 1])


def _leaves(n):
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def test_all_proofs_small_trees():
    leaves = _leaves(70)
    for n in range(1, 71):
        root = merkle.root_of(leaves[:n])
        for i in range(n):
            merkle.verify_inclusion(i, n, leaves[i], merkle.inclusion_proof(leaves[:n], i), root)
        for m in range(1, n + 1):
            merkle.verify_consistency(m, n, merkle.consistency_proof(leaves[:n], m), merkle.root_of(leaves[:m]), root)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.data())
def test_tampered_proofs_fail(n, data):
    leaves = _leaves(n)
    root = merkle.root_of(leaves)
    i = data.draw(st.integers(0, n - 1))
    proof = merkle.inclusion_proof(leaves, i)
    if proof:
        j = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        bad = list(proof)
        bad[j] = bytes(b ^ (1 << (bit % 8)) if k == bit // 8 else b for k, b in enumerate(bad[j]))
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(i, n, leaves[i], bad, root)
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(i, n, leaves[i], proof[:-1], root)
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(i, n, leaves[i], proof + [root], root)
    m = data.draw(st.integers(1, n))
    cproof = merkle.consistency_proof(leaves, m)
    r1 = merkle.root_of(leaves[:m])
    merkle.verify_consistency(m, n, cproof, r1, root)
    if m < n:
        with pytest.raises(VerificationError):
            merkle.verify_consistency(m, n, cproof, merkle.leaf_hash(b"x"), root)
        with pytest.raises(VerificationError):
            merkle.verify_consistency(m, n, cproof[:-1], r1, root)
