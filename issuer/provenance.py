"""Provenance records as SCITT Signed Statements signed by the issuer.

* Workload Provenance (WPR), once per workload instance: an in-toto Statement v1 naming the
  workload's artefacts by digest and referring, by digest and media type (in-toto
  ResourceDescriptors), to its SBOMs (CycloneDX / SPDX JSON), SLSA build provenance,
  compliance evidence and vendor/SaaS metadata. Content type ``application/vnd.in-toto+json``.
* Credential Provenance (CPR), for every credential: the CBOR record of
  docs/credential-provenance.md. Public records carry the record (content type
  ``application/vnd.twi.cpr+cbor``); private records are RFC 9995 hash envelopes
  (258 = -16 SHA-256, 259 = the CPR media type, 260 = where the issuer keeps the encrypted
  record; no label 3) and the full record is AES-256-GCM encrypted (COSE_Encrypt0) in the
  issuer's :class:`RecordVault`, readable by an auditor given the record key.

Every statement's protected header has ``4: kid`` = RFC 9679 thumbprint of the issuer key and
``15: {1: issuer id, 2: subject, 6: iat[, 7: record id]}``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from verifier import cbor as vcbor
from verifier import cose as vcose
from verifier import VerificationError
from verifier import keys as vkeys
from verifier.files import private_dir, write_private
from verifier.credential import (CPR_MEDIA_TYPE, CPR_TYPE, INTOTO_MEDIA_TYPE, INTOTO_STATEMENT_TYPE,
                                 POLICY_MEDIA_TYPES, SBOM_MEDIA_TYPES, STATUS_MEDIA_TYPE, STATUS_TYPE, WPR_PREDICATE_TYPE, CredentialInfo, decrypt_record,
                                 encode_encrypt0)

from .appraisal import Appraisal
from .errors import IssuerError

SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
HDR_ALG, HDR_CTY, HDR_KID, HDR_CWT = 1, 3, 4, 15
HDR_PAYLOAD_HASH_ALG, HDR_PREIMAGE_CTY, HDR_PAYLOAD_LOCATION = 258, 259, 260
SHA256 = -16


@dataclass
class IssuerIdentity:
    """The issuer's signing identity: its id (a URL) and private key."""

    id: str
    key: Any

    @property
    def kid(self) -> bytes:
        return vkeys.thumbprint(self.key)


def _clean(d: Mapping[str, Any]) -> dict[str, Any]:
    """Drop None values (the records never carry null)."""
    return {k: v for k, v in d.items() if v is not None}


# --------------------------------------------------------------------------------------
# resource descriptors and the Workload Provenance statement

_HEX = re.compile(r"[0-9a-f]+")


def digest_set(data: bytes) -> dict[str, str]:
    return {"sha256": hashlib.sha256(data).hexdigest()}


