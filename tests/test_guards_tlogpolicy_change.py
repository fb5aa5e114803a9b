"""The "policy changed" description (tlog.policy.describe_change) field by field (issue 16,
mutation testing): the ``previous`` link and unchanged fields are not changes; two lists are
compared by their items, two maps (or a map that appears or goes, as when a version 1 policy
without identity maps becomes a version 2 one) by their keys and values; anything else as from/to."""

from __future__ import annotations

from tlog.policy import describe_change


def test_the_first_policy_and_the_previous_link():
    assert describe_change(None, {"version": 2}) == {"first": True}
    # every new policy has another previous link: that alone is no change
    assert describe_change({"previous": "aa" * 32, "max-statement-size": 5},
                           {"previous": "bb" * 32, "max-statement-size": 5}) == {}
    assert describe_change({"previous": None}, {"previous": "bb" * 32}) == {}


def test_unchanged_fields_are_left_out():
    doc = {"allowed-algs": [-7, -35], "issuer-identities": {b"k": ["https://a"]}, "max-statement-size": 9,
           "trust-anchors": []}
    assert describe_change(doc, dict(doc)) == {}
    assert describe_change(doc, dict(doc, **{"max-statement-size": 10})) == {
        "max-statement-size": {"from": 9, "to": 10}}


def test_lists_by_their_items():
    assert describe_change({"allowed-algs": [-7, -35]}, {"allowed-algs": [-35, -36, -8]}) == {
        "allowed-algs": {"added": 2, "removed": 1}}


def test_a_list_that_appears_or_goes_is_from_to():
    """A list beside a missing field is not compared item by item (no crash on None)."""
    assert describe_change({}, {"allowed-content-types": ["a/b"]}) == {
        "allowed-content-types": {"from": None, "to": ["a/b"]}}
    assert describe_change({"allowed-content-types": ["a/b"]}, {}) == {
        "allowed-content-types": {"from": ["a/b"], "to": None}}


def test_a_map_that_appears_or_goes_counts_its_keys():
    """A version 1 policy has no identity maps: the version 2 one that follows adds them."""
    ids = {b"k1": ["https://a"], b"k2": ["https://b"]}
    assert describe_change({"version": 1}, {"version": 2, "issuer-identities": ids}) == {
        "version": {"from": 1, "to": 2},
        "issuer-identities": {"added": 2, "removed": 0, "changed": 0}}
    assert describe_change({"issuer-identities": ids}, {}) == {
        "issuer-identities": {"added": 0, "removed": 2, "changed": 0}}


def test_a_key_in_both_maps_counts_as_changed_only_when_its_value_differs():
    old = {"anchor-identities": {b"a": ["https://a"], b"b": ["https://b"], b"c": ["https://c"]}}
    new = {"anchor-identities": {b"a": ["https://a"], b"b": ["https://b2"], b"d": ["https://d"]}}
    assert describe_change(old, new) == {"anchor-identities": {"added": 1, "removed": 1, "changed": 1}}
