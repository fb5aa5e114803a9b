"""The receipt fast paths decline or agree with the general strict path at every byte they read
by offset, for every value of that byte (exhaustive, not sampled: issue 16's mutation testing
found fast-path checks that random mutations almost never reach)."""

from __future__ import annotations

import pytest

from tests.test_receipt_fastpath import LARGE, LEAF, LOG, SMALL, _agree, _general
from tests.test_receipt_support import Log
from verifier import VerificationError, cbor, cose, receipt, transparent


def _structural_offsets(data: bytes) -> list[int]:
    p, q, e = receipt._fast_layout(data)
    proof = data[q:e]
    _, _, path = receipt._fast_proof(proof)
    heads = q + len(proof) - 34 * len(path)  # first hash head
    offs = set(range(0, 5)) | set(range(p, q + 1)) | set(range(q, heads + 1)) | set(range(e - 1, e + 4))
    for j in {0, len(path) - 1}:  # the first and the last hash's head
        offs |= {heads + 34 * j, heads + 34 * j + 1}
    return sorted(o for o in offs if o < len(data))


@pytest.mark.parametrize("base", [SMALL, LARGE], ids=["small", "large"])
def test_every_value_of_every_structural_byte(base):
    for i in _structural_offsets(base):
        for v in range(256):
            if v != base[i]:
                _agree(base[:i] + bytes([v]) + base[i + 1:])


def _general_proof(b: bytes):
    try:
        with _general():
            return receipt._proof(cbor.loads(b, max_depth=3))
    except VerificationError:
        return None


def test_fast_proof_decoder_agrees_with_the_strict_one():
    """``_fast_proof`` returns None (the strict decoder decides) or exactly what it decodes."""
    for size, index, n in ((6, 3, 3), (1, 0, 0), (300, 7, 9), (70000, 65536, 2)):
        path = [bytes([j]) * 32 for j in range(n)]
        proof = receipt.encode_inclusion_proof(size, index, path)
        assert receipt._fast_proof(proof) == [size, index, path]
        for i in range(min(len(proof), 16)):
            for v in range(256):
                b = proof[:i] + bytes([v]) + proof[i + 1:]
                fast = receipt._fast_proof(b)
                if fast is not None:
                    assert fast == _general_proof(b), (i, v)


def test_receipt_parse_limits_and_types():
    """The fast parse serves only bytes at the default limits; other limits and types get the
    general decoder, which enforces them."""
    assert receipt.Receipt.parse(bytearray(SMALL)).sign1.signature == receipt.Receipt.parse(SMALL).sign1.signature
    with pytest.raises(VerificationError):
        receipt.Receipt.parse(SMALL, max_size=len(SMALL) - 1)
    with pytest.raises(VerificationError):
        receipt.Receipt.parse(SMALL, max_depth=2)


def test_proof_numbers_must_be_unsigned_ints_not_bools():
    """[true, false, []] decodes to Python ints 1 and 0 (bool is an int): still refused."""
    one = Log(1)
    prot = one.protected()
    sig = cose.sign_tbs(one.priv, one.alg, cose.sig_structure(prot, one.root(1)))
    good = receipt.assemble_receipt(prot, sig, inclusion=[receipt.encode_inclusion_proof(1, 0, [])])
    assert receipt.verify_inclusion_receipt(good, one.leaf_inputs[0], one.keys()).size == 1
    bools = receipt.assemble_receipt(prot, sig, inclusion=[b"\x83\xf5\xf4\x80"])
    with pytest.raises(VerificationError) as e:
        receipt.verify_inclusion_receipt(bools, one.leaf_inputs[0], one.keys())
    assert e.value.check == "receipt.proof-format"


def test_receipts_found_under_their_label_only():
    """Inline (tagged) receipts are found by the span scan under label 394, not under another
    label that comes first in the unprotected map."""
    stmt = LOG.statements[3]
    m = cose.decode_sign1(stmt)
    rec = LOG.inclusion_receipt(3)
    unprot = b"\xa2" + cbor.dumps(99) + cbor.dumps([b"not a receipt"]) + cbor.dumps(394) + b"\x81" + rec
    ts = stmt[:m.unprotected_start] + unprot + stmt[m.unprotected_end:]
    assert transparent.extract_receipts(ts) == [rec]


def test_proof_path_length_bound():
    h = b"\x01" * 32
    assert len(receipt._proof([1, 0, [h] * receipt.MAX_PATH])[2]) == receipt.MAX_PATH
    for too_long in ([1, 0, [h] * (receipt.MAX_PATH + 1)],
                     receipt.encode_inclusion_proof(1, 0, [h] * (receipt.MAX_PATH + 1))):  # decoded and as bytes
        with pytest.raises(VerificationError) as e:
            receipt._proof(too_long)
        assert e.value.check == "receipt.proof-format"


def test_receipt_needs_alg_and_one_proof():
    m = cose.decode_sign1(SMALL)
    prot = dict(m.protected)
    del prot[1]
    no_alg = cose.encode_sign1(cbor.dumps(prot), m.unprotected, None, m.signature)
    with pytest.raises(VerificationError) as e:
        receipt.verify_inclusion_receipt(no_alg, LEAF, LOG.keys())
    assert e.value.check == "receipt.alg"
    c = cose.decode_sign1(LOG.consistency_receipt(3, 6))
    [proof] = c.unprotected[396][-2]
    two = cose.encode_sign1(c.protected_raw, {396: {-2: [proof, proof]}}, None, c.signature)
    with pytest.raises(VerificationError) as e:
        receipt.verify_consistency_receipt(two, size1=3, root1=LOG.root(3), keys=LOG.keys())
    assert e.value.check == "receipt.proof-count"
    receipt.verify_consistency_receipt(LOG.consistency_receipt(3, 6), size1=3, root1=LOG.root(3), keys=LOG.keys())