def resource_descriptor(data: bytes, media_type: str, *, name: str | None = None, uri: str | None = None,
                        annotations: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An in-toto ResourceDescriptor referring to ``data`` by SHA-256 and media type."""
    return _clean({"name": name, "uri": uri, "digest": digest_set(data), "mediaType": media_type,
                   "annotations": dict(annotations) if annotations else None})


def sbom_descriptor(data: bytes, *, name: str | None = None, uri: str | None = None) -> dict[str, Any]:
    """Detect a CycloneDX or SPDX JSON SBOM and describe it (refuses anything else)."""
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise IssuerError("provenance.sbom", f"SBOM is not JSON: {e}") from None
    if isinstance(doc, dict) and doc.get("bomFormat") == "CycloneDX":
        ver = doc.get("specVersion")
        mt = "application/vnd.cyclonedx+json" + (f"; version={ver}" if isinstance(ver, str) else "")
    elif isinstance(doc, dict) and isinstance(doc.get("spdxVersion"), str):
        mt = "application/spdx+json"
    elif isinstance(doc, dict) and "@context" in doc and "spdx" in json.dumps(doc.get("@context")).lower():
        mt = "application/spdx3+json"
    else:
        raise IssuerError("provenance.sbom", "neither a CycloneDX nor an SPDX JSON document")
    return resource_descriptor(data, mt, name=name, uri=uri)


def slsa_descriptor(data: bytes, *, name: str | None = None, uri: str | None = None) -> dict[str, Any]:
    """Describe an in-toto Statement carrying SLSA provenance v1 (checked)."""
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise IssuerError("provenance.slsa", f"SLSA provenance is not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("predicateType") != SLSA_PROVENANCE_V1:
        raise IssuerError("provenance.slsa", f"predicateType must be {SLSA_PROVENANCE_V1}")
    return resource_descriptor(data, INTOTO_MEDIA_TYPE, name=name, uri=uri,
                               annotations={"predicateType": SLSA_PROVENANCE_V1})


def _check_rd(rd: Mapping[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(rd, Mapping):
        raise IssuerError("provenance.descriptor", f"{where}: not an object")
    if not any(k in rd for k in ("uri", "digest", "content")):
        raise IssuerError("provenance.descriptor", f"{where}: needs uri, digest or content")
    dg = rd.get("digest")
    if dg is not None:
        if not isinstance(dg, Mapping) or not dg or not all(
                isinstance(v, str) and _HEX.fullmatch(v) for v in dg.values()):
            raise IssuerError("provenance.descriptor", f"{where}: digest must map algorithms to lowercase hex")
    return dict(rd)


def workload_provenance(*, workload_id: str, subjects: Sequence[Mapping[str, Any]],
                        composition: Sequence[Mapping[str, Any]] = (), compliance: Sequence[Mapping[str, Any]] = (),
                        vendor: Sequence[Mapping[str, Any]] = (), reference_values: Sequence[Mapping[str, Any]] = (),
                        instantiated: int | None = None) -> dict[str, Any]:
    """The in-toto Statement v1 of a workload instance (TWI.md 7.2)."""
    if not subjects:
        raise IssuerError("provenance.subject", "a workload provenance statement names at least one artefact")
    subj = []
    for i, s in enumerate(subjects):
        if not isinstance(s, Mapping) or not isinstance(s.get("name"), str) or not isinstance(s.get("digest"), Mapping):
            raise IssuerError("provenance.subject", f"subject {i}: needs name and digest")
        subj.append(_check_rd(s, f"subject {i}"))
    pred = _clean({
        "workload_id": workload_id,
        "instantiated": int(time.time()) if instantiated is None else int(instantiated),
        "composition": [_check_rd(r, f"composition {i}") for i, r in enumerate(composition)] or None,
        "compliance": [_check_rd(r, f"compliance {i}") for i, r in enumerate(compliance)] or None,
        "vendor": [dict(v) for v in vendor] or None,
        "reference_values": [_check_rd(r, f"reference {i}") for i, r in enumerate(reference_values)] or None,
    })
    return {"_type": INTOTO_STATEMENT_TYPE, "subject": subj, "predicateType": WPR_PREDICATE_TYPE,
            "predicate": pred}


def wpr_document(statement: Mapping[str, Any]) -> bytes:
    """The bytes of a WPR: the in-toto statement as compact, sorted JSON."""
    return json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()


def sign_workload_provenance(issuer: IssuerIdentity, statement: Mapping[str, Any], *, iat: int | None = None,
                             private_id: str | None = None, private_location: str | None = None) -> bytes:
    """The WPR as a Signed Statement (payload: :func:`wpr_document`).

    Private form (``private_id`` and ``private_location`` given), like the CPR's: an RFC 9995
    hash envelope (258 = -16, 259 = the in-toto media type, 260 = where the issuer keeps the
    encrypted document), payload = SHA-256 of the document, subject = the opaque ``private_id``,
    so the log learns neither the workload nor its artefacts."""
    wid = statement.get("predicate", {}).get("workload_id")
    if not isinstance(wid, str):
        raise IssuerError("provenance.subject", "predicate.workload_id missing")
    payload = wpr_document(statement)
    t = int(time.time()) if iat is None else int(iat)
    if private_id is None:
        prot = {HDR_CTY: INTOTO_MEDIA_TYPE, HDR_KID: issuer.kid, HDR_CWT: {1: issuer.id, 2: wid, 6: t}}
        return vcose.sign1(issuer.key, prot, payload)
    prot = {HDR_KID: issuer.kid, HDR_CWT: {1: issuer.id, 2: private_id, 6: t}, HDR_PAYLOAD_HASH_ALG: SHA256,
            HDR_PREIMAGE_CTY: INTOTO_MEDIA_TYPE, HDR_PAYLOAD_LOCATION: private_location}
    return vcose.sign1(issuer.key, prot, hashlib.sha256(payload).digest())


# --------------------------------------------------------------------------------------
# Credential Provenance


@dataclass
class WprRef:
    """The log entry of a Workload Provenance statement."""

    uri: str          # <log>/entries/<entry id>
    leaf_sha256: str  # hex leaf input d(i) = SHA-256(statement bytes)
    workload_id: str | None = None                 # predicate.workload_id (None: unknown, old state)
    subjects: list[dict[str, Any]] | None = None   # the statement's subjects (artefact digests)

    @classmethod
    def from_statement(cls, statement: Mapping[str, Any], uri: str, leaf_sha256: str) -> "WprRef":
        return cls(uri=uri, leaf_sha256=leaf_sha256, workload_id=(statement.get("predicate") or {}).get("workload_id"),
                   subjects=[dict(s) for s in statement.get("subject") or []])

    @classmethod
    def from_transparent_statement(cls, ts: bytes, log_url: str) -> "WprRef":
        """A WPR link from its transparent statement (as the log serves it): entry id = leaf hex."""
        from verifier.statement import SignedStatement

        try:
            st = SignedStatement.parse(ts)
            doc = json.loads(st.payload) if st.content_type == INTOTO_MEDIA_TYPE and st.payload else None
        except (VerificationError, ValueError) as e:
            raise IssuerError("provenance.wpr", f"not a workload provenance statement: {e}") from None
        if not isinstance(doc, dict) or doc.get("_type") != INTOTO_STATEMENT_TYPE:
            raise IssuerError("provenance.wpr", "not a workload provenance statement (in-toto Statement v1)")
        leaf = st.leaf_input.hex()
        return cls.from_statement(doc, f"{log_url.rstrip('/')}/entries/{leaf}", leaf)

    def to_json(self) -> dict[str, Any]:
        return _clean({"uri": self.uri, "leaf_sha256": self.leaf_sha256, "workload_id": self.workload_id,
                       "subjects": self.subjects})

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "WprRef":
        return cls(uri=d["uri"], leaf_sha256=d["leaf_sha256"], workload_id=d.get("workload_id"),
                   subjects=d.get("subjects"))

    def descriptor(self) -> dict[str, Any]:
        return {"name": "wpr", "uri": self.uri, "digest": {"sha256": self.leaf_sha256},
                "mediaType": INTOTO_MEDIA_TYPE}


def build_cpr(*, rid: str, credential: CredentialInfo, appraisal: Appraisal, issuer_id: str,
              issuance_policy_id: str, issuance_policy_digest: str, wpr: Sequence[WprRef] = (),
              iat: int | None = None, embed_ear: bool = True, prev: Mapping[str, Any] | None = None,
              external: bool = False, policy_entries: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The Credential Provenance record (docs/credential-provenance.md), as a dict.
    ``policy_entries``: {"appraisal": entry URL, "issuance": entry URL} of the logged policies."""
    pe = dict(policy_entries or {})
    if external:
        if credential.pointer is not None:
            raise IssuerError("provenance.binding", "an externally bound credential carries no pointer")
    elif credential.pointer is None or credential.pointer.rid != rid:
        raise IssuerError("provenance.binding", "the credential does not point at this record id")
    cred = _clean({
        "format": credential.format,
        "media_type": credential.media_type,
        "iss": credential.iss,
        "sub": credential.sub,
        "jti": credential.jti,
        "serial": credential.serial,
        "issuer_dn": credential.issuer_dn,
        "digest": {"sha256": credential.sha256},
        "cnf": dict(credential.cnf),
        "nbf": credential.nbf,
        "exp": credential.exp,
        "pointer": {"rid": credential.pointer.rid, "log": credential.pointer.log} if credential.pointer else None,
    })
    if credential.format == "wit" and not credential.jti:
        raise IssuerError("provenance.binding", "a WIT needs a jti for the external binding")
    att = _clean({
        "verifier_id": dict(appraisal.verifier_id),
        "ar_media_type": appraisal.media_type,
        "ar_digest": {"sha256": appraisal.ear_sha256},
        "eat_profile": appraisal.profile,
        "ar_iat": appraisal.iat,
        "ear_status": appraisal.status,
        "submods": {k: dict(v) for k, v in appraisal.submods.items()},
        "eat_nonce": appraisal.nonce,
        "artifacts": [dict(a) for a in appraisal.artifacts] or None,
        # RFC 9999 CMW record in CBOR form: [type, value (bstr), ind = 8 (attestation results)]
        "ar": [appraisal.media_type, appraisal.ear.encode("ascii"), 8] if embed_ear else None,
    })
    return _clean({
        "type": CPR_TYPE,
        "rid": rid,
        "iat": int(time.time()) if iat is None else int(iat),
        "credential": cred,
        "attestation": att,
        "appraisal": {"decision": "accepted",
                      "policy": _clean({"id": appraisal.policy_id, "digest": {"sha256": appraisal.policy_digest},
                                        "entry": pe.get("appraisal")}),
                      "rules": list(appraisal.rules)},
        "issuer": {"id": issuer_id,
                   "policy": _clean({"id": issuance_policy_id, "digest": {"sha256": issuance_policy_digest},
                                     "entry": pe.get("issuance")})},
        "workload_provenance": [w.descriptor() for w in wpr] or None,
        "prev": dict(prev) if prev else None,
    })


def build_status(*, rid: str, record_sha256: str, status: str = "revoked", reason: str | None = None,
                 time_: int | None = None) -> dict[str, Any]:
    """A status statement's payload (``verifier.credential.status``): ``record_sha256`` is the
    leaf input d(i) (hex) of the CPR statement it is about."""
    return _clean({"type": STATUS_TYPE, "rid": rid, "record": {"sha256": record_sha256}, "status": status,
                   "reason": reason, "time": int(time.time()) if time_ is None else int(time_)})


def sign_status(issuer: IssuerIdentity, status: Mapping[str, Any], *, iat: int | None = None) -> bytes:
    """The status statement: content type STATUS_MEDIA_TYPE, sub = the record id."""
    prot = {HDR_CTY: STATUS_MEDIA_TYPE, HDR_KID: issuer.kid,
            HDR_CWT: {1: issuer.id, 2: status["rid"], 6: int(time.time()) if iat is None else int(iat)}}
    return vcose.sign1(issuer.key, prot, vcbor.dumps(dict(status)))


def sign_policy(issuer: IssuerIdentity, kind: str, policy_id: str, raw: bytes, *, iat: int | None = None) -> bytes:
    """A policy as a Signed Statement: payload = the document's bytes (what the records' digests
    cover), content type ``application/vnd.twi.<kind>-policy+json`` (or ``+toml``), sub = its id."""
    try:
        json.loads(raw)
        fmt = "json"
    except ValueError:
        fmt = "toml"
    cty = f"application/vnd.twi.{kind}-policy+{fmt}"
    if cty not in POLICY_MEDIA_TYPES:
        raise IssuerError("provenance.policy", f"unknown policy kind {kind!r}")
    prot = {HDR_CTY: cty, HDR_KID: issuer.kid,
            HDR_CWT: {1: issuer.id, 2: policy_id, 6: int(time.time()) if iat is None else int(iat)}}
    return vcose.sign1(issuer.key, prot, raw)


def encode_cpr(record: Mapping[str, Any]) -> bytes:
    """Deterministic CBOR (RFC 8949 4.2.1) of the record: the bytes signed or hashed."""
    return vcbor.dumps(dict(record))


def sign_cpr(issuer: IssuerIdentity, record_bytes: bytes, *, rid: str, sub: str, iat: int,
             private_location: str | None = None) -> bytes:
    """The CPR Signed Statement. ``private_location`` set: an RFC 9995 hash envelope whose
    payload is SHA-256(record bytes), subject = the opaque record id, no label 3."""
    cwt = {1: issuer.id, 2: sub, 6: int(iat), 7: rid.encode("utf-8")}
    if private_location is None:
        prot = {HDR_CTY: CPR_MEDIA_TYPE, HDR_KID: issuer.kid, HDR_CWT: cwt}
        return vcose.sign1(issuer.key, prot, record_bytes)
    cwt[2] = rid
    prot = {HDR_KID: issuer.kid, HDR_CWT: cwt, HDR_PAYLOAD_HASH_ALG: SHA256,
            HDR_PREIMAGE_CTY: CPR_MEDIA_TYPE, HDR_PAYLOAD_LOCATION: private_location}
    return vcose.sign1(issuer.key, prot, hashlib.sha256(record_bytes).digest())


# --------------------------------------------------------------------------------------
# private records


def record_key(master_key: bytes, rid: str) -> bytes:
    """The AES-256 key of one record: HKDF-SHA256(master, info = "twi-cpr:" || rid).
    Give an auditor this key to open one record, or the master key to open all."""
    if len(master_key) != 32:
        raise IssuerError("vault.key", "the vault master key is 32 bytes")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"twi-cpr:" + rid.encode()).derive(master_key)


