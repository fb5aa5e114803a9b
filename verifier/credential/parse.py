"""Parsing a credential (WIT or X.509 SVID) without verifying signatures: :func:`parse_credential`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import VerificationError
from .der import decode_pointer_ext
from .wire import POINTER_CLAIM, POINTER_OID, WIT_MEDIA_TYPE, X509_MEDIA_TYPE, b64url, b64url_decode, locator
from .workload_id import validate_workload_id


@dataclass(frozen=True)
class Pointer:
    """The internal binding: the pre-allocated Credential Provenance record id and the log."""

    rid: str
    log: str

    @property
    def uri(self) -> str:
        return locator(self.log, self.rid)


@dataclass
class CredentialInfo:
    format: str                   # "wit" | "x509-svid"
    raw: bytes                    # the bytes hashed: ASCII compact JWS, or certificate DER
    iss: str | None               # WIT iss / None for X.509
    sub: str                      # the workload identifier
    jti: str | None = None
    serial: str | None = None     # lowercase hex, no leading zeros
    issuer_dn: str | None = None  # RFC 4514
    nbf: int | None = None
    exp: int | None = None
    cnf: dict[str, str] = field(default_factory=dict)   # {"jkt": ...} or {"spki_sha256": ...}
    pointer: Pointer | None = None
    header: dict[str, Any] = field(default_factory=dict)
    claims: dict[str, Any] = field(default_factory=dict)
    cert: Any = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def media_type(self) -> str:
        return WIT_MEDIA_TYPE if self.format == "wit" else X509_MEDIA_TYPE


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url)."""
    kty = jwk.get("kty")
    members = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}.get(kty)
    if members is None or not all(isinstance(jwk.get(m), str) for m in members):
        raise VerificationError("credential.cnf", f"cannot thumbprint JWK of kty {kty!r}")
    canon = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canon.encode()).digest())


_BAD_CNF_ALGS = {"none"}


def _check_cnf(claims: Mapping[str, Any]) -> dict[str, str]:
    cnf = claims.get("cnf")
    jwk = cnf.get("jwk") if isinstance(cnf, Mapping) else None
    if not isinstance(jwk, Mapping):
        raise VerificationError("credential.cnf", "cnf.jwk missing")
    alg = jwk.get("alg")
    if not isinstance(alg, str) or alg in _BAD_CNF_ALGS or alg.startswith(("HS", "A", "dir", "RSA-OAEP", "ECDH")):
        raise VerificationError("credential.cnf", f"cnf.jwk.alg {alg!r} is not an asymmetric signature algorithm")
    if "d" in jwk or jwk.get("kty") == "oct":
        raise VerificationError("credential.cnf", "cnf.jwk must be a public asymmetric key")
    return {"jkt": jwk_thumbprint(jwk)}


def _pointer_from_claim(v: Any) -> Pointer:
    if not isinstance(v, Mapping) or not isinstance(v.get("rid"), str) or not isinstance(v.get("log"), str):
        raise VerificationError("pointer.claim", f"{POINTER_CLAIM} must be {{rid, log}} text members")
    return Pointer(rid=v["rid"], log=v["log"])


def _jwt_parts(token: str) -> tuple[dict, dict]:
    parts = token.split(".")
    if len(parts) != 3:
        raise VerificationError("credential.malformed", "a WIT is a compact JWS with three parts")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError) as e:
        raise VerificationError("credential.malformed", f"bad JWS encoding: {e}") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise VerificationError("credential.malformed", "JWS header and claims must be objects")
    return header, claims


def parse_credential(data: bytes | str) -> CredentialInfo:
    """Parse (without verifying signatures) a WIT (compact JWS) or an X.509 SVID (DER or PEM)."""
    if isinstance(data, str):
        data = data.encode()
    s = data.strip()
    if s.startswith(b"eyJ"):
        try:
            token = s.decode("ascii")
        except UnicodeDecodeError:
            raise VerificationError("credential.malformed", "a WIT is ASCII") from None
        header, claims = _jwt_parts(token)
        if header.get("typ") != "wit+jwt":
            raise VerificationError("credential.typ", f"WIT typ must be wit+jwt, not {header.get('typ')!r}")
        if header.get("alg") in (None, "none") or str(header.get("alg")).startswith("HS"):
            raise VerificationError("credential.alg", "WIT needs an asymmetric alg")
        sub = validate_workload_id(claims.get("sub"))
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int):
            raise VerificationError("credential.exp", "WIT exp missing or not an integer")
        iss = claims.get("iss")
        if iss is not None and not isinstance(iss, str):
            raise VerificationError("credential.iss", "iss must be text")
        jti = claims.get("jti")
        if jti is not None and not isinstance(jti, str):
            raise VerificationError("credential.jti", "jti must be text")
        ptr = _pointer_from_claim(claims[POINTER_CLAIM]) if POINTER_CLAIM in claims else None
        nbf = claims.get("nbf", claims.get("iat"))
        return CredentialInfo(format="wit", raw=token.encode("ascii"), iss=iss, sub=sub, jti=jti,
                              nbf=nbf if isinstance(nbf, int) and not isinstance(nbf, bool) else None,
                              exp=exp, cnf=_check_cnf(claims), pointer=ptr, header=header, claims=claims)
    try:
        return _parse_x509(s if s.startswith(b"-----BEGIN") else data)
    except VerificationError:
        raise
    except Exception as e:  # cryptography decodes lazily: ValueError, TypeError, KeyError... on bad DER
        raise VerificationError("credential.malformed", f"not a well-formed X.509 certificate: {type(e).__name__}: {e}") from None


def _parse_x509(data: bytes) -> CredentialInfo:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(data) if data.startswith(b"-----BEGIN") else x509.load_der_x509_certificate(data)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise VerificationError("credential.san", "X.509 SVID has no SubjectAltName") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise VerificationError("credential.san", f"X.509 SVID must have exactly one URI SAN, has {len(uris)}")
    sub = validate_workload_id(uris[0])
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if bc.ca:
            raise VerificationError("credential.ca", "an SVID leaf must not be a CA")
    except x509.ExtensionNotFound:
        pass
    ptr = None
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(POINTER_OID))
        log, rid = decode_pointer_ext(ext.value.value)
        ptr = Pointer(rid=rid, log=log)
    except x509.ExtensionNotFound:
        pass
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    der = cert.public_bytes(serialization.Encoding.DER)
    return CredentialInfo(
        format="x509-svid", raw=der, iss=None, sub=sub, serial=format(cert.serial_number, "x"),
        issuer_dn=cert.issuer.rfc4514_string(),
        nbf=int(cert.not_valid_before_utc.timestamp()), exp=int(cert.not_valid_after_utc.timestamp()),
        cnf={"spki_sha256": hashlib.sha256(spki).hexdigest()}, pointer=ptr, cert=cert)
