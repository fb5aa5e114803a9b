"""Relying-party check of a TWI workload credential against its provenance in the log.

Given a credential (a WIT or an X.509 SVID), its transparent Credential Provenance
statement (and, optionally, the Workload Provenance statement it links to) and a trust
configuration (log keys, issuer keys or CA, verifier keys), :func:`verify_credential`
checks, offline:

1. the credential: issuer signature (WIT: JWS with ``typ`` ``wit+jwt``; X.509: signed by the
   CA), workload identifier syntax (spiffe:// or wimse://), validity times, ``cnf``;
2. the Credential Provenance statement: issuer signature (kid = RFC 9679 thumbprint),
   COSE receipt(s) from a trusted log;
3. both directions of the binding: the credential points at this record (internal pointer:
   record id and log), the record names this credential (SHA-256 of its bytes, ``jti`` or
   issuer DN and serial, iss, sub);
4. optionally the Workload Provenance statement the record links to (by leaf digest), and
   the EAR embedded in the record (signature by a trusted verifier, digest);
5. a relying-party policy built from small objects (:class:`AllOf`, :class:`AnyOf`,
   :class:`StatusAffirming`, :class:`SbomPresent`, :class:`MaxRecordAge`, ...), in the style
   of sigstore-python's ``verify/policy.py``.

Every failure raises :class:`verifier.VerificationError`. Formats: docs/credential-provenance.md.
This module imports nothing from ``tlog`` or ``issuer``; the issuer imports the constants
and parsers below so both sides agree on the wire.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol, Sequence

from .errors import VerificationError

# ----------------------------------------------------------------------------------------
# shared constants (the issuer imports these)

#: WIT claim carrying the internal binding (collision-resistant name per the WIMSE rule;
#: ``example.org`` is a placeholder domain to be replaced by the deployer's own, or by a
#: registered ``twi_prov`` claim).
POINTER_CLAIM = "example.org/twi_prov"
#: X.509 extension carrying the internal binding. 1.3.6.1.4.1.99999 is a PLACEHOLDER
#: Private Enterprise Number arc and MUST be replaced by an assigned PEN before deployment.
#: Value: DER ``SEQUENCE { log IA5String, rid UTF8String }``, non-critical.
POINTER_OID = "1.3.6.1.4.1.99999.1.2"

CPR_TYPE = "tag:twi-tlog.example,2026:cpr/v1"
CPR_MEDIA_TYPE = "application/vnd.twi.cpr+cbor"
WPR_PREDICATE_TYPE = "tag:twi-tlog.example,2026:twi/workload-provenance/v1"
INTOTO_MEDIA_TYPE = "application/vnd.in-toto+json"
INTOTO_STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
WIT_MEDIA_TYPE = "application/wit+jwt"
X509_MEDIA_TYPE = "application/pkix-cert"
EAR_MEDIA_TYPE = "application/eat+jwt"
LOOKUP_PATH = "/twi/v1/cpr"

SBOM_MEDIA_TYPES = ("application/spdx+json", "application/spdx3+json", "application/vnd.cyclonedx+json")

_STATUS_BADNESS = {"affirming": 0, "none": 1, "warning": 2, "contraindicated": 3}


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def b64url_decode(s: str) -> bytes:
    if not isinstance(s, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", s):
        raise VerificationError("encoding.base64url", "not base64url")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def locator(log: str, rid: str) -> str:
    """The URL at which a log serves the Credential Provenance record ``rid``."""
    return f"{log.rstrip('/')}{LOOKUP_PATH}?rid={urllib.parse.quote(rid, safe='')}"


# ----------------------------------------------------------------------------------------
# workload identifiers (draft-ietf-wimse-identifier, SPIFFE ID)

_SPIFFE_TD = re.compile(r"[a-z0-9._-]+")
_SPIFFE_SEG = re.compile(r"[A-Za-z0-9._-]+")
_WIMSE_TD = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_WIMSE_SEG = re.compile(r"([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})+")


def validate_workload_id(wid: Any) -> str:
    """Check a Workload Identifier: ``spiffe://td/path`` or ``wimse://td/path``; returns it.

    No query, fragment, userinfo or port; non-empty trust domain and path; at most 2048
    bytes; SPIFFE character sets for spiffe://.
    """
    if not isinstance(wid, str) or not wid:
        raise VerificationError("credential.sub", "workload identifier missing")
    if len(wid.encode()) > 2048:
        raise VerificationError("credential.sub", "workload identifier longer than 2048 bytes")
    m = re.fullmatch(r"(spiffe|wimse)://([^/?#]*)(/[^?#]*)", wid)
    if not m:
        raise VerificationError("credential.sub", f"{wid!r} is not a spiffe:// or wimse:// identifier with a path")
    scheme, td, path = m.groups()
    if "@" in td or ":" in td:
        raise VerificationError("credential.sub", "userinfo and port are not allowed in a workload identifier")
    segs = path[1:].split("/")
    if scheme == "spiffe":
        if not _SPIFFE_TD.fullmatch(td):
            raise VerificationError("credential.sub", f"invalid SPIFFE trust domain {td!r}")
        seg_re = _SPIFFE_SEG
    else:
        if not _WIMSE_TD.fullmatch(td):
            raise VerificationError("credential.sub", f"invalid trust domain {td!r}")
        seg_re = _WIMSE_SEG
    for s in segs:
        if not s or s in (".", "..") or not seg_re.fullmatch(s):
            raise VerificationError("credential.sub", f"invalid path segment {s!r} in {wid!r}")
    return wid


# ----------------------------------------------------------------------------------------
# minimal DER for the pointer extension


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _der_tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(value)) + value


def encode_pointer_ext(log: str, rid: str) -> bytes:
    """DER ``SEQUENCE { log IA5String, rid UTF8String }``."""
    try:
        log_b = log.encode("ascii")
    except UnicodeEncodeError:
        raise VerificationError("pointer.encode", "log URL must be ASCII") from None
    return _der_tlv(0x30, _der_tlv(0x16, log_b) + _der_tlv(0x0C, rid.encode("utf-8")))


def _der_read(data: bytes, pos: int) -> tuple[int, bytes, int]:
    if pos + 2 > len(data):
        raise VerificationError("pointer.der", "truncated")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        ln = first
    else:
        k = first & 0x7F
        if k == 0 or k > 4 or pos + k > len(data):
            raise VerificationError("pointer.der", "bad length")
        ln = int.from_bytes(data[pos:pos + k], "big")
        if ln < 0x80 or data[pos] == 0:
            raise VerificationError("pointer.der", "non-minimal length")
        pos += k
    if pos + ln > len(data):
        raise VerificationError("pointer.der", "truncated value")
    return tag, data[pos:pos + ln], pos + ln


def decode_pointer_ext(der: bytes) -> tuple[str, str]:
    tag, body, end = _der_read(der, 0)
    if tag != 0x30 or end != len(der):
        raise VerificationError("pointer.der", "not a single SEQUENCE")
    t1, log_b, p = _der_read(body, 0)
    t2, rid_b, p = _der_read(body, p)
    if t1 != 0x16 or t2 != 0x0C or p != len(body):
        raise VerificationError("pointer.der", "expected SEQUENCE { IA5String, UTF8String }")
    try:
        return log_b.decode("ascii"), rid_b.decode("utf-8")
    except UnicodeDecodeError:
        raise VerificationError("pointer.der", "bad string encoding") from None


# ----------------------------------------------------------------------------------------
# credentials


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


# ----------------------------------------------------------------------------------------
# private records: COSE_Encrypt0 with A256GCM (the issuer encrypts, auditors decrypt)


def encode_encrypt0(protected: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """Tagged COSE_Encrypt0 ``16([protected, {5: iv}, ciphertext])``."""
    from . import cbor

    return b"\xd0\x83" + cbor.encode_bstr(protected) + cbor.dumps({5: iv}) + cbor.encode_bstr(ciphertext)


def decrypt_record(blob: bytes, key: bytes, rid: str) -> bytes:
    """Open an encrypted Credential Provenance record (COSE_Encrypt0, A256GCM, AAD = rid)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from . import cbor

    if not blob.startswith(b"\xd0\x83"):
        raise VerificationError("record.encrypt0", "not a tagged COSE_Encrypt0")
    try:
        arr = cbor.loads(blob[1:], max_depth=4)  # skip the tag byte, decode the array
    except VerificationError as e:
        raise VerificationError("record.encrypt0", e.detail) from None
    if not (isinstance(arr, list) and len(arr) == 3 and isinstance(arr[0], bytes) and isinstance(arr[1], dict)
            and isinstance(arr[2], bytes)):
        raise VerificationError("record.encrypt0", "COSE_Encrypt0 must be [bstr, map, bstr]")
    prot = cbor.loads(arr[0]) if arr[0] else {}
    if prot.get(1) != 3:
        raise VerificationError("record.encrypt0", "only A256GCM (3) is supported")
    iv = arr[1].get(5)
    if not isinstance(iv, bytes) or len(iv) != 12:
        raise VerificationError("record.encrypt0", "IV (5) must be 12 bytes")
    if len(key) != 32:
        raise VerificationError("record.key", "record key must be 32 bytes")
    aad = cbor.dumps(["Encrypt0", arr[0], rid.encode()])
    try:
        return AESGCM(key).decrypt(iv, arr[2], aad)
    except InvalidTag:
        raise VerificationError("record.decrypt", "wrong key, wrong record id or tampered ciphertext") from None


