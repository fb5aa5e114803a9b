"""The log's content-type rule (tlog.policy.Policy.check, issue 16): a hash envelope (RFC 9995)
is judged by its preimage content type (259), any other statement by its content type (3); the
parser refuses a statement with both, so the two never meet in the rule (the reason two operand
mutants of tlog.policy._content_type are recorded as equivalent); a statement's kid is matched
to the configured issuer keys (by RFC 9679 thumbprint), and a statement with no kid is never
matched to one."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tlog.keys import TrustStore
from tlog.policy import Policy, Rejection
from verifier import VerificationError, cose
from verifier import keys as vkeys
from verifier.statement import SignedStatement

from .test_receipt_support import signed_statement

ISS = "https://issuer.example"
JSON = "application/json"


@pytest.fixture(scope="module")
def key():
    return ec.generate_private_key(ec.SECP256R1())


def _policy(key, ctys) -> Policy:
    kid = vkeys.thumbprint(key.public_key())
    trust = TrustStore(issuer_keys={kid: key.public_key()}, key_identities={kid: [ISS]})
    return Policy(trust=trust, allowed_algs=[cose.ES256], allowed_content_types=list(ctys))


def _reason(pol, data: bytes):
    try:
        pol.check(SignedStatement.parse(data))
    except Rejection as r:
        return r.reason
    return None


def _envelope(key, preimage_cty):
    extra = {3: None, 258: -16, 259: preimage_cty}
    return signed_statement(key, hashlib.sha256(b"the document").digest(), iss=ISS, extra=extra)


def test_a_hash_envelope_is_judged_by_its_preimage_content_type(key):
    pol = _policy(key, [JSON])
    assert _reason(pol, signed_statement(key, iss=ISS)) is None  # cty 3 = application/json
    assert _reason(pol, _envelope(key, JSON)) is None
    assert _reason(pol, _envelope(key, "text/plain")) == "content-type"
    assert _reason(pol, signed_statement(key, iss=ISS, extra={3: "text/plain"})) == "content-type"
    # an envelope without 259 and a statement without 3 have no content type to allow
    assert _reason(pol, _envelope(key, None)) == "content-type"
    assert _reason(pol, signed_statement(key, iss=ISS, extra={3: None})) == "content-type"
    # an empty list allows any
    assert _reason(_policy(key, []), _envelope(key, None)) is None


def test_content_type_and_hash_envelope_never_meet(key):
    both = signed_statement(key, hashlib.sha256(b"x").digest(), iss=ISS, extra={258: -16, 259: JSON})
    with pytest.raises(VerificationError) as e:
        SignedStatement.parse(both)
    assert e.value.check == "statement.hash-envelope"


def test_the_kid_is_matched_to_the_configured_issuer_keys(key):
    pol = _policy(key, [])
    other = ec.generate_private_key(ec.SECP256R1())
    assert _reason(pol, signed_statement(key, iss=ISS)) is None
    assert _reason(pol, signed_statement(other, iss=ISS)) == "untrusted-issuer"
    # the trusted key's kid on a statement another key signed: the signature decides
    forged = signed_statement(other, iss=ISS, extra={4: vkeys.thumbprint(key.public_key())})
    assert _reason(pol, forged) == "signature"
    # no kid (an x5chain statement with no anchor configured): not matched to any key
    no_kid = signed_statement(key, iss=ISS, extra={4: None, 33: [b"\x30\x00"]})
    assert _reason(pol, no_kid) == "x509"
