"""Minting workload credentials that carry the internal provenance binding.

* WIT (draft-ietf-wimse-workload-creds): JWS, header ``{"alg", "kid", "typ": "wit+jwt"}``,
  claims ``iss, sub, iat, exp, jti, cnf.jwk`` and the pointer claim
  :data:`verifier.credential.POINTER_CLAIM` = ``{"rid": <record id>, "log": <log URL>}``.
* X.509 SVID: exactly one URI SAN (critical, empty subject), ``cA=false``, digitalSignature,
  EKU serverAuth+clientAuth, and the non-critical pointer extension
  :data:`verifier.credential.POINTER_OID` (placeholder PEN arc, to be replaced).

The pointer is the *pre-allocated* record id of the Credential Provenance record plus the
log's URL, never a hash or receipt of the record (the record contains the credential's
hash, so the credential cannot contain the record's: CT's circularity lesson, TWI.md 5).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
import uuid
from typing import Any, Mapping

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from verifier import VerificationError, keys as vkeys
from verifier.credential import (POINTER_CLAIM, POINTER_OID, CredentialInfo, Pointer, b64url,
                                 encode_pointer_ext, parse_credential, validate_workload_id)

from .errors import IssuerError


def new_record_id() -> str:
    """A fresh Credential Provenance record id (122 random bits)."""
    return f"urn:uuid:{uuid.uuid4()}"


def jose_alg(key: Any) -> str:
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}[key.curve.name]
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "EdDSA"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "PS256"
    raise IssuerError("credential.key", f"unsupported key type {type(key).__name__}")


def key_id(key: Any) -> str:
    """The issuer key id used in JOSE headers: base64url of the RFC 9679 thumbprint
    (the same thumbprint that is the COSE ``kid`` of the issuer's signed statements)."""
    return b64url(vkeys.thumbprint(key))


def public_jwk(key: Any, *, alg: str | None = None) -> dict[str, str]:
    """The public JWK of a key (with ``alg``) via pyjwt."""
    pub = key.public_key() if hasattr(key, "public_key") and not isinstance(
        key, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, rsa.RSAPublicKey)) else key
    if isinstance(pub, ec.EllipticCurvePublicKey):
        from jwt.algorithms import ECAlgorithm
        jwk = ECAlgorithm.to_jwk(pub, as_dict=True)
    elif isinstance(pub, ed25519.Ed25519PublicKey):
        from jwt.algorithms import OKPAlgorithm
        jwk = OKPAlgorithm.to_jwk(pub, as_dict=True)
    elif isinstance(pub, rsa.RSAPublicKey):
        from jwt.algorithms import RSAAlgorithm
        jwk = RSAAlgorithm.to_jwk(pub, as_dict=True)
    else:
        raise IssuerError("credential.key", f"unsupported key type {type(pub).__name__}")
    jwk = {k: v for k, v in jwk.items() if k in ("kty", "crv", "x", "y", "n", "e")}
    jwk["alg"] = alg or jose_alg(pub)
    return jwk


def mint_wit(issuer_key: Any, *, iss: str, sub: str, cnf_jwk: Mapping[str, Any], pointer: Pointer | None,
             lifetime: int = 3600, now: int | None = None, jti: str | None = None,
             extra_claims: Mapping[str, Any] | None = None) -> CredentialInfo:
    """Sign a WIT; returns the parsed credential (``.raw`` is the compact JWS, ASCII)."""
    try:
        validate_workload_id(sub)
    except VerificationError as e:
        raise IssuerError("credential.sub", e.detail) from None
    if not isinstance(cnf_jwk, Mapping) or "alg" not in cnf_jwk:
        raise IssuerError("credential.cnf", "cnf.jwk must carry alg")
    iat = int(time.time()) if now is None else int(now)
    claims: dict[str, Any] = dict(extra_claims or {})
    claims.update({
        "iss": iss, "sub": sub, "iat": iat, "exp": iat + int(lifetime),
        "jti": jti or b64url(secrets.token_bytes(16)),
        "cnf": {"jwk": dict(cnf_jwk)},
    })
    if pointer is not None:  # None: external binding, the record alone names the credential
        claims[POINTER_CLAIM] = {"rid": pointer.rid, "log": pointer.log}
    headers = {"typ": "wit+jwt", "kid": key_id(issuer_key)}
    token = jwt.encode(claims, issuer_key, algorithm=jose_alg(issuer_key), headers=headers)
    try:
        return parse_credential(token)
    except VerificationError as e:
        raise IssuerError("credential.mint", str(e)) from None


def make_ca(key: Any, *, common_name: str = "TWI Demo Issuing CA", days: int = 3650) -> x509.Certificate:
    """A self-signed CA certificate for the issuer key (demo and tests; use a real CA in production)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    pub = key.public_key()
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(pub)
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                      data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                      crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False))
    return b.sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())


def mint_x509_svid(ca_key: Any, ca_cert: x509.Certificate, *, sub: str, public_key: Any, pointer: Pointer | None,
                   lifetime: int = 3600, now: int | None = None) -> CredentialInfo:
    """Sign an X.509 SVID for ``public_key`` with exactly one URI SAN and the pointer extension."""
    try:
        validate_workload_id(sub)
    except VerificationError as e:
        raise IssuerError("credential.sub", e.detail) from None
    t = dt.datetime.fromtimestamp(int(time.time()) if now is None else int(now), dt.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca_cert.subject)
         .public_key(public_key).serial_number(x509.random_serial_number())
         .not_valid_before(t).not_valid_after(t + dt.timedelta(seconds=int(lifetime)))
         .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(sub)]), critical=True)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                      data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                      crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                        critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if pointer is not None:  # None: external binding
        b = b.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(POINTER_OID),
                                                       encode_pointer_ext(pointer.log, pointer.rid)), critical=False)
    cert = b.sign(ca_key, None if isinstance(ca_key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    try:
        return parse_credential(cert.public_bytes(serialization.Encoding.DER))
    except VerificationError as e:
        raise IssuerError("credential.mint", str(e)) from None


def spki_der(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_from_jwk(jwk: Mapping[str, Any]) -> Any:
    from .appraisal import public_key_from_jwk as _p
    return _p(jwk)


def load_jwk_text(text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise IssuerError("credential.cnf", f"workload key is not a JWK: {e}") from None
    if not isinstance(obj, dict):
        raise IssuerError("credential.cnf", "workload key is not a JWK object")
    return obj
