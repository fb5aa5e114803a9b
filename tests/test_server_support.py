"""Helpers shared by the server tests (issuer keys, certificates, statements). No tests here."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from verifier import cose
from verifier import keys as vkeys


def write_public(path: Path, key) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


ISS = "https://issuer.example"  # the iss of statement() by default


def bound(path, *iss: str) -> dict:
    """A trusted issuer key entry with the identities it may claim (default: :data:`ISS`)."""
    return {"path": str(path), "iss": list(iss) or [ISS]}


def bound_arg(path, *iss: str) -> str:
    """The same as a command-line ``--issuer-key`` value (a JSON object)."""
    import json

    return json.dumps(bound(path, *iss))


def kid_of(key) -> bytes:
    return vkeys.thumbprint(key.public_key())


def statement(key, *, iss="https://issuer.example", sub="workload/1", payload=b'{"build": 1}',
              cty="application/json", kid=True, extra=None, detached=False, alg=None, unprotected=None) -> bytes:
    prot = {15: {1: iss, 2: sub}}
    if cty is not None:
        prot[3] = cty
    if kid:
        prot[4] = kid_of(key) if kid is True else kid
    if alg is not None:
        prot[1] = alg
    if extra:
        prot.update(extra)
    return cose.sign1(key, prot, payload, detached=detached, unprotected=unprotected)


def make_ca(name="Test Root"):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subj = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subj)
        .issuer_name(subj)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(ca_key, ca_cert, name="issuer.example"):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        # the SAN URI is the issuer identity (iss) the leaf may claim (verifier/identity.py)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name), x509.UniformResourceIdentifier(f"https://{name}")]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def der(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def ed25519_key():
    return ed25519.Ed25519PrivateKey.generate()
