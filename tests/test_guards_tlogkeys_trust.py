"""tlog.keys.trust_entry: how a configured issuer key or trust anchor names the issuer identities
it may claim (issue 16: survivors of the final mutation run). A path alone claims none of its
own; iss is one identity or a non-empty list of non-empty texts; anything else is refused with
the key error, never accepted or turned into a TypeError."""

from __future__ import annotations

import pytest

from tlog.keys import KeyError_, trust_entry


@pytest.mark.parametrize("entry,expected", [
    ("/etc/tlog/ci.pem", ("/etc/tlog/ci.pem", None)),
    ({"path": "ci.pem"}, ("ci.pem", None)),
    ({"path": "ci.pem", "iss": None}, ("ci.pem", None)),
    ({"path": "ci.pem", "iss": "https://ci.example"}, ("ci.pem", ["https://ci.example"])),
    ({"path": "ci.pem", "iss": ["https://a.example", "https://b.example"]},
     ("ci.pem", ["https://a.example", "https://b.example"])),
    ('{"path": "ci.pem", "iss": ["https://ci.example"]}', ("ci.pem", ["https://ci.example"])),
])
def test_trust_entries_read(entry, expected):
    assert trust_entry(entry) == expected


@pytest.mark.parametrize("iss", [[], [""], ["https://ok.example", ""], [1], 5, {"https://ci.example": 1}, ("https://ci.example",)])
def test_an_iss_that_is_not_a_non_empty_list_of_texts_is_refused(iss):
    with pytest.raises(KeyError_, match="iss must be a non-empty list"):
        trust_entry({"path": "ci.pem", "iss": iss})


@pytest.mark.parametrize("entry", [{"iss": ["x"]}, {"path": 5}, {"path": "p", "other": 1}, 7, '{"path": '])
def test_a_malformed_entry_is_refused(entry):
    with pytest.raises(KeyError_):
        trust_entry(entry)
