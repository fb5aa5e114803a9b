"""Which issuer identities (``iss``, CWT claim 1) a signer may claim (issue 11 item 4).

A Signed Statement's identity comes from its protected header only (the log stores the
statement with the unprotected header emptied, so nothing else survives registration):

- a key named by ``kid`` may claim the ``iss`` values it is configured with (the registration
  policy's ``issuer-identities``); a key configured without any may claim any ``iss``;
- an x5chain leaf, validated to a trust anchor, may claim an ``iss`` that is one of the leaf's
  subjectAltName URIs, or a ``did:x509`` identifier (draft-birkholz-did-x509, the convention of
  SCITT X.509 issuers) that resolves to the validated path; and, when the anchor is configured
  with ``iss`` values (``anchor-identities``), only one of those.

did:x509 (method version 0)::

    did:x509:0:<sha256|sha384|sha512>:<base64url fingerprint of a CA certificate of the path>
             ::<policy>:<value>[::<policy>:<value>...]

with the policies ``subject`` (``KEY:value`` pairs, each equal to the leaf subject's attribute;
keys CN, L, ST, O, OU, C, STREET or a dotted OID), ``san`` (``email|dns|uri:value``, one of the
leaf's subjectAltNames), ``eku`` (an OID in the leaf's extendedKeyUsage). Values are
percent-decoded. Any other policy (``fulcio-issuer``) does not match: the identity is refused.

Nothing here formats an unbounded value into an error text.
"""

from __future__ import annotations

import base64
import hashlib
import urllib.parse
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from .cbor import brief

__all__ = ["x509_identity_mismatch", "key_identity_mismatch", "did_x509_mismatch", "leaf_san_uris"]

_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
_SUBJECT_KEYS = {
    "CN": NameOID.COMMON_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "C": NameOID.COUNTRY_NAME,
    "STREET": NameOID.STREET_ADDRESS,
}
_SAN_TYPES = {"email": x509.RFC822Name, "dns": x509.DNSName, "uri": x509.UniformResourceIdentifier}
MAX_DID_LEN = 8192


def _ext(cert: x509.Certificate, cls):
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


def leaf_san_uris(leaf: x509.Certificate) -> list[str]:
    """The URI subjectAltNames of ``leaf``."""
    san = _ext(leaf, x509.SubjectAlternativeName)
    return [] if san is None else list(san.get_values_for_type(x509.UniformResourceIdentifier))


def did_x509_mismatch(did: str, path: Sequence[x509.Certificate]) -> str | None:
    """None when ``did`` (a did:x509 identifier) resolves to ``path`` (leaf first, then the
    CA certificates up to the trust anchor); else why not."""
    if len(did) > MAX_DID_LEN:
        return "did:x509 identifier too long"
    head, sep, policies = did.partition("::")
    parts = head.split(":")
    if not sep or len(parts) != 5 or parts[:3] != ["did", "x509", "0"]:
        return "not a did:x509 version 0 identifier with at least one policy"
    h = _HASHES.get(parts[3])
    if h is None:
        return f"did:x509 hash algorithm {brief(parts[3])} is not supported"
    fps = {
        base64.urlsafe_b64encode(h(c.public_bytes(serialization.Encoding.DER)).digest()).rstrip(b"=").decode()
        for c in path[1:]
    }
    if parts[4] not in fps:
        return "the did:x509 CA fingerprint names no CA certificate of the validated path"
    leaf = path[0]
    for pol in policies.split("::"):
        name, _, value = pol.partition(":")
        why = _policy_mismatch(name, value, leaf)
        if why is not None:
            return why
    return None


def _policy_mismatch(name: str, value: str, leaf: x509.Certificate) -> str | None:
    if name == "subject":
        items = value.split(":")
        if len(items) % 2 or not items[0]:
            return "did:x509 subject policy must be KEY:value pairs"
        for k, v in zip(items[0::2], items[1::2]):
            oid = _SUBJECT_KEYS.get(k)
            if oid is None:
                try:
                    oid = x509.ObjectIdentifier(k)
                except ValueError:
                    return f"did:x509 subject key {brief(k)} is not supported"
            want = urllib.parse.unquote(v)
            have = [a.value for a in leaf.subject.get_attributes_for_oid(oid)]
            if want not in have:
                return f"did:x509 subject {brief(k)} does not match the leaf certificate"
        return None
    if name == "san":
        typ, _, v = value.partition(":")
        cls = _SAN_TYPES.get(typ)
        if cls is None:
            return f"did:x509 san type {brief(typ)} is not supported"
        san = _ext(leaf, x509.SubjectAlternativeName)
        if san is None or urllib.parse.unquote(v) not in san.get_values_for_type(cls):
            return "did:x509 san does not match the leaf certificate"
        return None
    if name == "eku":
        eku = _ext(leaf, x509.ExtendedKeyUsage)
        if eku is None or value not in {o.dotted_string for o in eku}:
            return "did:x509 eku is not in the leaf certificate's extended key usage"
        return None
    return f"did:x509 policy {brief(name)} is not supported"


def x509_identity_mismatch(
    iss: str, path: Sequence[x509.Certificate], configured: Iterable[str] | None = None
) -> str | None:
    """None when an x5chain signer with the validated ``path`` may claim ``iss``; else why not."""
    if configured is not None:
        allowed = list(configured)
        if iss not in allowed:
            return f"iss {brief(iss)} is not one of the identities configured for the trust anchor"
    if iss.startswith("did:x509:"):
        return did_x509_mismatch(iss, path)
    if iss in leaf_san_uris(path[0]):
        return None
    return (f"iss {brief(iss)} is neither a subjectAltName URI of the x5chain leaf nor a did:x509 "
            "identifier of its path")


def key_identity_mismatch(iss: str, kid: bytes, configured: Iterable[str] | None) -> str | None:
    """None when the key ``kid`` may claim ``iss`` (``configured`` None: any); else why not."""
    if configured is None or iss in configured:
        return None
    return f"iss {brief(iss)} is not one of the identities configured for issuer key {kid[:16].hex()}"