# ----------------------------------------------------------------------------------------
# trust configuration


@dataclass
class TrustConfig:
    """What a relying party trusts.

    ``log_keys``: kid -> public key of the transparency log (receipts).
    ``issuer_keys``: kid (RFC 9679 thumbprint) -> public key of credential issuers (WIT
    signatures and provenance statements). ``ca_certs``: X.509 CAs for SVIDs (their public
    keys also count as issuer keys). ``verifier_keys``: (developer, build, key) of RATS
    Verifiers whose EARs are accepted. ``logs``: accepted log URLs (receipt issuers); empty
    means "the log named by the credential's pointer".
    """

    log_keys: dict[bytes, Any]
    issuer_keys: dict[bytes, Any] = field(default_factory=dict)
    ca_certs: list[Any] = field(default_factory=list)
    verifier_keys: list[tuple[str | None, str | None, Any]] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def statement_keys(self) -> dict[bytes, Any]:
        from . import keys as vkeys

        out = dict(self.issuer_keys)
        for ca in self.ca_certs:
            pub = ca.public_key()
            out[vkeys.thumbprint(pub)] = pub
        return out


def load_verifier_keys(obj: Mapping[str, Any]) -> list[tuple[str | None, str | None, Any]]:
    """``{"verifiers": [{"id": {"developer", "build"?}, "keys": [JWK]}]}`` or a JWKS."""
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

    def load(jwk):
        cls = {"EC": ECAlgorithm, "OKP": OKPAlgorithm, "RSA": RSAAlgorithm}.get(jwk.get("kty"))
        if cls is None or "d" in jwk:
            raise VerificationError("trust.verifier-keys", "verifier keys must be public EC, OKP or RSA JWKs")
        return cls.from_jwk(json.dumps(jwk))

    out = []
    if "verifiers" in obj:
        for e in obj["verifiers"]:
            vid = e.get("id") or {}
            out += [(vid.get("developer"), vid.get("build"), load(j)) for j in e.get("keys", [])]
    elif "keys" in obj:
        out += [(None, None, load(j)) for j in obj["keys"]]
    else:
        raise VerificationError("trust.verifier-keys", "expected {'verifiers': [...]} or {'keys': [...]}")
    return out


