"""The issuance pipeline: appraise -> mint -> record -> register -> release.

A credential leaves :meth:`Issuer.issue` only together with the transparent statement of its
Credential Provenance record, whose receipt has been verified against the log's keys. If
the appraisal refuses, no credential is minted; if registration fails, the minted
credential is discarded (never returned, never stored) and :class:`IssuerError` is raised.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from verifier.credential import CredentialInfo, Pointer, locator
from verifier.credential.binding import digest_matches

from .appraisal import Appraisal, AppraisalPolicy, VerifierKeys, appraise, canonical_json, read_policy_file
from .client import Registered, ScrapiClient
from .credentials import mint_wit, mint_x509_svid, new_record_id, public_jwk, spki_der
from .errors import IssuerError
from .provenance import (IssuerIdentity, RecordVault, WprRef, build_cpr, build_status, encode_cpr, record_key,
                         sign_cpr, sign_policy, sign_status, sign_workload_provenance, wpr_document)

_ISSUANCE_KEYS = {"id", "version", "credential_lifetime", "trust_domains", "formats",
                  "require_workload_provenance", "bind_attested_key", "embed_ear", "private_records",
                  "description"}


@dataclass
class IssuancePolicy:
    """The issuer's own policy (recorded by id and digest in every Credential Provenance record).

    JSON or TOML: ``id`` (URI), ``credential_lifetime`` (s, default 3600), ``trust_domains``
    (allowed trust domains of workload identifiers; absent = any), ``formats``
    (``wit``/``x509-svid``), ``require_workload_provenance``, ``bind_attested_key`` (the
    credential key must be the key attested in the EAR; default true), ``embed_ear`` (CMW copy of the EAR
    in the record), ``private_records`` (log only a hash envelope).
    """

    id: str
    credential_lifetime: int = 3600
    trust_domains: list[str] | None = None
    formats: tuple[str, ...] = ("wit", "x509-svid")
    require_workload_provenance: bool = False
    bind_attested_key: bool = True   # safe default: the credential key is the key the EAR attests
    embed_ear: bool = True
    private_records: bool = False
    digest: str = ""
    raw: bytes = b""  # the document's bytes (what the digest covers; what the issuer logs)

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any], raw: bytes | None = None) -> "IssuancePolicy":
        unknown = set(obj) - _ISSUANCE_KEYS
        if unknown:
            raise IssuerError("issuance.policy", f"unknown issuance policy keys {sorted(unknown)}")
        if not isinstance(obj.get("id"), str) or not obj["id"]:
            raise IssuerError("issuance.policy", "issuance policy needs an 'id'")
        fmts = tuple(obj.get("formats", ("wit", "x509-svid")))
        if not fmts or not set(fmts) <= {"wit", "x509-svid"}:
            raise IssuerError("issuance.policy", "formats: wit and/or x509-svid")
        return cls(id=obj["id"], credential_lifetime=int(obj.get("credential_lifetime", 3600)),
                   trust_domains=list(obj["trust_domains"]) if "trust_domains" in obj else None,
                   formats=fmts, require_workload_provenance=bool(obj.get("require_workload_provenance", False)),
                   bind_attested_key=bool(obj.get("bind_attested_key", True)),
                   embed_ear=bool(obj.get("embed_ear", True)), private_records=bool(obj.get("private_records", False)),
                   digest=hashlib.sha256(raw if raw is not None else canonical_json(obj)).hexdigest(),
                   raw=raw if raw is not None else canonical_json(obj))

    @classmethod
    def load(cls, path: str | Path) -> "IssuancePolicy":
        obj, raw = read_policy_file(path, "issuance.policy")
        return cls.from_obj(obj, raw)


def check_wpr_binding(wpr: WprRef, workload_id: str, appraisal: Appraisal) -> None:
    """The linked Workload Provenance names this workload, and (when the EAR attests artefact
    digests) every attested artefact is one of its subjects (draft 5.3.1.1: provenance
    "confirmed by attestation at issuance")."""
    if wpr.workload_id != workload_id:
        raise IssuerError("binding.workload-mismatch",
                          f"the workload provenance {wpr.uri} is for {wpr.workload_id!r}, not {workload_id!r}")
    if appraisal.artifacts:
        if wpr.subjects is None:
            raise IssuerError("binding.attestation-mismatch",
                              f"the subjects of {wpr.uri} are unknown (re-register the workload provenance)")
        subjects = [s.get("digest") for s in wpr.subjects if isinstance(s, Mapping)]
        for a in appraisal.artifacts:
            if not any(isinstance(s, Mapping) and digest_matches(a["digest"], s) for s in subjects):
                raise IssuerError("binding.attestation-mismatch",
                                  f"attested artefact {a['digest']} is not a subject of the workload provenance")


@dataclass
class Issued:
    """A released credential and the registered provenance that goes with it."""

    credential: CredentialInfo
    record: dict[str, Any]
    record_bytes: bytes
    registration: Registered
    appraisal: Appraisal
    private: bool = False

    @property
    def rid(self) -> str:
        return self.record["rid"]


@dataclass
class Issuer:
    identity: IssuerIdentity
    log_url: str
    appraisal_policy: AppraisalPolicy
    verifier_keys: VerifierKeys
    issuance_policy: IssuancePolicy
    client: ScrapiClient
    ca_cert: Any = None
    vault: RecordVault | None = None
    vault_url: str | None = None   # where auditors ask for encrypted records (260 payload_location)
    policy_state: Path | None = None   # where the entries of logged policies are remembered (JSON)
    _wpr: dict[str, WprRef] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _policy_entries: dict[str, str] | None = None   # "<kind>:<sha256>" -> entry URL

    # -- policies in the log (draft 5.3.2)
    def ensure_policies(self) -> dict[str, str]:
        """Register the appraisal and issuance policies in force, once per document (remembered
        by digest in ``policy_state``), before they are used; returns {kind: entry URL}."""
        import json

        with self._lock:
            if self._policy_entries is None:
                self._policy_entries = {}
                if self.policy_state is not None and self.policy_state.is_file():
                    self._policy_entries = dict(json.loads(self.policy_state.read_text()))
            out = {}
            for kind, pol in (("appraisal", self.appraisal_policy), ("issuance", self.issuance_policy)):
                key = f"{kind}:{pol.digest}"
                if key not in self._policy_entries:
                    try:
                        reg = self.client.register(sign_policy(self.identity, kind, pol.id, pol.raw))
                    except IssuerError as e:
                        raise IssuerError("issuance.policy-unregistered",
                                          f"the {kind} policy could not be registered ({e}); nothing issued") from None
                    self._policy_entries[key] = reg.entry_url
                    if self.policy_state is not None:
                        self.policy_state.parent.mkdir(parents=True, exist_ok=True)
                        tmp = self.policy_state.with_suffix(".tmp")
                        tmp.write_text(json.dumps(self._policy_entries, indent=1))
                        tmp.replace(self.policy_state)
                out[kind] = self._policy_entries[key]
            return out

    # -- workload provenance
    def register_workload_provenance(self, statement: Mapping[str, Any], *,
                                     private: bool = False) -> tuple[WprRef, Registered]:
        """Register a Workload Provenance statement; ``private``: only its hash goes to the log,
        the document is kept encrypted in the vault under an opaque id (``twi-issuer audit``)."""
        if not private:
            signed = sign_workload_provenance(self.identity, statement)
        else:
            if self.vault is None:
                raise IssuerError("issuance.vault", "private workload provenance needs a record vault")
            pid = new_record_id()
            self.vault.put(pid, wpr_document(statement))
            signed = sign_workload_provenance(self.identity, statement, private_id=pid,
                                              private_location=f"{(self.vault_url or self.identity.id).rstrip('/')}/records/{pid}")
        try:
            reg = self.client.register(signed)
        except IssuerError:
            if private:
                self.vault.discard(pid)
            raise
        ref = WprRef.from_statement(statement, reg.entry_url, reg.leaf_input.hex())
        with self._lock:
            self._wpr[statement["predicate"]["workload_id"]] = ref
        return ref, reg

    def workload_provenance_for(self, workload_id: str) -> WprRef | None:
        with self._lock:
            return self._wpr.get(workload_id)

    # -- issuance
    def _check_request(self, fmt: str, workload_id: str, appraisal: Appraisal, pub: Any) -> None:
        pol = self.issuance_policy
        if fmt not in pol.formats:
            raise IssuerError("issuance.format", f"format {fmt!r} not issued by policy {pol.id}")
        if pol.trust_domains is not None:
            td = workload_id.split("://", 1)[-1].split("/", 1)[0]
            if td not in pol.trust_domains:
                raise IssuerError("issuance.trust-domain", f"trust domain {td!r} not served by this issuer")
        if pol.bind_attested_key:
            if appraisal.key_attestation is None:
                raise IssuerError("issuance.key-binding", "the EAR attests no workload key and the issuance policy "
                                  "binds the credential key to the attested key; an operator who accepts any key "
                                  "sets \"bind_attested_key\": false")
            if spki_der(pub) != appraisal.key_attestation:
                raise IssuerError("issuance.key-binding", "the credential key is not the attested key")

    def issue(self, *, ear: str, workload_id: str, workload_key: Any, fmt: str = "wit", nonce: str | None = None,
              wpr: WprRef | None = None, now: float | None = None, binding: str = "internal",
              renews: str | None = None) -> Issued:
        """Appraise ``ear``; mint a ``fmt`` credential for ``workload_key`` (public key object);
        register its Credential Provenance; release both, or raise :class:`IssuerError`.

        ``binding``: ``internal`` (the credential carries the pointer {rid, log}) or ``external``
        (no pointer: relying parties find the record by (iss, jti) / (issuer DN, serial) /
        SHA-256; public records only). ``renews``: the record id of the credential this one
        renews (same workload); the new record links it as ``prev`` {rid, sha256 = its leaf}."""
        if binding not in ("internal", "external"):
            raise IssuerError("issuance.binding", "binding is internal or external")
        if binding == "external" and self.issuance_policy.private_records:
            raise IssuerError("issuance.binding", "external binding needs public records (the log finds private "
                                                  "records by record id only)")
        prev = self._previous(renews, workload_id) if renews else None
        appraisal = appraise(ear, self.appraisal_policy, self.verifier_keys, nonce=nonce, now=now)
        policy_entries = self.ensure_policies()
        pub = workload_key.public_key() if hasattr(workload_key, "private_bytes") else workload_key
        self._check_request(fmt, workload_id, appraisal, pub)
        wpr = wpr or self.workload_provenance_for(workload_id)
        if wpr is None and self.issuance_policy.require_workload_provenance:
            raise IssuerError("issuance.workload-provenance", f"no workload provenance registered for {workload_id}")
        if wpr is not None:
            check_wpr_binding(wpr, workload_id, appraisal)
        t = int(time.time() if now is None else now)
        rid = new_record_id()
        pointer = Pointer(rid=rid, log=self.log_url) if binding == "internal" else None
        lifetime = self.issuance_policy.credential_lifetime
        if fmt == "wit":
            cred = mint_wit(self.identity.key, iss=self.identity.id, sub=workload_id, cnf_jwk=public_jwk(pub),
                            pointer=pointer, lifetime=lifetime, now=t)
        else:
            if self.ca_cert is None:
                raise IssuerError("issuance.ca", "no CA certificate configured for X.509 SVIDs")
            cred = mint_x509_svid(self.identity.key, self.ca_cert, sub=workload_id, public_key=pub,
                                  pointer=pointer, lifetime=lifetime, now=t)
        record = build_cpr(rid=rid, credential=cred, appraisal=appraisal, issuer_id=self.identity.id,
                           issuance_policy_id=self.issuance_policy.id,
                           issuance_policy_digest=self.issuance_policy.digest,
                           wpr=[wpr] if wpr else [], iat=t, embed_ear=self.issuance_policy.embed_ear,
                           prev=prev, external=binding == "external", policy_entries=policy_entries)
        record_bytes = encode_cpr(record)
        private = self.issuance_policy.private_records
        location = None
        if private:
            if self.vault is None:
                raise IssuerError("issuance.vault", "private records need a record vault")
            self.vault.put(rid, record_bytes)
            location = f"{(self.vault_url or self.identity.id).rstrip('/')}/records/{rid}"
        statement = sign_cpr(self.identity, record_bytes, rid=rid, sub=workload_id, iat=t,
                             private_location=location)
        try:
            reg = self.client.register(statement)
        except IssuerError as e:
            # never release a credential whose provenance failed to register
            if private and self.vault is not None:
                self.vault.discard(rid)
            raise IssuerError("issuance.unregistered",
                              f"provenance record {rid} did not register ({e}); credential withheld") from None
        return Issued(credential=cred, record=record, record_bytes=record_bytes, registration=reg,
                      appraisal=appraisal, private=private)

    # -- lifecycle: records in the log, renewal, revocation
    def find_record(self, *, rid: str | None = None, sha256: str | None = None) -> tuple[bytes, Any, dict | None]:
        """This issuer's CPR statement for record ``rid`` (or for the credential with this SHA-256,
        public records only), from the log's lookup: (transparent statement, parsed statement,
        decoded record or None when private). The issuer signature is checked."""
        from verifier import VerificationError, cose as vcose, cbor as vcbor
        from verifier.credential.records import classify, decode_record, statement_rid
        from verifier.statement import SignedStatement

        found = self.client.lookup(**({"rid": rid} if rid else {"sha256": sha256}))
        for ts in found:
            try:
                st = SignedStatement.parse(ts)
                if classify(st) != "cpr" or st.iss != self.identity.id or st.kid != self.identity.kid:
                    continue
                vcose.verify_sign1(vcose.decode_sign1(ts), self.identity.key.public_key())
                rec = decode_record(st.payload) if st.hash_envelope is None else None
            except VerificationError:
                continue
            if rid is not None and statement_rid(st) != rid:
                continue
            if sha256 is not None and (rec is None or (rec["credential"].get("digest") or {}).get("sha256") != sha256):
                continue
            if rec is None and self.vault is not None:
                try:
                    rec = vcbor.loads(self.vault.get(statement_rid(st) or ""), max_depth=12)
                except (IssuerError, VerificationError):
                    rec = None
            return ts, st, rec
        raise IssuerError("lifecycle.record-missing", f"the log has no record of this issuer for "
                                                      f"{'record ' + rid if rid else 'credential sha256 ' + str(sha256)}")

    def _previous(self, rid: str, workload_id: str) -> dict[str, Any]:
        _ts, st, rec = self.find_record(rid=rid)
        sub = (rec or {}).get("credential", {}).get("sub") if rec else None
        if sub != workload_id:
            raise IssuerError("issuance.renewal", f"record {rid} is for {sub!r}, not {workload_id!r}: "
                                                  f"a renewal is for the same workload")
        return {"rid": rid, "sha256": st.leaf_input.hex()}

    def revoke(self, *, rid: str | None = None, credential: bytes | None = None, reason: str | None = None,
               now: float | None = None) -> tuple[dict[str, Any], Registered]:
        """Register a status statement revoking a record (given by id, or by its credential:
        the pointer's rid, or the record that names the credential's SHA-256)."""
        from verifier import VerificationError
        from verifier.credential import parse_credential

        if credential is not None:
            try:
                info = parse_credential(credential)
            except VerificationError as e:
                raise IssuerError("lifecycle.credential", str(e)) from None
            rid = info.pointer.rid if info.pointer else None
            _ts, st, rec = self.find_record(rid=rid) if rid else self.find_record(sha256=info.sha256)
        elif rid:
            _ts, st, rec = self.find_record(rid=rid)
        else:
            raise IssuerError("lifecycle.usage", "give the record id or the credential")
        from verifier.credential.records import statement_rid

        status = build_status(rid=statement_rid(st) or "", record_sha256=st.leaf_input.hex(), reason=reason,
                              time_=int(time.time() if now is None else now))
        return status, self.client.register(sign_status(self.identity, status))

    def auditor_key(self, rid: str) -> bytes:
        """The key that opens one private record (hand it to an auditor)."""
        if self.vault is None:
            raise IssuerError("issuance.vault", "no record vault")
        return record_key(self.vault.master_key, rid)

    def record_locator(self, rid: str) -> str:
        return locator(self.log_url, rid)
