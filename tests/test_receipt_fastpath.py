"""The receipt fast path (fixed offsets, cached protected-header decoding) must agree with
the general strict decoder on every input: same result, or the same failing check."""

from __future__ import annotations

import hashlib
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_receipt_support import Log
from tests.test_verifier_props import mutated
from verifier import VerificationError, cose, merkle, receipt

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LOG = Log(6)
LEAF = LOG.leaf_inputs[3]
SMALL = LOG.inclusion_receipt(3)  # proof bstr < 256 bytes: head 58 xx


def _synthetic(size: int, index: int) -> bytes:
    """A receipt with a synthetic path (proof bstr >= 256 bytes: head 59 xx xx)."""
    inner = (index ^ (size - 1)).bit_length()
    n = inner + bin(index >> inner).count("1")
    path = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    root = merkle.root_from_inclusion_proof(index, size, merkle.leaf_hash(LEAF), path)
    prot = LOG.protected(iat=1_700_000_123)
    sig = cose.sign_tbs(LOG.priv, LOG.alg, cose.sig_structure(prot, root))
    return receipt.assemble_receipt(prot, sig, inclusion=[receipt.encode_inclusion_proof(size, index, path)])


LARGE = _synthetic(1000, 457)
BASES = [SMALL, LARGE]


def _general():
    """Context in which only the general decoder runs and nothing cached is used."""
    return mock.patch.multiple(receipt, _fast_parse=lambda data: None, _fast_inclusion=lambda *a: None,
                               _PROT_CACHE={})


def _parsed(data: bytes):
    try:
        r = receipt.Receipt.parse(data)
    except VerificationError as exc:
        return ("error", exc.check, exc.detail)
    m = r.sign1
    return ("ok", r.vds, r.alg, r.kid, r.issuer, r.subject, r.iat, m.protected_raw, m.protected, m.unprotected,
            m.payload, m.signature, m.unprotected_start, m.unprotected_end, m.statement_bytes())


def _verified(data: bytes):
    try:
        info = receipt.verify_inclusion_receipt(data, LEAF, LOG.keys())
    except VerificationError as exc:
        return ("error", exc.check, exc.detail)
    return ("ok", info)


def _agree(data: bytes) -> None:
    fast = (_parsed(data), _verified(data))
    with _general():
        general = (_parsed(data), _verified(data))
    assert fast == general


def test_fast_path_taken_for_the_common_shape():
    assert LARGE[receipt._fast_parse(LARGE).sign1.unprotected_start + 7] == 0x59
    for base in BASES:
        assert receipt._fast_parse(base) is not None
        _agree(base)
        assert _verified(base)[0] == "ok"


def test_one_pass_inclusion_taken_and_equal_to_the_general_path():
    assert LOG.alg == cose.ES256
    for base in BASES:
        info = receipt._fast_inclusion(base, LEAF, LOG.keys())
        assert info is not None
        with _general():
            assert receipt.verify_inclusion_receipt(base, LEAF, LOG.keys()) == info
    # any failed check makes the one-pass path decline (the general path names the failure)
    other_leaf = hashlib.sha256(b"another").digest()
    assert receipt._fast_inclusion(SMALL, other_leaf, LOG.keys()) is None
    assert _verified(SMALL[:-1] + bytes([SMALL[-1] ^ 1]))[:2] == ("error", "receipt.signature")
    # a kid naming no key, or a key of another curve: declined
    assert receipt._fast_inclusion(SMALL, LEAF, {}) is None
    from cryptography.hazmat.primitives.asymmetric import ec
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    assert receipt._fast_inclusion(SMALL, LEAF, {LOG.kid: p384}) is None


def test_protected_cache_is_bounded():
    for i in range(receipt._PROT_CACHE_MAX + 10):
        receipt._protected_entry(LOG.protected(iat=1_600_000_000 + i))
    assert len(receipt._PROT_CACHE) <= receipt._PROT_CACHE_MAX


def test_cached_protected_header_not_shared_with_callers():
    r1 = receipt.Receipt.parse(SMALL)
    r1.sign1.protected[15][1] = "https://evil.example"
    r1.sign1.protected[1] = -35
    r2 = receipt.Receipt.parse(SMALL)
    assert r2.sign1.protected[15][1] != "https://evil.example" and r2.alg == r2.sign1.protected[1] == LOG.alg
    # arrays too: a protected header with an array value (an unregistered label, kept as received)
    from verifier import cbor

    prot = cbor.dumps({1: LOG.alg, 4: LOG.kid, 15: {1: "https://log.example", 2: "o"}, receipt.HDR_VDS: 1,
                       -70000: [1, [2]]})
    sig = cose.sign_tbs(LOG.priv, LOG.alg, cose.sig_structure(prot, LOG.root(6)))
    data = receipt.assemble_receipt(prot, sig, inclusion=[receipt.encode_inclusion_proof(
        6, 3, merkle.inclusion_proof(LOG.leaf_hashes, 3))])
    r1 = receipt.Receipt.parse(data)
    r1.sign1.protected[-70000].append(3)
    r1.sign1.protected[-70000][1].append(4)
    assert receipt.Receipt.parse(data).sign1.protected[-70000] == [1, [2]]


@SETTINGS
@given(st.sampled_from(BASES).flatmap(mutated))
def test_fast_and_general_paths_agree_on_mutations(data):
    _agree(data)


@SETTINGS
@given(st.sampled_from(BASES), st.integers(0, 400), st.binary(min_size=1, max_size=4))
def test_fast_and_general_paths_agree_on_length_edits(base, i, chunk):
    # overwrite bytes near the heads the fast path reads by offset (lengths, markers)
    i = i % len(base)
    _agree(base[:i] + chunk + base[i + len(chunk):])
    _agree(base[:i] + chunk + base[i:])
