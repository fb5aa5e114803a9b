"""The well-formedness scanner (verifier.cbor.scan, the hot-path check used without decoding)
agrees with the strict decoder on every initial byte followed by nothing or one byte of each kind and on every one-byte-argument
head (exhaustive; issue 16's mutation testing found its bounds untested), and never reads past
the ``end`` it is given."""

from __future__ import annotations

from verifier import VerificationError, cbor

# every initial byte, followed by nothing or by one byte of every kind (heads of each major type
# and argument width, simple values, reserved and indefinite codes)
SECOND = bytes([0x00, 0x01, 0x17, 0x18, 0x1B, 0x1C, 0x1F, 0x20, 0x38, 0x40, 0x41, 0x58, 0x5F, 0x60, 0x61, 0x7F,
                0x80, 0x81, 0x98, 0x9F, 0xA0, 0xA1, 0xBF, 0xC0, 0xC1, 0xD8, 0xDF, 0xE0, 0xF4, 0xF6, 0xF7, 0xF8,
                0xF9, 0xFB, 0xFC, 0xFF])
CASES = ([bytes([a]) for a in range(256)] + [bytes([a, b]) for a in range(256) for b in SECOND]
         + [bytes([a, b, c]) for a in range(0x18, 0x1C) for b in range(256) for c in (0, 1, 0x20, 0x80)]
         # two-, four- and eight-byte arguments of every major type, small values, with content
         + [bytes([major << 5 | ai]) + v.to_bytes(1 << (ai - 24), "big") + content
            for major in range(8) for ai in (25, 26, 27) for v in (0, 1, 2, 31, 256)
            for content in (b"", b"\x00", b"\x00\x00", b"ab")])


# the checks of well-formedness (RFC 8949 appendix F), which scan makes too; the decoder's
# others (simple values, UTF-8, map keys, trailing bytes after a complete item) are validity
WELL_FORMED = {"cbor.truncated", "cbor.malformed", "cbor.indefinite-length", "cbor.depth", "cbor.tag"}


def _res(f, *args):
    try:
        return ("ok", f(*args))
    except VerificationError as e:
        return ("err", e.check)


def test_scan_agrees_with_the_decoder():
    """Whatever decodes scans to its end; whatever scan refuses, the decoder refuses with the same
    check, and refuses what the decoder finds not well-formed (scan checks well-formedness only)."""
    bad = []
    for d in CASES:
        s, ld = _res(cbor.scan, d), _res(cbor.loads, d)
        if (ld[0] == "ok" and s != ("ok", len(d))) or (s[0] == "err" and ld != s) or (
                ld[0] == "err" and ld[1] in WELL_FORMED and d[0] >> 5 != 3 and s != ld):
            # (text strings left out of the last rule: the decoder reports bad UTF-8 as malformed)
            bad.append((d.hex(), s, ld))
    assert not bad, bad[:10]


def test_scan_stops_at_end():
    """Bytes after ``end`` are not there: scanning a prefix inside a longer buffer gives what
    scanning the prefix alone gives (truncated stays truncated)."""
    bad = []
    for d in CASES:
        alone = _res(cbor.scan, d)
        for pad in (b"\x00", b"\x18\x18\x18\x18\x18\x18\x18\x18\x18"):
            inside = _res(cbor.scan, d + pad, 0, len(d))
            if inside != alone:
                bad.append((d.hex(), pad.hex(), alone, inside))
            shifted = _res(cbor.scan, pad + d + pad, len(pad), len(pad) + len(d))
            if shifted != (alone if alone[0] == "err" else ("ok", alone[1] + len(pad))):
                bad.append((d.hex(), "shifted", alone, shifted))
    assert not bad, bad[:10]
    assert cbor.scan(b"\x18\x64") == 2 and cbor.scan(b"\x19\x01\x00") == 3  # a head that ends the data


def test_scan_depth_limit():
    assert cbor.scan(b"\x81" * 16 + b"\x00") == 17
    for deep in (b"\x81" * 17 + b"\x00", b"\xc1" * 17 + b"\x00", b"\xa1\x00" * 17 + b"\x00"):
        assert _res(cbor.scan, deep) == ("err", "cbor.depth")
        assert _res(cbor.scan, deep, 0, None) == ("err", "cbor.depth")
    assert cbor.scan(b"\x81" * 3 + b"\x00", max_depth=3) == 4
    assert _res(cbor.scan, b"\x81" * 4 + b"\x00", 0, None) == ("ok", 5)
    assert cbor.scan(b"\x81" * 4 + b"\x00", max_depth=4) == 5


def test_normalize_converts_inside_plain_dicts():
    """normalize turns cbor2's tuples into lists at any depth, under a plain dict too."""
    assert cbor.normalize({1: (2, (3,)), 4: [(5,)]}) == {1: [2, [3]], 4: [[5]]}
    assert cbor.normalize(((1, 2),)) == [[1, 2]]
    assert cbor.normalize(b"x") == b"x" and cbor.normalize(None) is None


def test_brief_formats_each_kind_bounded():
    """brief: ints up to 64 bits as digits, larger ones by size; strings up to the limit whole,
    longer ones cut; bool, float and None as repr; other objects by type name only."""
    assert cbor.brief(2**64 - 1) == "18446744073709551615"
    assert cbor.brief(-(2**63)) == str(-(2**63))
    assert cbor.brief(2**64) == "<65-bit integer>"
    assert cbor.brief("a" * 48) == repr("a" * 48)
    assert cbor.brief("a" * 49) == repr("a" * 48) + "... (49 characters)"
    assert cbor.brief(b"\x00" * 3, limit=3) == repr(b"\x00" * 3)
    assert cbor.brief(b"\x00" * 4, limit=3) == repr(b"\x00" * 3) + "... (4 bytes)"
    assert cbor.brief(None) == "None"
    assert cbor.brief(True) == "True" and cbor.brief(False) == "False"
    assert cbor.brief(1.5) == "1.5"
    assert cbor.brief([1]) == "<list>"


def test_brief_hex_bounded():
    assert cbor.brief_hex(bytes(32)) == "00" * 32
    assert cbor.brief_hex(bytes(33)) == "00" * 32 + "... (33 bytes)"
    assert cbor.brief_hex(b"\xab", limit=1) == "ab"
