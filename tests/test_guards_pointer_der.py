"""The TWI pointer extension is DER (X.690 10.1: definite lengths in the fewest octets):
``SEQUENCE { log IA5String, rid UTF8String }`` and nothing else decodes (issue 16, mutation
survivors of verifier/credential/der.py). Every refusal is ``pointer.der``, never a crash."""

from __future__ import annotations

import pytest

from verifier import VerificationError
from verifier.credential.der import decode_pointer_ext, encode_pointer_ext

LOG = b"https://log.test"
RID = b"rid-1"


def _tlv(tag: int, value: bytes, length: bytes | None = None) -> bytes:
    if length is None:
        n = len(value)
        length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
            (n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + value


def _seq(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))


@pytest.mark.parametrize("log,rid", [("https://log.test", "rid-1"), ("https://log.test", ""),
                                     ("h", "r" * 127), ("https://" + "l" * 200, "r" * 128),
                                     ("https://log.test", "r" * 70000), ("https://log.test", "réf-é")])
def test_round_trip_short_and_long_form_lengths(log, rid):
    """Lengths below 128 take the short form, longer ones the long form with the fewest
    octets (one, two, three): all decode back, as do an empty rid and non-ASCII UTF-8."""
    der = encode_pointer_ext(log, rid)
    assert decode_pointer_ext(der) == (log, rid)
    assert decode_pointer_ext(_seq(_tlv(0x16, log.encode()), _tlv(0x0C, rid.encode()))) == (log, rid)


BAD = {
    "empty": b"",
    "one-byte": b"\x30",
    "indefinite-length": b"\x30\x80" + _tlv(0x16, LOG) + _tlv(0x0C, RID) + b"\x00\x00",
    "long-form-for-short-length": _tlv(0x30, _tlv(0x16, LOG) + _tlv(0x0C, RID), b"\x81\x19"),
    "long-form-leading-zero": _tlv(0x30, _tlv(0x16, LOG) + _tlv(0x0C, RID * 40),
                                   b"\x82" + len(_tlv(0x16, LOG) + _tlv(0x0C, RID * 40)).to_bytes(2, "big")),
    "long-form-leading-zero-inner": _seq(_tlv(0x16, LOG, b"\x82\x00\x10"), _tlv(0x0C, RID)),
    "long-form-short-inner": _seq(_tlv(0x16, LOG, b"\x81\x10"), _tlv(0x0C, RID)),
    "five-length-octets": b"\x30\x85\x00\x00\x00\x00\x19" + _tlv(0x16, LOG) + _tlv(0x0C, RID),
    "length-octets-missing": b"\x30\x82\x01",
    "length-beyond-data": _tlv(0x30, _tlv(0x16, LOG) + _tlv(0x0C, RID), b"\x1a"),
    "inner-length-beyond-sequence": _seq(_tlv(0x16, LOG), _tlv(0x0C, RID, b"\x06")),
    "inner-length-octets-missing": _seq(_tlv(0x16, LOG), b"\x0c\x82\x01"),
    "inner-head-cut": _seq(_tlv(0x16, LOG), b"\x0c"),
    "rid-missing": _seq(_tlv(0x16, LOG)),
    "empty-sequence": _seq(),
    "set-not-sequence": _tlv(0x31, _tlv(0x16, LOG) + _tlv(0x0C, RID)),
    "trailing-byte": _seq(_tlv(0x16, LOG), _tlv(0x0C, RID)) + b"\x00",
    "log-not-ia5": _seq(_tlv(0x0C, LOG), _tlv(0x0C, RID)),
    "rid-not-utf8": _seq(_tlv(0x16, LOG), _tlv(0x16, RID)),
    "swapped": _seq(_tlv(0x0C, RID), _tlv(0x16, LOG)),
    "third-element": _seq(_tlv(0x16, LOG), _tlv(0x0C, RID), b"\x05\x00"),
    "log-not-ascii": _seq(_tlv(0x16, "https://lög.test".encode()), _tlv(0x0C, RID)),
    "rid-not-utf8-bytes": _seq(_tlv(0x16, LOG), _tlv(0x0C, b"\xff\xfe")),
}


@pytest.mark.parametrize("der", BAD.values(), ids=BAD.keys())
def test_not_der_or_not_the_pointer_shape_refused(der):
    with pytest.raises(VerificationError) as e:
        decode_pointer_ext(der)
    assert e.value.check == "pointer.der"


def test_log_url_must_be_ascii():
    with pytest.raises(VerificationError) as e:
        encode_pointer_ext("https://lög.test", "r")
    assert e.value.check == "pointer.encode"


def test_indefinite_length_octet_is_not_length_128():
    """0x80 as a length octet is BER's indefinite form (X.690 8.1.3.6), not allowed in DER and
    not the length 128: a SEQUENCE header 30 80 followed by exactly 128 bytes of a well-formed
    body is refused."""
    body = _tlv(0x16, LOG) + _tlv(0x0C, b"r" * (128 - len(_tlv(0x16, LOG)) - 2))
    assert len(body) == 128
    assert decode_pointer_ext(_tlv(0x30, body)) == (LOG.decode(), "r" * 108)
    with pytest.raises(VerificationError) as e:
        decode_pointer_ext(b"\x30\x80" + body)
    assert e.value.check == "pointer.der"


def test_four_length_octets_accepted():
    """Lengths of 2**24 or more take four length octets (the most this decoder reads)."""
    rid = "r" * (1 << 24)
    der = encode_pointer_ext("https://log.test", rid)
    assert der[1] == 0x84
    assert decode_pointer_ext(der) == ("https://log.test", rid)
