"""The registration policy's mapping of verifier checks to SCRAPI problem reasons (tlog.policy.classify),
cases found unchecked by mutation testing (issue 16)."""

import pytest


@pytest.mark.parametrize("check,reason", [
    ("statement.iss-missing", "malformed"),      # "missing" without "payload" is no missing payload
    ("receipt.signature", "signature"),          # every check ending in "signature"
    ("chain.length", "x509"), ("trust.root", "x509"), ("statement.anchor", "x509"),
    ("statement.cert-expired", "x509"), ("statement.x5chain-order", "x509"),
    ("statement.kid", "malformed"), ("cbor.key-order", "malformed"), ("statement.key-type", "issuer-key"),
])
def test_more_rejections_classified(check, reason):
    from tlog.policy import classify
    from verifier import VerificationError

    assert classify(VerificationError(check, "why")).reason == reason


def test_version_1_refuses_log_types_only_under_a_log_kid():
    """A version 1 policy refuses a statement of the log's own types (here its registration
    policy type) when it is under one of the log's kids; under another kid the type alone does
    not refuse it as log-type."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from tlog.keys import TrustStore
    from tlog.policy import Policy, Rejection
    from verifier import keys as vkeys
    from verifier.policy import POLICY_CONTENT_TYPE
    from verifier.statement import SignedStatement

    from .test_server_support import statement

    k = ec.generate_private_key(ec.SECP256R1())
    kid = vkeys.thumbprint(k.public_key())
    pol = Policy(trust=TrustStore(issuer_keys={kid: k.public_key()}), allowed_algs=[-7], version=1)
    st = SignedStatement.parse(statement(k, cty=POLICY_CONTENT_TYPE))
    with pytest.raises(Rejection) as e:
        pol.check(st, log_kids={kid})
    assert e.value.reason == "log-type"
    try:
        pol.check(st, log_kids={b"another kid"})
    except Rejection as r:
        assert r.reason != "log-type"
    # version 1 has no rule against the log's kids for statements of other types
    pol.check(SignedStatement.parse(statement(k)), log_kids={kid})


def test_x5chain_statement_must_be_signed_by_the_chain_leaf_key():
    """The log admits an x5chain statement only when the chain validates to an anchor and the
    statement is signed by the leaf's key: the leaf certificate alone is not enough."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from tlog.keys import TrustStore
    from tlog.policy import Policy, Rejection
    from verifier.statement import SignedStatement

    from .test_server_support import der, make_ca, make_leaf, statement

    ca_key, ca = make_ca()
    leaf_key, leaf = make_leaf(ca_key, ca)
    pol = Policy(trust=TrustStore(anchors=[ca]), allowed_algs=[-7], version=1)
    pol.check(SignedStatement.parse(statement(leaf_key, kid=False, extra={33: der(leaf)})))
    forged = SignedStatement.parse(statement(ec.generate_private_key(ec.SECP256R1()), kid=False, extra={33: der(leaf)}))
    with pytest.raises(Rejection):
        pol.check(forged)
