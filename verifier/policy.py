"""Registration policies as a monitor sees them: parse the log's policy statements and judge
each later entry by the policy that was in force when it was registered (issue 6, full audit).

The log (``tlog/policy.py``) registers its registration policy in the log itself, as a Signed
Statement signed with its statement-signing (receipt) key::

    protected {1: alg, 3: "application/vnd.twi.tlog-policy+cbor", 4: <log kid>,
               15: {1: <log issuer>, 2: "<origin>/registration-policy"}}
    payload   {"version": 2, "previous": <entry id hex of the policy replaced> / null,
               "issuer-keys": [COSE_Key...], "trust-anchors": [DER cert...],
               "issuer-identities": {kid => [iss...]}, "anchor-identities": {SHA-256(DER) => [iss...]},
               "allowed-algs": [int...], "allowed-content-types": [tstr...] (empty = any),
               "max-statement-size": uint}

Version 2 adds the identity rules of issue 11 item 4 (verifier/identity.py): the statement's
``iss`` must be one its signer may claim, and statements of the log's own types
(:data:`LOG_CONTENT_TYPES`) or under one of the log's kids are refused from registrants. A
version 1 policy (logs before the change) is judged by the rules the log applied then.

:class:`RegistrationPolicy` is that document with its trust material decoded, and
:meth:`RegistrationPolicy.evaluate` applies it to a Signed Statement exactly as the log admits one
(size, algorithm, content type, then every registered identifier must verify: the x5chain to the
policy's anchors when it has some, the key whose RFC 9679 thumbprint is the statement's kid when
the policy lists it; at least one of them). :class:`PolicyTracker` walks the entries in index
order and decides which policy is in force for each entry (docs/ARCHITECTURE.md, "Full audit and
the registration policy"):

- the policy in force for entry ``i`` is the latest policy statement at an index below ``i``
  (RFC 9943 5.1.1: "the Registration Policy that was most recently committed ... at the time of
  Registration"); an entry before the first policy statement has none and is a violation;
- a policy statement must verify with one of the log's statement-signing keys, and its
  ``previous`` must be the entry id of an earlier policy statement (``null`` only for the first);
  naming an earlier policy that is not the latest one (two workers with different settings that
  both saw the same latest policy) is reported as a fork of the chain, not refused;
- race tolerance: a worker admits under the policy it read at start, so an entry checked just
  before a new policy was committed may be integrated after it. An entry that fails the policy in
  force but satisfies a policy superseded no more than ``grace`` seconds before the entry's own
  tree head (times: the ``iat`` of the receipts the log returns with each statement) is accepted
  and reported as a race; anything else is a violation.

Nothing here imports the log: this module is what a monitor installs.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Container, Iterable

from cryptography import x509 as cx509

from . import cbor
from cryptography.hazmat.primitives import hashes

from .errors import VerificationError
from .identity import key_identity_mismatch, x509_identity_mismatch
from .keys import PublicKey, public_key_from_cose_key, thumbprint
from .statement import SignedStatement
from .shard import SHARD_CONTENT_TYPE, is_shard_statement, open_shard_statement
from .x509 import validate_path

__all__ = [
    "POLICY_CONTENT_TYPE",
    "POLICY_VERSION",
    "PolicyViolation",
    "RegistrationPolicy",
    "PolicyRecord",
    "Verdict",
    "PolicyTracker",
    "open_policy_statement",
    "is_policy_statement",
    "log_keys_from",
    "statement_content_type",
]

POLICY_CONTENT_TYPE = "application/vnd.twi.tlog-policy+cbor"
POLICY_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
# Content types only the log itself registers (its registration policy, its shard statement).
LOG_CONTENT_TYPES = frozenset({POLICY_CONTENT_TYPE, SHARD_CONTENT_TYPE})
POLICY_SUB_SUFFIX = "/registration-policy"
MAX_POLICY_DEPTH = 16


class PolicyViolation(VerificationError):
    """The statement would have been refused by the policy. ``reason`` is a short label
    (``too-large``, ``log-type``, ``alg``, ``content-type``, ``untrusted-issuer``, ``x509``, ``signature``, ``identity``,
    ``malformed``, ``no-policy``)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"policy.{reason}", detail)
        self.reason = reason

    def __reduce__(self):
        return (type(self), (self.reason, self.detail))


