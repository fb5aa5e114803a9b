"""The EAR a TWI record embeds (draft-ietf-rats-ear, a CMW record ``[type, bstr, ind?]``) is
believed only when signed by a trusted RATS Verifier of the developer and build the trust
configuration names for that key, with an asymmetric JWS alg (RFC 8725 3.1, 3.2: no ``none``,
no HMAC whose "secret" would be the Verifier's public key) (issue 16, verifier/credential/ear.py)."""

from __future__ import annotations

import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tests.test_twi_support import TestVerifier
from verifier import VerificationError
from verifier.credential.ear import verify_ear
from verifier.credential.trust import TrustConfig, load_verifier_keys

MEDIA = "application/eat+jwt"


@pytest.fixture(scope="module")
def v():
    return TestVerifier()


def _rec(v, tok: bytes, vid=None) -> dict:
    return {"attestation": {"ar": [MEDIA, tok], "ar_digest": {"sha256": hashlib.sha256(tok).hexdigest()},
                            "verifier_id": vid or {"developer": v.developer, "build": v.build}}}


def _trust(v, developer="same", build="same") -> TrustConfig:
    keys = load_verifier_keys(v.keys_obj())
    return TrustConfig(log_keys={}, verifier_keys=[
        (v.developer if developer == "same" else developer, v.build if build == "same" else build, k)
        for _, _, k in keys])


def test_verified_under_the_named_developer_or_any(v):
    tok = v.ear().encode()
    ok, claims = verify_ear(_rec(v, tok), _trust(v))
    assert ok and claims["ear_verifier_id"] == {"developer": v.developer, "build": v.build}
    assert verify_ear(_rec(v, tok), _trust(v, developer=None, build=None))[0] is True  # a key for any Verifier


def test_key_of_another_developer_not_used(v):
    """A key trusted for Verifier A does not vouch for an EAR naming Verifier B, even when it
    verifies the signature: the configuration binds keys to Verifier identities."""
    tok = v.ear().encode()
    for trust in (_trust(v, developer="https://other.test"), _trust(v, developer="https://other.test", build=None)):
        with pytest.raises(VerificationError) as e:
            verify_ear(_rec(v, tok), trust)
        assert e.value.check == "record.ear-signature"


def test_no_verifier_keys_means_no_ear_check(v):
    """Without trusted Verifier keys the EAR is not checked (not believed either): (False, None)."""
    tok = v.ear().encode()
    assert verify_ear(_rec(v, tok), TrustConfig(log_keys={}, verifier_keys=[])) == (False, None)


def test_verifier_id_claim_must_match_the_record(v):
    tok = v.ear(vid={"developer": v.developer, "build": "other"}).encode()
    with pytest.raises(VerificationError) as e:
        verify_ear(_rec(v, tok), _trust(v))
    assert e.value.check == "record.ear-verifier"
    legacy = v.ear(legacy=True).encode()  # ear.verifier-id, the older claim name
    assert verify_ear(_rec(v, legacy), _trust(v))[0] is True
    claims = jwt.decode(v.ear(), options={"verify_signature": False})
    claims["ear_verifier_id"] = [v.developer, v.build]  # not a map
    tok = jwt.encode(claims, v.key, algorithm="ES256").encode()
    with pytest.raises(VerificationError) as e:
        verify_ear(_rec(v, tok, vid=[v.developer, v.build]), _trust(v))
    assert e.value.check == "record.ear-verifier"


def _resigned(v, alg: str, key) -> bytes:
    claims = jwt.decode(v.ear(), options={"verify_signature": False})
    return jwt.api_jws.PyJWS().encode(json.dumps(claims).encode(), key,
                                       algorithm=alg).encode()


@pytest.mark.parametrize("alg", ["none", "HS256", "HS512"])
def test_symmetric_or_unsigned_ear_refused_as_bad_alg(v, alg):
    """alg none, or HMAC keyed with the Verifier's public key (the key-confusion attack):
    refused as a bad alg before any key is tried."""
    pem = v.key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if alg == "none":
        tok = _resigned(v, "none", None)
    else:
        claims = jwt.decode(v.ear(), options={"verify_signature": False})
        tok = jwt.encode(claims, "k" * 64, algorithm=alg).encode()
        h, c, _ = tok.split(b".")
        digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
        sig = hmac.new(pem, h + b"." + c, digest).digest()
        tok = h + b"." + c + b"." + jwt.utils.base64url_encode(sig)
    with pytest.raises(VerificationError) as e:
        verify_ear(_rec(v, tok), _trust(v))
    assert e.value.check == "record.ear"


def test_ear_record_shape(v):
    """The CMW record is an array [type, bstr, ind?]; a map with the same members is not one;
    a record without ar_digest does not match the EAR (no crash)."""
    tok = v.ear().encode()
    rec = _rec(v, tok)
    rec["attestation"]["ar"] = {0: MEDIA, 1: tok}
    with pytest.raises(VerificationError) as e:
        verify_ear(rec, _trust(v))
    assert e.value.check == "record.ear"
    rec = _rec(v, tok)
    del rec["attestation"]["ar_digest"]
    with pytest.raises(VerificationError) as e:
        verify_ear(rec, _trust(v))
    assert e.value.check == "record.ear-digest"


HEX = "ab" * 32


@pytest.mark.parametrize("claim", [
    5, True, {"digest": {"sha256": HEX}},                        # the claim is no array
    [{"digest": {5: HEX}}],                                     # an algorithm name that is no text
    [{"name": 5, "digest": {"sha256": HEX}}],                   # a name that is no text
    [{"name": b"img", "digest": {"sha256": HEX}}],
], ids=["int", "bool", "map", "int-alg", "int-name", "bytes-name"])
def test_attested_artifacts_claim_shape(claim):
    """Each attested artefact is {name?: text, digest: {alg text: lowercase hex}} in an array,
    whatever else is well-formed about it."""
    from verifier.credential.ear import attested_artifacts
    from verifier.credential.wire import ATTESTED_ARTIFACTS_CLAIM

    with pytest.raises(VerificationError) as e:
        attested_artifacts({ATTESTED_ARTIFACTS_CLAIM: claim})
    assert e.value.check == "record.ear"
    assert attested_artifacts({ATTESTED_ARTIFACTS_CLAIM: [{"name": "img", "digest": {"sha256": HEX}}]}) == [
        {"digest": {"sha256": HEX}, "name": "img"}]