def encrypt_record(plaintext: bytes, key: bytes, rid: str) -> bytes:
    """COSE_Encrypt0 (A256GCM, random 96-bit IV, external AAD = the record id)."""
    iv = os.urandom(12)
    protected = vcbor.dumps({1: 3})  # alg A256GCM
    aad = vcbor.dumps(["Encrypt0", protected, rid.encode()])
    ct = AESGCM(key).encrypt(iv, plaintext, aad)
    return encode_encrypt0(protected, iv, ct)


class RecordVault:
    """The issuer's store of encrypted private records: ``<dir>/<sha256(rid)>.cose``."""

    def __init__(self, directory: str | Path, master_key: bytes):
        self.dir = private_dir(directory)
        if len(master_key) != 32:
            raise IssuerError("vault.key", "the vault master key is 32 bytes")
        self.master_key = master_key

    def path(self, rid: str) -> Path:
        return self.dir / (hashlib.sha256(rid.encode()).hexdigest() + ".cose")

    def put(self, rid: str, plaintext: bytes) -> Path:
        p = self.path(rid)
        write_private(p, encrypt_record(plaintext, record_key(self.master_key, rid), rid), overwrite=True)
        return p

    def get(self, rid: str) -> bytes:
        try:
            blob = self.path(rid).read_bytes()
        except OSError as e:
            raise IssuerError("vault.missing", f"no record {rid}: {e}") from None
        return decrypt_record(blob, record_key(self.master_key, rid), rid)

    def discard(self, rid: str) -> None:
        try:
            self.path(rid).unlink()
        except FileNotFoundError:
            pass
