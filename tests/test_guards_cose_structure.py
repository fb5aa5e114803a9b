"""COSE_Sign1 decoding (RFC 9052 4.2, with RFC 8949 well-formedness): a tagged array of
exactly [protected bstr (a map, or empty), unprotected map, payload bstr / nil, signature
bstr], nothing after it; each deviation refused under its own check, never a crash
(issue 16, verifier/cose.py). Every case is decoded from bytes built by hand."""

from __future__ import annotations

import pytest

from verifier import VerificationError, cbor, cose

PROT = cbor.dumps({1: -7})
SIG = bytes(64)


def _msg(prot=cbor.encode_bstr(PROT), unprot=b"\xa0", payload=cbor.encode_bstr(b"hello"),
         sig=cbor.encode_bstr(SIG), head=b"\xd2\x84", tail=b"") -> bytes:
    return head + prot + unprot + payload + sig + tail


def test_well_formed_variants_decode():
    m = cose.decode_sign1(_msg())
    assert (m.protected, m.unprotected, m.payload, m.signature) == ({1: -7}, {}, b"hello", SIG)
    m = cose.decode_sign1(_msg(payload=b"\xf6"))
    assert m.payload is None
    m = cose.decode_sign1(_msg(prot=b"\x40"))  # an empty protected bstr is the empty map
    assert m.protected == {} and m.alg is None
    m = cose.decode_sign1(_msg(prot=cbor.encode_bstr(b"\xa0")))
    assert m.protected == {}
    m = cose.decode_sign1(_msg(unprot=cbor.dumps({4: b"kid"})))
    assert m.unprotected == {4: b"kid"}
    m = cose.decode_sign1(_msg(payload=b"\x40", sig=b"\x40"))  # empty payload and signature are bstrs
    assert m.payload == b"" and m.signature == b""
    for data in (bytearray(_msg()), memoryview(_msg())):
        assert cose.decode_sign1(data).payload == b"hello"
    exact = _msg()
    assert cose.decode_sign1(exact, max_size=len(exact)).signature == SIG


