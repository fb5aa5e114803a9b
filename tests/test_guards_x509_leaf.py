"""x5chain path validation (RFC 5280 6.1, RFC 9360): the leaf's KeyUsage and BasicConstraints
are optional (RFC 5280 4.2.1.3, 4.2.1.9), but when present the leaf must be allowed to sign
(digitalSignature) and must not be a CA; a chain is validated to a configured anchor at a
given time (issue 16, verifier/x509.py)."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from verifier import VerificationError
from verifier.x509 import cert_hash, validate_chain, validate_path

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, issuer, pub, ikey, *, ca=None, ku=None):
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer)).public_key(pub)
         .serial_number(x509.random_serial_number())
         .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=30))
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ikey.public_key()), critical=False))
    if ca is not None:
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if ku is not None:
        b = b.add_extension(x509.KeyUsage(digital_signature=ku == "sign", content_commitment=False,
                                          key_encipherment=ku == "encipher", data_encipherment=False,
                                          key_agreement=False, key_cert_sign=bool(ca), crl_sign=bool(ca),
                                          encipher_only=False, decipher_only=False), critical=True)
    return b.sign(ikey, hashes.SHA256())


def _der(c):
    return c.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def root():
    rk = ec.generate_private_key(ec.SECP256R1())
    return rk, _cert("root", "root", rk.public_key(), rk, ca=True, ku="certsign")


@pytest.mark.parametrize("ca,ku", [(None, None), (False, None), (None, "sign"), (False, "sign")])
def test_leaf_without_the_optional_extensions_or_with_allowed_values_validates(root, ca, ku):
    rk, rc = root
    lk = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert("leaf", "root", lk.public_key(), rk, ca=ca, ku=ku)
    path = validate_path([_der(leaf)], [rc])
    assert [c.subject for c in path] == [leaf.subject, rc.subject]
    assert validate_chain([_der(leaf)], [rc]) == leaf


@pytest.mark.parametrize("ca,ku,why", [(True, "sign", "CA"), (None, "encipher", "digitalSignature"),
                                       (False, "encipher", "digitalSignature")])
def test_leaf_that_may_not_sign_or_is_a_ca_refused(root, ca, ku, why):
    rk, rc = root
    lk = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert("leaf", "root", lk.public_key(), rk, ca=ca, ku=ku)
    with pytest.raises(VerificationError) as e:
        validate_path([_der(leaf)], [rc])
    assert e.value.check == "x509.chain" and why in e.value.detail


def test_chain_inputs(root):
    rk, rc = root
    lk = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert("leaf", "root", lk.public_key(), rk, ku="sign")
    for chain, anchors, check in (([], [rc], "x509.chain"), ([_der(leaf)], [], "x509.no-anchors"),
                                  ([b"\x30\x03\x02\x01\x00"], [rc], "x509.parse")):
        with pytest.raises(VerificationError) as e:
            validate_path(chain, anchors)
        assert e.value.check == check
    with pytest.raises(VerificationError) as e:  # outside the validity period
        validate_path([_der(leaf)], [rc], at_time=NOW + datetime.timedelta(days=60))
    assert e.value.check == "x509.chain"


def test_cert_hash_x5t():
    """RFC 9360 x5t: [hash alg, hash]; SHA-256 (-16) is the one every peer supports."""
    der = b"\x30\x00"
    assert cert_hash(-16, der) == hashlib.sha256(der).digest()
    for alg in (-999, "sha256", None):
        with pytest.raises(VerificationError) as e:
            cert_hash(alg, der)
        assert e.value.check == "statement.x5t"
