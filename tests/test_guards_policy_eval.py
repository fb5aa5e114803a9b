"""The monitor's judgement of a statement by a registration policy document (verifier/policy.py,
issue 16 mutation survivors): the size bound is inclusive, a detached payload is judged on the
issuer's identity only (and says so), a presigned statement is not re-verified, and version 1
documents are judged by the rules of version 1 (no identity or log-type rules)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from verifier import cose
from verifier import keys as vkeys
from verifier.policy import POLICY_CONTENT_TYPE, PolicyViolation, RegistrationPolicy
from verifier.statement import SignedStatement

from .test_server_support import der, make_ca, make_leaf, statement


@pytest.fixture(scope="module")
def key():
    return ec.generate_private_key(ec.SECP256R1())


def _policy(key, *, version=2, size=1 << 20, idents=None) -> RegistrationPolicy:
    doc = {"version": version, "previous": None, "issuer-keys": [vkeys.cose_key_from_public(key.public_key())],
           "trust-anchors": [], "allowed-algs": [cose.ES256], "allowed-content-types": [],
           "max-statement-size": size}
    if version >= 2:
        kid = vkeys.thumbprint(key.public_key())
        doc |= {"issuer-identities": idents if idents is not None else {kid: ["https://issuer.example"]},
                "anchor-identities": {}}
    return RegistrationPolicy.from_document(doc)


def _reason(pol, st, **kw):
    try:
        pol.evaluate(st, **kw)
    except PolicyViolation as v:
        return v.reason
    return None


def test_size_bound_is_inclusive(key):
    st = SignedStatement.parse(statement(key))
    n = len(st.statement_bytes)
    assert _reason(_policy(key, size=n), st) is None
    assert _reason(_policy(key, size=n - 1), st) == "too-large"


def test_detached_payload_judged_on_identity_and_reported(key):
    data = statement(key, detached=True)
    st = SignedStatement.parse(data)
    pol = _policy(key)
    assert pol.evaluate(st) is False  # the identity was checked, the signature could not be
    assert pol.evaluate(st, payload=b'{"build": 1}') is True
    assert _reason(pol, st, payload=b'{"build": 2}') == "signature"


def test_presigned_statement_not_verified_again(key):
    good = statement(key)
    bad = good[:-1] + bytes([good[-1] ^ 1])
    st = SignedStatement.parse(bad)
    pol = _policy(key)
    assert _reason(pol, st) == "signature"
    assert pol.evaluate(st, presigned=True) is True  # the caller vouches it verified the signature


def test_version_1_has_no_identity_or_log_type_rules(key):
    other_iss = SignedStatement.parse(statement(key, iss="https://other.example"))
    log_type = SignedStatement.parse(statement(key, cty=POLICY_CONTENT_TYPE))
    kid = vkeys.thumbprint(key.public_key())
    v2, v1 = _policy(key), _policy(key, version=1)
    assert _reason(v2, other_iss) == "identity"
    assert _reason(v1, other_iss) is None
    assert _reason(v2, log_type) == "log-type"
    assert _reason(v1, log_type) is None
    own = SignedStatement.parse(statement(key))
    assert _reason(v2, own, log_kids={kid}) == "log-type"
    assert _reason(v1, own, log_kids={kid}) is None
    assert _reason(v2, own, log_kids={b"another kid"}) is None


def _v1(key=None, anchors=()) -> RegistrationPolicy:
    return RegistrationPolicy.from_document({
        "version": 1, "previous": None,
        "issuer-keys": [vkeys.cose_key_from_public(key.public_key())] if key is not None else [],
        "trust-anchors": [der(a) for a in anchors], "allowed-algs": [cose.ES256],
        "allowed-content-types": [], "max-statement-size": 1 << 20})


def test_x5chain_statement_signature_checked_with_the_chain_leaf_key():
    """An x5chain that validates to the policy's anchors is not enough: the statement must be
    signed by the leaf's key (reason "signature" otherwise)."""
    ca_key, ca = make_ca()
    leaf_key, leaf = make_leaf(ca_key, ca)
    pol = _v1(anchors=[ca])
    good = SignedStatement.parse(statement(leaf_key, kid=False, extra={33: der(leaf)}))
    assert _reason(pol, good) is None
    forged = SignedStatement.parse(statement(ec.generate_private_key(ec.SECP256R1()), kid=False,
                                             extra={33: der(leaf)}))
    assert _reason(pol, forged) == "signature"


def test_x5chain_ignored_by_a_policy_without_anchors_when_the_kid_is_trusted(key):
    """A policy without trust anchors judges a statement carrying both a trusted kid and an
    x5chain by its kid alone; the x5chain is not validated against no anchors."""
    ca_key, ca = make_ca()
    _, leaf = make_leaf(ca_key, ca)
    st = SignedStatement.parse(statement(key, extra={33: der(leaf)}))
    assert _reason(_v1(key), st) is None
    assert _reason(_v1(), st) == "untrusted-issuer"