BAD = {
    "not-bytes": ("\xd2\x84", "cose.type"),
    "empty": (b"", "cose.tag"),
    "tag-only": (b"\xd2", "cose.tag"),
    "tag-and-array-head-only": (b"\xd2\x84", "cbor.truncated"),
    "untagged": (_msg(head=b"\x84"), "cose.tag"),
    "tag-98-sign": (_msg(head=b"\xd8\x62\x84"), "cose.tag"),
    "tag-17-mac0": (_msg(head=b"\xd1\x84"), "cose.tag"),
    "three-items": (b"\xd2\x83" + cbor.encode_bstr(PROT) + b"\xa0" + cbor.encode_bstr(SIG), "cose.structure"),
    "five-items": (_msg(head=b"\xd2\x85", tail=b"\x00"), "cose.structure"),
    "map-not-array": (b"\xd2\xa2\x00\x00\x01\x01", "cose.structure"),
    "protected-as-map": (_msg(prot=PROT), "cose.protected"),
    "protected-as-tstr": (_msg(prot=b"\x63\xa1\x01\x26"), "cose.protected"),
    "protected-longer-than-message": (b"\xd2\x84\x58\x40" + PROT, "cbor.truncated"),
    "protected-bstr-holds-array": (_msg(prot=cbor.encode_bstr(b"\x81\x01")), "cose.protected"),
    "protected-bstr-holds-int": (_msg(prot=cbor.encode_bstr(b"\x01")), "cose.protected"),
    "protected-trailing-bytes": (_msg(prot=cbor.encode_bstr(PROT + b"\x00")), "cose.protected"),
    "protected-duplicate-label": (_msg(prot=cbor.encode_bstr(b"\xa2\x01\x26\x01\x26")), "cose.protected"),
    "unprotected-missing": (b"\xd2\x84" + cbor.encode_bstr(PROT), "cose.unprotected"),
    "unprotected-as-array": (_msg(unprot=b"\x80"), "cose.unprotected"),
    "unprotected-as-bstr": (_msg(unprot=b"\x41\xa0"), "cose.unprotected"),
    "unprotected-duplicate-label": (_msg(unprot=b"\xa2\x04\x41\x00\x04\x41\x01"), "cose.unprotected"),
    "unprotected-crit": (_msg(unprot=cbor.dumps({2: [1]})), "cose.crit"),
    "payload-missing": (b"\xd2\x84" + cbor.encode_bstr(PROT) + b"\xa0", "cbor.truncated"),
    "payload-tstr": (_msg(payload=b"\x65hello"), "cose.payload"),
    "payload-false": (_msg(payload=b"\xf4"), "cose.payload"),
    "payload-longer-than-message": (b"\xd2\x84" + cbor.encode_bstr(PROT) + b"\xa0\x45he", "cbor.truncated"),
    "signature-missing": (b"\xd2\x84" + cbor.encode_bstr(PROT) + b"\xa0\xf6", "cbor.truncated"),
    "signature-nil": (_msg(sig=b"\xf6"), "cose.signature-format"),
    "signature-tstr": (_msg(sig=b"\x61a"), "cose.signature-format"),
    "signature-longer-than-message": (_msg(sig=b"\x58\x40" + SIG[:63]), "cbor.truncated"),
    "trailing-byte": (_msg(tail=b"\x00"), "cose.trailing-bytes"),
    # a head cut inside its argument is truncated whatever its major type
    "protected-head-cut": (b"\xd2\x84\x19\x01", "cbor.truncated"),
    "payload-head-cut": (_msg(payload=b"\x19\x01", sig=b""), "cbor.truncated"),
    "signature-head-cut": (_msg(sig=b"\x19\x01"), "cbor.truncated"),
    "signature-simple-head-cut": (_msg(sig=b"\xf8"), "cbor.truncated"),
    # RFC 8949 3.3: a two-byte simple value below 32 is not well-formed; 32 and up, and a
    # half float, are well-formed items that are no bstr
    "payload-simple-0-in-two-bytes": (_msg(payload=b"\xf8\x00"), "cbor.malformed"),
    "payload-simple-31-in-two-bytes": (_msg(payload=b"\xf8\x1f"), "cbor.malformed"),
    "payload-simple-32": (_msg(payload=b"\xf8\x20"), "cose.payload"),
    "payload-half-float-0": (_msg(payload=b"\xf9\x00\x00"), "cose.payload"),
    "trailing-item": (_msg(tail=b"\xa0"), "cose.trailing-bytes"),
}


@pytest.mark.parametrize("data,check", BAD.values(), ids=BAD.keys())
def test_malformed_sign1_refused_by_name(data, check):
    with pytest.raises(VerificationError) as e:
        cose.decode_sign1(data)
    assert e.value.check == check


def test_size_limit_is_inclusive_of_the_limit():
    data = _msg()
    with pytest.raises(VerificationError) as e:
        cose.decode_sign1(data, max_size=len(data) - 1)
    assert e.value.check == "cose.size"


@pytest.mark.parametrize("proof_len", [0, 1, 40])
def test_receipt_shaped_unprotected_header_decodes_as_the_general_map(proof_len):
    """The one-bstr-proof shape {396: {-1: [bstr]}} is read by offsets; it must give what the
    general header decoder gives, and a proof longer than the message is truncated CBOR."""
    proof = bytes(range(proof_len))
    unprot = cbor.dumps({396: {-1: [proof]}})
    m = cose.decode_sign1(_msg(unprot=unprot, payload=b"\xf6"))
    assert m.unprotected == {396: {-1: [proof]}}
    assert m.statement_bytes() == _msg(payload=b"\xf6")
    with pytest.raises(VerificationError) as e:
        cose.decode_sign1(b"\xd2\x84" + cbor.encode_bstr(PROT) + unprot[:7] + b"\x58\x40" + proof)
    assert e.value.check == "cbor.truncated"
    two = cbor.dumps({396: {-1: [proof, proof]}})  # two proofs: the general decoder reads them
    assert cose.decode_sign1(_msg(unprot=two)).unprotected == {396: {-1: [proof, proof]}}
    tstr = cbor.dumps({396: {-1: ["text"]}})  # not a bstr: kept as decoded, not taken for a proof
    assert cose.decode_sign1(_msg(unprot=tstr)).unprotected == {396: {-1: ["text"]}}


