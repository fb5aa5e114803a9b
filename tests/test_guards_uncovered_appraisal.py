"""issuer.appraisal verifier keys of every JWK type (issue 16: the OKP and RSA branches of
public_key_from_jwk / jwk_alg and speaks_for's developer check were run by no test)."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from issuer.appraisal import VerifierKeys, jwk_alg, public_key_from_jwk
from issuer.errors import IssuerError


def _okp_jwk():
    priv = ed25519.Ed25519PrivateKey.generate()
    return priv, json.loads(OKPAlgorithm.to_jwk(priv.public_key()))


def test_an_okp_jwk_gives_an_ed25519_key_that_verifies():
    priv, jwk = _okp_jwk()
    assert jwk["kty"] == "OKP" and jwk_alg(jwk) == "EdDSA"
    pub = public_key_from_jwk(jwk)
    assert isinstance(pub, ed25519.Ed25519PublicKey)
    pub.verify(priv.sign(b"msg"), b"msg")


def test_an_rsa_jwk_gives_an_rsa_key_with_ps256_by_default():
    priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(priv.public_key()))
    jwk.pop("alg", None)
    assert jwk_alg(jwk) == "PS256"
    pub = public_key_from_jwk(jwk)
    assert isinstance(pub, rsa.RSAPublicKey) and pub.public_numbers() == priv.public_key().public_numbers()


def test_an_unknown_key_type_is_refused():
    with pytest.raises(IssuerError) as e:
        public_key_from_jwk({"kty": "oct", "k": "AAAA"})
    assert e.value.check == "appraisal.keys"
    with pytest.raises(IssuerError):
        jwk_alg({"kty": "oct"})


def test_a_key_of_one_developer_does_not_speak_for_another():
    _, jwk = _okp_jwk()
    keys = VerifierKeys.from_obj({"verifiers": [{"id": {"developer": "https://a.example"}, "keys": [jwk]}]})
    assert len(keys.candidates({"developer": "https://a.example", "build": "x"}, "EdDSA")) == 1
    assert keys.candidates({"developer": "https://b.example", "build": "x"}, "EdDSA") == []
