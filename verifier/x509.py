"""X.509 path validation for x5chain issuers (RFC 9360 headers in SCITT Signed Statements).

Uses cryptography's Rust path builder (``cryptography.x509.verification``), configured
for code-signing style leaves: the CA certificates get the CA/B Forum Web PKI profile
(basic constraints CA, keyCertSign, path length, signature algorithms, validity), the
leaf gets a permissive extension policy (no SAN or TLS EKU required) plus two checks
of our own: it must not be a CA, and when it has a KeyUsage extension, digitalSignature
must be set. Trust anchors are explicit; nothing is read from the system store.

Limits inherited from the Web PKI profile: signature algorithms are those it allows
(ECDSA P-256/P-384 with SHA-256/384, RSA PKCS#1v1.5 / PSS >= 2048 bits); chain depth
is bounded by ``max_chain_depth``.
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import verification as xv

from .cbor import brief
from .errors import VerificationError

__all__ = ["load_certificates", "validate_chain", "validate_path", "cert_hash"]

_X5T_HASHES = {-16: hashes.SHA256, -43: hashes.SHA384, -44: hashes.SHA512}


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """PEM (one or more) or DER certificates; raises VerificationError("x509.parse", ...)."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise VerificationError("x509.parse", f"cannot parse certificate: {exc}") from None
    return certs


def cert_hash(hash_alg: int, der: bytes) -> bytes:
    """COSE_CertHash value (RFC 9360 x5t) of a DER certificate."""
    h = _X5T_HASHES.get(hash_alg)
    if h is None:
        raise VerificationError("statement.x5t", f"unsupported x5t hash algorithm {brief(hash_alg)}")
    return hashlib.new(h.name, der).digest()


def _leaf_key_usage(policy: object, cert: x509.Certificate, ext: object) -> None:
    if ext is not None and not ext.digital_signature:  # type: ignore[attr-defined]
        raise ValueError("leaf KeyUsage lacks digitalSignature")


def _leaf_basic_constraints(policy: object, cert: x509.Certificate, ext: object) -> None:
    if ext is not None and ext.ca:  # type: ignore[attr-defined]
        raise ValueError("leaf certificate is a CA")


def validate_path(
    chain_der: Sequence[bytes],
    trust_anchors: Sequence[x509.Certificate],
    *,
    at_time: datetime.datetime | None = None,
    max_chain_depth: int = 8,
) -> list[x509.Certificate]:
    """Validate ``chain_der`` (leaf first) to one of ``trust_anchors``; return the validated
    path, leaf first and the trust anchor last.

    Raises VerificationError("x509.chain", ...) when no valid path exists.
    """
    if not chain_der:
        raise VerificationError("x509.chain", "empty certificate chain")
    if not trust_anchors:
        raise VerificationError("x509.no-anchors", "no trust anchors configured")
    try:
        certs = [x509.load_der_x509_certificate(bytes(c)) for c in chain_der]
    except ValueError as exc:
        raise VerificationError("x509.parse", f"cannot parse x5chain certificate: {exc}") from None
    when = at_time or datetime.datetime.now(datetime.timezone.utc)
    ee_policy = (
        xv.ExtensionPolicy.permit_all()
        .may_be_present(x509.KeyUsage, xv.Criticality.AGNOSTIC, _leaf_key_usage)
        .may_be_present(x509.BasicConstraints, xv.Criticality.AGNOSTIC, _leaf_basic_constraints)
    )
    builder = (
        xv.PolicyBuilder()
        .store(xv.Store(list(trust_anchors)))
        .time(when)
        .max_chain_depth(max_chain_depth)
        .extension_policies(ca_policy=xv.ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
    )
    try:
        verified = builder.build_client_verifier().verify(certs[0], certs[1:])
    except xv.VerificationError as exc:
        raise VerificationError("x509.chain", f"certificate path validation failed: {brief(str(exc), 300)}") from None
    return list(verified.chain)


def validate_chain(
    chain_der: Sequence[bytes],
    trust_anchors: Sequence[x509.Certificate],
    *,
    at_time: datetime.datetime | None = None,
    max_chain_depth: int = 8,
) -> x509.Certificate:
    """Validate ``chain_der`` (leaf first) to one of ``trust_anchors``; return the leaf.

    Raises VerificationError("x509.chain", ...) when no valid path exists.
    """
    return validate_path(chain_der, trust_anchors, at_time=at_time, max_chain_depth=max_chain_depth)[0]
