"""The well-formedness scanner (verifier.cbor.scan, the hot-path check used without decoding)
agrees with the strict decoder on every initial byte followed by nothing or one byte of each kind and on every one-byte-argument
head (exhaustive; issue 16's mutation testing found its bounds untested), and never reads past
the ``end`` it is given."""

from __future__ import annotations

import cbor2
import pytest

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


def test_empty_containers_need_no_depth():
    """An empty array or map opens no level to descend into: accepted at the depth limit,
    where a non-empty one is refused (cbor.depth)."""
    assert cbor.loads(b"\xa0", max_depth=0) == {}
    assert cbor.loads(b"\x80", max_depth=0) == []
    assert cbor.loads(b"\x81\xa0", max_depth=1) == [{}]
    for data in (b"\xa1\x01\x02", b"\x81\x01"):
        with pytest.raises(VerificationError) as e:
            cbor.loads(data, max_depth=0)
        assert e.value.check == "cbor.depth"


def test_tag_counts_one_level_and_one_item():
    assert cbor.loads(b"\xc1\x00", max_depth=1) == cbor2.CBORTag(1, 0)
    with pytest.raises(VerificationError) as e:
        cbor.loads(b"\xc1\x00", max_depth=0)
    assert e.value.check == "cbor.depth"
    assert cbor.loads(b"\xc1\x00", max_items=1) == cbor2.CBORTag(1, 0)
    with pytest.raises(VerificationError) as e:
        cbor.loads(b"\xc1\x00", max_items=0)
    assert e.value.check == "cbor.items"


def test_map_item_budget_is_inclusive():
    """A map of n pairs costs 2n items: exactly the budget is accepted, one less refused."""
    assert cbor.loads(b"\xa1\x01\x02", max_items=2) == {1: 2}
    with pytest.raises(VerificationError) as e:
        cbor.loads(b"\xa1\x01\x02", max_items=1)
    assert e.value.check == "cbor.items"


@pytest.mark.parametrize("key", [-1, -24, -25, -100, -256, 23, 24, 100, "k"])
def test_map_keys_decode_to_their_value(key):
    """Small keys are decoded inline: each key (one-byte and two-byte heads, positive and
    negative) decodes to itself, in header mode too."""
    data = cbor.dumps({key: 1, 1000: b"v"})
    assert cbor.loads(data) == {key: 1, 1000: b"v"}
    assert cbor.decode_item(data, 0, len(data), header_labels=8) == ({key: 1, 1000: b"v"}, len(data))


def test_short_bstr_value_longer_than_the_data_is_truncated():
    """A map value ``58 LL`` whose LL bytes are not all there is truncated CBOR; one that
    ends exactly at the end decodes."""
    assert cbor.loads(b"\xa1\x01\x58\x02ab") == {1: b"ab"}
    for data in (b"\xa1\x01\x58\x05ab", b"\xa1\x01\x58\x03ab"):
        with pytest.raises(VerificationError) as e:
            cbor.loads(data)
        assert e.value.check == "cbor.truncated"


def test_undefined_is_decoded():
    assert cbor.loads(b"\xf7") is cbor2.undefined
    assert cbor.loads(b"\x82\xf6\xf7") == [None, cbor2.undefined]


def test_depth_limit_above_the_supported_maximum_is_refused():
    assert cbor.decode_item(b"\x00", 0, 1, max_depth=64) == (0, 1)
    with pytest.raises(VerificationError) as e:
        cbor.decode_item(b"\x00", 0, 1, max_depth=65)
    assert e.value.check == "cbor.depth"


def test_spans_need_their_container_type():
    assert cbor.array_spans(b"\x82\x01\x02", 0, 3) == ([(1, 2), (2, 3)], 3)
    assert cbor.map_spans(b"\xa1\x01\x02", 0, 3) == ([((1, 2), (2, 3))], 3)
    for fn, data in ((cbor.array_spans, b"\xa0"), (cbor.map_spans, b"\x80"), (cbor.array_spans, b"\x00")):
        with pytest.raises(VerificationError) as e:
            fn(data, 0, len(data))
        assert e.value.check == "cbor.type"


@pytest.mark.parametrize("obj", ["a0", 5, None, [0xA0]])
def test_loads_needs_bytes(obj):
    with pytest.raises(VerificationError) as e:
        cbor.loads(obj)
    assert e.value.check == "cbor.type"


def test_encode_head_bounds():
    assert cbor.encode_head(0, 2**64 - 1) == b"\x1b" + b"\xff" * 8
    with pytest.raises(ValueError, match="too large"):
        cbor.encode_head(0, 2**64)


def test_dumps_refuses_deep_structures_and_sorts_frozendicts():
    deep: list = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ValueError, match="too deep"):
        cbor.dumps(deep)
    # a cbor2 frozendict is encoded as a map with RFC 8949 4.2.1 bytewise key order (24 = 18 18
    # before -1 = 20), like a dict: not cbor2's length-first canonical order
    assert cbor.dumps(cbor2.frozendict({24: 0, -1: 0})) == cbor.dumps({24: 0, -1: 0}) == bytes.fromhex("a21818002000")