def _norm_url(u: str) -> str:
    return u.rstrip("/")


# ----------------------------------------------------------------------------------------
# the result and the relying-party policy


@dataclass
class CredentialVerification:
    """Everything established by :func:`verify_credential`."""

    credential: CredentialInfo
    record: dict[str, Any]
    record_statement: Any                     # verifier.statement.SignedStatement
    receipts: list[Any]                       # ReceiptResult, at least one ok
    workload_provenance: list[dict[str, Any]] = field(default_factory=list)  # verified in-toto statements
    ear_verified: bool = False
    ear_claims: dict[str, Any] | None = None
    now: float = 0.0
    private: bool = False


class Policy(Protocol):
    """A relying-party policy: ``verify`` raises VerificationError("policy.<name>", ...)."""

    def verify(self, result: CredentialVerification) -> None: ...


class AllOf:
    def __init__(self, children: Sequence[Policy]):
        if not children:
            raise VerificationError("policy.config", "AllOf needs at least one policy")
        self.children = list(children)

    def verify(self, result: CredentialVerification) -> None:
        for c in self.children:
            c.verify(result)


class AnyOf:
    def __init__(self, children: Sequence[Policy]):
        if not children:
            raise VerificationError("policy.config", "AnyOf needs at least one policy")
        self.children = list(children)

    def verify(self, result: CredentialVerification) -> None:
        errors = []
        for c in self.children:
            try:
                c.verify(result)
                return
            except VerificationError as e:
                errors.append(str(e))
        raise VerificationError("policy.any-of", "no alternative held: " + "; ".join(errors))


class UnsafeNoOp:
    """Accept anything beyond the cryptographic checks (say so explicitly)."""

    def verify(self, result: CredentialVerification) -> None:
        return None


