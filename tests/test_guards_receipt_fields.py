"""Receipt header fields decoded the same way by the one-pass path and the general decoder
(verifier/receipt.py, issue 16, mutation testing)."""

from __future__ import annotations

import pytest

from tests.test_receipt_support import LOG_ISSUER, LOG_ORIGIN, Log
from verifier import VerificationError, cbor, cose, merkle, receipt

LOG = Log(6)


def _receipt_with_alg(alg) -> bytes:
    """A receipt in the common (one-pass) shape whose protected alg is ``alg``, signed ES256."""
    prot = cbor.dumps({1: alg, 4: LOG.kid, 15: {1: LOG_ISSUER, 2: LOG_ORIGIN, 6: 1700000000}, receipt.HDR_VDS: 1})
    path = merkle.inclusion_proof(LOG.leaf_hashes, 2)
    sig = cose.sign_tbs(LOG.priv, cose.ES256, cose.sig_structure(prot, LOG.root(6)))
    return receipt.assemble_receipt(prot, sig, inclusion=[receipt.encode_inclusion_proof(6, 2, path)])


@pytest.mark.parametrize("alg", [True, False, "ES256", b"\x26", -7.0])
def test_alg_that_is_not_an_int_is_no_alg(alg):
    """An alg that is a bool, text, bytes or float is no COSE algorithm: both decoders report
    it missing (receipt.alg), neither hands it to the signature check."""
    data = _receipt_with_alg(alg)
    receipt._PROT_CACHE.clear()
    assert receipt._fast_layout(data) is not None
    fast, general = receipt.Receipt.parse(data), receipt.Receipt.parse(bytearray(data))
    assert fast.alg is None and general.alg is None
    for d in (data, bytearray(data)):
        with pytest.raises(VerificationError) as e:
            receipt.verify_inclusion_receipt(d, LOG.leaf_inputs[2], LOG.keys())
        assert e.value.check == "receipt.alg"


def test_int_alg_kept():
    data = _receipt_with_alg(cose.ES256)
    receipt._PROT_CACHE.clear()
    assert receipt.Receipt.parse(data).alg == cose.ES256 == receipt.Receipt.parse(bytearray(data)).alg
    assert receipt.verify_inclusion_receipt(data, LOG.leaf_inputs[2], LOG.keys()).index == 2


@pytest.mark.parametrize("head", range(0x98, 0x100))
def test_fast_proof_path_heads_beyond_one_byte_lengths(head):
    """A path array head other than 0x80-0x98 (two-, four-, eight-byte lengths, indefinite,
    other major types) is left to the strict decoder even where the next byte happens to equal
    the number of hashes that follow."""
    h = bytes(range(32))
    for count in (1, 2, 3):
        b = bytes([0x83, 0x06, 0x03, head, count]) + (b"\x58\x20" + h) * count
        fast = receipt._fast_proof(b)
        if head == 0x98:
            assert fast == [6, 3, [h] * count] == cbor.loads(b, max_depth=3)
        else:
            assert fast is None, (hex(head), count)


def _receipt_with_proof(proof_bytes: bytes) -> bytes:
    one = Log(1)
    prot = one.protected()
    sig = cose.sign_tbs(one.priv, one.alg, cose.sig_structure(prot, one.root(1)))
    return receipt.assemble_receipt(prot, sig, inclusion=[proof_bytes]), one


@pytest.mark.parametrize("proof", [
    [-1, 0, []], [1, -1, []], [1, 0, ["a" * 32]], [2, 1, [b"\x00" * 31]], [1, 0, {}], [1, 0], [1.0, 0, []],
    [1, 0, [bytes(32)] * 65], {0: 1, 1: 0, 2: []},
], ids=["size<0", "index<0", "text-hash", "short-hash", "map-path", "two-items", "float-size", "65-hashes", "map"])
def test_proof_shape_refused_as_proof_format(proof):
    """[uint, uint, [32-byte bstr...]] or receipt.proof-format, before any Merkle arithmetic
    (which would refuse some of these too, under another name)."""
    data, one = _receipt_with_proof(cbor.dumps(proof))
    with pytest.raises(VerificationError) as e:
        receipt.verify_inclusion_receipt(data, one.leaf_inputs[0], one.keys())
    assert e.value.check == "receipt.proof-format"
    with pytest.raises(VerificationError) as e:
        receipt._proof(proof)
    assert e.value.check == "receipt.proof-format"


def test_decoded_path_hashes_must_be_bytes():
    """A decoded proof handed over as Python objects: a bytearray or memoryview of 32 bytes is
    not the bstr the wire format has."""
    for h in (bytearray(32), memoryview(bytes(32))):
        with pytest.raises(VerificationError) as e:
            receipt._proof([2, 1, [h]])
        assert e.value.check == "receipt.proof-format"
    assert receipt._proof([2, 1, [bytes(32)]]) == [2, 1, [bytes(32)]]
