"""verifier.cbor.brief: error texts name a tag by its number, never format its content (issue 16)."""

from __future__ import annotations

import cbor2

from verifier import cbor


def test_brief_names_tag_number_only():
    assert cbor.brief(cbor2.CBORTag(2, b"\xff" * 100_000)) == "tag 2"
    assert cbor.brief(cbor2.CBORTag(1 << 63, "x")) == f"tag {1 << 63}"
    assert cbor.brief([1, 2]) == "<list>"