class StatusAffirming:
    """The recorded appraisal is affirming overall and in every submodule (or warning, if allowed)."""

    def __init__(self, allow_warning: bool = False):
        self.ok = {"affirming", "warning"} if allow_warning else {"affirming"}

    def verify(self, result: CredentialVerification) -> None:
        att = result.record.get("attestation") or {}
        statuses = [att.get("ear_status")] + [s.get("ear_status") for s in (att.get("submods") or {}).values()
                                              if isinstance(s, Mapping)]
        if result.ear_claims is not None:  # the EAR itself was verified: judge it too
            statuses += list(_ear_statuses(result.ear_claims))
        bad = [s for s in statuses if s not in self.ok]
        if bad or len(statuses) < 2:
            raise VerificationError("policy.status", f"appraisal status {bad or 'missing'} is not "
                                    + " or ".join(sorted(self.ok)))


class EarVerified:
    """The EAR embedded in the record verified under a trusted Verifier key."""

    def verify(self, result: CredentialVerification) -> None:
        if not result.ear_verified:
            raise VerificationError("policy.ear", "the attestation result was not verified (not embedded or no verifier keys)")


class VerifierIs:
    def __init__(self, developer: str, build: str | None = None):
        self.developer, self.build = developer, build

    def verify(self, result: CredentialVerification) -> None:
        vid = (result.record.get("attestation") or {}).get("verifier_id") or {}
        if vid.get("developer") != self.developer or (self.build is not None and vid.get("build") != self.build):
            raise VerificationError("policy.verifier", f"appraised by {vid}, not {self.developer}")


class SbomPresent:
    """A verified Workload Provenance statement references an SBOM (CycloneDX or SPDX JSON)."""

    def __init__(self, media_types: Sequence[str] = SBOM_MEDIA_TYPES):
        self.media_types = tuple(media_types)

    def verify(self, result: CredentialVerification) -> None:
        for wpr in result.workload_provenance:
            for rd in (wpr.get("predicate") or {}).get("composition") or []:
                mt = rd.get("mediaType", "") if isinstance(rd, Mapping) else ""
                if isinstance(mt, str) and mt.split(";")[0].strip() in self.media_types and rd.get("digest"):
                    return
        raise VerificationError("policy.sbom", "no verified workload provenance references an SBOM")


class MaxRecordAge:
    """The Credential Provenance record was made at most ``seconds`` ago."""

    def __init__(self, seconds: int):
        self.seconds = int(seconds)

    def verify(self, result: CredentialVerification) -> None:
        iat = result.record.get("iat")
        if not isinstance(iat, int) or result.now - iat > self.seconds:
            raise VerificationError("policy.record-age", f"record older than {self.seconds} s")


class WorkloadIs:
    """The credential's workload identifier is this one (or in this trust domain, given ``prefix``)."""

    def __init__(self, workload_id: str, *, prefix: bool = False):
        self.workload_id, self.prefix = workload_id, prefix

    def verify(self, result: CredentialVerification) -> None:
        sub = result.credential.sub
        if not (sub.startswith(self.workload_id) if self.prefix else sub == self.workload_id):
            raise VerificationError("policy.workload", f"workload {sub} is not {self.workload_id}")


_EAR_STATUS_CODES = {0: "none", 2: "affirming", 32: "warning", 96: "contraindicated"}


def _ear_statuses(claims: Mapping[str, Any]):
    for k in ("ear_status", "ear.status"):
        if k in claims:
            yield _EAR_STATUS_CODES.get(claims[k], claims[k])
    for app in (claims.get("submods") or {}).values():
        if isinstance(app, Mapping):
            for k in ("ear_status", "ear.status"):
                if k in app:
                    yield _EAR_STATUS_CODES.get(app[k], app[k])


# ----------------------------------------------------------------------------------------
# verification


def _verify_wit_signature(info: CredentialInfo, trust: TrustConfig, now: float, check_time: bool, leeway: int) -> None:
    import jwt

    keys = trust.statement_keys()
    kid = info.header.get("kid")
    cands = []
    if isinstance(kid, str):
        try:
            k = keys.get(b64url_decode(kid))
        except VerificationError:
            k = None
        if k is not None:
            cands = [k]
    if not cands:
        cands = list(keys.values())
    if not cands:
        raise VerificationError("credential.no-issuer-key", "no issuer keys configured")
    alg = info.header.get("alg")
    for key in cands:
        try:
            jwt.decode(info.raw.decode("ascii"), key, algorithms=[alg],
                       options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False})
            break
        except jwt.InvalidSignatureError:
            continue
        except (jwt.InvalidKeyError, jwt.InvalidAlgorithmError, NotImplementedError, TypeError, ValueError):
            continue
        except jwt.PyJWTError as e:
            raise VerificationError("credential.malformed", str(e)) from None
    else:
        raise VerificationError("credential.signature", "the WIT is not signed by a trusted issuer key")
    if check_time:
        if info.exp is not None and now >= info.exp + leeway:
            raise VerificationError("credential.expired", "the WIT has expired")
        nbf = info.claims.get("nbf")
        if isinstance(nbf, int) and nbf > now + leeway:
            raise VerificationError("credential.not-yet-valid", "the WIT is not yet valid")


