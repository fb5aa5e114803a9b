"""RFC 9053 algorithms and their keys: each alg signs and verifies only with its own key type
(ES256/384/512 with P-256/384/521, EdDSA with Ed25519, PS256/384/512 with RSA of 2048 bits or
more); any other pairing is refused as ``cose.key`` before any signature math, a signature by
another key of the right type is ``cose.signature`` (issue 16, verifier/cose.py)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from verifier import VerificationError, cose

TBS = cose.sig_structure(b"\xa1\x01\x26", b"payload")


@pytest.fixture(scope="module")
def ks():
    return {
        "p256": ec.generate_private_key(ec.SECP256R1()), "p384": ec.generate_private_key(ec.SECP384R1()),
        "p521": ec.generate_private_key(ec.SECP521R1()), "ed25519": ed25519.Ed25519PrivateKey.generate(),
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }


ALG_KEY = {cose.ES256: "p256", cose.ES384: "p384", cose.ES512: "p521", cose.EDDSA: "ed25519",
           cose.ED25519: "ed25519", cose.PS256: "rsa", cose.PS384: "rsa", cose.PS512: "rsa"}


@pytest.mark.parametrize("alg", ALG_KEY, ids=[cose.ALG_NAMES.get(a, str(a)) for a in ALG_KEY])
def test_each_alg_with_each_key(ks, alg):
    own = ALG_KEY[alg]
    sig = cose.sign_tbs(ks[own], alg, TBS)
    cose.verify_tbs(ks[own].public_key(), alg, TBS, sig)
    with pytest.raises(VerificationError) as e:
        cose.verify_tbs(ks[own].public_key(), alg, TBS + b"x", sig)
    assert e.value.check == "cose.signature"
    for kind, k in ks.items():
        if kind == own:
            continue
        with pytest.raises(VerificationError) as e:
            cose.sign_tbs(k, alg, TBS)
        assert e.value.check == "cose.key", kind
        with pytest.raises(VerificationError) as e:
            cose.verify_tbs(k.public_key(), alg, TBS, sig)
        assert e.value.check == "cose.key", kind
    with pytest.raises(VerificationError) as e:  # a public key cannot sign
        cose.sign_tbs(ks[own].public_key(), alg, TBS)
    assert e.value.check == "cose.key"


def test_another_key_of_the_right_type_is_a_bad_signature(ks):
    for kind, make in (("p256", lambda: ec.generate_private_key(ec.SECP256R1())),
                       ("ed25519", ed25519.Ed25519PrivateKey.generate)):
        alg = cose.alg_for_key(ks[kind])
        sig = cose.sign_tbs(ks[kind], alg, TBS)
        with pytest.raises(VerificationError) as e:
            cose.verify_tbs(make().public_key(), alg, TBS, sig)
        assert e.value.check == "cose.signature"


def test_short_rsa_keys_refused(ks):
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    sig = cose.sign_tbs(small, cose.PS256, TBS)
    with pytest.raises(VerificationError) as e:
        cose.verify_tbs(small.public_key(), cose.PS256, TBS, sig)
    assert e.value.check == "cose.key" and "2048" in e.value.detail


@pytest.mark.parametrize("alg", [0, 1, -999, -257, -16])
def test_unknown_alg_refused(ks, alg):
    for k in ks.values():
        with pytest.raises(VerificationError) as e:
            cose.sign_tbs(k, alg, TBS)
        assert e.value.check == "cose.alg"
        with pytest.raises(VerificationError) as e:
            cose.verify_tbs(k.public_key(), alg, TBS, b"\x00" * 64)
        assert e.value.check == "cose.alg"


def test_default_alg_per_key(ks):
    want = {"p256": cose.ES256, "p384": cose.ES384, "p521": cose.ES512, "ed25519": cose.EDDSA, "rsa": cose.PS256}
    for kind, k in ks.items():
        assert cose.alg_for_key(k) == cose.alg_for_key(k.public_key()) == want[kind]
    for bad in (ec.generate_private_key(ec.SECP256K1()), b"key", None):
        with pytest.raises(VerificationError) as e:
            cose.alg_for_key(bad)
        assert e.value.check == "cose.key"


def test_verify_sign1_payload_rules(ks):
    """RFC 9052 4.4: the signature covers the attached payload, or the detached one the caller
    supplies; a supplied payload that differs from an attached one is refused."""
    k = ks["p256"]
    attached = cose.decode_sign1(cose.sign1(k, {1: cose.ES256}, b"data"))
    cose.verify_sign1(attached, k.public_key())
    cose.verify_sign1(attached, k.public_key(), payload=b"data")
    with pytest.raises(VerificationError) as e:
        cose.verify_sign1(attached, k.public_key(), payload=b"other")
    assert e.value.check == "cose.payload"
    detached = cose.decode_sign1(cose.sign1(k, {1: cose.ES256}, b"data", detached=True))
    cose.verify_sign1(detached, k.public_key(), payload=b"data")
    with pytest.raises(VerificationError) as e:
        cose.verify_sign1(detached, k.public_key())
    assert e.value.check == "cose.payload-missing"
    with pytest.raises(VerificationError) as e:
        cose.verify_sign1(detached, k.public_key(), payload=b"other")
    assert e.value.check == "cose.signature"
    cose.verify_sign1(attached, k.public_key(), allowed_algs={cose.ES256})
    with pytest.raises(VerificationError) as e:
        cose.verify_sign1(attached, k.public_key(), allowed_algs={cose.EDDSA})
    assert e.value.check == "cose.alg"