def statement_content_type(st: SignedStatement) -> str | None:
    """The content type the policy filters on: the protected cty (3), or for a hash envelope
    the preimage content type (259); as text (the log compares ``str(cty)``)."""
    cty = st.content_type
    if cty is None and st.hash_envelope is not None:
        cty = st.hash_envelope.preimage_content_type
    return None if cty is None else str(cty)


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise VerificationError("policy.document", what)


@dataclass
class RegistrationPolicy:
    """One registration policy document with its trust material decoded."""

    issuer_keys: dict[bytes, PublicKey]  # RFC 9679 thumbprint -> key
    trust_anchors: list[cx509.Certificate]
    allowed_algs: frozenset[int]
    allowed_content_types: frozenset[str]
    max_statement_size: int
    previous: str | None = None
    document: dict = field(default_factory=dict, repr=False)
    version: int = POLICY_VERSION
    key_identities: dict[bytes, list[str]] = field(default_factory=dict)  # kid -> iss it may claim
    anchor_identities: dict[bytes, list[str]] = field(default_factory=dict)  # SHA-256(DER) -> iss

    @classmethod
    def from_document(cls, doc: Any) -> "RegistrationPolicy":
        """Validate and decode a policy payload (CBOR already decoded); raises
        VerificationError("policy.document", ...)."""
        _need(isinstance(doc, dict), "the policy is not a map")
        version = doc.get("version")
        _need(type(version) is int and version in SUPPORTED_VERSIONS,
              f"unsupported policy version {cbor.brief(version)}")
        prev = doc.get("previous")
        _need(prev is None or (isinstance(prev, str) and len(prev) == 64 and _is_hex(prev)),
              "previous must be null or a 64-hex entry id")
        keys_in = doc.get("issuer-keys")
        _need(isinstance(keys_in, list), "issuer-keys must be an array")
        issuer_keys: dict[bytes, PublicKey] = {}
        for k in keys_in:
            try:
                pub = public_key_from_cose_key(k)
            except VerificationError as e:
                raise VerificationError("policy.document", f"issuer key: {e.detail}") from None
            issuer_keys[thumbprint(pub)] = pub  # the kid is the thumbprint, whatever label 2 says
        anchors_in = doc.get("trust-anchors")
        _need(isinstance(anchors_in, list) and all(isinstance(a, bytes) for a in anchors_in),
              "trust-anchors must be an array of DER certificates")
        try:
            anchors = [cx509.load_der_x509_certificate(a) for a in anchors_in]
        except ValueError as e:
            raise VerificationError("policy.document", f"trust anchor: {e}") from None
        algs = doc.get("allowed-algs")
        _need(isinstance(algs, list) and all(type(a) is int for a in algs), "allowed-algs must be an array of ints")
        ctys = doc.get("allowed-content-types")
        _need(isinstance(ctys, list) and all(isinstance(c, str) for c in ctys),
              "allowed-content-types must be an array of text strings")
        size = doc.get("max-statement-size")
        _need(type(size) is int and size > 0, "max-statement-size must be a positive int")
        key_ids: dict[bytes, list[str]] = {}
        anchor_ids: dict[bytes, list[str]] = {}
        if version >= 2:
            key_ids = _identities(doc.get("issuer-identities", {}), "issuer-identities")
            anchor_ids = _identities(doc.get("anchor-identities", {}), "anchor-identities")
        return cls(issuer_keys, anchors, frozenset(algs), frozenset(ctys), size, prev, doc, version, key_ids,
                   anchor_ids)

    def evaluate(
        self,
        st: SignedStatement,
        *,
        at_time: datetime.datetime | None = None,
        payload: bytes | None = None,
        presigned: bool = False,
        log_kids: Container[bytes] = (),
    ) -> bool:
        """Apply the policy to ``st`` the way the log admits a statement; raise
        :class:`PolicyViolation` if it would have been refused.

        Returns True when the issuer signature was verified, False when the payload is detached
        (and not given) so only the issuer's identity could be checked. ``presigned``: the caller
        already verified the signature with the key whose thumbprint is ``st.kid`` (the kid is a
        thumbprint, so that key is the only one it can name). x5chain paths are validated at
        ``at_time`` (default: now). ``log_kids``: the log's own kids, current and retired
        (version 2 refuses statements under them)."""
        n = len(st.statement_bytes)
        if n > self.max_statement_size:
            raise PolicyViolation("too-large", f"statement of {n} bytes exceeds the policy maximum {self.max_statement_size}")
        bound = self.version >= 2
        cty = statement_content_type(st)
        if bound and (cty in LOG_CONTENT_TYPES or (st.kid is not None and st.kid in log_kids)):
            raise PolicyViolation("log-type", "a statement of the log's own types or under one of the log's keys")
        if st.alg not in self.allowed_algs:
            raise PolicyViolation("alg", f"algorithm {cbor.brief(st.alg)} is not allowed by the policy")
        if self.allowed_content_types:
            if cty not in self.allowed_content_types:
                raise PolicyViolation("content-type", f"content type {cbor.brief(cty)} is not allowed by the policy")
        payload = st.payload if st.payload is not None else payload
        checked = False
        if st.x5chain and self.trust_anchors:
            try:
                path = validate_path(st.x5chain, self.trust_anchors, at_time=at_time)
            except VerificationError as e:
                raise PolicyViolation("x509", f"x5chain does not validate to the policy's anchors: {e.detail}") from None
            if payload is not None:
                self._verify(st, path[0].public_key(), payload)
            if bound:
                why = x509_identity_mismatch(
                    st.iss, path, self.anchor_identities.get(path[-1].fingerprint(hashes.SHA256())))
                if why:
                    raise PolicyViolation("identity", why)
            checked = True
        if st.kid is not None and st.kid in self.issuer_keys:
            if payload is not None and not presigned:
                self._verify(st, self.issuer_keys[st.kid], payload)
            if bound:
                why = key_identity_mismatch(st.iss, st.kid, self.key_identities.get(st.kid))
                if why:
                    raise PolicyViolation("identity", why)
            checked = True
        if not checked:
            if st.kid is not None:
                raise PolicyViolation("untrusted-issuer", f"issuer key {cbor.brief_hex(st.kid)} is not trusted by the policy")
            if st.x5chain:
                raise PolicyViolation("x509", "x5chain statement but the policy has no trust anchors")
            raise PolicyViolation("malformed", "the statement names neither kid nor x5chain")
        return payload is not None

    def _verify(self, st: SignedStatement, key: Any, payload: bytes) -> None:
        try:
            st.verify(key, payload=payload if st.payload is None else None, allowed_algs=self.allowed_algs)
        except VerificationError as e:
            raise PolicyViolation("signature", f"issuer signature does not verify: {e}") from None

    def summary(self) -> dict[str, Any]:
        return {
            "issuer_keys": sorted(k.hex() for k in self.issuer_keys),
            "trust_anchors": len(self.trust_anchors),
            "allowed_algs": sorted(self.allowed_algs),
            "allowed_content_types": sorted(self.allowed_content_types),
            "max_statement_size": self.max_statement_size,
            "previous": self.previous,
            "version": self.version,
            "issuer_identities": {k.hex(): v for k, v in sorted(self.key_identities.items())},
            "anchor_identities": {k.hex(): v for k, v in sorted(self.anchor_identities.items())},
        }