def _verify_x509_signature(info: CredentialInfo, trust: TrustConfig, now: float, check_time: bool, leeway: int) -> None:
    if not trust.ca_certs:
        raise VerificationError("credential.no-ca", "no CA certificates configured for X.509 SVIDs")
    for ca in trust.ca_certs:
        try:
            if ca.subject != info.cert.issuer:
                continue
        except Exception:  # undecodable issuer name
            raise VerificationError("credential.malformed", "cannot decode the certificate's issuer") from None
        try:
            info.cert.verify_directly_issued_by(ca)
            break
        except Exception:  # InvalidSignature, ValueError, TypeError
            continue
    else:
        raise VerificationError("credential.signature", "the SVID is not signed by a trusted CA")
    if check_time and not (info.nbf - leeway <= now < info.exp + leeway):
        raise VerificationError("credential.expired", "the SVID is outside its validity period")


def _classify(st: Any) -> str | None:
    if st.content_type == CPR_MEDIA_TYPE or (st.hash_envelope is not None and st.hash_envelope[1] == CPR_MEDIA_TYPE):
        return "cpr"
    if st.content_type == INTOTO_MEDIA_TYPE:
        return "wpr"
    return None


def _statement_rid(st: Any) -> str | None:
    cti = st.cwt_claims.get(7)
    if isinstance(cti, bytes):
        try:
            return cti.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def _verified_receipts(ts: bytes, st: Any, trust: TrustConfig, accepted_logs: list[str], what: str) -> list[Any]:
    from . import receipt as vreceipt

    keys = trust.statement_keys()
    key = keys.get(st.kid) if st.kid is not None else None
    if key is None:
        raise VerificationError(f"{what}.issuer-key", "the statement's kid names no trusted issuer key")
    try:
        results = vreceipt.verify_transparent_statement(ts, trust.log_keys, issuer_key=key)
    except VerificationError as e:
        raise VerificationError(f"{what}.signature", f"{e.check}: {e.detail}") from None
    ok = [r for r in results if r.ok]
    if not ok:
        detail = "; ".join(f"{r.check}: {r.detail}" for r in results)
        raise VerificationError(f"{what}.receipt", f"no receipt verifies with the trusted log keys ({detail})")
    if accepted_logs:
        ok = [r for r in ok if r.issuer is not None and _norm_url(r.issuer) in accepted_logs]
        if not ok:
            raise VerificationError(f"{what}.log", f"no verified receipt from the log(s) {accepted_logs}")
    return ok


def _decode_record(data: bytes) -> dict[str, Any]:
    from . import cbor

    rec = cbor.loads(data, max_depth=12)
    if not isinstance(rec, dict) or rec.get("type") != CPR_TYPE:
        raise VerificationError("record.type", f"not a {CPR_TYPE} record")
    for k in ("rid", "credential", "attestation", "issuer", "iat"):
        if k not in rec:
            raise VerificationError("record.schema", f"record member {k!r} missing")
    if not isinstance(rec["credential"], dict) or not isinstance(rec["attestation"], dict):
        raise VerificationError("record.schema", "credential and attestation must be maps")
    return rec


def _check_binding(info: CredentialInfo, rec: dict[str, Any], st: Any, private: bool) -> None:
    c = rec["credential"]
    ptr = info.pointer
    assert ptr is not None
    if rec.get("rid") != ptr.rid:
        raise VerificationError("binding.record-id", "the record's id is not the one the credential points at")
    dg = (c.get("digest") or {}).get("sha256")
    if dg != info.sha256:
        raise VerificationError("binding.digest", "the record names a different credential (SHA-256 differs)")
    if c.get("format") != info.format:
        raise VerificationError("binding.format", f"record is for a {c.get('format')}, credential is a {info.format}")
    if c.get("sub") != info.sub:
        raise VerificationError("binding.sub", "the record's workload identifier differs from the credential's")
    if info.format == "wit":
        if not info.jti or c.get("jti") != info.jti:
            raise VerificationError("binding.jti", "the record's jti differs from the credential's")
        if c.get("iss") != info.iss:
            raise VerificationError("binding.iss", "the record's iss differs from the credential's")
    else:
        if c.get("serial") != info.serial or c.get("issuer_dn") != info.issuer_dn:
            raise VerificationError("binding.serial", "the record's issuer DN / serial differ from the certificate's")
    if c.get("pointer") != {"rid": ptr.rid, "log": ptr.log}:
        raise VerificationError("binding.pointer", "the record's copy of the pointer differs from the credential's")
    iss_id = (rec.get("issuer") or {}).get("id")
    if st.iss != iss_id:
        raise VerificationError("binding.issuer", "statement iss and the record's issuer id differ")
    if not private and st.sub != info.sub:
        raise VerificationError("binding.sub", "statement sub differs from the credential's workload identifier")


