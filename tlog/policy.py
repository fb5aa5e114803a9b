"""The registration policy: what the log admits, and the policy as a Signed Statement.

RFC 9943 5.1.1: "Registration Policies and trust anchors MUST be made Transparent ... by
Registering them as Signed Statements"; "The Transparency Service MUST apply the Registration
Policy that was most recently committed to the Verifiable Data Structure at the time of
Registration." So the log signs its policy (trusted issuer keys, X.509 trust anchors, allowed
algorithms and content types, maximum statement size) as a COSE_Sign1 with its receipt key and
registers it before it accepts anything; every entry records the entry id of the policy it was
admitted under (attr ``policy``).

The policy statement is deterministic (RFC 6979 ES256, no timestamp), chained by the entry id of
the policy it replaces (``previous``), so several worker processes starting together register
one entry, and going back to an earlier configuration still registers a new one.

Policy statement::

    18([ << {1: -7, 3: "application/vnd.twi.tlog-policy+cbor", 4: <log kid>,
             15: {1: <log issuer>, 2: "<origin>/registration-policy"}} >>,
         {},
         << {"version": 2, "previous": <entry id hex> / null,
             "issuer-keys": [COSE_Key...], "trust-anchors": [DER cert...],
             "issuer-identities": {kid bstr => [iss tstr...]},       ; version 2
             "anchor-identities": {SHA-256(anchor DER) bstr => [iss tstr...]},  ; version 2
             "allowed-algs": [int...], "allowed-content-types": [tstr...] (empty = any),
             "max-statement-size": uint} >>,
         signature ])

Version 2 (issue 11 item 4) binds identities: a statement's ``iss`` must be one the signer may
claim (verifier/identity.py: a key's configured identities, an x5chain leaf's SAN URI or a
did:x509 of its path, and an anchor's configured identities), and statements of the log's own
types (the policy content type) or under any of the log's kids, current or retired, are refused
from registrants. The auditor (verifier/policy.py) judges version 1 policies by the old rules.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization

from verifier import VerificationError
from verifier import cbor as vcbor
from verifier import cose as vcose
from verifier import keys as vkeys
from verifier.identity import key_identity_mismatch, x509_identity_mismatch
from verifier.policy import LOG_CONTENT_TYPES
from verifier.x509 import validate_path

from .keys import LogKeys, TrustStore, log_statement

POLICY_CONTENT_TYPE = "application/vnd.twi.tlog-policy+cbor"
POLICY_VERSION = 2
HEADER_ALG, HEADER_CTY, HEADER_KID, HEADER_CWT = 1, 3, 4, 15


class Rejection(Exception):
    """A Signed Statement is not admitted. ``title`` is the SCRAPI problem title."""

    def __init__(self, title: str, detail: str, reason: str, status: int = 400) -> None:
        super().__init__(f"{title}: {detail}")
        self.title = title
        self.detail = detail
        self.reason = reason  # short metric label
        self.status = status


# SCRAPI -10 section 2 problem titles.
T_MALFORMED = "Malformed request"
T_BAD_ALG = "Bad Signature Algorithm"
T_PAYLOAD_MISSING = "Payload Missing"
T_REJECTED = "Rejected"


def classify(err: VerificationError) -> Rejection:
    """Map a verifier check to the SCRAPI problem title (and a metric reason)."""
    check = err.check or ""
    detail = err.detail or check
    top = check.split(".", 1)[0]
    if "alg" in check.split(".")[-1] or check.endswith("algorithm"):
        return Rejection(T_BAD_ALG, f"Signed Statement contained a non supported algorithm ({detail})", "alg")
    if "payload" in check and ("missing" in check or "detached" in check):
        return Rejection(T_PAYLOAD_MISSING, f"Signed Statement payload must be present ({detail})", "payload-missing")
    if check.endswith("signature") or check in ("cose.signature", "statement.signature"):
        return Rejection(T_REJECTED, f"signature verification failed ({detail})", "signature")
    if top in ("x509", "chain", "trust") or "x5chain" in check or "anchor" in check or "cert" in check:
        return Rejection(T_REJECTED, f"issuer certificate chain not accepted ({detail})", "x509")
    if "key" in check and top != "cbor":
        return Rejection(T_REJECTED, f"issuer key not accepted ({detail})", "issuer-key")
    return Rejection(T_MALFORMED, f"The request could not be parsed ({check}: {detail})", "malformed")


@dataclass
class Policy:
    """The registration policy in force (configured), with the trust material it names."""

    trust: TrustStore
    allowed_algs: list[int]
    allowed_content_types: list[str] = field(default_factory=list)
    max_statement_size: int = 1 << 20
    max_depth: int = 16
    # the document version it was read from: version 1 (before issue 11 item 4) binds no identities
    version: int = POLICY_VERSION

    # ---- the policy as data ------------------------------------------------------------
    def document(self, previous: str | None) -> dict[str, Any]:
        issuer_keys = []
        for kid in sorted(self.trust.issuer_keys):
            pub = self.trust.issuer_keys[kid]
            issuer_keys.append(vkeys.cose_key_from_public(pub, kid=kid, alg=vcose.alg_for_key(pub)))
        anchors = sorted(c.public_bytes(serialization.Encoding.DER) for c in self.trust.anchors)
        return {
            "version": POLICY_VERSION,
            "previous": previous,
            "issuer-keys": issuer_keys,
            "trust-anchors": anchors,
            "issuer-identities": {kid: list(v) for kid, v in self.trust.key_identities.items()
                                  if kid in self.trust.issuer_keys},
            "anchor-identities": {fp: list(v) for fp, v in self.trust.anchor_identities.items()},
            "allowed-algs": sorted(self.allowed_algs),
            "allowed-content-types": sorted(self.allowed_content_types),
            "max-statement-size": self.max_statement_size,
        }

    @classmethod
    def from_document(cls, doc: dict, *, max_depth: int = 16) -> "Policy":
        """The policy a registered policy document describes (the inverse of :meth:`document`)."""
        from cryptography import x509

        trust = TrustStore()
        for ck in doc.get("issuer-keys", []):
            pub = vkeys.public_key_from_cose_key(ck)
            trust.issuer_keys[vkeys.thumbprint(pub)] = pub
        trust.anchors = [x509.load_der_x509_certificate(bytes(d)) for d in doc.get("trust-anchors", [])]
        trust.key_identities = {bytes(k): [str(i) for i in v] for k, v in doc.get("issuer-identities", {}).items()}
        trust.anchor_identities = {bytes(k): [str(i) for i in v] for k, v in doc.get("anchor-identities", {}).items()}
        return cls(
            version=int(doc.get("version", 1)),
            trust=trust,
            allowed_algs=[int(a) for a in doc.get("allowed-algs", [])],
            allowed_content_types=[str(c) for c in doc.get("allowed-content-types", [])],
            max_statement_size=int(doc.get("max-statement-size", 1 << 20)),
            max_depth=max_depth,
        )

    def summary(self) -> dict[str, Any]:
        """What the policy admits, for people (``tlog policy show``, start-up refusals)."""
        return {
            "issuer-keys": sorted(k.hex() + _iss_note(self.trust.key_identities.get(k)) for k in self.trust.issuer_keys),
            "trust-anchors": [f.hex() + _iss_note(self.trust.anchor_identities.get(f))
                              for f in self.trust.anchor_fingerprints()],
            "allowed-algs": sorted(self.allowed_algs),
            "allowed-content-types": sorted(self.allowed_content_types),
            "max-statement-size": self.max_statement_size,
        }

    def digest(self) -> str:
        """Hash of the policy content (without the ``previous`` link): "has the policy changed"."""
        doc = self.document(None)
        del doc["previous"]
        # a policy read from a version 1 document differs from the same settings in version 2 (the
        # identity rules): `tlog policy set` then registers the version 2 policy
        doc["version"] = self.version
        return hashlib.sha256(vcbor.dumps(doc)).hexdigest()

    @staticmethod
    def digest_of_document(doc: dict) -> str:
        doc = dict(doc)
        doc.pop("previous", None)
        return hashlib.sha256(vcbor.dumps(doc)).hexdigest()

    def statement(self, keys: LogKeys, issuer: str, previous: str | None) -> bytes:
        """The policy as a COSE_Sign1 Signed Statement signed by the log (deterministic bytes)."""
        return log_statement(keys.receipt, issuer, POLICY_CONTENT_TYPE, f"{keys.origin}/registration-policy",
                             vcbor.dumps(self.document(previous)))

    # ---- evaluation ----------------------------------------------------------------------
    def check(self, st: Any, *, detached_payload: bytes | None = None, log_kids: Any = ()) -> None:
        """Authenticate a parsed ``verifier.statement.SignedStatement`` and apply the policy.
        ``log_kids``: the log's own kids, current and retired (a container).

        Raises :class:`Rejection`.
        """
        if len(st.statement_bytes) > self.max_statement_size:
            raise Rejection(
                "Payload Too Large",
                f"statement of {len(st.statement_bytes)} bytes exceeds the policy maximum {self.max_statement_size}",
                "too-large",
                413,
            )
        cty = _content_type(st)
        bound = self.version >= 2
        if cty in LOG_CONTENT_TYPES and (bound or (st.kid is not None and st.kid in log_kids)):
            raise Rejection(T_REJECTED, "statements of the log's own types (its registration policy, its shard "
                            "statement) are registered by the log itself", "log-type")
        if bound and st.kid is not None and st.kid in log_kids:
            raise Rejection(T_REJECTED, "statements of the log's own types or under the log's keys are registered "
                            "by the log itself", "log-type")
        if st.alg not in self.allowed_algs:
            raise Rejection(T_BAD_ALG, f"Signed Statement contained a non supported algorithm ({vcbor.brief(st.alg)})", "alg")
        if self.allowed_content_types:
            if cty not in self.allowed_content_types:
                raise Rejection(T_REJECTED, f"content type {vcbor.brief(cty)} not accepted by the registration policy", "content-type")
        if st.payload is None and detached_payload is None:
            raise Rejection(T_PAYLOAD_MISSING, "Signed Statement payload must be present (detached payload not supplied)", "payload-missing")
        checked = False
        try:
            # RFC 9943 5.1.1.1: every identifier the log has registered must verify
            if st.x5chain and self.trust.anchors:
                path = validate_path(st.x5chain, self.trust.anchors)
                st.verify(path[0].public_key(), payload=detached_payload, allowed_algs=self.allowed_algs)
                why = bound and x509_identity_mismatch(
                    st.iss, path, self.trust.anchor_identities.get(path[-1].fingerprint(hashes.SHA256())))
                if why:
                    raise Rejection(T_REJECTED, f"issuer identity not accepted: {why}", "identity")
                checked = True
            if st.kid is not None and st.kid in self.trust.issuer_keys:
                st.verify(self.trust.issuer_keys[st.kid], payload=detached_payload, allowed_algs=self.allowed_algs)
                why = bound and key_identity_mismatch(st.iss, st.kid, self.trust.key_identities.get(st.kid))
                if why:
                    raise Rejection(T_REJECTED, f"issuer identity not accepted: {why}", "identity")
                checked = True
        except VerificationError as e:
            raise classify(e) from None
        if not checked:
            if st.kid is not None:
                raise Rejection(
                    T_REJECTED,
                    f"issuer key {vcbor.brief_hex(st.kid)} is not trusted by the registration policy",
                    "untrusted-issuer",
                )
            if st.x5chain:
                raise Rejection(T_REJECTED, "no X.509 trust anchor is registered", "x509")
            raise Rejection(T_MALFORMED, "Signed Statement names neither kid nor x5chain", "malformed")


def _iss_note(ids: list[str] | None) -> str:
    return f" iss={','.join(ids)}" if ids else ""


def _content_type(st: Any) -> str | None:
    cty = getattr(st, "content_type", None)
    if cty is None and getattr(st, "hash_envelope", None):
        he = st.hash_envelope
        cty = getattr(he, "preimage_content_type", None) if not isinstance(he, dict) else he.get(259)
    return None if cty is None else str(cty)


def describe_change(old: dict | None, new: dict) -> dict[str, Any]:
    """What changed between two policy documents (for the log line of a policy change): per
    field, the new value, or for lists the number of items added and removed."""
    if old is None:
        return {"first": True}
    out: dict[str, Any] = {}
    for k in sorted(set(old) | set(new)):
        if k == "previous":
            continue
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if isinstance(a, list) and isinstance(b, list):
            ra, rb = [vcbor.dumps(x) for x in a], [vcbor.dumps(x) for x in b]  # deterministic encoding
            out[k] = {"added": sum(1 for x in rb if x not in ra), "removed": sum(1 for x in ra if x not in rb)}
        elif isinstance(a, dict) or isinstance(b, dict):  # issuer/anchor identities: keyed by bytes
            a, b = a or {}, b or {}
            out[k] = {"added": sum(1 for x in b if x not in a), "removed": sum(1 for x in a if x not in b),
                      "changed": sum(1 for x in a if x in b and a[x] != b[x])}
        else:
            out[k] = {"from": a, "to": b}
    return out
