"""Property tests: hostile bytes never raise anything but VerificationError, and mutated
signed material never verifies."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_receipt_support import Log, key, leaf_input_of
from verifier import VerificationError, cbor, cose, keys, merkle, receipt, transparent
from verifier.statement import SignedStatement

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LOG = Log(6)
ISSUER = key("p256", 1)
STATEMENT = LOG.statements[3]
RECEIPT = LOG.inclusion_receipt(3)
CONSISTENCY = LOG.consistency_receipt(3, 6)
TS = transparent.attach_receipts(STATEMENT, [RECEIPT])
LEAF = LOG.leaf_inputs[3]


@st.composite
def mutated(draw, base: bytes):
    """A bit flip, truncation, appended bytes, a deleted or inserted byte, or a splice."""
    kind = draw(st.sampled_from(["flip", "truncate", "append", "delete", "insert", "splice"]))
    b = bytearray(base)
    if kind == "flip":
        i = draw(st.integers(0, len(b) - 1))
        b[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        b = b[: draw(st.integers(0, len(b) - 1))]
    elif kind == "append":
        b += draw(st.binary(min_size=1, max_size=16))
    elif kind == "delete":
        del b[draw(st.integers(0, len(b) - 1))]
    elif kind == "insert":
        b.insert(draw(st.integers(0, len(b))), draw(st.integers(0, 255)))
    else:
        i = draw(st.integers(0, len(b) - 1))
        chunk = draw(st.binary(min_size=1, max_size=8))
        b[i : i + len(chunk)] = chunk
    out = bytes(b)
    if out == base:
        out = base + b"\x00"
    return out


def _only_verification_errors(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except VerificationError:
        return None


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_only_verification_errors(data):
    for fn in (cose.decode_sign1, SignedStatement.parse, receipt.Receipt.parse, cbor.loads, keys.decode_keyset,
               transparent.extract_receipts):
        _only_verification_errors(fn, data)
    _only_verification_errors(receipt.verify_inclusion_receipt, data, LEAF, LOG.keys())
    _only_verification_errors(transparent.check_transparent_statement, data, LOG.keys())


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_behind_valid_prefix(data):
    # valid tag/array prefix so the decoder goes deeper
    for prefix in (b"\xd2\x84", b"\xd2\x84\x40", b"\xd2\x84\x40\xa1", b"\xd2\x84\x40\xa1\x19\x01\x8c"):
        _only_verification_errors(cose.decode_sign1, prefix + data)
        _only_verification_errors(receipt.verify_inclusion_receipt, prefix + data, LEAF, LOG.keys())


@SETTINGS
@given(mutated(STATEMENT))
def test_mutated_statement_never_verifies(data):
    try:
        s = SignedStatement.parse(data)
    except VerificationError:
        return
    with pytest.raises(VerificationError):
        s.verify(ISSUER.public_key())


def _same_signed_content(data: bytes, original: bytes) -> None:
    """A mutant that still verifies may differ only in unsigned bytes: same protected
    header, same signature (the signed root is checked by the caller)."""
    a, b = cose.decode_sign1(data), cose.decode_sign1(original)
    assert (a.protected_raw, a.signature) == (b.protected_raw, b.signature)


@SETTINGS
@given(mutated(RECEIPT))
def test_mutated_receipt_never_verifies_other_content(data):
    try:
        info = receipt.verify_inclusion_receipt(data, LEAF, LOG.keys())
    except VerificationError:
        return
    # RFC 9942 signs only the root: a re-encoded proof may still verify, never another root
    assert info.root == LOG.root(6)
    _same_signed_content(data, RECEIPT)


@SETTINGS
@given(mutated(CONSISTENCY))
def test_mutated_consistency_receipt_never_verifies_other_content(data):
    try:
        info = receipt.verify_consistency_receipt(data, size1=3, root1=LOG.root(3), keys=LOG.keys())
    except VerificationError:
        return
    assert info.root2 == LOG.root(6)
    _same_signed_content(data, CONSISTENCY)


def test_tree_size_is_not_signed_known_limitation():
    """Documented RFC 9942 property found by the test above: only the root is signed, so
    a consistency proof 3 -> 6 relabelled 3 -> 7 (same hashes) yields the same root and
    verifies. The size claim is authenticated only by comparing the root with a signed
    checkpoint of that size (twi-verify consistency reports such a mismatch as a fork)."""
    m = cose.decode_sign1(CONSISTENCY)
    [(s1, s2, path)] = receipt.Receipt.parse(CONSISTENCY).proofs(-2)
    relabelled = cose.encode_sign1(m.protected_raw, {396: {-2: [receipt.encode_consistency_proof(3, 7, path)]}},
                                   None, m.signature)
    info = receipt.verify_consistency_receipt(relabelled, size1=3, root1=LOG.root(3), keys=LOG.keys())
    assert (info.size2, info.root2) == (7, LOG.root(6))


@SETTINGS
@given(mutated(TS))
def test_mutated_transparent_statement(data):
    try:
        rep = transparent.check_transparent_statement(data, LOG.keys(), issuer_key=ISSUER.public_key())
    except VerificationError:
        return
    if rep.ok:
        # only the unprotected header may have changed: the signed bytes must be intact
        assert cose.decode_sign1(data).statement_bytes() == STATEMENT
        for r in rep.receipts:
            if not r.ok:
                continue
            # the documented rule (docs/ARCHITECTURE.md, "What a receipt proves"): a receipt that
            # verifies proves the signed root, never another; its unsigned size and index are
            # confirmed by the signed checkpoint of the true size exactly when they are the true ones
            assert r.info.root == LOG.root(6) and r.info.leaf_hash == merkle.leaf_hash(LEAF)
            _same_signed_content(transparent.extract_receipts(data)[r.index], RECEIPT)
            if (r.info.size, r.info.index) == (6, 3):
                receipt.confirm_with_checkpoint(r.info.size, r.info.root, 6, LOG.root(6))
            else:
                with pytest.raises(VerificationError) as e:
                    receipt.confirm_with_checkpoint(r.info.size, r.info.root, 6, LOG.root(6))
                assert e.value.check == "receipt.tree-size"


def test_flipped_tree_size_is_caught_by_the_checkpoint():
    """The example Hypothesis found (issue 16): tree_size 6 -> 7 at index 3 still verifies;
    the signed checkpoint of size 6 refuses the claimed size."""
    [(size, index, path)] = receipt.Receipt.parse(RECEIPT).proofs(-1)
    m = cose.decode_sign1(RECEIPT)
    flipped = cose.encode_sign1(m.protected_raw, {396: {-1: [receipt.encode_inclusion_proof(7, index, path)]}},
                                None, m.signature)
    ts = transparent.attach_receipts(STATEMENT, [flipped])
    [r] = transparent.check_transparent_statement(ts, LOG.keys(), issuer_key=ISSUER.public_key()).receipts
    assert r.ok and (r.info.size, r.info.index, r.info.root) == (7, 3, LOG.root(6))
    with pytest.raises(VerificationError) as e:
        receipt.confirm_with_checkpoint(r.info.size, r.info.root, 6, LOG.root(6))
    assert e.value.check == "receipt.tree-size"


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 300), st.data())
def test_inlined_inclusion_root_matches_merkle(size, data):
    index = data.draw(st.integers(0, size - 1))
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(size)]
    path = merkle.inclusion_proof(leaves, index)
    assert receipt._root_from_inclusion(index, size, leaves[index], path) == merkle.root_of(leaves)
    assert receipt._root_from_inclusion(index, size, leaves[index], path) == \
        merkle.root_from_inclusion_proof(index, size, leaves[index], path)


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.integers(-30, 400) | st.text(max_size=5),
                                                                     children, max_size=4),
    max_leaves=20))
def test_cbor_roundtrip_deterministic(obj):
    enc = cbor.dumps(obj)
    import cbor2

    assert cbor2.loads(enc) == obj or cbor.normalize(cbor2.loads(enc)) == obj
    try:
        dec = cbor.loads(enc, max_depth=64)
    except VerificationError as exc:
        assert exc.check == "cbor.depth"
        return
    assert dec == obj
    assert cbor.dumps(dec) == enc


@SETTINGS
@given(st.binary(min_size=1, max_size=64), st.binary(max_size=64))
def test_statement_bytes_depend_only_on_signed_parts(u1, u2):
    m = cose.decode_sign1(STATEMENT)
    a = STATEMENT[: m.unprotected_start] + cbor.dumps({99: u1}) + STATEMENT[m.unprotected_end:]
    b = STATEMENT[: m.unprotected_start] + cbor.dumps({99: u2, 394: [u1]}) + STATEMENT[m.unprotected_end:]
    assert cose.decode_sign1(a).statement_bytes() == cose.decode_sign1(b).statement_bytes() == STATEMENT
    assert leaf_input_of(a) == leaf_input_of(b) == LEAF