def _verify_ear(rec: dict[str, Any], trust: TrustConfig) -> tuple[bool, dict[str, Any] | None]:
    att = rec["attestation"]
    ar = att.get("ar")
    if ar is None or not trust.verifier_keys:
        return False, None
    import jwt

    if not (isinstance(ar, list) and len(ar) >= 2 and isinstance(ar[1], bytes)):
        raise VerificationError("record.ear", "attestation.ar must be a CMW record [type, bstr, ind]")
    token = ar[1]
    if hashlib.sha256(token).hexdigest() != (att.get("ar_digest") or {}).get("sha256"):
        raise VerificationError("record.ear-digest", "the embedded EAR does not match ar_digest")
    try:
        tok = token.decode("ascii")
        header = jwt.get_unverified_header(tok)
        claims = jwt.decode(tok, options={"verify_signature": False})
    except (UnicodeDecodeError, jwt.PyJWTError) as e:
        raise VerificationError("record.ear", f"embedded EAR is not a JWT: {e}") from None
    vid = claims.get("ear_verifier_id", claims.get("ear.verifier-id"))
    if not isinstance(vid, Mapping) or dict(vid) != att.get("verifier_id"):
        raise VerificationError("record.ear-verifier", "the EAR's verifier id differs from the record's")
    alg = header.get("alg")
    if alg in (None, "none") or str(alg).startswith("HS"):
        raise VerificationError("record.ear", "bad EAR alg")
    for dev, build, key in trust.verifier_keys:
        if (dev is not None and dev != vid.get("developer")) or (build is not None and build != vid.get("build")):
            continue
        try:
            jwt.decode(tok, key, algorithms=[alg], options={"verify_exp": False, "verify_nbf": False,
                                                            "verify_iat": False, "verify_aud": False})
            return True, claims
        except jwt.PyJWTError:
            continue
    raise VerificationError("record.ear-signature", "the embedded EAR is not signed by a trusted verifier")


def _verify_wprs(rec: dict[str, Any], wpr_statements: list[tuple[bytes, Any]], trust: TrustConfig,
                 accepted_logs: list[str]) -> list[dict[str, Any]]:
    out = []
    for rd in rec.get("workload_provenance") or []:
        want = (rd.get("digest") or {}).get("sha256") if isinstance(rd, Mapping) else None
        for ts, st in wpr_statements:
            if st.leaf_input.hex() != want:
                continue
            _verified_receipts(ts, st, trust, accepted_logs, "wpr")
            try:
                doc = json.loads(st.payload)
            except (TypeError, ValueError) as e:
                raise VerificationError("wpr.payload", f"workload provenance is not JSON: {e}") from None
            if not isinstance(doc, dict) or doc.get("_type") != INTOTO_STATEMENT_TYPE:
                raise VerificationError("wpr.payload", "workload provenance is not an in-toto Statement v1")
            out.append(doc)
    return out