def _identities(v: Any, what: str) -> dict[bytes, list[str]]:
    _need(isinstance(v, dict) and all(
        isinstance(k, bytes) and isinstance(ids, list) and ids and all(isinstance(i, str) for i in ids)
        for k, ids in v.items()), f"{what} must map byte strings to non-empty arrays of text strings")
    return {k: list(ids) for k, ids in v.items()}


def _is_hex(s: str) -> bool:
    return all(c in "0123456789abcdef" for c in s)


def is_policy_statement(st: SignedStatement, log_keys: dict[bytes, Any]) -> bool:
    """A statement the log registered as its policy: the policy content type and a kid naming one
    of the log's statement-signing keys. (The log refuses such statements from outside; a
    policy-typed statement under any other kid is an ordinary statement.)"""
    return st.content_type == POLICY_CONTENT_TYPE and st.kid is not None and st.kid in log_keys


def open_policy_statement(
    st: SignedStatement, log_keys: dict[bytes, Any], *, origin: str | None = None
) -> RegistrationPolicy:
    """Verify a policy statement with the log's key named by its kid and decode its policy."""
    if st.content_type != POLICY_CONTENT_TYPE:
        raise VerificationError("policy.statement", "not a policy statement (content type)")
    key = log_keys.get(st.kid) if st.kid is not None else None
    if key is None:
        raise VerificationError("policy.statement", "kid is not one of the log's statement-signing keys")
    if st.payload is None:
        raise VerificationError("policy.statement", "policy payload is detached")
    try:
        st.verify(key)
    except VerificationError as e:
        raise VerificationError("policy.signature", f"policy statement signature: {e}") from None
    if origin is not None and st.sub != origin + POLICY_SUB_SUFFIX:
        raise VerificationError("policy.statement", f"sub {cbor.brief(st.sub)}, want {origin + POLICY_SUB_SUFFIX!r}")
    doc = cbor.loads(st.payload, max_depth=MAX_POLICY_DEPTH, max_size=len(st.payload))
    return RegistrationPolicy.from_document(doc)