@pytest.mark.parametrize("crit,ok", [
    ([1], True), (["x"], True), ([1, "x"], True),
    ([], False), (1, False), ([1, 1], False), ([b"\x01"], False), ([True], False), ([3], False),
])
def test_crit_form(crit, ok):
    """RFC 9052 3.1: crit is a non-empty array of distinct int/tstr labels, each present in the
    protected header."""
    prot = cbor.dumps({1: -7, "x": 0, 2: crit})
    if ok:
        assert cose.decode_sign1(_msg(prot=cbor.encode_bstr(prot))).protected[2] == crit
    else:
        with pytest.raises(VerificationError) as e:
            cose.decode_sign1(_msg(prot=cbor.encode_bstr(prot)))
        assert e.value.check == "cose.crit"


def test_crit_label_not_understood_refused():
    m = cose.decode_sign1(_msg(prot=cbor.encode_bstr(cbor.dumps({1: -7, 2: [1]}))))
    cose.check_crit(m.protected, {1})
    m = cose.decode_sign1(_msg(prot=cbor.encode_bstr(cbor.dumps({1: -7, "x": 0, 2: [1, "x"]}))))
    with pytest.raises(VerificationError) as e:
        cose.check_crit(m.protected, {1})
    assert e.value.check == "cose.crit"


@pytest.mark.parametrize("alg", [True, False, "ES256", -7.0, b"\x26", None])
def test_alg_must_be_an_int(alg):
    prot = {} if alg is None else {1: alg}
    m = cose.decode_sign1(_msg(prot=cbor.encode_bstr(cbor.dumps(prot) if prot else b"")))
    assert m.alg is None
    with pytest.raises(VerificationError) as e:
        cose.verify_sign1(m, None)
    assert e.value.check == "cose.alg"


def test_statement_bytes_of_a_built_message():
    """A Sign1 made in code (no received bytes) has the same statement bytes as the decoded
    message: the COSE_Sign1 with its unprotected header emptied (the log's leaf input)."""
    data = _msg(unprot=cbor.dumps({4: b"kid", 394: [b"receipt"]}))
    m = cose.decode_sign1(data)
    built = cose.Sign1(m.protected_raw, m.protected, m.unprotected, m.payload, m.signature)
    assert built.statement_bytes() == m.statement_bytes() == _msg()


def test_sign1_without_payload_is_refused_by_name():
    from tests.test_receipt_support import key

    with pytest.raises(VerificationError) as e:
        cose.sign1(key("p256"), {1: -7}, None)
    assert e.value.check == "cose.payload-missing"


def test_missing_alg_is_named_before_a_missing_detached_payload():
    """verify_sign1: a message without alg is refused as cose.alg, also when its payload is
    detached and none is supplied (the alg decides everything else)."""
    m = cose.decode_sign1(_msg(prot=b"\x40", payload=b"\xf6"))
    with pytest.raises(VerificationError) as e:
        cose.verify_sign1(m, None)
    assert e.value.check == "cose.alg"


@pytest.mark.parametrize("label", [23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, -24, -25, -65537, -(2**32) - 1])
def test_header_labels_at_head_width_boundaries(label):
    """RFC 9052 / RFC 8949 4.2.1: a header label in its shortest encoding is accepted at every
    boundary of the head width (1, 2, 3, 5 and 9 bytes); the same label one width longer is
    refused (cbor.non-shortest, reported under cose.protected)."""
    prot = cbor.dumps({label: 1})
    assert cose.decode_sign1(_msg(prot=cbor.encode_bstr(prot))).protected == {label: 1}
    arg = label if label >= 0 else -1 - label
    major = 0 if label >= 0 else 0x20
    ai = prot[1] & 0x1F  # the shortest head's additional information
    if ai == 27:
        return  # 8 bytes: no longer head exists
    wider = 24 if ai < 24 else ai + 1
    wide = bytes([0xA1, major | wider]) + arg.to_bytes(1 << (wider - 24), "big") + b"\x01"
    with pytest.raises(VerificationError) as e:
        cose.decode_sign1(_msg(prot=cbor.encode_bstr(wide)))
    assert e.value.check == "cose.protected"