def verify_credential(credential: bytes | str, statements: Sequence[bytes], trust: TrustConfig, *,
                      policy: Policy | None = None, record: bytes | None = None, now: float | None = None,
                      check_time: bool = True, leeway: int = 60) -> CredentialVerification:
    """Verify a credential against its transparent provenance statement(s); see the module doc.

    ``record``: the plaintext Credential Provenance record, needed when the log holds only
    a hash envelope (private records). Raises VerificationError on any failure.
    """
    from .statement import SignedStatement

    t = time.time() if now is None else float(now)
    info = parse_credential(credential)
    if info.format == "wit":
        _verify_wit_signature(info, trust, t, check_time, leeway)
    else:
        _verify_x509_signature(info, trust, t, check_time, leeway)
    if info.pointer is None:
        raise VerificationError("binding.no-pointer", "the credential carries no provenance pointer")
    accepted = [_norm_url(u) for u in trust.logs] or [_norm_url(info.pointer.log)]

    cprs, wprs = [], []
    for ts in statements:
        st = SignedStatement.parse(ts)
        kind = _classify(st)
        if kind == "cpr":
            cprs.append((ts, st))
        elif kind == "wpr":
            wprs.append((ts, st))
    mine = [(ts, st) for ts, st in cprs if _statement_rid(st) == info.pointer.rid]
    if not mine:
        raise VerificationError("binding.record-missing",
                                f"no Credential Provenance statement for record {info.pointer.rid}")
    if len({st.leaf_input for _, st in mine}) > 1:
        raise VerificationError("binding.ambiguous", f"{len(mine)} different statements claim record {info.pointer.rid}")
    last_err: VerificationError | None = None
    for ts, st in mine:  # copies of one statement (e.g. with different receipts): the first that verifies
        try:
            receipts = _verified_receipts(ts, st, trust, accepted, "record")
            break
        except VerificationError as e:
            last_err = e
    else:
        assert last_err is not None
        raise last_err
    private = st.hash_envelope is not None
    if private:
        if st.hash_envelope[0] != -16:
            raise VerificationError("record.hash-alg", "only SHA-256 (-16) hash envelopes are supported")
        if record is None:
            raise VerificationError("record.private", "the log holds a hash envelope; the plaintext record is needed")
        if hashlib.sha256(record).digest() != st.payload:
            raise VerificationError("record.digest", "the plaintext record does not match the logged hash")
        data = record
    else:
        data = st.payload
        if record is not None and record != data:
            raise VerificationError("record.digest", "the supplied record differs from the logged one")
    rec = _decode_record(data)
    _check_binding(info, rec, st, private)
    ear_ok, ear_claims = _verify_ear(rec, trust)
    res = CredentialVerification(credential=info, record=rec, record_statement=st, receipts=receipts,
                                 workload_provenance=_verify_wprs(rec, wprs, trust, accepted),
                                 ear_verified=ear_ok, ear_claims=ear_claims, now=t, private=private)
    (policy or StatusAffirming()).verify(res)
    return res


# ----------------------------------------------------------------------------------------
# fetching (optional; the checks above are offline)