@dataclass
class PolicyRecord:
    """A policy statement seen in the log."""

    index: int
    entry_id: str  # hex leaf input
    policy: RegistrationPolicy
    statement: bytes  # the statement bytes (kept to resume an audit)
    time: float | None = None  # iat of its tree head
    superseded_time: float | None = None  # iat of the tree head of the policy that replaced it


@dataclass
class Verdict:
    """What :meth:`PolicyTracker.observe` concluded for one entry."""

    kind: str  # "policy" | "admitted" | "race"
    policy_index: int | None = None
    signature_verified: bool = False
    detail: str = ""
    fork: bool = False  # a policy whose previous is an earlier, not the latest, policy


class PolicyTracker:
    """Walk the log's entries in index order; raise PolicyViolation (or VerificationError for a
    bad policy statement) on the first entry its policy would have refused.

    ``log_keys``: kid -> public key of the log's statement-signing keys. ``grace``: seconds of
    race tolerance after a policy change (see the module docstring), 0 to refuse any race."""

    def __init__(self, log_keys: dict[bytes, Any], *, origin: str | None = None, grace: float = 60.0) -> None:
        self.log_keys = dict(log_keys)
        self.origin = origin
        self.grace = grace
        self.policies: list[PolicyRecord] = []
        self.next_index = 0
        # thumbprint -> key of every issuer key any policy seen so far lists (kid = thumbprint,
        # so verifying with it is right whatever the policy; trust is decided per policy)
        self.known_keys: dict[bytes, Any] = {}
        self._ids: dict[str, int] = {}
        self.shard = None  # the verified ShardLink of a successor's entry 0

    @property
    def current(self) -> PolicyRecord | None:
        return self.policies[-1] if self.policies else None

    def observe(
        self,
        index: int,
        st: SignedStatement,
        *,
        time: float | None = None,
        presigned: bool = False,
    ) -> Verdict:
        """Judge entry ``index`` (must be the next one). ``time``: iat of its tree head."""
        if index != self.next_index:
            raise ValueError(f"entries must be observed in order: got {index}, want {self.next_index}")
        if is_policy_statement(st, self.log_keys):
            v = self._add_policy(index, st, time)
        elif index == 0 and is_shard_statement(st, self.log_keys):
            # a successor's entry 0: the log's record of its predecessor (verifier.shard), not
            # judged by a policy (none precedes it); anywhere else it is refused as log-type
            self.shard = open_shard_statement(st, self.log_keys, origin=self.origin)
            v = Verdict("shard", None, True)
        else:
            v = self._judge(index, st, time, presigned)
        self.next_index = index + 1
        return v

    def _add_policy(self, index: int, st: SignedStatement, time: float | None) -> Verdict:
        pol = open_policy_statement(st, self.log_keys, origin=self.origin)
        eid = st.leaf_input.hex()
        fork = False
        if not self.policies:
            if pol.previous is not None:
                raise VerificationError(
                    "policy.chain", f"the first policy statement names previous {pol.previous}, not in the log before it")
        elif pol.previous != self.policies[-1].entry_id:
            if pol.previous not in self._ids:
                raise VerificationError(
                    "policy.chain",
                    f"previous {pol.previous} is not an earlier policy statement of this log "
                    f"(latest is {self.policies[-1].entry_id} at {self.policies[-1].index})")
            fork = True  # two policies replacing the same one: reported, not refused
        if self.policies:
            self.policies[-1].superseded_time = time
        self.policies.append(PolicyRecord(index, eid, pol, st.statement_bytes, time))
        self._ids[eid] = index
        self.known_keys.update(pol.issuer_keys)
        return Verdict("policy", index, True, fork=fork)

    def _judge(self, index: int, st: SignedStatement, time: float | None, presigned: bool) -> Verdict:
        cur = self.current
        if cur is None:
            raise PolicyViolation("no-policy", "no registration policy statement precedes this entry")
        at = None if time is None else datetime.datetime.fromtimestamp(time, datetime.timezone.utc)
        try:
            ok = cur.policy.evaluate(st, at_time=at, presigned=presigned, log_kids=self.log_keys)
            return Verdict("admitted", cur.index, ok)
        except PolicyViolation as first:
            if time is not None and self.grace > 0:
                for rec in reversed(self.policies[:-1]):
                    if rec.superseded_time is None or time - rec.superseded_time > self.grace:
                        break
                    try:
                        ok = rec.policy.evaluate(st, at_time=at, presigned=presigned, log_kids=self.log_keys)
                    except PolicyViolation:
                        continue
                    return Verdict("race", rec.index, ok,
                                   f"refused by the policy in force (index {cur.index}: {first.detail}) but admitted by "
                                   f"the policy at index {rec.index}, superseded {time - rec.superseded_time:.1f} s "
                                   f"before this entry's tree head")
            raise PolicyViolation(first.reason, f"{first.detail} (policy in force: index {cur.index}, "
                                  f"entry id {cur.entry_id})") from None

    # ---- persistence (audit resume) ------------------------------------------------------
    def state(self) -> dict[str, Any]:
        import base64

        return {
            "next_index": self.next_index,
            "policies": [
                {"index": r.index, "statement": base64.b64encode(r.statement).decode(), "time": r.time,
                 "superseded_time": r.superseded_time}
                for r in self.policies
            ],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Rebuild from :meth:`state` (every policy statement verified again)."""
        import base64

        self.policies, self._ids, self.known_keys = [], {}, {}
        for p in state.get("policies", []):
            st = SignedStatement.parse(base64.b64decode(p["statement"]))
            pol = open_policy_statement(st, self.log_keys, origin=self.origin)
            rec = PolicyRecord(int(p["index"]), st.leaf_input.hex(), pol, st.statement_bytes, p.get("time"),
                               p.get("superseded_time"))
            self.policies.append(rec)
            self._ids[rec.entry_id] = rec.index
            self.known_keys.update(pol.issuer_keys)
        self.next_index = int(state.get("next_index", 0))


def log_keys_from(keys: Iterable[Any]) -> dict[bytes, Any]:
    """The log's statement-signing keys by RFC 9679 thumbprint (the log's kids are thumbprints;
    a kid label in a COSE_Key file is not trusted)."""
    return {thumbprint(pub): pub for pub in keys}
