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


ORIGIN = "t.example/log"


def _policy_doc(*issuers) -> dict:
    return {"version": 1, "previous": None, "issuer-keys": [vkeys.cose_key_from_public(k.public_key()) for k in issuers],
            "trust-anchors": [], "allowed-algs": [cose.ES256], "allowed-content-types": [],
            "max-statement-size": 1 << 20}


def _policy_statement(signer, *, cty=POLICY_CONTENT_TYPE, sub=ORIGIN + "/registration-policy", doc=None,
                      detached=False, previous=None) -> bytes:
    from verifier import cbor

    doc = dict(doc or _policy_doc())
    doc["previous"] = previous
    prot = {1: cose.ES256, 3: cty, 4: vkeys.thumbprint(signer.public_key()), 15: {1: "https://t.example", 2: sub}}
    return cose.sign1(signer, prot, cbor.dumps(doc), detached=detached)


def test_open_policy_statement_refusals():
    """A policy statement is the policy content type, under one of the log's kids, with its
    payload attached, signed by that key, for the expected origin: each deviation refused by
    name (policy.statement, or policy.signature for a signature that does not verify)."""
    from verifier import VerificationError
    from verifier.policy import log_keys_from, open_policy_statement

    lkey = ec.generate_private_key(ec.SECP256R1())
    log_keys = log_keys_from([lkey.public_key()])
    S = SignedStatement.parse
    assert open_policy_statement(S(_policy_statement(lkey)), log_keys, origin=ORIGIN).version == 1
    other = ec.generate_private_key(ec.SECP256R1())
    cases = [
        (S(_policy_statement(lkey, cty="application/cbor")), {}, "policy.statement"),
        (S(_policy_statement(other)), {}, "policy.statement"),
        (S(_policy_statement(lkey, detached=True)), {}, "policy.statement"),
        (S(_policy_statement(lkey)), {"origin": "other.example/log"}, "policy.statement"),
        (S(_policy_statement(lkey, sub="t.example/log")), {"origin": ORIGIN}, "policy.statement"),
    ]
    for st, kw, check in cases:
        with pytest.raises(VerificationError) as e:
            open_policy_statement(st, log_keys, **kw)
        assert e.value.check == check, (st.sub, st.content_type, kw)


def test_tracker_grace_window_edges():
    """An entry refused by the policy in force is a race (admitted by the superseded policy)
    up to exactly ``grace`` seconds after the supersession, refused after; a policy superseded
    at an unknown time opens no window (and is no crash)."""
    from verifier.policy import PolicyTracker, log_keys_from

    lkey = ec.generate_private_key(ec.SECP256R1())
    a, b = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    S = SignedStatement.parse
    p1 = _policy_statement(lkey, doc=_policy_doc(a))
    p2 = _policy_statement(lkey, doc=_policy_doc(b), previous=S(p1).leaf_input.hex())
    for t_p2, t_entry, want in ((200, 210, "race"), (200, 210.5, None), (None, 210, None)):
        tr = PolicyTracker(log_keys_from([lkey.public_key()]), origin=ORIGIN, grace=10)
        tr.observe(0, S(p1), time=100)
        tr.observe(1, S(p2), time=t_p2)
        if want is None:
            with pytest.raises(PolicyViolation) as e:
                tr.observe(2, S(statement(a)), time=t_entry)
            assert e.value.reason == "untrusted-issuer"
        else:
            assert tr.observe(2, S(statement(a)), time=t_entry).kind == want
