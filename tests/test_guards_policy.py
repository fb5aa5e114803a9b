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