def fetch_statements(pointer: Pointer, *, timeout: float = 10.0) -> list[bytes]:
    """GET the record by its locator and the Workload Provenance it links to (best effort)."""
    import urllib.request

    from . import cbor

    def get(url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (http(s) URLs from the credential)
            return r.read()

    if not pointer.log.startswith(("http://", "https://")):
        raise VerificationError("fetch.url", "the pointer's log is not an http(s) URL")
    try:
        arr = cbor.loads(get(pointer.uri))
    except OSError as e:
        raise VerificationError("fetch.record", f"cannot fetch {pointer.uri}: {e}") from None
    if not isinstance(arr, list) or not all(isinstance(x, bytes) for x in arr):
        raise VerificationError("fetch.record", "lookup answer is not an array of statements")
    out = list(arr)
    from .statement import SignedStatement

    for ts in arr:
        st = SignedStatement.parse(ts)
        if st.hash_envelope is not None:
            continue
        try:
            rec = cbor.loads(st.payload, max_depth=12)
        except VerificationError:
            continue
        for rd in (rec.get("workload_provenance") or []) if isinstance(rec, dict) else []:
            uri = rd.get("uri") if isinstance(rd, dict) else None
            if isinstance(uri, str) and uri.startswith(_norm_url(pointer.log) + "/entries/"):
                try:
                    out.append(get(uri + "/statement"))
                except OSError:
                    pass  # policy (e.g. SbomPresent) decides whether the WPR was needed
    return out


# ----------------------------------------------------------------------------------------
# CLI: twi-verify credential


def add_parser(subparsers: Any) -> Any:
    """Register ``credential`` on a ``twi-verify`` argparse subparsers object."""
    p = subparsers.add_parser(
        "credential", help="verify a workload credential against its provenance in the log",
        description="Check a WIT or X.509 SVID, its Credential Provenance statement (issuer signature, "
                    "receipt, both directions of the binding), the linked Workload Provenance and a "
                    "relying-party policy. Exit 0 ok, 1 verification failed, 2 usage/unreadable input.")
    p.add_argument("credential", help="file with the WIT (compact JWS) or the certificate (PEM/DER)")
    p.add_argument("--statement", action="append", default=[], metavar="FILE",
                   help="transparent statement (CPR or WPR); repeatable; a CBOR array of them is accepted")
    p.add_argument("--fetch", action="store_true", help="fetch the statements from the credential's pointer")
    p.add_argument("--log-key", action="append", default=[], metavar="FILE", required=True,
                   help="log key file (COSE_KeySet/COSE_Key/PEM); repeatable")
    p.add_argument("--issuer-key", action="append", default=[], metavar="FILE", help="issuer public key; repeatable")
    p.add_argument("--ca", action="append", default=[], metavar="FILE", help="X.509 CA certificate (PEM/DER)")
    p.add_argument("--verifier-keys", metavar="FILE", help="trusted RATS verifier keys (JSON)")
    p.add_argument("--log", action="append", default=[], metavar="URL", help="accepted log URL (receipt issuer)")
    p.add_argument("--record", metavar="FILE", help="plaintext record (private records)")
    p.add_argument("--record-encrypted", metavar="FILE", help="encrypted record (COSE_Encrypt0) ...")
    p.add_argument("--record-key", metavar="HEX", help="... and its 32-byte key in hex")
    p.add_argument("--allow-warning", action="store_true", help="accept warning appraisal status")
    p.add_argument("--require-sbom", action="store_true", help="require an SBOM in the workload provenance")
    p.add_argument("--require-ear", action="store_true", help="require the embedded EAR to verify")
    p.add_argument("--max-age", type=int, metavar="SECONDS", help="maximum age of the provenance record")
    p.add_argument("--no-time-checks", action="store_true", help="skip credential validity times")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_credential)
    return p


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def run_credential(args: Any) -> int:
    import sys

    from cryptography import x509 as cx509

    from . import cbor
    from . import keys as vkeys

    try:
        cred = _read(args.credential)
        log_keys: dict[bytes, Any] = {}
        for f in args.log_key:
            log_keys.update(vkeys.load_public_keys(f))
        issuer_keys: dict[bytes, Any] = {}
        for f in args.issuer_key:
            issuer_keys.update(vkeys.load_public_keys(f))
        cas = []
        for f in args.ca:
            raw = _read(f)
            cas.append(cx509.load_pem_x509_certificate(raw) if raw.lstrip().startswith(b"-----")
                       else cx509.load_der_x509_certificate(raw))
        vkeys_list = load_verifier_keys(json.loads(_read(args.verifier_keys))) if args.verifier_keys else []
        statements: list[bytes] = []
        for f in args.statement:
            raw = _read(f)
            if raw[:1] == b"\xd2":
                statements.append(raw)
            else:
                arr = cbor.loads(raw)
                if not isinstance(arr, list):
                    raise VerificationError("input.statement", f"{f}: neither a COSE_Sign1 nor an array")
                statements += arr
        record = _read(args.record) if args.record else None
        if args.record_encrypted:
            if not args.record_key:
                print("--record-encrypted needs --record-key", file=sys.stderr)
                return 2
            info = parse_credential(cred)
            if info.pointer is None:
                raise VerificationError("binding.no-pointer", "credential has no pointer")
            record = decrypt_record(_read(args.record_encrypted), bytes.fromhex(args.record_key), info.pointer.rid)
        if args.fetch:
            info = parse_credential(cred)
            if info.pointer is None:
                raise VerificationError("binding.no-pointer", "credential has no pointer")
            statements += fetch_statements(info.pointer)
        if not statements:
            print("give --statement FILE or --fetch", file=sys.stderr)
            return 2
    except OSError as e:
        print(f"error: cannot read input: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: unreadable input: {e}", file=sys.stderr)
        return 2
    except VerificationError as e:
        if e.check.startswith(("key.", "trust.", "input.")):
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"FAILED {e}", file=sys.stderr)
        return 1
    parts: list[Policy] = [StatusAffirming(allow_warning=args.allow_warning)]
    if args.require_sbom:
        parts.append(SbomPresent())
    if args.require_ear:
        parts.append(EarVerified())
    if args.max_age is not None:
        parts.append(MaxRecordAge(args.max_age))
    trust = TrustConfig(log_keys=log_keys, issuer_keys=issuer_keys, ca_certs=cas, verifier_keys=vkeys_list,
                        logs=list(args.log))
    try:
        res = verify_credential(cred, statements, trust, policy=AllOf(parts), record=record,
                                check_time=not args.no_time_checks)
    except VerificationError as e:
        if args.json:
            print(json.dumps({"ok": False, "check": e.check, "detail": e.detail}))
        else:
            print(f"FAILED {e}", file=sys.stderr)
        return 1
    summary = {
        "ok": True, "format": res.credential.format, "sub": res.credential.sub,
        "jti": res.credential.jti, "serial": res.credential.serial, "record": res.record["rid"],
        "private": res.private, "status": res.record["attestation"].get("ear_status"),
        "verifier": res.record["attestation"].get("verifier_id"), "ear_verified": res.ear_verified,
        "workload_provenance_verified": len(res.workload_provenance),
        "receipts": [r.to_json() for r in res.receipts],
    }
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(f"OK {res.credential.format} {res.credential.sub} record {res.record['rid']} "
              f"status {summary['status']} receipts {len(res.receipts)} "
              f"workload-provenance {len(res.workload_provenance)}")
    return 0
