"""verifier/cbor.py at its exact edges: a head whose argument ends at the last byte, a one-byte
integer argument (24..255) as a map value, and the encoder's nesting limit (issue 16: survivors of
the final mutation run)."""

import pytest

from verifier import cbor
from verifier.errors import VerificationError


@pytest.mark.parametrize("hexdata,expected", [
    ("1819", (0, 25, 2)), ("190100", (0, 256, 3)), ("1a00010000", (0, 65536, 5)),
    ("3818", (1, 24, 2)), ("5801", (2, 1, 2)),
])
def test_a_head_whose_argument_ends_at_the_last_byte_is_whole(hexdata, expected):
    data = bytes.fromhex(hexdata)
    assert cbor.head(data, 0, len(data)) == expected


def test_a_head_one_byte_short_is_truncated():
    with pytest.raises(VerificationError) as e:
        cbor.head(bytes.fromhex("1901"), 0, 2)
    assert e.value.check == "cbor.truncated"


@pytest.mark.parametrize("value", [23, 24, 25, 255, 256, -24, -25, -256])
def test_integers_around_the_one_byte_argument_as_map_values(value):
    data = cbor.dumps({1: value, 2: b"x"})
    assert cbor.loads(data) == {1: value, 2: b"x"}
    hdr, end = cbor.decode_item(data, 0, len(data), max_depth=4, max_items=16, header_labels=16)
    assert hdr == {1: value, 2: b"x"} and end == len(data)


def _nest(levels):
    x = []
    for _ in range(levels - 1):
        x = [x]
    return x


def test_the_encoder_takes_65_levels_and_refuses_66():
    """depth counts from 0 at the outermost item: 65 nested arrays (depths 0..64) encode."""
    assert cbor.dumps(_nest(65)) == b"\x81" * 64 + b"\x80"
    with pytest.raises(ValueError, match="too deep"):
        cbor.dumps(_nest(66))
