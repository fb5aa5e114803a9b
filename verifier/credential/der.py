"""Minimal DER for the X.509 pointer extension ``SEQUENCE { log IA5String, rid UTF8String }``."""

from __future__ import annotations

from ..errors import VerificationError


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _der_tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(value)) + value


def encode_pointer_ext(log: str, rid: str) -> bytes:
    """DER ``SEQUENCE { log IA5String, rid UTF8String }``."""
    try:
        log_b = log.encode("ascii")
    except UnicodeEncodeError:
        raise VerificationError("pointer.encode", "log URL must be ASCII") from None
    return _der_tlv(0x30, _der_tlv(0x16, log_b) + _der_tlv(0x0C, rid.encode("utf-8")))


def _der_read(data: bytes, pos: int) -> tuple[int, bytes, int]:
    if pos + 2 > len(data):
        raise VerificationError("pointer.der", "truncated")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        ln = first
    else:
        k = first & 0x7F
        if k == 0 or k > 4 or pos + k > len(data):
            raise VerificationError("pointer.der", "bad length")
        ln = int.from_bytes(data[pos:pos + k], "big")
        if ln < 0x80 or data[pos] == 0:
            raise VerificationError("pointer.der", "non-minimal length")
        pos += k
    if pos + ln > len(data):
        raise VerificationError("pointer.der", "truncated value")
    return tag, data[pos:pos + ln], pos + ln


def decode_pointer_ext(der: bytes) -> tuple[str, str]:
    tag, body, end = _der_read(der, 0)
    if tag != 0x30 or end != len(der):
        raise VerificationError("pointer.der", "not a single SEQUENCE")
    t1, log_b, p = _der_read(body, 0)
    t2, rid_b, p = _der_read(body, p)
    if t1 != 0x16 or t2 != 0x0C or p != len(body):
        raise VerificationError("pointer.der", "expected SEQUENCE { IA5String, UTF8String }")
    try:
        return log_b.decode("ascii"), rid_b.decode("utf-8")
    except UnicodeDecodeError:
        raise VerificationError("pointer.der", "bad string encoding") from None
